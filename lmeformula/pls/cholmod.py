"""Block 2's criterion from CHOLMOD's supernodal sparse Cholesky (through cvxopt).

Per θ the profiled criterion needs only the pivots of block 2's factor: the log-determinant
of its random-effects part, the log-determinant of RX (X's pivots) and the penalised RSS (the
square of the response's pivot). Where block 2 is sparse enough, a fill-reducing ordering
makes its factor much cheaper than the dense one: InstEval's block 2 (order 1,159, 22 %
non-zero) factors with AMD's ordering into 48 % of a dense triangle and about a quarter of
the dense factor's flops, and CHOLMOD's supernodal factor took ~10 ms against ``dpotrf``'s
~37 ms on one loaded core (2026-12-03; PROFILING.md). lme4 itself factors with CHOLMOD.

The analysis (ordering, supernodes, storage) is done once per model, and its fill is read
off CHOLMOD's symbolic factor (its column counts) before any numeric work: a pattern that
fills in densely (random crossings do) is given back to the dense factor at the cost of the
symbolic analysis alone. Each θ writes the assembled S's values into the pattern's slots and
refactors numerically. Everything else the engine does with the factor (the solutions, the
gradient, the fitted model) still takes the dense factor, at the θ it is asked for: the
sparse factor gives the criterion alone.

cvxopt bundles CHOLMOD (SuiteSparse) and its own OpenBLAS in its wheels. It is imported only
when a model's block 2 is large and sparse enough to use it; without it, or where its factor
cannot be read as expected, the engine stays dense (the same criterion to rounding).
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["SelectedInverse", "SparseBlock2", "SparsePivots", "cholmod_module"]

# cvxopt's CHOLMOD settings are process-wide (``cvxopt.cholmod.options``): every call here sets
# the ones it relies on and restores the caller's. Supernodal (``diag`` reads only a
# supernodal factor), and the ordering given, as it is (``nmethods`` = 1: CHOLMOD does not
# compare it with orderings of its own, which could move X's and y's rows).
_OPTIONS = {"supernodal": 2, "nmethods": 1, "postorder": True}
_OPTIONS_LOCK = threading.RLock()


@lru_cache(maxsize=1)
def cholmod_module() -> tuple[Any, Any, Any] | None:
    """cvxopt's (base, cholmod, amd) modules, or None where cvxopt cannot be imported.

    cvxopt loads its own OpenBLAS: the thread scopes' lists of loaded BLAS libraries are made
    again, so that they see it (a build without threads, as the wheels' is, is left out)."""
    try:
        import cvxopt
        import cvxopt.amd
        import cvxopt.cholmod
    except ImportError:  # cvxopt is a dependency; a source build may lack it
        return None
    from . import threads

    threads._openblas_libraries.cache_clear()
    threads._controller.cache_clear()
    return cvxopt, cvxopt.cholmod, cvxopt.amd


@contextmanager
def _our_options(cholmod: Any) -> Iterator[None]:
    """cvxopt's CHOLMOD options set to :data:`_OPTIONS` for the block, the caller's after."""
    with _OPTIONS_LOCK:
        saved = dict(cholmod.options)
        cholmod.options.update(_OPTIONS)
        try:
            yield
        finally:
            cholmod.options.clear()
            cholmod.options.update(saved)


class _CholmodFactor(ctypes.Structure):
    """The leading fields of CHOLMOD's ``cholmod_factor`` (cholmod_core.h, CHOLMOD 3 to 5):
    what the symbolic analysis leaves there, read to learn the fill and the permutation
    before any numeric work (cvxopt gives no other way)."""

    _fields_ = [("n", ctypes.c_size_t), ("minor", ctypes.c_size_t),
                ("Perm", ctypes.c_void_p), ("ColCount", ctypes.c_void_p),
                ("IPerm", ctypes.c_void_p), ("nzmax", ctypes.c_size_t),
                ("p", ctypes.c_void_p), ("i", ctypes.c_void_p), ("x", ctypes.c_void_p),
                ("z", ctypes.c_void_p), ("nz", ctypes.c_void_p), ("next", ctypes.c_void_p),
                ("prev", ctypes.c_void_p), ("nsuper", ctypes.c_size_t),
                ("ssize", ctypes.c_size_t), ("xsize", ctypes.c_size_t),
                ("maxcsize", ctypes.c_size_t), ("maxesize", ctypes.c_size_t),
                ("super", ctypes.c_void_p), ("pi", ctypes.c_void_p), ("px", ctypes.c_void_p),
                ("s", ctypes.c_void_p), ("ordering", ctypes.c_int), ("is_ll", ctypes.c_int),
                ("is_super", ctypes.c_int), ("is_monotonic", ctypes.c_int),
                ("itype", ctypes.c_int), ("xtype", ctypes.c_int), ("dtype", ctypes.c_int)]


def _symbolic_structure(factor: Any, m: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The permutation and column counts of a symbolic CHOLMOD factor of order ``m`` (cvxopt's
    capsule), or None when the structure does not read as one (another CHOLMOD's layout)."""
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object,
                                                                  ctypes.c_char_p]
    try:
        name = get_name(factor)
        if name is None or not name.startswith(b"CHOLMOD FACTOR"):
            return None
        f = _CholmodFactor.from_address(get_pointer(factor, name))
    except (ValueError, TypeError):
        return None
    integer = {0: ctypes.c_int32, 2: ctypes.c_int64}.get(f.itype)  # CHOLMOD_INT, _LONG
    if integer is None or f.n != m or not f.Perm or not f.ColCount:
        return None
    perm = np.ctypeslib.as_array((integer * m).from_address(f.Perm)).astype(np.int64)
    counts = np.ctypeslib.as_array((integer * m).from_address(f.ColCount)).astype(np.int64)
    if not np.array_equal(np.sort(perm), np.arange(m)) or counts.min() < 1 \
            or counts.max() > m:
        return None
    return perm, counts


@dataclass(frozen=True, eq=False)
class SparsePivots:
    """CHOLMOD's analysis of block 2's pattern, refactored numerically at each θ.

    Attributes
    ----------
    flat
        Flat positions i·m + j (i ≤ j) in S's upper triangle of the pattern's entries,
        ascending: the compressed-column order of the lower triangle CHOLMOD reads (S's
        upper entry (i, j) is the lower entry (j, i)).
    fill
        The factor's entries (CHOLMOD's column counts of the symbolic analysis) over a
        dense lower triangle's.
    perm
        The analysis' order: pivot k is S's row ``perm[k]`` (X's and the response's rows
        last, in their order).
    random
        The random effects' rows (the first ones of S).
    pair_work
        Σ_j c_j² over the factor's column counts c_j: the multiply-adds of its selected
        inverse (:meth:`SparseBlock2.selected_inverse`).
    """

    flat: np.ndarray
    fill: float
    perm: np.ndarray = field(repr=False)
    random: int
    pair_work: float
    _matrix: Any = field(repr=False)
    _factor: Any = field(repr=False)
    # the factor's storage is rewritten by every numeric factorisation
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def analyse(cls, flat: np.ndarray, m: int, random: int, values: np.ndarray,
                max_fill: float) -> tuple[SparsePivots, np.ndarray] | None:
        """Analyse the pattern ``flat`` (ascending flat positions i·m + j, i ≤ j, of S's
        structural non-zeros, the diagonal included) and factor S's ``values`` there: the
        analysis and the pivots of this first factorisation, or None where cvxopt is
        missing, its factor does not read as expected, the factor would hold more than
        ``max_fill`` of a dense triangle (found before any numeric work), or S is not
        positive definite at this θ.

        The ordering is AMD's for the first ``random`` rows (the random effects), followed
        by X's and the response's rows in their order; the analysis must keep those last
        (checked on its permutation), so that the last pivots are RX's and the
        response's as in the dense factor."""
        mods = cholmod_module()
        if mods is None:
            return None
        cvxopt, cholmod, amd = mods
        cols, rows = np.divmod(flat, m)  # S's (col, row) in the upper triangle: L's (row, col)
        try:
            matrix = cvxopt.spmatrix(cvxopt.matrix(values),
                                     cvxopt.matrix(rows.astype(np.int64), tc="i"),
                                     cvxopt.matrix(cols.astype(np.int64), tc="i"), (m, m))
            order = np.asarray(amd.order(matrix), dtype=np.int64).ravel()
            order = np.concatenate([order[order < random],
                                    np.arange(random, m, dtype=np.int64)])
            with _our_options(cholmod):
                factor = cholmod.symbolic(matrix, p=cvxopt.matrix(order, tc="i"))
            structure = _symbolic_structure(factor, m)
            if structure is None:
                return None
            perm, counts = structure
            fill = float(counts.sum()) / (m * (m + 1) / 2)
            if fill > max_fill or not np.array_equal(perm[random:], np.arange(random, m)):
                return None
            analysed = cls(flat, fill, perm, random, float((counts.astype(float) ** 2).sum()),
                           matrix, factor)
            first = analysed.pivots(values)
        except MemoryError:  # CHOLMOD's own allocation: the dense factor is the fallback
            return None
        if first is None:
            return None
        return analysed, first

    def pivots(self, values: np.ndarray) -> np.ndarray | None:
        """The factor's diagonal (in the analysis' order: the random effects' pivots in AMD's
        order, then X's, then the response's) for S's ``values`` at the pattern's entries,
        or None when CHOLMOD cannot factor it (not positive definite: the dense factor
        then diagnoses it)."""
        mods = cholmod_module()
        assert mods is not None  # analysed, so imported
        cvxopt, cholmod, _ = mods
        values = cvxopt.matrix(values)
        with self._lock, _our_options(cholmod):
            self._matrix.V = values
            try:
                cholmod.numeric(self._matrix, self._factor)
                return np.array(cholmod.diag(self._factor), dtype=float).ravel()
            except (ArithmeticError, ValueError, MemoryError):
                return None

    def factor(self, values: np.ndarray) -> SparseBlock2 | None:
        """The factor itself for S's ``values``, or None when CHOLMOD cannot factor it (or
        its analysis no longer keeps X's and the response's rows last).

        Made from an analysis of its own in this analysis' order: reading L out
        (``getfactor``) converts a supernodal factor to a simplicial one in place, after
        which ``diag`` gives LDLᵀ's D, not L's pivots (the criteria that followed were
        wrong)."""
        mods = cholmod_module()
        assert mods is not None  # analysed, so imported
        cvxopt, cholmod, _ = mods
        m = self.perm.shape[0]
        matrix = cvxopt.spmatrix(cvxopt.matrix(values), self._matrix.I, self._matrix.J,
                                 (m, m))
        with _our_options(cholmod):
            try:
                factor = cholmod.symbolic(matrix, p=cvxopt.matrix(self.perm, tc="i"))
                structure = _symbolic_structure(factor, m)
                if structure is None:
                    return None
                perm = structure[0]
                cholmod.numeric(matrix, factor)
                colptr, rowind, data = cholmod.getfactor(factor).CCS
            except (ArithmeticError, ValueError, MemoryError):
                return None
        random = self.random
        if not np.array_equal(perm[random:], np.arange(random, m)):
            return None
        lower = sp.csc_matrix((np.array(data, dtype=float).ravel(),
                               np.array(rowind, dtype=np.int64).ravel(),
                               np.array(colptr, dtype=np.int64).ravel()), shape=(m, m))
        return SparseBlock2(lower, perm)


@dataclass(frozen=True, eq=False)
class SparseBlock2:
    """Block 2's sparse factor at one θ, as a fitted model keeps it: P S Pᵀ = L Lᵀ.

    Attributes
    ----------
    lower
        L (m x m, lower triangular, compressed columns) in the analysis' order.
    perm
        Pivot k is S's row ``perm[k]``; X's and the response's rows are the last ones, in
        their order, so that L's trailing rows are RX's and the response's as in the dense
        factor (the same numbers to rounding: the Cholesky factor of those rows does not
        depend on how the rows before them are ordered).
    """

    lower: sp.csc_matrix
    perm: np.ndarray

    def pivots(self) -> np.ndarray:
        """L's diagonal, in the analysis' order."""
        return np.asarray(self.lower.diagonal())

    def solution(self) -> np.ndarray:
        """S_t⁻¹ c in S's order, for S = [[S_t, c], [cᵀ, d]] (the response last): the random
        effects and β of block 2. With L = [[L_t, 0], [lᵀ, l_yy]] it is L_t⁻ᵀ l, permuted
        back (the dense factor's ``L22[:-1, :-1]⁻ᵀ L22[-1, :-1]``)."""
        m = self.perm.shape[0]
        top = self.lower[:-1, :-1]
        y_row = np.asarray(self.lower[m - 1, : m - 1].toarray()).ravel()
        in_order = spla.spsolve_triangular(top.T.tocsr(), y_row, lower=False)
        out = np.empty(m - 1)
        out[self.perm[:-1]] = in_order
        return out

    def rx(self, random: int, p: int) -> np.ndarray:
        """RX (p x p upper triangular): L's rows of X against X itself (``random``: the
        random effects' rows before them)."""
        rows = self.lower[random : random + p, random : random + p].toarray()
        return np.triu(rows.T)

    def selected_inverse(self, order: int) -> SelectedInverse:
        """(P S_s Pᵀ)⁻¹ = L_s⁻ᵀL_s⁻¹ at the pattern of L_s, L's leading ``order`` rows and
        columns (S_s: block 2's random effects after block 1, and X's rows for REML), by
        Takahashi's recurrences: with Z the inverse and column j of L_s holding its pivot d
        and the entries l below it at rows R,

            Z[R, j] = -Z[R, R] l / d,    Z[j, j] = 1/d² - lᵀ Z[R, j] / d.

        R is a clique of L's pattern and holds only ancestors of j in the elimination tree,
        so the columns are computed a level of the tree at a time, root first, each level in
        one vectorised step over all its columns' pairs of entries. The work is Σ_j |R_j|²
        multiply-adds; no dense matrix of S's order is made. ArithmeticError where the
        factor's pattern lacks an entry the recurrence reads."""
        lz = self.lower[:order, :order].tocsc()
        lz.sort_indices()
        ptr = lz.indptr.astype(np.int64)
        rows_of, values = lz.indices.astype(np.int64), lz.data
        counts = np.diff(ptr)
        col_of = np.repeat(np.arange(order, dtype=np.int64), counts)
        keys = col_of * order + rows_of  # ascending: column-major, rows ascending
        if np.any(rows_of[ptr[:-1]] != np.arange(order)):
            raise ArithmeticError("a column of the sparse factor has no pivot")
        pivot = values[ptr[:-1]]
        parent = np.where(counts > 1, rows_of[np.minimum(ptr[:-1] + 1, rows_of.size - 1)], -1)
        depth = np.zeros(order, dtype=np.int64)
        for j in range(order - 1, -1, -1):  # a parent comes after its child
            if parent[j] >= 0:
                depth[j] = depth[parent[j]] + 1
        inverse = np.empty_like(values)
        below_count = counts - 1
        by_depth = np.argsort(depth, kind="stable")
        level_start = np.searchsorted(depth[by_depth], np.arange(int(depth.max()) + 2))
        for d0, d1 in itertools.pairwise(level_start):
            cols = by_depth[d0:d1]
            size = below_count[cols]
            # the entries below the diagonal of these columns, column by column
            first_entry = np.repeat(ptr[cols] + 1, size)
            local_col = np.repeat(np.arange(cols.size, dtype=np.int64), size)
            starts = np.cumsum(size) - size
            entries = first_entry + (np.arange(first_entry.size, dtype=np.int64)
                                     - np.repeat(starts, size))
            # every pair (e, e') of entries of one column: Z[row e, row e'] l[e']
            one, other = _pairs_in_groups(starts[local_col], size[local_col])
            r1, r2 = rows_of[entries[one]], rows_of[entries[other]]
            at = _pattern_slots(keys, order, r1, r2)
            if at is None:
                raise ArithmeticError("the sparse factor's pattern is not closed")
            # (bincount of nothing is an integer array: a level of roots has no entries)
            column = np.bincount(one, weights=inverse[at] * values[entries[other]],
                                 minlength=entries.size).astype(float) / -pivot[cols][local_col]
            inverse[entries] = column
            dot = np.bincount(local_col, weights=values[entries] * column,
                              minlength=cols.size).astype(float)
            inverse[ptr[cols]] = 1.0 / pivot[cols] ** 2 - dot / pivot[cols]
        return SelectedInverse(keys, inverse, order, self.perm[:order])


@dataclass(frozen=True, eq=False)
class SelectedInverse:
    """Entries of S_z⁻¹ at the pattern of its sparse factor (:meth:`SparseBlock2.
    selected_inverse`), in the analysis' order.

    Attributes
    ----------
    keys
        column·order + row of each entry (row ≥ column), ascending.
    values
        S_z⁻¹'s entry there.
    order
        S_z's order.
    perm
        Pivot k is S_z's row ``perm[k]``.
    """

    keys: np.ndarray
    values: np.ndarray
    order: int
    perm: np.ndarray

    @cached_property
    def _pivot_of(self) -> np.ndarray:
        """The pivot of each of S_s's rows (``perm``'s inverse)."""
        pinv = np.empty(self.order, dtype=np.int64)
        pinv[self.perm] = np.arange(self.order)
        return pinv

    def at(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """S_s⁻¹[i, j] (S_s's own order) at entries inside the factor's pattern;
        ArithmeticError for one outside it."""
        pinv = self._pivot_of
        at = _pattern_slots(self.keys, self.order, pinv[np.asarray(i, dtype=np.int64)],
                            pinv[np.asarray(j, dtype=np.int64)])
        if at is None:
            raise ArithmeticError("an entry outside the sparse factor's pattern")
        return self.values[at]

    def level_blocks(self, start: int, nl: int, nc: int) -> np.ndarray:
        """S_s⁻¹'s (nl, nc, nc) diagonal blocks of a term of ``nl`` levels of ``nc`` rows
        each, from row ``start`` (inside the pattern: a level's rows are coupled)."""
        first = start + np.arange(nl, dtype=np.int64)[:, None, None] * nc
        i = np.broadcast_to(first + np.arange(nc)[None, :, None], (nl, nc, nc))
        j = np.broadcast_to(first + np.arange(nc)[None, None, :], (nl, nc, nc))
        return self.at(i.ravel(), j.ravel()).reshape(nl, nc, nc)

    def inner(self, product: sp.csr_matrix | sp.csc_matrix) -> float | None:
        """Σ_ij S_s⁻¹[i, j] M[i, j] for a sparse M (order x order, S_s's own order) whose
        entries all lie inside the factor's pattern (as B Bᵀ's do for B = L21 L11⁻¹:
        :meth:`quadratic_forms` summed over the groups, from one sparse product instead of
        the pairs of every group); None where one does not."""
        coo = sp.coo_matrix(product)
        pinv = self._pivot_of
        at = _pattern_slots(self.keys, self.order, pinv[coo.row], pinv[coo.col])
        if at is None:
            return None
        return float(self.values[at] @ coo.data)

    def quadratic_forms(self, b: sp.csc_matrix, nc: int, max_pairs: int,
                        chunk_pairs: int = 1 << 21) -> np.ndarray | None:
        """B_lᵀ S_z⁻¹ B_l (nc x nc) for each group l of ``nc`` consecutive columns of ``b``
        (order x nl·nc, rows in S_z's order): the products of B's entries of a group in
        pairs, each with S_z⁻¹ at its two rows (which B's groups keep inside the factor's
        pattern: two rows of one group are rows of one level of the first term, coupled in
        S_z). Groups are taken about ``chunk_pairs`` pairs at a time (~70 bytes a pair while
        they are). None where the pairs would be more than ``max_pairs`` in all or a pair
        falls outside the pattern."""
        nl = b.shape[1] // nc
        b = b.tocsc()
        ptr = b.indptr.astype(np.int64)
        group_start = ptr[::nc]  # group l's entries: group_start[l]:group_start[l + 1]
        sizes = np.diff(group_start)
        pairs = sizes * sizes
        if int(pairs.sum()) > max_pairs:
            return None
        col = np.repeat(np.arange(b.shape[1], dtype=np.int64), np.diff(ptr))
        rows = self._pivot_of[b.indices]
        out = np.zeros(nl * nc * nc)
        bounds = np.searchsorted(np.cumsum(pairs), np.arange(0, int(pairs.sum()), chunk_pairs),
                                 side="right")
        cuts = np.unique(np.concatenate([[0], bounds, [nl]]))
        for g0, g1 in itertools.pairwise(cuts):
            e0, e1 = int(group_start[g0]), int(group_start[g1])
            group = col[e0:e1] // nc
            one, other = _pairs_in_groups(group_start[group] - e0, sizes[group])
            first, second = one + e0, other + e0
            r1, r2 = rows[first], rows[second]
            at = _pattern_slots(self.keys, self.order, r1, r2)
            if at is None:
                return None
            weight = b.data[first] * b.data[second] * self.values[at]
            cell = ((col[first] // nc) * nc + col[first] % nc) * nc + col[second] % nc
            out += np.bincount(cell, weights=weight, minlength=nl * nc * nc)
        return out.reshape(nl, nc, nc)


def _pattern_slots(keys: np.ndarray, order: int, r1: np.ndarray, r2: np.ndarray
                   ) -> np.ndarray | None:
    """The slots in ``keys`` (column·order + row, row ≥ column, ascending) of the entries at
    pivots (r1, r2) or (r2, r1), or None where one lies outside the pattern."""
    query = np.minimum(r1, r2) * order + np.maximum(r1, r2)
    at = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return at if np.array_equal(keys[at], query) else None


def _pairs_in_groups(group_start: np.ndarray, group_size: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair of entries of one group, for entries laid out group after group:
    entry i belongs to the group of ``group_size[i]`` entries starting at position
    ``group_start[i]``. Positions (i, j) of the pairs, each entry's pairs together."""
    one = np.repeat(np.arange(group_size.size, dtype=np.int64), group_size)
    within = np.arange(one.size, dtype=np.int64) - np.repeat(np.cumsum(group_size)
                                                             - group_size, group_size)
    return one, np.repeat(group_start, group_size) + within
