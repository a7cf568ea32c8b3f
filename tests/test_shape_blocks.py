"""The blocked engine on design shapes it once factored the slow way (issue 12, shapes):

- terms on the first term's grouping factor after it (``(x || g)``'s slope,
  ``(1 | g) + (0 + f | g)``) make block 2 arrow-shaped, factored as such
  (:class:`~lmeformula.pls.blocks.ArrowBlock`): the layout chosen, the same factor as the
  dense one, and lme4's criterion at lme4's θ;
- 2 x 2 blocks of block 1 (``(x | g)`` first) factored by closed forms over all levels, bit
  for bit what the batched LAPACK calls gave where those round alike (unfused multiply-adds,
  probed at run time), within their rounding error bounds everywhere, and lme4's criterion
  at lme4's θ.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import as_float_array, case_data, case_kwargs, load_case

import lmeformula as lmf
from lmeformula.pls import PLSProblem, term_shapes
from lmeformula.pls import policy as pls_policy
from lmeformula.pls.blocks import ArrowBlock, BlockDiagonalBlock, DenseDiagonalBlock


def _data(seed: int = 3, n: int = 2000, nl: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, nl, n)
    return pd.DataFrame({"y": rng.normal(size=n) + rng.normal(size=nl)[g],
                         "x": rng.normal(size=n), "z": rng.normal(size=n),
                         "g": g.astype(str), "h": rng.integers(0, nl, n).astype(str),
                         "b": rng.integers(0, 30, n).astype(str),
                         "f": rng.integers(0, 3, n).astype(str)})


def _problem(formula: str, df: pd.DataFrame, counting: bool = True, **policy: Any,
             ) -> PLSProblem:
    pf = lmf.lFormula(formula, df)
    re = pf.reTrms
    old = pls_policy.POLICY
    pls_policy.POLICY = replace(old, **policy)
    try:
        return PLSProblem(re.Zt, pf.X_values, np.asarray(pf.y, float), None,
                          term_shapes(re.terms), re.level_factors() if counting else None)
    finally:
        pls_policy.POLICY = old


ARROWS = {  # formula: the rows of block 2 of level l's block of D, as a function of nl
    "y ~ x + (x || g)": lambda nl, lev: [lev],
    "y ~ x + (x + z || g)": lambda nl, lev: [lev, nl + lev],
    "y ~ x + (x || g) + (1 | b)": lambda nl, lev: [lev],
    "y ~ x + (1 | g) + (0 + f | g)": lambda nl, lev: [3 * lev, 3 * lev + 1, 3 * lev + 2],
    "y ~ x + (x | g) + (0 + z | g) + (1 | b)": lambda nl, lev: [lev],
}


@pytest.mark.parametrize("formula", sorted(ARROWS))
def test_terms_on_the_first_factor_make_block_2_an_arrow(formula: str) -> None:
    prob = _problem(formula, _data(), arrow_min_rows=1)
    assert isinstance(prob.b22, ArrowBlock)
    nl = prob.terms[0].nl
    expected = np.array([ARROWS[formula](nl, lev) for lev in range(nl)])
    np.testing.assert_array_equal(prob.b22.lead, expected)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g) + (1 | b)",
                                     # as many levels as g, but another factor
                                     "y ~ x + (1 | g) + (1 | h)",
                                     "y ~ x + (1 | g) + (0 + x | h)",
                                     # g's slope after a term on another factor
                                     "y ~ x + (1 | g) + (1 | h) + (0 + x | g)"])
def test_other_factors_keep_block_2_dense(formula: str) -> None:
    prob = _problem(formula, _data(), arrow_min_rows=1)
    assert type(prob.b22) is DenseDiagonalBlock


def test_the_policy_sets_the_arrow_s_least_rows() -> None:
    df = _data(nl=120)
    assert isinstance(_problem("y ~ x + (x || g)", df, arrow_min_rows=120).b22, ArrowBlock)
    assert type(_problem("y ~ x + (x || g)", df, arrow_min_rows=121).b22) is DenseDiagonalBlock


@pytest.mark.parametrize("counting", [True, False])
@pytest.mark.parametrize("formula", sorted(ARROWS))
def test_arrow_factor_is_the_dense_factor(formula: str, counting: bool) -> None:
    df = _data()
    arrow = _problem(formula, df, counting, arrow_min_rows=1)
    dense = _problem(formula, df, counting, arrow_min_rows=10**9)
    assert isinstance(arrow.b22, ArrowBlock) and type(dense.b22) is DenseDiagonalBlock
    ntheta = sum(t.theta_length for t in arrow.terms)
    for seed in range(3):
        theta = np.random.default_rng(seed).uniform(0.2, 1.5, ntheta)
        for reml in (True, False):
            da, fa = arrow.deviance(theta, reml)
            dd, fd = dense.deviance(theta, reml)
            assert da == pytest.approx(dd, rel=1e-13)
        # the same matrix in the same storage: lower triangle, Zt's order
        np.testing.assert_allclose(np.tril(fa.L22), np.tril(fd.L22), rtol=1e-12, atol=1e-12)
        (ba, ua), (bd, ud) = arrow.solve(fa), dense.solve(fd)
        np.testing.assert_allclose(ba, bd, rtol=1e-11)
        np.testing.assert_allclose(ua, ud, rtol=1e-10, atol=1e-12)
        if arrow.has_gradient and seed == 0:
            np.testing.assert_allclose(arrow.gradient(fa, True), dense.gradient(fd, True),
                                       rtol=1e-9, atol=1e-9)


def test_arrow_survives_reweighting_and_matches_the_dense_block() -> None:
    df = _data()
    arrow = _problem("y ~ x + (x || g) + (1 | b)", df, arrow_min_rows=1)
    dense = _problem("y ~ x + (x || g) + (1 | b)", df, arrow_min_rows=10**9)
    w = np.linspace(0.2, 2.0, len(df))
    y = np.asarray(df.y) * 0.7
    arrow.reweight(w, y)
    dense.reweight(w, y)
    assert isinstance(arrow.b22, ArrowBlock)
    theta = np.array([0.8, 0.4, 1.1])
    assert arrow.deviance(theta, True)[0] == pytest.approx(dense.deviance(theta, True)[0],
                                                           rel=1e-13)


def test_arrow_reports_a_failed_pivot() -> None:
    prob = _problem("y ~ x + (x || g) + (1 | b)", _data(), arrow_min_rows=1)
    b22 = prob.b22
    assert isinstance(b22, ArrowBlock)
    theta = np.array([0.8, 0.4, 1.1])
    s = b22.assemble(theta, prob.b21.rank_update(prob.b11.factor(np.eye(1) * 0.8)[1]))
    good = s.copy()
    s[3, 3] = -1.0  # a pivot of D
    assert b22.factor(s)[1] != 0
    good[-2, -2] = -1e6  # a pivot of the dense rest
    assert b22.factor(good)[1] != 0


# -- against lme4: the fixtures' criteria at lme4's θ, through the blocked engine -----------
ARROW_CASES = ["sleepstudy_dblvert", "sleepstudy_indep", "sleep_minus_one", "sim_dblvert2",
               "probe_08", "probe_03", "machines_two", "sim_ties2"]
PAIR_CASES = ["sleepstudy_slope", "sleep3", "sim_na", "probe_01", "probe_02"]


def _blocked_devfun(case_id: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, Any]:
    monkeypatch.setattr(pls_policy, "POLICY",
                        replace(pls_policy.POLICY, dense_limit=0, arrow_min_rows=1))
    case = load_case(case_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = lmf.lFormula(case["formula"], case_data(case), **case_kwargs(case))
        return case["fit"], lmf.mkLmerDevfun(pf)


@pytest.mark.parametrize("case_id", ARROW_CASES)
def test_arrow_criterion_is_lme4_s(case_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ref, devfun = _blocked_devfun(case_id, monkeypatch)
    assert isinstance(devfun.problem.b22, ArrowBlock)
    for probe in ref["dev_at"]:
        theta = as_float_array(probe["theta"])
        assert devfun(theta) == pytest.approx(probe["value"], rel=1e-10)


@pytest.mark.parametrize("case_id", PAIR_CASES)
def test_pair_blocks_criterion_is_lme4_s(case_id: str, monkeypatch: pytest.MonkeyPatch,
                                         ) -> None:
    ref, devfun = _blocked_devfun(case_id, monkeypatch)
    assert isinstance(devfun.problem.b11, BlockDiagonalBlock)
    assert devfun.problem.b11.a_rows is not None  # the closed forms
    for probe in ref["dev_at"]:
        theta = as_float_array(probe["theta"])
        assert devfun(theta) == pytest.approx(probe["value"], rel=1e-10)


# -- 2 x 2 blocks of block 1 ------------------------------------------------------------------
def _batched_lapack(a: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block 1's factor as it was formed before the closed forms (one LAPACK call a level)."""
    d = lam.T @ a @ lam
    d += np.eye(2)
    l11 = np.linalg.cholesky(d)
    return l11, np.swapaxes(np.linalg.solve(l11, np.broadcast_to(lam.T, l11.shape)), 1, 2)


