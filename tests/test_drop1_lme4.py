"""lme4's drop1 (``drop1.merMod``), as lmerTest's ``drop1(model, ddf = "lme4")`` reaches it:
each term refitted away, AICs of maximum-likelihood refits, likelihood-ratio tests, the
heading and R's printed table, and R's messages; a glmer fit's drop1, which is lme4's
(fixtures from tools/R/make_fixtures_drop1_lme4.R).

The AICs come from refitted optima: each model's ML deviance is determined to the
optimizer's precision, the excess E over the minimum that either fit may stop at
(``fit_accuracy.excess_bound``, from the criterion's Hessian at the refit's optimum). An AIC
is R's within E, an LRT (a difference of two deviances) within the sum of the two models' E,
a p-value within the χ² density times that; rounding on top (1e-10 relative). Our refits
take lme4's path and agree to about 1e-12; the bounds are what another BLAS kernel's last
bits could change.
"""

from __future__ import annotations

import json
import math
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES
from fit_accuracy import assert_within, criterion_hessian, excess_bound
from scipy import stats

import lmeformula as lmf
from lmeformula.errors import ArgumentError, LmeFormulaError
from lmeformula.glmermod import GlmerMod
from lmeformula.lmer import refitML, update

REF: dict[str, Any] = json.loads((FIXTURES / "drop1_lme4.json").read_text())
# R's relative rounding between two evaluations of the same optimum (the criterion's sums in
# another order): ours and R's agree to about 1e-12
ROUNDING = 1e-10


def as_list(x: Any) -> list[Any]:
    """jsonlite writes vectors of length one as scalars (and empty ones as [])."""
    return x if isinstance(x, list) else [x]


def floats(x: Any) -> np.ndarray:
    """A fixture's column, R's NA (null) as NaN."""
    return np.array([math.nan if v is None else v for v in as_list(x)], dtype=float)


# a GLMM's deviance: glmer's fits of the small models take lme4's Nelder-Mead path and agree
# with lme4's log-likelihood to 1e-9 relative (test_glmer_lme4's bound for them)
GLMM_RTOL = 1e-9


@cache
def _model(name: str) -> lmf.LmerMod:
    spec = REF[name]
    data = lmf.datasets.load(spec["data"])
    if "family" in spec:
        return lmf.glmer(spec["formula"], data, family=spec["family"])
    kwargs = {"weights": spec["weights"]} if "weights" in spec else {}
    return lmf.lmer(spec["formula"], data, REML=spec["REML"], **kwargs)


@cache
def _excess(name: str, term: str | None) -> float:
    """E of the ML refit of the model (term None) or of the model without ``term``: how
    far above its minimum either fit may stop (a GLMM's: GLMM_RTOL of its deviance)."""
    m = _model(name)
    fit = refitML(m if term is None else update(m, f"~ . - {term}"))
    if isinstance(fit, GlmerMod):
        return GLMM_RTOL * abs(fit.deviance())
    theta = np.asarray(fit.theta, dtype=float)
    return excess_bound(criterion_hessian(fit, theta), theta)


def _call_args(args: dict[str, Any] | list[Any]) -> dict[str, Any]:
    """drop1's keyword arguments from a fixture call's (R's empty list() is [])."""
    out = dict(args or {})
    if "scope" in out and "~" not in str(out["scope"]):  # labels (else a formula, as text)
        out["scope"] = as_list(out["scope"])
    if out.get("sumFun") == "deviance_nfixef":
        del out["sumFun"]
        out["sum_fun"] = deviance_nfixef
    return out


def deviance_nfixef(x: lmf.LmerMod, y: lmf.LmerMod | None = None, *, scale: float,
                    k: float) -> dict[str, float]:
    """The fixture's sumFun: the ML deviance and the number of fixed effects of the model
    (the <none> row) or of the refit."""
    fit = x if y is None else y
    return {"deviance": refitML(fit).deviance(), "nfixef": float(len(fit.fixef))}


CALLS = [(name, i) for name, spec in REF.items() for i, call in enumerate(spec["calls"])
         if "error" not in call["result"]]
ERRORS = [(name, i) for name, spec in REF.items() for i, call in enumerate(spec["calls"])
          if "error" in call["result"]]


