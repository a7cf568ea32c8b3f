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
term with equal cross-product blocks share a column (or one syrk when G is dense). No step per
θ touches the n observations.

The three blocks are typed (:mod:`lmeformula.pls.blocks`: diagonal or uniform block-diagonal
block 1, a sparse or dense G chosen by its measured fill under
:class:`~lmeformula.pls.policy.BlockPolicy`, a dense block 2, factored as an arrow when it
opens with terms on the first term's grouping factor); :meth:`PLSProblem.factor` is
MixedModels.jl's ``updateL!`` over them, each step a method of the block's type. How block 2
is assembled per θ (typed rectangles: scaled, downdated, inflated) is in
:mod:`lmeformula.pls.plans`.

Small systems are factored as one dense matrix (:class:`DensePLSProblem`).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from . import memory as _memory
from . import policy as _policy_module
from .blocks import (
    WEIGHT_CHUNK,
    DenseDiagonalBlock,
    LevelBlock,
    OffDiagonalBlock,
    PairsBlock,
    diagonal_block,
    diagonal_block2,
    off_diagonal_block,
)
from .cholmod import SelectedInverse, SparseBlock2, SparsePivots
from .crossprod import (
    _block_diagonal,
    _fits_dense,
    _level_blocks,
    _level_cross,
    _level_cross_entries,
    _level_sums,
    _pair_structure,
    _PairStructure,
)
from .dense import (
    DenseFactorization,
    DensePLSProblem,
)
from .lapack import check_rx, finish_exact_fit, leading_inverse_in_place
from .plans import Block2Plan, PatternAssembly, VectorPatternAssembly, ZeroBlock, plan_block2
from .system import (
    _AugmentedSystem,
    _check_reweight,
    _log_det_weights,
    _policy,
    profiled_criteria,
    profiled_criterion,
)
from .terms import TermShape, lambda_template
from .threads import level3_safe


class _SparseState(enum.Enum):
    """Block 2's sparse factor not yet decided (the next evaluation decides: see
    PLSProblem.deviance). An enum: it pickles as itself."""

    UNDECIDED = 1


_UNDECIDED = _SparseState.UNDECIDED

# block 2 assembled at its sparse pattern: scalar terms only, or with vector terms
_Assembly = PatternAssembly | VectorPatternAssembly

__all__ = ["DenseFactorization", "DensePLSProblem", "Factorization", "PLSProblem", "TermShape",
           "lambda_template", "profiled_criteria", "profiled_criterion"]


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
        upper triangle is left as LAPACK found it (only the lower one is ever read). Empty
        (0 x 0) when block 2's factor is the sparse one (``sparse22``).
    ldL2, ldRX2, pwrss
        log det of Λ'Z'WZΛ + I, log det of RX'RX, penalised weighted RSS.
    sparse22
        Block 2's sparse factor (:class:`~lmeformula.pls.cholmod.SparseBlock2`) where the
        engine's criterion takes it (:meth:`PLSProblem.deviance`), else None.
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
    # G's block when factored (a later re-weighting of the problem replaces it)
    _A21: OffDiagonalBlock | None = field(default=None, repr=False)
    sparse22: SparseBlock2 | None = field(default=None, repr=False)
    # the dense factorisation at the same θ, made when a sparse one is asked what only the
    # dense factor gives (the gradient, getME("L"), conditional variances)
    _dense: Factorization | None = field(default=None, repr=False)

    @property
    def L21(self) -> sp.csr_matrix:
        """Sparse (m x q₁): rows of block 2 against block 1 (formed only when asked for)."""
        if self._L21 is None:
            self._L21 = self.problem.block21(self.theta, self.T1, self._A21)
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
    # the cross-products: block 1 with itself (nl₁, nc₁, nc₁), block 2 against block 1
    # (m x q₁, its structural pattern) and block 2 with itself (m x m)
    A11: np.ndarray = field(init=False, repr=False)
    G: sp.csr_matrix = field(init=False, repr=False)
    M22: np.ndarray = field(init=False, repr=False)
    # ... and the same three as typed blocks (:mod:`lmeformula.pls.blocks`), types chosen once
    b11: LevelBlock = field(init=False, repr=False)
    b21: OffDiagonalBlock = field(init=False, repr=False)
    b22: DenseDiagonalBlock = field(init=False, repr=False)
    # how many of the rank update's keys lie inside block 2's first s rows, by s (REML's and
    # ML's), for the gradient (:class:`_KeyWeights`): counted once, nothing per key is kept
    _inside_counts: dict[int, int] = field(init=False, repr=False, default_factory=dict)
    # block 2's sparse factor for the criterion (:mod:`.cholmod`): decided at the first
    # evaluation (_UNDECIDED until then), None where the dense factor is used
    _sparse: tuple[_Assembly, SparsePivots] | _SparseState | None = field(
        init=False, repr=False, default=None)
    # a gradient method asks for the factorisation at every point (:meth:`keep_factors`)
    _keep_factors: bool = field(init=False, repr=False, default=False)

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
        self._g_order: np.ndarray | slice | None = None
        if self.weights is None and self._by_level:
            w = None  # unit weights: not multiplied in (x·1 is x), no n-length ones held
        self._cross_products(w)
        # the re-weighting state (the order of G's entries, the pairs of levels met: n-length
        # on the counting path, 15-18 MB on the 10⁶-row designs) is not held by fits that never
        # re-weight (lmer), nor while the downdate's plan is made: the first re-weighting
        # finds it again, the same, and keeps it
        self._g_order = None
        self._g_plan = None
        if self.n >= _memory.TRIM_MIN_ROWS:
            # counting's freed temporaries (~40 MB on a 10⁶-row design) back to the system
            # before the downdate's plan is made beside them (see release_freed_memory)
            _memory.release_freed_memory()
        idx, ptr, lind = lambda_template(self.terms[1:])
        self._lam_r = (idx, ptr, lind)
        self._lam_r_size = qr
        self._make_blocks()
        self._sparse = _UNDECIDED if self._sparse_candidate() else None

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
            del xy  # the counting reads X's and y's columns themselves (the same values)
            columns = ([np.asarray(self.X[:, j], dtype=float) for j in range(self.p)]
                       + [np.asarray(self.y, dtype=float)])
            rows, cols, vals = self._cross_products_by_level(None, columns)
        else:
            xyw = xy * w[:, None]
            corner = xy.T @ xyw
            if self._by_level:
                del xy
                rows, cols, vals = self._cross_products_by_level(
                    w, [xyw[:, j] for j in range(self.p + 1)])
            else:
                rows, cols, vals = self._cross_products_sparse(w, xy, xyw)
                del xy
            del xyw
        if self._g_order is None:
            # CSR of the entries as scipy would build it (rows, then columns, ascending);
            # the entries are distinct, so this order places any later values too
            self._g_order = csr_order(rows, cols)
            indptr = np.zeros(self.m + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=self.m), out=indptr[1:])
            del rows  # each list gone once it is read (10⁶-row designs: 10⁶ entries each)
            g_vals = vals[self._g_order]
            del vals
            g_cols = cols[self._g_order]
            del cols
            self.G = sp.csr_matrix((g_vals, g_cols, indptr), shape=(self.m, self.q1))
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
        self._reweight_first_blocks(w, y)
        self.b22 = self.b22.reweighted(self.M22)

    def _reweight_first_blocks(self, w: np.ndarray, y: np.ndarray) -> None:
        """New weights and response: the cross-products recomputed, blocks 1 and 2-against-1
        refreshed (block 2 is the caller's: its storage differs between the engines)."""
        # block 2's sparse analysis holds M22's values at its pattern, and weights can change
        # the pattern: the criterion is the dense factor's from now on (PIRLS takes dense
        # factors anyway)
        self._sparse = None
        w, y = _check_reweight(w, y, self.n)
        self.weights, self.y = w, y
        self.ldW = _log_det_weights(w)
        self._cross_products(w)
        self.b11 = diagonal_block(self.A11)
        self.b21 = self.b21.reweighted(self.G, self.terms[0], self._order_by_block_pair)

    def _cross_products_sparse(self, w: np.ndarray, xy: np.ndarray, xyw: np.ndarray,
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A11 and M22 (all but its X-y corner) by sparse products with Zt; G's entries
        (rows, cols, values) on its structural pattern."""
        first = self.terms[0]
        zt = sp.csr_matrix(self._zt())
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

    def _cross_products_by_level(self, w: np.ndarray | None, xyw: list[np.ndarray],
                                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A11 and M22 (all but its X-y corner) from the grouping factors' codes, and G's
        entries (rows, cols, values) on its structural pattern: every block of Z'WZ is, for
        each pair of columns (a, b) of two terms, a weighted count of observations per pair
        of levels, ``bincount(code_s * nl_t + code_t, w x_a x_b)``. For many rows this is
        far cheaper than sparse products (one pass over n per pair). G is kept sparse
        (InstEval: 1,128 x 2,972 instructor-student pairs, 2 % of them present) and a term's
        block with itself is block-diagonal. Which pairs of levels occur is found once.
        ``xyw``: the columns of W[X y] (views where they can be: no n x (p+1) array)."""
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
            r += pos  # in place: r is the entries' own array
            g_rows.append(r)
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
                self.M22[rows, qr + j] = (_level_sums(codes, x, t.nl, xyw[j])
                                          .ravel())
            pos += t.size
        self.M22[qr:, :qr] = self.M22[:qr, qr:].T
        xy_rows = np.stack([_level_sums(codes1, x1, nl1, xyw[j]).ravel()
                            for j in range(self.p + 1)])
        r, c = np.indices(xy_rows.shape, dtype=np.int32).reshape(2, -1)  # all meet X and y
        g_rows.append(r + np.int32(qr))
        g_cols.append(c)
        g_vals.append(xy_rows.ravel())
        # one copy each, each list freed before the next is joined (the 10⁶-row dense
        # design: 2·10⁶ entries); 32-bit rows and columns (m and q₁ are far below 2³¹, and
        # the CSR built from them has 32-bit indices either way)
        rows_out = np.concatenate(g_rows)
        del g_rows
        cols_out = np.concatenate(g_cols)
        del g_cols
        return rows_out, cols_out, np.concatenate(g_vals)

    def _typed_blocks(self) -> tuple[np.ndarray, Block2Plan]:
        """Blocks 1 and 2 against 1, their types chosen once (by G's measured fill, see
        :func:`~lmeformula.pls.blocks.off_diagonal_block`), and block 2's keys and per-θ
        plan (shared with the compact large-block engine)."""
        self.b11 = diagonal_block(self.A11)
        self.b21 = off_diagonal_block(self.G, self.A11, self.terms[0], self._order_by_block_pair)
        keys = self.b21.keys
        # how block 2 is assembled per θ, by typed rectangles (see plans.py)
        plan = plan_block2(self.terms[1:], self.p, self._block_edges,
                           self._block_pair_segments(keys), _policy().band)
        return keys, plan

    def _make_blocks(self) -> None:
        """The typed blocks of the system and block 2's per-θ plan."""
        keys, plan = self._typed_blocks()
        # the zero-filled blocks' diagonals: (block, flat position in block 2, M22's value)
        zero = {blk.a for blk in plan.blocks if isinstance(blk, ZeroBlock)}
        edges = self._block_edges
        rows = np.concatenate([np.arange(edges[a], edges[a + 1]) for a in sorted(zero)]
                              + [np.zeros(0, np.int64)]).astype(np.int64)
        block_of = np.concatenate([np.full(edges[a + 1] - edges[a], a) for a in sorted(zero)]
                                  + [np.zeros(0, np.int64)]).astype(np.int64)
        # dense, or an arrow when block 2 opens with terms on the first term's factor
        self.b22 = diagonal_block2(self.M22, plan, keys,
                                   (block_of, rows * (self.m + 1), self.M22[rows, rows]),
                                   self.b21.g, self.terms[0])

    @property
    def _block_edges(self) -> np.ndarray:
        """Where each term of block 2 starts, then X and y, then the end."""
        return np.cumsum([0] + [t.size for t in self.terms[1:]] + [self.p + 1])

    def _block_pair(self, keys: np.ndarray) -> np.ndarray:
        """The pair of blocks (row block x number of blocks + column block) of each key."""
        edges = self._block_edges
        nblk = len(edges) - 1
        # the narrowest integers that hold nblk² (a few blocks: int16), so that the codes of
        # 2·10⁶ keys (the 10⁵ x 2,000 crossed design) take 4 MB, not three arrays of 16
        dtype = np.dtype(np.int16 if nblk * nblk < 2**15 else np.int64)
        owner = np.repeat(np.arange(nblk, dtype=dtype), np.diff(edges))
        rows, cols = np.divmod(keys, self.m)
        code: np.ndarray = owner[rows]
        del rows
        np.multiply(code, nblk, out=code, casting="unsafe")  # exact: below nblk²
        np.add(code, owner[cols], out=code)
        return code

    def _order_by_block_pair(self, keys: np.ndarray) -> np.ndarray:
        """An order of the downdate's entries by block pair, so that scaling them by Λ₂ is one
        multiplication per pair of blocks: the stable sort's permutation, made by counting a
        chunk of keys at a time (32-bit where it fits; the 10⁵ x 2,000 crossed design's 2·10⁶
        keys took an int64 argsort and the codes' temporaries, 40 MB, at the setup's peak)."""
        n = keys.shape[0]
        by_code: dict[int, list[np.ndarray]] = {}
        index = np.int32 if n < 2**31 else np.int64
        for lo in range(0, n, _ORDER_CHUNK):
            code = self._block_pair(keys[lo : lo + _ORDER_CHUNK])
            for c in np.flatnonzero(np.bincount(code)).tolist():
                by_code.setdefault(c, []).append(np.flatnonzero(code == c).astype(index) + lo)
        parts = [part for c in sorted(by_code) for part in by_code.pop(c)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=index)

    def _block_pair_segments(self, keys: np.ndarray) -> list[tuple[int, int, int, int]]:
        """(start, stop, row block, column block) of the keys of each block pair."""
        group = self._block_pair(keys)
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

    def block21(self, theta: np.ndarray, t1: np.ndarray, a21: OffDiagonalBlock | None = None,
                rows: slice | None = None, lam_t: sp.csc_matrix | None = None,
                ) -> sp.csr_matrix:
        """L21 = Λ₂' G Λ₁ L11⁻ᵀ (sparse, the pattern of G; ``a21``: G's block if not the
        current one), or its ``rows`` alone (a band starting and ending on boundaries of block
        2's levels), each entry the same sum either way: row j's sum reads Λ₂' row j, whose
        entries lie in j's own level, and those rows of G T1, in the same order (G T1
        converted to CSC, rows ascending). ``lam_t``: Λ₂' at ``theta`` if already made."""
        a21 = self.b21 if a21 is None else a21
        lam_t = self.lambda_rest_t(theta) if lam_t is None else lam_t
        if rows is not None:
            lam_t = lam_t[rows, rows]
        return (lam_t @ a21.times_t1(t1, rows)).tocsr()

    def block21_dense(self, theta: np.ndarray, t1: np.ndarray,
                      a21: OffDiagonalBlock | None = None) -> np.ndarray:
        """L21 = Λ₂' G T1 as a dense (m x q₁) array, entry by entry what :meth:`block21`'s
        sparse products compute (absent entries zero): row r of a level of a term of
        block 2 is Σ_c λ[c, r] (G T1)[row c] over ascending c ≥ r (Λ₂' is upper
        triangular per level), added in the order the sparse product adds them; X and y
        rows unscaled. Nothing here depends on the observations, and no sparse matrix is
        built (the per-step cost of a vector term's PIRLS step, see :meth:`solve`)."""
        a21 = self.b21 if a21 is None else a21
        # the X and y rows as they are; each term's rows scaled in place (no second m x q₁
        # array): row r reads rows c >= r of its level, which are not yet overwritten when
        # r ascends, and row r itself before it is written
        out = a21.times_t1_dense(t1)
        pos = 0
        for t in self.terms[1:]:
            lam = t.lower_factor(theta)
            rows = out[pos : pos + t.size].reshape(t.nl, t.nc, -1)
            # a few levels at a time: the sums' temporaries stay small (a term's rows of a
            # 10⁶-row crossed design are 16 MB); each entry's sum is the same
            step = max(1, (1 << 16) // max(1, out.shape[1]))
            for lo in range(0, t.nl, step):
                part = rows[lo : lo + step]
                for r in range(t.nc):
                    acc = np.zeros_like(part[:, r])
                    for c in range(r, t.nc):
                        acc += lam[c, r] * part[:, c]
                    part[:, r] = acc
            pos += t.size
        return out

    @level3_safe
    def factor(self, theta: np.ndarray) -> Factorization:
        """The factorisation at ``theta``: with block 2's sparse factor where the criterion
        takes it (:meth:`deviance` decided so; the fitted model's solutions, RX, conditional
        variances and L-BFGS-B's gradient come from it), else the dense one
        (:meth:`_factor_dense`)."""
        if self._sparse is _UNDECIDED:
            # a GLMM's PIRLS factors without evaluating the criterion first: its first
            # factorisation decides as the first evaluation does (and evaluates once more)
            self.deviance(theta, True)
        if isinstance(self._sparse, tuple):
            f = self._factor_sparse(np.array(theta, dtype=float))
            if f is not None:
                return f
        return self._factor_dense(theta)

    def _factor_dense(self, theta: np.ndarray) -> Factorization:
        """Factor the augmented system at ``theta`` as MixedModels.jl's ``updateL!`` does,
        block by block, each step a method of the block's type (:mod:`.blocks`):

        1. block 1: scale by Λ₁, inflate by I, factor (a diagonal block: one square root per
           level; uniform blocks: one batched Cholesky), giving L11 and T1 = Λ₁L11⁻ᵀ;
        2. the rank update of block 2 by block 1, L21 L21' = G T1 T1ᵀ Gᵀ (a dense G: one
           syrk; a sparse G: its precomputed pairs, or sparse products);
        3. block 2: scale by Λ₂, downdate, inflate (typed rectangles, :mod:`.plans`), factor
           (LAPACK).
        """
        # a copy: optimizers pass views of buffers they overwrite later (NLopt does), and
        # the factorisation keeps the θ it was computed at
        theta = np.array(theta, dtype=float)
        qr = self._lam_r_size
        b11, b21, b22 = self.b11, self.b21, self.b22
        l11, t1 = b11.factor(self.terms[0].lower_factor(theta))
        s = b22.assemble(theta, b21.rank_update(t1))
        last = float(s[-1, -1])  # the response's pivot before the factorisation
        l22, info = b22.factor(s)
        if info == l22.shape[0]:  # an exact fit: only the last pivot, Σ r², is round-off
            # the factor as dpotrf left it, as the large-block engine takes it: one LAPACK
            # call whichever engine, so the two agree bit for bit (a second dpotrf of order
            # m - 1 blocks differently)
            finish_exact_fit(l22, last)
        elif info != 0:  # dpotrf overwrote its input: assemble block 2 again to diagnose
            l22 = b22.factor_exact_fit(b22.assemble(theta, b21.rank_update(t1)))
        diag22 = np.diag(l22)
        check_rx(diag22[qr : qr + self.p], np.diag(self.M22)[qr : qr + self.p])
        ld_l2 = 2.0 * (b11.log_det(l11) + np.log(diag22[:qr]).sum())
        ld_rx2 = 2.0 * np.log(np.abs(diag22[qr : qr + self.p])).sum()
        pwrss = float(diag22[-1] ** 2)
        return Factorization(theta, l11, t1, l22, float(ld_l2), float(ld_rx2), pwrss,
                             self, _A21=b21)

    @level3_safe
    def deviance(self, theta: np.ndarray, REML: bool) -> tuple[float, Factorization | None]:
        """The criterion at ``theta``, and its factorisation; or, where block 2's sparse
        factor pays (:meth:`_sparse_candidate`, measured fill), the criterion alone from the
        sparse factor's pivots (the factorisation is made when asked for, at its θ).

        The first evaluation decides: block 2's pattern is analysed by CHOLMOD and the sparse
        factor kept when its fill is at most
        :attr:`~lmeformula.pls.policy.BlockPolicy.sparse_max_fill` (and, when a gradient
        method will ask for the factorisation at each point, :meth:`keep_factors`, when the
        sparse gradient pays; the criterion is then taken from that factorisation, made once
        per point). Where S is not positive definite the dense factor diagnoses it, as it
        always has."""
        sparse = self._sparse
        if sparse is None:
            return super().deviance(theta, REML)
        theta = np.array(theta, dtype=float)
        if self._keep_factors and sparse is not _UNDECIDED:  # from factor(): sparse, else dense
            return super().deviance(theta, REML)
        pattern = None
        if sparse is _UNDECIDED:
            pattern = self._block2_pattern()  # before the rank update: a dense pattern is
            if pattern is None:               # not worth the whole D's memory
                self._sparse = None
                return super().deviance(theta, REML)
        l11, t1 = self.b11.factor(self.terms[0].lower_factor(theta))
        down = self.b21.rank_update(t1)
        if pattern is not None:
            analysed = self._analysed_sparse(pattern, theta, down)
            if (analysed is not None and self._keep_factors
                    and not self._sparse_gradient_pays(analysed[1])):
                analysed = None
            self._sparse = None if analysed is None else analysed[:2]
            pivots = None if analysed is None else analysed[2]
            if analysed is not None and self._keep_factors:  # the factorisation, as below
                return self.deviance(theta, REML)
        else:
            assembly, factor = cast(tuple[_Assembly, SparsePivots], sparse)
            pivots = factor.pivots(assembly.values(theta, down))
        if pivots is None:  # not positive definite here: the dense factor diagnoses it
            f = self._factor_dense(theta)
            return self.criterion(f, REML), f
        return profiled_criterion(*self._pivot_criteria(l11, pivots), self.n, self.p,
                                  self.ldW, REML), None

    def _pivot_criteria(self, l11: np.ndarray, pivots: np.ndarray) -> tuple[float, float, float]:
        """ldL2, ldRX2 and pwrss from block 1's factor and block 2's sparse pivots (in the
        analysis' order: the random effects', then X's, then the response's), RX checked as
        lme4 checks it."""
        qr, p = self._lam_r_size, self.p
        check_rx(pivots[qr : qr + p], self._xx_diagonal())
        ld_l2 = 2.0 * (self.b11.log_det(l11) + np.log(pivots[:qr]).sum())
        ld_rx2 = 2.0 * np.log(np.abs(pivots[qr : qr + p])).sum()
        return float(ld_l2), float(ld_rx2), float(pivots[-1] ** 2)

    def _factor_sparse(self, theta: np.ndarray) -> Factorization | None:
        """The factorisation at ``theta`` with block 2's sparse factor kept (the analysis
        :meth:`deviance` made), or None where CHOLMOD cannot factor S there (the dense
        factor then diagnoses it, or finishes an exact fit)."""
        assembly, analysis = cast(tuple[_Assembly, SparsePivots], self._sparse)
        l11, t1 = self.b11.factor(self.terms[0].lower_factor(theta))
        block2 = analysis.factor(assembly.values(theta, self.b21.rank_update(t1)))
        if block2 is None:
            return None
        ld_l2, ld_rx2, pwrss = self._pivot_criteria(l11, block2.pivots())
        return Factorization(theta, l11, t1, np.empty((0, 0)), ld_l2, ld_rx2, pwrss, self,
                             _A21=self.b21, sparse22=block2)

    def _dense_factor(self, f: Factorization) -> Factorization:
        """``f`` itself when its block 2 is dense, else the dense factorisation at its θ
        (made once and kept with it)."""
        if f.sparse22 is None:
            return f
        if f._dense is None:
            f._dense = self._factor_dense(f.theta)
        return f._dense

    def __getstate__(self) -> dict[str, object]:
        """The state for a copy or a pickle: block 2's sparse analysis (CHOLMOD's factor, a
        capsule that cannot be pickled) is left out and made again by the copy when it
        evaluates (its next evaluation decides, as a new problem's first does)."""
        state = self.__dict__.copy()
        if isinstance(state.get("_sparse"), tuple):
            state["_sparse"] = _UNDECIDED
        return state

    def keep_factors(self) -> None:
        """The caller (the analytic gradient's optimizer) will ask for the factorisation at
        each point it evaluates: the criterion is taken from it from now on, one
        factorisation a point. Block 2's sparse factor stays where its gradient pays
        (:meth:`_sparse_gradient_pays`, decided with the fill at the first evaluation, never
        below :attr:`~lmeformula.pls.policy.BlockPolicy.sparse_gradient_min_order`); else the
        dense factor."""
        self._keep_factors = True
        decided = self._sparse
        if self.m < _policy().sparse_gradient_min_order or (
                isinstance(decided, tuple) and not self._sparse_gradient_pays(decided[1])):
            self._sparse = None

    def _sparse_gradient_pays(self, analysis: SparsePivots) -> bool:
        """Whether the gradient from block 2's sparse factor (selected inverse, about Σ_j c_j²
        multiply-adds for its column counts c_j) is cheaper than the dense one (two dense
        triangular passes, ~m³/1.5 flops at BLAS speed): see
        :attr:`~lmeformula.pls.policy.BlockPolicy.sparse_gradient_work`."""
        policy = _policy()
        return (self.m >= policy.sparse_gradient_min_order
                and analysis.pair_work <= policy.sparse_gradient_work * float(self.m) ** 3)

    def _sparse_candidate(self) -> bool:
        """Whether block 2 may take the sparse factor: a plain dense block (an arrow has its
        own cheaper factor) of order at least
        :attr:`~lmeformula.pls.policy.BlockPolicy.sparse_min_order`. Its terms may be vector
        terms: S's pattern is then M22's with the downdate's closed under levels (Λ₂ mixes
        a level's entries), at every θ."""
        return (type(self.b22) is DenseDiagonalBlock
                and self.m >= _policy().sparse_min_order)

    def _xx_diagonal(self) -> np.ndarray:
        """M22's diagonal on X's rows (lme4's rank check of RX)."""
        qr = self._lam_r_size
        return np.diag(self.M22)[qr : qr + self.p]

    def _block2_pattern(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """S's structural pattern: (flat positions i·m + j, i ≤ j, ascending, of M22's
        non-zeros, the downdate's keys and the diagonal; M22 there; the keys), or None when
        it is denser than :attr:`~lmeformula.pls.policy.BlockPolicy.sparse_max_fill` of a
        triangle (the factor can only fill in more)."""
        m = self.m
        limit = _policy().sparse_max_fill * m * (m + 1) / 2
        if self.b22.keys.shape[0] > limit:  # the downdate alone fills more: nothing formed
            return None
        keys = np.asarray(self.b22.keys, dtype=np.intp)
        flat_pattern = np.triu(self.M22 != 0).ravel()
        flat_pattern[keys] = True
        flat_pattern[:: m + 1] = True
        flat = np.flatnonzero(flat_pattern)  # ascending: CHOLMOD's column-major order
        del flat_pattern
        if self._block2_plan.vector_blocks:  # every entry of a pair of levels, or none
            closed = closed_under_levels(flat, self._level_units(), m, limit)
            if closed is None:
                return None
            flat = closed
        if flat.size > limit:
            return None
        return flat, self.M22.ravel()[flat], keys

    def _level_units(self) -> np.ndarray:
        """The level of block 2 each of its rows belongs to, numbered in order (a vector
        term's level spans nc rows; X's and y's rows are one each)."""
        unit = []
        count = 0
        for t in self.terms[1:]:
            unit.append(count + np.arange(t.size) // t.nc)
            count += t.nl
        unit.append(count + np.arange(self.p + 1))
        return np.concatenate(unit).astype(np.int64)

    def _analysed_sparse(self, pattern: tuple[np.ndarray, np.ndarray, np.ndarray],
                         theta: np.ndarray, down: np.ndarray
                         ) -> tuple[_Assembly, SparsePivots, np.ndarray] | None:
        """Block 2 assembled at its ``pattern`` (:meth:`_block2_pattern`) at the θ of the
        evaluation that decides (``down``: its rank update) and analysed: the assembly, the
        analysis and the pivots when CHOLMOD could factor it with a fill of at most
        :attr:`~lmeformula.pls.policy.BlockPolicy.sparse_max_fill`; else None, and the
        dense factor from then on."""
        flat, m22, keys = pattern
        kind = VectorPatternAssembly if self._block2_plan.vector_blocks else PatternAssembly
        assembly = kind.of(self._block2_plan, m22, keys, flat, self._block_edges)
        analysed = SparsePivots.analyse(flat, self.m, self._lam_r_size,
                                        assembly.values(theta, down), _policy().sparse_max_fill)
        if analysed is None:
            return None
        return assembly, analysed[0], analysed[1]

    @property
    def holds_one_factor(self) -> bool:
        """Whether the deviance function keeps no factor but the current one: block 2's
        factor (m x m) is above :attr:`~lmeformula.pls.policy.BlockPolicy.max_best_factor`
        entries (the results are the same; the optimum is factored once more)."""
        return self.m * self.m > _policy().max_best_factor

    @property
    def has_gradient(self) -> bool:
        """Whether :meth:`gradient` is available: the downdate is done over precomputed
        pairs, or with a modest dense G."""
        return self.b21.has_gradient

    @level3_safe
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
        then takes the gradient just inside. With block 2's sparse factor, the same sums from
        its selected inverse (:meth:`_sparse_gradient`).
        """
        if f.sparse22 is not None:
            sparse = self._sparse_gradient(f, REML)
            if sparse is not None:
                return sparse
        f = self._dense_factor(f)
        theta = f.theta
        lams, s = self._gradient_start(theta, REML)
        # Σ_l C_ll for each term
        blocks = [np.zeros((t.nc, t.nc)) for t in self.terms]
        lam1 = lams[0]
        l11inv = np.linalg.inv(f.L11)  # (nl, nc, nc)
        pmat = np.swapaxes(l11inv, 1, 2) @ l11inv  # P_l = (L11_l L11_l')⁻¹
        blocks[0] += pmat.sum(axis=0)
        u = self._spherical_modes(f)  # before the factor's array may hold S⁻¹
        if s:
            with self._block2_inverse(f, s) as inv_s:  # S⁻¹ in its lower triangle
                pos = 0
                for t, blk in zip(self.terms[1:], blocks[1:], strict=True):
                    sub = inv_s[pos : pos + t.size, pos : pos + t.size]
                    d = np.einsum("lalb->ab", sub.reshape(t.nl, t.nc, t.nl, t.nc))
                    blk += np.tril(d) + np.tril(d, -1).T  # from the lower triangle only
                    pos += t.size
                v = lam1 @ pmat  # V_l = λ P_l
                blocks[0] += self._first_term_quadratic(v, inv_s, theta, s)
        return self._gradient_from_blocks(f, REML, lams, blocks, u)

    def _sparse_gradient(self, f: Factorization, REML: bool) -> np.ndarray | None:
        """:meth:`gradient` from block 2's sparse factor: S_s⁻¹ at the factor's pattern
        (:meth:`~lmeformula.pls.cholmod.SparseBlock2.selected_inverse`) gives block 2's
        Σ_l C_ll (its levels' diagonal blocks) and the first term's
        Σ_l P_l λ'G_l'Λ₂S_s⁻¹Λ₂'G_lλP_l = Σ_l B_lᵀS_s⁻¹B_l with B = L21[:s] L11⁻¹ (B Bᵀ's
        entries lie inside the factor's pattern); u from the sparse solve. None where the
        pattern does not serve (the dense factor then)."""
        lams, s = self._gradient_start(f.theta, REML)
        blocks = [np.zeros((t.nc, t.nc)) for t in self.terms]
        l11inv = np.linalg.inv(f.L11)  # (nl, nc, nc)
        blocks[0] += (np.swapaxes(l11inv, 1, 2) @ l11inv).sum(axis=0)  # Σ_l P_l
        if s:
            assert f.sparse22 is not None
            try:
                inverse = f.sparse22.selected_inverse(s)
            except ArithmeticError:
                return None
            # Σ_l B_lᵀS_s⁻¹B_l = [⟨S_s⁻¹, B_a B_bᵀ⟩]_ab, B_a the levels' a-th columns
            b = (f.L21[:s] @ _block_diagonal(l11inv)).tocsc()
            nc = self.terms[0].nc
            columns = [b[:, a::nc] for a in range(nc)]
            for a, b_a in enumerate(columns):
                for c, b_c in enumerate(columns[: a + 1]):
                    value = inverse.inner(b_a @ b_c.T)
                    if value is None:
                        return None
                    blocks[0][a, c] += value
                    if c != a:
                        blocks[0][c, a] += value
            try:
                level = self._level_blocks(inverse)
            except ArithmeticError:
                return None
            for blk, per_level in zip(blocks[1:], level, strict=True):
                blk += per_level.sum(axis=0)
        return self._gradient_from_blocks(f, REML, lams, blocks, self.solve(f)[1])

    @contextmanager
    def _block2_inverse(self, f: Factorization, s: int) -> Iterator[np.ndarray]:
        """Within the block, an array whose leading s x s lower triangle is S_s⁻¹ (S_s block
        2's leading s rows and columns): ``dpotri`` on a copy of L22's leading block up to
        :attr:`~lmeformula.pls.policy.BlockPolicy.max_inverse_copy_bytes`, above it in the
        factor's own array (:func:`~lmeformula.pls.lapack.leading_inverse_in_place`)."""
        l22 = f.L22
        if s * s * 8 <= _policy().max_inverse_copy_bytes or not l22.flags.f_contiguous:
            inv_s, _ = la.lapack.dpotri(l22[:s, :s], lower=1)
            yield inv_s
        else:
            with leading_inverse_in_place(l22, s) as inv_s:
                yield inv_s

    def _gradient_from_blocks(self, f: Factorization, REML: bool, lams: list[np.ndarray],
                              blocks: list[np.ndarray], u: np.ndarray) -> np.ndarray:
        """The gradient from each term's Σ_l C_ll (``blocks``) and the spherical random
        effects ``u``: ∂ log|A_s| and ∂pwrss (see :meth:`gradient`), for this engine and the
        large-block one."""
        scale = (self.n - self.p) if REML else self.n
        out = np.zeros(f.theta.shape[0])
        pos = 0
        for t, lam, blk in zip(self.terms, lams, blocks, strict=True):
            ut = u[pos : pos + t.size].reshape(t.nl, t.nc)
            q_t = np.einsum("la,lb->ab", ut, ut)  # not BLAS (see _first_term_quadratic)
            inner = (t.nl * np.eye(t.nc) - blk - scale * q_t / f.pwrss)
            grad = 2.0 * inner @ np.linalg.inv(lam)  # entry (c, r) belongs to λ[r, c]
            out[t.theta_slice] = t.gradient_from_factor(grad.T)  # grad.T's (r, c): λ[r, c]
            pos += t.size
        return out

    def _spherical_modes(self, f: Factorization) -> np.ndarray:
        """The spherical random effects u at ``f`` for the gradient, without forming L21
        (:meth:`solve` builds it as a sparse matrix: 8 of an InstEval gradient's ~60 ms).

        With L22 = [[L, 0], [l', l_yy]] (y last), L22'x = e_y gives x = [-L⁻ᵀl; 1] / l_yy, so
        w = l_yy x = [-(u_r, β); 1] comes from one triangular solve on the whole factor (no copy
        of its leading block), and block 1's right side L21'w = T1'G'Λ₂w from one sparse
        product with G'. Equal to :meth:`solve`'s u up to rounding; an exact fit (l_yy = 0)
        takes :meth:`solve`."""
        l22 = f.L22
        l_yy = float(l22[-1, -1])
        if l_yy == 0.0:
            return self.solve(f)[1]
        e_y = np.zeros(self.m)
        e_y[-1] = 1.0
        # reads the lower triangle only (the upper one is not cleared after dpotrf)
        x = la.blas.dtrsv(l22, e_y, lower=1, trans=1)
        w = x * l_yy
        w[-1] = 1.0
        a21 = self.b21 if f._A21 is None else f._A21
        plan = self._block2_plan
        if not plan.vector_blocks:  # Λ₂ diagonal: a scale per block (no sparse Λ₂ built)
            lam_w = self._block2_scales(f.theta) * w
        else:
            lam_w = self.lambda_rest_t(f.theta).T @ w
        z = a21.g.T @ lam_w  # G'Λ₂w (q₁)
        first = self.terms[0]
        t1 = f.T1  # (nl, nc, nc): rhs1_l = T1_l' z_l
        rhs1 = np.einsum("lab,la->lb", t1, z.reshape(first.nl, first.nc))
        u1 = self.b11.solve_transposed(f.L11, rhs1)
        return np.concatenate([u1.ravel(), -w[: self._lam_r_size]])

    def _first_term_quadratic(self, v: np.ndarray, inv_lower: np.ndarray, theta: np.ndarray,
                              s: int) -> np.ndarray:
        """Σ_l V_l' G_l'K̃G_l V_l (nc x nc) with K̃ = Λ₂S⁻¹Λ₂' on block 2's first s rows
        (L21 = Λ₂'GΛ₁L11⁻ᵀ),
        G_l the level's nc columns of G, from the lower triangle of S⁻¹ (V_l depends on the
        level only through A11_l)."""

        def k_tilde_full() -> np.ndarray:
            k_full = np.tril(inv_lower) + np.tril(inv_lower, -1).T
            lam2 = self.lambda_rest_t(theta).T[:s, :s]
            return np.asarray(lam2 @ np.asarray(lam2 @ k_full).T)  # Λ₂ S⁻¹ Λ₂'

        b21 = self.b21
        if not isinstance(b21, PairsBlock):  # the quadratic forms by BLAS
            return b21.dense_quadratic(v, k_tilde_full(), s)
        plan = self._block2_plan
        k_at: Callable[[np.ndarray, np.ndarray], np.ndarray]
        if plan.vector_blocks:
            k_full = k_tilde_full()

            def k_at(i: np.ndarray, j: np.ndarray) -> np.ndarray:
                return k_full[i, j]
        else:
            # Λ₂ diagonal: K̃ needed only at the keys, from S⁻¹'s lower triangle
            dr = self._block2_scales(theta)[:s]
            flat, step_j, step_i = _flat_view(inv_lower)

            def k_at(i: np.ndarray, j: np.ndarray) -> np.ndarray:
                # (j, i) read flat off the array's memory (dpotri's Fortran order, or the
                # factor's own array transposed): a 2-d gather took ~6 ms of InstEval's
                # gradient; else by index
                k = flat[j * step_j + i * step_i] if flat is not None else inv_lower[j, i]
                k *= dr[i]  # in place, the same products in the same order
                k *= dr[j]
                return k

        return b21.quadratic(v, _KeyWeights(b21.keys, self.m, s, k_at,
                                            self._inside_counts))

    @property
    def _block2_plan(self) -> Block2Plan:
        """Block 2's per-θ plan (its typed rectangles and the downdate's segments)."""
        return self.b22.plan

    def _block2_scales(self, theta: np.ndarray) -> np.ndarray:
        """Λ₂'s diagonal (block 2's terms all scalar: one scale per term, repeated over its
        levels; X and y rows get 1)."""
        return np.repeat(self._block2_plan.scales(theta), np.diff(self._block_edges))

    def _gradient_start(self, theta: np.ndarray, REML: bool) -> tuple[list[np.ndarray], int]:
        """The terms' λ at ``theta`` and the order s of A_s (random effects and X for REML,
        random effects for ML), for :meth:`gradient` here and in the large-block engine. A
        zero on a λ's diagonal (the boundary) raises ``LinAlgError``."""
        lams = [t.lower_factor(theta) for t in self.terms]
        if any(np.any(np.diagonal(lam) == 0.0) for lam in lams):
            raise np.linalg.LinAlgError("a relative covariance factor is singular")
        qr = self._lam_r_size
        return lams, qr + self.p if REML else qr

    # -- criteria and solutions -------------------------------------------------------------
    @level3_safe
    def solve(self, f: Factorization) -> tuple[np.ndarray, np.ndarray]:
        """Fixed effects β and spherical random effects u (conditional modes) at ``f``."""
        qr = self._lam_r_size
        if f.sparse22 is not None:
            sol2 = f.sparse22.solution()
        else:
            l22 = f.L22
            top = l22[:-1, :-1]  # block 2 without y
            rhs2 = l22[-1, :-1]
            sol2 = la.solve_triangular(top, rhs2, lower=True, trans="T", check_finite=False)
        u_r, beta = sol2[:qr], sol2[qr:]
        return beta, np.concatenate([self._solve_block1(f, sol2), u_r])

    def _solve_block1(self, f: Factorization, sol2: np.ndarray) -> np.ndarray:
        """Block 1's random effects u1 given block 2's solution ``sol2`` (its random effects
        and β): L11' u1 = l_y1 - L21z' u_r - L21x' β, with l_y1 the y row of L21."""
        if f._L21 is None and self.m * self.q1 <= _DENSE_L21_LIMIT:
            # a GLMM's PIRLS step: L21 dense, without building sparse matrices per call
            l21d = self.block21_dense(f.theta, f.T1, f._A21)
            rhs1 = l21d[-1] - _ascending_rows_times(l21d[:-1], sol2)
        elif f._L21 is not None:
            l21 = f._L21
            rhs1 = np.asarray(l21[-1].toarray()).ravel() - l21[:-1].T @ sol2
        else:
            rhs1 = self._block21_rhs(f, sol2)
        first = self.terms[0]
        return self.b11.solve_transposed(f.L11, rhs1.reshape(first.nl, first.nc)).ravel()

    def _level_cuts(self, row_entries: np.ndarray, band_entries: int) -> list[int]:
        """Row boundaries of block 2, each on a boundary between levels (so that a band of
        L21's rows holds whole levels of every term), about ``band_entries`` of G's entries
        apart (``row_entries``: G's index pointer, the entries before each row): the X and y
        rows, one entry per level of the first term, get bands of their own."""
        starts = [np.arange(start, start + t.size, t.nc)
                  for t, start in zip(self.terms[1:], self._block_edges, strict=False)]
        bounds = np.concatenate([*starts, np.arange(self._lam_r_size, self.m + 1)])
        marks = np.arange(0, int(row_entries[-1]), max(1, band_entries))
        rows = np.searchsorted(row_entries, marks, side="right") - 1  # the row holding each
        cuts = np.unique(np.concatenate([[0], bounds[np.searchsorted(bounds, rows)]]))
        return [*cuts.tolist(), self.m] if cuts[-1] != self.m else cuts.tolist()

    def _block21_rhs(self, f: Factorization, v: np.ndarray) -> np.ndarray:
        """l_y1 - L21[:-1]' v (block 1's right side in :meth:`solve`), bit for bit what the
        whole sparse L21 gives, from bands of its rows: the transposed product adds, for each
        column, its rows' products in ascending row order, as the bands are visited here.
        Only one band (about 2¹⁶ entries of G) is formed at a time, where L21, G T1 and their
        copies were four matrices of G's size (a 10⁶-row crossed design's fitted model: +24
        MB), and nothing is kept (:attr:`Factorization.L21` is formed when asked for)."""
        g = (self.b21 if f._A21 is None else f._A21).g
        acc = np.zeros(self.q1)
        y_row = np.zeros(self.q1)
        cuts = self._level_cuts(g.indptr, _L21_BAND_ENTRIES)
        lam_t = self.lambda_rest_t(f.theta)  # once, not per band
        for lo, hi in itertools.pairwise(cuts):
            band = self.block21(f.theta, f.T1, f._A21, slice(lo, hi), lam_t)
            if hi == self.m:  # the y row: l_y1
                y_row = np.asarray(band[hi - lo - 1].toarray()).ravel()
                band = band[: hi - lo - 1]
            rows = np.repeat(np.arange(lo, lo + band.shape[0]), np.diff(band.indptr))
            np.add.at(acc, band.indices, band.data * v[rows])
        return y_row - acc

    @level3_safe
    def sparse_L(self, f: Factorization) -> sp.csc_matrix:
        """The lower-triangular factor of Λ'Z'WZΛ + I as one sparse matrix (rows in Zt's order,
        no fill-reducing permutation)."""
        f = self._dense_factor(f)  # L in Zt's order: the dense factor's
        l11 = self.b11.to_sparse(f.L11)
        qr = self._lam_r_size
        l21z = f.L21[:qr]
        l22z = sp.csr_matrix(np.tril(f.L22[:qr, :qr]))
        blocks: list[list[sp.csr_matrix | None]] = [[l11, None], [l21z, l22z]]
        # csc_matrix: spmatrix blocks in csc format (the stubs say only spmatrix)
        full = cast(sp.csc_matrix, sp.bmat(blocks, format="csc"))
        full.eliminate_zeros()
        return full

    @level3_safe
    def rzx_rx(self, f: Factorization) -> tuple[np.ndarray, np.ndarray]:
        """lme4's RZX (q x p) and RX (p x p upper triangular)."""
        qr = self._lam_r_size
        x_rows = slice(qr, qr + self.p)
        if f._L21 is not None:
            rzx1 = f._L21[x_rows].toarray().T
        else:  # the X rows alone
            rzx1 = self.block21(f.theta, f.T1, f._A21, x_rows).toarray().T
        f = self._dense_factor(f)  # RZX's rows in the order of getME("L"), the dense one's
        rzx_r = f.L22[x_rows, :qr].T
        rx = np.triu(f.L22[x_rows, x_rows].T)
        return np.vstack([rzx1, rzx_r]), rx

    def rx(self, f: Factorization) -> np.ndarray:
        """lme4's RX at ``f``: from block 2's sparse factor where it has one (RX'RX, the
        downdated X'WX, is the same whatever the order of the random effects before X, and
        so is its Cholesky factor), else :meth:`rzx_rx`'s."""
        if f.sparse22 is None:
            return self.rzx_rx(f)[1]
        return f.sparse22.rx(self._lam_r_size, self.p)

    def _sparse_inverse_diagonal_blocks(self, f: Factorization) -> list[np.ndarray] | None:
        """:meth:`inverse_diagonal_blocks` from block 2's sparse factor (None without one, or
        where its pairs are too many: :attr:`~lmeformula.pls.policy.BlockPolicy.
        max_inverse_pairs`). With B = L21z L11⁻¹ and S_z block 2's random-effects part after
        block 1, block 1's are L11⁻ᵀL11⁻¹ + B_lᵀS_z⁻¹B_l per level, block 2's the diagonal
        blocks of S_z⁻¹ by level; S_z⁻¹ is needed only at the factor's pattern
        (:meth:`~lmeformula.pls.cholmod.SparseBlock2.selected_inverse`)."""
        if f.sparse22 is None:
            return None
        qr, nc = self._lam_r_size, self.terms[0].nc
        l11inv = np.linalg.inv(f.L11)  # (nl, nc, nc), lower triangular
        blocks1 = np.einsum("lki,lkj->lij", l11inv, l11inv)
        if not qr:
            return [blocks1]
        try:
            inverse = f.sparse22.selected_inverse(qr)
        except ArithmeticError:
            return None
        b = (f.L21[:qr] @ _block_diagonal(l11inv)).tocsc()  # L21z L11⁻¹
        forms = inverse.quadratic_forms(b, nc, _policy().max_inverse_pairs)
        if forms is None:
            return None
        try:
            return [blocks1 + forms, *self._level_blocks(inverse)]
        except ArithmeticError:
            return None

    def _level_blocks(self, inverse: SelectedInverse) -> list[np.ndarray]:
        """Block 2's terms' (nl, nc, nc) diagonal blocks of S_s⁻¹ (its selected inverse)."""
        out = []
        pos = 0
        for t in self.terms[1:]:
            out.append(inverse.level_blocks(pos, t.nl, t.nc))
            pos += t.size
        return out

    @level3_safe
    def inverse_diagonal_blocks(self, f: Factorization, chunk: int = 2048) -> list[np.ndarray]:
        """Per term, the (nl, nc, nc) diagonal blocks of (Λ'Z'WZΛ + I)⁻¹ = L⁻ᵀL⁻¹.

        With L = [[L11, 0], [L21z, L22z]], the columns of L⁻¹ for block 1 are
        [L11⁻¹; -L22z⁻¹ L21z L11⁻¹]; block 2's are [0; L22z⁻¹]. Block 1 is done in chunks of
        levels so that no dense q x q matrix is formed.
        """
        sparse = self._sparse_inverse_diagonal_blocks(f)
        if sparse is not None:
            return sparse
        f = self._dense_factor(f)
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


# solve forms L21 densely up to this many entries (m x q₁; 16 MB), by bands of rows of
# about this many entries of G beyond (a band's products take ~40 bytes an entry while it is
# made: 2¹⁸ entries were 8 MB, and the X and y rows' band of the 10⁵ x 2,000 crossed design
# 18 MB, the fitted model's peak; each of those rows is a band of its own at 2¹⁶)
_DENSE_L21_LIMIT = 1 << 21
_L21_BAND_ENTRIES = 1 << 16


# keys per chunk of the block-pair ordering's counting sort
_ORDER_CHUNK = 1 << 18


def closed_under_levels(flat: np.ndarray, unit: np.ndarray, m: int, limit: float,
                        ) -> np.ndarray | None:
    """The pattern ``flat`` (ascending flat positions i·m + j, i ≤ j, of an m x m upper
    triangle) closed under levels: with any entry between two levels (``unit``: the level
    each row belongs to, numbered in order; a vector term's level spans nc rows), every
    entry between them on or above the diagonal; ascending. Λ₂ mixes a level's rows, so S
    has the closed pattern at every θ. None when the closure would make more than
    2·``limit`` entries (counted before they are made; at most half of them lie below the
    diagonal)."""
    starts = np.flatnonzero(np.r_[True, unit[1:] != unit[:-1]])  # each level's first row
    sizes = np.diff(np.r_[starts, m])
    nunit = starts.shape[0]
    rows, cols = np.divmod(flat, m)
    # rows ≤ cols: their levels too
    pairs, present = np.unique(unit[rows] * nunit + unit[cols], return_counts=True)
    del rows, cols
    unit_r, unit_c = np.divmod(pairs, nunit)
    count = sizes[unit_r] * sizes[unit_c]
    # a level with itself: its entries on and above the diagonal only
    whole = np.where(unit_r == unit_c, sizes[unit_r] * (sizes[unit_r] + 1) // 2, count)
    if np.array_equal(present, whole):  # closed already (the compact engine's patterns)
        return flat
    if count.sum() > 2 * limit:  # at most half of them lie below the diagonal
        return None
    pair = np.repeat(np.arange(pairs.shape[0]), count)
    within = np.arange(pair.shape[0]) - np.repeat(np.cumsum(count) - count, count)
    width = sizes[unit_c][pair]
    r = starts[unit_r][pair] + within // width
    c = starts[unit_c][pair] + within % width
    upper = r <= c
    return np.sort(r[upper] * m + c[upper])


def _flat_view(a: np.ndarray) -> tuple[np.ndarray | None, int, int]:
    """A read-only 1-d view of a 2-d array's memory from its first entry, and its steps in
    entries along rows and columns (entry (r, c) at ``r * step_r + c * step_c``); None where
    the strides are not positive multiples of the entry size."""
    size = a.itemsize
    step_r, step_c = (st // size for st in a.strides)
    if a.ndim != 2 or not a.size or min(a.strides) <= 0 or any(st % size for st in a.strides):
        return None, 0, 0
    extent = (a.shape[0] - 1) * step_r + (a.shape[1] - 1) * step_c + 1
    return (np.lib.stride_tricks.as_strided(a, shape=(extent,), strides=(size,),
                                            writeable=False), step_r, step_c)


@dataclass(frozen=True, eq=False)
class _KeyWeights:
    """K̃ at the rank update's keys (:class:`~lmeformula.pls.blocks.KeyWeights`), made a
    range of keys at a time from their flat positions: which lie inside block 2's first
    ``s`` rows and columns, and K̃ there, doubled off the diagonal. Nothing over every key
    is made or kept: on the 10⁵ x 2,000 crossed design the rows, columns and positions of
    all 1.75·10⁶ keys took 23 MB, kept by the fit, and K̃ at them 14 MB per gradient.

    Attributes
    ----------
    keys
        The rank update's keys: flat positions in block 2 (m x m), upper triangle.
    m
        Block 2's order.
    s
        The rows of block 2 inside A_s (random effects, and X for REML).
    k_at
        K̃ at rows i, columns j (a new array).
    counts
        The problem's count of keys inside, by s: structural, so counted once and kept
        there (the problem's dictionary, written by :attr:`count`).
    """

    keys: np.ndarray
    m: int
    s: int
    k_at: Callable[[np.ndarray, np.ndarray], np.ndarray]
    counts: dict[int, int]

    def _rows_cols(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols = np.divmod(self.keys[lo:hi], self.m)
        return (rows < self.s) & (cols < self.s), rows, cols

    @property
    def count(self) -> int:
        if self.s not in self.counts:
            n = self.keys.shape[0]
            self.counts[self.s] = sum(
                int(np.count_nonzero(self._rows_cols(lo, min(n, lo + WEIGHT_CHUNK))[0]))
                for lo in range(0, n, WEIGHT_CHUNK))
        return self.counts[self.s]

    def __call__(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        inside, rows, cols = self._rows_cols(lo, hi)
        i, j = rows[inside], cols[inside]
        k = self.k_at(i, j)
        k[i != j] *= 2.0  # the keys are the upper triangle
        return inside, k


def csr_order(rows: np.ndarray, cols: np.ndarray) -> np.ndarray | slice:
    """The order of distinct entries (rows, cols) by rows, then columns, as scipy's CSR
    stores them: ``slice(None)`` when they are in it already (the counted cross-products list
    G's entries so: taking them by a slice copies nothing, where a permutation of 10⁶ entries
    took four arrays of 8 MB at the setup's peak), else the permutation."""
    if rows.shape[0] < 2:
        return slice(None)
    step = np.diff(rows)
    if np.all(step >= 0) and np.all((step > 0) | (np.diff(cols) > 0)):
        return slice(None)
    return np.lexsort((cols, rows))


def _ascending_rows_times(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """aᵀ x, adding the rows' contributions in ascending row order from zero: the order in
    which the sparse product ``csr.T @ x`` adds them (entries it does not store add ±0,
    which leaves a sum that started at +0 unchanged), so the result is bit-identical."""
    out = np.zeros(a.shape[1])
    for i in range(a.shape[0]):
        out += a[i] * x[i]
    return out


# the dense engine's limit, for callers (the policy holds it)
DENSE_LIMIT = _policy_module.POLICY.dense_limit
