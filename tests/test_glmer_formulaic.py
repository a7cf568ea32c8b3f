"""glmer and glFormula with ``syntax="formulaic"``: the same fits, structures and predictions as
the R syntax, glmer's responses (proportions with weights, logical, two-level factor), the
refusal of R's ``cbind`` and the gaussian-identity fallback to lFormula / lmer."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
from lmeformula.errors import DeprecatedUsageWarning, FormulaError, ModelFrameError

CBPP_R = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
CBPP_F = "{incidence / size} ~ period + (1 | herd)"
# log(HEIGHT / 460): the same model as log(HEIGHT), better conditioned (no rescaling warning)
TICKS_R = "TICKS ~ YEAR + log(HEIGHT / 460) + (1 | BROOD) + (1 | LOCATION)"
TICKS_F = "TICKS ~ YEAR + np.log(HEIGHT / 460) + (1 | BROOD) + (1 | LOCATION)"


def _rel(a: object, b: object, rtol: float = 1e-8) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                               rtol=rtol, atol=0)


def _same_structures(r: lmf.LFormula, f: lmf.LFormula) -> None:
    ra, fa = r.reTrms, f.reTrms
    assert (ra.Zt != fa.Zt).nnz == 0 and ra.Zt.shape == fa.Zt.shape
    assert (ra.Lambdat != fa.Lambdat).nnz == 0
    np.testing.assert_array_equal(ra.Lind, fa.Lind)
    np.testing.assert_array_equal(ra.theta, fa.theta)
    np.testing.assert_array_equal(ra.lower, fa.lower)
    np.testing.assert_array_equal(ra.Gp, fa.Gp)
    assert ra.cnms == fa.cnms
    assert list(ra.flist) == list(fa.flist)
    np.testing.assert_array_equal(r.X_values, f.X_values)


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return lmf.datasets.load("cbpp")


@pytest.fixture(scope="module")
def ticks() -> pd.DataFrame:
    return lmf.datasets.load("grouseticks")


@pytest.fixture(scope="module")
def cbpp_fits(cbpp: pd.DataFrame) -> tuple[lmf.GlmerMod, lmf.GlmerMod]:
    r = lmf.glmer(CBPP_R, cbpp, family="binomial")
    f = lmf.glmer(CBPP_F, cbpp, family="binomial", weights="size", syntax="formulaic")
    return r, f


@pytest.fixture(scope="module")
def ticks_fits(ticks: pd.DataFrame) -> tuple[lmf.GlmerMod, lmf.GlmerMod]:
    r = lmf.glmer(TICKS_R, ticks, family="poisson")
    f = lmf.glmer(TICKS_F, ticks, family="poisson", syntax="formulaic")
    return r, f


def test_glformula_formulaic_is_a_glformula_with_design(cbpp: pd.DataFrame) -> None:
    pf = lmf.glFormula(CBPP_F, cbpp, family="binomial", weights="size", syntax="formulaic")
    assert isinstance(pf, lmf.GlFormula)
    assert pf.family.family == "binomial"
    assert pf.design is not None and pf.syntax == "formulaic"
    assert pf.call["syntax"] == "formulaic"
    assert pf.X_names == ["(Intercept)", "period[T.2]", "period[T.3]", "period[T.4]"]
    r = lmf.glFormula(CBPP_R, cbpp, family="binomial")
    _same_structures(r, pf)
    # proportions with weights = trials: R's cbind is successes / totals with totals as weights
    _rel(pf.y, cbpp["incidence"] / cbpp["size"], rtol=1e-15)
    _rel(pf.frame.weights, cbpp["size"], rtol=0)


@pytest.mark.slow
def test_cbpp_proportions_with_weights_equal_r_cbind(
        cbpp_fits: tuple[lmf.GlmerMod, lmf.GlmerMod]) -> None:
    r, f = cbpp_fits
    assert type(f) is type(r)
    _same_structures(r.lformula, f.lformula)
    _rel(f.deviance(), r.deviance())
    _rel(f.theta, r.theta)
    _rel(f.fixef, r.fixef)
    _rel(f.logLik().value, r.logLik().value)
    assert list(f.fixef.index) == ["(Intercept)", "period[T.2]", "period[T.3]", "period[T.4]"]


@pytest.mark.slow
def test_poisson_python_transform_equals_r_spelling(
        ticks_fits: tuple[lmf.GlmerMod, lmf.GlmerMod]) -> None:
    r, f = ticks_fits
    _same_structures(r.lformula, f.lformula)
    _rel(f.deviance(), r.deviance())
    _rel(f.theta, r.theta)
    _rel(f.fixef, r.fixef)
    assert "np.log(HEIGHT / 460)" in list(f.fixef.index)


@pytest.mark.slow
@pytest.mark.parametrize("type_", ["link", "response"])
def test_predict_new_rows_equals_r_syntax(ticks_fits: tuple[lmf.GlmerMod, lmf.GlmerMod],
                                          ticks: pd.DataFrame, type_: str) -> None:
    r, f = ticks_fits
    new = ticks.iloc[[0, 5, 40, 100]].copy()
    new["HEIGHT"] = new["HEIGHT"].to_numpy() + np.array([3.0, -7.0, 11.0, 0.5])
    _rel(f.predict(newdata=new, type=type_), r.predict(newdata=new, type=type_))
    _rel(f.predict(newdata=new, type=type_, re_form="NA"),
         r.predict(newdata=new, type=type_, re_form="NA"))
    # a brood the fit never saw: its random effect is 0 with allow_new_levels
    new2 = new.assign(BROOD=pd.Categorical(["999"] * len(new)))
    _rel(f.predict(newdata=new2, type=type_, allow_new_levels=True),
         r.predict(newdata=new2, type=type_, allow_new_levels=True))
    # fitted values and in-sample predictions agree too
    _rel(f.predict(type=type_), r.predict(type=type_))


@pytest.mark.slow
def test_predict_new_rows_cbpp_both_scales(cbpp_fits: tuple[lmf.GlmerMod, lmf.GlmerMod],
                                           cbpp: pd.DataFrame) -> None:
    r, f = cbpp_fits
    new = cbpp.iloc[[0, 7, 30]]
    for type_ in ("link", "response"):
        _rel(f.predict(newdata=new, type=type_), r.predict(newdata=new, type=type_))


def _binary(ticks: pd.DataFrame) -> pd.DataFrame:
    d = ticks[["BROOD", "YEAR"]].copy()
    d["any"] = (ticks["TICKS"] > 2).to_numpy()
    d["status"] = pd.Categorical(np.where(d["any"], "many", "few"), categories=["few", "many"])
    return d


@pytest.mark.slow
@pytest.mark.parametrize("lhs", ["any", "status"])
def test_logical_and_factor_binomial_response(ticks: pd.DataFrame, lhs: str) -> None:
    d = _binary(ticks)
    rhs = " ~ YEAR + (1 | BROOD)"
    r = lmf.glmer(lhs + rhs, d, family="binomial")
    f = lmf.glmer(lhs + rhs, d, family="binomial", syntax="formulaic")
    np.testing.assert_array_equal(f.lformula.y, d["any"].to_numpy(dtype=float))
    _same_structures(r.lformula, f.lformula)
    assert f.theta.iloc[0] > 1  # not a boundary fit: the comparison means something
    _rel(f.deviance(), r.deviance())
    _rel(f.theta, r.theta)
    _rel(f.fixef, r.fixef)


def test_factor_response_first_level_is_failure(ticks: pd.DataFrame) -> None:
    d = _binary(ticks)
    d["status"] = d["status"].cat.reorder_categories(["many", "few"])
    pf = lmf.glFormula("status ~ YEAR + (1 | BROOD)", d, family="binomial",
                       syntax="formulaic")
    np.testing.assert_array_equal(pf.y, (~d["any"]).to_numpy(dtype=float))


def test_factor_response_refused_for_poisson(ticks: pd.DataFrame) -> None:
    with pytest.raises(ModelFrameError, match="response must be numeric"):
        lmf.glFormula("status ~ YEAR + (1 | BROOD)", _binary(ticks), family="poisson",
                      syntax="formulaic")


def test_cbind_is_r_syntax_only(cbpp: pd.DataFrame) -> None:
    with pytest.raises(FormulaError, match=r"cbind.*syntax='R'.*weights="):
        lmf.glmer(CBPP_R, cbpp, family="binomial", syntax="formulaic")
    with pytest.raises(FormulaError, match="formulaic has no cbind"):
        lmf.glFormula(CBPP_R, cbpp, family="binomial", syntax="formulaic")


def test_ratio_written_with_slash_gets_a_hint(cbpp: pd.DataFrame) -> None:
    with pytest.raises(ModelFrameError, match=r"\{incidence/size\}"):
        lmf.glFormula("incidence/size ~ period + (1 | herd)", cbpp, family="binomial",
                      weights="size", syntax="formulaic")


def test_unknown_syntax_refused(cbpp: pd.DataFrame) -> None:
    with pytest.raises(FormulaError, match="syntax must be"):
        lmf.glFormula(CBPP_F, cbpp, family="binomial", weights="size", syntax="python")


def test_glmer_identifiability_checks_allow_n(cbpp: pd.DataFrame) -> None:
    # one level per observation: an error for lmer (allow.n = FALSE), allowed by glmer
    d = cbpp.assign(obs=pd.Categorical(np.arange(len(cbpp))))
    formula = "{incidence / size} ~ period + (1 | herd) + (1 | obs)"
    pf = lmf.glFormula(formula, d, family="binomial", weights="size", syntax="formulaic")
    r = lmf.glFormula("cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs)",
                      d, family="binomial")
    _same_structures(r, pf)
    with pytest.raises(ValueError, match="number of levels"):
        lmf.lFormula(formula, d, weights="size", syntax="formulaic")


def test_gaussian_identity_falls_back_to_lformula(cbpp: pd.DataFrame) -> None:
    formula = "{incidence / size} ~ period + (1 | herd)"
    pf = lmf.glFormula(formula, cbpp, family="gaussian", syntax="formulaic")
    assert not isinstance(pf, lmf.GlFormula)
    ref = lmf.lFormula(formula, cbpp, syntax="formulaic")
    assert type(pf) is type(ref) and pf.design is not None
    _same_structures(ref, pf)
    with pytest.warns(DeprecatedUsageWarning):
        m = lmf.glmer(formula, cbpp, family="gaussian", syntax="formulaic")
    ml = lmf.lmer(formula, cbpp, syntax="formulaic")
    assert not getattr(m, "is_glmm", False)
    _rel(m.theta, ml.theta)
    _rel(m.fixef, ml.fixef)


@pytest.mark.slow
def test_update_keeps_formulaic_syntax(cbpp_fits: tuple[lmf.GlmerMod, lmf.GlmerMod],
                                       cbpp: pd.DataFrame) -> None:
    r, f = cbpp_fits
    again = lmf.update(f)
    assert again.lformula.call["syntax"] == "formulaic"
    _rel(again.deviance(), f.deviance())
    smaller = lmf.update(f, "{incidence / size} ~ 1 + (1 | herd)")
    ref = lmf.update(r, ". ~ . - period")
    assert smaller.lformula.design is not None
    _rel(smaller.deviance(), ref.deviance())
    _rel(smaller.theta, ref.theta)
    probit = lmf.update(f, family=lmf.binomial(link="probit"))
    ref_probit = lmf.update(r, family=lmf.binomial(link="probit"))
    _rel(probit.deviance(), ref_probit.deviance())


@pytest.mark.slow
def test_refit_keeps_design(cbpp_fits: tuple[lmf.GlmerMod, lmf.GlmerMod],
                            cbpp: pd.DataFrame) -> None:
    r, f = cbpp_fits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = lmf.refit(f, np.asarray(f.lformula.y))
        again_r = lmf.refit(r, np.asarray(r.lformula.y))
    assert again.lformula.design is f.lformula.design
    # lme4's refit re-runs the second stage from the fit with Nelder-Mead's default steps,
    # so it moves from the fit by about the optimizer's tolerance (3e-5 in the deviance
    # here; tests/test_glmer_refit_lme4.py): the formulaic model's refit is the R-syntax
    # model's refit
    _rel(again.deviance(), again_r.deviance(), rtol=1e-6)
    _rel(again.deviance(), f.deviance(), rtol=1e-4)
    new = cbpp.iloc[[1, 2]]
    _rel(again.predict(newdata=new), again_r.predict(newdata=new), rtol=1e-5)