def _unfused(op: str) -> bool:
    """Whether this process's batched call ``op`` ("gemm": stacked matmul, "potrf":
    cholesky, "gesv": solve, on (3, 2, 2) stacks as :func:`_batched_lapack` calls them)
    rounds a·b + c as two operations, as the closed forms (numpy's element-wise arithmetic)
    do. Probed on an input where the two differ: with m = 1 - 2⁻³⁰, b = 1 + 2⁻³⁰,
    m·b = 1 - 2⁻⁶⁰ exactly, so 1 - m·b is 0 rounded twice and 2⁻⁶⁰ fused (a kernel with
    fused multiply-adds, as OpenBLAS's SkylakeX dtrsm, gives the latter). Which kernels fuse
    is a property of the BLAS build and the CPU, so it is asked of the library, not
    inferred from a kernel's name."""
    m, b = 1.0 - 2.0**-30, 1.0 + 2.0**-30
    unfused, fused = 1.0 - m * b, 2.0**-60
    assert unfused == 0.0 and fused != unfused  # (the probe can tell them apart)
    if op == "gemm":  # [m, 1]·[b, -1]: m·b - 1
        got = (np.broadcast_to(np.array([[m, 1.0], [0.0, 0.0]]), (3, 2, 2))
               @ np.array([[b, 0.0], [-1.0, 0.0]]))[:, 0, 0]
        return bool(np.all(got == m * b - 1.0))
    if op == "potrf":  # l11 = sqrt(c - m·m), c - m·m = 2⁻²⁹ + 2⁻⁴⁰ (- 2⁻⁶⁰ fused)
        c = 1.0 + 2.0**-40
        assert c - m * m != float(Fraction(c) - Fraction(m) ** 2)
        got = np.linalg.cholesky(np.broadcast_to(np.array([[1.0, m], [m, c]]), (3, 2, 2)))
        return bool(np.all(got[:, 1, 1] == np.sqrt(c - m * m)))
    assert op == "gesv"  # [[1, 0], [m, 1]] x = (b, 1): x₁ = 1 - m·b (no row swap: m < 1)
    x = np.linalg.solve(np.broadcast_to(np.array([[1.0, 0.0], [m, 1.0]]), (3, 2, 2)),
                        np.broadcast_to(np.array([[b, 0.0], [1.0, 0.0]]), (3, 2, 2)))
    return bool(np.all(x[:, 1, 0] == unfused))


