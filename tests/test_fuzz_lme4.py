"""lmer and glmer against lme4 1.1-31 where a differential fuzz (simulated data, formulas
outside the other fixtures) found them disagreeing; fixtures from
tools/R/make_fixtures_fuzz.R, one case per disagreement:

* ``nans_produced``: R's math functions warn "NaNs produced" (``log(y + 3)``, ``sqrt``);
* ``zero_weights``: a zero prior weight makes lme4's REML criterion +Inf at every θ: the fit
  stays at its start, "Gradient contains NAs" is recorded, and nothing is warned (numpy's
  "invalid value" warning from the derivatives' differences leaked);
* ``singular_feval``, ``check_boundary_feval``: ``optinfo.feval`` is the optimizer's own count,
  as lme4's: neither restart_edge's probes of the boundary nor check.boundary's evaluations
  are counted;
* ``factor_k_group`` (``error``): a grouping factor that is an expression, ``(1 | factor(k))``,
  is evaluated in the model frame as lme4 does: it works when its variables are variables of
  the frame, and fails with lme4's message when they are not;
* ``subset_range``, ``subset_negative``, ``subset_c``: a subset of row numbers (``1:300``,
  ``-(1:50)``, ``c(1:200, 401:600)``), R's ``data[subset, ]``; ``subset_is_na``: ``is.na()``;
* ``poisson_noninteger``: R's dpois gives a non-integer count probability 0 (warning
  "non-integer x = %f"), so lme4's Laplace criterion is +Inf and the fit stays at θ = 1;
* ``weights_offset_expressions``, ``poisson_offset_expression``: ``weights="1/w"``,
  ``offset="log(t)"``, R expressions evaluated in the data as model.frame evaluates them;
* ``dot_formula``, ``dot_power``: ``.`` stands for every column of the data but the
  response (``y ~ . - g - w + (1 | g)``, ``y ~ .^2 - g - w + (1 | g)``);
* ``wide_correlation``, ``wide_varcorr``: the summary's correlation block and VarCorr wider
  than 80 characters are printed in blocks of columns, as R prints a character matrix.
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES
from fit_accuracy import (
    assert_same_optimum,
    assert_text_up_to_ties,
    at_point,
    counts_under_roundoff,
)
from sweep_cases import as_list, frame_of

import lmeformula as lmf
from lmeformula.optimize import OptResult

FUZZ = FIXTURES / "fuzz"
# the fitted cases (wide_varcorr is compared at lme4's θ only: its own test below)
NAMES = sorted(p.stem for p in FUZZ.glob("*.json") if p.stem != "wide_varcorr")


@cache
def fixture(name: str) -> dict[str, Any]:
    return json.loads((FUZZ / f"{name}.json").read_text())  # type: ignore[no-any-return]


def data_of(name: str) -> pd.DataFrame:
    return frame_of(fixture(name)["columns"])


def kwargs_of(name: str) -> dict[str, Any]:
    args = fixture(name)["args"]
    kw = dict(args) if isinstance(args, dict) else {}
    if "REML" in kw:
        kw["REML"] = kw["REML"] in (True, "TRUE")
    return kw


def fit_now(name: str) -> Any:
    fx = fixture(name)
    if fx["family"] is not None:
        return lmf.glmer(fx["formula"], data_of(name), family=fx["family"], **kwargs_of(name))
    return lmf.lmer(fx["formula"], data_of(name), **kwargs_of(name))


@cache
def fit_and_warnings(name: str) -> tuple[Any, tuple[str, ...]]:
    """The fit (cached; the exception where lme4 failed) and its warnings' messages."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            m = fit_now(name)
        except Exception as err:  # compared with lme4's error by the tests
            m = err
    return m, tuple(str(w.message) for w in seen)


FITS = [n for n in NAMES if fixture(n)["error"] is None]
LMM = [n for n in FITS if fixture(n)["family"] is None]


@pytest.mark.parametrize("name", NAMES)
def test_warnings_and_messages(name: str) -> None:
    theirs = {w.removeprefix("message: ") for w in as_list(fixture(name)["warnings"] or [])}
    assert set(fit_and_warnings(name)[1]) == theirs


