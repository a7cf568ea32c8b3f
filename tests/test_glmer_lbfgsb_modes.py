"""glmer's L-BFGS-B option: the modes it predicts instead of running PIRLS (the vcov and
preconditioner Hessians at displaced points, each evaluation's PIRLS start) against
PIRLS's own modes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lmeformula as lmf
from lmeformula.laplace_grad import LaplaceObjective, _linearized_hessian

FORMULAS = ["r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
            "r2 ~ Anger + Gender + btype + (1 | id) + (1 + Anger | item)"]


def _optimum(formula: str) -> tuple[lmf.GlmerMod, LaplaceObjective, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.glmer(formula, lmf.datasets.load("VerbAgg"), family="binomial",
                      control=lmf.glmerControl(optimizer="L-BFGS-B"))
    return m, LaplaceObjective(m.getME("devfun")), np.asarray(m.optinfo.par, float)


def _tight_mode(obj: LaplaceObjective, x: np.ndarray) -> np.ndarray:
    """PIRLS's mode at x to round-off (lme4's tolerance, 1e-7 relative in the penalised
    deviance, leaves poorly determined random effects uncertain by ~1e-2)."""
    dev = obj.devfun
    tol = dev.tolPwrss
    dev.tolPwrss = 1e-15
    try:
        obj._last = []
        obj(x)
    finally:
        dev.tolPwrss = tol
    obj._last = []
    return np.asarray(dev.state.u.copy())


def test_predicted_mode_is_second_order() -> None:
    # (the scalar model: with the vector term a step of 1e-2 in θ is already far outside
    # the linear range of the mode)
    _, obj, x = _optimum(FORMULAS[0])
    dev = obj.devfun
    obj(x)
    u0 = dev.state.u.copy()
    errs = []
    for h in (1e-2, 5e-3):
        step = h * np.linspace(1.0, -1.0, x.size)
        step[: dev.ntheta] = h
        pred = obj.grad.predict_mode(x + step)
        actual = _tight_mode(obj, x + step)
        obj._last = []
        obj(x)
        assert np.array_equal(obj.grad._at[2], u0) or np.allclose(obj.grad._at[2], u0,
                                                                  atol=1e-6)
        # the prediction is much closer than the last mode itself
        assert np.max(np.abs(pred - actual)) < 0.05 * np.max(np.abs(u0 - actual))
        errs.append(np.max(np.abs(pred - actual)))
    # and its error falls about as the step squared (halving the step: about a quarter,
    # up to PIRLS's tolerance in the modes compared)
    assert errs[1] < 0.45 * errs[0]


def _central_hessian(obj: LaplaceObjective, x: np.ndarray, delta: float) -> np.ndarray:
    """Central differences of the analytic gradient at PIRLS-solved points (2k gradients),
    symmetrised: the reference the predicted-mode Hessian is checked against."""
    k = x.shape[0]
    hess = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = delta
        hess[i] = (obj.gradient(x + e) - obj.gradient(x - e)) / (2.0 * delta)
    return (hess + hess.T) / 2.0


@pytest.mark.parametrize("formula", FORMULAS)
def test_hessian_from_predicted_modes_matches_pirls_central_differences(formula: str) -> None:
    m, obj, x = _optimum(formula)
    central = _central_hessian(obj, x, 1e-4)
    scale = np.sqrt(np.outer(np.diag(central), np.diag(central)))
    hess = m.optinfo.derivs["Hessian"]
    assert np.max(np.abs(hess - central) / scale) < 1e-3
    # the state and the cached gradient are x's again afterwards
    obj(x)
    g = obj.gradient(x)
    u = obj.devfun.state.u.copy()
    again = _linearized_hessian(obj, x, 1e-6)
    np.testing.assert_array_equal(obj.devfun.state.u, u)
    np.testing.assert_array_equal(obj.gradient(x), g)
    np.testing.assert_allclose(again, hess, rtol=0, atol=1e-6 * np.max(np.abs(hess)))


def test_one_step_pirls_reaches_the_same_mode() -> None:
    _, obj, x = _optimum(FORMULAS[0])
    dev = obj.devfun
    near = x + 1e-3
    u_tight = _tight_mode(obj, near)
    with obj.warm_start():
        obj(x)
        warm = obj(near)  # from the mode predicted from x's
        u_warm = dev.state.u.copy()
        assert dev.state.iterations <= 2
    # one Newton step from the predicted mode: the mode to ~round-off, where lme4's rule
    # from its usual start stops ~1e-2 away in the poorly determined random effects
    np.testing.assert_allclose(u_warm, u_tight, atol=1e-6)
    obj._last = []
    dev.tolPwrss, tol = 1e-15, dev.tolPwrss
    try:
        tight = obj(near)
    finally:
        dev.tolPwrss = tol
    assert warm == pytest.approx(tight, abs=1e-7)