def _param(name: str, i: int) -> Any:
    # (the largest, carrots_ml's five refits of 1,233 rows with two crossed terms and their
    # Hessians, take under 0.1 s: no test here is slow)
    return pytest.param(name, i, id=f"{name}-{i}")


def _assert_table(name: str, ours: pd.DataFrame, ref: dict[str, Any], k: float) -> None:
    rows = as_list(ref["rownames"])
    assert list(ours.index) == rows
    assert list(ours.columns) == as_list(ref["colnames"])
    terms = [None if r in ("<none>", "1") else r for r in rows]
    excess = np.array([_excess(name, t) for t in terms])
    cols = ref["columns"]
    if "npar" in cols:  # the parameters dropped: exactly (NA in the <none> row)
        np.testing.assert_array_equal(ours["npar"].to_numpy(float), floats(cols["npar"]))
        assert_within(ours["AIC"], floats(cols["AIC"]), ROUNDING, excess)
    if "LRT" in cols:
        lrt = floats(cols["LRT"])
        both = excess + excess[0]
        assert math.isnan(ours["LRT"].iloc[0])
        assert_within(ours["LRT"].iloc[1:], lrt[1:], ROUNDING, both[1:])
        # p: the density times the LRT's bound (the density's largest value over the
        # interval: at an end or at the mode, df - 2)
        pr = floats(cols["Pr(Chi)"])
        npar = floats(cols["npar"])
        np.testing.assert_array_equal(np.isnan(ours["Pr(Chi)"].to_numpy(float)), np.isnan(pr))
        for x, df, d, ours_p, p in zip(lrt[1:], npar[1:], both[1:],
                                       ours["Pr(Chi)"].iloc[1:], pr[1:], strict=True):
            if math.isnan(p):
                continue
            grid = [max(x - d, 0.0), x + d] + ([df - 2] if x - d < df - 2 < x + d else [])
            density = max(float(stats.chi2.pdf(g, df)) for g in grid if g > 0)
            assert abs(ours_p - p) <= density * d + ROUNDING * p, (ours_p, p, density * d)
    if "deviance" in cols:  # the user's sumFun: ML deviances and numbers of coefficients
        assert_within(ours["deviance"], floats(cols["deviance"]), ROUNDING, excess)
        np.testing.assert_array_equal(ours["nfixef"].to_numpy(float), floats(cols["nfixef"]))
    assert ours.heading == as_list(ref["heading"])
    assert str(ours) == ref["text"]


@pytest.mark.parametrize(("name", "i"), [_param(n, i) for n, i in CALLS])
def test_drop1_lme4_as_r(name: str, i: int) -> None:
    # lme4's drop1.merMod: the scope's terms refitted away with update(m, ~ . - term), each
    # model's AIC from logLik(refitML(fit)), npar the parameters dropped, the LRT and its χ²
    # p-value with test = "Chisq" (none where nothing was dropped: temp of recipe * temp,
    # whose refit spans the same columns), k's penalty, scale's heading line, an empty
    # scope's lone row "1", a sumFun of the user's; terms that are calls (I(), log(), poly());
    # no intercept; a scope given as a formula
    call = REF[name]["calls"][i]
    args = _call_args(call["args"])
    m = _model(name)
    ours = lmf.drop1(m, ddf="lme4", **args)
    _assert_table(name, ours, call["result"], float(args.get("k", 2.0)))
    if isinstance(m, GlmerMod):  # R's drop1(glmerMod): lme4's, the default for a GLMM
        pd.testing.assert_frame_equal(lmf.drop1(m, **args).table, ours.table)


@pytest.mark.parametrize("name", [n for n in REF if "error" not in REF[n]["lme4_chisq"]])
def test_drop1_lme4_own_method(name: str) -> None:
    # lme4's own drop1 of the model as an lmerMod is the same table as lmerTest's with
    # ddf = "lme4" (the R script asserts it): printed as R prints it
    ours = lmf.drop1(_model(name), ddf="lme4", test="Chisq")
    assert str(ours) == REF[name]["lme4_chisq"]["text"]


