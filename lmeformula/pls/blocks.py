"""The blocks of the blocked engine's system, as small types (MixedModels.jl's block types).

The augmented system [Z X y]'W[Z X y] is cut in two: block 1, the first term's random
effects (the term with most levels), and block 2, everything else (the other terms, X and y).
Each of its three blocks is stored as one of these types, chosen once per model; each owns its
storage and the steps of the per-θ update (MixedModels.jl's ``updateL!``) that apply to it:

- block 1 with itself, A11 = Z₁'WZ₁ (one nc₁ x nc₁ block per level, since every observation
  has one level of the term): :class:`DiagonalBlock` for a scalar term,
  :class:`BlockDiagonalBlock` (uniform k x k blocks) for a vector term. Per θ: scale by λ₁ on
  both sides, inflate by I, factor level by level; log-determinant, solves and inverses
  level by level.
- block 2 against block 1, G = [Z₂ X y]'WZ₁ (m x q₁): :class:`DenseBlock` when its measured
  fill, ``nnz / (m q₁)``, is above :attr:`BlockPolicy.dense_g_fill` and it is not too big
  (:meth:`BlockPolicy.dense_off_diagonal`), else :class:`SparseBlock`. Per θ its rank update
  L21 L21' = G B Gᵀ with B = T1 T1ᵀ (T1 = λ₁L11⁻ᵀ) lands on block 2 at fixed positions (the
  ``keys``): a dense G by one BLAS product of a panel with itself (syrk); a sparse G by a
  matrix C with (G B Gᵀ)[keys] = C vec(B_groups) formed once (:class:`PairsBlock`: products
  of pairs of G's entries, or per-group Gram matrices, :mod:`lmeformula.pls.downdate`), or,
  when even C is too big, by two sparse products. L21 = Λ₂'G T1 itself is formed only when
  a solution is asked for, sparse (G's pattern).
- block 2 with itself, M22: :class:`DenseDiagonalBlock`, dense. Per θ: copy scaled by Λ₂,
  rank-downdated, inflated (:func:`lmeformula.pls.plans.update_block2`, by typed
  rectangles), then factored by LAPACK. :class:`ArrowBlock` when block 2 starts with terms
  on the first term's grouping factor (``(x || g)``'s slope, ``(1 | g) + (0 + f | g)``):
  their rows stay block-diagonal, one small block per level, after the downdate (a level of
  them meets only its own level of block 1), so block 2 is arrow-shaped and is factored as
  such: those blocks level by level, then the dense rest after one rank update by them.

Block 1's diagonal and block-diagonal types follow from the term (its blocks are exactly
diagonal); block 2's off-diagonal type is the one choice made by measured fill (and by the
counts of the rank update's pairs, for a sparse G). Every threshold is in
:class:`~lmeformula.pls.policy.BlockPolicy`, read when the blocks are made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from .crossprod import _block_diagonal, _levels_major
from .downdate import CompactRows, NarrowPairs, _downdate_pattern
from .lapack import cholesky_exact_fit, potrf
from .plans import Block2Plan, update_block2
from .system import _policy
from .terms import TermShape

# keys weighed at a time by the gradient's sums over the pairs (:meth:`PairsBlock.quadratic`)
WEIGHT_CHUNK = 1 << 16


class KeyWeights(Protocol):
    """K̃ at the rank update's keys for the gradient, a range of keys at a time."""

    @property
    def count(self) -> int:
        """How many keys are inside K̃'s rows in all."""

    def __call__(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Of keys ``lo:hi``: which are inside K̃'s rows (a mask) and K̃ at those, doubled
        off the diagonal."""

__all__ = ["ArrowBlock", "BlockDiagonalBlock", "DenseBlock", "DenseDiagonalBlock",
           "DiagonalBlock", "LevelBlock", "OffDiagonalBlock", "PairsBlock", "SparseBlock",
           "diagonal_block", "diagonal_block2", "leading_level_run", "off_diagonal_block"]

KeyOrder = Callable[[np.ndarray], np.ndarray]


# -- block 1 with itself ----------------------------------------------------------------------
class _LevelBlocks:
    """What block 1's two types share: L11 is one lower-triangular block per level of the
    first term, (nl, k, k), whatever ``factor`` made it from."""

    __slots__ = ()

    def log_det(self, l11: np.ndarray) -> float:
        """log |L11| (half block 1's contribution to ldL2)."""
        return _log_det(l11)

    def solve_transposed(self, l11: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """u with L11' u = rhs, level by level (``rhs``: (nl, nc))."""
        return _solve_transposed(l11, rhs)

    def to_sparse(self, l11: np.ndarray) -> sp.csr_matrix:
        """L11 as a sparse (q₁ x q₁) matrix."""
        return _level_blocks_sparse(l11)


@dataclass(frozen=True, slots=True)
class DiagonalBlock(_LevelBlocks):
    """Z₁'WZ₁ of a scalar first term: diagonal, one entry per level.

    Attributes
    ----------
    a
        (nl, 1, 1) the diagonal (weighted count of each level's observations).
    """

    a: np.ndarray

    def factor(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scale by λ on both sides, inflate by I and factor: L11 = sqrt(λ² a + 1) per level,
        (nl, 1, 1), and T1 = λ L11⁻ᵀ (the blocks of the rank update and of L21)."""
        a = self.a[:, 0, 0] * lam[0, 0] ** 2 + 1.0
        l11 = np.sqrt(a)[:, None, None]
        t1 = (lam[0, 0] / l11[:, 0, 0])[:, None, None]
        return l11, t1


@dataclass(frozen=True, slots=True)
class BlockDiagonalBlock(_LevelBlocks):
    """Z₁'WZ₁ of a vector first term: block-diagonal, one uniform k x k block per level.

    Attributes
    ----------
    a
        (nl, k, k) the blocks.
    """

    a: np.ndarray
    # for 2 x 2 blocks, A's rows side by side, (2, nl·2): λ'A for all levels in one product
    a_rows: np.ndarray | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.a.shape[1] == 2:
            rows = np.ascontiguousarray(np.swapaxes(self.a, 0, 1)).reshape(2, -1)
            object.__setattr__(self, "a_rows", rows)

    def factor(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scale by λ on both sides, inflate by I and factor level by level (one batched
        Cholesky; closed forms for 2 x 2 blocks): L11, (nl, k, k) lower triangular, and
        T1 = λ L11⁻ᵀ."""
        nc = lam.shape[0]
        if self.a_rows is not None:  # (x | g): closed forms over all levels at once
            return _factor_pairs(self.a_rows, lam)
        d = lam.T @ self.a @ lam
        d += np.eye(nc)
        l11 = np.linalg.cholesky(d)
        t1 = np.swapaxes(np.linalg.solve(l11, np.broadcast_to(lam.T, l11.shape)), 1, 2)
        return l11, t1


def _factor_pairs(a_rows: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`BlockDiagonalBlock.factor` for 2 x 2 blocks, vectorised over the levels (5,005
    levels: 0.3 ms where the batched LAPACK calls, one per level, took 5 ms), with the
    rounding of the batched calls where those round each product (OpenBLAS's Haswell, Zen
    and Sandybridge kernels; the tests check bit for bit where a run-time probe finds them
    unfused, and within the rounding error bounds where they fuse, as SkylakeX's dtrsm
    does): λ'Aλ by two
    gemm over all levels (the per-level gemm round alike); the Cholesky as ``dpotf2`` forms
    it (l₁₀ = d₁₀·(1/l₀₀)); T1 = λL⁻ᵀ as ``dgesv`` forms L⁻¹λ' (partial pivoting: rows are
    swapped where |l₁₀| > |l₀₀|; the triangular solves multiply by reciprocal pivots)."""
    nl = a_rows.shape[1] // 2
    # λ'A_l for every level in one product (``a_rows``: A's rows side by side, (2, nl·2)),
    # then (λ'A_l)λ in another: d[i, l, j] = (λ'A_lλ)[i, j]
    d = ((lam.T @ a_rows).reshape(2 * nl, 2) @ lam).reshape(2, nl, 2)
    d00, d10, d11 = d[0, :, 0] + 1.0, d[1, :, 0] + 0.0, d[1, :, 1] + 1.0
    l00 = np.sqrt(d00)
    l10 = d10 * (1.0 / l00)
    l11 = np.sqrt(d11 - l10 * l10)
    lfac = np.zeros((nl, 2, 2))
    lfac[:, 0, 0], lfac[:, 1, 0], lfac[:, 1, 1] = l00, l10, l11
    # X = L⁻¹λ' (T1 = Xᵀ), each column of λ' as dgesv solves it
    b = lam.T
    t1 = np.empty((nl, 2, 2))
    swap = np.abs(l10) > np.abs(l00)
    mult = l10 * (1.0 / l00)  # unswapped: L = [[1, 0], [mult, 1]] [[l00, 0], [0, l11]]
    for j in range(2):
        y1 = b[1, j] - mult * b[0, j]
        x1 = y1 * (1.0 / l11)
        t1[:, j, 0] = (b[0, j] - 0.0 * x1) * (1.0 / l00)
        t1[:, j, 1] = x1
    if swap.any():  # swapped: [[l10, l11], [l00, 0]] = [[1, 0], [ms, 1]] [[l10, l11], [0, u11]]
        ls00, ls10, ls11 = l00[swap], l10[swap], l11[swap]
        ms = ls00 * (1.0 / ls10)
        u11 = 0.0 - ms * ls11
        for j in range(2):
            y1 = b[0, j] - ms * b[1, j]
            x1 = y1 * (1.0 / u11)
            t1[swap, j, 0] = (b[1, j] - ls11 * x1) * (1.0 / ls10)
            t1[swap, j, 1] = x1
    return lfac, t1


LevelBlock = DiagonalBlock | BlockDiagonalBlock


def diagonal_block(a11: np.ndarray) -> LevelBlock:
    """Block 1's type: diagonal for a scalar first term, uniform blocks for a vector one."""
    return DiagonalBlock(a11) if a11.shape[1] == 1 else BlockDiagonalBlock(a11)


def _log_det(l11: np.ndarray) -> float:
    return float(np.log(np.diagonal(l11, axis1=1, axis2=2)).sum())


def _solve_transposed(l11: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    # one batched LAPACK solve for both types (also 1 x 1: the same rounding as before)
    return np.linalg.solve(np.swapaxes(l11, 1, 2), rhs[:, :, None])[:, :, 0]


def _level_blocks_sparse(l11: np.ndarray) -> sp.csr_matrix:
    nl, nc, _ = l11.shape
    base = np.arange(nl)[:, None, None] * nc
    rows = (base + np.arange(nc)[None, :, None]).repeat(nc, axis=2)
    cols = (base + np.arange(nc)[None, None, :]).repeat(nc, axis=1)
    return sp.csr_matrix((l11.ravel(), (rows.ravel(), cols.ravel())), shape=(nl * nc, nl * nc))


# -- block 2 against block 1 ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _OffDiagonal:
    """What every type of G has: G itself (sparse, its structural pattern) and the positions
    in block 2 (flat, upper triangle, ordered by pair of block 2's blocks) where its rank
    update lands."""

    g: sp.csr_matrix
    keys: np.ndarray

    def rank_update(self, t1: np.ndarray) -> np.ndarray:
        """G B Gᵀ at the keys (each type's own method)."""
        raise NotImplementedError

    def rank_update_parts(self, t1: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """G B Gᵀ at the keys ``lo:hi`` a part at a time, (lo, hi, values): here the whole
        of :meth:`rank_update` at once."""
        yield 0, self.keys.shape[0], self.rank_update(t1)

    def times_t1(self, t1: np.ndarray, rows: slice | None = None) -> sp.csr_matrix:
        """G T1 (sparse, G's pattern): L21 = Λ₂'G T1 before the scaling by Λ₂; ``rows``: of
        those rows of G only (each row's entries are its own sums)."""
        g = self.g if rows is None else self.g[rows]
        if t1.shape[1] == 1:
            return g.multiply(t1.reshape(1, -1)).tocsr()
        return (g @ _block_diagonal(t1)).tocsr()

    def times_t1_dense(self, t1: np.ndarray) -> np.ndarray:
        """G T1 as a dense (m x q₁) array, each entry the same sum, in the same order, as
        :meth:`times_t1`'s sparse product forms it (absent entries are zeros): a scalar first
        term's g·t; else Σₐ G[i, l·nc+a] T1[l, a, b] over ascending a, as the row-by-row
        sparse product adds them (so that solutions from it are bit-identical)."""
        g = self.g.toarray()
        nl, nc, _ = t1.shape
        if nc == 1:
            return g * t1.reshape(1, -1)
        g3 = g.reshape(g.shape[0], nl, nc)
        out = np.zeros_like(g3)
        for b in range(nc):
            acc = out[:, :, b]
            for a in range(nc):
                acc += g3[:, :, a] * t1[:, a, b]
        return out.reshape(g.shape)

    def dense_quadratic(self, v: np.ndarray, k_tilde: np.ndarray, s: int) -> np.ndarray:
        """Σ_l V_l' G_l'K̃G_l V_l (nc x nc) over the levels by dense products, G_l the level's
        columns of G's first ``s`` rows, ``k_tilde`` (s x s) dense (the analytic gradient's
        first term; :meth:`PairsBlock.quadratic` sums it over the pairs instead)."""
        nc = v.shape[1]
        g = self.g[:s].toarray().reshape(s, -1, nc)  # (s, nl, nc)
        kg = np.einsum("ij,jlb->ilb", k_tilde, g)
        h = np.einsum("ila,ilb->lab", g, kg)  # H_l = G_l' K̃ G_l
        return np.einsum("lxa,lxy,lyb->ab", v, h, v)


@dataclass(frozen=True, slots=True)
class DenseBlock(_OffDiagonal):
    """A dense G (every level of the first term meets most rows of block 2, as in large
    crossed designs): its rank update by BLAS.

    Attributes
    ----------
    panel
        (nl, nc, m) Gᵀ stored per level of the first term, for batched products with T1.
    """

    panel: np.ndarray

    def times_t1_dense(self, t1: np.ndarray) -> np.ndarray:
        """G T1 as a dense (m x q₁) array (see :meth:`_OffDiagonal.times_t1_dense`), read from
        the panel (G's values, levels-major) rather than from a dense copy of G: the same
        products and sums, without a second m x q₁ array."""
        nl, nc, m = self.panel.shape
        out = np.empty((m, nl * nc))
        if nc == 1:
            np.multiply(self.panel[:, 0, :].T, t1.reshape(1, -1), out=out)
            return out
        out3 = out.reshape(m, nl, nc)
        out3[...] = 0.0
        for b in range(nc):
            acc = out3[:, :, b]
            for a in range(nc):
                acc += self.panel[:, a, :].T * t1[:, a, b]
        return out

    def rank_update(self, t1: np.ndarray) -> np.ndarray:
        """G B Gᵀ at the keys: Hᵀ = (G T1)ᵀ level by level, then H Hᵀ (one syrk)."""
        nl, nc, _ = t1.shape
        # Hᵀ_l = T1_lᵀ G_lᵀ with G stored (nl, nc, m): the result is already in H Hᵀ's
        # row layout (no transposing copy of the nl·nc x m panel)
        ht = np.matmul(np.swapaxes(t1, 1, 2), self.panel).reshape(nl * nc, self.panel.shape[2])
        return (ht.T @ ht).ravel()[self.keys]

    @property
    def has_gradient(self) -> bool:
        """The analytic gradient forms G's quadratic forms densely: up to a size."""
        nl, nc, m = self.panel.shape
        return m * m * (nl * nc) <= _policy().max_gradient_dense_g

    def reweighted(self, g: sp.csr_matrix, first: TermShape, key_order: KeyOrder,
                   ) -> DenseBlock:
        """The same block with G's new values."""
        return DenseBlock(g, self.keys, _levels_major(g, first))


@dataclass(frozen=True, slots=True)
class SparseBlock(_OffDiagonal):
    """A sparse G whose rank update is formed by two sparse products per θ (the pairs of
    its entries are too many to list)."""

    def rank_update(self, t1: np.ndarray) -> np.ndarray:
        """G B Gᵀ at the keys."""
        b = t1 @ np.swapaxes(t1, 1, 2)
        gb = self.g @ _block_diagonal(b)
        return np.asarray((gb @ self.g.T).toarray()).ravel()[self.keys]

    @property
    def has_gradient(self) -> bool:
        """No analytic gradient without the pairs."""
        return False

    def reweighted(self, g: sp.csr_matrix, first: TermShape, key_order: KeyOrder,
                   ) -> SparseBlock:
        """The same block with G's new values (nothing is precomputed from them)."""
        return replace(self, g=g)


@dataclass(frozen=True, slots=True)
class PairsBlock(SparseBlock):
    """A sparse G whose rank update is C vec(B_groups) with C formed once
    (:func:`~lmeformula.pls.downdate._downdate_pattern`): levels of the first term with equal
    A11 blocks share B_l, hence a column of C.

    Attributes
    ----------
    pairs
        C: sparse (products of pairs of G's entries: CSC, or CSR where ``sources`` are
        kept, or CSC by blocks of keys held narrow when large) or dense (per-group Gram
        matrices, stored by chunks of keys in the narrowest exact dtype).
    group_level
        One level of each group.
    sources
        For an ungrouped sparse C (one level per group): the positions in ``g.data`` of the
        two factors of each stored entry of C, so that new values of G refresh C; else None.
    """

    pairs: sp.csr_matrix | sp.csc_matrix | CompactRows | NarrowPairs
    group_level: np.ndarray
    sources: tuple[np.ndarray, np.ndarray] | None

    def _group_b(self, t1: np.ndarray) -> np.ndarray:
        """vec(B_groups): one level per group of equal A11 blocks."""
        t1g = t1[self.group_level]
        return (t1g @ np.swapaxes(t1g, 1, 2)).ravel()

    def rank_update(self, t1: np.ndarray) -> np.ndarray:
        """G B Gᵀ at the keys: one matrix-vector product with the groups' B."""
        return self.pairs @ self._group_b(t1)

    def rank_update_parts(self, t1: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """G B Gᵀ at the keys ``lo:hi`` a part at a time, (lo, hi, values): block by block
        for a C held narrow (no vector over every key: 14 MB on the 10⁵ x 2,000 crossed
        design), else the whole of :meth:`rank_update` at once. The same numbers."""
        yield from self.rank_update_products(self._group_b(t1))

    @property
    def has_gradient(self) -> bool:
        """The analytic gradient sums the first term's quadratic forms over the pairs."""
        return True

    def quadratic(self, v: np.ndarray, weights: KeyWeights) -> np.ndarray:
        """Σ_l V_l' G_l'K̃G_l V_l (nc x nc) over the levels, by the pairs: ``weights`` gives,
        for a range of keys, which are inside the rows of K̃ and K̃ there (doubled off the
        diagonal: the keys are the upper triangle). The product C vec(B) is taken a part at
        a time (a C held narrow: by its blocks) and weighed a chunk of keys at a time into
        one array, the weighed keys inside, summed at once: no product, mask, index or K̃
        over every key (the 10⁵ x 2,000 crossed design: 14 MB each, beside the 23 MB of
        keys' positions kept before), the same products in the same order. A vector first
        term's nc(nc + 1)/2 sums weigh the same chunks: weighed once (vector terms never
        have the chunked or narrow plans whose memory this saves)."""
        nc = v.shape[1]
        out = np.zeros((nc, nc))
        vg = v[self.group_level]  # (groups, nc, nc)
        weighed: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for a in range(nc):
            for b in range(a, nc):
                # B_l[x, y] = V_l[x, a] V_l[y, b], symmetrised (K̃ is symmetric)
                bmat = vg[:, :, a, None] * vg[:, None, :, b]
                bmat = 0.5 * (bmat + np.swapaxes(bmat, 1, 2))
                down = np.empty(weights.count)
                at = 0
                for lo, _, part in self.rank_update_products(bmat.reshape(-1)):
                    for c0 in range(0, part.shape[0], WEIGHT_CHUNK):
                        chunk = part[c0 : c0 + WEIGHT_CHUNK]
                        span = (lo + c0, lo + c0 + chunk.shape[0])
                        inside, weight = weighed.get(span) or weights(*span)
                        if nc > 1:
                            weighed[span] = (inside, weight)
                        end = at + weight.shape[0]
                        # weight · down, as the whole-vector product gave it
                        np.multiply(chunk[inside], weight, out=down[at:end])
                        at = end
                if at != down.shape[0]:
                    raise AssertionError("the products' parts missed keys inside")
                # a ufunc sum, not BLAS: numpy's own OpenBLAS threads would wake up, spin and
                # slow down scipy's dpotrf that follows
                out[a, b] = out[b, a] = float(np.sum(down))
        return out

    def rank_update_products(self, vec: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """C @ ``vec`` a part at a time, (first key, end, part): block by block for a C held
        narrow, else whole."""
        if isinstance(self.pairs, NarrowPairs):
            yield from self.pairs.block_products(vec)
        else:
            yield 0, self.keys.shape[0], self.pairs @ vec

    def reweighted(self, g: sp.csr_matrix, first: TermShape, key_order: KeyOrder,
                   ) -> SparseBlock:
        """The block at G's new values. The first call makes a plan whose values follow G's
        (levels no longer share columns by equal blocks, which weights break); later calls
        refresh C's values in place."""
        if self.sources is None:
            return _sparse_block(g, None, first, g.shape[0], key_order, grouped=False)
        ga, gb = self.sources
        # sources exist only for the sparse pairs plan (one level per group)
        assert isinstance(self.pairs, sp.csr_matrix)
        np.multiply(g.data[ga], g.data[gb], out=self.pairs.data)
        return replace(self, g=g)


OffDiagonalBlock = DenseBlock | SparseBlock


def off_diagonal_block(g: sp.csr_matrix, a11: np.ndarray, first: TermShape,
                       key_order: KeyOrder) -> OffDiagonalBlock:
    """G's type, chosen by its measured fill (:meth:`BlockPolicy.dense_off_diagonal`); a
    sparse G's rank update by the counts of its pairs (see :func:`_sparse_block`).

    ``key_order`` orders block 2's positions (the keys) by pair of block 2's blocks."""
    m = g.shape[0]
    if _policy().dense_off_diagonal(g.nnz, m, first.size, _listed_pairs(g, first)):
        upper = np.flatnonzero(np.triu(np.ones((m, m), dtype=bool)))
        return DenseBlock(g, upper[key_order(upper)], _levels_major(g, first))
    return _sparse_block(g, a11, first, m, key_order, grouped=True)


def _listed_pairs(g: sp.csr_matrix, first: TermShape) -> int:
    """How many pairs of G's entries the sparse rank update would list (as
    :func:`~lmeformula.pls.downdate._downdate_pattern` counts them): per level of the first
    term, k(k + 1)/2 for its k entries when the term is scalar, k² otherwise."""
    k = np.bincount(g.indices, minlength=first.size).reshape(first.nl, first.nc).sum(axis=1)
    k = k.astype(np.int64)
    return int((k * (k + 1) // 2).sum()) if first.nc == 1 else int((k * k).sum())


def _sparse_block(g: sp.csr_matrix, a11: np.ndarray | None, first: TermShape, m: int,
                  key_order: KeyOrder | None, grouped: bool) -> SparseBlock:
    """A sparse G with the plan of its rank update: the pairs of its entries listed, or
    per-group Gram matrices, or (too many of either) none.

    ``grouped``: B_l depends on level l only through A11_l, so levels with equal blocks (in
    InstEval, students with equally many ratings) share one column of C. Not grouped: one
    column per level, and the positions in G of each pair's two factors are kept, so that
    new weights refresh the values without a new plan (the keys, and their order, are the
    same either way: they depend on G's pattern only)."""
    nc, nl = first.nc, first.nl
    if grouped:
        assert a11 is not None
        blocks = a11.reshape(nl, -1)
        if nc == 1:
            _, level_group = np.unique(blocks[:, 0], return_inverse=True)
        else:
            _, level_group = np.unique(blocks, axis=0, return_inverse=True)
        level_group = level_group.ravel()
    else:
        level_group = np.arange(nl)
    ngroups = int(level_group.max()) + 1
    group_level = np.zeros(ngroups, dtype=np.int64)
    group_level[level_group] = np.arange(nl)
    keys, pairs, sources = _downdate_pattern(g, nc, nl, m, level_group, ngroups,
                                             key_order=key_order, sources=not grouped)
    if pairs is None:
        return SparseBlock(g, keys)
    return PairsBlock(g, keys, pairs, group_level, sources)


# -- block 2 with itself ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DenseDiagonalBlock:
    """M22 = [Z₂ X y]'W[Z₂ X y], dense, and how it is assembled per θ.

    Attributes
    ----------
    m22
        (m x m) the cross-products.
    plan
        The typed rectangles of its per-θ assembly (:mod:`lmeformula.pls.plans`).
    keys
        Where the rank update by block 1 lands (flat positions, ordered by pair of blocks).
    diagonal
        (block, flat position, M22's value) of the diagonals of the zero-filled rectangles.
    """

    m22: np.ndarray
    plan: Block2Plan
    keys: np.ndarray
    diagonal: tuple[np.ndarray, np.ndarray, np.ndarray]

    def assemble(self, theta: np.ndarray, down: np.ndarray) -> np.ndarray:
        """S = Λ₂'(M22 - D)Λ₂ + I, its upper triangle in a C-order array (``down``: the rank
        update D at the keys, overwritten)."""
        return update_block2(self.plan, theta, self.m22, self.keys, down, self.diagonal)

    def factor(self, s: np.ndarray) -> tuple[np.ndarray, int]:
        """Factor an assembled S in place (LAPACK reads the transpose's lower triangle):
        the lower factor and LAPACK's info (a method: :class:`ArrowBlock` factors by its
        shape)."""
        return potrf(s.T)

    @staticmethod
    def factor_exact_fit(s: np.ndarray) -> np.ndarray:
        """The careful factor of S when LAPACK failed (an exact fit, or lme4's error)."""
        return cholesky_exact_fit(s)

    def reweighted(self, m22: np.ndarray) -> DenseDiagonalBlock:
        """The same block at new cross-products (same pattern)."""
        block_of, positions, _ = self.diagonal
        rows = positions // (self.plan.m + 1)
        return replace(self, m22=m22, diagonal=(block_of, positions, m22[rows, rows]))


@dataclass(frozen=True, slots=True)
class ArrowBlock(DenseDiagonalBlock):
    """Block 2 whose first d rows are level-diagonal: the terms that open block 2 on the first
    term's grouping factor (their levels meet only their own level of block 1 and of each
    other, so after the downdate their part of S is one k x k block per level, k the columns
    of those terms, in the terms' order). S = [[D, B], [Bᵀ, F]] is then factored as an
    arrow: D level by level (L_D), W = L_D⁻¹B, and F - WᵀW by LAPACK; d³/3 + d²r flops of a
    dense Cholesky become about d r² (``(x || g)`` with 1,000 levels: one dense factor of
    order 1,003 per θ against one of order 3). The factor is the same matrix as
    :class:`DenseDiagonalBlock`'s, stored the same way (Zt's order, lower triangle; the
    level-diagonal part's other entries are exact zeros), up to rounding.

    Attributes
    ----------
    lead
        (nl, k) the rows of block 2 of each level's block of D, ascending along a level.
    """

    lead: np.ndarray

    def factor(self, s: np.ndarray) -> tuple[np.ndarray, int]:
        """Factor an assembled S (upper triangle in a C-order array) in place as an arrow:
        the lower factor (the transpose's lower triangle, as LAPACK leaves it) and an info
        that is non-zero when a pivot was not positive (the caller then takes the careful
        path on the whole S)."""
        lead = self.lead
        nl, k = lead.shape
        d, m = nl * k, s.shape[0]
        lt = s.T  # the factor's storage: its lower triangle is S's upper one
        if k == 1:  # one scalar term: D is the diagonal of S's first d rows
            diag = s.ravel()[: d * (m + 1) : m + 1]  # a view
            if not np.all(diag > 0.0):
                return lt, 1
            np.sqrt(diag, out=diag)
            w = s[:d, d:]  # B, overwritten by W = L_D⁻¹B: L's rows below D, transposed
            w /= diag[:, None]
            wtw = w.T @ w
        else:
            rows = lead.ravel()  # level-major
            blk = s[lead[:, :, None], lead[:, None, :]]  # upper triangle valid per level
            blk = np.triu(blk) + np.swapaxes(np.triu(blk, 1), 1, 2)
            try:
                l_d = np.linalg.cholesky(blk)
            except np.linalg.LinAlgError:
                return lt, 1
            w3 = s[rows, d:].reshape(nl, k, m - d)
            for a in range(k):  # forward substitution, all levels at once
                for c in range(a):
                    w3[:, a] -= l_d[:, a, c, None] * w3[:, c]
                w3[:, a] /= l_d[:, a, a, None]
            w = w3.reshape(d, m - d)
            s[rows, d:] = w
            for a in range(k):  # L_D's entries into the factor, at Zt's positions
                for b in range(a + 1):
                    s[lead[:, b], lead[:, a]] = l_d[:, a, b]
            wtw = w.T @ w
        # the dense rest: F - WᵀW, factored by LAPACK (an F-order copy of its upper triangle)
        f = np.array(s[d:, d:].T, order="F")
        f -= wtw
        lf, info = potrf(f)
        s[d:, d:] = lf.T
        return lt, info if info == 0 else d + info

    def reweighted(self, m22: np.ndarray) -> DenseDiagonalBlock:
        """The same block at new cross-products; a plain dense block if new weights made
        D's structure no longer hold (a level pair met only by zero-weight observations;
        G's pattern, the other half of the structure, does not change with weights)."""
        block_of, positions, _ = self.diagonal
        rows = positions // (self.plan.m + 1)
        diagonal = (block_of, positions, m22[rows, rows])
        if _m22_level_diagonal(m22, _row_levels(self.lead, m22.shape[0]), 0,
                               self.lead.size):
            return replace(self, m22=m22, diagonal=diagonal)
        return DenseDiagonalBlock(m22, self.plan, self.keys, diagonal)


def diagonal_block2(m22: np.ndarray, plan: Block2Plan, keys: np.ndarray,
                    diagonal: tuple[np.ndarray, np.ndarray, np.ndarray], g: sp.csr_matrix,
                    first: TermShape) -> DenseDiagonalBlock:
    """Block 2's type: an :class:`ArrowBlock` when its leading terms are level-diagonal
    (:func:`leading_level_run`) over at least :attr:`BlockPolicy.arrow_min_rows` rows, else
    a :class:`DenseDiagonalBlock`."""
    if keys.shape[0] * np.dtype(np.intp).itemsize <= _policy().max_index_keys_bytes:
        keys = keys.astype(np.intp, copy=False)  # scattered per θ: no conversion each time
    lead = leading_level_run(m22, g, plan.terms, first)
    if lead is not None and lead.size >= _policy().arrow_min_rows:
        return ArrowBlock(m22, plan, keys, diagonal, lead)
    return DenseDiagonalBlock(m22, plan, keys, diagonal)


def leading_level_run(m22: np.ndarray, g: sp.csr_matrix, terms: tuple[TermShape, ...],
                      first: TermShape) -> np.ndarray | None:
    """The rows, (nl, k), of the longest run of block 2's leading terms with the first term's
    number of levels whose part of S is level-diagonal at every θ, or None: each of their
    rows meets, in G's structural pattern, only the columns of its own level of block 1 (so
    the downdate G B Gᵀ joins no two levels of them), and M22 has no entry between two
    levels of them (Λ₂ mixes a level's columns only, so these zeros stay exact zeros in S).

    Terms on the first term's grouping factor always qualify (one level per observation);
    the check reads G's pattern and M22's values, so it holds on every path of the
    cross-products, and M22 is checked again when weights change
    (:meth:`ArrowBlock.reweighted`)."""
    m = m22.shape[0]
    cols: list[np.ndarray] = []
    pos = 0
    for t in terms:
        if t.nl != first.nl:
            break
        tcols = [pos + np.arange(t.nl) * t.nc + c for c in range(t.nc)]
        level = _row_levels(np.stack(cols + tcols, axis=1), m)
        stop = pos + t.size
        # G's rows of the term: block 1's columns of the row's own level only
        counts = np.diff(g.indptr[pos : stop + 1])
        g_level = g.indices[g.indptr[pos] : g.indptr[stop]] // first.nc
        if np.any(g_level != np.repeat(level[pos:stop], counts)):
            break
        if not _m22_level_diagonal(m22, level, pos, stop):
            break
        cols += tcols
        pos = stop
    return np.stack(cols, axis=1) if cols else None


def _row_levels(lead: np.ndarray, m: int) -> np.ndarray:
    """The level of each of the first ``lead.size`` rows of block 2 (-1 beyond)."""
    out = np.full(m, -1, dtype=np.int64)
    out[lead] = np.arange(lead.shape[0])[:, None]
    return out


def _m22_level_diagonal(m22: np.ndarray, level: np.ndarray, lo: int, end: int) -> bool:
    """Whether rows [lo, end) of M22 meet its rows [0, end) only within their own level."""
    step = max(1, (1 << 22) // max(end, 1))  # rows at a time: a bounded temporary
    for r0 in range(lo, end, step):
        r1 = min(end, r0 + step)
        rr, cc = np.nonzero(m22[r0:r1, :end])
        if np.any(level[rr + r0] != level[cc]):
            return False
    return True
