"""GLM families and links (R's definitions, lme4's clamps), glFormula's responses, glmer's
refusals with R's messages, and the deviance functions at given parameters against lme4."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES
from glmer_cases import GLMER, data_of
from scipy import stats

import lmeformula as lmf
from lmeformula.errors import LmeFormulaError
from lmeformula.families import get_family, logistic_parts, make_link
from lmeformula.pirls import ghrule

MISC = json.loads((GLMER / "misc.json").read_text())
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
EPS = np.finfo(float).eps

LINKS = ["logit", "probit", "cauchit", "cloglog", "identity", "log", "sqrt", "1/mu^2",
         "inverse"]


def _mu_grid(link: str) -> np.ndarray:
    if link in ("logit", "probit", "cauchit", "cloglog"):
        return np.array([0.01, 0.2, 0.5, 0.8, 0.99])
    return np.array([0.3, 1.0, 2.5, 7.0])


@pytest.mark.parametrize("link", LINKS)
def test_link_inverse_and_derivative(link: str) -> None:
    lk = make_link(link)
    mu = _mu_grid(link)
    eta = lk.linkfun(mu)
    np.testing.assert_allclose(lk.linkinv(eta), mu, rtol=1e-12)
    h = 1e-6
    numeric = (lk.linkinv(eta + h) - lk.linkinv(eta - h)) / (2 * h)
    np.testing.assert_allclose(lk.mu_eta(eta), numeric, rtol=1e-6)


def test_lme4_clamps() -> None:
    # lme4's glmFamily: inverse links kept inside (eps, 1 - eps), dμ/dη and V(μ) floored
    fam = lmf.binomial()
    assert fam.linkinv(np.array([-800.0]))[0] == EPS
    assert fam.linkinv(np.array([800.0]))[0] == 1 - EPS
    assert fam.mu_eta(np.array([800.0]))[0] == EPS
    assert fam.variance(np.array([0.0]))[0] == EPS
    assert lmf.poisson().linkinv(np.array([-800.0]))[0] == EPS
    assert lmf.binomial("probit").linkinv(np.array([40.0]))[0] == 1 - EPS


def test_lme4_family_functions() -> None:
    """lme4 1.1-31's own inverse links, dμ/dη and variances (its C++ glmFamily, through
    lme4::glmFamily) on a grid of η into the clamps, to rounding (rtol 1e-12: R's and
    scipy's normal and Cauchy tails differ by up to 3e-13 relative). The logit's dμ/dη is
    R's dlogis, accurate where μ is near 1 (at η = 20 it is 3.6e-8 below μ (1 - μ))."""
    ref = json.loads((FIXTURES / "glmfamily.json").read_text())  # (make_fixtures_glmer_fuzz2.R)
    for key, fx in ref.items():
        fam = getattr(lmf, fx["family"].replace(".", "_"))(link=fx["link"])
        eta = np.asarray(fx["eta"], dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (no overflow warnings at η = ±800)
            mu = fam.linkinv(eta)
            for what, ours in (("linkInv", mu), ("muEta", fam.mu_eta(eta)),
                               ("variance", fam.variance(mu))):
                np.testing.assert_allclose(ours, fx[what], rtol=1e-12, atol=0,
                                           err_msg=f"{key} {what}")
    # the PIRLS response's logistic (logistic_parts, with clamp flags) is the family's
    logit = ref["binomial_logit"]
    fam = lmf.binomial()
    eta = np.asarray(logit["eta"], dtype=float)
    mu, me, var, inside = logistic_parts(eta)
    assert not inside
    np.testing.assert_array_equal(mu, fam.linkinv(eta))
    np.testing.assert_array_equal(me, fam.mu_eta(eta))
    np.testing.assert_array_equal(var, fam.variance(mu))
    mid = np.abs(eta) <= 30
    mu2, me2, var2, inside2 = logistic_parts(eta[mid])
    assert inside2
    np.testing.assert_array_equal(me2, fam.mu_eta(eta[mid]))
    np.testing.assert_array_equal(var2, fam.variance(mu2))


def test_variance_and_deviance_residuals() -> None:
    y = np.array([0.0, 1.0, 2.0, 5.0])
    mu = np.array([0.5, 1.5, 2.0, 3.0])
    w = np.array([1.0, 2.0, 1.0, 0.5])
    pois = lmf.poisson()
    np.testing.assert_allclose(pois.variance(mu), mu)
    expected = 2 * w * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - (y - mu))
    np.testing.assert_allclose(pois.dev_resids(y, mu, w), expected)
    # the Poisson aic is -2 log-likelihood
    assert pois.aic(y, np.ones(4), mu, w, 0.0) == pytest.approx(
        -2 * np.sum(w * stats.poisson.logpmf(y, mu)))
    gam = lmf.Gamma(link="log")
    yg = np.array([0.5, 1.2, 3.0])
    mg = np.array([1.0, 1.0, 2.0])
    dev = gam.dev_resids(yg, mg, np.ones(3))
    np.testing.assert_allclose(dev, -2 * (np.log(yg / mg) - (yg - mg) / mg))
    disp = dev.sum() / 3
    assert gam.aic(yg, np.ones(3), mg, np.ones(3), dev.sum()) == pytest.approx(
        -2 * np.sum(stats.gamma.logpdf(yg, 1 / disp, scale=mg * disp)) + 2)
    binom = lmf.binomial()
    yb = np.array([0.0, 0.25, 1.0])
    mb = np.array([0.3, 0.4, 0.9])
    nb = np.array([1.0, 4.0, 2.0])
    assert binom.aic(yb, nb, mb, nb, 0.0) == pytest.approx(
        -2 * np.sum(stats.binom.logpmf(np.round(nb * yb), nb, mb)))
    ig = lmf.inverse_gaussian()
    np.testing.assert_allclose(ig.dev_resids(yg, mg, np.ones(3)), (yg - mg) ** 2 / (yg * mg**2))
    np.testing.assert_allclose(ig.variance(mg), mg**3)


def test_initialize_rules() -> None:
    y, w, n, mu = lmf.binomial().initialize(np.array([[2.0, 3.0], [0.0, 4.0]]), np.ones(2))
    np.testing.assert_allclose(y, [0.4, 0.0])
    np.testing.assert_allclose(w, [5.0, 4.0])
    np.testing.assert_allclose(n, [5.0, 4.0])
    np.testing.assert_allclose(mu, [(5 * 0.4 + 0.5) / 6, 0.5 / 5])
    _, _, _, mu = lmf.poisson().initialize(np.array([0.0, 3.0]), np.ones(2))
    np.testing.assert_allclose(mu, [0.1, 3.1])
    with pytest.warns(lmf.LmeFormulaWarning, match="non-integer #successes"):
        lmf.binomial().initialize(np.array([0.3]), np.array([1.0]))
    with pytest.raises(LmeFormulaError, match="cannot find valid starting values"):
        lmf.gaussian(link="log").initialize(np.array([0.0, 1.0]), np.ones(2))


def test_family_names_and_links() -> None:
    assert get_family("binomial").link.name == "logit"
    assert get_family("inverse.gaussian").link.name == "1/mu^2"
    assert lmf.Gamma().link.name == "inverse"
    assert lmf.binomial(link="sqrt").link.name == MISC["refusals"]["sqrt_link_accepted"]
    with pytest.raises(LmeFormulaError) as err:
        lmf.binomial(link="foo")
    assert str(err.value) == MISC["refusals"]["bad_link"]["error"]
    with pytest.raises(LmeFormulaError, match="not recognised"):
        get_family("negbin")
    assert repr(lmf.poisson("sqrt")) == "poisson(link='sqrt')"


def test_ghrule_integrates_normal_moments() -> None:
    g = ghrule(7)
    z, w = g[:, 0], g[:, 1]
    assert w.sum() == pytest.approx(1.0)
    assert np.sum(w * z**2) == pytest.approx(1.0)
    assert np.sum(w * z**4) == pytest.approx(3.0)
    np.testing.assert_allclose(g[:, 2], stats.norm.logpdf(z))
    assert ghrule(0).shape == (0, 3)


# -- glFormula ---------------------------------------------------------------------------------

def test_glformula_structures_match_lformula() -> None:
    cb = data_of("cbpp")
    gf = lmf.glFormula(CBPP, cb, family="binomial")
    lf = lmf.lFormula("incidence ~ period + (1 | herd)", cb)
    assert isinstance(gf, lmf.GlFormula)
    assert gf.family.family == "binomial"
    assert gf.X_names == lf.X_names
    assert (gf.reTrms.Zt != lf.reTrms.Zt).nnz == 0
    np.testing.assert_array_equal(gf.y, cb[["incidence"]].assign(f=cb["size"] - cb["incidence"]))
    # gaussian with the identity link is lFormula's result, as in lme4
    assert type(lmf.glFormula("incidence ~ period + (1 | herd)", cb)) is lmf.LFormula


def test_glmer_identity_gaussian_redirects_to_lmer() -> None:
    cb = data_of("cbpp")
    # lme4's lmer fit of this model is singular too (the herd variance is estimated at 0)
    with pytest.warns(lmf.DeprecatedUsageWarning, match="shortcut to lmer"), \
            pytest.warns(lmf.SingularFitWarning):
        m = lmf.glmer("incidence ~ period + (1 | herd)", cb, family="gaussian")
    assert m.isSingular()
    assert isinstance(m, lmf.LmerMod) and not isinstance(m, lmf.GlmerMod)


def test_glmer_nobs_checks_allow_n() -> None:
    # glmer allows as many levels as observations (grouseticks' INDEX); lmer refuses them
    gt = lmf.datasets.load("grouseticks")
    gf = lmf.glFormula("TICKS ~ YEAR + (1 | INDEX)", gt, family="poisson")
    assert gf.reTrms.Zt.shape[0] == len(gt)
    with pytest.raises(LmeFormulaError, match="must be < number of observations"):
        lmf.lFormula("TICKS ~ YEAR + (1 | INDEX)", gt)


# -- refusals ----------------------------------------------------------------------------------

def _refusal(key: str) -> str:
    return MISC["refusals"][key]["error"]  # type: ignore[no-any-return]


def test_refusals_with_lme4_messages() -> None:
    cb = data_of("cbpp")
    gt = lmf.datasets.load("grouseticks")
    slope = data_of("binomial_slope")
    gam = data_of("gamma_log")
    cases = [
        ("counts_no_weights", lambda: lmf.glmer("incidence ~ period + (1 | herd)", cb,
                                                "binomial")),
        ("nagq_two_terms", lambda: lmf.glmer(
            "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", gt,
            "poisson", nAGQ=2)),
        ("nagq_slope", lambda: lmf.glmer("y ~ x + (x | g)", slope, "binomial", nAGQ=3)),
        ("poisson_negative", lambda: lmf.glmer("I(-TICKS) ~ YEAR + (1 | BROOD)", gt,
                                               "poisson")),
        ("gamma_nonpositive", lambda: lmf.glmer("I(y - 10) ~ x + (1 | g)", gam, "Gamma")),
        ("factor_poisson", lambda: lmf.glmer("period ~ 1 + (1 | herd)", cb, "poisson")),
    ]
    for key, call in cases:
        with pytest.raises(LmeFormulaError) as err:
            call()
        assert str(err.value) == _refusal(key), key


def test_more_refusals() -> None:
    cb = data_of("cbpp")
    with pytest.raises(LmeFormulaError, match="matrix-valued"):
        lmf.glmer("cbind(incidence, size) ~ period + (1 | herd)", cb, "poisson")
    with pytest.raises(LmeFormulaError, match="nAGQ"):
        lmf.glmer(CBPP, cb, "binomial", nAGQ=101)
    with pytest.raises(LmeFormulaError, match="glmerControl"):
        lmf.glmer(CBPP, cb, "binomial", control=lmf.LmerControl())
    with pytest.raises(LmeFormulaError, match="unknown glmerControl option"):
        lmf.glmer(CBPP, cb, "binomial", control={"tolPwrs": 1e-7})
    with pytest.raises(LmeFormulaError, match="restart_edge"):
        lmf.glmerControl(restart_edge=True)


# -- deviance functions at given parameters ------------------------------------------------------

def test_nagq0_deviance_function_to_round_off() -> None:
    ref = MISC["devfuns"]["nagq0"]
    dev = lmf.glmer(CBPP, data_of("cbpp"), "binomial", nAGQ=0, devFunOnly=True)
    for theta, value in zip(ref["theta"], ref["value"], strict=True):
        assert dev(np.array([theta])) == pytest.approx(value, rel=1e-10)


@pytest.mark.parametrize(("key", "nagq"), [("laplace", 1), ("agq5", 5)])
def test_second_stage_deviance_function(key: str, nagq: int) -> None:
    ref = MISC["devfuns"][key]
    dev = lmf.glmer(CBPP, data_of("cbpp"), "binomial", nAGQ=nagq, devFunOnly=True)
    assert dev.lower.shape == (5,)
    # PIRLS starts from the first stage's linear predictor (lme4's from minqa's optimum,
    # ours from NLopt's): both stop within tolPwrss of the mode
    assert dev(np.array(ref["pars"])) == pytest.approx(ref["value"], rel=1e-8)


@pytest.mark.slow
def test_laplace_against_quadrature_scale() -> None:
    # lme4's convention: with nAGQ > 1 the deviance leaves out the saturated constant,
    # so the log-likelihoods differ by far more than the estimates do
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m1 = lmf.glmer(CBPP, data_of("cbpp"), "binomial")
        m5 = lmf.glmer(CBPP, data_of("cbpp"), "binomial", nAGQ=5)
    assert m1.logLik().value == pytest.approx(-92.03, abs=0.01)
    assert m5.logLik().value == pytest.approx(-50.01, abs=0.01)
    np.testing.assert_allclose(m5.fixef, m1.fixef, atol=2e-3)


def test_single_term_quadrature_with_one_point_is_laplace() -> None:
    cb = data_of("cbpp")
    d1 = lmf.glmer(CBPP, cb, "binomial", nAGQ=1, devFunOnly=True)
    pars = np.array(MISC["devfuns"]["laplace"]["pars"])
    laplace = d1(pars)
    # the quadrature formula with the deviance residuals differs from the Laplace one by
    # the family's saturated constant, which does not depend on the parameters
    d2 = lmf.glmer(CBPP, cb, "binomial", nAGQ=2, devFunOnly=True)
    d3 = lmf.glmer(CBPP, cb, "binomial", nAGQ=3, devFunOnly=True)
    pars2 = pars + np.array([0.1, 0, 0, 0, 0.2])
    shift = d1(pars2) - laplace
    assert d3(pars2) - d3(pars) == pytest.approx(shift, abs=0.05)
    assert math.isfinite(d2(pars))


@pytest.mark.parametrize(("data", "formula", "family"), [
    ("cbpp", CBPP, "binomial"),
    ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
     "poisson"),
])
def test_pirls_reweights_without_rebuilding_structure(data: str, formula: str,
                                                      family: str) -> None:
    from lmeformula.pls import make_problem

    d = data_of("cbpp") if data == "cbpp" else lmf.datasets.load(data)
    dev = lmf.glmer(formula, d, family, nAGQ=0, devFunOnly=True)
    first = dev.full
    for theta in (0.7, 0.2):
        value = dev(np.full(dev.ntheta, theta))
        assert dev.full is first and dev.state.iterations >= 2
        # the re-weighted problem gives what a problem built afresh with these weights gives
        s = dev.state
        fresh = make_problem(dev.Zt, dev.X, s.z, s.w, dev.shapes, None)
        f = fresh.factor(s.theta)
        assert f.ldL2 == pytest.approx(s.ldL2, rel=1e-10)
        beta, u = fresh.solve(f)
        np.testing.assert_allclose(beta, s.beta, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(u, s.u, rtol=1e-8, atol=1e-10)
        assert value == pytest.approx(s.ldL2 + s.u @ s.u + dev.resp.aic(), rel=1e-14)


def test_proportion_response_without_weights_refused_but_with_weights_fits() -> None:
    cb = data_of("cbpp")
    prop = cb.assign(prop=cb["incidence"] / cb["size"])
    lmf.glFormula("prop ~ period + (1 | herd)", prop, "binomial")  # fine as proportions
    # the fit warns as R's binomial()$initialize does, and, as one trial each, the
    # proportions carry almost no information: a singular fit
    with pytest.warns(lmf.LmeFormulaWarning, match="non-integer"), \
            pytest.warns(lmf.SingularFitWarning):
        lmf.glmer("prop ~ period + (1 | herd)", prop, "binomial", nAGQ=0)
    m = lmf.glmer("prop ~ period + (1 | herd)", prop, "binomial", weights="size", nAGQ=0)
    assert isinstance(m, lmf.GlmerMod)
    assert pd.Series(m.weights).sum() == cb["size"].sum()