def test_pair_blocks_closed_forms_are_the_lapack_factor() -> None:
    """The closed forms against the batched LAPACK calls they replaced: bit for bit where
    those calls round as the closed forms do (unfused; probed at run time), and always
    within the rounding error bounds of the two computations.

    With fused multiply-adds (OpenBLAS's SkylakeX dtrsm), dgesv's forward and back
    substitutions round y = b₁ - m·b₀ once where the closed forms round twice: the solves
    then differ by up to a unit of m·b₀ — after cancellation many units of the result, so
    the bound is componentwise in the operands (Higham, Accuracy and Stability, Thm 9.4 and
    Skeel's bound): each solve's error in X = L⁻¹λ' is within γ|L⁻¹|·|L̂||Û|·|X|, with
    |L̂||Û| = |L| but for the row swap of partial pivoting, which puts 2·(l₀₀/|l₁₀|)·l₁₁ ≤
    2·l₁₁ in the upper corner; the two solves' errors add (c = 6 ε ≥ 2·γ₆). L itself:
    where λ'Aλ or the Cholesky's d₁₁ - l₁₀² round differently, each is within Cholesky's
    backward error, |LLᵀ - (λ'Aλ + I)| ≤ c·(|L||Lᵀ| + |λ|ᵀ|A||λ| + I)."""
    bits_l = _unfused("gemm") and _unfused("potrf")
    bits_t = bits_l and _unfused("gesv")
    c = 6 * np.finfo(float).eps
    rng = np.random.default_rng(5)
    swapped = 0
    for trial in range(300):
        nl = int(rng.integers(1, 200))
        a = rng.normal(size=(nl, 2, 2)) * np.exp(rng.normal(size=(nl, 1, 1)) * 3)
        a = a @ np.swapaxes(a, 1, 2)  # cross-products: symmetric, semi-definite
        if trial % 7 == 0:
            a[:, 1, :] = a[:, :, 1] = 0.0  # a slope of zeros
        lam = np.tril(rng.normal(size=(2, 2)) * np.exp(rng.normal() * 2))
        if trial % 5 == 0:
            lam[1, 1] = 0.0  # on the boundary
        if trial % 11 == 0:
            lam[0, 0] = 0.0
        lw, tw = _batched_lapack(a, lam)
        lg, tg = BlockDiagonalBlock(a).factor(lam)
        if bits_l:  # bit for bit, signed zeros included
            assert np.array_equal(lw.view(np.int64), lg.view(np.int64))
        if bits_t:
            assert np.array_equal(tw.view(np.int64), tg.view(np.int64))
        assert np.array_equal(lg, np.tril(lg))
        abs_lam = np.abs(lam)
        scale_d = abs_lam.T @ np.abs(a) @ abs_lam + np.eye(2)
        abs_l = np.abs(lw)
        residual = lg @ np.swapaxes(lg, 1, 2) - (lam.T @ a @ lam + np.eye(2))
        assert np.all(np.abs(residual) <= c * (abs_l @ np.swapaxes(abs_l, 1, 2) + scale_d))
        x_w, x_g = np.swapaxes(tw, 1, 2), np.swapaxes(tg, 1, 2)
        growth = abs_l.copy()
        growth[:, 0, 1] += 2 * lw[:, 1, 1]
        inv_l = np.abs(np.linalg.inv(lw))
        bound = inv_l @ (c * growth + np.abs(lg - lw)) @ np.abs(x_w)
        assert np.all(np.abs(x_g - x_w) <= bound)
        swapped += int(np.sum(np.abs(lw[:, 1, 0]) > lw[:, 0, 0]))
    assert swapped > 100  # dgesv's row swap was exercised


