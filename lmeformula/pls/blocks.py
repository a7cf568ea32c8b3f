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
  rectangles), then factored by LAPACK.

Block 1's diagonal and block-diagonal types follow from the term (its blocks are exactly
diagonal); block 2's off-diagonal type is the one choice made by measured fill (and by the
counts of the rank update's pairs, for a sparse G). Every threshold is in
:class:`~lmeformula.pls.policy.BlockPolicy`, read when the blocks are made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from .crossprod import _block_diagonal, _levels_major
from .downdate import CompactRows, _downdate_pattern
from .lapack import cholesky_exact_fit, potrf
from .plans import Block2Plan, update_block2
from .system import _policy
from .terms import TermShape

__all__ = ["BlockDiagonalBlock", "DenseBlock", "DenseDiagonalBlock", "DiagonalBlock",
           "LevelBlock", "OffDiagonalBlock", "PairsBlock", "SparseBlock", "diagonal_block",
           "off_diagonal_block"]

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

    def factor(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scale by λ on both sides, inflate by I and factor level by level (one batched
        Cholesky): L11, (nl, k, k) lower triangular, and T1 = λ L11⁻ᵀ."""
        nc = lam.shape[0]
        d = lam.T @ self.a @ lam
        d += np.eye(nc)
        l11 = np.linalg.cholesky(d)
        t1 = np.swapaxes(np.linalg.solve(l11, np.broadcast_to(lam.T, l11.shape)), 1, 2)
        return l11, t1


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

    def times_t1(self, t1: np.ndarray) -> sp.csr_matrix:
        """G T1 (sparse, G's pattern): L21 = Λ₂'G T1 before the scaling by Λ₂."""
        if t1.shape[1] == 1:
            return self.g.multiply(t1.reshape(1, -1)).tocsr()
        return (self.g @ _block_diagonal(t1)).tocsr()

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
        C: sparse (products of pairs of G's entries) or dense (per-group Gram matrices,
        stored by chunks of keys in the narrowest exact dtype).
    group_level
        One level of each group.
    sources
        For an ungrouped sparse C (one level per group): the positions in ``g.data`` of the
        two factors of each stored entry of C, so that new values of G refresh C; else None.
    """

    pairs: sp.csr_matrix | CompactRows
    group_level: np.ndarray
    sources: tuple[np.ndarray, np.ndarray] | None

    def rank_update(self, t1: np.ndarray) -> np.ndarray:
        """G B Gᵀ at the keys: one matrix-vector product with the groups' B."""
        t1g = t1[self.group_level]  # one level per group of equal A11 blocks
        return self.pairs @ (t1g @ np.swapaxes(t1g, 1, 2)).ravel()

    @property
    def has_gradient(self) -> bool:
        """The analytic gradient sums the first term's quadratic forms over the pairs."""
        return True

    def quadratic(self, v: np.ndarray, weight: np.ndarray, inside: np.ndarray) -> np.ndarray:
        """Σ_l V_l' G_l'K̃G_l V_l (nc x nc) over the levels, by the pairs: ``weight`` holds
        K̃ at the keys ``inside`` its rows (doubled off the diagonal: the keys are the upper
        triangle)."""
        nc = v.shape[1]
        out = np.zeros((nc, nc))
        vg = v[self.group_level]  # (groups, nc, nc)
        for a in range(nc):
            for b in range(a, nc):
                # B_l[x, y] = V_l[x, a] V_l[y, b], symmetrised (K̃ is symmetric)
                bmat = vg[:, :, a, None] * vg[:, None, :, b]
                bmat = 0.5 * (bmat + np.swapaxes(bmat, 1, 2))
                down = self.pairs @ bmat.reshape(-1)
                # a ufunc sum, not BLAS: numpy's own OpenBLAS threads would wake up, spin and
                # slow down scipy's dpotrf that follows
                out[a, b] = out[b, a] = float(np.sum(weight * down[inside]))
        return out

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

    @staticmethod
    def factor(s: np.ndarray) -> tuple[np.ndarray, int]:
        """Factor an assembled S in place (LAPACK reads the transpose's lower triangle):
        the lower factor and LAPACK's info."""
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