@pytest.mark.parametrize("name", FITS)
def test_structures(name: str) -> None:
    m, fx = fit_and_warnings(name)[0], fixture(name)
    assert list(m.fixef.index) == as_list(fx["beta_names"])
    assert list(lmf.getME(m, "X").columns) == as_list(fx["X_colnames"])
    assert lmf.nobs(m) == fx["nobs"]
    assert dict(lmf.ngrps(m)) == fx["ngrps"]
    flist = lmf.getME(m, "flist")
    assert list(flist) == list(fx["flist_levels"])
    for key, levels in fx["flist_levels"].items():
        assert [str(c) for c in flist[key].categories] == as_list(levels)
    assert [list(c) for c in m.lformula.reTrms.cnms] == [as_list(c) for c in
                                                         fx["cnms"].values()]


@pytest.mark.parametrize("name", [n for n in LMM if fixture(n)["crit"] != "Inf"])
def test_lmer_reaches_lme4s_optimum(name: str) -> None:
    m, fx = fit_and_warnings(name)[0], fixture(name)
    assert_same_optimum(m, as_list(fx["theta"]), fx["crit"])
    assert m.isSingular() == fx["isSingular"]


@pytest.mark.parametrize("name", ["singular_feval", "check_boundary_feval"])
def test_feval_is_the_optimizers_count(name: str) -> None:
    """lme4's optinfo$feval: the optimizer's evaluations (its last run's), without the
    boundary probes and check.boundary's evaluations, which added 2 here. Where round-off
    decides the count, lme4's is among those round-off gives (as test_lmer_lme4's path
    test)."""
    m, fx = fit_and_warnings(name)[0], fixture(name)
    counts = counts_under_roundoff(lmf.mkLmerDevfun(m.lformula), None) | {m.optinfo.feval}
    assert min(counts) <= fx["feval"] <= max(counts), (sorted(counts), fx["feval"])
    if len(counts) == 1:
        assert m.optinfo.feval == fx["feval"]


def test_zero_weight_criterion_is_infinite_and_the_fit_stays_at_its_start() -> None:
    m, fx = fit_and_warnings("zero_weights")[0], fixture("zero_weights")
    assert m.REMLcrit() == np.inf
    # both stay at lme4's start: θ and everything computed from it are lme4's to rounding
    np.testing.assert_allclose(m.theta, as_list(fx["theta"]), rtol=1e-12)
    np.testing.assert_allclose(m.fixef, fx["beta"], rtol=1e-10)
    np.testing.assert_allclose(lmf.fitted(m), fx["fitted"], rtol=1e-10)
    assert m.optinfo.feval == fx["feval"]
    assert list(m.optinfo.lme4.messages) == as_list(fx["conv_messages"])


def test_poisson_noninteger_counts_leave_the_fit_at_its_start() -> None:
    m, fx = fit_and_warnings("poisson_noninteger")[0], fixture("poisson_noninteger")
    assert list(m.theta) == [1.0] == as_list(fx["theta"])
    np.testing.assert_allclose(m.fixef, fx["beta"], rtol=1e-8)
    assert lmf.deviance(m) == pytest.approx(fx["crit"], rel=1e-10)
    assert float(lmf.logLik(m)) == -np.inf
    assert m.optinfo.feval == fx["feval"]
    assert list(m.optinfo.lme4.messages) == as_list(fx["conv_messages"])


def test_grouping_expression_evaluated_in_the_model_frame() -> None:
    m = fit_and_warnings("factor_k_group")[0]
    assert list(m.ranef()) == ["factor(k)"]
    # predictions on the data's rows (k not missing) give the fitted values: the grouping
    # expression is evaluated on new data as in the frame
    d = data_of("factor_k_group")
    rows = d["k"].notna().to_numpy()
    np.testing.assert_allclose(m.predict(newdata=d[rows]), lmf.fitted(m), rtol=1e-10)
    # at lme4's θ, the fitted values are lme4's to rounding
    fx = fixture("factor_k_group")
    at = at_point(m, as_list(fx["theta"]), derivs=False)
    np.testing.assert_allclose(lmf.fitted(at), fx["fitted"], rtol=1e-9)


def test_grouping_expression_of_a_variable_not_in_the_frame_fails_as_lme4() -> None:
    err = fit_and_warnings("factor_k_group_error")[0]
    assert isinstance(err, lmf.RandomEffectsError) and isinstance(err, ValueError)
    theirs = fixture("factor_k_group_error")["error"]
    assert theirs.startswith("couldn't evaluate grouping factor factor(k) within model frame")
    assert str(err).startswith("couldn't evaluate grouping factor factor(k) within model "
                               "frame: object 'k' not found")
    assert "object 'k' not found" in theirs
    assert str(err).endswith("Try adding grouping factor to data frame explicitly if possible")


