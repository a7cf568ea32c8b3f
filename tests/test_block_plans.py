"""The blocked engine's typed plan for block 2 (pls/plans.py): which rectangles get which
kind, that they tile block 2's upper triangle, and that the update at θ is
Λ₂'(M22 - G B Gᵀ)Λ₂ + I."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import lmeformula as lmf
from lmeformula.pls import PLSProblem, term_shapes
from lmeformula.pls import policy as pls_policy
from lmeformula.pls.plans import ScaledBlock, VectorBlock, ZeroBlock


def _data(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "g": rng.integers(0, 40, n).astype(str),
                         "h": rng.integers(0, 9, n).astype(str),
                         "k": rng.integers(0, 5, n).astype(str)})


def _problem(formula: str, band: int = 128) -> PLSProblem:
    pf = lmf.lFormula(formula, _data())
    re = pf.reTrms
    factors = re.level_factors()
    old = pls_policy.POLICY
    pls_policy.POLICY = replace(old, band=band)
    try:
        return PLSProblem(re.Zt, pf.X_values, np.asarray(pf.y, float), None,
                          term_shapes(re.terms), factors)
    finally:
        pls_policy.POLICY = old


def test_all_scalar_terms_zero_fill_their_diagonal_blocks() -> None:
    plan = _problem("y ~ x + (1 | g) + (1 | h) + (1 | k)", band=4).b22.plan
    kinds = {(b.a, b.b): type(b) for b in plan.blocks}
    # blocks: h (9 levels), k (5), then X and y
    assert kinds == {(0, 0): ZeroBlock, (1, 1): ZeroBlock, (2, 2): ScaledBlock,
                     (0, 1): ScaledBlock, (0, 2): ScaledBlock, (1, 2): ScaledBlock}
    assert not plan.downdate_first and plan.vector_blocks == ()
    # the diagonal blocks come in bands of 4 rows, each from its diagonal rightwards
    bands = [(b.rows, b.cols) for b in plan.blocks if (b.a, b.b) == (0, 0)]
    assert bands == [(slice(0, 4), slice(0, 9)), (slice(4, 8), slice(4, 9)),
                     (slice(8, 9), slice(8, 9))]


def test_a_vector_term_makes_its_pairs_vector_blocks() -> None:
    plan = _problem("y ~ x + (1 | g) + (x | h) + (1 | k)").b22.plan
    kinds = {(b.a, b.b): type(b) for b in plan.blocks}
    assert kinds[(0, 0)] is VectorBlock and kinds[(0, 1)] is VectorBlock
    assert kinds[(0, 2)] is VectorBlock
    # scalar pairs are scaled, not zero-filled, and downdated before they are scaled
    assert kinds[(1, 1)] is ScaledBlock and kinds[(1, 2)] is ScaledBlock
    assert plan.downdate_first
    assert [(b.a, b.b) for b in plan.vector_blocks] == [(0, 0), (0, 1), (0, 2)]


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g) + (1 | h) + (1 | k)",
                                     "y ~ x + (x | g) + (x | h) + (1 | k)",
                                     "y ~ 1 + (1 | g) + (x | h)"])
def test_rectangles_tile_the_upper_triangle(formula: str) -> None:
    plan = _problem(formula, band=3).b22.plan
    count = np.zeros((plan.m, plan.m), dtype=int)
    for b in plan.blocks:
        count[b.rows, b.cols] += 1
    assert np.array_equal(np.triu(count), np.triu(np.ones_like(count)))
    # every pair's downdate entries are assembled as that pair's rectangles are
    for seg in plan.segments:
        assert any(b == seg.kind for b in plan.blocks)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g) + (1 | h) + (1 | k)",
                                     "y ~ x + (x | g) + (x | h) + (1 | k)",
                                     "y ~ x + (1 | g) + (x | h)"])
def test_update_is_the_scaled_downdated_inflated_block(formula: str) -> None:
    prob = _problem(formula, band=5)
    rng = np.random.default_rng(7)
    theta = rng.uniform(0.2, 1.5, size=sum(t.theta_length for t in prob.terms))
    l11, t1 = prob.b11.factor(prob.terms[0].lower_factor(theta))
    s = prob.b22.assemble(theta, prob.b21.rank_update(t1))
    g = prob.G.toarray()
    b = sp.block_diag(list(t1 @ np.swapaxes(t1, 1, 2))).toarray()
    lam_t = prob.lambda_rest_t(theta).toarray()  # Λ₂' (identity on X and y)
    qr = prob.b22.plan.qr
    expected = lam_t @ (prob.M22 - g @ b @ g.T) @ lam_t.T
    expected[np.arange(qr), np.arange(qr)] += 1.0
    assert np.allclose(np.triu(s), np.triu(expected), rtol=1e-12, atol=1e-12)
    # block 1: L11 L11' = λ'A11λ + I level by level, T1 = λ L11⁻ᵀ
    lam1 = prob.terms[0].lower_factor(theta)
    assert np.allclose(l11 @ np.swapaxes(l11, 1, 2),
                       lam1.T @ prob.A11 @ lam1 + np.eye(lam1.shape[0]), rtol=1e-12)
    assert np.allclose(t1 @ np.swapaxes(l11, 1, 2), lam1, rtol=1e-12, atol=1e-14)