@pytest.mark.parametrize(("name", "i"), [_param(n, i) for n, i in ERRORS])
def test_drop1_lme4_errors(name: str, i: int) -> None:
    # R's messages: a scope that is not among the term labels; test = "user" without a
    # sumFun and a sumFun without it; a test that is not a choice (match.arg's message,
    # naming the argument); a refit on more rows (Income has NA: dropping it keeps them)
    call = REF[name]["calls"][i]
    message = call["result"]["error"]
    with pytest.raises(LmeFormulaError) as err:
        lmf.drop1(_model(name), ddf="lme4", **_call_args(call["args"]))
    assert message in str(err.value)
    if _call_args(call["args"]).get("test") == "F":
        assert isinstance(err.value, ArgumentError)


def test_drop1_lme4_rows_changed() -> None:
    # the NA case's error comes after the refit, as in R: the model without Income uses
    # every row
    m = _model("carrots_na")
    assert m.nobs == REF["carrots_na"]["nobs"]
    assert update(m, "~ . - Income").nobs > m.nobs


def test_drop1_lme4_scope_forms() -> None:
    # a scope as a formula: the fixed-effects term labels of the model's formula updated by
    # it (R's update.formula then terms(getFixedFormula(...))); a single label as a string
    m = _model("cake")
    default = lmf.drop1(m, ddf="lme4")
    by_formula = lmf.drop1(m, ddf="lme4", scope="~ recipe:temp")
    by_label = lmf.drop1(m, ddf="lme4", scope="recipe:temp")
    pd.testing.assert_frame_equal(by_formula.table, default.table)
    pd.testing.assert_frame_equal(by_label.table, default.table)
    assert str(by_formula) == str(default)
    with pytest.raises(LmeFormulaError, match="scope is not a subset of term labels"):
        lmf.drop1(m, ddf="lme4", scope="~ . + Days")


def test_drop1_lme4_trace(capsys: pytest.CaptureFixture[str]) -> None:
    # trace above 1 prints each term before its refit, as R's "trying -term"
    m = _model("cake")
    lmf.drop1(m, ddf="lme4", trace=2, scope=["recipe:temp", "temp"])
    assert capsys.readouterr().out == "trying -recipe:temp\ntrying -temp\n"
    lmf.drop1(m, ddf="lme4", trace=True)
    assert capsys.readouterr().out == ""


def test_drop1_lme4_arguments_by_path() -> None:
    # lme4's arguments belong to ddf = "lme4": lmerTest's F-tests would ignore them, and
    # lme4's refits have no use for force_get_contrasts; said rather than ignored
    m = _model("sleep")
    for kwargs in ({"test": "Chisq"}, {"k": 3.0}, {"scale": 1.0}):
        with pytest.raises(ArgumentError, match="ddf = \"lme4\""):
            lmf.drop1(m, **kwargs)
    with pytest.raises(ArgumentError, match="force_get_contrasts"):
        lmf.drop1(m, ddf="lme4", force_get_contrasts=True)
    with pytest.raises(ArgumentError, match="k must be a number"):
        lmf.drop1(m, ddf="lme4", k="2")
    # the test abbreviated as match.arg allows
    assert list(lmf.drop1(m, ddf="lme4", test="Chi").columns) == ["npar", "AIC", "LRT",
                                                                   "Pr(Chi)"]


def test_drop1_glmer_is_lme4s() -> None:
    # lmerTest's F-tests are for linear mixed models: asked of a glmer fit, an error
    m = _model("cbpp_binomial")
    for ddf in ("Satterthwaite", "Kenward-Roger"):
        with pytest.raises(LmeFormulaError, match="drop1 of a glmer fit is lme4's"):
            lmf.drop1(m, ddf=ddf)


def test_drop1_lme4_needs_r_syntax() -> None:
    # the refits are update(m, "~ . - term"): a formulaic model's formula has no "."
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"),
                 syntax="formulaic")
    with pytest.raises(LmeFormulaError, match="syntax='formulaic'"):
        lmf.drop1(m, ddf="lme4")


def test_drop1_lme4_leaves_the_model() -> None:
    # the refits are new models: the fitted model and its data are untouched
    m = _model("cbpp_weights")
    data = m.call.data.copy()
    theta, crit = np.array(m.theta), m.REMLcrit()
    lmf.drop1(m, ddf="lme4", test="Chisq")
    pd.testing.assert_frame_equal(m.call.data, data)
    np.testing.assert_array_equal(m.theta, theta)
    assert m.REMLcrit() == crit
    assert m.is_REML
