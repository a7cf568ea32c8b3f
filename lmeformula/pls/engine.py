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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from ..errors import FittingError, ModelFrameError
from .lapack import check_rx, cholesky_exact_fit, potrf
from .memory import check_dense_memory
from .plans import ZeroBlock, factor_block1, plan_block2, update_block2
from .policy import POLICY, BlockPolicy
from .terms import TermShape, lambda_template

__all__ = ["Factorization", "PLSProblem", "TermShape", "lambda_template"]


def _policy() -> BlockPolicy:
    """The engine's size thresholds (read at each use: tests swap ``POLICY``)."""
    return POLICY


@lru_cache(maxsize=64)
def _upper_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of an n x n upper triangle, row by row (read-only, cached)."""
    out = np.triu_indices(n)
    for a in out:
        a.flags.writeable = False
    return out


@lru_cache(maxsize=32)
def _lambda_pattern(terms: tuple[TermShape, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Λ's pattern for the engines (read-only, cached: refits and bootstraps repeat it):
    Λ'[rows, cols] = θ[lind], i.e. T[cols, rows] = θ[lind] for T = diag(Λ, I)."""
    idx, ptr, lind = lambda_template(terms)
    out = (idx, np.repeat(np.arange(ptr.shape[0] - 1), np.diff(ptr)), lind)
    for a in out:
        a.flags.writeable = False
    return out


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


def profiled_criterion(ldL2: float, ldRX2: float, pwrss: float, n: int, p: int, ldW: float,
                       REML: bool) -> float:
    """lme4's profiled criterion: REML ``ldL2 - ldW + ldRX2 + (n-p)(1 + log(2π pwrss/(n-p)))``
    or ML ``ldL2 - ldW + n(1 + log(2π pwrss/n))`` (with p = 0 the two coincide)."""
    # on Python floats with math.log (it runs once per evaluation); an exact fit (pwrss = 0)
    # or worse gets numpy's -inf or nan, as for arrays
    return float(_criterion(ldL2, ldRX2, pwrss, n, p, ldW, REML,
                            math.log if pwrss > 0.0 else np.log))


def profiled_criteria(ldL2: np.ndarray, ldRX2: np.ndarray, pwrss: np.ndarray, n: int, p: int,
                      ldW: float, REML: bool) -> np.ndarray:
    """:func:`profiled_criterion` for arrays of factorisations (or scalars)."""
    return _criterion(ldL2, ldRX2, pwrss, n, p, ldW, REML, np.log)


def _criterion(ldL2: Any, ldRX2: Any, pwrss: Any, n: int, p: int, ldW: float, REML: bool,
               log: Callable[[Any], Any]) -> Any:
    if REML:
        nmp = n - p
        return ldL2 - ldW + ldRX2 + nmp * (1.0 + log(2.0 * math.pi * pwrss / nmp))
    return ldL2 - ldW + n * (1.0 + log(2.0 * math.pi * pwrss / n))


