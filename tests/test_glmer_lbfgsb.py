"""glmer's ``optimizer="L-BFGS-B"``: the analytic gradient of the Laplace deviance
(lmeformula/laplace_grad.py) and the fits it gives, against finite differences and lme4."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from glmer_cases import as_array, data_of, family_of, fixture

import lmeformula as lmf
from lmeformula.errors import LmeFormulaError
from lmeformula.glmercontrol import GlmerControl
from lmeformula.laplace_grad import LaplaceObjective, supports_gradient
from lmeformula.pls.threads import blas_threads

# models with a gradient to check: scalar (cbind with totals; proportions with weights),
# crossed, a correlated vector term, an offset, three crossed Poisson terms
GRAD_CASES = ["cbpp", "cbpp_prop", "binomial_crossed", "binomial_slope", "poisson_offset",
              "grouseticks", "verbagg"]
FIT_CASES = ["cbpp", "cbpp_prop", "grouseticks", "verbagg", "binomial_crossed",
             "binomial_slope", "poisson_offset", "binomial_singular"]


def _args(name: str) -> dict[str, Any]:
    args = fixture(name)["args"]
    return {"family": family_of(name), "nAGQ": args["nAGQ"], "weights": args.get("weights")}


def _devfun(name: str, tol: float = 1e-7) -> Any:
    """The Laplace deviance function of the fixture's model (after the first stage)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.glmer(fixture(name)["args"]["formula"], data_of(name), devFunOnly=True,
                         control={"tolPwrss": tol}, **_args(name))


def _lme4_par(name: str) -> np.ndarray:
    fx = fixture(name)
    return np.concatenate([as_array(fx["theta"]), as_array(fx["beta"])])


def _fit(name: str, **control: Any) -> lmf.GlmerMod:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.glmer(fixture(name)["args"]["formula"], data_of(name),  # type: ignore[no-any-return]
                         control={"optimizer": "L-BFGS-B", **control}, **_args(name))


def _point(name: str) -> np.ndarray:
    """A point near lme4's optimum, off it (every θ inside its bounds)."""
    x = _lme4_par(name)
    rng = np.random.default_rng(len(name))
    return x + rng.uniform(0.03, 0.08, x.shape[0])


@pytest.mark.parametrize("name", GRAD_CASES)
def test_gradient_matches_central_differences_of_the_deviance(name: str) -> None:
    # PIRLS to 1e-13: the existing deviance function's log|L|² (taken with the weights of
    # PIRLS's last-but-one step) is then the Laplace deviance at the mode to ~1e-6 (the lag
    # is first order in PIRLS's last step, the tolerance second order), and its central
    # differences check the analytic gradient to that
    dev = _devfun(name, tol=1e-13)
    obj = LaplaceObjective(dev)
    x = _point(name)
    with blas_threads(1):
        grad = obj.gradient(x)
        assert abs(dev.state.ldL2 - obj.grad.logdet) < 1e-5
        h = 1e-5
        fd = np.array([(dev(x + h * e) - dev(x - h * e)) / (2 * h) for e in np.eye(x.size)])
        exact = np.array([(obj(x + h * e) - obj(x - h * e)) / (2 * h) for e in np.eye(x.size)])
    scale = np.maximum(np.abs(grad), 1.0)
    assert np.max(np.abs(grad - fd) / scale) < 1e-4
    # and tightly against the deviance the gradient belongs to (the same function with
    # log|L|² at the mode's weights)
    assert np.max(np.abs(grad - exact) / scale) < 1e-7
    assert np.all(np.isfinite(grad)) and np.max(np.abs(grad)) > 1e-2  # off the optimum


@pytest.mark.parametrize("name", ["cbpp", "verbagg"])
def test_objective_is_the_devfun_with_the_modes_weights(name: str) -> None:
    # at lme4's PIRLS tolerance the two differ by the last step's change of the weights
    # (lme4's ldL2 lags one step), by far less with PIRLS run to round-off
    x = _point(name)
    for tol, bound in ((1e-7, 5e-2), (1e-13, 1e-5)):
        dev = _devfun(name, tol)
        obj = LaplaceObjective(dev)
        value = obj(x)
        lagged = dev(x)
        assert abs(value - lagged) < bound
        assert value == pytest.approx(lagged - dev.state.ldL2 + obj.grad.logdet, abs=1e-9)


