"""What users do after a fit, on cases the other fixtures do not reach (fixtures from
tools/R/make_fixtures_postfit.R): R's format() of columns mixing signs and magnitudes, as in
an lmerTest summary whose df pass 1000, predict()'s error for new levels, lmerTest's summary of a
(x || g) model and lmerTest's drop1."""

from __future__ import annotations

import json
import warnings
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES
from fit_accuracy import assert_text_up_to_ties, at_point

import lmeformula as lmf
from lmeformula.errors import LmeFormulaError, RandomEffectsError
from lmeformula.rformat import format_numbers

REF: dict[str, Any] = json.loads((FIXTURES / "postfit.json").read_text())


def as_list(x: Any) -> list[Any]:
    """jsonlite writes vectors of length one as scalars."""
    return x if isinstance(x, list) else [x]


@pytest.mark.parametrize("case", REF["format"], ids=lambda c: str(as_list(c["x"])))
def test_format_numbers_as_r(case: dict[str, Any]) -> None:
    # R's formatReal compares the fixed width, the widest integer part with its own sign
    # plus the decimals, with the scientific width before nsmall widens the decimals: a
    # negative number narrower than the widest positive one does not add a column
    # (-0.02935 beside 1130.70353 stays fixed at digits = 4)
    assert format_numbers(as_list(case["x"]), case["digits"], case["nsmall"]) == \
        as_list(case["text"])


def test_lmertest_summary_with_large_df() -> None:
    # the coefficient block's Estimate, Std. Error and df are formatted together; with df
    # above 1000 beside a small negative estimate R keeps fixed notation (the bug printed
    # 1.071e+03 etc.); at lme4's θ the text is R's to rounding
    spec = REF["summary"]
    data = pd.DataFrame(spec["data"])
    m = lmf.lmer("y ~ x + I(x^2) + (1 | g)", data, data_name="d")
    at = at_point(m, spec["theta"])
    values = [v for col in spec["coefficients"].values() for v in as_list(col)]
    assert_text_up_to_ties(str(at.summary(ddf="Satterthwaite")), spec["text"], values)


def test_lmertest_summary_keeps_the_formula_as_written() -> None:
    # lmerTest's lmer stores the call as written, so (Days || Subject) stays unexpanded in its
    # summary; lme4's summary (ddf=None) shows lme4's stored, expanded formula
    spec = REF["summary_uncorrelated"]
    data = lmf.datasets.load("sleepstudy")
    m = lmf.lmer("Reaction ~ Days + (Days || Subject)", data, data_name="sleepstudy")
    at = at_point(m, spec["theta"])
    values = [v for col in spec["coefficients"].values() for v in as_list(col)]
    assert_text_up_to_ties(str(at.summary(ddf="Satterthwaite")), spec["text"], values)
    assert "Formula: Reaction ~ Days + ((1 | Subject) + (0 + Days | Subject))" in \
        str(at.summary()).splitlines()


@cache
def _model(name: str) -> lmf.LmerMod:
    if name in ("numeric", "character"):
        ss = lmf.datasets.load("sleepstudy")
        ss = ss.assign(S=ss["Subject"].astype(str).astype(float),
                       C=ss["Subject"].astype(str).astype(object))
        group = {"numeric": "S", "character": "C"}[name]
        return lmf.lmer(f"Reaction ~ Days + (1 | {group})", ss)
    formula, data = {"sleepstudy": ("Reaction ~ Days + (1 | Subject)", "sleepstudy"),
                     "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
                     "pastes": ("strength ~ 1 + (1 | batch/cask)", "Pastes")}[name]
    return lmf.lmer(formula, lmf.datasets.load(data))


@pytest.mark.parametrize("name", list(REF["new_levels"]))
def test_predict_new_levels_message(name: str) -> None:
    # lme4 checks the grouping factors in the order mkNewReTrms sorts the terms on the new
    # data (decreasing numbers of levels there), lists an interaction's new levels in its
    # levels' order (a numeric grouping variable's sorted as numbers), and cuts a long list
    # at 60 characters before its last item
    spec = REF["new_levels"][name]
    newdata = pd.DataFrame(spec["newdata"])
    with pytest.raises(RandomEffectsError) as err:
        _model(spec["model"]).predict(newdata, re_form=spec.get("re_form"))
    assert str(err.value) == spec["error"]["error"]
    # allowed, the same rows predict
    fit = _model(spec["model"]).predict(newdata, re_form=spec.get("re_form"),
                                        allow_new_levels=True)
    assert fit.notna().all()


DROP1 = REF["drop1"]


