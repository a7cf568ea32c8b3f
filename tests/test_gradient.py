"""The analytic gradient of the profiled criterion, and the L-BFGS-B optimizer that uses it.

The gradient is checked against a five-point finite-difference stencil (error O(h⁴)) on the
fixture models, REML and ML, for both engines; fits with L-BFGS-B must reach lme4's optimum
as the default optimizer must (same criterion bound as test_lmer_lme4).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from cases import CASE_IDS, as_float_array, case_data, case_kwargs, load_case

import lmeformula as lmf

FIT_CASES = [c for c in CASE_IDS if "fit" in load_case(c)]


def devfun(case_id: str, REML: bool) -> lmf.LmerDevfun:
    case = load_case(case_id)
    kwargs = {**case_kwargs(case), "REML": REML}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.mkLmerDevfun(lmf.lFormula(case["formula"], case_data(case), **kwargs))


def five_point(fn, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
    out = np.empty_like(theta)
    for i in range(theta.shape[0]):
        e = np.zeros_like(theta)
        e[i] = h[i]
        out[i] = (-fn(theta + 2 * e) + 8 * fn(theta + e) - 8 * fn(theta - e)
                  + fn(theta - 2 * e)) / (12 * h[i])
    return out


def probe_points(case_id: str, dev: lmf.LmerDevfun) -> list[np.ndarray]:
    """lme4's optimum moved off it (a point where the gradient is not ~0), and the start."""
    theta = as_float_array(load_case(case_id)["fit"]["theta"])
    moved = np.where(dev.lower == 0, np.abs(theta) * 1.2 + 0.05, theta * 0.8 - 0.05)
    return [moved, np.asarray(dev.start, float)]


@pytest.mark.parametrize("REML", [True, False])
@pytest.mark.parametrize("case_id", FIT_CASES)
def test_gradient_matches_finite_differences(case_id: str, REML: bool) -> None:
    dev = devfun(case_id, REML)
    for theta in probe_points(case_id, dev):
        h = 1e-3 * np.maximum(np.abs(theta), 0.1)  # O(h⁴) truncation, above round-off
        analytic = dev.gradient(theta)
        numeric = five_point(dev, theta, h)
        scale = max(np.abs(numeric).max(), 1.0)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.slow
def test_gradient_of_a_scalar_term_near_zero() -> None:
    """Near 0 the blocked engine's formula, which divides by θ, must still be accurate."""
    dev = devfun("insteval", True)
    near = np.array([0.3, 1e-3, 0.1])
    numeric = five_point(dev, near, np.array([1e-4, 1e-5, 1e-4]))
    np.testing.assert_allclose(dev.gradient(near), numeric, rtol=1e-5)
    small = devfun("dyestuff", True)  # the dense engine: the criterion is even in θ
    assert small.gradient(np.array([0.0]))[0] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("case_id", ["sleepstudy_slope", "penicillin", "pastes", "dyestuff",
                                     "sim_weights", "insteval", "machines_nested"])