@pytest.mark.parametrize("name", FIT_CASES)
def test_fit_reaches_lme4s_optimum_or_better(name: str) -> None:
    fx = fixture(name)
    m = _fit(name)
    dev = m.getME("devfun")
    assert m.optinfo.optimizer == "L-BFGS-B"
    assert m.optinfo.conv == 0
    k = dev.ntheta
    ours = np.asarray(m.optinfo.par, float)
    # the same deviance (log|L|² at the mode's weights) at lme4's optimum is not lower, to
    # PIRLS's tolerance: stopping at 1e-7 relative change of the penalised deviance leaves
    # the mode, and so the deviance, uncertain by ~1e-6 according to where PIRLS starts
    obj = LaplaceObjective(dev)
    at_lme4 = obj(_lme4_par(name))
    assert m.optinfo.fval <= at_lme4 + 1e-6
    assert obj(ours) == pytest.approx(m.optinfo.fval, abs=1e-5)
    # ... nor is lme4's reported value: its log|L|² lags PIRLS's last step (~1e-4 here)
    assert m.logLik().value >= fx["logLik"] - 1e-7
    assert m.logLik().value - fx["logLik"] < 2e-3
    # the estimates agree with lme4's to its optimizer's tolerance, widened by the shift of
    # the optimum between the two deviances (their gradients differ by the lag, ~1e-2)
    np.testing.assert_allclose(ours[:k], as_array(fx["theta"]), atol=2e-3)
    p = len(fx["beta"])
    se = np.sqrt(np.diag(np.array(fx["vcov"]).reshape(p, p)))
    assert np.max(np.abs(ours[k:] - as_array(fx["beta"])) / se) < 1e-2
    # the deviance function is left at the optimum, lme4's deviance there
    assert np.array_equal(dev.state.theta, ours[:k])


@pytest.mark.parametrize("name", FIT_CASES)
def test_vcov_and_checks_from_the_analytic_hessian(name: str) -> None:
    fx = fixture(name)
    m = _fit(name)
    p = len(fx["beta"])
    derivs = m.optinfo.derivs
    assert derivs is not None
    k = m.getME("devfun").ntheta
    assert derivs["Hessian"].shape == (k + p, k + p)
    np.testing.assert_allclose(derivs["Hessian"], derivs["Hessian"].T)
    # the Hessian of the Laplace deviance at the mode's weights: lme4's, a finite difference
    # of its lagged log|L|², differs by up to ~3% of the standard errors' product (glmm,
    # which also takes the weights at the mode, agrees with ours to ~1e-5)
    ref = np.array(fx["vcov"]).reshape(p, p)
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    assert np.max(np.abs(m.vcov().to_numpy() - ref) / scale) < 4e-2
    # checkConv as for the default path: the singular fits are reported singular
    assert m.isSingular() == fx["isSingular"]
    msgs = m.optinfo.lme4.messages
    assert any("singular" in s for s in msgs) == bool(fx["isSingular"])
    assert "Laplace" in str(m.summary())


def test_hessian_matches_central_differences_of_the_gradient() -> None:
    m = _fit("verbagg")
    dev = m.getME("devfun")
    obj = LaplaceObjective(dev)
    x = np.asarray(m.optinfo.par, float)
    h = 1e-4
    central = np.array([(obj.gradient(x + h * e) - obj.gradient(x - h * e)) / (2 * h)
                        for e in np.eye(x.size)])
    hess = m.optinfo.derivs["Hessian"]
    assert np.max(np.abs(hess - central) / np.sqrt(np.outer(np.diag(central),
                                                            np.diag(central)))) < 1e-3


def test_lme4_first_stage_then_lbfgsb() -> None:
    fx = fixture("cbpp")
    m = _fit("cbpp", optimizer=("bobyqa", "L-BFGS-B"))
    assert m.glmer_control.optimizer == ("bobyqa", "L-BFGS-B")
    assert m.logLik().value >= fx["logLik"] - 1e-7
    assert m.logLik().value == pytest.approx(_fit("cbpp").logLik().value, abs=1e-7)


def test_control_names() -> None:
    assert GlmerControl().optimizer == ("bobyqa", "Nelder_Mead")  # the default is lme4's
    assert GlmerControl(optimizer="L-BFGS-B").optimizer == ("auto", "L-BFGS-B")
    assert lmf.glmerControl(optimizer=("bobyqa", "L-BFGS-B")).optimizer == ("bobyqa",
                                                                            "L-BFGS-B")


