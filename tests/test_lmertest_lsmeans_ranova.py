"""lmerTest's ls_means, difflsmeans and ranova against R, and the errors and special cases of
the lmerTest / pbkrtest inference (lmeformula.ddf)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from lmertest_fixtures import (
    FIXTURES,
    ML_MODELS,
    MODELS,
    REML_MODELS,
    assert_table,
    model,
    ref_table,
)

import lmeformula as lmf
from lmeformula.ddf import HessianWarning
from lmeformula.ddf.contrasts import doolittle
from lmeformula.ddf.satterthwaite import _vcov_varpar
from lmeformula.ddf.tables import get_Fstat_ddf
from lmeformula.errors import LmeFormulaError

WITH_FACTORS = [n for n in MODELS if "error" not in MODELS[n]["ls_means"]
                and MODELS[n]["ls_means"]["rownames"] is not None]
KR_MESSAGE = "Kenward-Roger's method is only available for REML model fits"


@pytest.mark.parametrize("name", WITH_FACTORS)
def test_ls_means(name: str) -> None:
    ref = MODELS[name]
    tab = lmf.ls_means(model(name))
    assert list(tab.columns) == ["Estimate", "Std. Error", "df", "t value", "lower", "upper",
                                 "Pr(>|t|)"]
    assert_table(tab, ref_table(ref["ls_means"]))
    terms = ref["ls_means"]["terms"]
    assert list(dict.fromkeys(tab.attrs["term"])) == (terms if isinstance(terms, list)
                                                      else [terms])
    assert_table(lmf.difflsmeans(model(name)), ref_table(ref["difflsmeans"]))
    if name in REML_MODELS:
        assert_table(lmf.ls_means(model(name), ddf="Kenward-Roger"), ref_table(ref["ls_means_kr"]))


@pytest.mark.parametrize("name", [n for n in MODELS if "text" in MODELS[n]["ls_means"]])
def test_ls_means_printed_as_r(name: str) -> None:
    # lmerTest's print.ls_means of every model (tests/test_lsmeans_print.py has more cases)
    assert str(lmf.ls_means(model(name))) == MODELS[name]["ls_means"]["text"]


def test_ls_means_without_factors_is_empty() -> None:
    tab = lmf.ls_means(model("sleepstudy_reml"))
    assert tab.shape == (0, 7)


def test_ls_means_not_estimable_rows_are_na() -> None:
    tab = lmf.ls_means(model("cake_missing"))
    na = tab.index[tab["Estimate"].isna()].tolist()
    assert na == ["recipeC", "temperature225", "recipeC:temperature225"]
    assert tab.loc["recipeA", "Estimate"] == pytest.approx(33.1222, abs=1e-4)


def test_ls_means_which_and_level() -> None:
    m = model("cake")
    tab = lmf.ls_means(m, which="recipe", level=0.9)
    assert list(tab.index) == ["recipeA", "recipeB", "recipeC"]
    full = lmf.ls_means(m, which=["recipe"])
    # a narrower interval, the same estimates
    assert (tab["upper"] - tab["lower"] < full["upper"] - full["lower"]).all()
    np.testing.assert_allclose(tab["Estimate"], full["Estimate"])
    with pytest.raises(LmeFormulaError, match="factor terms"):
        lmf.ls_means(m, which="nonsense")
    with pytest.raises(LmeFormulaError, match="'level'"):
        lmf.ls_means(m, level=1.5)


@pytest.mark.parametrize("name", list(MODELS))
def test_ranova(name: str) -> None:
    tab = lmf.ranova(model(name))
    assert_table(tab, ref_table(MODELS[name]["ranova"]))
    assert list(tab.columns) == ["npar", "logLik", "AIC", "LRT", "Df", "Pr(>Chisq)"]


@pytest.mark.parametrize("name", ["sleepstudy_reml", "ham", "carrots", "machines", "oats"])
def test_ranova_printed_as_r(name: str) -> None:
    assert str(lmf.ranova(model(name))) == MODELS[name]["ranova"]["text"]


def test_ranova_whole_terms_and_lm_refit() -> None:
    # reduce_terms=False removes (Days | Subject) whole: no random effects are left, so the
    # reduced model is a linear model, compared by its REML log-likelihood
    m = model("sleepstudy_reml")
    tab = lmf.ranova(m, reduce_terms=False)
    assert list(tab.index) == ["<none>", "(Days | Subject)"]
    X = m.lformula.X_values
    y = m.lformula.y
    n, p = X.shape
    q, r = np.linalg.qr(X)
    rss = float(np.sum((y - q @ (q.T @ y)) ** 2))
    # R's logLik.lm(REML = TRUE)
    ll = -0.5 * (n - p) * (math.log(2 * math.pi) + 1 - math.log(n - p) + math.log(rss)) \
        - float(np.sum(np.log(np.abs(np.diag(r)))))
    assert tab.loc["(Days | Subject)", "logLik"] == pytest.approx(ll, rel=1e-10)
    assert tab.loc["(Days | Subject)", "npar"] == p + 1
    assert tab.loc["(Days | Subject)", "Df"] == 3


@pytest.mark.parametrize("name", ML_MODELS)
def test_kenward_roger_needs_reml(name: str) -> None:
    m = model(name)
    assert MODELS[name]["kr_error"] == KR_MESSAGE
    with pytest.raises(LmeFormulaError, match=KR_MESSAGE):
        lmf.coef_table(m, ddf="Kenward-Roger")
    with pytest.raises(LmeFormulaError, match=KR_MESSAGE):
        lmf.anova(m, ddf="Kenward-Roger")
    with pytest.raises(LmeFormulaError, match=KR_MESSAGE):
        lmf.contest(m, np.eye(m.p)[1], ddf="Kenward-Roger", joint=False)
    with pytest.raises(LmeFormulaError, match=KR_MESSAGE):
        lmf.contest(m, np.eye(m.p)[1:], ddf="Kenward-Roger")
    with pytest.raises(LmeFormulaError, match=KR_MESSAGE):
        m.summary(ddf="Kenward-Roger")
    if len(lmf.ls_means(m)):  # as in R, no means (no factor terms) means no test to refuse
        with pytest.raises(LmeFormulaError, match=KR_MESSAGE):
            lmf.ls_means(m, ddf="Kenward-Roger")


def test_bad_arguments() -> None:
    m = model("sleepstudy_reml")
    with pytest.raises(LmeFormulaError, match="'arg' should be one of"):
        lmf.coef_table(m, ddf="KR")
    assert lmf.coef_table(m, ddf="Sat").equals(lmf.coef_table(m))  # R's partial matching
    with pytest.raises(LmeFormulaError, match="'arg' should be one of"):
        lmf.coef_table(m, ddf="satterthwaite")
    with pytest.raises(LmeFormulaError, match="'type'"):
        lmf.anova(m, type=4)
    with pytest.raises(LmeFormulaError, match="columns"):
        lmf.contest(m, [1.0, 0.0, 0.0])
    with pytest.raises(LmeFormulaError, match="'rhs'"):
        lmf.contest(m, np.eye(2), rhs=[1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="fitted"):
        lmf.coef_table("not a model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="adjust"):
        lmf.vcov(m, adjust="Satterthwaite")


def test_contest_shapes_and_names() -> None:
    m = model("cake")
    L = pd.DataFrame(np.eye(m.p)[1:3], index=["B", "C"], columns=m.fixef.index)
    rows = lmf.contest(m, L, joint=False, confint=False)
    assert list(rows.index) == ["B", "C"]
    assert list(rows.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    both = lmf.contest(m, {"recipe": np.eye(m.p)[1:3], "temp": np.eye(m.p)[3:8]})
    assert list(both.index) == ["recipe", "temp"]
    np.testing.assert_array_equal(both["NumDF"], [2, 5])
    separate = lmf.contest(m, [np.eye(m.p)[1:3], np.eye(m.p)[3:8]], collect=False)
    assert isinstance(separate, list) and len(separate) == 2
    # a joint test of one row is the square of its t-test
    one = lmf.contest(m, np.eye(m.p)[1])
    t = lmf.contest(m, np.eye(m.p)[1], joint=False)
    assert one["F value"].iloc[0] == pytest.approx(t["t value"].iloc[0] ** 2)
    assert one["DenDF"].iloc[0] == pytest.approx(t["df"].iloc[0])
    # as in lmerTest, contest has no "lme4" method
    with pytest.raises(LmeFormulaError, match="'arg' should be one of"):
        lmf.contest(m, np.eye(m.p)[1:3], joint=False, ddf="lme4")
    with pytest.raises(LmeFormulaError, match="single number"):
        lmf.contest(m, np.eye(m.p)[1:3], joint=False, rhs=[1.0, 2.0])
    # NaN rows give NA results
    nan_row = lmf.contest(m, np.full(m.p, np.nan), joint=False)
    assert nan_row.isna().all(axis=None)


def test_contest_check_estimability() -> None:
    m = model("cake_missing")
    X = lmf.getME(m, "X")
    assert X.shape[1] == 17  # lme4 dropped one column of 18
    from lmeformula.ddf.contrasts import fixed_terms, full_x

    _, cols = full_x(fixed_terms(m))
    L = np.zeros((2, len(cols)))
    L[0, cols.index("recipeB")] = 1.0
    L[1, -1] = 1.0  # the dropped coefficient alone is not estimable
    tab = lmf.contest(m, L, joint=False, check_estimability=True)
    assert not np.isnan(tab["Estimate"].iloc[0])
    assert tab.iloc[1].isna().all()


def test_get_fstat_ddf_special_cases() -> None:
    assert get_Fstat_ddf(np.array([7.5])) == 7.5
    assert get_Fstat_ddf(np.array([10.0, 10.0, 10.0 + 1e-9])) == pytest.approx(10.0)
    assert get_Fstat_ddf(np.array([10.0, 1.5, 30.0])) == 2.0
    nu = np.array([10.0, 20.0])
    E = float(np.sum(nu / (nu - 2)))
    assert get_Fstat_ddf(nu) == pytest.approx(2 * E / (E - 2))


def test_hessian_warnings_as_lmertest() -> None:
    h = np.diag([4.0, 2.0, -0.5])
    with pytest.warns(HessianWarning, match="Model failed to converge with 1 negative "
                                            "eigenvalue: -5.0e-01"):
        cov = _vcov_varpar(h, 1e-8)
    # the pseudo-inverse keeps the positive eigenvalues only
    np.testing.assert_allclose(cov, 2 * np.diag([0.25, 0.5, 0.0]))
    with pytest.warns(HessianWarning, match="may not have converged with 1 eigenvalue close "
                                            "to zero"):
        _vcov_varpar(np.diag([1.0, 1e-10]), 1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _vcov_varpar(np.eye(2), 1e-8)


def test_doolittle() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 4))
    x = a.T @ a
    L, U = doolittle(x)
    np.testing.assert_allclose(L @ U, x, atol=1e-10)
    assert np.allclose(np.triu(L, 1), 0) and np.allclose(np.diag(L), 1)
    assert np.allclose(np.tril(U, -1), 0)


def test_fit_objects_are_not_modified_by_inference() -> None:
    m = model("orthodont")
    before = (m.devfun.evaluations, np.asarray(m.theta).copy(), m.REMLcrit())
    lmf.coef_table(m)
    lmf.anova(m, type=2, ddf="Kenward-Roger")
    assert m.devfun.evaluations == before[0]
    np.testing.assert_array_equal(np.asarray(m.theta), before[1])
    assert m.REMLcrit() == before[2]


# ---- further cases (tools/R/make_fixtures_lmertest_extra.R) -------------------------------

EXTRA = json.loads((FIXTURES.parent / "lmertest_extra.json").read_text())


def test_prior_weights() -> None:
    ref = EXTRA["weighted"]
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"),
                 weights=np.array(ref["weights"]))
    assert_table(lmf.coef_table(m), ref_table(ref["coef_sat"]))
    assert_table(lmf.coef_table(m, ddf="Kenward-Roger"), ref_table(ref["coef_kr"]))
    assert_table(lmf.anova(m, type=3), ref_table(ref["anova3"]))
    np.testing.assert_allclose(lmf.vcov(m, adjust="Kenward-Roger").to_numpy(),
                               np.array(ref["vcovAdj"]), rtol=1e-4)


def test_intercept_only_model() -> None:
    ref = EXTRA["intercept_only"]
    m = lmf.lmer("Reaction ~ 1 + (1 | Subject)", lmf.datasets.load("sleepstudy"))
    assert_table(lmf.coef_table(m), ref_table(ref["coef_sat"]))
    tab = lmf.anova(m, type=3)
    assert tab.shape == (0, 6)
    assert str(tab) == ref["anova_text"]


def test_model_without_intercept() -> None:
    ref = EXTRA["no_intercept"]
    m = lmf.lmer("angle ~ 0 + recipe + temp + (1 | replicate)", lmf.datasets.load("cake"))
    for type_ in (1, 2, 3):
        assert_table(lmf.anova(m, type=type_), ref_table(ref[f"anova{type_}"]))
    assert_table(lmf.anova(m, ddf="Kenward-Roger"), ref_table(ref["anova3_kr"]))
    assert_table(lmf.ls_means(m), ref_table(ref["ls_means"]))


def test_ranova_uncorrelated_terms() -> None:
    ref = EXTRA["uncorrelated"]
    m = lmf.lmer("Reaction ~ Days + (Days || Subject)", lmf.datasets.load("sleepstudy"))
    assert_table(lmf.ranova(m), ref_table(ref["ranova"]))
    assert_table(lmf.ranova(m, reduce_terms=False), ref_table(ref["ranova_whole"]))


def test_kenward_roger_refuses_huge_random_effects(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmeformula.ddf.kenward_roger as kr

    monkeypatch.setattr(kr, "_MAX_Q", 20)
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"))
    with pytest.raises(LmeFormulaError, match="q = 36 random effects"):
        lmf.coef_table(m, ddf="Kenward-Roger")
    assert lmf.coef_table(m)["df"].notna().all()  # Satterthwaite's still works