@cache
def _drop1_model(name: str) -> lmf.LmerMod:
    spec = DROP1[name]
    if spec["data"] == "cake_missing":  # recipe C at 225 degrees left out
        cake = lmf.datasets.load("cake")
        data = cake[~((cake["recipe"].astype(str) == "C") &
                      (cake["temperature"].astype(str) == "225"))]
    else:
        data = lmf.datasets.load(spec["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmf.RankDeficiencyWarning)
        m = lmf.lmer(spec["formula"], data, REML=spec["REML"])
    return at_point(m, spec["theta"])  # lmerTest's numbers at lme4's θ


def _assert_drop1(ours: Any, ref: dict[str, Any]) -> None:
    assert list(ours.index) == as_list(ref.get("rownames") or [])
    assert list(ours.columns) == as_list(ref["colnames"])
    for col in ours.columns:
        theirs = as_list(ref["columns"][col])
        # the Satterthwaite df come from a finite-difference Hessian (lmerTest's numDeriv,
        # ours of the analytic gradient): they agree to about 1e-8
        np.testing.assert_allclose(ours[col].to_numpy(float), np.asarray(theirs, float),
                                   rtol=1e-6, atol=0)
    assert str(ours) == ref["text"]


@pytest.mark.parametrize("name", list(DROP1))
def test_drop1_as_lmertest(name: str) -> None:
    # lmerTest's drop1: F-tests of the marginal terms (none contained in another), the
    # term's rows of the identity as L (type I contrasts for a one-term model), no refit;
    # with a missing cell (X lost columns) the difference between X and the model matrix
    # without the term, NaN for a term with nothing left to test (temp, aliased)
    spec = DROP1[name]
    m = _drop1_model(name)
    _assert_drop1(lmf.drop1(m), spec["satterthwaite"])
    kr = spec["kenward_roger"]
    if "error" in kr:
        with pytest.raises(LmeFormulaError, match=kr["error"]):
            lmf.drop1(m, ddf="Kenward-Roger")
    else:
        _assert_drop1(lmf.drop1(m, ddf="Kenward-Roger"), kr)
    with pytest.raises(LmeFormulaError, match=spec["scope_error"]["error"]):
        lmf.drop1(m, scope=["(Intercept)"])
    if "non_marginal" in spec:
        with pytest.raises(LmeFormulaError, match=spec["non_marginal"]["error"]):
            lmf.drop1(m, scope=["recipe"])
    if "scope_temp" in spec:
        _assert_drop1(lmf.drop1(m, scope=["temp"]), spec["scope_temp"])
    if "forced" in spec:  # lmerTest's get_Ldiffmat2 hypotheses test the same spans
        _assert_drop1(lmf.drop1(m, force_get_contrasts=True), spec["forced"])


REFORM = REF["reform"]


@cache
def _reform_model(name: str) -> lmf.LmerMod:
    formula = {"fm1": "Reaction ~ Days + (Days | Subject)",
               "fm2": "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"}[name]
    m = lmf.lmer(formula, lmf.datasets.load("sleepstudy"))
    return at_point(m, REFORM["theta"][name])


@pytest.mark.parametrize("case", REFORM["cases"],
                         ids=lambda c: f"{c['model']}-{c['re_form']}-{c['newdata']}")
def test_predict_re_form_by_columns(case: dict[str, Any]) -> None:
    # lme4 matches re.form by grouping factor and column names, not by whole terms:
    # ~(1 | Subject) of (Days | Subject) takes the intercepts' modes only, ~(Days | Subject)
    # of (1 | Subject) + (0 + Days | Subject) both terms (we refused both: "not in the model")
    m = _reform_model(case["model"])
    newdata = pd.DataFrame(REFORM["newdata"]) if case["newdata"] else None
    fit = m.predict(newdata, re_form=case["re_form"], allow_new_levels=True)
    np.testing.assert_allclose(fit.to_numpy(), as_list(case["fit"]), rtol=1e-9)


@pytest.mark.parametrize("case", REFORM["errors"], ids=lambda c: c["re_form"])
def test_predict_re_form_errors(case: dict[str, Any]) -> None:
    m = _reform_model(case["model"])
    with pytest.raises(RandomEffectsError) as err:
        m.predict(pd.DataFrame(REFORM["newdata"]), re_form=case["re_form"],
                  allow_new_levels=True)
    assert str(err.value).startswith(case["error"]["error"])
    # standard errors need the model's own terms
    with pytest.raises(LmeFormulaError, match="se_fit"):
        m.predict(re_form="~(1 | Subject)", se_fit=True)


CONFINT = REF["confint_parm"]


def _assert_interval_table(ours: pd.DataFrame, ref: dict[str, Any], rtol: float) -> None:
    assert list(ours.index) == as_list(ref["rownames"])
    assert list(ours.columns) == as_list(ref["colnames"])
    np.testing.assert_allclose(ours.iloc[:, 0].to_numpy(float),
                               np.asarray(as_list(ref["lower"]), float), rtol=rtol)
    np.testing.assert_allclose(ours.iloc[:, 1].to_numpy(float),
                               np.asarray(as_list(ref["upper"]), float), rtol=rtol)


@pytest.mark.parametrize("case", CONFINT["wald"], ids=lambda c: str(c["parm"]))
def test_confint_parm_as_lme4(case: dict[str, Any]) -> None:
    # lme4's get.which: names select rows in the table's order, "theta_" the variance
    # parameters and "beta_" the fixed effects; numbers are 1-based positions
    m = _reform_model("fm1")  # (jsonlite writes R's 5 and 6 as the integers they are)
    _assert_interval_table(lmf.confint(m, parm=case["parm"], method="Wald"), case["table"],
                           1e-9)


def test_confint_profile_parm_order() -> None:
    # profile intervals agree with lme4's to the profile's spline (1e-3, as the other tests)
    case = CONFINT["profile"]
    m = _reform_model("fm1")
    _assert_interval_table(lmf.confint(m, parm=case["parm"]), case["table"], 1e-3)
    with pytest.raises(lmf.ArgumentError, match="not among the parameters"):
        lmf.confint(m, parm=["Day"], method="Wald")
    with pytest.raises(lmf.ArgumentError, match="outside"):
        lmf.confint(m, parm=7, method="Wald")
