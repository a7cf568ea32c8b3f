"""The blocked engine's block types (pls/blocks.py): which type the policy picks by measured
fill and counts, and that each type's steps of the per-θ update are the algebra they stand
for (scaled, inflated and factored block 1; the rank update G B Gᵀ at block 2's keys)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import lmeformula as lmf
from lmeformula.pls import PLSProblem, term_shapes
from lmeformula.pls import policy as pls_policy
from lmeformula.pls.blocks import (
    BlockDiagonalBlock,
    DenseBlock,
    DenseDiagonalBlock,
    DiagonalBlock,
    PairsBlock,
    SparseBlock,
)
from lmeformula.pls.downdate import CompactRows


def _data(seed: int = 5, n: int = 600, nl: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "g": rng.integers(0, nl, n).astype(str),
                         "h": rng.integers(0, 12, n).astype(str),
                         "k": rng.integers(0, 4, n).astype(str)})


def _problem(formula: str, df: pd.DataFrame | None = None, **policy: Any) -> PLSProblem:
    pf = lmf.lFormula(formula, _data() if df is None else df)
    re = pf.reTrms
    old = pls_policy.POLICY
    pls_policy.POLICY = replace(old, **policy)
    try:
        return PLSProblem(re.Zt, pf.X_values, np.asarray(pf.y, float), None,
                          term_shapes(re.terms), re.level_factors())
    finally:
        pls_policy.POLICY = old


def _theta(prob: PLSProblem, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.3, 1.4, size=sum(t.theta_length for t in prob.terms))


def test_policy_decides_the_off_diagonal_type_by_measured_fill() -> None:
    policy = pls_policy.BlockPolicy(dense_g_fill=0.5, max_dense_g=100)
    assert policy.dense_off_diagonal(51, 10, 10)
    assert not policy.dense_off_diagonal(50, 10, 10)  # fill 0.5 is not above 0.5
    assert not policy.dense_off_diagonal(200, 10, 11)  # full, but above max_dense_g
    assert policy.list_pairs(1) and not policy.list_pairs(0)
    assert not pls_policy.BlockPolicy(max_pairs=9).list_pairs(10)
    assert pls_policy.BlockPolicy(max_group_grams=10).group_grams(10)
    assert not pls_policy.BlockPolicy(max_group_grams=10).group_grams(11)


def test_policy_stores_g_dense_when_its_pairs_outweigh_the_dense_update() -> None:
    policy = pls_policy.BlockPolicy(dense_g_fill=0.5, dense_g_work=10, max_dense_g=100)
    # fill 0.2, but 101 pairs x 10 flops each above the syrk's 10 x 10 x 10
    assert policy.dense_off_diagonal(20, 10, 10, pairs=101)
    assert not policy.dense_off_diagonal(20, 10, 10, pairs=100)
    assert not policy.dense_off_diagonal(20, 10, 11, pairs=10**6)  # above max_dense_g


def test_vector_first_term_against_a_small_block_two_gets_a_dense_g() -> None:
    # (x | g) with many levels, each meeting most of h's few levels: G is under the fill
    # threshold, but listing its pairs costs more than the dense rank update
    rng = np.random.default_rng(3)
    n, nl = 6_000, 300
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                       "g": rng.integers(0, nl, n).astype(str),
                       "h": rng.integers(0, 100, n).astype(str)})
    formula = "y ~ x + (1 | h) + (x | g)"
    dense = _problem(formula, df)
    g = dense.G
    assert g.nnz < pls_policy.POLICY.dense_g_fill * g.shape[0] * g.shape[1]
    assert isinstance(dense.b21, DenseBlock)
    listed = _problem(formula, df, dense_g_work=0)
    assert isinstance(listed.b21, PairsBlock)
    theta = _theta(dense)
    a, b = dense.factor(theta), listed.factor(theta)
    for name in ("ldL2", "ldRX2", "pwrss"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-12)


def test_block_types_follow_the_term_and_the_fill() -> None:
    formula = "y ~ x + (1 | g) + (1 | h)"
    prob = _problem(formula)
    g = prob.G
    fill = g.nnz / (g.shape[0] * g.shape[1])
    assert isinstance(prob.b11, DiagonalBlock)
    assert isinstance(prob.b22, DenseDiagonalBlock)
    # 60 levels of g against 12 of h, X and y: G is mostly full here
    assert fill > pls_policy.POLICY.dense_g_fill
    assert isinstance(prob.b21, DenseBlock)
    assert type(_problem(formula, dense_g_fill=fill, dense_g_work=0).b21) is PairsBlock  # sparse
    grams = _problem(formula, dense_g_fill=1.0, dense_g_work=0, max_pairs=0).b21
    assert isinstance(grams, PairsBlock) and isinstance(grams.pairs, CompactRows)
    products = _problem(formula, dense_g_fill=1.0, dense_g_work=0, max_pairs=0,
                        max_group_grams=0).b21
    assert type(products) is SparseBlock
    vector = _problem("y ~ x + (x | g) + (1 | h)")
    assert isinstance(vector.b11, BlockDiagonalBlock)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g) + (1 | h) + (1 | k)",
                                     "y ~ x + (x | g) + (1 | h)"])
def test_block1_is_scaled_inflated_and_factored(formula: str) -> None:
    prob = _problem(formula)
    theta = _theta(prob)
    lam = prob.terms[0].lower_factor(theta)
    l11, t1 = prob.b11.factor(lam)
    nc = lam.shape[0]
    np.testing.assert_allclose(l11 @ np.swapaxes(l11, 1, 2),
                               lam.T @ prob.A11 @ lam + np.eye(nc), rtol=1e-12)
    assert np.all(np.triu(l11, 1) == 0.0)
    np.testing.assert_allclose(t1 @ np.swapaxes(l11, 1, 2),
                               np.broadcast_to(lam, t1.shape), rtol=1e-12, atol=1e-14)
    full = prob.b11.to_sparse(l11).toarray()
    assert full.shape == (prob.q1, prob.q1)
    assert prob.b11.log_det(l11) == pytest.approx(np.linalg.slogdet(full)[1], rel=1e-12)
    rhs = np.random.default_rng(2).normal(size=(l11.shape[0], nc))
    u = prob.b11.solve_transposed(l11, rhs)
    np.testing.assert_allclose(full.T @ u.ravel(), rhs.ravel(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("policy", [{}, {"dense_g_fill": 1.0, "dense_g_work": 0},
                                    {"dense_g_fill": 1.0, "dense_g_work": 0, "max_pairs": 0},
                                    {"dense_g_fill": 1.0, "dense_g_work": 0, "max_pairs": 0,
                                     "max_group_grams": 0}])
@pytest.mark.parametrize("formula", ["y ~ x + (1 | g) + (1 | h)",
                                     "y ~ x + (x | g) + (1 | h) + (1 | k)"])
def test_every_off_diagonal_type_gives_the_rank_update_at_the_keys(
        formula: str, policy: dict[str, Any]) -> None:
    prob = _problem(formula, **policy)
    theta = _theta(prob)
    _, t1 = prob.b11.factor(prob.terms[0].lower_factor(theta))
    g = prob.G.toarray()
    b = sp.block_diag(list(t1 @ np.swapaxes(t1, 1, 2))).toarray()
    want = (g @ b @ g.T).ravel()[prob.b21.keys]
    np.testing.assert_allclose(prob.b21.rank_update(t1), want, rtol=1e-11,
                               atol=1e-11 * np.abs(want).max())
    # the keys: the upper triangle's positions where G Gᵀ can be non-zero, each once
    rows, cols = np.divmod(prob.b21.keys, prob.m)
    assert np.all(rows <= cols) and np.unique(prob.b21.keys).shape == prob.b21.keys.shape
    # L21 = Λ₂'G T1 from any type
    l21 = prob.block21(theta, t1).toarray()
    np.testing.assert_allclose(l21, prob.lambda_rest_t(theta).toarray() @ g
                               @ sp.block_diag(list(t1)).toarray(), rtol=1e-12, atol=1e-14)


def test_reweighting_keeps_or_replans_the_types() -> None:
    formula = "y ~ x + (1 | g) + (1 | h)"
    w = np.random.default_rng(4).uniform(0.5, 2.0, 600)
    dense = _problem(formula)
    dense.reweight(w, dense.y)
    assert isinstance(dense.b21, DenseBlock) and dense.b21.g is dense.G
    grouped = _problem(formula, dense_g_fill=1.0, dense_g_work=0)
    assert isinstance(grouped.b21, PairsBlock) and grouped.b21.sources is None
    grouped.reweight(w, grouped.y)
    # weights break the groups of equal A11: one column per level, refreshed from G
    assert isinstance(grouped.b21, PairsBlock) and grouped.b21.sources is not None
    assert grouped.b21.group_level.shape[0] == grouped.terms[0].nl
    assert grouped.b22.m22 is grouped.M22
