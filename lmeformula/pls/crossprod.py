"""Cross-products of [Z X y] by counting observations per pair of levels (as MixedModels.jl
forms them once per model): per-level blocks, pair structures, level sums."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .system import _policy
from .terms import TermShape


def _block_diagonal(blocks: np.ndarray) -> sp.csr_matrix:
    """Sparse block-diagonal matrix from (nl, nc, nc) blocks."""
    nl, nc, _ = blocks.shape
    base = np.arange(nl)[:, None, None] * nc
    rows = (base + np.arange(nc)[None, :, None]).repeat(nc, axis=2)
    cols = (base + np.arange(nc)[None, None, :]).repeat(nc, axis=1)
    return sp.csr_matrix((blocks.ravel(), (rows.ravel(), cols.ravel())),
                         shape=(nl * nc, nl * nc))



def _fits_dense(terms: Sequence[TermShape], p: int) -> bool:
    """Whether the cross-products can be formed by counting per pair of levels: M22 (dense
    in every path) and its blocks between terms of block 2 are small enough. G's size does
    not matter: its entries are counted at the pairs of levels that occur (``unique`` over
    the observations' pairs when the possible pairs outnumber them), in memory linear in n."""
    m = sum(t.size for t in terms[1:]) + p + 1
    pairs = sum(t.nl * u.nl for t in terms[1:] for u in terms[1:])
    limit = _policy().max_dense_cross
    return m * m <= limit and pairs <= limit


def _weighted(w: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    """w·x, or x itself for unit weights (None): 1·x is x bit for bit, and no n-length
    product is made."""
    return x if w is None else w * x


def _level_cross(codes_s: np.ndarray, x_s: np.ndarray, nl_s: int, codes_t: np.ndarray,
                 x_t: np.ndarray, nl_t: int, w: np.ndarray | None) -> np.ndarray:
    """Z_s'WZ_t as a dense (nl_s·nc_s) x (nl_t·nc_t) array, rows level-major as in Zt
    (``w`` None: unit weights)."""
    nc_s, nc_t = x_s.shape[1], x_t.shape[1]
    key = codes_s.astype(np.int64) * nl_t + codes_t
    out = np.empty((nl_s, nc_s, nl_t, nc_t))
    for a in range(nc_s):
        wa = _weighted(w, x_s[:, a])
        for b in range(nc_t):
            out[:, a, :, b] = np.bincount(key, weights=wa * x_t[:, b],
                                          minlength=nl_s * nl_t).reshape(nl_s, nl_t)
    return out.reshape(nl_s * nc_s, nl_t * nc_t)


@dataclass(frozen=True)
class _PairStructure:
    """Which pairs of levels of two factors occur together (found once per model).

    ``present``: the codes ``level_s * nl_t + level_t`` of the pairs that occur, sorted;
    ``inverse``: each observation's position in ``present`` (None when every pair is
    counted densely, as for few possible pairs)."""

    nl_t: int
    present: np.ndarray
    inverse: np.ndarray | None


def _pair_structure(codes_s: np.ndarray, nl_s: int, codes_t: np.ndarray, nl_t: int,
                    ) -> _PairStructure:
    """The pairs of levels that occur: by a count over all possible pairs when there are
    no more of them than observations, else by ``unique`` over the pairs met."""
    key = codes_s.astype(np.int64) * nl_t + codes_t
    if nl_s * nl_t <= codes_s.shape[0]:
        present = np.flatnonzero(np.bincount(key, minlength=nl_s * nl_t))
        return _PairStructure(nl_t, present, None)
    present, inverse = np.unique(key, return_inverse=True)
    return _PairStructure(nl_t, present, inverse.ravel())


def _level_cross_entries(codes_s: np.ndarray, x_s: np.ndarray, nl_s: int,
                         codes_t: np.ndarray, x_t: np.ndarray, nl_t: int,
                         w: np.ndarray | None, plan: _PairStructure | None = None,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries (rows, cols, values) of Z_s'WZ_t at the pairs of levels that occur
    (``plan``; found here when not given), zeros included: the pattern does not depend on
    the weights. The sums are the same bincounts however the pairs are indexed."""
    if plan is None:
        plan = _pair_structure(codes_s, nl_s, codes_t, nl_t)
    nc_s, nc_t = x_s.shape[1], x_t.shape[1]
    level_s, level_t = np.divmod(plan.present, nl_t)
    if plan.inverse is None:
        dense = _level_cross(codes_s, x_s, nl_s, codes_t, x_t, nl_t, w)
        out = dense.reshape(nl_s, nc_s, nl_t, nc_t)[level_s, :, level_t, :]
        del dense  # before the rows and columns are made
    else:
        out = np.empty((plan.present.shape[0], nc_s, nc_t))
        for a in range(nc_s):
            wa = _weighted(w, x_s[:, a])
            for b in range(nc_t):
                out[:, a, b] = np.bincount(plan.inverse, weights=wa * x_t[:, b],
                                           minlength=plan.present.shape[0])
    # 32-bit: a term's rows and the first term's columns number far below 2³¹ (the blocked
    # engine's block 2 is dense), and G's CSR keeps 32-bit indices
    level_s = level_s.astype(np.int32)
    level_t = level_t.astype(np.int32)
    col_s, col_t = np.arange(nc_s, dtype=np.int32), np.arange(nc_t, dtype=np.int32)
    rows = (level_s[:, None, None] * np.int32(nc_s) + col_s[None, :, None]).repeat(nc_t, axis=2)
    cols = (level_t[:, None, None] * np.int32(nc_t) + col_t[None, None, :]).repeat(nc_s, axis=1)
    return rows.ravel(), cols.ravel(), out.ravel()


def _levels_major(g: sp.csr_matrix, first: TermShape) -> np.ndarray:
    """Gᵀ dense, stored per level of the first term, (nl, nc, m), for batched products with
    T1's blocks."""
    m = g.shape[0]
    out = np.empty((first.nl, first.nc, m))
    flat = out.reshape(first.nl * first.nc, m)
    # a band of G's rows at a time (~1 MB dense): no m x q₁ dense copy of G beside the
    # result (the 10⁶-row dense design: 16 MB, twice, with the transposing copy)
    step = max(1, (1 << 17) // max(g.shape[1], 1))
    for lo in range(0, m, step):
        hi = min(lo + step, m)
        flat[:, lo:hi] = g[lo:hi].toarray().T
    return out


def _level_blocks(codes: np.ndarray, x: np.ndarray, nl: int, w: np.ndarray | None,
                  ) -> np.ndarray:
    """Z_i'WZ_i's diagonal blocks: (nl, nc, nc) sums of w x_a x_b per level (``w`` None:
    unit weights)."""
    nc = x.shape[1]
    out = np.empty((nl, nc, nc))
    for a in range(nc):
        for b in range(a, nc):
            out[:, a, b] = out[:, b, a] = np.bincount(
                codes, weights=_weighted(w, x[:, a]) * x[:, b], minlength=nl)
    return out


def _level_sums(codes: np.ndarray, values: np.ndarray, nl: int,
                times: np.ndarray | None = None) -> np.ndarray:
    """Sums of each column of ``values`` per level: (nl, ncol); with ``times`` (n,), of each
    column times it (formed column by column: no n x ncol product is held)."""
    return np.column_stack([np.bincount(codes, minlength=nl, weights=values[:, a]
                                        if times is None else values[:, a] * times)
                            for a in range(values.shape[1])])
