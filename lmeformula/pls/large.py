"""The blocked engine for a large block 2 of scalar terms: one dense m x m matrix per θ.

When every term after the first is a scalar term (``(1 | item)``), each term's block of
M22 = [Z₂ X y]'W[Z₂ X y] with itself is diagonal (one level per observation), and its blocks
with the other terms are as sparse as the pairs of levels that occur. The blocked engine
(:class:`~lmeformula.pls.engine.PLSProblem`) holds M22 dense and assembles block 2's
S = Λ₂'(M22 - G B Gᵀ)Λ₂ + I into a second dense array; with 3·10⁴ items (the issue's
``(1 | subj) + (1 | item)`` design, 10⁵ x 3·10⁴ levels, 10⁶ rows) each is 7.2 GB, and the
sparse products that formed M22 made a third.

Here M22 is kept as what it is: the terms' diagonals, their cross-term entries at the pairs of
levels that occur, the border Z₂'W[X y] and the corner [X y]'W[X y]. Per θ, S is assembled
into the one dense array that LAPACK then factors in place (its upper triangle zero-filled,
the scaled entries scattered, the downdate subtracted at its keys, the identity added: the
same products and sums, in the same order, as :func:`~lmeformula.pls.plans.update_block2`
computes from a dense M22), and nothing else of that size is made: the solutions and
inverses after the fit use triangular solves on the whole factor (BLAS reads it in place;
a slice of it would be copied). The deviance function does not keep a second factor for the
best point (:attr:`LargeBlockPLSProblem.holds_one_factor`).

Why a dense factor and not a sparse one: the item block's Schur complement after eliminating
the subjects, Λ₂'(M22 - G B Gᵀ)Λ₂ + I, connects two items whenever a subject met both. On a
uniform random design (10 rows per subject, ~33 per item) each item meets ~300 others (1 % of
them at 3·10⁴ items), a random graph whose separators are a large fraction of its vertices,
so that a fill-reducing ordering leaves its factor nearly dense (measured with CHOLMOD's
supernodal AMD ordering in ``benchmarks/PROFILING.md``); a dense ``dpotrf`` then does the
same flops at BLAS-3 speed, with no symbolic work.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from ..errors import FittingError
from .crossprod import (
    _level_blocks,
    _level_cross_entries,
    _level_sums,
    _pair_structure,
    _PairStructure,
)
from .engine import Factorization, PLSProblem
from .lapack import check_rx
from .plans import Block2Plan, ZeroBlock
from .system import _policy
from .terms import TermShape

__all__ = ["CompactDiagonalBlock", "LargeBlockPLSProblem", "large_block"]


def large_block(terms: list[TermShape], p: int, has_factors: bool) -> bool:
    """Whether a model gets :class:`LargeBlockPLSProblem`: every term after the first is
    scalar, the terms' level codes are given (the cross-products are counted), and block 2's
    order reaches :attr:`~lmeformula.pls.policy.BlockPolicy.compact_m22_order`."""
    if not has_factors or len(terms) < 2 or any(t.nc != 1 for t in terms[1:]):
        return False
    order = sum(t.size for t in terms[1:]) + p + 1
    return order >= _policy().compact_m22_order


@dataclass(frozen=True, slots=True)
class CompactDiagonalBlock:
    """M22 of scalar terms without its zeros, and S's assembly per θ into one dense array.

    Attributes
    ----------
    plan
        Block 2's rectangles (:func:`~lmeformula.pls.plans.plan_block2`): all scalar, so each
        is scaled by a constant λ_a λ_b, and a term's diagonal block is a ``ZeroBlock``.
    keys
        Where the rank update by block 1 lands (flat positions of S, ordered by pair of blocks).
    diagonal
        (block, flat position, value) of the terms' diagonals (the zero-filled blocks').
    entries
        (block of the row, block of the column, flat position, value) of M22's upper triangle
        outside the terms' diagonal blocks: the cross-term pairs of levels that occur, the
        border Z₂'W[X y] and the corner, ordered by position.
    xx_diagonal
        M22's diagonal on X's rows (lme4's rank check).
    """

    plan: Block2Plan
    keys: np.ndarray
    diagonal: tuple[np.ndarray, np.ndarray, np.ndarray]
    entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    xx_diagonal: np.ndarray

    def assemble(self, theta: np.ndarray, down: np.ndarray,
                 out: np.ndarray | None = None) -> np.ndarray:
        """S = Λ₂'(M22 - D)Λ₂ + I, its upper triangle in a C-order array (``out``, m x m,
        else a new one; the strict lower triangle is not written: LAPACK reads the
        transpose's lower triangle), from the stored entries: every entry the product or sum
        that :func:`~lmeformula.pls.plans.update_block2` forms from a dense M22 (``down``:
        the rank update D at the keys, overwritten)."""
        plan = self.plan
        m = plan.m
        scale = np.asarray(plan.scales(theta))
        s = np.empty((m, m)) if out is None else out
        band = _policy().band
        for lo in range(0, m, band):  # zero-fill the upper triangle, band by band
            s[lo : lo + band, lo:] = 0.0
        flat = s.ravel()
        row_block, col_block, at, values = self.entries
        flat[at] = values * (scale[row_block] * scale[col_block])
        for seg in plan.segments:  # the rank downdate, scaled as its block is
            part, pos = down[seg.span], self.keys[seg.span]
            a, b = seg.kind.a, seg.kind.b
            part *= -(scale[a] * scale[b])
            if isinstance(seg.kind, ZeroBlock):  # a term's diagonal block: M22 is zero there
                flat[pos] = part
            else:
                flat[pos] += part
        block_of, positions, diag_values = self.diagonal
        if block_of.size:
            d = scale[block_of]
            flat[positions] += diag_values * (d * d)
        flat[: plan.qr * (m + 1) : m + 1] += 1.0  # inflate: + I on the random effects
        return s

    @staticmethod
    def factor(s: np.ndarray) -> tuple[np.ndarray, int]:
        """Factor an assembled S in place (LAPACK reads the transpose's lower triangle)."""
        lfac, info = la.lapack.dpotrf(s.T, lower=1, clean=0, overwrite_a=1)
        return lfac, int(info)

    def reweighted(self, entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                   diagonal_values: np.ndarray, xx_diagonal: np.ndarray,
                   ) -> CompactDiagonalBlock:
        """The same block at new cross-products (same pattern)."""
        block_of, positions, _ = self.diagonal
        return replace(self, entries=entries, diagonal=(block_of, positions, diagonal_values),
                       xx_diagonal=xx_diagonal)


@dataclass
class LargeBlockPLSProblem(PLSProblem):
    """The blocked engine with M22 compact (see the module docstring): scalar terms after the
    first, cross-products counted from the terms' level codes (``factors``, required).

    Everything the per-θ factorisation computes is what :class:`PLSProblem` computes (the same
    products and sums: the criterion is bit-identical); what differs is the storage (no dense
    M22, one dense array per θ) and how the solutions after the fit read the factor. The
    analytic gradient is not offered (it needs block 2's inverse, a second dense array and
    twice the flops of the factorisation).
    """

    _entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = field(
        init=False, repr=False)
    _diag_values: np.ndarray = field(init=False, repr=False)
    _xx_diag: np.ndarray = field(init=False, repr=False)
    _cross_plans: dict[tuple[int, int], _PairStructure] = field(
        init=False, repr=False, default_factory=dict)
    _compact: CompactDiagonalBlock = field(init=False, repr=False)
    # the m x m array of the last factor, reused once that factor is gone: a new array of
    # 7.2 GB per θ costs the kernel's zeroing of its pages (and compaction, for huge pages),
    # 1.7 s of system time per 0.65 GB at worst, measured under memory pressure
    _buffer: np.ndarray | None = field(init=False, repr=False, default=None)
    _buffer_owner: weakref.ref[Factorization] | None = field(init=False, repr=False,
                                                              default=None)

    # the deviance function keeps no factor but the current one (each is m x m)
    holds_one_factor = True

    def _cross_products(self, w: np.ndarray | None) -> None:
        """A11, G (sparse, its structural pattern) and M22's stored parts at case weights
        ``w``, all by counting per pair of levels; the patterns are found on the first call."""
        assert self.factors is not None, "the compact engine counts from the level codes"
        w = None if self.weights is None else w
        first, rest = self.terms[0], self.terms[1:]
        (codes1, x1), others = self.factors[0], self.factors[1:]
        nl1, p, m = first.nl, self.p, self.m
        qr = self.q - self.q1
        xy = np.column_stack([self.X, self.y])
        # [X y]'W[X y] by gemm, as PLSProblem forms it (the same last digits)
        corner = xy.T @ (xy.copy() if w is None else xy * w[:, None])
        del xy
        columns = [np.asarray(self.X[:, j], dtype=float) for j in range(p)] + [
            np.asarray(self.y, dtype=float)]
        xyw = columns if w is None else [c * w for c in columns]
        if self._g_plan is None:
            self._g_plan = [_pair_structure(codes, t.nl, codes1, nl1)
                            for t, (codes, _) in zip(rest, others, strict=True)]
        self.A11 = _level_blocks(codes1, x1, nl1, w)
        edges = self._block_edges
        g_rows, g_cols, g_vals = [], [], []
        e_rows, e_cols, e_vals = [], [], []
        diag = np.empty(qr)
        for i, (t, (codes, x), plan) in enumerate(zip(rest, others, self._g_plan,
                                                      strict=True)):
            pos = int(edges[i])
            r, c, v = _level_cross_entries(codes, x, t.nl, codes1, x1, nl1, w, plan)
            g_rows.append(r + pos)
            g_cols.append(c)
            g_vals.append(v)
            diag[pos : pos + t.size] = _level_blocks(codes, x, t.nl, w)[:, 0, 0]
            for j in range(i + 1, len(rest)):  # the cross-term blocks, at the pairs met
                u = rest[j]
                codes_u, x_u = others[j]
                cplan = self._cross_plans.get((i, j))
                if cplan is None:
                    cplan = self._cross_plans[(i, j)] = _pair_structure(
                        codes, t.nl, codes_u, u.nl)
                r, c, v = _level_cross_entries(codes, x, t.nl, codes_u, x_u, u.nl, w, cplan)
                e_rows.append(r + pos)
                e_cols.append(c + int(edges[j]))
                e_vals.append(v)
            levels = np.arange(pos, pos + t.size, dtype=np.int64)
            for k in range(p + 1):  # the border Z_t'W[X y]
                e_rows.append(levels)
                e_cols.append(np.full(t.size, qr + k, dtype=np.int64))
                e_vals.append(_level_sums(codes, x, t.nl, xyw[k]).ravel())
        upper = np.triu_indices(p + 1)
        e_rows.append(upper[0] + qr)
        e_cols.append(upper[1] + qr)
        e_vals.append(corner[upper])
        rows = np.concatenate(e_rows).astype(np.int64, copy=False)
        cols = np.concatenate(e_cols).astype(np.int64, copy=False)
        at = rows * m + cols
        order = np.argsort(at, kind="stable")  # scattered in memory order
        owner = np.repeat(np.arange(len(edges) - 1), np.diff(edges))
        self._entries = (owner[rows[order]], owner[cols[order]], at[order],
                         np.concatenate(e_vals)[order])
        self._diag_values = diag
        self._xx_diag = np.diag(corner)[:p].copy()
        xy_rows = np.stack([_level_sums(codes1, x1, nl1, xyw[k]).ravel()
                            for k in range(p + 1)])
        r, c = np.indices(xy_rows.shape).reshape(2, -1)  # every level meets X and y
        g_rows.append(r + qr)
        g_cols.append(c)
        g_vals.append(xy_rows.ravel())
        self._set_g(np.concatenate(g_rows).astype(np.int64, copy=False),
                    np.concatenate(g_cols).astype(np.int64, copy=False),
                    np.concatenate(g_vals))

    def _set_g(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """G (m x q₁, CSR) from its entries, in the order :class:`PLSProblem` builds it."""
        if self._g_order is None:
            self._g_order = np.lexsort((cols, rows))
            indptr = np.zeros(self.m + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=self.m), out=indptr[1:])
            self.G = sp.csr_matrix((vals[self._g_order], cols[self._g_order], indptr),
                                   shape=(self.m, self.q1))
        else:
            old = self.G
            self.G = sp.csr_matrix((vals[self._g_order], old.indices, old.indptr),
                                   shape=old.shape)

    def _make_blocks(self) -> None:
        """Blocks 1 and 2 against 1 as :class:`PLSProblem` makes them; block 2 compact."""
        keys, plan = self._typed_blocks()
        qr = self.q - self.q1
        edges = self._block_edges
        owner = np.repeat(np.arange(len(edges) - 1), np.diff(edges))[:qr].astype(np.int64)
        rows = np.arange(qr, dtype=np.int64)
        self._compact = CompactDiagonalBlock(plan, keys, (owner, rows * (self.m + 1),
                                                          self._diag_values),
                                             self._entries, self._xx_diag)

    def reweight(self, w: np.ndarray, y: np.ndarray) -> None:
        """New case weights and response: the cross-products' values recomputed in place
        (see :meth:`PLSProblem.reweight`)."""
        self._reweight_first_blocks(w, y)
        self._compact = self._compact.reweighted(self._entries, self._diag_values,
                                                 self._xx_diag)

    def factor(self, theta: np.ndarray) -> Factorization:
        """Factor the augmented system at ``theta`` (:meth:`PLSProblem.factor`'s steps),
        block 2 assembled into one array and factored in place: the array of the last factor
        when that factor is gone (a factor's arrays are valid while it lives). An exact fit
        (only the last pivot, the penalised residual sum of squares, fails) gets pwrss = 0
        from the factor as it stands; any other failed pivot is lme4's error."""
        theta = np.array(theta, dtype=float)
        qr, m = self._lam_r_size, self.m
        b22 = self._compact
        l11, t1 = self.b11.factor(self.terms[0].lower_factor(theta))
        owner = self._buffer_owner
        free = self._buffer if owner is None or owner() is None else None
        self._buffer = self._buffer_owner = None  # an earlier factor still alive keeps its own
        s = b22.assemble(theta, self.b21.rank_update(t1), out=free)
        del free
        self._buffer = s
        last = float(s[-1, -1])  # the response's pivot before the factorisation
        l22, info = b22.factor(s)
        del s  # l22 is the same memory
        if info == m:  # an exact fit: the last pivot, Σ r², is round-off
            row = l22[-1, :-1]
            l22[-1, -1] = np.sqrt(max(last - float(row @ row), 0.0))
        elif info != 0:
            raise FittingError("Downdated VtV is not positive definite")
        diag22 = np.diagonal(l22).copy()
        check_rx(diag22[qr : qr + self.p], b22.xx_diagonal)
        ld_l2 = 2.0 * (self.b11.log_det(l11) + np.log(diag22[:qr]).sum())
        ld_rx2 = 2.0 * np.log(np.abs(diag22[qr : qr + self.p])).sum()
        pwrss = float(diag22[-1] ** 2)
        f = Factorization(theta, l11, t1, l22, float(ld_l2), float(ld_rx2), pwrss, self,
                          _A21=self.b21)
        self._buffer_owner = weakref.ref(f)
        return f

    @property
    def has_gradient(self) -> bool:
        """No analytic gradient here (see the class docstring)."""
        return False

    def gradient(self, f: Factorization, REML: bool) -> np.ndarray:
        """Not offered for a compact block 2 (:attr:`has_gradient` is False)."""
        raise NotImplementedError("the analytic gradient is not offered for a large block 2")

    def _lower_solve(self, f: Factorization, b: np.ndarray, trans: bool = False) -> np.ndarray:
        """Solve L22z x = b (or L22z' x = b), L22z the random effects' part of block 2's
        factor, by BLAS on the whole factor in place (a slice of it would be copied): ``b``
        (qr x k) padded with zero rows for X and y, whose rows of the solution are dropped
        (a forward solve does not read them; a backward one starts from them: zeros, with the
        response's pivot taken as 1 meanwhile, so that an exact fit's zero divides nothing)."""
        qr, m = self._lam_r_size, self.m
        l22 = f.L22
        padded = np.zeros((m, b.shape[1]), order="F")
        padded[:qr] = b
        saved = l22[-1, -1]
        l22[-1, -1] = 1.0
        try:
            out = la.blas.dtrsm(1.0, l22, padded, lower=1, trans_a=int(trans), overwrite_b=1)
        finally:
            l22[-1, -1] = saved
        return np.asarray(out[:qr])

    def solve(self, f: Factorization) -> tuple[np.ndarray, np.ndarray]:
        """Fixed effects β and spherical random effects u at ``f`` (as
        :meth:`PLSProblem.solve`, the triangular solve by BLAS on the factor in place)."""
        qr, m = self._lam_r_size, self.m
        l22 = f.L22
        rhs = np.zeros((m, 1), order="F")
        rhs[:-1, 0] = l22[-1, :-1]
        saved = l22[-1, -1]
        l22[-1, -1] = 1.0  # the y row's solution is 0 / pivot: 0 whatever the pivot
        try:
            sol = la.blas.dtrsm(1.0, l22, rhs, lower=1, trans_a=1, overwrite_b=1)
        finally:
            l22[-1, -1] = saved
        sol2 = np.asarray(sol[:-1, 0])
        u_r, beta = sol2[:qr], sol2[qr:]
        l21 = f.L21
        rhs1 = np.asarray(l21[-1].toarray()).ravel() - l21[:-1].T @ sol2
        first = self.terms[0]
        u1 = self.b11.solve_transposed(f.L11, rhs1.reshape(first.nl, first.nc))
        return beta, np.concatenate([u1.ravel(), u_r])

    def inverse_diagonal_blocks(self, f: Factorization, chunk: int = 256) -> list[np.ndarray]:
        """Per term, the diagonal blocks of (Λ'Z'WZΛ + I)⁻¹ (as
        :meth:`PLSProblem.inverse_diagonal_blocks`), the columns of L⁻¹ formed a chunk at a
        time by triangular solves on the factor in place: no second m x m array."""
        first = self.terms[0]
        nc = first.nc
        qr = self._lam_r_size
        l11inv = np.linalg.inv(f.L11)
        blocks1 = np.einsum("lki,lkj->lij", l11inv, l11inv)
        out = [blocks1]
        if not qr:
            return out
        l21z = f.L21[:qr]
        for lo in range(0, first.nl, chunk):
            hi = min(first.nl, lo + chunk)
            inv_blk = sp.block_diag(list(l11inv[lo:hi]), format="csc")
            lower = -self._lower_solve(f, (l21z[:, lo * nc : hi * nc] @ inv_blk).toarray())
            lower = lower.reshape(qr, hi - lo, nc)
            blocks1[lo:hi] += np.einsum("kli,klj->lij", lower, lower)
        # block 2's terms are scalar: the squared norms of L22z⁻¹'s columns
        norms = np.empty(qr)
        for lo in range(0, qr, chunk):
            hi = min(qr, lo + chunk)
            eye = np.zeros((qr, hi - lo))
            eye[np.arange(lo, hi), np.arange(hi - lo)] = 1.0
            cols = self._lower_solve(f, eye)
            norms[lo:hi] = np.einsum("ij,ij->j", cols, cols)
        pos = 0
        for t in self.terms[1:]:
            out.append(norms[pos : pos + t.size].reshape(t.nl, 1, 1))
            pos += t.size
        return out
