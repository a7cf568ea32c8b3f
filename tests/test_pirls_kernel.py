"""The scalar-terms PIRLS kernel (lmeformula.pls.pirls_kernel) against the engine.

At any θ, case weights and working response the kernel's log|L|², u and β must be the
engine's (a problem built afresh with those weights) to round-off, for every structure it
takes: nested terms eliminated level by level, crossed terms in the dense rest, terms with a
numeric column, zero weights, and the u-only problem (p = 0).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
from lmeformula.pirls import GlmerDevfun
from lmeformula.pls import make_problem, term_shapes
from lmeformula.pls.pirls_kernel import ScalarPirlsKernel, scalar_kernel_fits


def _data(seed: int = 1, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.integers(0, 6, n)
    site = region * 5 + rng.integers(0, 5, n)  # sites nested in regions
    rater = rng.integers(0, 4, n)  # crossed with both (fewer levels: after them in Zt)
    item = rng.integers(0, 7, n)
    x = rng.normal(size=n)
    eta = 0.3 * x + rng.normal(size=30)[site] + rng.normal(size=4)[rater]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "z": rng.normal(size=n),
                         "region": [f"r{v}" for v in region], "site": [f"s{v}" for v in site],
                         "rater": [f"t{v}" for v in rater], "item": [f"i{v}" for v in item],
                         "obs": [f"o{i}" for i in range(n)]})


FORMULAS = {
    "nested chain": "y ~ x + (1 | obs) + (1 | site) + (1 | region)",
    "crossed": "y ~ x + (1 | site) + (1 | rater)",
    "three crossed": "y ~ x + (1 | site) + (1 | rater) + (1 | item)",
    "nested then crossed": "y ~ x + (1 | site) + (1 | region) + (1 | rater)",
    "numeric column": "y ~ x + (0 + z | site) + (1 | rater)",
    "one term": "y ~ x + (1 | site)",
}


def _pieces(formula: str) -> tuple[object, list[np.ndarray], list[np.ndarray], list[int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = lmf.glFormula(formula, _data(), family="binomial")
    re = pf.reTrms
    codes = [np.asarray(t.factor.codes, dtype=np.int64) for t in re.terms]
    xs = [np.asarray(t.X, dtype=float)[:, 0] for t in re.terms]
    return pf, codes, xs, [t.nl for t in re.terms]


def _engine(pf: object, X: np.ndarray, w: np.ndarray, z: np.ndarray, theta: np.ndarray,
            ) -> tuple[float, np.ndarray, np.ndarray]:
    re = pf.reTrms  # type: ignore[attr-defined]
    factors = re.level_factors()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # log|W| of zero weights (not used here)
        problem = make_problem(re.Zt, X, z, w, term_shapes(re.terms), factors)
    f = problem.factor(theta)
    beta, u = problem.solve(f)
    return float(f.ldL2), u, beta


@pytest.mark.parametrize("name", list(FORMULAS))
@pytest.mark.parametrize("u_only", [False, True])
def test_kernel_step_is_the_engines(name: str, u_only: bool) -> None:
    pf, codes, xs, nls = _pieces(FORMULAS[name])
    X = np.asarray(pf.X_values, dtype=float)  # type: ignore[attr-defined]
    if u_only:
        X = X[:, :0]
    kernel = ScalarPirlsKernel(codes, xs, nls, X)
    rng = np.random.default_rng(7)
    n = X.shape[0]
    for trial in range(3):
        w = rng.uniform(0.05, 0.3, n)
        if trial == 2:
            w[rng.random(n) < 0.2] = 0.0  # observations with zero weight
        z = rng.normal(size=n)
        theta = rng.uniform(0.2, 1.5, len(nls))
        step = kernel.step(theta, w, z)
        assert step is not None
        ld, u, beta = _engine(pf, X, w, z, theta)
        assert step.ldL2 == pytest.approx(ld, rel=1e-11, abs=1e-11)
        np.testing.assert_allclose(step.u, u, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(step.beta, beta, rtol=1e-9, atol=1e-11)


def test_nested_terms_form_the_chain() -> None:
    for name, chain in (("nested chain", 3), ("crossed", 1), ("nested then crossed", 2),
                        ("one term", 1)):
        _, codes, xs, nls = _pieces(FORMULAS[name])
        kernel = ScalarPirlsKernel(codes, xs, nls, np.zeros((codes[0].shape[0], 0)))
        assert kernel.d == chain, name
        # the rest: the terms after the chain, then z
        assert kernel.m == sum(nls[chain:]) + 1


def test_kernel_declines_a_singular_system() -> None:
    # all weights zero: X'WX = 0, the fixed effects are not estimable (the engine decides)
    pf, codes, xs, nls = _pieces(FORMULAS["crossed"])
    X = np.asarray(pf.X_values, dtype=float)  # type: ignore[attr-defined]
    kernel = ScalarPirlsKernel(codes, xs, nls, X)
    n = X.shape[0]
    assert kernel.step(np.ones(len(nls)), np.zeros(n), np.ones(n)) is None


def test_kernel_only_for_scalar_terms_of_modest_size() -> None:
    assert scalar_kernel_fits([30, 4], [1, 1], 2)
    assert not scalar_kernel_fits([30, 4], [2, 1], 2)  # a vector term: the engine
    assert not scalar_kernel_fits([], [], 2)
    # a rest too large to factor densely at every step
    assert not scalar_kernel_fits([5000, 3000], [1, 1], 2)


@pytest.mark.parametrize("name", ["nested chain", "three crossed", "numeric column"])
def test_devfun_with_and_without_kernel_agree(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = lmf.glFormula(FORMULAS[name], _data(), family="binomial")
    fam = lmf.binomial()
    with_k = GlmerDevfun(pf, fam, 0, 1e-7, use_kernel=True)
    without = GlmerDevfun(pf, fam, 0, 1e-7, use_kernel=False)
    assert with_k._kernels and not without._kernels
    theta = np.full(with_k.ntheta, 0.6)
    assert with_k(theta) == pytest.approx(without(theta), rel=1e-11)
    np.testing.assert_allclose(with_k.state.beta, without.state.beta, rtol=1e-8, atol=1e-10)
    with_k.update(1)
    without.update(1)
    pars = np.concatenate([theta, with_k.state.beta])
    assert with_k(pars) == pytest.approx(without(pars), rel=1e-11)
    np.testing.assert_allclose(with_k.state.u, without.state.u, rtol=1e-7, atol=1e-9)


def test_the_kernels_limits_are_the_engine_policys(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from lmeformula.pls import policy

    assert scalar_kernel_fits([20, 5], [1, 1], 2)
    monkeypatch.setattr(policy, "POLICY",
                        dataclasses.replace(policy.POLICY, kernel_max_rest_order=7))
    assert not scalar_kernel_fits([20, 5], [1, 1], 2)  # the rest's order is 5 + 2 + 1 = 8
    assert scalar_kernel_fits([20, 4], [1, 1], 2)