def test_lbfgsb_reaches_lme4_optimum(case_id: str) -> None:
    case = load_case(case_id)
    ref = case["fit"]
    kwargs = {**case_kwargs(case), "control": {"optimizer": "L-BFGS-B"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.lmer(case["formula"], case_data(case), **kwargs)
    theta = as_float_array(ref["theta"])
    hessian = np.array(ref["hessian"], dtype=float).reshape(len(theta), len(theta))
    step = 2e-4 * np.maximum(np.abs(theta), 1e-3)
    bound = 0.5 * max(np.linalg.eigvalsh(hessian).max(), 0.0) * float(step @ step) + 1e-7
    assert abs(m.REMLcrit() - ref["REMLcrit"]) <= bound
    np.testing.assert_allclose(m.theta.to_numpy(), theta, rtol=2e-4, atol=1e-5)
    assert m.optinfo.optimizer == "L-BFGS-B"


def crossed_data(seed: int = 7, n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subj, item = rng.integers(0, 120, n), rng.integers(0, 60, n)
    x = rng.normal(size=n)
    y = (1 + 0.5 * x + rng.normal(size=120)[subj] + 0.4 * rng.normal(size=120)[subj] * x
         + 0.7 * rng.normal(size=60)[item] + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "subj": subj.astype(str), "item": item.astype(str)})


@pytest.mark.parametrize("case_id", [c for c in FIT_CASES if c != "insteval"])  # dense: 40 s
def test_blocked_and_dense_gradients_agree(case_id: str) -> None:
    """The blocked engine's formula (diagonal blocks of the inverse) against the dense
    engine's (full traces), which the finite differences above check."""
    from test_engine import engines

    case, blocked, dense = engines(case_id)
    theta = as_float_array(case["fit"]["theta"]) * 1.1 + 0.05  # λ's diagonal away from 0
    for REML in ([True, False] if blocked.p else [False]):
        gb = blocked.gradient(blocked.factor(theta), REML)
        gd = dense.gradient(dense.factor(theta), REML)
        np.testing.assert_allclose(gb, gd, rtol=1e-7, atol=1e-9 * max(np.abs(gd).max(), 1.0))


@pytest.mark.slow
def test_vector_terms_in_the_blocked_engine() -> None:
    df = crossed_data()
    formula = "y ~ x + (x | subj) + (1 | item)"
    dev = lmf.lmer(formula, df, devFunOnly=True)
    assert type(dev.problem).__name__ == "PLSProblem" and dev.has_gradient
    theta = np.array([0.9, 0.1, 0.4, 0.6])
    np.testing.assert_allclose(dev.gradient(theta), five_point(dev, theta, np.full(4, 1e-3)),
                               rtol=1e-6)
    default = lmf.lmer(formula, df)
    fast = lmf.lmer(formula, df, control={"optimizer": "L-BFGS-B"})
    assert fast.REMLcrit() <= default.REMLcrit() + 1e-6


@pytest.mark.parametrize("theta", [[0.9, 0.1, 0.0, 0.6], [0.9, 0.1, 0.4, 0.0]])
def test_on_the_boundary_the_gradient_is_taken_just_inside(theta: list[float]) -> None:
    """A zero on λ's diagonal makes λ singular: the blocked engine's formula is applied 1e-7
    inside the boundary. (At 0 a scalar term's criterion is even, its two-sided derivative 0;
    the derivative just inside tells a bounded optimizer whether moving inwards helps.)"""
    dev = lmf.lmer("y ~ x + (x | subj) + (1 | item)", crossed_data(), devFunOnly=True)
    theta = np.array(theta)
    inside = np.where((dev.lower == 0) & (theta == 0), 1e-7, theta)
    numeric = five_point(dev, inside, np.full(4, 1e-4))
    np.testing.assert_allclose(dev.gradient(theta), numeric, rtol=1e-5,
                               atol=1e-6 * np.abs(numeric).max())


@pytest.mark.slow
def test_lbfgsb_does_not_stop_at_the_stationary_point_on_the_boundary() -> None:
    """θ = 0 on a diagonal is stationary (the criterion is even there); pure-noise data lead
    L-BFGS-B there, although the optimum is inside: the edge check must restart it."""
    rng = np.random.default_rng(1)
    n = 3000
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                       "g": rng.integers(0, 300, n).astype(str), "h": rng.integers(0, 40, n),
                       "w": rng.uniform(0.5, 2, n)})
    formula = "y ~ x + (x | g) + (1 | h)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = lmf.lmer(formula, df, weights="w")
        fast = lmf.lmer(formula, df, weights="w", control={"optimizer": "L-BFGS-B"})
    assert fast.REMLcrit() <= default.REMLcrit() + 1e-7
    assert fast.theta.iloc[0] > 0.01


LBFGSB_FITS = [(c, k) for c in FIT_CASES for k in ("fit", "fit_ml") if k in load_case(c)]


@pytest.mark.parametrize(("case_id", "key"), LBFGSB_FITS)
def test_lbfgsb_criterion_is_at_least_as_low_as_lme4s(case_id: str, key: str) -> None:
    """On every fixture, REML and ML, L-BFGS-B ends no higher than lme4's BOBYQA (θ may differ
    where the criterion is flat or the fit singular)."""
    import dataclasses

    from lmeformula.control import as_control

    case = load_case(case_id)
    ref = case[key]
    kwargs = {**case_kwargs(case), "REML": key == "fit"}
    kwargs["control"] = dataclasses.replace(as_control(kwargs.get("control")),
                                            optimizer="L-BFGS-B")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.lmer(case["formula"], case_data(case), **kwargs)
    ours = m.REMLcrit() if ref["REML"] else m.deviance()
    theirs = ref["REMLcrit"] if ref["REML"] else ref["deviance_ML"]
    assert ours <= theirs + 1e-6