def test_refit_and_update_keep_the_optimizer() -> None:
    m = _fit("cbpp")
    y = np.asarray(m.lformula.y, float)
    m2 = lmf.refit(m, y)
    assert m2.optinfo.optimizer == "L-BFGS-B"
    assert m2.logLik().value == pytest.approx(m.logLik().value, abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m3 = lmf.update(m, data=data_of("cbpp"))
    assert m3.optinfo.optimizer == "L-BFGS-B"


def test_refusals() -> None:
    cb = lmf.datasets.load("cbpp")
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    ctrl = {"optimizer": "L-BFGS-B"}
    with pytest.raises(LmeFormulaError, match="canonical links"):
        lmf.glmer(f, cb, lmf.binomial(link="probit"), control=ctrl)
    with pytest.raises(LmeFormulaError, match="nAGQ = 1"):
        lmf.glmer(f, cb, "binomial", nAGQ=5, control=ctrl)
    with pytest.raises(LmeFormulaError, match="nAGQ = 1"):
        lmf.glmer(f, cb, "binomial", nAGQ=0, control=ctrl)
    with pytest.raises(LmeFormulaError, match="nAGQ = 1"):  # θ-only first stage
        lmf.glmer(f, cb, "binomial", control={"optimizer": ("L-BFGS-B", "Nelder_Mead")})
    assert supports_gradient(lmf.poisson()) and supports_gradient(lmf.binomial())
    assert not supports_gradient(lmf.poisson(link="sqrt"))
    assert not supports_gradient(lmf.Gamma(link="log"))


def test_dense_part_limited_by_the_engine_policy() -> None:
    # the random effects of all terms but the first are kept dense, up to the engine's
    # policy (pls/policy.py's max_laplace_dense; tests swap the policy)
    from dataclasses import replace

    from lmeformula.laplace_grad import LaplaceGradient
    from lmeformula.pls import policy as pls_policy

    dev = _devfun("grouseticks")
    q2 = LaplaceGradient(dev).q2
    assert q2 > 0 and q2 <= pls_policy.POLICY.max_laplace_dense
    old = pls_policy.POLICY
    try:
        pls_policy.POLICY = replace(old, max_laplace_dense=q2)
        assert LaplaceGradient(dev).q2 == q2  # at the limit: kept
        pls_policy.POLICY = replace(old, max_laplace_dense=q2 - 1)
        with pytest.raises(LmeFormulaError, match=f"{q2} of them is too many"):
            LaplaceGradient(dev)
    finally:
        pls_policy.POLICY = old


@pytest.mark.slow
def test_vector_term_starts_from_lme4s_first_stage() -> None:
    # from θ = 1 a gradient method ends in a boundary minimum of this model (θ_item,11 = 0,
    # logLik -4086.88); "auto" runs lme4's first stage for a vector-valued term, and the fit
    # reaches lme4's log-likelihood (-4073.89238428: lme4 1.1-31, benchmarks.glmer --large)
    va = lmf.datasets.load("VerbAgg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.glmer("r2 ~ Anger + Gender + btype + situ + (1 + Anger | item) + (1 | id)",
                      va, "binomial", control={"optimizer": "L-BFGS-B"})
    assert m.glmer_control.optimizer == ("auto", "L-BFGS-B")
    assert m.logLik().value > -4073.89238428
    assert m.logLik().value < -4073.8910


@pytest.mark.parametrize("formula", [
    # a vector-valued term after the scalar one with most levels (the dense part of A)
    "r2 ~ Anger + btype + (1 + Anger | item) + (1 | id)",
    # no fixed effects; two vector-valued terms
    "r2 ~ 0 + (1 + Anger | item) + (1 | id)",
    "r2 ~ btype + (1 + Gender | item) + (0 + Anger | id) + (1 | id)",
])
def test_gradient_on_more_structures(formula: str) -> None:
    # (PIRLS to 1e-13: at 1e-7 the modes of the differences' points carry ~1e-9 of noise)
    va = lmf.datasets.load("VerbAgg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dev = lmf.glmer(formula, va, "binomial", devFunOnly=True,
                        control={"nAGQ0initStep": False, "tolPwrss": 1e-13})
    obj = LaplaceObjective(dev)
    x = np.concatenate([dev.state.theta, dev.state.beta])
    x = x + np.random.default_rng(1).uniform(0.02, 0.06, x.shape[0])
    with blas_threads(1):
        grad = obj.gradient(x)
        h = 1e-5
        exact = np.array([(obj(x + h * e) - obj(x - h * e)) / (2 * h) for e in np.eye(x.size)])
    assert np.max(np.abs(grad - exact) / np.maximum(np.abs(grad), 1.0)) < 1e-6
