"""syntax="formulaic": Python transforms, ModelSpec reuse on new data, any data frame, and the
functions that take ``syntax=`` (lmer, update, refit, simulate, lmList, statsmodels, CLI)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix

import lmeformula as lmf
from lmeformula.cli import main

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return lmf.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def spline(sleep: pd.DataFrame) -> lmf.LmerMod:
    return lmf.lmer("Reaction ~ bs(Days, df=4) + (Days | Subject)", sleep, syntax="formulaic")


def test_python_transforms_give_the_r_spelling_deviance(sleep: pd.DataFrame) -> None:
    f = lmf.lmer("Reaction ~ np.log(Days + 1) + {Days**2} + center(Days) + (Days | Subject)",
                 sleep, REML=False, syntax="formulaic")
    r = lmf.lmer("Reaction ~ log(Days + 1) + I(Days^2) + scale(Days, scale = FALSE) "
                 "+ (Days | Subject)", sleep, REML=False)
    assert f.deviance() == pytest.approx(r.deviance(), rel=1e-10)
    np.testing.assert_allclose(f.beta, r.beta, rtol=1e-7)
    # formulaic's column names, lme4's intercept
    assert list(f.fixef.index) == ["(Intercept)", "np.log(Days + 1)", "Days ** 2",
                                   "center(Days)"]


def test_spline_predictions_on_new_rows_are_x_beta(sleep: pd.DataFrame,
                                                   spline: lmf.LmerMod) -> None:
    new = pd.DataFrame({"Days": [0.5, 2.5, 7.25, 9.0], "Subject": ["308", "309", "330", "372"]})
    # the basis of the new rows with the knots of the fit, computed by formulaic independently
    basis = model_matrix("bs(Days, df=4)", sleep).model_spec.get_model_matrix(new)
    X = basis.to_numpy(dtype=float)
    np.testing.assert_allclose(spline.predict(new, re_form="~0").to_numpy(), X @ spline.beta,
                               rtol=1e-12)
    # with the random effects: + the subjects' conditional modes
    ranef = spline.ranef(condVar=False)["Subject"]
    z = ranef.loc[new.Subject, "(Intercept)"].to_numpy() + ranef.loc[
        new.Subject, "Days"].to_numpy() * new.Days.to_numpy()
    np.testing.assert_allclose(spline.predict(new).to_numpy(), X @ spline.beta + z, rtol=1e-12)


def test_modelspec_state_is_reused_not_relearned(sleep: pd.DataFrame,
                                                 spline: lmf.LmerMod) -> None:
    # three rows alone would give other knots / another centring mean if state were relearned
    rows = sleep.iloc[[5, 40, 111]]
    np.testing.assert_allclose(spline.predict(rows).to_numpy(),
                               spline.fitted().iloc[[5, 40, 111]].to_numpy(), rtol=1e-12)
    m = lmf.lmer("Reaction ~ center(Days) + (1 | Subject)", sleep, syntax="formulaic")
    np.testing.assert_allclose(m.predict(rows).to_numpy(),
                               m.fitted().iloc[[5, 40, 111]].to_numpy(), rtol=1e-12)
    sim = m.simulate(3, rng=2, newdata=rows)
    assert sim.shape == (3, 3) and list(sim.index) == list(rows.index)


def test_contrasts_in_the_formula_equal_rs_contrasts_argument() -> None:
    machines = lmf.datasets.load("Machines")
    f = lmf.lmer("score ~ C(Machine, contr.sum) + (1 | Worker)", machines, syntax="formulaic")
    r = lmf.lmer("score ~ Machine + (1 | Worker)", machines, contrasts={"Machine": "contr.sum"})
    np.testing.assert_array_equal(f.lformula.X_values, r.lformula.X_values)
    assert f.REMLcrit() == pytest.approx(r.REMLcrit(), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmf.RankDeficiencyWarning)  # empty hash buckets
        h = lmf.lFormula("score ~ hashed(Machine, levels=8) + (1 | Worker)", machines,
                         syntax="formulaic")
    assert h.X_values.shape[0] == len(machines)


def test_factor_in_a_bar_and_nesting(sleep: pd.DataFrame) -> None:
    machines = lmf.datasets.load("Machines")
    pf = lmf.lFormula("score ~ Machine + (0 + Machine | Worker)", machines, syntax="formulaic")
    assert pf.reTrms.cnms == [["Machine[A]", "Machine[B]", "Machine[C]"]]
    pastes = lmf.datasets.load("Pastes")
    pf = lmf.lFormula("strength ~ 1 + (1 | batch/cask)", pastes, syntax="formulaic")
    assert list(pf.reTrms.Ztlist) == ["1 | cask:batch", "1 | batch"]
    pf = lmf.lFormula("Reaction ~ Days + (Days || Subject)", sleep, syntax="formulaic")
    assert list(pf.reTrms.Ztlist) == ["1 | Subject", "0 + Days | Subject"]
    assert repr(pf).startswith("lFormula: Reaction ~ Days + (Days || Subject)")
    # names that are not identifiers, in backticks, in a bar too
    renamed = sleep.rename(columns={"Subject": "my subj", "Days": "Days.n"})
    q = lmf.lFormula("Reaction ~ `Days.n` + (`Days.n` | `my subj`)", renamed,
                     syntax="formulaic")
    assert q.reTrms.cnms == [["(Intercept)", "Days.n"]]
    full = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleep, syntax="formulaic")
    assert (q.reTrms.Zt != full.reTrms.Zt).nnz == 0
    assert isinstance(pf.fr, pd.DataFrame) and list(pf.fr.columns) == ["Reaction", "Days",
                                                                       "Subject"]


def test_any_data_frame_gives_the_pandas_fit(sleep: pd.DataFrame) -> None:
    pl = pytest.importorskip("polars")
    pa = pytest.importorskip("pyarrow")
    formula = "Reaction ~ np.log(Days + 1) + (Days | Subject)"
    m0 = lmf.lmer(formula, sleep, syntax="formulaic")
    for data in (pl.from_pandas(sleep), pl.from_pandas(sleep).lazy(),
                 pa.Table.from_pandas(sleep, preserve_index=False),
                 {k: sleep[k].to_numpy() for k in sleep.columns}):
        m = lmf.lmer(formula, data, syntax="formulaic")
        assert m.REMLcrit() == m0.REMLcrit()
        np.testing.assert_array_equal(m.theta, m0.theta)
        np.testing.assert_array_equal(m.beta, m0.beta)
    new = pl.DataFrame({"Days": [1.5], "Subject": ["308"]})
    assert m0.predict(new).iloc[0] == pytest.approx(
        m0.predict(new.to_pandas()).iloc[0], rel=1e-14)


def test_missing_values_are_dropped_from_every_part(sleep: pd.DataFrame) -> None:
    data = sleep.copy()
    data["x"] = np.where(np.arange(180) % 17 == 0, np.nan, data.Days)
    data.iloc[[4, 9], data.columns.get_loc("Subject")] = np.nan
    kept = (np.arange(180) % 17 != 0) & ~np.isin(np.arange(180), [4, 9])
    f = lmf.lFormula("Reaction ~ Days + (x | Subject)", data, syntax="formulaic")
    r = lmf.lFormula("Reaction ~ Days + (x | Subject)", data)
    np.testing.assert_array_equal(f.frame.rows, np.flatnonzero(kept))
    np.testing.assert_array_equal(f.frame.rows, r.frame.rows)
    np.testing.assert_array_equal(f.frame.na_action.omitted, r.frame.na_action.omitted)
    m = lmf.lmer("Reaction ~ Days + (x | Subject)", data, syntax="formulaic",
                 na_action="exclude")
    assert m.fitted().shape == (180,) and m.fitted().isna().sum() == 180 - kept.sum()
    with pytest.raises(lmf.ModelFrameError, match="missing values"):
        lmf.lFormula("Reaction ~ Days + (x | Subject)", data, syntax="formulaic",
                     na_action="fail")


def test_weights_offset_subset(sleep: pd.DataFrame) -> None:
    data = sleep.assign(w=np.linspace(0.5, 2, 180), off=np.linspace(-1, 1, 180))
    kw = {"weights": "w", "offset": "off", "subset": "Days > 0"}
    f = lmf.lmer(FORMULA, data, syntax="formulaic", **kw)
    r = lmf.lmer(FORMULA, data, **kw)
    assert f.REMLcrit() == pytest.approx(r.REMLcrit(), rel=1e-10)
    assert f.nobs == r.nobs == 162
    new = data.iloc[[10, 11]]
    np.testing.assert_allclose(f.predict(new, apply_offset_arg=True),
                               r.predict(new, apply_offset_arg=True), rtol=1e-8)
    with pytest.warns(lmf.LmeFormulaWarning, match="not applied to newdata"):
        np.testing.assert_allclose(f.predict(new), r.predict(new), rtol=1e-8)


def test_refit_update_anova_and_printing(sleep: pd.DataFrame, spline: lmf.LmerMod) -> None:
    m2 = lmf.refit(spline, spline.simulate(1, rng=3)["sim_1"])
    assert m2.lformula.design is spline.lformula.design
    ml = lmf.refitML(spline)
    assert not ml.is_REML and ml.lformula.call["syntax"] == "formulaic"
    small = lmf.update(spline, "Reaction ~ {Days**2} + (Days | Subject)", REML=False)
    assert small.lformula.call["syntax"] == "formulaic"
    assert list(small.fixef.index) == ["(Intercept)", "Days ** 2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = lmf.anova(small, lmf.update(spline, REML=False))
    assert table.table.shape[0] == 2
    single = lmf.anova(spline)
    assert list(single.table.index) == ["bs(Days, df=4)"]
    assert "Formula: Reaction ~ bs(Days, df=4) + (Days | Subject)" in str(spline.summary())


@pytest.mark.slow
def test_lmlist_and_statsmodels_take_the_syntax(sleep: pd.DataFrame) -> None:
    a = lmf.lmList("Reaction ~ Days | Subject", sleep).coef()
    b = lmf.lmList("Reaction ~ Days | Subject", sleep, syntax="formulaic").coef()
    pd.testing.assert_frame_equal(a, b)
    c = lmf.lmList("Reaction ~ {Days**2} | Subject", sleep, syntax="formulaic").coef()
    assert list(c.columns) == ["(Intercept)", "Days ** 2"]
    table = lmf.compare_statsmodels("Reaction ~ np.log(Days + 1) + (1 | Subject)", sleep,
                                    syntax="formulaic")
    assert "np.log(Days + 1)" in table.index
    assert table.loc["np.log(Days + 1)", "rel_diff"] < 1e-3


def test_cli_syntax_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "Reaction ~ np.log(Days + 1) + (Days | Subject)", "--data",
                 "sleepstudy", "--syntax", "formulaic"]) == 0
    assert "np.log(Days + 1)" in capsys.readouterr().out
    # the default is the R syntax, which does not evaluate Python
    assert main(["fit", "Reaction ~ np.log(Days + 1) + (Days | Subject)", "--data",
                 "sleepstudy"]) == 2
    assert "np.log" in capsys.readouterr().err