def test_pair_blocks_bound_catches_a_wrong_solve() -> None:
    # the bound above is rounding-sized: a solve off by 1e-12 relative fails it
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 2, 2))
    a = a @ np.swapaxes(a, 1, 2)
    lam = np.array([[0.8, 0.0], [0.3, 0.5]])
    lw, tw = _batched_lapack(a, lam)
    x_w = np.swapaxes(tw, 1, 2)
    growth = np.abs(lw)
    growth[:, 0, 1] += 2 * lw[:, 1, 1]
    bound = np.abs(np.linalg.inv(lw)) @ (6 * np.finfo(float).eps * growth) @ np.abs(x_w)
    assert not np.all(np.abs(x_w * (1 + 1e-12) - x_w) <= bound)


def test_unbalanced_vector_term_blocked_matches_dense_engine() -> None:
    # a few large groups and many groups of two rows, (x | g): the shape of the benchmark's
    # "unbalanced" design, small
    rng = np.random.default_rng(8)
    g = np.concatenate([np.repeat(np.arange(3), 400), 3 + np.repeat(np.arange(300), 2)])
    x = rng.normal(size=g.size)
    b = rng.normal(scale=0.6, size=(303, 2))
    df = pd.DataFrame({"y": 1 + b[g, 0] + (0.5 + b[g, 1]) * x + rng.normal(size=g.size),
                       "x": x, "g": g.astype(str)})
    prob = _problem("y ~ x + (x | g)", df)
    pf = lmf.lFormula("y ~ x + (x | g)", df)
    dense = lmf.pls.DensePLSProblem(pf.reTrms.Zt, pf.X_values, np.asarray(pf.y, float), None,
                                    term_shapes(pf.reTrms.terms))
    assert isinstance(prob.b11, BlockDiagonalBlock) and prob.b11.a_rows is not None
    for theta in ([1.0, 0.0, 1.0], [0.6, 0.01, 0.58], [2.0, -1.5, 0.3], [0.5, 0.2, 0.0]):
        th = np.array(theta)
        assert prob.deviance(th, True)[0] == pytest.approx(dense.deviance(th, True)[0],
                                                           rel=1e-12)