@dataclass
class _AugmentedSystem:
    """The data of the augmented system [Z X y] with prior weights (shared by both engines).

    Parameters
    ----------
    Zt
        q x n random-effects matrix (lme4's order of terms).
    X
        n x p fixed-effects matrix.
    y
        Response minus offset.
    weights
        Prior weights or None.
    terms
        Shapes of the terms, in Zt's row order.
    """

    Zt: sp.csc_matrix
    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None
    terms: list[TermShape]
    n: int = field(init=False)
    p: int = field(init=False)
    q: int = field(init=False)
    m: int = field(init=False)
    ldW: float = field(init=False)

    def _weights(self) -> np.ndarray:
        """Set n, p, q and log|W|; return the weights (ones when none were given)."""
        self.n, self.p = self.X.shape
        self.q = self.Zt.shape[0]
        w = np.ones(self.n) if self.weights is None else np.asarray(self.weights, float)
        self.ldW = float(np.log(w).sum()) if self.weights is not None else 0.0
        return w

    @property
    def dense_order(self) -> int:
        """Order of the largest dense matrix factored per θ (the thread policy's measure)."""
        return self.m

    def criterion(self, f: Any, REML: bool) -> float:
        """lme4's profiled REML criterion or ML deviance (REML with p = 0 is ML)."""
        return profiled_criterion(f.ldL2, f.ldRX2, f.pwrss, self.n, self.p, self.ldW, REML)

    def factor(self, theta: np.ndarray) -> Any:
        raise NotImplementedError

    def deviance(self, theta: np.ndarray, REML: bool) -> tuple[float, Any]:
        """The criterion at ``theta`` and the factorisation behind it (None when the engine
        computed the criterion alone)."""
        f = self.factor(np.asarray(theta, dtype=float))
        return self.criterion(f, REML), f

    def deviances(self, thetas: np.ndarray, REML: bool) -> np.ndarray:
        """The criterion at each row of ``thetas``."""
        return np.array([self.deviance(th, REML)[0] for th in thetas])


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
        w = self._weights()
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
        self._cross_products(w)
        idx, ptr, lind = lambda_template(self.terms[1:])
        self._lam_r = (idx, ptr, lind)
        self._lam_r_size = qr
        self._prepare_downdate()

    def _cross_products(self, w: np.ndarray) -> None:
        """A11, G and M22 at case weights ``w`` (their structure is computed on the first call
        and reused: only the values depend on ``w`` and ``y``)."""
        xy = np.column_stack([self.X, self.y])
        xyw = xy * w[:, None]
        qr = self.q - self.q1
        if self._by_level:
            rows, cols, vals = self._cross_products_by_level(w, xy, xyw)
        else:
            rows, cols, vals = self._cross_products_sparse(w, xy, xyw)
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
        self.M22[qr:, qr:] = xy.T @ xyw

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

    def _cross_products_by_level(self, w: np.ndarray, xy: np.ndarray, xyw: np.ndarray,
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


def _level_cross(codes_s: np.ndarray, x_s: np.ndarray, nl_s: int, codes_t: np.ndarray,
                 x_t: np.ndarray, nl_t: int, w: np.ndarray) -> np.ndarray:
    """Z_s'WZ_t as a dense (nl_s·nc_s) x (nl_t·nc_t) array, rows level-major as in Zt."""
    nc_s, nc_t = x_s.shape[1], x_t.shape[1]
    key = codes_s.astype(np.int64) * nl_t + codes_t
    out = np.empty((nl_s, nc_s, nl_t, nc_t))
    for a in range(nc_s):
        wa = w * x_s[:, a]
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
                         codes_t: np.ndarray, x_t: np.ndarray, nl_t: int, w: np.ndarray,
                         plan: _PairStructure | None = None,
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
    else:
        out = np.empty((plan.present.shape[0], nc_s, nc_t))
        for a in range(nc_s):
            wa = w * x_s[:, a]
            for b in range(nc_t):
                out[:, a, b] = np.bincount(plan.inverse, weights=wa * x_t[:, b],
                                           minlength=plan.present.shape[0])
    rows = (level_s[:, None, None] * nc_s + np.arange(nc_s)[None, :, None]
            ).repeat(nc_t, axis=2)
    cols = (level_t[:, None, None] * nc_t + np.arange(nc_t)[None, None, :]
            ).repeat(nc_s, axis=1)
    return rows.ravel(), cols.ravel(), out.ravel()


def _levels_major(g: sp.csr_matrix, first: TermShape) -> np.ndarray:
    """Gᵀ dense, stored per level of the first term, (nl, nc, m), for batched products with
    T1's blocks."""
    m = g.shape[0]
    return np.ascontiguousarray(g.toarray().reshape(m, first.nl, first.nc).transpose(1, 2, 0))


def _check_reweight(w: Any, y: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Case weights and response for :meth:`reweight`, checked (new float arrays)."""
    w = np.array(w, dtype=float).ravel()
    y = np.array(y, dtype=float).ravel()
    if w.shape[0] != n or y.shape[0] != n:
        raise ModelFrameError(f"reweight: w and y must have length {n} (the number of "
                              f"observations), not {w.shape[0]} and {y.shape[0]}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ModelFrameError("reweight: weights must be finite and non-negative")
    if not np.all(np.isfinite(y)):
        raise ModelFrameError("reweight: the response must be finite")
    return w, y


def _log_det_weights(w: np.ndarray) -> float:
    """log|W| = Σ log w (minus infinity with a zero weight, as for prior weights)."""
    with np.errstate(divide="ignore"):
        return float(np.log(w).sum())


def _level_blocks(codes: np.ndarray, x: np.ndarray, nl: int, w: np.ndarray) -> np.ndarray:
    """Z_i'WZ_i's diagonal blocks: (nl, nc, nc) sums of w x_a x_b per level."""
    nc = x.shape[1]
    out = np.empty((nl, nc, nc))
    for a in range(nc):
        for b in range(a, nc):
            out[:, a, b] = out[:, b, a] = np.bincount(codes, weights=w * x[:, a] * x[:, b],
                                                      minlength=nl)
    return out


def _level_sums(codes: np.ndarray, values: np.ndarray, nl: int) -> np.ndarray:
    """Sums of each column of ``values`` per level: (nl, ncol)."""
    return np.column_stack([np.bincount(codes, weights=values[:, a], minlength=nl)
                            for a in range(values.shape[1])])



def _group_grams(gc: sp.csc_matrix, sorted_group: np.ndarray, ngroups: int, m: int,
                 keys: np.ndarray, panel: int = 2048) -> np.ndarray:
    """C for the downdate when the pairs are too many to list (scalar first term): column
    g holds, at the keys, the Gram matrix G_g G_gᵀ of the levels in group g (their columns
    of G, consecutive in ``gc``), formed by dsyrk over dense panels of at most ``panel``
    levels. Per θ the downdate is then one dense matrix-vector product with the groups'
    B (the 10⁴ x 10³ crossed design: 10⁸ pairs, ~70 groups of equal counts)."""
    rows, cols = np.divmod(keys, m)
    out = np.empty((keys.shape[0], ngroups))
    starts = np.searchsorted(sorted_group, np.arange(ngroups + 1))
    for grp in range(ngroups):
        gram = np.zeros((m, m), order="F")
        for lo in range(starts[grp], starts[grp + 1], panel):
            hi = min(lo + panel, starts[grp + 1])
            dense = np.asfortranarray(gc[:, lo:hi].toarray())
            gram = la.blas.dsyrk(1.0, dense, beta=1.0, c=gram, lower=0, overwrite_c=1)
        out[:, grp] = gram[rows, cols]  # keys lie on or above the diagonal
    return out


def _downdate_pattern(g: sp.csr_matrix, nc: int, nl: int, m: int, level_group: np.ndarray,
                      ngroups: int, key_order: Callable[[np.ndarray], np.ndarray] | None = None,
                      sources: bool = False,
                      ) -> tuple[np.ndarray, sp.csr_matrix | np.ndarray | None,
                                 tuple[np.ndarray, np.ndarray] | None]:
    """The entries (i <= j) of G B Gᵀ that can be non-zero, and a matrix C with
    ``(G B Gᵀ)[keys] = C @ vec(B_groups)``: each row sums, over the levels l and column pairs
    (a, b) of the first term, G[i, (l,a)] G[j, (l,b)] B_l[a, b], where levels in the same
    group (``level_group``) have the same B_l and share a column. Formed once; per θ the
    downdate is one sparse matrix-vector product. ``key_order`` (optional) orders the
    distinct keys (a permutation of them); by default they are sorted. ``sources`` (one
    level per group only): also return, for each stored entry of C, the positions in
    ``g.data`` of its two factors, so that C's values follow new values of G."""
    # levels in group order, so that the pairs come out sorted by their column (group)
    by_group = np.argsort(level_group, kind="stable")
    sorted_group = level_group[by_group]
    perm = (by_group[:, None] * nc + np.arange(nc)).ravel()
    gc = g.tocsc()[:, perm]
    gc.sort_indices()
    src = None
    if sources:  # the same reordering applied to the positions of g's entries
        gi = sp.csr_matrix((np.arange(1, g.nnz + 1, dtype=float), g.indices, g.indptr),
                           shape=g.shape).tocsc()[:, perm]
        gi.sort_indices()
        src = gi.data.astype(np.int64) - 1
    seg = gc.indptr[::nc].astype(np.int64)  # level l's entries: seg[l]:seg[l + 1]
    k = np.diff(seg)
    # nc == 1: rows are sorted within a level, so only pairs (e, f) with e <= f are needed
    total = int((k * (k + 1) // 2).sum()) if nc == 1 else int((k * k).sum())
    if total > _policy().max_pairs or total == 0:
        # the pattern of G Gᵀ from G's pattern (ones: no cancellation), not its values
        ones = sp.csr_matrix((np.ones(g.nnz), g.indices, g.indptr), shape=g.shape)
        gbg = (ones @ ones.T).tocoo()
        upper = gbg.row <= gbg.col
        keys = np.unique(gbg.row[upper].astype(np.int64) * m + gbg.col[upper])
        if key_order is not None:
            keys = keys[key_order(keys)]
        if (nc == 1 and total and not sources
                and keys.shape[0] * ngroups <= _policy().max_group_grams):
            return keys, _group_grams(gc, sorted_group, ngroups, m, keys), None
        return keys, None, None
    # 32-bit indices where they fit: this is memory-bound work on ~total entries
    small = m * m < 2**31 and gc.nnz < 2**31
    index: type[np.signedinteger[Any]] = np.int32 if small else np.int64
    rows = gc.indices.astype(index)
    entry_level = np.repeat(np.arange(nl, dtype=index), k)
    if nc == 1:
        # pair (e, f) for each entry e and each later entry f of its level: e's row, value
        # and group repeated, f's gathered
        entries = np.arange(rows.shape[0], dtype=index)
        count = seg[1:][entry_level] - entries  # partners at or after each entry
        first = (np.cumsum(count) - count).astype(index)
        r = np.arange(total, dtype=index)
        r -= np.repeat(first - entries, count)
        col = np.repeat(sorted_group.astype(index)[entry_level], count)
        key = np.repeat(rows, count) * index(m)
        key += rows[r]
        values = np.repeat(gc.data, count) * gc.data[r]
        p = np.repeat(entries, count)
    else:
        level = np.repeat(np.arange(nl, dtype=np.int64), k * k)
        first = np.repeat(np.cumsum(k * k) - k * k, k * k)
        t = np.arange(total, dtype=np.int64) - first
        kk = k[level]
        p = seg[level] + t // kk
        r = seg[level] + t % kk
        keep = rows[p] <= rows[r]
        p, r, level = p[keep], r[keep], level[keep]
        entry_col = np.repeat(np.arange(gc.shape[1]), np.diff(gc.indptr)) % nc
        col = sorted_group[level] * nc * nc + entry_col[p] * nc + entry_col[r]
        order = np.argsort(col, kind="stable")
        p, r, col = p[order], r[order], col[order]
        key = rows[p] * index(m)
        key += rows[r]
        values = gc.data[p] * gc.data[r]
    keys, key_index = _index_keys(key, m, key_order)
    # col is non-decreasing, and building CSR keeps each row's entries in that order, so
    # that the duplicates (a key met by several levels of one group) are summed in it
    ncol = ngroups * nc * nc
    pairs = sp.csr_matrix((values, (key_index, col)),
                          shape=(keys.shape[0], ncol))
    pairs.sum_duplicates()
    if src is None:
        return keys, pairs, None
    # one level per group: no duplicates, and C's entries are in (key, column) order
    order = np.lexsort((col, key_index))
    if order.shape[0] != pairs.nnz:
        raise AssertionError("duplicate entries in an ungrouped downdate plan")
    return keys, pairs, (src[p[order]], src[r[order]])


def _index_keys(key: np.ndarray, m: int,
                key_order: Callable[[np.ndarray], np.ndarray] | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys (sorted, or in ``key_order`` of the sorted ones) and each key's
    position among them (a table when m² is small)."""
    if m * m <= _policy().key_table:
        present = np.zeros(m * m, dtype=bool)
        present[key] = True
        keys = np.flatnonzero(present)
        if key_order is None:
            position = np.cumsum(present, dtype=key.dtype)
            position -= 1
            return keys, position[key]
        order = key_order(keys)
        position = np.empty(m * m, dtype=key.dtype)
        position[keys[order]] = np.arange(order.shape[0], dtype=key.dtype)
        return keys[order], position[key]
    keys, inverse = np.unique(key, return_inverse=True)
    if key_order is not None:
        order = key_order(keys)
        rank = np.empty_like(inverse, shape=order.shape)
        rank[order] = np.arange(order.shape[0], dtype=rank.dtype)
        return keys[order], rank[inverse]
    keys, inverse = np.unique(key, return_inverse=True)
    return keys, inverse


@dataclass(slots=True)
class DenseFactorization:
    """The Cholesky factor of the whole augmented system (small models): L is its lower
    triangle (the strict upper triangle of the array is left as LAPACK found it)."""

    theta: np.ndarray
    L: np.ndarray
    ldL2: float
    ldRX2: float
    pwrss: float


@dataclass
class DensePLSProblem(_AugmentedSystem):
    """The same system as :class:`PLSProblem` factored as one dense matrix.

    For small models (sleepstudy: 39 x 39) a single LAPACK call on the whole augmented matrix
    costs less than the blocked algorithm's many small steps; the results are identical up
    to round-off. Cross-products are formed once; per θ: T'MT with T = diag(Λ, I), + I, and
    one Cholesky.
    """

    def __post_init__(self) -> None:
        w = self._weights()
        q, self.m = self.q, self.q + self.p + 1
        self._gram(None if self.weights is None else w)
        self._lambda_pattern = _lambda_pattern(tuple(self.terms))
        self._log_parts = np.array([0, q])
        self._quadratic: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._form_sources: tuple[np.ndarray, np.ndarray, int] | None = None
        self._quadratic_form()
        if self._quadratic is None:
            self._products_by_term()

    def _gram(self, w: np.ndarray | None) -> None:
        """M = [Z X y]'W[Z X y] and what is read off its diagonal."""
        q = self.q
        design = np.empty((self.n, self.m))
        design[:, :q] = self.Zt.toarray().T
        design[:, q:-1] = self.X
        design[:, -1] = self.y
        self.M = design.T @ (design if w is None else design * w[:, None])
        self._xtx_diag = np.diag(self.M)[q : q + self.p].copy()
        self._rx_floor = 1e-13 * np.maximum(self._xtx_diag, np.finfo(float).tiny)
        self._rx_sqrt_floor = np.sqrt(self._rx_floor)

    def reweight(self, w: np.ndarray, y: np.ndarray) -> None:
        """Replace the case weights and the response (see :meth:`PLSProblem.reweight`): M
        and the quadratic form's values are recomputed; its pattern is kept."""
        w, y = _check_reweight(w, y, self.n)
        self.weights, self.y = w, y
        self.ldW = _log_det_weights(w)
        self._gram(w)
        if self._quadratic is not None and self._form_sources is not None:
            pa, pb, forms, pos = self._quadratic
            index, gather, q = self._form_sources
            values = np.concatenate([self.M.ravel()[gather], np.ones(q)])
            forms = np.bincount(index, weights=values, minlength=forms.size).reshape(forms.shape)
            self._quadratic = (pa, pb, forms, pos)

    def _products_by_term(self) -> None:
        """What T'MT needs when it is formed by products with Λ (no small quadratic form).

        T = diag(Λ, I) with Λ = ⊕ I_nl ⊗ λ_k: scalar terms scale their rows and columns by θ
        (one outer product for all of them); vector terms multiply each level's nc rows and
        columns by λ_k (one batched product per side), so no m x m product is needed."""
        scalar = [t for t in self.terms if t.nc == 1]
        pos = np.cumsum([0] + [t.size for t in self.terms])
        self._scalar_cols = np.concatenate(
            [np.arange(pos[i], pos[i + 1]) for i, t in enumerate(self.terms) if t.nc == 1]
            + [np.zeros(0, np.int64)]).astype(np.int64)
        self._scalar_theta = np.concatenate(
            [np.full(t.nl, t.theta_offset) for t in scalar] + [np.zeros(0, np.int64)]
        ).astype(np.int64)
        self._vector_terms = [(int(pos[i]), int(pos[i + 1]), t) for i, t in enumerate(self.terms)
                              if t.nc > 1]
        self._diag_z = np.arange(self.q) * (self.m + 1)  # flat positions of the Z diagonal

    def _quadratic_form(self) -> None:
        """T'MT + diag(I_q, 0) as a quadratic form in c = (1, θ), when that is small.

        T = diag(Λ, I) is linear in θ: T[u, v] = c_{k(u,v)} on its pattern. Then
        (T'MT)[v, v'] = Σ c_k c_k' M[u, u'] over the pattern entries (u, v) and (u', v'), so
        T'MT + diag(I_q, 0) = Σ_{a ≤ b} c_a c_b Q_ab with constant Q_ab, formed once at the
        entries on or above the diagonal that any of them reaches. Per θ the matrix is one
        small matrix-vector product (sleepstudy: 10 pairs x 168 entries) instead of several
        products with Λ."""
        q, m = self.q, self.m
        rows, cols, lind = self._lambda_pattern
        k = sum(t.nc * (t.nc + 1) // 2 for t in self.terms)
        npairs = (k + 1) * (k + 2) // 2
        if npairs * (q + 1) > _policy().max_quadratic:
            return  # not small even if only the diagonal were reached
        xy = np.arange(q, m)
        t_rows = np.concatenate([rows, xy])  # T[t_cols, t_rows] = c[t_coef]
        t_cols = np.concatenate([cols, xy])
        t_coef = np.concatenate([lind + 1, np.zeros(m - q, np.int64)])
        value = self.M[np.ix_(t_cols, t_cols)]
        # M's structural pattern (Z'Z's from Zt's, the rest full), not its values: weights
        # changed later (re-weighting) keep the pattern
        zb = sp.csr_matrix(self.Zt, copy=True)
        zb.data = np.ones_like(zb.data)
        structure = np.ones((m, m), dtype=bool)
        structure[:q, :q] = (zb @ zb.T).toarray() > 0
        i, j = np.nonzero((t_rows[:, None] <= t_rows[None, :])
                          & structure[np.ix_(t_cols, t_cols)])
        gather = t_cols[i] * m + t_cols[j]
        value = value[i, j]
        a = np.minimum(t_coef[i], t_coef[j])
        b = np.maximum(t_coef[i], t_coef[j])
        pair = np.concatenate([a * (2 * k + 3 - a) // 2 + (b - a), np.zeros(q, np.int64)])
        pos = np.concatenate([t_rows[i] * m + t_rows[j], np.arange(q) * (m + 1)])
        value = np.concatenate([value, np.ones(q)])
        reached = np.zeros(m * m, dtype=bool)
        reached[pos] = True
        entries = np.flatnonzero(reached)
        if npairs * entries.shape[0] > _policy().max_quadratic:
            return
        where = np.cumsum(reached) - 1
        index = where[pos] * npairs + pair
        forms = np.bincount(index, weights=value, minlength=entries.shape[0] * npairs)
        self._form_sources = (index, gather, q)
        pa, pb = _upper_pairs(k + 1)  # pair index a(2k+3-a)/2 + (b-a) in this order
        self._quadratic = (pa, pb, forms.reshape(entries.shape[0], npairs), entries)
        self._c = np.ones(k + 1)

    def deviances(self, thetas: np.ndarray, REML: bool) -> np.ndarray:
        """The criterion at each row of ``thetas`` (one batched computation)."""
        s = self._scaled_batch(thetas)  # upper triangles
        if s.shape[0] == 1:
            lfac, info = la.lapack.dpotrf(s[0].T, lower=1, clean=0, overwrite_a=1)
            d = lfac.diagonal()[None, :]
        else:
            try:  # numpy's Cholesky reads the lower triangle: that of the transposes
                d = np.diagonal(np.linalg.cholesky(np.swapaxes(s, 1, 2)), axis1=1, axis2=2)
                info = 0
            except np.linalg.LinAlgError:
                info = 1
        if info != 0:  # not positive definite, or an exact fit: the careful path decides
            return np.array([self.criterion(self.factor(th), REML) for th in thetas])
        q, p = self.q, self.p
        rx = d[:, q : q + p]
        if (rx * rx <= self._rx_floor).any():
            raise FittingError("Downdated VtV is not positive definite")
        logs = np.log(d)
        ld_l2 = 2.0 * logs[:, :q].sum(axis=1)
        ld_rx2 = 2.0 * logs[:, q : q + p].sum(axis=1)
        return profiled_criteria(ld_l2, ld_rx2, d[:, -1] ** 2, self.n, self.p, self.ldW, REML)

    def _scaled_batch(self, thetas: np.ndarray) -> np.ndarray:
        """T'MT + diag(I_q, 0) for each row of ``thetas``: (B, m, m), upper triangles (one
        product for all of them by the quadratic form; else θ by θ)."""
        if self._quadratic is None:
            return np.stack([self._scaled(theta) for theta in thetas])
        pa, pb, forms, pos = self._quadratic
        nb, m = thetas.shape[0], self.m
        c = np.ones((nb, self._c.shape[0]))
        c[:, 1:] = thetas
        s = np.zeros((nb, m * m))
        s[:, pos] = (c[:, pa] * c[:, pb]) @ forms.T
        return s.reshape(nb, m, m)

    def _scaled(self, theta: np.ndarray) -> np.ndarray:
        """T'MT + diag(I_q, 0): the augmented matrix at θ (a new C-order array; only the
        upper triangle when it comes from the quadratic form)."""
        if self._quadratic is not None:
            pa, pb, forms, pos = self._quadratic
            c = self._c
            c[1:] = theta
            s = np.zeros((self.m, self.m))
            s.ravel()[pos] = forms @ (c[pa] * c[pb])
            return s
        if self._scalar_cols.size:
            c = np.ones(self.m)
            c[self._scalar_cols] = theta[self._scalar_theta]
            s = self.M * c[:, None]  # rows first, then columns: the order of (T'M)T
            s *= c
        else:
            s = self.M.copy()
        m = self.m
        lams = [t.lower_factor(theta) for _, _, t in self._vector_terms]
        for (lo, hi, t), lam in zip(self._vector_terms, lams, strict=True):
            s[lo:hi] = (lam.T @ s[lo:hi].reshape(t.nl, t.nc, m)).reshape(hi - lo, m)
        for (lo, hi, t), lam in zip(self._vector_terms, lams, strict=True):
            s[:, lo:hi] = (s[:, lo:hi].reshape(m * t.nl, t.nc) @ lam).reshape(m, hi - lo)
        s.ravel()[self._diag_z] += 1.0
        return s

    def factor(self, theta: np.ndarray) -> DenseFactorization:
        theta = np.array(theta, dtype=float)  # a copy (see PLSProblem.factor)
        # s is symmetric: factoring its transpose in place leaves L in the lower triangle
        # (the upper one keeps s: only the lower triangle of L is ever read)
        lfac, info = la.lapack.dpotrf(self._scaled(theta).T, lower=1, clean=0, overwrite_a=1)
        if info != 0:  # dpotrf overwrote its input: form it again to diagnose
            lfac = cholesky_exact_fit(self._scaled(theta))
        d = lfac.diagonal()
        q, p = self.q, self.p
        if p == 0:
            return DenseFactorization(theta, lfac, 2.0 * float(np.log(d[:q]).sum()), 0.0,
                                      float(d[-1]) ** 2)
        if (d[q : q + p] <= self._rx_sqrt_floor).any():  # pivots of RX (positive)
            raise FittingError("Downdated VtV is not positive definite")
        # log|L|² and log|RX|²: the sums of the logs of the two parts of the diagonal
        ld_l2, ld_rx2 = np.add.reduceat(np.log(d[: q + p]), self._log_parts).tolist()
        return DenseFactorization(theta, lfac, 2.0 * ld_l2, 2.0 * ld_rx2, float(d[-1]) ** 2)

    has_gradient = True

    def gradient(self, f: DenseFactorization, REML: bool) -> np.ndarray:
        """The criterion's gradient in θ at ``f``, analytically.

        With A = T'MT + E (E = I on the random effects) and D_k = ∂T/∂θ_k, so that
        ∂A = D_k'MT + T'MD_k: ∂ log|A_s| = 2 tr(A_s⁻¹ (T'MD_k)_s), where s is the random
        effects and X for REML (log|L|² + log|RX|²) and the random effects alone for ML; and
        ∂pwrss = w'(∂A)w = 2 (D_k w)'(MTw) with w = [-Ω⁻¹a; 1] the solution extended by the
        response (pwrss is a minimum over w's first part, so only A's change counts).
        """
        q, p, m = self.q, self.p, self.m
        theta = f.theta
        s = q + p if REML else q
        rows, cols, lind = self._lambda_pattern
        t = np.eye(m)
        t[cols, rows] = theta[lind]  # T = diag(Λ, I); Λ[c, r] is Λ'[r, c]
        # A_s⁻¹ (T'M)[s, Z] by two solves with A_s's factor, the leading block of L (numpy's
        # solver: scipy's dpotrs wakes OpenBLAS's threads, which costs ms at these sizes)
        ls = np.tril(f.L[:s, :s])
        cn = np.linalg.solve(ls.T, np.linalg.solve(ls, t[:, :s].T @ self.M[:, :q]))
        k = theta.shape[0]
        g_logdet = 2.0 * np.bincount(lind, weights=cn[rows, cols], minlength=k)
        beta, u = self.solve(f)
        w = np.concatenate([-u, -beta, [1.0]])
        h = self.M @ (t @ w)
        g_pwrss = 2.0 * np.bincount(lind, weights=w[rows] * h[cols], minlength=k)
        scale = (self.n - p) if REML else self.n
        return g_logdet + scale * g_pwrss / f.pwrss

    def solve(self, f: DenseFactorization) -> tuple[np.ndarray, np.ndarray]:
        # L' [u; β] = the y row of L, by LAPACK's triangular solve (L is F-ordered)
        sol, info = la.lapack.dtrtrs(f.L[:-1, :-1], f.L[-1, :-1], lower=1, trans=1)
        if info != 0:
            raise FittingError("singular factor in the solution")
        return sol[self.q :], sol[: self.q]

    def sparse_L(self, f: DenseFactorization) -> sp.csc_matrix:
        out = sp.csc_matrix(np.tril(f.L[: self.q, : self.q]))
        out.eliminate_zeros()
        return out

    def rzx_rx(self, f: DenseFactorization) -> tuple[np.ndarray, np.ndarray]:
        q, p = self.q, self.p
        return f.L[q : q + p, :q].T.copy(), np.triu(f.L[q : q + p, q : q + p].T)

    def inverse_diagonal_blocks(self, f: DenseFactorization) -> list[np.ndarray]:
        linv = la.solve_triangular(f.L[: self.q, : self.q], np.eye(self.q), lower=True,
                                   check_finite=False)
        kinv = linv.T @ linv
        out, pos = [], 0
        for t in self.terms:
            blk = np.empty((t.nl, t.nc, t.nc))
            for lev in range(t.nl):
                sl = slice(pos + lev * t.nc, pos + (lev + 1) * t.nc)
                blk[lev] = kinv[sl, sl]
            pos += t.size
            out.append(blk)
        return out



# the dense engine's limit, for callers (the policy holds it)
DENSE_LIMIT = POLICY.dense_limit


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
