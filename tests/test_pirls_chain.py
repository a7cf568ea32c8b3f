"""The scalar kernel's chain step (lmeformula.pls.pirls_chain) against the general kernel.

Where every term is in the chain and p = 0 (glmer's second stage on nested designs) the chain
step must give the general kernel's log|L|² and u bit for bit: the same operations on the
same numbers in the same order, so that glmer's optimizers take the same path.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
from lmeformula.pls import pirls_chain
from lmeformula.pls.pirls_chain import ChainStep, ChainXStep, applies, applies_with_x, chain_step
from lmeformula.pls.pirls_kernel import ScalarPirlsKernel


def _data(seed: int = 3, n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.integers(0, 5, n)
    site = region * 6 + rng.integers(0, 6, n)  # sites nested in regions
    ward = site * 4 + rng.integers(0, 4, n)  # wards nested in sites
    return pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n),
                         "region": [f"r{v}" for v in region],
                         "site": [f"s{v}" for v in site], "ward": [f"w{v}" for v in ward],
                         "obs": [f"o{i}" for i in range(n)],
                         "y": rng.integers(0, 2, n).astype(float)})


NESTED = {
    "one term": "y ~ x + (1 | site)",
    "two nested": "y ~ x + (1 | site) + (1 | region)",
    "observation level chain": "y ~ x + (1 | obs) + (1 | ward) + (1 | site) + (1 | region)",
    "numeric columns": "y ~ x + (0 + z | ward) + (1 | site) + (0 + x | region)",
    "numeric first": "y ~ x + (0 + z | site) + (1 | region)",
}


def _kernel(formula: str, data: pd.DataFrame | None = None, with_x: bool = False,
            ) -> ScalarPirlsKernel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = lmf.glFormula(formula, _data() if data is None else data, family="binomial")
    re = pf.reTrms
    codes = [np.asarray(t.factor.codes, dtype=np.int64) for t in re.terms]
    xs = [np.asarray(t.X, dtype=float)[:, 0] for t in re.terms]
    n = codes[0].shape[0]
    X = np.asarray(pf.X_values, dtype=float) if with_x else np.zeros((n, 0))
    return ScalarPirlsKernel(codes, xs, [t.nl for t in re.terms], X)


@pytest.mark.parametrize("stacked", [True, False])
@pytest.mark.parametrize("name", list(NESTED))
def test_chain_step_is_the_kernels_bit_for_bit(name: str, stacked: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if not stacked:  # every term's counts by its own bincount (large n x K)
        monkeypatch.setattr(pirls_chain, "_STACKED_COUNTS_MAX", 0)
    kernel = _kernel(NESTED[name])
    assert applies(kernel)
    chain = ChainStep(kernel)
    assert (chain.stacked_keys is not None) == (stacked and kernel.K > 1)
    rng = np.random.default_rng(11)
    n = kernel.n
    for trial in range(4):
        w = rng.uniform(0.01, 3.0, n)
        if trial == 2:
            w[rng.random(n) < 0.3] = 0.0  # observations with zero weight
        z = rng.normal(scale=10.0 ** rng.integers(-3, 3), size=n)
        theta = rng.uniform(0.0 if trial == 3 else 0.1, 2.5, kernel.K)
        got = chain.step(theta, w, z)
        want = kernel.step(theta, w, z)
        assert want is not None
        assert got.ldL2 == want.ldL2
        assert np.array_equal(got.u, want.u)
        assert got.beta.shape == (0,) and want.beta.shape == (0,)


def test_chain_step_only_where_everything_is_in_the_chain() -> None:
    crossed = _data().assign(rater=lambda d: [f"t{i % 7}" for i in range(len(d))])
    kernel = _kernel("y ~ x + (1 | site) + (1 | rater)", crossed)
    assert kernel.d == 1 and not applies(kernel)
    assert chain_step(kernel) is kernel
    with pytest.raises(ValueError, match="chain"):
        ChainStep(kernel)
    # with fixed effects the rest holds X: the general kernel
    codes = kernel.codes[:1]
    full = ScalarPirlsKernel(codes, kernel.xs[:1], kernel.nls[:1], np.ones((kernel.n, 1)))
    assert not applies(full)
    assert isinstance(chain_step(_kernel(NESTED["two nested"])), ChainStep)


@pytest.mark.parametrize("stacked", [True, False])
@pytest.mark.parametrize("name", list(NESTED))
def test_chain_step_with_x_is_the_kernels_bit_for_bit(name: str, stacked: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if not stacked:
        monkeypatch.setattr(pirls_chain, "_STACKED_COUNTS_MAX", 0)
    kernel = _kernel(NESTED[name], with_x=True)
    assert kernel.p == 2 and applies_with_x(kernel) and not applies(kernel)
    chain = ChainXStep(kernel)
    assert (chain.stacked_keys is not None) == stacked
    rng = np.random.default_rng(12)
    n = kernel.n
    for trial in range(4):
        w = rng.uniform(0.01, 3.0, n)
        if trial == 2:
            w[rng.random(n) < 0.3] = 0.0
        z = rng.normal(scale=10.0 ** rng.integers(-3, 3), size=n)
        theta = rng.uniform(0.0 if trial == 3 else 0.1, 2.5, kernel.K)
        want = kernel.step(theta, w, z)
        got = chain.step(theta, w, z)
        assert want is not None and got is not None
        assert got.ldL2 == want.ldL2
        assert np.array_equal(got.u, want.u)
        assert np.array_equal(got.beta, want.beta)


def test_chain_step_with_x_declines_a_singular_system() -> None:
    # all weights zero: X'WX = 0 (the engine then diagnoses, as after the general kernel)
    kernel = _kernel(NESTED["two nested"], with_x=True)
    chain = ChainXStep(kernel)
    n = kernel.n
    assert chain.step(np.ones(kernel.K), np.zeros(n), np.ones(n)) is None
    assert kernel.step(np.ones(kernel.K), np.zeros(n), np.ones(n)) is None
    assert isinstance(chain_step(kernel), ChainXStep)
    # Z'W[X z] by a sparse product (many terms and columns): the general kernel
    data = _data().assign(f=lambda d: [f"c{i % 3}" for i in range(len(d))])
    wide = _kernel(NESTED["observation level chain"].replace("y ~ x", "y ~ x + f"), data,
                   with_x=True)
    assert not wide.count_columns and chain_step(wide) is wide
