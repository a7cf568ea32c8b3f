"""The downdate by per-group Gram matrices (too many pairs to list, scalar first term): the
same criterion and gradient as the sparse products it replaces, and a re-weighting that
leaves it for the sparse products (weights break the groups)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
from cases import crossed_intercepts
from threadpoolctl import threadpool_limits

import lmeformula as lmf
import lmeformula.pls.policy as pls_policy
from lmeformula.modular import LmerDevfun
from lmeformula.pls.blocks import PairsBlock, SparseBlock
from lmeformula.pls.downdate import _NARROW, CompactRows, NarrowColumns, _narrowest

FORMULA = "y ~ x + (1 | subj) + (1 | item)"


def crossed(seed: int = 3) -> pd.DataFrame:
    # G 10 % filled (not the dense-G path); subjects' counts take few values (few groups)
    return crossed_intercepts(seed, n=6000, nsubj=300, nitem=200)


def devfun(monkeypatch: pytest.MonkeyPatch, **policy: int) -> LmerDevfun:
    monkeypatch.setattr(pls_policy, "POLICY", dataclasses.replace(pls_policy.POLICY, **policy))
    dev = lmf.lmer(FORMULA, crossed(), devFunOnly=True)
    assert isinstance(dev, LmerDevfun)
    return dev


THETAS = [np.array([1.0, 1.0]), np.array([0.3, 2.5]), np.array([0.0, 0.7])]


def test_group_grams_give_the_sparse_products_criterion_and_gradient(
        monkeypatch: pytest.MonkeyPatch) -> None:
    grams = devfun(monkeypatch, max_pairs=0)  # the pairs are "too many": the grams path
    b21 = grams.problem.b21
    assert isinstance(b21, PairsBlock) and isinstance(b21.pairs, CompactRows)
    ngroups = b21.pairs.shape[1]
    assert 1 < ngroups < 300  # subjects grouped by equal counts
    sparse = devfun(monkeypatch, max_pairs=0, max_group_grams=0)
    assert type(sparse.problem.b21) is SparseBlock  # neither pairs nor Grams
    listed = devfun(monkeypatch)  # the default: the pairs listed
    for theta in THETAS:
        for reml in (True, False):
            grams.REML = sparse.REML = listed.REML = reml
            want = listed(theta)
            assert grams(theta) == pytest.approx(want, rel=1e-12)
            assert sparse(theta) == pytest.approx(want, rel=1e-12)
    theta = THETAS[1]
    np.testing.assert_allclose(grams.gradient(theta), listed.gradient(theta), rtol=1e-9)


def test_reweighting_leaves_the_group_grams(monkeypatch: pytest.MonkeyPatch) -> None:
    grams = devfun(monkeypatch, max_pairs=0)
    problem = grams.problem
    w = np.random.default_rng(1).uniform(0.5, 2.0, problem.n)
    problem.reweight(w, problem.y)
    assert type(problem.b21) is SparseBlock  # the groups of equal A11 no longer hold
    monkeypatch.setattr(pls_policy, "POLICY", dataclasses.replace(pls_policy.POLICY))
    df = crossed()
    fresh = lmf.lmer(FORMULA, df, weights=w, devFunOnly=True)
    assert isinstance(fresh, LmerDevfun)
    for theta in THETAS:
        assert grams(theta) == pytest.approx(fresh(theta), rel=1e-10)


def test_grams_are_stored_as_narrow_exact_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # unit weights, two intercepts: the random effects' keys hold counts (uint8 here), the
    # keys with X and y real numbers (float32 or float64); read back, the very same C
    grams = devfun(monkeypatch, max_pairs=0)
    c = grams.problem.b21.pairs
    assert isinstance(c, CompactRows)
    kinds = {chunk.dtype for chunk in c.chunks}
    assert np.dtype(np.uint8) in kinds and np.dtype(np.float64) in kinds
    assert c.nbytes < 0.5 * c.shape[0] * c.shape[1] * 8
    full = c.toarray()
    for lo, hi, chunk in zip(c.starts[:-1], c.starts[1:], c.chunks, strict=True):
        assert np.array_equal(full[lo:hi].astype(chunk.dtype), chunk)


def test_compact_rows_product_is_the_float64_product_bit_for_bit() -> None:
    # chunks of every dtype, with a last chunk of a few rows: each row is summed as one
    # product over the whole float64 matrix sums it on one BLAS thread, on two threads too
    rng = np.random.default_rng(7)
    cols = 37
    step = CompactRows.chunk_starts(10**6, cols)[1]
    rows = 4 * step + 3
    starts = CompactRows.chunk_starts(rows, cols)
    assert np.array_equal(starts, [0, step, 2 * step, 3 * step, 4 * step, rows])
    assert step % 8 == 0
    full = rng.integers(0, 200, size=(rows, cols)).astype(float)  # counts: uint8
    full[step : 2 * step] *= 300.0  # above 255: uint16
    full[2 * step : 3 * step] = rng.normal(size=(step, cols)).astype(np.float32)
    full[3 * step : 4 * step] = rng.normal(size=(step, cols))  # float64
    full[-1, 3] = -0.0  # not a count: the last chunk keeps its sign in float32
    chunks = []
    for lo, hi in itertools.pairwise(starts):
        need = max(_narrowest(full[lo:hi, j].copy(), np.array([0, hi - lo]))[0]
                   for j in range(cols))
        chunks.append(full[lo:hi].astype(_NARROW[need]))
    assert [c.dtype for c in chunks] == [*_NARROW, np.dtype(np.float32)]
    # the choice per chunk of a whole column at once, as the Gram matrices are stored
    assert _narrowest(full[:, 0].copy(), starts).tolist() == [0, 1, 2, 3, 0]
    compact = CompactRows((rows, cols), starts, chunks)
    assert np.array_equal(compact.toarray(), full)
    assert np.signbit(compact.toarray()[-1, 3])
    for _ in range(5):
        v = rng.normal(size=cols) * rng.uniform(0.01, 100.0)
        with threadpool_limits(1):
            want = full @ v
            assert np.array_equal(compact @ v, want)
        with threadpool_limits(2):  # halves of whole chunks: the same sums
            assert np.array_equal(compact @ v, want)


@pytest.mark.parametrize("m", [40, 70_000])
@pytest.mark.parametrize("top", [7, 300])
def test_narrow_columns_panels_are_scipys_toarray(m: int, top: int) -> None:
    """The Gram matrices' panels from G's narrow copy are scipy's dense columns entry for
    entry (bits, signed zeros as toarray makes them): counts up to ``top`` (uint8 or uint16),
    real values and -0.0 on a few rows (X's and y's), row indices past uint16's range."""
    import scipy.sparse as sp

    rng = np.random.default_rng(top + m)
    ncol = 25
    dense = np.where(rng.uniform(size=(m, ncol)) < min(0.3, 600 / m),
                     rng.integers(0, top + 1, size=(m, ncol)).astype(float), 0.0)
    dense[-2:] = rng.normal(size=(2, ncol))  # X's and y's rows: real values
    dense[-1, -1] = 0.5  # stored, then made an explicit -0.0 (a structural pattern may hold one)
    g = sp.csc_matrix(dense)
    g.data[g.indptr[-1] - 1] = -0.0
    g.sort_indices()
    narrow = NarrowColumns(g)
    assert narrow.values.dtype == (np.uint8 if top <= 255 else np.uint16)
    for lo, hi in ((0, ncol), (3, 9), (24, 25), (5, 5)):
        want = g[:, lo:hi].toarray(order="F")
        got = narrow.panel(lo, hi)
        assert got.flags.f_contiguous
        assert got.tobytes(order="F") == want.tobytes(order="F")
