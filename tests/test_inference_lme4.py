"""predict, simulate, anova, confint, profile, bootstrap, refit, update, lmList against lme4
(fixtures from tools/R/make_fixtures_inference.R)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES

import lmeformula as lmf
from lmeformula.inference import RefitMLWarning

REF = json.loads((FIXTURES / "inference.json").read_text())
ss = lmf.datasets.load("sleepstudy")


def fit(formula: str, data: pd.DataFrame = ss, **kw) -> lmf.LmerMod:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.lmer(formula, data, **kw)


@pytest.fixture(scope="module")
def fm1() -> lmf.LmerMod:
    return fit("Reaction ~ Days + (Days | Subject)")


@pytest.fixture(scope="module")
def fm0() -> lmf.LmerMod:
    return fit("Reaction ~ Days + (1 | Subject)")


@pytest.fixture(scope="module")
def fm2() -> lmf.LmerMod:
    return fit("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)")


ND = pd.DataFrame({"Days": [0, 1, 5, 9.5, 3], "Subject": ["308", "309", "372", "999", None]})
# predictions move with θ, which agrees with lme4's to the optimizer's tolerance
PRED_TOL = 1e-6


def close(ours, theirs, rtol=PRED_TOL) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_allclose(np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float),
                               rtol=rtol)


def test_predict_fitted_and_population(fm1: lmf.LmerMod) -> None:
    p = REF["predict"]
    close(fm1.predict(), p["fitted"])
    close(lmf.predict(fm1, re_form=np.nan), p["population"])
    close(fm1.predict(re_form="~0"), p["population"])


def test_predict_newdata(fm1: lmf.LmerMod, fm2: lmf.LmerMod) -> None:
    p = REF["predict"]
    close(fm1.predict(ND.iloc[:3]), p["newdata_known"])
    close(fm1.predict(ND.iloc[:3], re_form="~0"), p["newdata_known_pop"])
    close(fm1.predict(ND, allow_new_levels=True), p["newdata_new_allowed"])
    close(fm2.predict(ND.iloc[:3], re_form="~(1 | Subject)"), p["reform_intercept_only"])
    close(fm2.predict(ND.iloc[:3], re_form="~(0 + Days | Subject)"), p["reform_slope_only"])


def test_predict_new_levels_and_na_messages(fm1: lmf.LmerMod) -> None:
    p = REF["predict"]
    with pytest.raises(lmf.RandomEffectsError) as info:
        fm1.predict(ND.iloc[[3]])
    assert str(info.value) == p["newdata_new_error"]["error"]
    with pytest.raises(lmf.RandomEffectsError) as info:
        fm1.predict(ND.iloc[[4]])
    assert str(info.value) == p["newdata_na_error"]["error"]
    # lme4 matches re.form by grouping factor and columns, so ~(1 | Subject) of fm1's
    # (Days | Subject) predicts (test_postfit); a factor the model does not group by is an
    # error (lme4's message, fixture postfit.json)
    with pytest.raises(lmf.RandomEffectsError, match=r"grouping factors specified in re\.form"):
        fm1.predict(ND.iloc[:3], re_form="~(1 | Days)")


def test_predict_uses_fit_levels_contrasts_and_transforms() -> None:
    p = REF["predict"]
    cake = lmf.datasets.load("cake")
    nd = pd.DataFrame({"recipe": ["A", "C", "B"], "temperature": ["175", "225", "205"],
                       "temp": [175, 225, 205], "replicate": ["1", "15", "3"]})
    close(fit("angle ~ recipe * temp + (1 | recipe:replicate)", cake).predict(nd),
          p["cake_interaction"])
    close(fit("angle ~ recipe + temperature + (1 | replicate)", cake).predict(nd),
          p["cake_ordered"])
    fp = fit("Reaction ~ poly(Days, 2) + (1 | Subject)")
    close(fp.predict(pd.DataFrame({"Days": [0.5, 4, 12], "Subject": ["308", "310", "335"]})),
          p["poly_newdata"])
    with pytest.raises(lmf.LmeFormulaError, match="factor recipe has new level D"):
        fit("angle ~ recipe * temp + (1 | recipe:replicate)", cake).predict(
            nd.assign(recipe=["A", "D", "B"]), re_form="~0")


def test_predict_standard_errors(fm1: lmf.LmerMod) -> None:
    out = fm1.predict(ND.iloc[:3], re_form="~0", se_fit=True)
    se = np.sqrt(np.diag(fm1.vcov().to_numpy()))
    assert out["se_fit"].iloc[0] == pytest.approx(se[0], rel=1e-10)  # Days = 0
    full = fm1.predict(ND.iloc[:3], se_fit=True)
    assert np.isfinite(full["se_fit"]).all() and (full["se_fit"] > 0).all()
    # with θ = 0 the random effects are exactly 0: the joint standard error is the fixed one
    dye2 = fit("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff2"))
    nd = pd.DataFrame({"Batch": ["A", "B"]})
    np.testing.assert_allclose(dye2.predict(nd, se_fit=True)["se_fit"],
                               dye2.predict(nd, re_form="~0", se_fit=True)["se_fit"],
                               rtol=1e-8)


def test_simulate_matches_the_model_moments(fm1: lmf.LmerMod) -> None:
    sims = lmf.simulate(fm1, nsim=400, rng=np.random.default_rng(5))
    assert list(sims.columns[:2]) == ["sim_1", "sim_2"] and sims.shape == (180, 400)
    # marginal variance of an observation at Days = d: σ²(1 + [1 d] ΛΛ' [1 d]')
    vc = fm1.VarCorr["Subject"].cov
    day0 = sims.iloc[0].to_numpy()  # Subject 308, Days 0
    expected = vc[0, 0] + fm1.sigma**2
    assert day0.var(ddof=1) == pytest.approx(expected, rel=0.2)
    assert day0.mean() == pytest.approx(fm1.fixef["(Intercept)"], abs=4 * np.sqrt(expected / 400))
    cond = fm1.simulate(nsim=200, rng=3, use_u=True)
    resid = cond.to_numpy() - fm1.fitted().to_numpy()[:, None]
    assert resid.std() == pytest.approx(fm1.sigma, rel=0.05)


def test_anova_likelihood_ratio_tables(fm0: lmf.LmerMod, fm1: lmf.LmerMod, fm2: lmf.LmerMod) -> None:
    with pytest.warns(RefitMLWarning, match=r"refitting model\(s\) with ML"):
        table = lmf.anova(fm0=fm0, fm1=fm1)
    assert str(table) == REF["anova"]["fm0_fm1"]["text"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table3 = lmf.anova(fm1=fm1, fm0=fm0, fm2=fm2)  # sorted by npar
    assert str(table3) == REF["anova"]["fm0_fm2_fm1"]["text"]


def test_single_model_anova() -> None:
    cake = lmf.datasets.load("cake")
    assert str(lmf.anova(fit("angle ~ recipe * temp + (1 | recipe:replicate)", cake))) == \
        REF["anova"]["single_cake"]["text"]
    assert str(lmf.anova(fit("angle ~ recipe + temperature + (1 | replicate)", cake))) == \
        REF["anova"]["single_cake2"]["text"]


def table(name: str) -> pd.DataFrame:
    t = REF["confint"][name]
    cols = t["columns"]
    return pd.DataFrame({c: [np.nan if v is None else v for v in cols[c]] for c in t["colnames"]},
                        index=t["rownames"])


def test_wald_intervals(fm1: lmf.LmerMod) -> None:
    pd.testing.assert_frame_equal(lmf.confint(fm1, method="Wald"), table("wald_fm1"),
                                  rtol=1e-6)
    pd.testing.assert_frame_equal(lmf.confint(fm1, method="Wald", level=0.9), table("wald_90"),
                                  rtol=1e-6)


@pytest.mark.parametrize(("model", "name", "kw"), [
    pytest.param("sleep", "profile_fm1", {}, marks=pytest.mark.slow),
    pytest.param("sleep", "profile_fm1_oldnames_false", {"oldNames": False},
                 marks=pytest.mark.slow),
    pytest.param("sleepML", "profile_fmML", {}, marks=pytest.mark.slow),
    ("dye", "profile_dye", {}),
    pytest.param("pen", "profile_pen", {}, marks=pytest.mark.slow),
])
def test_profile_intervals(model: str, name: str, kw: dict, fm1: lmf.LmerMod) -> None:
    models = {
        "sleep": lambda: fm1,
        "sleepML": lambda: fit("Reaction ~ Days + (Days | Subject)", REML=False),
        "dye": lambda: fit("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff")),
        "pen": lambda: fit("diameter ~ 1 + (1 | plate) + (1 | sample)",
                           lmf.datasets.load("Penicillin")),
    }
    ours = lmf.confint(models[model](), **kw)
    theirs = table(name)
    assert list(ours.index) == list(theirs.index)
    assert list(ours.columns) == list(theirs.columns)
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-3)


@pytest.mark.slow
def test_bootstrap_intervals_consistent_with_lme4(fm1: lmf.LmerMod) -> None:
    ours = lmf.confint(fm1, method="boot", nsim=500, rng=np.random.default_rng(20261125))
    theirs = table("boot_fm1")
    assert list(ours.index) == list(theirs.index)
    width = (theirs.iloc[:, 1] - theirs.iloc[:, 0]).to_numpy()
    # 500 replicates: an endpoint's Monte-Carlo sd is about 3% of the width; allow ~6 sd
    assert (np.abs(ours.to_numpy() - theirs.to_numpy()) <= 0.2 * width[:, None]).all()


def test_refit_equals_a_fresh_fit(fm1: lmf.LmerMod) -> None:
    r = REF["refit"]
    new = lmf.refit(fm1, r["newresp"])
    assert new.REMLcrit() == pytest.approx(r["fresh_REMLcrit"], abs=1e-5)
    close(new.fixef, r["fresh_beta"], rtol=1e-4)
    assert new.sigma == pytest.approx(r["fresh_sigma"], rel=1e-4)
    # lme4 1.1-31's refit() stops within 1e-3 of that optimum but reports devcomp/REMLcrit
    # values (here r["REMLcrit"]) that do not belong to its own θ: we match the fresh fit
    assert new.REMLcrit() <= r["devfun_at_refit_theta"] + 1e-6


def test_update_formula_and_reml(fm1: lmf.LmerMod) -> None:
    up = lmf.update(fm1, ". ~ . - (Days | Subject) + (1 | Subject)")
    assert up.formula == REF["update"]["formula"]
    assert up.REMLcrit() == pytest.approx(REF["update"]["REMLcrit"], rel=1e-9)
    assert lmf.update(fm1, REML=False).deviance() == pytest.approx(
        REF["update_ml"]["deviance"], rel=1e-9)


def test_lmlist() -> None:
    ours = lmf.lmList("Reaction ~ Days | Subject", ss)
    t = REF["lmlist"]["sleep"]
    theirs = pd.DataFrame(t["columns"], index=t["rownames"])[t["colnames"]]
    pd.testing.assert_frame_equal(ours.coef(), theirs, rtol=1e-10)
    assert ours.sigma == pytest.approx(REF["lmlist"]["sleep_sigma"], rel=1e-10)
