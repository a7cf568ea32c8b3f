"""The penalised least-squares engine: a blocked Cholesky factor of the augmented system.

With Λ(θ) the relative covariance factor, the system lme4 solves at each θ is::

    [ Λ'Z'WZΛ + I   Λ'Z'WX   Λ'Z'Wy ]   [ L_ZZ          ] [ L_ZZ          ]'
    [ X'WZΛ         X'WX     X'Wy   ] = [ L_XZ  L_XX    ] [ L_XZ  L_XX    ]
    [ y'WZΛ         y'WX     y'Wy   ]   [ l_yZ  l_yX  r ] [ l_yZ  l_yX  r ]

so that ``ldL2 = 2 log|L_ZZ|``, ``ldRX2 = 2 log|L_XX|`` and ``pwrss = r²``, and the solutions
come from one triangular solve. Here L_XZ = RZX' and L_XX = RX' in lme4's notation.

As in MixedModels.jl, all cross-products are formed once (by counting observations per pair of
levels). The random effects of the first term (the one with most levels, lme4's order) form
block 1, whose diagonal block Λ₁'Z₁'WZ₁Λ₁ + I is block-diagonal (one nc₁ x nc₁ block per
level), so its factor is computed level by level in one batched call. Everything else (the
other terms, X and y) forms block 2, factored densely by LAPACK after the downdate by L₂₁L₂₁';
block 2 is small for the usual designs (InstEval: 1,128 + 28 + 3). The downdate is one sparse
matrix-vector product over precomputed products of row pairs, in which levels of the first
term with equal cross-product blocks share a column. No step per θ touches the n observations.
How block 2 is assembled per θ (typed rectangles: scaled, downdated, inflated) is in
:mod:`lmeformula.pls.plans`.

Small systems are factored as one dense matrix (:class:`DensePLSProblem`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from . import policy as _policy_module
from .crossprod import (
    _block_diagonal,
    _fits_dense,
    _level_blocks,
    _level_cross,
    _level_cross_entries,
    _level_sums,
    _levels_major,
    _pair_structure,
    _PairStructure,
)
from .dense import (
    DenseFactorization,
    DensePLSProblem,
)
from .downdate import _downdate_pattern
from .lapack import check_rx, cholesky_exact_fit, potrf
from .memory import check_dense_memory
from .plans import ZeroBlock, factor_block1, plan_block2, update_block2
from .system import (
    _AugmentedSystem,
    _check_reweight,
    _log_det_weights,
    _policy,
    profiled_criteria,
    profiled_criterion,
)
from .terms import TermShape, lambda_template

__all__ = ["DenseFactorization", "DensePLSProblem", "Factorization", "PLSProblem", "TermShape",
           "lambda_template", "make_problem", "profiled_criteria", "profiled_criterion"]


@dataclass
class Factorization:
    """The blocked factor at one θ and everything lme4 derives from it.

    Attributes
    ----------
    theta
        The θ factored.
    L11
        (nl₁, nc₁, nc₁) lower-triangular diagonal blocks of the first term.
    T1
        (nl₁, nc₁, nc₁) blocks of Λ₁L11⁻ᵀ, so that L21 = Λ₂'G T1.
    L22
        Dense (m x m) factor of block 2 (other terms, X, y) in its lower triangle; the strict
        upper triangle is left as LAPACK found it (only the lower one is ever read).
    ldL2, ldRX2, pwrss
        log det of Λ'Z'WZΛ + I, log det of RX'RX, penalised weighted RSS.
    """

    theta: np.ndarray
    L11: np.ndarray
    T1: np.ndarray
    L22: np.ndarray
    ldL2: float
    ldRX2: float
    pwrss: float
    problem: PLSProblem = field(repr=False)
    _L21: sp.csr_matrix | None = field(default=None, repr=False)
    # G when factored (a later re-weighting of the problem replaces it)
    _G: sp.csr_matrix | None = field(default=None, repr=False)

    @property
    def L21(self) -> sp.csr_matrix:
        """Sparse (m x q₁): rows of block 2 against block 1 (formed only when asked for)."""
        if self._L21 is None:
            self._L21 = self.problem.block21(self.theta, self.T1, self._G)
        return self._L21


@dataclass
class PLSProblem(_AugmentedSystem):
    """Cross-products of [Z X y] with prior weights, formed once; factored at any θ by the
    blocked algorithm (see the module docstring).

    ``factors`` (optional): each term's level codes and model matrix X_i, in Zt's order. With
    them the cross-products are counted per pair of levels (``bincount``) rather than formed
    by sparse products, which is much cheaper for many observations.
    """

    factors: list[tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False)
    q1: int = field(init=False)
    A11: np.ndarray = field(init=False, repr=False)
    G: sp.csr_matrix = field(init=False, repr=False)
    M22: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        w: np.ndarray | None = self._weights()
        first = self.terms[0]
        self.q1 = first.size
        qr = self.q - self.q1
        self.m = qr + self.p + 1
        # G's pattern is structural (the pairs of levels that occur together, every level
        # against X and y), never read off its values: re-weighting (a GLMM's PIRLS step) then
        # changes the numbers only, and the plans built on the pattern stay valid
        self._by_level = self.factors is not None and _fits_dense(self.terms, self.p)
        self._g_plan: list[_PairStructure] | None = None
        self._g_pattern: sp.csr_matrix | None = None
        self._g_order: np.ndarray | None = None
        self._pair_sources: tuple[np.ndarray, np.ndarray] | None = None
        self._gdense: np.ndarray | None = None
        self._pairs: sp.csr_matrix | np.ndarray | None = None
        self._diagonal_only: tuple[np.ndarray, np.ndarray, np.ndarray]
        if self.weights is None and self._by_level:
            w = None  # unit weights: not multiplied in (x·1 is x), no n-length ones held
        self._cross_products(w)
        idx, ptr, lind = lambda_template(self.terms[1:])
        self._lam_r = (idx, ptr, lind)
        self._lam_r_size = qr
        self._prepare_downdate()

    def _cross_products(self, w: np.ndarray | None) -> None:
        """A11, G and M22 at case weights ``w`` (None: unit weights, counting path only; their
        structure is computed on the first call and reused: only the values depend on ``w``
        and ``y``)."""
        xy = np.column_stack([self.X, self.y])
        qr = self.q - self.q1
        if w is None:
            assert self._by_level
            # [X y]'[X y] by gemm as with weights (a second operand: numpy would take the
            # product of one array with itself by syrk, whose last digits differ), before
            # the counting so that the copy is gone when its temporaries are made
            corner = xy.T @ xy.copy()
            rows, cols, vals = self._cross_products_by_level(None, xy, xy)
        else:
            xyw = xy * w[:, None]
            corner = xy.T @ xyw
            if self._by_level:
                rows, cols, vals = self._cross_products_by_level(w, xy, xyw)
            else:
                rows, cols, vals = self._cross_products_sparse(w, xy, xyw)
            del xyw
        del xy
        if self._g_order is None:
            # CSR of the entries as scipy would build it (rows, then columns, ascending);
            # the entries are distinct, so this order places any later values too
            self._g_order = np.lexsort((cols, rows))
            indptr = np.zeros(self.m + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=self.m), out=indptr[1:])
            self.G = sp.csr_matrix((vals[self._g_order], cols[self._g_order], indptr),
                                   shape=(self.m, self.q1))
        else:
            # a new matrix sharing the pattern: factorisations made before keep their G
            old = self.G
            self.G = sp.csr_matrix((vals[self._g_order], old.indices, old.indptr),
                                   shape=old.shape)
        self.M22[qr:, qr:] = corner

    def reweight(self, w: np.ndarray, y: np.ndarray) -> None:
        """Replace the case weights and the response, recomputing the cross-products' values
        in place; structure, ordering and the downdate's plan are kept.

        Parameters
        ----------
        w
            (n,) non-negative case weights (a GLMM's prior x working weights); zeros allowed.
        y
            (n,) response (a GLMM's working response, offset removed).

        Notes
        -----
        The first call turns the downdate's plan into one whose values can be refreshed from
        G (levels of the first term no longer share columns by equal blocks, which weights
        break); later calls recompute values only. Factorisations made before a call keep
        describing the earlier weights.
        """
        w, y = _check_reweight(w, y, self.n)
        self.weights, self.y = w, y
        self.ldW = _log_det_weights(w)
        self._cross_products(w)
        if self._gdense is not None:
            self._gdense = _levels_major(self.G, self.terms[0])
        elif self._pairs is not None:
            if self._pair_sources is None:  # once: a plan whose values follow G's
                self._plan_pairs(grouped=False)
            else:
                ga, gb = self._pair_sources
                # sources exist only for the sparse pairs plan (one level per group)
                assert isinstance(self._pairs, sp.csr_matrix)
                np.multiply(self.G.data[ga], self.G.data[gb], out=self._pairs.data)
        block_of, positions, _ = self._diagonal_only
        rows = positions // (self.m + 1)
        self._diagonal_only = (block_of, positions, self.M22[rows, rows])

    def _cross_products_sparse(self, w: np.ndarray, xy: np.ndarray, xyw: np.ndarray,
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A11 and M22 (all but its X-y corner) by sparse products with Zt; G's entries
        (rows, cols, values) on its structural pattern."""
        first = self.terms[0]
        zt = sp.csr_matrix(self.Zt)
        zt1, ztr = zt[: self.q1], zt[self.q1 :]
        zt1w = zt1 @ sp.diags(w)
        # block 1: per-level nc1 x nc1 blocks of Z1'WZ1
        dense11 = (zt1w @ zt1.T).tocsr()
        nc = first.nc
        self.A11 = np.zeros((first.nl, nc, nc))
        for a in range(nc):
            for b in range(nc):
                rows = np.arange(first.nl) * nc + a
                cols = np.arange(first.nl) * nc + b
                self.A11[:, a, b] = np.asarray(dense11[rows, cols]).ravel()
        # block 2 against block 1: [Zr'WZ1; X'WZ1; y'WZ1], the Z rows on the pattern of
        # |Zr||Z1|' (products of non-negative numbers: no cancellation), X and y rows full
        if self._g_pattern is None:
            self._g_pattern = (abs(ztr) @ abs(zt1).T).tocsr()
            self._g_pattern.sort_indices()
        pattern = self._g_pattern
        prow = np.repeat(np.arange(pattern.shape[0], dtype=np.int64), np.diff(pattern.indptr))
        g_r = (ztr @ zt1w.T).tocsr()
        g_r.sort_indices()
        vals_r = np.zeros(pattern.nnz)
        if g_r.nnz:
            grow = np.repeat(np.arange(g_r.shape[0], dtype=np.int64), np.diff(g_r.indptr))
            pkeys = prow * self.q1 + pattern.indices
            vals_r[np.searchsorted(pkeys, grow * self.q1 + g_r.indices)] = g_r.data
        g_xy = np.asarray(zt1w @ xy).T  # (p + 1, q1)
        qr = ztr.shape[0]
        xy_rows, xy_cols = np.indices(g_xy.shape).reshape(2, -1)
        rows_out = np.concatenate([prow, xy_rows + qr])
        cols_out = np.concatenate([pattern.indices.astype(np.int64), xy_cols])
        vals_out = np.concatenate([vals_r, g_xy.ravel()])
        # block 2 with itself: [Zr X y]'W[Zr X y], dense
        self.M22 = np.empty((self.m, self.m))
        self.M22[:qr, :qr] = (ztr @ sp.diags(w) @ ztr.T).toarray()
        zr_xy = np.asarray(ztr @ xyw)
        self.M22[:qr, qr:] = zr_xy
        self.M22[qr:, :qr] = zr_xy.T
        return rows_out, cols_out, vals_out

    def _cross_products_by_level(self, w: np.ndarray | None, xy: np.ndarray, xyw: np.ndarray,
                                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A11 and M22 (all but its X-y corner) from the grouping factors' codes, and G's
        entries (rows, cols, values) on its structural pattern: every block of Z'WZ is, for
        each pair of columns (a, b) of two terms, a weighted count of observations per pair
        of levels, ``bincount(code_s * nl_t + code_t, w x_a x_b)``. For many rows this is
        far cheaper than sparse products (one pass over n per pair). G is kept sparse
        (InstEval: 1,128 x 2,972 instructor-student pairs, 2 % of them present) and a term's
        block with itself is block-diagonal. Which pairs of levels occur is found once."""
        assert self.factors is not None
        first, rest = self.terms[0], self.terms[1:]
        (codes1, x1), others = self.factors[0], self.factors[1:]
        nl1 = first.nl
        if self._g_plan is None:
            self._g_plan = [_pair_structure(codes, t.nl, codes1, nl1)
                            for t, (codes, _) in zip(rest, others, strict=True)]
        self.A11 = _level_blocks(codes1, x1, nl1, w)
        qr = self.q - self.q1
        g_rows, g_cols, g_vals = [], [], []
        self.M22 = np.zeros((self.m, self.m))
        pos = 0
        for t, (codes, x), plan in zip(rest, others, self._g_plan, strict=True):
            rows = slice(pos, pos + t.size)
            r, c, v = _level_cross_entries(codes, x, t.nl, codes1, x1, nl1, w, plan)
            g_rows.append(r + pos)
            g_cols.append(c)
            g_vals.append(v)
            col = 0
            for u, (codes_u, x_u) in zip(rest, others, strict=True):
                if u is t:  # one level per observation: a block-diagonal block
                    blocks = _level_blocks(codes, x, t.nl, w)
                    start = pos + np.arange(t.nl) * t.nc
                    for a in range(t.nc):
                        for b in range(t.nc):
                            self.M22[start + a, start + b] = blocks[:, a, b]
                else:
                    self.M22[rows, col : col + u.size] = _level_cross(
                        codes, x, t.nl, codes_u, x_u, u.nl, w)
                col += u.size
            for j in range(self.p + 1):
                # Zr'W[X y]: column j of [X y] as one more "term" with a single level
                self.M22[rows, qr + j] = (_level_sums(codes, x * xyw[:, j : j + 1], t.nl)
                                          .ravel())
            pos += t.size
        self.M22[qr:, :qr] = self.M22[:qr, qr:].T
        xy_rows = np.stack([_level_sums(codes1, x1 * xyw[:, j : j + 1], nl1).ravel()
                            for j in range(self.p + 1)])
        r, c = np.indices(xy_rows.shape).reshape(2, -1)  # every level meets X and y
        g_rows.append(r + qr)
        g_cols.append(c)
        g_vals.append(xy_rows.ravel())
        return (np.concatenate(g_rows).astype(np.int64), np.concatenate(g_cols).astype(np.int64),
                np.concatenate(g_vals))

    def _prepare_downdate(self) -> None:
        """Precompute what the downdate G B Gᵀ and the scaling by Λ₂ need per θ."""
        first = self.terms[0]
        self._gdense = None
        if (self.G.nnz > _policy().dense_g_fill * self.m * self.q1
                and self.m * self.q1 <= _policy().max_dense_g):
            # a dense G (every level of the first term meets most rows of block 2, as in
            # large crossed designs) is cheaper to multiply with BLAS than pair by pair
            self._gdense = _levels_major(self.G, first)
            upper = np.flatnonzero(np.triu(np.ones((self.m, self.m), dtype=bool)))
            self._keys = upper[self._order_by_block_pair(upper)]
            self._pairs = None
        else:
            self._plan_pairs(grouped=True)
        self._key_rows, self._key_cols = np.divmod(self._keys, self.m)
        # how block 2 is assembled per θ, by typed rectangles (see plans.py)
        self._plan = plan_block2(self.terms[1:], self.p, self._block_edges,
                                 self._block_pair_segments(), _policy().band)
        # the zero-filled blocks' diagonals: (block, flat position in block 2, M22's value)
        zero = {blk.a for blk in self._plan.blocks if isinstance(blk, ZeroBlock)}
        edges = self._block_edges
        rows = np.concatenate([np.arange(edges[a], edges[a + 1]) for a in sorted(zero)]
                              + [np.zeros(0, np.int64)]).astype(np.int64)
        block_of = np.concatenate([np.full(edges[a + 1] - edges[a], a) for a in sorted(zero)]
                                  + [np.zeros(0, np.int64)]).astype(np.int64)
        self._diagonal_only = (block_of, rows * (self.m + 1), self.M22[rows, rows])

    def _plan_pairs(self, grouped: bool) -> None:
        """The downdate's pairs of G's entries (see :func:`_downdate_pattern`).

        ``grouped``: B_l depends on level l only through A11_l, so levels with equal blocks
        (in InstEval, students with equally many ratings) share one column of the pairs. Not
        grouped: one column per level, and the positions in G of each pair's two factors
        are kept, so that new weights refresh the values without a new plan (the keys, and
        their order, are the same either way: they depend on G's pattern only)."""
        first = self.terms[0]
        if grouped:
            blocks = self.A11.reshape(first.nl, -1)
            if first.nc == 1:
                _, level_group = np.unique(blocks[:, 0], return_inverse=True)
            else:
                _, level_group = np.unique(blocks, axis=0, return_inverse=True)
            self._level_group = level_group.ravel()
        else:
            self._level_group = np.arange(first.nl)
        ngroups = int(self._level_group.max()) + 1
        self._group_level = np.zeros(ngroups, dtype=np.int64)
        self._group_level[self._level_group] = np.arange(first.nl)
        self._keys, self._pairs, sources = _downdate_pattern(
            self.G, first.nc, first.nl, self.m, self._level_group, ngroups,
            key_order=self._order_by_block_pair, sources=not grouped)
        self._pair_sources = sources

    @property
    def _block_edges(self) -> np.ndarray:
        """Where each term of block 2 starts, then X and y, then the end."""
        return np.cumsum([0] + [t.size for t in self.terms[1:]] + [self.p + 1])

    def _block_pair(self, keys: np.ndarray) -> np.ndarray:
        """The pair of blocks (row block x number of blocks + column block) of each key."""
        edges = self._block_edges
        nblk = len(edges) - 1
        owner = np.repeat(np.arange(nblk), np.diff(edges))
        rows, cols = np.divmod(keys, self.m)
        return owner[rows] * nblk + owner[cols]

    def _order_by_block_pair(self, keys: np.ndarray) -> np.ndarray:
        """An order of the downdate's entries by block pair, so that scaling them by Λ₂ is one
        multiplication per pair of blocks."""
        return np.argsort(self._block_pair(keys), kind="stable")

    def _block_pair_segments(self) -> list[tuple[int, int, int, int]]:
        """(start, stop, row block, column block) of the keys of each block pair."""
        group = self._block_pair(self._keys)
        nblk = len(self._block_edges) - 1
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        stops = np.r_[starts[1:], group.shape[0]]
        return [(int(lo), int(hi), int(group[lo] // nblk), int(group[lo] % nblk))
                for lo, hi in zip(starts, stops, strict=True)]

    # -- per-θ pieces -------------------------------------------------------------------------
    def lambda_rest_t(self, theta: np.ndarray) -> sp.csc_matrix:
        """Λ' for block 2 extended by the identity on X and y (m x m)."""
        idx, ptr, lind = self._lam_r
        qr = self._lam_r_size
        lam_r = sp.csc_matrix((theta[lind], idx, ptr), shape=(qr, qr))
        # csc_matrix: spmatrix blocks give an spmatrix (the stubs also allow csc_array)
        return cast(sp.csc_matrix,
                    sp.block_diag([lam_r, sp.identity(self.p + 1)], format="csc"))

    def block21(self, theta: np.ndarray, t1: np.ndarray, g: sp.csr_matrix | None = None,
                ) -> sp.csr_matrix:
        """L21 = Λ₂' G Λ₁ L11⁻ᵀ (sparse, the pattern of G; ``g``: G if not the current)."""
        g = self.G if g is None else g
        nc = self.terms[0].nc
        if nc == 1:
            out = g.multiply(t1.reshape(1, -1)).tocsr()
        else:
            out = (g @ _block_diagonal(t1)).tocsr()
        return (self.lambda_rest_t(theta) @ out).tocsr()

    def _downdate(self, t1: np.ndarray) -> np.ndarray:
        """Upper-triangle values of G B Gᵀ at the pattern's entries, B = T1 T1ᵀ."""
        if self._gdense is not None:  # G is dense: Hᵀ = (G T1)ᵀ level by level, then H Hᵀ
            nl, nc, _ = t1.shape
            # Hᵀ_l = T1_lᵀ G_lᵀ with G stored (nl, nc, m): the result is already in H Hᵀ's
            # row layout (no transposing copy of the nl·nc x m panel); then one syrk
            ht = np.matmul(np.swapaxes(t1, 1, 2), self._gdense).reshape(nl * nc, self.m)
            return (ht.T @ ht).ravel()[self._keys]
        if self._pairs is not None:
            t1g = t1[self._group_level]  # one level per group of equal A11 blocks
            return self._pairs @ (t1g @ np.swapaxes(t1g, 1, 2)).ravel()
        b = t1 @ np.swapaxes(t1, 1, 2)
        gb = self.G @ _block_diagonal(b)
        return np.asarray((gb @ self.G.T).toarray()).ravel()[self._keys]

    def _block2(self, theta: np.ndarray, t1: np.ndarray) -> np.ndarray:
        """S = Λ₂'(M22 - G B Gᵀ)Λ₂ + I with B = T1 T1ᵀ: its upper triangle, in a C-order
        array whose transpose LAPACK factors in place (see :func:`update_block2`)."""
        return update_block2(self._plan, theta, self.M22, self._keys, self._downdate(t1),
                             self._diagonal_only)

    def factor(self, theta: np.ndarray) -> Factorization:
        """Factor the augmented system at ``theta`` (MixedModels.jl's ``updateL!``): block 1
        level by level (:func:`factor_block1`), block 2 assembled (:func:`update_block2`:
        scaled by Λ₂, downdated by block 1, inflated) and factored by LAPACK."""
        # a copy: optimizers pass views of buffers they overwrite later (NLopt does), and
        # the factorisation keeps the θ it was computed at
        theta = np.array(theta, dtype=float)
        qr = self._lam_r_size
        l11, t1 = factor_block1(self.A11, self.terms[0].lower_factor(theta))
        l22, info = potrf(self._block2(theta, t1).T)
        if info != 0:  # dpotrf overwrote its input: assemble block 2 again to diagnose
            l22 = cholesky_exact_fit(self._block2(theta, t1))
        diag22 = np.diag(l22)
        check_rx(diag22[qr : qr + self.p], np.diag(self.M22)[qr : qr + self.p])
        ld_l2 = 2.0 * (np.log(np.diagonal(l11, axis1=1, axis2=2)).sum()
                       + np.log(diag22[:qr]).sum())
        ld_rx2 = 2.0 * np.log(np.abs(diag22[qr : qr + self.p])).sum()
        pwrss = float(diag22[-1] ** 2)
        return Factorization(theta, l11, t1, l22, float(ld_l2), float(ld_rx2), pwrss,
                             self, _G=self.G)

    @property
    def has_gradient(self) -> bool:
        """Whether :meth:`gradient` is available: the downdate is done over precomputed
        pairs, or with a modest dense G."""
        return self._pairs is not None or (
            self._gdense is not None
            and self.m * self.m * self.q1 <= _policy().max_gradient_dense_g)

    def gradient(self, f: Factorization, REML: bool) -> np.ndarray:
        """The criterion's gradient in θ at ``f``, analytically.

        With A = T'MT + E, T = diag(I ⊗ λ_t, I) and θ_k at (r, c) of term t's λ, T⁻¹∂T/∂θ_k
        is I ⊗ F_k with F_k = λ⁻¹ e_r e_cᵀ on term t. Then, with C = A_s⁻¹ (s: random
        effects and X for REML, random effects for ML), ∂ log|A_s| = 2 [(nl I - Σ_l C_ll) λ⁻¹]_cr
        and, with u the spherical random effects and Q = Σ_l u_l u_lᵀ, ∂pwrss = -2 [Q λ⁻¹]_cr:
        only the nc x nc diagonal blocks of C are needed. Block 2's come from S⁻¹ (one
        ``dpotri``); the first term's are P_l + P_l λ'G_l'Λ₂S⁻¹Λ₂'G_lλP_l with
        P_l = (λ'A11_lλ + I)⁻¹, summed over levels by the downdate's pairs. A singular λ (a
        zero on its diagonal: the boundary) raises ``LinAlgError``; the deviance function
        then takes the gradient just inside.
        """
        theta = f.theta
        lams = [t.lower_factor(theta) for t in self.terms]
        if any(np.any(np.diagonal(lam) == 0.0) for lam in lams):
            raise np.linalg.LinAlgError("a relative covariance factor is singular")
        qr, p = self._lam_r_size, self.p
        s = qr + p if REML else qr
        # Σ_l C_ll for each term
        blocks = [np.zeros((t.nc, t.nc)) for t in self.terms]
        lam1 = lams[0]
        l11inv = np.linalg.inv(f.L11)  # (nl, nc, nc)
        pmat = np.swapaxes(l11inv, 1, 2) @ l11inv  # P_l = (L11_l L11_l')⁻¹
        blocks[0] += pmat.sum(axis=0)
        if s:
            inv_s, _ = la.lapack.dpotri(f.L22[:s, :s], lower=1)  # S⁻¹, lower triangle
            pos = 0
            for t, blk in zip(self.terms[1:], blocks[1:], strict=True):
                sub = inv_s[pos : pos + t.size, pos : pos + t.size]
                d = np.einsum("lalb->ab", sub.reshape(t.nl, t.nc, t.nl, t.nc))
                blk += np.tril(d) + np.tril(d, -1).T  # from the lower triangle only
                pos += t.size
            v = lam1 @ pmat  # V_l = λ P_l
            blocks[0] += self._first_term_quadratic(v, inv_s, theta, s)
        _, u = self.solve(f)
        scale = (self.n - p) if REML else self.n
        out = np.zeros(theta.shape[0])
        pos = 0
        for t, lam, blk in zip(self.terms, lams, blocks, strict=True):
            ut = u[pos : pos + t.size].reshape(t.nl, t.nc)
            q_t = np.einsum("la,lb->ab", ut, ut)  # not BLAS (see _first_term_quadratic)
            inner = (t.nl * np.eye(t.nc) - blk - scale * q_t / f.pwrss)
            grad = 2.0 * inner @ np.linalg.inv(lam)  # entry (c, r) belongs to λ[r, c]
            out[t.theta_slice] = t.gradient_from_factor(grad.T)  # grad.T's (r, c): λ[r, c]
            pos += t.size
        return out

    def _first_term_quadratic(self, v: np.ndarray, inv_lower: np.ndarray, theta: np.ndarray,
                              s: int) -> np.ndarray:
        """Σ_l V_l' G_l'K̃G_l V_l (nc x nc) with K̃ = Λ₂S⁻¹Λ₂' on block 2's first s rows
        (L21 = Λ₂'GΛ₁L11⁻ᵀ),
        G_l the level's nc columns of G, from the lower triangle of S⁻¹ (V_l depends on the
        level only through A11_l)."""
        nc = self.terms[0].nc

        def k_tilde_full() -> np.ndarray:
            k_full = np.tril(inv_lower) + np.tril(inv_lower, -1).T
            lam2 = self.lambda_rest_t(theta).T[:s, :s]
            return np.asarray(lam2 @ np.asarray(lam2 @ k_full).T)  # Λ₂ S⁻¹ Λ₂'

        out = np.zeros((nc, nc))
        if self._pairs is None:  # dense G: the quadratic forms by BLAS
            g = self.G[:s].toarray().reshape(s, -1, nc)  # (s, nl, nc)
            kg = np.einsum("ij,jlb->ilb", k_tilde_full(), g)
            h = np.einsum("ila,ilb->lab", g, kg)  # H_l = G_l' K̃ G_l
            return np.einsum("lxa,lxy,lyb->ab", v, h, v)
        inside = (self._key_rows < s) & (self._key_cols < s)
        i, j = self._key_rows[inside], self._key_cols[inside]
        if not self._plan.vector_blocks:
            # Λ₂ diagonal: K̃ needed only at the keys, from S⁻¹'s lower triangle
            dr = np.repeat(self._plan.scales(theta), np.diff(self._block_edges))[:s]
            k_keys = inv_lower[j, i] * dr[i] * dr[j]
        else:
            k_keys = k_tilde_full()[i, j]
        weight = np.where(i == j, 1.0, 2.0) * k_keys  # keys are the upper triangle
        vg = v[self._group_level]  # (groups, nc, nc)
        for a in range(nc):
            for b in range(a, nc):
                # B_l[x, y] = V_l[x, a] V_l[y, b], symmetrised (K̃ is symmetric)
                bmat = vg[:, :, a, None] * vg[:, None, :, b]
                bmat = 0.5 * (bmat + np.swapaxes(bmat, 1, 2))
                down = self._pairs @ bmat.reshape(-1)
                # a ufunc sum, not BLAS: numpy's own OpenBLAS threads would wake up, spin and
                # slow down scipy's dpotrf that follows
                out[a, b] = out[b, a] = float(np.sum(weight * down[inside]))
        return out

    # -- criteria and solutions -------------------------------------------------------------
    def solve(self, f: Factorization) -> tuple[np.ndarray, np.ndarray]:
        """Fixed effects β and spherical random effects u (conditional modes) at ``f``."""
        qr = self._lam_r_size
        l22 = f.L22
        top = l22[:-1, :-1]  # block 2 without y
        rhs2 = l22[-1, :-1]
        sol2 = la.solve_triangular(top, rhs2, lower=True, trans="T", check_finite=False)
        u_r, beta = sol2[:qr], sol2[qr:]
        # block 1: L11' u1 = l_y1 - L21z' u_r - L21x' β, with l_y1 the y row of L21
        l21 = f.L21
        rhs1 = np.asarray(l21[-1].toarray()).ravel() - l21[:-1].T @ sol2
        first = self.terms[0]
        rhs1 = rhs1.reshape(first.nl, first.nc)
        u1 = np.linalg.solve(np.swapaxes(f.L11, 1, 2), rhs1[:, :, None])[:, :, 0]
        return beta, np.concatenate([u1.ravel(), u_r])

    def sparse_L(self, f: Factorization) -> sp.csc_matrix:
        """The lower-triangular factor of Λ'Z'WZΛ + I as one sparse matrix (rows in Zt's order,
        no fill-reducing permutation)."""
        first = self.terms[0]
        nc = first.nc
        base = np.arange(first.nl)[:, None, None] * nc
        rows = (base + np.arange(nc)[None, :, None]).repeat(nc, axis=2)
        cols = (base + np.arange(nc)[None, None, :]).repeat(nc, axis=1)
        l11 = sp.csr_matrix((f.L11.ravel(), (rows.ravel(), cols.ravel())),
                            shape=(self.q1, self.q1))
        qr = self._lam_r_size
        l21z = f.L21[:qr]
        l22z = sp.csr_matrix(np.tril(f.L22[:qr, :qr]))
        blocks: list[list[sp.csr_matrix | None]] = [[l11, None], [l21z, l22z]]
        # csc_matrix: spmatrix blocks in csc format (the stubs say only spmatrix)
        full = cast(sp.csc_matrix, sp.bmat(blocks, format="csc"))
        full.eliminate_zeros()
        return full

    def rzx_rx(self, f: Factorization) -> tuple[np.ndarray, np.ndarray]:
        """lme4's RZX (q x p) and RX (p x p upper triangular)."""
        qr = self._lam_r_size
        x_rows = slice(qr, qr + self.p)
        rzx1 = f.L21[x_rows].toarray().T
        rzx_r = f.L22[x_rows, :qr].T
        rx = np.triu(f.L22[x_rows, x_rows].T)
        return np.vstack([rzx1, rzx_r]), rx

    def inverse_diagonal_blocks(self, f: Factorization, chunk: int = 2048) -> list[np.ndarray]:
        """Per term, the (nl, nc, nc) diagonal blocks of (Λ'Z'WZΛ + I)⁻¹ = L⁻ᵀL⁻¹.

        With L = [[L11, 0], [L21z, L22z]], the columns of L⁻¹ for block 1 are
        [L11⁻¹; -L22z⁻¹ L21z L11⁻¹]; block 2's are [0; L22z⁻¹]. Block 1 is done in chunks of
        levels so that no dense q x q matrix is formed.
        """
        first = self.terms[0]
        nc = first.nc
        qr = self._lam_r_size
        l11inv = np.linalg.inv(f.L11)  # (nl, nc, nc), lower triangular
        blocks1 = np.einsum("lki,lkj->lij", l11inv, l11inv)
        l22z = f.L22[:qr, :qr]
        if qr:
            l21z = f.L21[:qr]
            for lo in range(0, first.nl, chunk):
                hi = min(first.nl, lo + chunk)
                cols = slice(lo * nc, hi * nc)
                # lower part of L⁻¹ for these columns: -L22z⁻¹ L21z L11⁻¹
                inv_blk = sp.block_diag(list(l11inv[lo:hi]), format="csc")
                lower = -la.solve_triangular(
                    l22z, (l21z[:, cols] @ inv_blk).toarray(), lower=True, check_finite=False)
                lower = lower.reshape(qr, hi - lo, nc)
                blocks1[lo:hi] += np.einsum("kli,klj->lij", lower, lower)
        out = [blocks1]
        if qr:
            l22inv = la.solve_triangular(l22z, np.eye(qr), lower=True, check_finite=False)
            pos = 0
            for t in self.terms[1:]:
                blk = np.empty((t.nl, t.nc, t.nc))
                for lev in range(t.nl):
                    sl = slice(pos + lev * t.nc, pos + (lev + 1) * t.nc)
                    inv_cols = l22inv[:, sl]
                    blk[lev] = inv_cols.T @ inv_cols
                pos += t.size
                out.append(blk)
        return out


# the dense engine's limit, for callers (the policy holds it)
DENSE_LIMIT = _policy_module.POLICY.dense_limit


def make_problem(Zt: sp.csc_matrix, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                 terms: list[TermShape],
                 factors: list[tuple[np.ndarray, np.ndarray]] | None = None,
                 *, names: Sequence[str] | None = None,
                 ) -> PLSProblem | DensePLSProblem:
    """The engine for a model: dense for small systems, blocked otherwise.

    ``factors`` (each term's level codes and model matrix X_i, in Zt's order) lets the
    blocked engine form its cross-products by counting instead of sparse products. A model
    whose dense block would not fit in memory raises
    :class:`~lmeformula.errors.ModelSizeError` first (``names``: the terms' names for it)."""
    if Zt.shape[0] + X.shape[1] + 1 <= _policy().dense_limit:
        return DensePLSProblem(Zt, X, y, weights, terms)
    check_dense_memory(terms, X.shape[1], names)
    return PLSProblem(Zt, X, y, weights, terms, factors)
