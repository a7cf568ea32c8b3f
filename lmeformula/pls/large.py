"""The blocked engine for a large block 2: M22 without its zeros, one dense m x m matrix per θ.

Each term's block of M22 = [Z₂ X y]'W[Z₂ X y] with itself is block diagonal (one level per
observation: a diagonal for a scalar term such as ``(1 | item)``, an nc x nc block per level
for a vector term such as ``(x | item)``), and its blocks with the other terms are as sparse
as the pairs of levels that occur. The blocked engine
(:class:`~lmeformula.pls.engine.PLSProblem`) holds M22 dense and assembles block 2's
S = Λ₂'(M22 - G B Gᵀ)Λ₂ + I into a second dense array; with 3·10⁴ items (the issue's
``(1 | subj) + (1 | item)`` design, 10⁵ x 3·10⁴ levels, 10⁶ rows) each is 7.2 GB, and the
sparse products that formed M22 made a third.

Here M22 is kept as what it is: the terms' diagonal blocks, their cross-term entries at the
pairs of levels that occur, the border Z₂'W[X y] and the corner [X y]'W[X y]. Where block 2
takes its sparse factor (:mod:`lmeformula.pls.cholmod`: 2·10⁴ teachers with a slope each,
order 40,003, fit in 0.5 GB), nothing of order m² is ever made. Otherwise, per θ, S is
assembled into the one dense array that LAPACK then factors in place (its upper triangle
zero-filled, the scaled entries scattered, the downdate subtracted at its keys, the identity
added: the same products and sums, in the same order, as :func:`~lmeformula.pls.plans.update_block2`
computes from a dense M22), and nothing else of that size is made: the solutions use
triangular solves on the whole factor (BLAS reads it in place; a slice of it would be
copied); the analytic gradient and the inverse's diagonal blocks (condVar) use block 2's
triangular inverse, formed once in the factor's own upper triangle, which nothing else reads
(one ``dtrtri``, the flops of the factorisation), and block 1's coupling through the sparse
L21; ``getME("L")`` is built column by column from the array. The deviance function does not
keep a second factor for the best point (:attr:`LargeBlockPLSProblem.holds_one_factor`).

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
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from ..errors import FittingError, ModelSizeError
from .cholmod import SparsePivots
from .crossprod import (
    _block_diagonal,
    _level_blocks,
    _level_cross_entries,
    _level_sums,
    _pair_structure,
    _PairStructure,
)
from .engine import (
    _UNDECIDED,
    Factorization,
    PLSProblem,
    _Assembly,
    closed_under_levels,
    csr_order,
)
from .lapack import check_rx, finish_exact_fit, inverse_in_upper
from .memory import available_memory
from .plans import Block2Plan, ScaledBlock, ZeroBlock, times_lambdas
from .system import _policy
from .terms import TermShape
from .threads import level3_safe

__all__ = ["CompactDiagonalBlock", "LargeBlockPLSProblem", "large_block"]


def large_block(terms: list[TermShape], p: int, has_factors: bool) -> bool:
    """Whether a model gets :class:`LargeBlockPLSProblem`: the terms' level codes are given
    (the cross-products are counted), there is a block 2, and its order reaches
    :attr:`~lmeformula.pls.policy.BlockPolicy.compact_m22_order`."""
    if not has_factors or len(terms) < 2:
        return False
    order = sum(t.size for t in terms[1:]) + p + 1
    return order >= _policy().compact_m22_order


@dataclass(frozen=True, slots=True)
class CompactDiagonalBlock:
    """M22 without its zeros, and S's assembly per θ into one dense array.

    Attributes
    ----------
    plan
        Block 2's rectangles (:func:`~lmeformula.pls.plans.plan_block2`): with scalar terms
        only, each is scaled by a constant λ_a λ_b and a term's diagonal block is a
        ``ZeroBlock``; with a vector term, as :func:`~lmeformula.pls.plans.update_block2`
        assembles them.
    keys
        Where the rank update by block 1 lands (flat positions of S, ordered by pair of blocks).
    diagonal
        (block, flat position, value) of the scalar terms' diagonals (with scalar terms
        only, the zero-filled blocks' diagonals).
    entries
        (block of the row, block of the column, flat position, value) of M22's upper triangle
        but the scalar terms' diagonals: the vector terms' blocks of a level with itself, the
        cross-term pairs of levels that occur, the border Z₂'W[X y] and the corner, ordered
        by position.
    xx_diagonal
        M22's diagonal on X's rows (lme4's rank check).
    """

    plan: Block2Plan
    keys: np.ndarray
    diagonal: tuple[np.ndarray, np.ndarray, np.ndarray]
    entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    xx_diagonal: np.ndarray

    def assemble(self, theta: np.ndarray,
                 down: np.ndarray | Iterable[tuple[int, int, np.ndarray]],
                 out: np.ndarray | None = None) -> np.ndarray:
        """S = Λ₂'(M22 - D)Λ₂ + I, its upper triangle in a C-order array (``out``, m x m,
        else a new one; the strict lower triangle is not written: LAPACK reads the
        transpose's lower triangle), from the stored entries: every entry the product or sum
        that :func:`~lmeformula.pls.plans.update_block2` forms from a dense M22 (``down``:
        the rank update D at the keys, overwritten; or its parts (lo, hi, D at keys lo:hi),
        each applied as it comes, so that D is never whole in memory)."""
        plan = self.plan
        m = plan.m
        s = np.empty((m, m)) if out is None else out
        band = _policy().band
        # zero-fill the upper triangle, band by band; with vector terms also a band's width
        # left of the diagonal: the rectangles scaled or multiplied by λ a band of whole
        # levels at a time (plans.py) read their band's square whole, from a term's first
        # row, so no unwritten memory (a last factor's leftovers, inf or NaN) is multiplied
        margin = plan.band if plan.vector_blocks else 0
        for lo in range(0, m, band):
            s[lo : lo + band, max(lo - margin, 0) :] = 0.0
        parts = [(0, self.keys.shape[0], down)] if isinstance(down, np.ndarray) else down
        if plan.vector_blocks:
            return self._assemble_with_vectors(s, theta, parts)
        scale = np.asarray(plan.scales(theta))
        flat = s.ravel()
        row_block, col_block, at, values = self.entries
        flat[at] = values * (scale[row_block] * scale[col_block])
        for lo, hi, update in parts:  # the rank downdate, scaled as its block is
            for seg in plan.segments:
                start, stop = max(seg.span.start, lo), min(seg.span.stop, hi)
                if start >= stop:
                    continue
                part, pos = update[start - lo : stop - lo], self.keys[start:stop]
                a, b = seg.kind.a, seg.kind.b
                part *= -(scale[a] * scale[b])
                if isinstance(seg.kind, ZeroBlock):  # a term's diagonal block: M22 is 0 there
                    flat[pos] = part
                else:
                    flat[pos] += part
        block_of, positions, diag_values = self.diagonal
        if block_of.size:
            d = scale[block_of]
            flat[positions] += diag_values * (d * d)
        flat[: plan.qr * (m + 1) : m + 1] += 1.0  # inflate: + I on the random effects
        return s

    def _assemble_with_vectors(self, s: np.ndarray, theta: np.ndarray,
                               parts: Iterable[tuple[int, int, np.ndarray]]) -> np.ndarray:
        """:meth:`assemble` for a plan with vector terms (``s``: its upper triangle zeroed),
        as :func:`~lmeformula.pls.plans.update_block2` assembles it: M22 - D first, then
        the scalar pairs' rectangles scaled by λ_a λ_b and the vector terms' multiplied by
        their λ (:func:`~lmeformula.pls.plans.times_lambdas`), then + I."""
        plan = self.plan
        flat = s.ravel()
        _, _, at, values = self.entries
        flat[at] = values
        _, positions, diag_values = self.diagonal
        flat[positions] = diag_values
        for lo, hi, update in parts:
            flat[self.keys[lo:hi]] -= update
        scale = plan.scales(theta)
        for blk in plan.blocks:
            if isinstance(blk, ScaledBlock) and scale[blk.a] * scale[blk.b] != 1.0:
                s[blk.rows, blk.cols] *= scale[blk.a] * scale[blk.b]
        times_lambdas(plan, s, theta)
        flat[: plan.qr * (plan.m + 1) : plan.m + 1] += 1.0
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
    """The blocked engine with M22 compact (see the module docstring): cross-products counted
    from the terms' level codes (``factors``, required).

    Everything the per-θ factorisation computes is what :class:`PLSProblem` computes (the same
    products and sums: the criterion is bit-identical); what differs is the storage (no dense
    M22, one dense array per θ) and how the gradient and the solutions after the fit read
    the factor (in place, by BLAS and LAPACK on the whole array).
    """

    _entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = field(
        init=False, repr=False)
    _diag_rows: np.ndarray = field(init=False, repr=False)  # the scalar terms' rows
    _diag_values: np.ndarray = field(init=False, repr=False)
    _xx_diag: np.ndarray = field(init=False, repr=False)
    _cross_plans: dict[tuple[int, int], _PairStructure] = field(
        init=False, repr=False, default_factory=dict)
    _compact: CompactDiagonalBlock = field(init=False, repr=False)
    # where the stored entries and the scalar diagonals lie in block 2's sparse pattern, and
    # its size (set with the pattern: re-weighting refreshes the values at it)
    _pattern_slots: tuple[np.ndarray, np.ndarray, int] = field(init=False, repr=False)
    # the m x m array of the last factor, reused once that factor is gone: a new array of
    # 7.2 GB per θ costs the kernel's zeroing of its pages (and compaction, for huge pages),
    # 1.7 s of system time per 0.65 GB at worst, measured under memory pressure
    _buffer: np.ndarray | None = field(init=False, repr=False, default=None)
    _buffer_owner: weakref.ref[Factorization] | None = field(init=False, repr=False,
                                                              default=None)

    # a dense block 2 that would not fit in memory, refused where it is first needed (the
    # sparse factor needs none): :meth:`defer_dense_refusal`
    _dense_refusal: ModelSizeError | None = field(init=False, repr=False, default=None)

    # the deviance function keeps no factor but the current one (each is m x m)
    holds_one_factor = True

    def defer_dense_refusal(self, refusal: ModelSizeError) -> None:
        """Block 2's dense array would not fit in memory (``refusal``: the error saying so,
        :func:`~lmeformula.pls.memory.check_dense_memory`'s): raise it where the dense
        array would be made, before anything of its size is allocated, and not before, as
        block 2's sparse factor needs no dense array (20,000 teachers with a slope each:
        a dense block of 12.8 GB, a fit in 0.5 GB). The sparse factor's own memory is
        checked when its analysis is made."""
        self._dense_refusal = refusal

    def _refuse_dense(self) -> None:
        """Raise the deferred refusal (:meth:`defer_dense_refusal`), saying why the sparse
        factor does not serve instead."""
        if self._dense_refusal is None:
            return
        if isinstance(self._sparse, tuple):
            why = ("block 2's sparse factor serves the fit, but this asks for the dense one "
                   "(getME('L') and RZX are defined in its order)")
        else:
            why = ("block 2's sparse factor, which would need no dense block, does not serve "
                   "this design: after a fill-reducing ordering it keeps more than "
                   f"{_policy().sparse_max_fill:.0%} of a dense triangle, or it is not "
                   "positive definite")
        raise ModelSizeError(f"{self._dense_refusal} Here {why}.")

    def __getstate__(self) -> dict[str, object]:
        """The state for a copy or a pickle: without the reusable m x m buffer and the weak
        reference to the factor that owns it (a weak reference cannot be pickled: a fitted
        model on this engine could not be saved), which the copy makes anew."""
        state = super().__getstate__()
        state["_buffer"] = None
        state["_buffer_owner"] = None
        return state

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
        diag_rows, diag_vals = [], []
        for i, (t, (codes, x), plan) in enumerate(zip(rest, others, self._g_plan,
                                                      strict=True)):
            pos = int(edges[i])
            r, c, v = _level_cross_entries(codes, x, t.nl, codes1, x1, nl1, w, plan)
            g_rows.append(r + pos)
            g_cols.append(c)
            g_vals.append(v)
            own = _level_blocks(codes, x, t.nl, w)
            if t.nc == 1:  # a diagonal, stored apart
                diag_rows.append(np.arange(pos, pos + t.size, dtype=np.int64))
                diag_vals.append(own[:, 0, 0])
            else:  # each level's nc x nc block with itself, its upper triangle
                a, b = np.triu_indices(t.nc)
                start = pos + np.arange(t.nl, dtype=np.int64)[:, None] * t.nc
                e_rows.append((start + a).ravel())
                e_cols.append((start + b).ravel())
                e_vals.append(own[:, a, b].ravel())
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
        self._diag_rows = np.concatenate([*diag_rows, np.zeros(0, np.int64)])
        self._diag_values = np.concatenate([*diag_vals, np.zeros(0)])
        self._xx_diag = np.diag(corner)[:p].copy()
        xy_rows = np.stack([_level_sums(codes1, x1, nl1, xyw[k]).ravel()
                            for k in range(p + 1)])
        # every level meets X and y (32-bit, as the terms' entries)
        r, c = np.indices(xy_rows.shape, dtype=np.int32).reshape(2, -1)
        g_rows.append(r + qr)
        g_cols.append(c)
        g_vals.append(xy_rows.ravel())
        # 32-bit where they are: G's CSR keeps 32-bit indices (no int64 copies at the peak)
        rows, cols = np.concatenate(g_rows), np.concatenate(g_cols)
        del g_rows, g_cols
        self._set_g(rows, cols, np.concatenate(g_vals))

    def _set_g(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """G (m x q₁, CSR) from its entries, in the order :class:`PLSProblem` builds it."""
        if self._g_order is None:
            self._g_order = csr_order(rows, cols)
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
        edges = self._block_edges
        owner = np.repeat(np.arange(len(edges) - 1), np.diff(edges)).astype(np.int64)
        rows = self._diag_rows
        self._compact = CompactDiagonalBlock(plan, keys, (owner[rows], rows * (self.m + 1),
                                                          self._diag_values),
                                             self._entries, self._xx_diag)

    def reweight(self, w: np.ndarray, y: np.ndarray) -> None:
        """New case weights and response: the cross-products' values recomputed in place
        (see :meth:`PLSProblem.reweight`).

        Block 2's sparse analysis is kept (a GLMM's PIRLS step then refactors numerically
        with it): the compact M22's entries, unlike a dense M22's non-zeros, are structural
        (every pair of levels that occurs, zeros included), so S's pattern does not depend
        on the weights; only M22's values at it are new. Undecided, the first
        factorisation decides (:meth:`PLSProblem.factor`)."""
        kept = self._sparse
        self._reweight_first_blocks(w, y)
        self._compact = self._compact.reweighted(self._entries, self._diag_values,
                                                 self._xx_diag)
        if kept is _UNDECIDED:
            self._sparse = kept
        elif isinstance(kept, tuple):
            assembly, analysis = kept
            self._sparse = (replace(assembly, m22=self._m22_at_pattern()), analysis)

    def _factor_dense(self, theta: np.ndarray) -> Factorization:
        """Factor the augmented system at ``theta`` (:meth:`PLSProblem.factor`'s steps),
        block 2 assembled into one array and factored in place: the array of the last factor
        when that factor is gone (a factor's arrays are valid while it lives). An exact fit
        (only the last pivot, the penalised residual sum of squares, fails) gets pwrss = 0
        from the factor as it stands; any other failed pivot is lme4's error."""
        self._refuse_dense()
        theta = np.array(theta, dtype=float)
        qr, m = self._lam_r_size, self.m
        b22 = self._compact
        l11, t1 = self.b11.factor(self.terms[0].lower_factor(theta))
        owner = self._buffer_owner
        free = self._buffer if owner is None or owner() is None else None
        self._buffer = self._buffer_owner = None  # an earlier factor still alive keeps its own
        s = b22.assemble(theta, self.b21.rank_update_parts(t1), out=free)
        del free
        self._buffer = s
        last = float(s[-1, -1])  # the response's pivot before the factorisation
        l22, info = b22.factor(s)
        del s  # l22 is the same memory
        if info == m:  # an exact fit: the last pivot, Σ r², is round-off
            finish_exact_fit(l22, last)
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

    def _sparse_candidate(self) -> bool:
        """Block 2 may take the sparse factor (:meth:`PLSProblem.deviance`): its order is
        above the sparse factor's least (its terms scalar or vector)."""
        return self.m >= _policy().sparse_min_order

    def _xx_diagonal(self) -> np.ndarray:
        """M22's diagonal on X's rows (lme4's rank check of RX), held by the compact block."""
        return self._compact.xx_diagonal

    def _block2_pattern(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """S's structural pattern (see :meth:`PLSProblem._block2_pattern`) from the compact
        M22: its stored entries, the scalar terms' diagonals and the downdate's keys, closed
        under levels with vector terms; counted before it is formed (a design whose keys
        alone are too many is dense)."""
        m, b22 = self.m, self._compact
        _, _, at, _ = b22.entries
        _, positions, _ = b22.diagonal
        limit = _policy().sparse_max_fill * m * (m + 1) / 2
        if max(b22.keys.shape[0], at.shape[0]) > limit:  # nothing formed for a dense one
            return None
        keys = np.asarray(b22.keys, dtype=np.intp)
        # a sort-based union (np.union1d took 5.2 s on two sorted arrays of 0.95 M keys,
        # a sort and a comparison 0.36 s)
        flat = np.sort(np.concatenate([np.asarray(at, dtype=np.intp), keys,
                                       np.arange(m, dtype=np.intp) * (m + 1)]))
        flat = flat[np.concatenate([[True], flat[1:] != flat[:-1]])]
        if self._block2_plan.vector_blocks:  # every entry of a pair of levels, or none
            closed = closed_under_levels(flat, self._level_units(), m, limit)
            if closed is None:
                return None
            flat = closed
        if flat.size > limit:
            return None
        self._pattern_slots = (np.searchsorted(flat, at), np.searchsorted(flat, positions),
                               flat.size)
        return flat, self._m22_at_pattern(), keys

    def _analysed_sparse(self, pattern: tuple[np.ndarray, np.ndarray, np.ndarray],
                         theta: np.ndarray, down: np.ndarray,
                         ) -> tuple[_Assembly, SparsePivots, np.ndarray] | None:
        """:meth:`PLSProblem._analysed_sparse`, and where the dense block was refused
        (:meth:`defer_dense_refusal`), a check that the sparse factor fits in memory: its
        entries (from the analysis), three copies of them (CHOLMOD's factor, the fitted
        model's copy of L, its selected inverse)."""
        analysed = super()._analysed_sparse(pattern, theta, down)
        if analysed is None or self._dense_refusal is None:
            return analysed
        m = self.m
        entries = analysed[1].fill * m * (m + 1) / 2
        need, have = 3 * 12 * entries, available_memory()  # a value and an index each
        if need > have:
            raise ModelSizeError(
                f"{self._dense_refusal} Block 2's sparse factor, which would need no dense "
                f"block, has {entries:,.0f} entries ({need / 1e9:.1f} GB with its copies): "
                f"too many as well.")
        return analysed

    def _m22_at_pattern(self) -> np.ndarray:
        """M22's values at the entries of block 2's sparse pattern (the stored entries and
        the scalar terms' diagonals at their slots, zeros elsewhere)."""
        at_slots, diagonal_slots, size = self._pattern_slots
        _, _, _, values = self._compact.entries
        m22 = np.zeros(size)
        m22[at_slots] = values
        m22[diagonal_slots] += self._compact.diagonal[2]
        return m22

    @property
    def has_gradient(self) -> bool:
        """The analytic gradient is offered (see :meth:`gradient`)."""
        return True

    @property
    def _block2_plan(self) -> Block2Plan:
        """Block 2's per-θ plan, held by the compact block."""
        return self._compact.plan

    @level3_safe
    def gradient(self, f: Factorization, REML: bool) -> np.ndarray:
        """The criterion's gradient in θ at ``f``, analytically (the formula of
        :meth:`PLSProblem.gradient`), at the cost of one triangular inverse of block 2.

        The blocked engine takes block 2's part of C = A_s⁻¹ from S_s⁻¹ (two triangular
        passes, in the factor's array at these orders) and the first term's from K̃ at the
        downdate's keys. Here K = L_s⁻¹ (``dtrtri``, written into the free upper triangle of
        the factor's own array, :func:`inverse_in_upper`) gives both: S_s⁻¹'s diagonal
        blocks of block 2's terms as the Gram matrices of K's columns per level (a scalar
        term's: their squared norms), and
        Σ_l V_l'G_l'Λ₂S_s⁻¹Λ₂'G_lV_l as the Gram matrices of K Λ₂'G V, G sparse
        (:meth:`_inverse_grams`). The factor is left as it was (its lower triangle and
        diagonal: everything that is read of it). A singular λ raises ``LinAlgError`` (the
        deviance function then takes the gradient just inside).
        """
        if f.sparse22 is not None:
            sparse = self._sparse_gradient(f, REML)
            if sparse is not None:
                return sparse
        f = self._dense_factor(f)
        if self.m <= _policy().max_inverse_order and self.b21.has_gradient:
            # the blocked engine's: its products over the pairs cost less than this one's
            # panel products against the first term's columns (see the policy)
            return super().gradient(f, REML)
        theta = f.theta
        lams, s = self._gradient_start(theta, REML)
        _, u = self.solve(f)  # before the factor's array holds the inverse
        blocks = [np.zeros((t.nc, t.nc)) for t in self.terms]
        l11inv = np.linalg.inv(f.L11)
        pmat = np.swapaxes(l11inv, 1, 2) @ l11inv  # P_l = (L11_l L11_l')⁻¹
        blocks[0] += pmat.sum(axis=0)
        if s:
            a21 = self.b21 if f._A21 is None else f._A21
            # Λ₂'G V with V_l = λ₁P_l: rows of block 2 (Λ₂' the identity on X and y)
            lgv = (self.lambda_rest_t(theta) @ a21.times_t1(lams[0] @ pmat)).tocsr()[:s]
            own, grams = self._inverse_grams(f, s, lgv)
            blocks[0] += grams.sum(axis=0)
            for blk, per_level in zip(blocks[1:], own, strict=True):
                blk += per_level.sum(axis=0)
        return self._gradient_from_blocks(f, REML, lams, blocks, u)

    def _inverse_grams(self, f: Factorization, s: int, b: sp.csr_matrix | None,
                       panel: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """With K = L_s⁻¹, the inverse of the leading s x s triangle of block 2's factor (so
        that K'K = S_s⁻¹): S_s⁻¹'s diagonal blocks of block 2's terms, (nl, nc, nc) each (the
        Gram matrices of K's columns of each level: a scalar term's are its columns' squared
        norms), and, for ``b`` (s x nl₁·nc₁, sparse), each level's nc₁ x nc₁ Gram matrix of
        K B_l ((nl₁, nc₁, nc₁); zeros without ``b``).

        K is formed once in the upper triangle of the factor's array (one ``dtrtri``,
        s³/3 flops, in place) and read ``panel`` rows at a time: each panel of K is copied
        out (its rows are the array's columns; s x panel), its squares summed per column,
        and K B formed for those rows by a sparse product, Bᵀ's first columns against the
        panel (B's ~nnz(B)·s/2 multiply-adds in all, nothing of size s x nl₁)."""
        a = f.L22
        first = self.terms[0]
        nl, nc = first.nl, first.nc
        width = first.size
        norms = np.zeros(s)
        grams = np.zeros((nl, nc, nc))
        starts = self._block_edges[:-2].tolist()
        vectors = [(pos, t, np.zeros((t.nl, t.nc, t.nc)))
                   for pos, t in zip(starts, self.terms[1:], strict=True) if t.nc > 1]
        if panel is None:
            # the panel's products (nl₁·nc₁ x panel, updated at random rows) within 8 MB,
            # so that they stay in cache: 16-64 rows measured alike at 2·10⁴ levels
            panel = max(16, min(128, (1 << 20) // max(width, 1)))
        bt = None
        if b is not None:
            bt = sp.csr_matrix(b).T  # CSC (nl₁·nc₁ x s): B's first rows are its first columns
        with inverse_in_upper(a):
            for r0 in range(0, s, panel):
                r1 = min(s, r0 + panel)
                # xp[j, k] = K[r0 + k, j] for j <= r0 + k; below that, in the panel's own
                # square, the array holds L: zeroed
                xp = np.ascontiguousarray(a[:r1, r0:r1])
                square = xp[r0:r1]
                square[np.tril_indices(r1 - r0, -1)] = 0.0
                norms[:r1] += np.einsum("jk,jk->j", xp, xp)
                for pos, t, own in vectors:  # K's rows from r1 on are zero here
                    _add_level_grams(own, xp[pos : min(pos + t.size, r1)], t.nc)
                if bt is not None:
                    ptr = bt.indptr
                    head = sp.csc_matrix((bt.data[: ptr[r1]], bt.indices[: ptr[r1]],
                                          ptr[: r1 + 1]), shape=(width, r1))
                    hp = np.asarray(head @ xp).reshape(nl, nc, r1 - r0)  # (K B)ᵀ's rows
                    grams += np.einsum("lak,lbk->lab", hp, hp)
        own_blocks = {pos: own for pos, _, own in vectors}
        return [own_blocks[pos] if t.nc > 1 else norms[pos : pos + t.size].reshape(t.nl, 1, 1)
                for pos, t in zip(starts, self.terms[1:], strict=True)], grams

    @level3_safe
    def solve(self, f: Factorization) -> tuple[np.ndarray, np.ndarray]:
        """Fixed effects β and spherical random effects u at ``f`` (as
        :meth:`PLSProblem.solve`, the triangular solve by BLAS on the factor in place)."""
        if f.sparse22 is not None:  # the blocked engine's solve from the sparse factor
            return super().solve(f)
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
        # block 1 as the blocked engine solves it (from bands of L21's rows, bit for bit the
        # whole L21's result: the fitted model does not form and keep L21, 20 MB on the 10⁵ x
        # 2,000 crossed design)
        return beta, np.concatenate([self._solve_block1(f, sol2), u_r])

    @level3_safe
    def inverse_diagonal_blocks(self, f: Factorization, chunk: int | None = None,
                                ) -> list[np.ndarray]:
        """Per term, the diagonal blocks of (Λ'Z'WZΛ + I)⁻¹ (as
        :meth:`PLSProblem.inverse_diagonal_blocks`), from one triangular inverse of block 2's
        random-effects triangle (:meth:`_inverse_grams`, ``chunk`` its panel's rows).

        With L = [[L11, 0], [L21z, L22z]] and K = L22z⁻¹: block 2's are the Gram matrices of
        K's columns per level (a scalar term's: their squared norms); block 1's are
        L11⁻ᵀL11⁻¹ per level plus the Gram matrices of K L21z L11⁻¹ per level (L21z
        sparse). About qr³/3 flops for the inverse
        and nnz(L21z)·qr/2 for the products, where solving against the factor column by
        column took about qr² per column of block 1 and of block 2."""
        sparse = self._sparse_inverse_diagonal_blocks(f)
        if sparse is not None:
            return sparse
        f = self._dense_factor(f)
        qr = self._lam_r_size
        l11inv = np.linalg.inv(f.L11)  # (nl, nc, nc), lower triangular
        blocks1 = np.einsum("lki,lkj->lij", l11inv, l11inv)
        out = [blocks1]
        if not qr:
            return out
        b = (f.L21[:qr] @ _block_diagonal(l11inv)).tocsr()  # L21z L11⁻¹
        own, grams = self._inverse_grams(f, qr, b, chunk)
        blocks1 += grams
        return [*out, *own]

    @level3_safe
    def sparse_L(self, f: Factorization) -> sp.csc_matrix:
        """The lower-triangular factor of Λ'Z'WZΛ + I as one sparse matrix (as
        :meth:`PLSProblem.sparse_L`: the same entries, explicit zeros dropped), built column
        by column straight from the factor's array: no dense copy of its triangle.

        Block 2's random-effects triangle is dense (see the module docstring), so the result
        itself holds about qr²/2 entries (12 bytes each with 32-bit indices: 5.4 GB at
        qr = 3·10⁴); when that is more than the memory available,
        :class:`~lmeformula.errors.ModelSizeError` says so before it is allocated."""
        f = self._dense_factor(f)
        qr, q1 = self._lam_r_size, self.q1
        q = q1 + qr
        left = sp.vstack([self.b11.to_sparse(f.L11), f.L21[:qr]], format="csc")
        left.eliminate_zeros()  # block 1's columns: L11 over L21z
        a = f.L22
        band = _policy().band
        counts = np.empty(qr, dtype=np.int64)
        for c0 in range(0, qr, band):  # block 2's columns: the nonzeros on and below the diagonal
            c1 = min(qr, c0 + band)
            counts[c0:c1] = _lower_nonzeros(a, c0, c1, qr).sum(axis=0)
        nnz = int(left.nnz + counts.sum())
        index = np.dtype(np.int32 if max(nnz, q) < 2**31 else np.int64)
        need = nnz * (8 + index.itemsize) + (q + 1) * index.itemsize
        have = available_memory()
        if need > have:
            raise ModelSizeError(
                f"getME('L'): the sparse factor L is {q:,} x {q:,} with {nnz:,} nonzeros "
                f"(block 2's {qr:,} x {qr:,} triangle is dense), {need / 1e9:.1f} GB, but "
                f"{have / 1e9:.1f} GB of memory are available")
        data = np.empty(nnz)
        indices: np.ndarray = np.empty(nnz, dtype=index)
        indptr: np.ndarray = np.empty(q + 1, dtype=index)
        indptr[: q1 + 1] = left.indptr
        indptr[q1 + 1 :] = left.nnz + np.cumsum(counts)
        data[: left.nnz] = left.data
        indices[: left.nnz] = left.indices
        del left
        for c0 in range(0, qr, band):
            c1 = min(qr, c0 + band)
            keep = _lower_nonzeros(a, c0, c1, qr).T  # column by column (C order of the .T)
            lo, hi = int(indptr[q1 + c0]), int(indptr[q1 + c1])
            data[lo:hi] = a[c0:qr, c0:c1].T[keep]
            indices[lo:hi] = np.nonzero(keep)[1] + (q1 + c0)
        return sp.csc_matrix((data, indices, indptr), shape=(q, q))


def _add_level_grams(out: np.ndarray, rows: np.ndarray, nc: int) -> None:
    """Add to ``out`` ((levels, nc, nc)) the Gram matrices of ``rows`` (a panel's rows of a
    vector term, levels of nc rows from the term's first; the last level's may be cut
    short, its missing rows zero) taken per level."""
    whole = rows.shape[0] // nc
    if whole:
        v = rows[: whole * nc].reshape(whole, nc, rows.shape[1])
        out[:whole] += np.einsum("lak,lbk->lab", v, v)
    if rows.shape[0] > whole * nc:
        part = rows[whole * nc :]
        out[whole, : part.shape[0], : part.shape[0]] += part @ part.T


def _lower_nonzeros(a: np.ndarray, c0: int, c1: int, stop: int) -> np.ndarray:
    """Where columns c0:c1 of the lower triangle held in ``a`` (rows c0:stop) are nonzero:
    a (stop - c0) x (c1 - c0) mask, the entries above the diagonal (the array's other
    triangle) left out."""
    nz = a[c0:stop, c0:c1] != 0.0
    nz[np.triu_indices(c1 - c0, 1)] = False
    return nz