@pytest.mark.parametrize(("subset", "message"), [
    ("c(3, 1:10)", "repeat or reorder"),
    ("c(-1, 2)", "only 0's may be mixed with negative subscripts"),
    ("1:601", "between 1 and 600"),
])
def test_row_number_subsets_a_frame_cannot_hold_are_refused(subset: str, message: str
                                                            ) -> None:
    with pytest.raises(lmf.ModelFrameError, match=message):
        lmf.lFormula("y ~ x + (1 | g)", data_of("subset_range"), subset=subset)


def test_offset_expression_glmm_at_lme4s_optimum() -> None:
    m, fx = fit_and_warnings("poisson_offset_expression")[0], fixture("poisson_offset_expression")
    # at lme4's (θ, β) the deviance and fitted values are lme4's to rounding
    at = at_point(m, as_list(fx["theta"]), fx["beta"], derivs=False)
    assert lmf.deviance(at) == pytest.approx(fx["crit"], rel=1e-9)
    np.testing.assert_allclose(lmf.fitted(at), fx["fitted"], rtol=1e-8)


@pytest.mark.parametrize("name", ["weights_offset_expressions", "poisson_offset_expression"])
def test_offset_expression_evaluated_in_new_data(name: str) -> None:
    m = fit_and_warnings(name)[0]
    np.testing.assert_allclose(m.predict(newdata=data_of(name), apply_offset_arg=True),
                               m.predict(), rtol=1e-10)
    with pytest.raises(lmf.VariableNotFoundError, match="object 't' not found"):
        m.predict(newdata=data_of(name).drop(columns="t"), apply_offset_arg=True)
    # lme4 1.1-31 leaves offset= out on new data (lme4 issue 447): so does the default
    with pytest.warns(lmf.LmeFormulaWarning, match="apply_offset_arg=True"):
        dropped = m.predict(newdata=data_of(name))
    np.testing.assert_allclose(dropped, m.predict() - np.log(data_of(name)["t"]), rtol=1e-10)


def test_weights_or_offset_expression_of_an_unknown_column_fails() -> None:
    with pytest.raises(lmf.ModelFrameError, match="offset: object 'tt' not found"):
        lmf.lFormula("y ~ x + (1 | g)", data_of("weights_offset_expressions"), offset="log(tt)")


@pytest.mark.parametrize("name", ["dot_formula", "dot_power"])
def test_dot_formula_is_stored_as_written(name: str) -> None:
    m, fx = fit_and_warnings(name)[0], fixture(name)
    assert m.formula == fx["formula_text"] == fx["formula"]
    assert f"Formula: {fx['formula']}" in str(m)


def test_dot_with_a_transformed_response_is_refused() -> None:
    # lme4 expands the fixed part's '.' over the model frame, where it does not recognise
    # log(y + 5) as the response: the response would be among its own predictors
    with pytest.raises(lmf.FormulaError, match="response that is an expression"):
        lmf.lFormula("log(y + 5) ~ . - g + (1 | g)", data_of("dot_formula"))


def test_wide_correlation_block_wraps_at_80_characters() -> None:
    m, fx = fit_and_warnings("wide_correlation")[0], fixture("wide_correlation")
    ours = str(at_point(m, as_list(fx["theta"])).summary())
    block = ours[ours.index("Correlation of Fixed Effects:"):]
    theirs = fx["summary"][fx["summary"].index("Correlation of Fixed Effects:"):]
    assert max(len(line) for line in theirs.splitlines()) <= 80
    assert_text_up_to_ties(block, theirs, fx["correlation"])


def test_wide_varcorr_wraps_at_80_characters() -> None:
    """A term with 13 correlated columns (91 θ), built at lme4's θ without fitting: VarCorr and
    the summary's random-effects block in R's blocks of columns."""
    fx = json.loads((FUZZ / "wide_varcorr.json").read_text())
    pf = lmf.lFormula(fx["formula"], frame_of(fx["columns"]))
    devfun = lmf.mkLmerDevfun(pf)
    theta = np.asarray(fx["theta"], dtype=float)
    m = lmf.mkMerMod(devfun, OptResult(theta, devfun(theta), 0, "", 1), pf, "d")
    assert max(len(line) for line in fx["varcorr"].splitlines()) <= 80
    assert_text_up_to_ties(str(m.VarCorr), fx["varcorr"], fx["sdcor"])
    ours, theirs = str(m.summary()), fx["summary"]
    start, end = "Random effects:", "Number of obs:"
    assert_text_up_to_ties(ours[ours.index(start):ours.index(end)],
                           theirs[theirs.index(start):theirs.index(end)],
                           np.r_[fx["sdcor"], np.square(fx["sdcor"])])
