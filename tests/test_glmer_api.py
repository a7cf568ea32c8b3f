"""glmer's model API beyond the fixture comparisons: anova between GLMMs (against lme4),
refit, update, simulate, predict on new data, getME, control options and starting values."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from glmer_cases import GLMER, data_of, fit

import lmeformula as lmf
from lmeformula.errors import ArgumentError, LmeFormulaError

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
ANOVA = json.loads((GLMER / "anova.json").read_text())


@pytest.fixture(scope="module")
def m_cbpp() -> lmf.GlmerMod:
    return fit("cbpp")


@pytest.fixture(scope="module")
def m_null() -> lmf.GlmerMod:
    return lmf.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", data_of("cbpp"),
                     "binomial", data_name="cb")


@pytest.mark.slow
def test_anova_lrt_between_glmms(m_cbpp: lmf.GlmerMod, m_null: lmf.GlmerMod) -> None:
    tab = lmf.anova(m_cbpp_null=m_null, m_cbpp=m_cbpp)
    assert str(tab) == ANOVA["text"]
    for col in ("npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"):
        ours = tab.table[col].to_numpy(dtype=float)
        ref = np.array(ANOVA["columns"][col], dtype=float)
        np.testing.assert_allclose(ours, ref, rtol=1e-6, equal_nan=True)
    assert m_null.logLik().value == pytest.approx(ANOVA["null_logLik"], rel=1e-9)


REFIT = json.loads((GLMER.parent / "glmer_refit.json").read_text())


@pytest.mark.slow
def test_refit_same_response_returns_the_fit(m_cbpp: lmf.GlmerMod) -> None:
    # lme4's refit of a glmerMod re-runs only the second stage, from the fitted (θ, β) with
    # Nelder-Mead's default initial steps (0.02, not glmer's second-stage steps): with the
    # same response it takes another 189 evaluations and stops elsewhere within the
    # optimizer's tolerance (about 5e-4 in β on cbpp), not at the fit. So the refit is
    # lme4's refit (tools/R/make_fixtures_glmer_refit.R), near the fit but not on it.
    again = lmf.refit(m_cbpp, np.asarray(m_cbpp.lformula.y))
    ref = REFIT["cbpp_same"]["refit"]
    np.testing.assert_allclose(again.fixef, ref["beta"], atol=1e-7)
    np.testing.assert_allclose(again.theta, ref["theta"], atol=1e-7)
    assert again.optinfo.feval == ref["feval"]
    np.testing.assert_allclose(again.optinfo.par, m_cbpp.optinfo.par, atol=1e-3)
    assert np.max(np.abs(again.optinfo.par - m_cbpp.optinfo.par)) > 1e-5  # (it moves)
    # (uphill: lme4's -92.02635 against the fit's -92.02657)
    assert again.logLik().value == pytest.approx(ref["logLik"], abs=1e-8)
    assert m_cbpp.logLik().value < again.logLik().value < m_cbpp.logLik().value + 1e-3


@pytest.mark.slow
def test_refit_new_response_changes_fit(m_cbpp: lmf.GlmerMod) -> None:
    y = np.asarray(m_cbpp.lformula.y).copy()
    y[:, 0] = np.maximum(y[:, 0] - 1, 0)
    y[:, 1] = m_cbpp.lformula.y[:, 0] + m_cbpp.lformula.y[:, 1] - y[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a flat likelihood: the gradient check warns
        other = lmf.refit(m_cbpp, y)
        direct = lmf.glmer(CBPP, data_of("cbpp").assign(incidence=y[:, 0]), "binomial")
    # lme4's refit starts at the fit's (θ, β) and a direct glmer at its first stage's
    # optimum: on this flat likelihood they stop about 2e-3 apart in β, in lme4 as here
    # (tools/R/make_fixtures_glmer_refit.R, cbpp_shift), so each is compared with lme4's
    ref = REFIT["cbpp_shift"]
    np.testing.assert_array_equal(y, np.asarray(ref["newresp"], float))
    np.testing.assert_allclose(other.fixef, ref["refit"]["beta"], atol=1e-7)
    assert other.optinfo.feval == ref["refit"]["feval"]
    np.testing.assert_allclose(direct.fixef, ref["direct"]["beta"], atol=1e-7)
    np.testing.assert_allclose(other.fixef, direct.fixef, atol=5e-3)
    assert np.max(np.abs(other.fixef.to_numpy() - m_cbpp.fixef.to_numpy())) > 0.1
    with pytest.raises(LmeFormulaError, match="shape"):
        lmf.refit(m_cbpp, y[:, 0])


@pytest.mark.slow
def test_update_formula_and_arguments(m_cbpp: lmf.GlmerMod, m_null: lmf.GlmerMod) -> None:
    smaller = lmf.update(m_cbpp, ". ~ . - period")
    np.testing.assert_allclose(smaller.optinfo.par, m_null.optinfo.par, rtol=1e-10)
    probit = lmf.update(m_cbpp, family=lmf.binomial(link="probit"))
    np.testing.assert_allclose(probit.fixef, fit("cbpp_probit").fixef, rtol=1e-8)
    agq = lmf.update(m_cbpp, nAGQ=5)
    assert agq.nAGQ == 5
    np.testing.assert_allclose(agq.fixef, fit("cbpp_nagq5").fixef, rtol=1e-8)


def test_update_refuses_reml_as_r(m_cbpp: lmf.GlmerMod) -> None:
    # R: update(glmer fit, REML = TRUE) -> "unused argument (REML = TRUE)"; refit and update
    # are generic functions and a glmerMod's are registered by lmeformula.glmer
    with pytest.raises(ArgumentError, match=r"^unused argument \(REML = TRUE\)$"):
        lmf.update(m_cbpp, REML=True)
    assert lmf.update.dispatch(lmf.GlmerMod) is not lmf.update.dispatch(lmf.LmerMod)
    assert lmf.refit.dispatch(lmf.GlmerMod) is not lmf.refit.dispatch(lmf.LmerMod)


def test_predict_newdata_and_new_levels(m_cbpp: lmf.GlmerMod) -> None:
    cb = data_of("cbpp")
    nd = cb.iloc[:3][["period", "herd"]].copy()
    np.testing.assert_allclose(m_cbpp.predict(newdata=nd), m_cbpp.predict().iloc[:3])
    nd_new = pd.DataFrame({"period": ["1", "2"], "herd": ["1", "99"]})
    with pytest.raises(LmeFormulaError):
        m_cbpp.predict(newdata=nd_new)
    link = m_cbpp.predict(newdata=nd_new, allow_new_levels=True)
    beta = m_cbpp.fixef
    assert link.iloc[1] == pytest.approx(beta["(Intercept)"] + beta["period2"])
    resp = lmf.predict(m_cbpp, newdata=nd_new, allow_new_levels=True, type="response")
    np.testing.assert_allclose(resp, 1 / (1 + np.exp(-link.to_numpy())))
    with pytest.raises(LmeFormulaError, match="type"):
        m_cbpp.predict(type="probability")


@pytest.mark.slow
def test_simulate_draws_from_the_family(m_cbpp: lmf.GlmerMod) -> None:
    sims = m_cbpp.simulate(200, rng=42)
    assert sims.shape == (56, 200)
    size = data_of("cbpp")["size"].to_numpy()
    counts = sims.to_numpy() * size[:, None]
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)  # whole numbers of cases
    assert ((sims >= 0) & (sims <= 1)).all().all()
    # conditional on u the mean is the fitted μ
    cond = m_cbpp.simulate(400, rng=1, use_u=True).to_numpy().mean(axis=1)
    np.testing.assert_allclose(cond, m_cbpp.fitted(), atol=0.06)
    pois = fit("poisson_offset").simulate(3, rng=0)
    assert (pois.to_numpy() == np.round(pois.to_numpy())).all()
    gam = fit("gamma_log").simulate(3, rng=0)
    assert (gam.to_numpy() > 0).all()


def test_simulate_on_new_data() -> None:
    """On new rows: their linear predictor (lme4's predict) and fresh effects for their
    levels; conditional on u (use_u) the draws average to the predicted μ; a level the fit
    never saw is an error unless allowed; binomial totals of new rows are not known."""
    rng = np.random.default_rng(11)
    n, ng = 3000, 30
    g = rng.integers(0, ng, n)
    x = rng.normal(size=n)
    mu = np.exp(0.3 + 0.5 * x + rng.normal(scale=0.4, size=ng)[g])
    df = pd.DataFrame({"y": rng.poisson(mu), "x": x, "g": [f"g{i}" for i in g]})
    m = lmf.glmer("y ~ x + (1 | g)", df, family="poisson")
    new = pd.DataFrame({"x": [-1.0, 0.0, 1.5], "g": ["g3", "g7", "g3"]}, index=[10, 20, 30])
    sims = m.simulate(4000, rng=5, newdata=new, use_u=True)
    assert sims.shape == (3, 4000) and list(sims.index) == [10, 20, 30]
    assert (sims.to_numpy() == np.round(sims.to_numpy())).all()
    expected = m.predict(new, type="response").to_numpy()
    np.testing.assert_allclose(sims.to_numpy().mean(axis=1), expected, rtol=0.05)
    # redrawn effects (the default): the same fixed part, more spread across simulations
    free = m.simulate(4000, rng=6, newdata=new).to_numpy()
    assert free.var(axis=1)[0] > sims.to_numpy().var(axis=1)[0]
    with pytest.raises(lmf.RandomEffectsError, match="new levels"):
        m.simulate(2, rng=1, newdata=pd.DataFrame({"x": [0.0], "g": ["zz"]}))
    fresh = m.simulate(2, rng=1, newdata=pd.DataFrame({"x": [0.0], "g": ["zz"]}),
                       allow_new_levels=True)
    assert fresh.shape == (1, 2)
    verbagg = lmf.datasets.load("VerbAgg").iloc[:2000]
    binary = lmf.glmer("r2 ~ Anger + Gender + (1 | id)", verbagg, family="binomial")
    draws = binary.simulate(5, rng=2, newdata=verbagg.iloc[:4])
    assert set(np.unique(draws.to_numpy())) <= {0.0, 1.0}


def test_accessor_functions_dispatch(m_cbpp: lmf.GlmerMod) -> None:
    assert lmf.deviance(m_cbpp) == pytest.approx(float(np.sum(lmf.residuals(m_cbpp) ** 2)))
    assert lmf.sigma(m_cbpp) == 1.0
    assert lmf.nobs(m_cbpp) == 56
    assert lmf.getME(m_cbpp, "glmer.nb.theta") != lmf.getME(m_cbpp, "glmer.nb.theta")  # NaN
    assert isinstance(lmf.getME(m_cbpp, "devfun"), lmf.GlmerDevfun)
    every = lmf.getME(m_cbpp, "ALL")
    assert every["L"].shape == (15, 15)
    assert every["REML"] == 0
    np.testing.assert_allclose(lmf.fixef(m_cbpp), m_cbpp.fixef)
    assert set(lmf.coef(m_cbpp)["herd"].columns) == set(m_cbpp.fixef.index)
    with pytest.raises(LmeFormulaError):
        lmf.REMLcrit(m_cbpp)


@pytest.mark.slow
def test_control_options() -> None:
    cb = data_of("cbpp")
    ref = fit("cbpp")
    # one optimizer name for both stages; nloptwrap's BOBYQA reaches the same optimum
    both = lmf.glmer(CBPP, cb, "binomial", control={"optimizer": "bobyqa"})
    np.testing.assert_allclose(both.optinfo.par, ref.optinfo.par, atol=2e-4)
    assert both.optinfo.optimizer == "bobyqa"
    # without the nAGQ = 0 first step, stage 2 starts from β = 0 and still converges
    direct = lmf.glmer(CBPP, cb, "binomial", control={"nAGQ0initStep": False})
    np.testing.assert_allclose(direct.optinfo.par, ref.optinfo.par, atol=2e-3)
    # lme4's PIRLS stops on a relative change of the penalised deviance below tolPwrss,
    # where the modes are still ~sqrt(tolPwrss) away: the Laplace deviance moves by ~1e-4
    tight = lmf.glmer(CBPP, cb, "binomial", control=lmf.glmerControl(tolPwrss=1e-10))
    assert tight.logLik().value == pytest.approx(ref.logLik().value, abs=1e-3)
    assert tight.logLik().value != ref.logLik().value
    nod = lmf.glmer(CBPP, cb, "binomial", control={"calc.derivs": False})
    assert nod.optinfo.derivs is None
    np.testing.assert_allclose(nod.vcov(), ref.vcov(use_hessian=False), rtol=1e-8)
    with pytest.raises(LmeFormulaError, match="Hessian is unavailable"):
        nod.vcov(use_hessian=True)


@pytest.mark.slow
def test_start_values() -> None:
    cb = data_of("cbpp")
    ref = fit("cbpp")
    theta = ref.theta.to_numpy()
    started = lmf.glmer(CBPP, cb, "binomial",
                        start={"theta": theta, "fixef": ref.fixef.to_numpy()})
    np.testing.assert_allclose(started.optinfo.par, ref.optinfo.par, atol=2e-4)
    with pytest.raises(LmeFormulaError, match=r"bad name\(s\) for start vector \(sigma\)"):
        lmf.glmer(CBPP, cb, "binomial", start={"sigma": 1.0})
    with pytest.raises(LmeFormulaError, match="length"):
        lmf.glmer(CBPP, cb, "binomial", start=np.array([1.0, 2.0]))


@pytest.mark.slow
def test_singular_fit_message() -> None:
    m = fit("binomial_singular")
    assert m.isSingular()
    with pytest.warns(lmf.SingularFitWarning, match="boundary"):
        d = data_of("binomial_singular")
        lmf.glmer("y ~ x + (1 | g)", d, "binomial")


@pytest.mark.slow
def test_gamma_scale_in_varcorr() -> None:
    m = fit("gamma_log")
    vc = m.VarCorr.as_data_frame()
    assert list(vc["grp"]) == ["g", "Residual"]
    assert vc["sdcor"].iloc[-1] == pytest.approx(m.sigma)
    assert vc["sdcor"].iloc[0] == pytest.approx(m.theta.iloc[0] * m.sigma)
    assert "t value" in m.summary().coefficients.columns


def test_na_rows_dropped_and_excluded() -> None:
    cb = data_of("cbpp").copy()
    cb.iloc[3, cb.columns.get_loc("incidence")] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.glmer(CBPP, cb, "binomial", nAGQ=0, na_action="exclude")
    assert m.nobs == 55
    fitted = m.fitted()
    assert len(fitted) == 56 and np.isnan(fitted.iloc[3])


@pytest.mark.slow
def test_other_families_with_a_scale_and_lme4s_convergence_warnings() -> None:
    # gaussian(log) and inverse.gaussian(log) on the Gamma model's data; the latter makes
    # lme4 warn twice (gradient and "nearly unidentifiable"), with the same numbers here
    ref = json.loads((GLMER / "other_families.json").read_text())
    d = data_of("gamma_log")
    for name, fam in (("gaussian", lmf.gaussian(link="log")),
                      ("inverse.gaussian", lmf.inverse_gaussian(link="log"))):
        r = ref[name]
        expected = r["warnings"] if isinstance(r["warnings"], list) else [r["warnings"]]
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            m = lmf.glmer("y ~ x + (1 | g)", d, fam)
        got = [str(w.message) for w in record if issubclass(w.category,
                                                            lmf.ConvergenceWarning)]
        assert got == expected, name
        assert m.logLik().value == pytest.approx(r["logLik"], rel=1e-8)
        assert m.sigma == pytest.approx(r["sigma"], rel=1e-6)
        np.testing.assert_allclose(m.fixef, r["beta"], rtol=1e-6)
