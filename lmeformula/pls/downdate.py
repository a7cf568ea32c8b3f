"""The blocked engine's downdate plan: which entries of G B Gᵀ can be non-zero and the matrix C
with (G B Gᵀ)[keys] = C vec(B_groups) (pairs of G's entries listed, or per-group Gram
matrices when the pairs are too many), formed once per model."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from .memory import release_freed_memory
from .system import _policy
from .threads import blas_threads

# the dtypes a row chunk of C may be stored in, narrowest first: each holds some float64
# values exactly (counts below 256 or 65,536; values float32 rounds to themselves)
_NARROW = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32), np.dtype(np.float64))


class CompactRows:
    """A dense float64 matrix (rows x columns) stored by chunks of rows, each in the narrowest
    dtype of ``_NARROW`` that holds its values exactly, multiplied by a vector chunk by chunk
    in float64.

    The per-group Gram matrices of the downdate (:func:`_group_grams`) are co-occurrence
    counts where weights are unit and both terms are intercepts (the 10⁴ x 10³ crossed
    design: 503,506 keys x 72 groups, every count below 80): as uint8 they take 36 MB
    instead of 277 MB. ``self @ v`` converts each chunk back to float64 (a cache-sized
    buffer) and multiplies it by BLAS as the float64 matrix was: the same numbers in the same
    dgemv. Chunks are whole multiples of 8 rows, so that OpenBLAS's kernel (rows in fours,
    each thread's share half a chunk) adds every row as it does in one product over the
    whole matrix on one thread (checked bit for bit on the crossed design, one and two
    threads); it is also faster, reading an eighth of the bytes (16 against 24 ms there).

    Attributes
    ----------
    shape
        (rows, columns) of the matrix.
    starts
        First row of each chunk, and the end.
    chunks
        The chunks (C order), each in its own dtype.
    """

    __slots__ = ("chunks", "shape", "starts")

    def __init__(self, shape: tuple[int, int], starts: np.ndarray,
                 chunks: list[np.ndarray]) -> None:
        self.shape = shape
        self.starts = starts
        self.chunks = chunks

    @staticmethod
    def chunk_starts(rows: int, cols: int) -> np.ndarray:
        """Chunk boundaries: ~1 MB of float64 per chunk (fewer calls cost more: 256 rows of 72
        columns took 30 ms a product on the crossed design), a multiple of 8 rows each (at
        least 8), then the last rows % 8 alone (too few for OpenBLAS to share out)."""
        step = max(8, (2**17 // max(cols, 1)) // 8 * 8)
        whole = rows - rows % 8
        return np.unique(np.concatenate([np.arange(0, whole, step), [whole, rows]])
                         ).astype(np.int64)

    @property
    def nbytes(self) -> int:
        """Bytes held by the chunks."""
        return sum(c.nbytes for c in self.chunks)

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        out = np.empty(self.shape[0])
        if not self.chunks:
            return out
        buf = np.empty((max(c.shape[0] for c in self.chunks), self.shape[1]))
        for lo, chunk in zip(self.starts[:-1].tolist(), self.chunks, strict=True):
            hi = lo + chunk.shape[0]
            if chunk.dtype == np.float64:
                np.matmul(chunk, v, out=out[lo:hi])
            else:
                part = buf[: hi - lo]
                np.copyto(part, chunk, casting="unsafe")  # exact: the values fit the dtype
                np.matmul(part, v, out=out[lo:hi])
        return out

    def toarray(self) -> np.ndarray:
        """The matrix as one float64 array."""
        out = np.empty(self.shape)
        for lo, chunk in zip(self.starts[:-1].tolist(), self.chunks, strict=True):
            out[lo : lo + chunk.shape[0]] = chunk
        return out


def _counts(values: np.ndarray) -> np.ndarray:
    """Which of ``values`` are counts: non-negative integers (not -0.0, which is not a count,
    nor NaN)."""
    return (values == np.floor(values)) & ~np.signbit(values)


def _narrowest(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For each chunk ``starts[i]:starts[i+1]`` of ``values`` (float64), the index in
    ``_NARROW`` of the narrowest dtype that holds all its values exactly."""
    lo = starts[:-1]
    whole = np.logical_and.reduceat(_counts(values), lo)
    top = np.maximum.reduceat(values, lo)
    with np.errstate(over="ignore", invalid="ignore"):
        single = np.logical_and.reduceat(values.astype(np.float32) == values, lo)
    level = np.where(single, 2, 3)
    level[whole & (top <= 65535)] = 1
    level[whole & (top <= 255)] = 0
    return level


class _ApartLayout(NamedTuple):
    """How :func:`_counts_apart` holds a column, decided from its chunks' statistics: the
    counts' dtype, whether counts above 255 are kept apart with the other values, and how
    many values are kept apart."""

    dtype: np.dtype[Any]
    above_255_apart: bool
    napart: int


def _apart_layout(chunks: Iterable[np.ndarray], n: int) -> _ApartLayout:
    """:func:`_counts_apart`'s layout of a column of ``n`` values given as ``chunks`` (in
    order): small counts (non-negative integers up to 65535) are held as uint8 or uint16,
    the others apart; counts above 255 are kept apart too where they are few (at most one
    in 16), so that the rest are bytes."""
    top, above, other = 0.0, 0, 0
    for values in chunks:
        small = _counts(values) & (values <= 65535)
        if values.size:
            top = max(top, float(np.where(small, values, 0.0).max()))
        above += int(np.count_nonzero(small & (values > 255)))
        other += int(np.count_nonzero(~small))
    apart = top > 255 and above * 16 <= n
    dtype = np.dtype(np.uint8 if top <= 255 or apart else np.uint16)
    return _ApartLayout(dtype, apart, other + (above if apart else 0))


def _apart_chunk(values: np.ndarray, layout: _ApartLayout) -> tuple[np.ndarray, np.ndarray]:
    """A chunk of a column held as ``layout`` says: its counts in the layout's dtype (zeros
    where a value is kept apart) and the positions in the chunk of the values kept apart."""
    count = _counts(values) & (values <= (255 if layout.above_255_apart else 65535))
    return np.where(count, values, 0.0).astype(layout.dtype), np.flatnonzero(~count)


def _counts_apart(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (float64) with their small counts as uint8 or uint16, zeros elsewhere, and
    the positions of the other values (kept apart as float64 by the caller), as
    :func:`_apart_layout` decides: the keys of the intercept's row hold a level's count
    times another's, often above 255, beside ~90 keys of unit counts each."""
    return _apart_chunk(values, _apart_layout([values], values.shape[0]))


def _widened(values: np.ndarray, wide_at: np.ndarray, wide_values: np.ndarray, start: int,
             stop: int, out: np.ndarray | None = None) -> np.ndarray:
    """Entries ``start:stop`` of values held narrow (``values`` in a narrow dtype, zeros at
    the sorted positions ``wide_at``, whose float64 values are ``wide_values``) as float64,
    exactly as they were, zeros' signs included: into ``out`` (their length) or a new array."""
    if out is None:
        out = np.empty(stop - start)
    np.copyto(out, values[start:stop], casting="unsafe")  # exact: the values fit the dtype
    a, b = np.searchsorted(wide_at, [start, stop])
    out[wide_at[a:b] - start] = wide_values[a:b]
    return out


class NarrowColumns:
    """G's columns (a CSC matrix) held narrow for the Gram matrices' dense panels: row indices
    as uint16 where m allows, the values that are small counts (non-negative integers up to
    65535, as unit weights make every entry of the random effects' rows) as uint8 or uint16,
    the others (X's and y's rows) as float64 beside their positions. :meth:`panel` gives the
    columns ``lo:hi`` as a dense Fortran-order array equal, entry for entry, to scipy's
    ``toarray`` of them (signed zeros as ``toarray`` adds them: +0.0), so the Gram matrices
    are the same numbers; the 10⁴ x 10³ crossed design holds 3 MB here where the CSC copy of G
    held 11 MB beside the Gram matrices."""

    __slots__ = ("indptr", "m", "rows", "values", "wide_at", "wide_values")

    def __init__(self, gc: sp.csc_matrix) -> None:
        self.m = int(gc.shape[0])
        self.indptr = gc.indptr.astype(np.int64)
        self.rows = gc.indices.astype(np.uint16 if self.m <= 65536 else np.int32)
        data = gc.data
        self.values, wide_at = _counts_apart(data)
        self.wide_at = wide_at.astype(np.int32) if data.shape[0] < 2**31 else wide_at
        self.wide_values = data[self.wide_at]  # exactly, zeros' signs included

    def entries(self, start: int, stop: int, index: type[np.signedinteger[Any]],
                ) -> tuple[np.ndarray, np.ndarray]:
        """The stored entries ``start:stop`` (in CSC order): their rows as ``index`` and
        their values as float64, exactly as the CSC matrix held them."""
        rows = self.rows[start:stop].astype(index)
        return rows, _widened(self.values, self.wide_at, self.wide_values, start, stop)

    def panel(self, lo: int, hi: int) -> np.ndarray:
        """Columns ``lo:hi`` as a dense (m x (hi - lo)) Fortran-order float64 array."""
        start, stop = int(self.indptr[lo]), int(self.indptr[hi])
        out = np.zeros((self.m, hi - lo), order="F")
        cols = np.repeat(np.arange(hi - lo), np.diff(self.indptr[lo : hi + 1]))
        out[self.rows[start:stop], cols] = self.values[start:stop]
        a, b = np.searchsorted(self.wide_at, [start, stop])
        at = self.wide_at[a:b]
        out[self.rows[at], cols[at - start]] = self.wide_values[a:b] + 0.0  # -0.0 -> +0.0,
        return out  # as toarray's sums make it


def _group_grams(gc: NarrowColumns, sorted_group: np.ndarray, ngroups: int, m: int,
                 keys: np.ndarray, panel: int = 2048) -> CompactRows:
    """C for the downdate when the pairs are too many to list (scalar first term): column
    g holds, at the keys, the Gram matrix G_g G_gᵀ of the levels in group g (their columns
    of G, consecutive in ``gc``), formed by dsyrk over dense panels of at most ``panel``
    levels. Per θ the downdate is then one dense matrix-vector product with the groups'
    B (the 10⁴ x 10³ crossed design: 10⁸ pairs, ~70 groups of equal counts). Stored as
    :class:`CompactRows`, each chunk of keys widened only when a group's values need it
    (the float64 matrix is never formed)."""
    # each key's flat position in the Fortran-order Gram matrix (row + column·m), 32-bit
    # where m² allows: one index array where rows and columns were two of int64
    rows, cols = np.divmod(keys, m)
    at: np.ndarray = cols.astype(np.int32 if m * m < 2**31 else np.int64)
    np.multiply(at, m, out=at)
    np.add(at, rows, out=at, casting="unsafe")  # exact: every position is below m²
    del rows, cols
    nkeys = keys.shape[0]
    starts = CompactRows.chunk_starts(nkeys, ngroups)
    chunks = [np.zeros((int(hi - lo), ngroups), dtype=_NARROW[0])
              for lo, hi in itertools.pairwise(starts)]
    level = np.zeros(len(chunks), dtype=np.int64)
    # spans of chunks of about 2¹⁷ keys (the last span ends at the last chunk)
    spans = np.unique(np.append(np.searchsorted(starts[:-1], np.arange(0, nkeys, 1 << 17)),
                                len(chunks))) if nkeys else np.zeros(1, dtype=np.int64)
    group_starts = np.searchsorted(sorted_group, np.arange(ngroups + 1))
    for grp in range(ngroups):
        gram = np.zeros((m, m), order="F")
        for lo in range(group_starts[grp], group_starts[grp + 1], panel):
            hi = min(lo + panel, group_starts[grp + 1])
            dense = gc.panel(lo, hi)  # Fortran order made directly
            with blas_threads(None, order=m):  # threaded dsyrk crashes at large m
                gram = la.blas.dsyrk(1.0, dense, beta=1.0, c=gram, lower=0, overwrite_c=1)
        flat = gram.ravel(order="F")
        # the keys' values (on or above the diagonal) a span of chunks at a time: ~1 MB of
        # float64 and its dtype tests rather than a column of every key (4 MB at 10⁶ rows)
        for c0, c1 in itertools.pairwise(spans):
            column = flat[at[starts[c0] : starts[c1]]]
            need = np.maximum(level[c0:c1], _narrowest(column, starts[c0 : c1 + 1] - starts[c0]))
            for i in (c0 + np.flatnonzero(need > level[c0:c1])).tolist():
                chunks[i] = chunks[i].astype(_NARROW[need[i - c0]])  # exact: it held narrower
            level[c0:c1] = need
            for i in range(c0, c1):
                chunks[i][:, grp] = column[starts[i] - starts[c0] : starts[i + 1] - starts[c0]]
        del gram, flat
    return CompactRows((nkeys, ngroups), starts, chunks)


def _downdate_pattern(g: sp.csr_matrix, nc: int, nl: int, m: int, level_group: np.ndarray,
                      ngroups: int, key_order: Callable[[np.ndarray], np.ndarray] | None = None,
                      sources: bool = False,
                      ) -> tuple[np.ndarray,
                                 sp.csr_matrix | sp.csc_matrix | CompactRows | NarrowPairs | None,
                                 tuple[np.ndarray, np.ndarray] | None]:
    """The entries (i <= j) of G B Gᵀ that can be non-zero, and a matrix C with
    ``(G B Gᵀ)[keys] = C @ vec(B_groups)``: each row sums, over the levels l and column pairs
    (a, b) of the first term, G[i, (l,a)] G[j, (l,b)] B_l[a, b], where levels in the same
    group (``level_group``) have the same B_l and share a column. Formed once; per θ the
    downdate is one sparse matrix-vector product. ``key_order`` (optional) orders the
    distinct keys (a permutation of them); by default they are sorted. ``sources`` (one
    level per group only): also return, for each stored entry of C, the positions in
    ``g.data`` of its two factors, so that C's values follow new values of G (C is then
    CSR, whose entries those positions follow; else CSC, the faster per-θ product)."""
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
    if not _policy().list_pairs(total):
        # the pattern of G Gᵀ from G's pattern (ones: no cancellation), not its values
        ones = sp.csr_matrix((np.ones(g.nnz), g.indices, g.indptr), shape=g.shape)
        gbg = (ones @ ones.T).tocoo()
        del ones
        upper = gbg.row <= gbg.col
        keys = np.unique(gbg.row[upper].astype(np.int64) * m + gbg.col[upper])
        del gbg, upper  # gone before the Gram matrices are formed
        if key_order is not None:
            keys = keys[key_order(keys)]
        if (nc == 1 and total and not sources
                and _policy().group_grams(keys.shape[0] * ngroups)):
            # the pattern product's pages (~30 MB on a 10⁶-row design) back to the system
            # before the Gram matrices are formed beside them (see release_freed_memory)
            columns = NarrowColumns(gc)
            del gc  # the narrow copy alone is held beside the Gram matrices
            release_freed_memory()
            return keys, _group_grams(columns, sorted_group, ngroups, m, keys), None
        return keys, None, None
    # 32-bit indices where they fit: this is memory-bound work on ~total entries
    small = m * m < 2**31 and gc.nnz < 2**31
    index: type[np.signedinteger[Any]] = np.int32 if small else np.int64
    if (nc == 1 and src is None and total > _PAIRS_CHUNK
            and m * m <= _policy().key_table):
        # G's columns held narrow while the plan is built (the 10⁵ x 2,000 crossed design:
        # 4 MB where the CSC copy took 16 beside the accumulator and the columns of C)
        columns = NarrowColumns(gc)
        freed = gc.nnz * 24  # two CSC copies of 12 bytes an entry
        del gc
        if freed > _RELEASE_BYTES:
            # the CSC copies' pages back to the system: the plan's arrays would otherwise be
            # laid out beside them, and the heap keep both (see release_freed_memory)
            release_freed_memory()
        return _chunked_scalar_pairs(columns, seg, sorted_group, ngroups, m, index, key_order)
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
        # products in place: each array of ``total`` entries is made once (the 10⁵ x 2,000
        # crossed design: 8·10⁶ pairs, 31 MB per 32-bit array, 62 MB per float array)
        key = np.repeat(rows, count)
        key *= index(m)
        key += rows[r]
        values = np.repeat(gc.data, count)
        values *= gc.data[r]
        if src is not None:
            p = np.repeat(entries, count)
        else:
            del r  # the positions are needed only to trace the sources
    else:
        # every pair (p, r) of a level's entries, in narrow integers and in place where they
        # fit, each temporary released as soon as it is used: the same pairs in the same order
        # as with 64-bit arrays, where those held ~80 bytes a pair (5·10⁵ rows of (x | s) +
        # (1 | t): 1.8 GB against lme4's 0.6 GB)
        pair_index = index if total < 2**31 and ngroups * nc * nc < 2**31 else np.int64
        kk2 = k * k
        level = np.repeat(np.arange(nl, dtype=pair_index), kk2)
        t = np.arange(total, dtype=pair_index)
        t -= np.repeat((np.cumsum(kk2) - kk2).astype(pair_index), kk2)
        kk = k.astype(pair_index)[level]
        p, r = np.divmod(t, kk)
        del t, kk
        base = seg.astype(pair_index)[level]
        p += base
        r += base
        del base
        keep = rows[p] <= rows[r]
        p, r, level = p[keep], r[keep], level[keep]
        del keep
        entry_col = (np.repeat(np.arange(gc.shape[1], dtype=pair_index), np.diff(gc.indptr))
                     % nc)
        col = sorted_group.astype(pair_index)[level]
        del level
        col *= nc * nc
        col += entry_col[p] * nc
        col += entry_col[r]
        del entry_col
        order = np.argsort(col, kind="stable")
        p, r, col = p[order], r[order], col[order]
        del order
        key = rows[p] * index(m)
        key += rows[r]
        values = gc.data[p] * gc.data[r]
    keys, key_index = _index_keys(key, m, key_order)
    del key  # gone before the matrix is built from the entries
    # col is non-decreasing, and building CSR keeps each row's entries in that order, so
    # that the duplicates (a key met by several levels of one group) are summed in it
    ncol = ngroups * nc * nc
    pairs = sp.csr_matrix((values, (key_index, col)),
                          shape=(keys.shape[0], ncol))
    del values  # copied into the matrix; the entries' indices are needed only for sources
    if src is None:
        del key_index, col
    pairs.sum_duplicates()
    if src is None:
        # stored by columns (groups) for the per-θ product: scipy's CSC product adds each
        # row's terms in column order from 0.0, as its CSR product does (the same numbers),
        # reading the vector in order (InstEval: 1.1 ms an evaluation against 1.7)
        return keys, pairs.tocsc(), None
    # one level per group: no duplicates, and C's entries are in (key, column) order
    order = np.lexsort((col, key_index))
    if order.shape[0] != pairs.nnz:
        raise AssertionError("duplicate entries in an ungrouped downdate plan")
    return keys, pairs, (src[p[order]], src[r[order]])


# pairs per piece when the scalar pairs plan is built group by group: a piece's lists take
# about 40 bytes a pair while it is summed
_PAIRS_CHUNK = 1_000_000
# freed bytes from which the plan's build gives freed pages back to the system before going
# on (below, glibc's heap reuses them soon enough, and ``malloc_trim`` costs milliseconds)
_RELEASE_BYTES = 16 * 2**20


def _scalar_pairs(gc: NarrowColumns, seg: np.ndarray, sorted_group: np.ndarray, lo: int,
                  hi: int, m: int, index: type[np.signedinteger[Any]], keys_only: bool = False,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Key, value and column of the pairs of G's entries of levels ``lo:hi`` (scalar first
    term, levels in group order): the slice ``lo:hi`` of what :func:`_downdate_pattern`
    lists for all levels, in the same order (``keys_only``: the keys, and empty values and
    columns)."""
    e0, e1 = int(seg[lo]), int(seg[hi])
    rows, data = gc.entries(e0, e1, index)
    k = np.diff(seg[lo : hi + 1])
    entry_level = np.repeat(np.arange(lo, hi, dtype=index), k)
    entries = np.arange(rows.shape[0], dtype=index)
    count = (seg[1:][entry_level] - e0) - entries  # partners at or after each entry
    first = (np.cumsum(count) - count).astype(index)
    r = np.arange(int(count.sum()), dtype=index)
    r -= np.repeat(first - entries, count)
    # the pair (e, f) of rows e <= f (ascending within a level) by its position in the upper
    # triangle read by rows, e·m - e(e + 1)/2 + f: a table over it has m(m + 1)/2 entries,
    # where the flat position e·m + f needs m² (the 10⁵ x 2,000 crossed design: 8 MB less)
    key = np.repeat(rows * index(m) - rows * (rows + 1) // 2, count)
    key += rows[r]
    if keys_only:  # which keys occur: no values (8 bytes a pair) nor columns to make
        return key, np.empty(0), np.empty(0, dtype=index)
    col = np.repeat(sorted_group.astype(index)[entry_level], count)
    values = np.repeat(data, count)
    values *= data[r]
    return key, values, col


def _chunked_scalar_pairs(gc: NarrowColumns, seg: np.ndarray, sorted_group: np.ndarray,
                          ngroups: int, m: int, index: type[np.signedinteger[Any]],
                          key_order: Callable[[np.ndarray], np.ndarray] | None,
                          ) -> tuple[np.ndarray, sp.csc_matrix | NarrowPairs, None]:
    """The grouped scalar pairs plan built a few groups at a time, so that the lists of pairs
    are never all in memory (the 10⁵ x 2,000 crossed design: 8·10⁶ pairs, 250 MB of lists
    and conversions at once): runs of consecutive groups of at most an eighth of
    ``_PAIRS_CHUNK`` pairs together are listed and summed as the one-piece build does
    (:func:`_run_columns`), a larger group a piece at a time (:func:`_level_pieces`) into an
    accumulator (:func:`_large_group_column`). Equal to the one-piece build entry for entry: a
    duplicate key lies within one group (one column), and the one-piece build sums a key's
    pairs of one group in the order they are listed, from the first (scipy's CSR conversion
    keeps that order and adds neighbours); the accumulator adds each pair in that order,
    starting at -0.0 (``-0.0 + v`` is ``v`` for every v, zeros' signs included). Each
    group's sums are one column of C (its distinct keys, ascending), placed into the
    result's arrays once the rows' lengths are known."""
    nl = sorted_group.shape[0]
    k = np.diff(seg)
    level_pairs = np.cumsum(k * (k + 1) // 2)  # pairs of levels 0..l
    group_end = np.searchsorted(sorted_group, np.arange(1, ngroups + 1))  # levels of g: ..end
    present = np.zeros(m * (m + 1) // 2, dtype=bool)  # by triangular position
    for lo, hi in _level_pieces(level_pairs, 0, nl):
        key, _, _ = _scalar_pairs(gc, seg, sorted_group, lo, hi, m, index, keys_only=True)
        present[key] = True
    del key
    dtype = np.dtype(index)
    # 32-bit (m² is below 2³¹ here), a chunk at a time: int64 lists over every key at once
    # made the 10⁵ x 2,000 crossed design's setup peak here
    tri = _nonzero(present, dtype)
    if key_order is None:
        keys = _flat_positions(tri, m)  # in the same (ascending) order
        position = np.cumsum(present, dtype=dtype)
        position -= 1
        del present, tri
    else:
        del present
        keys, position = _ordered_keys(tri, m, key_order)
        del tri
    nkeys = keys.shape[0]
    release = nkeys * 24 > _RELEASE_BYTES
    if release:  # the ordering's temporaries, likewise
        release_freed_memory()
    columns: list[_HeldColumn] = []  # per group: its keys' rows and sums
    held_rows = _narrow_rows(nkeys, ngroups)
    run_pairs = max(1, _PAIRS_CHUNK // 8)
    runs = [(g0, g1, int(group_end[g0 - 1]) if g0 else 0, int(group_end[g1 - 1]))
            for g0, g1 in _group_runs(level_pairs, group_end, run_pairs)]
    large = [_pairs_of(level_pairs, lo, end) > run_pairs for _, _, lo, end in runs]
    last_large = max((i for i, big in enumerate(large) if big), default=-1)
    # a large group's sums per key (-0.0 where it has none yet) and the keys it has met,
    # held only from the first large group to the last (16 MB beside the other runs)
    acc = met = np.zeros(0)
    for i, (g0, g1, lo, end) in enumerate(runs):
        if not large[i]:
            columns.extend(_run_columns(gc, seg, sorted_group, lo, end, g0, g1, m, index,
                                        position, nkeys, held_rows))
        else:
            if acc.shape[0] != nkeys:
                acc, met = np.full(nkeys, -0.0), np.zeros(nkeys, dtype=bool)
            columns.append(_large_group_column(gc, seg, sorted_group, lo,
                                               int(group_end[g0]), level_pairs, m, index,
                                               position, acc, met, held_rows))
        if i == last_large:
            acc = met = np.zeros(0)
        if release:
            # each run's freed lists back to the system: the columns held since lie
            # between them in the heap, which would otherwise grow by the holes
            release_freed_memory()
    del position
    # the runs' and pieces' freed lists back to the system before C's arrays are made beside
    # the columns (glibc keeps them in its heap: 4 MB more resident at this peak)
    release_freed_memory()
    nnz = sum(int(c.rows.shape[0]) for c in columns)
    if (nnz * (8 + np.dtype(index).itemsize) > _policy().max_wide_pairs_bytes
            and len(columns) <= NarrowPairs.MAX_COLUMNS):
        return keys, _narrow_pairs_from_columns(columns, nkeys), None
    return keys, _csc_from_columns(columns, nkeys), None


_INDEX_CHUNK = 1 << 18  # entries per chunk of the index conversions below


def _nonzero(mask: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """``np.flatnonzero(mask)`` as ``dtype``, without its int64 array over every entry."""
    parts = [np.flatnonzero(mask[lo : lo + _INDEX_CHUNK]).astype(dtype) + dtype.type(lo)
             for lo in range(0, mask.shape[0], _INDEX_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _ordered_keys(tri: np.ndarray, m: int, key_order: Callable[[np.ndarray], np.ndarray],
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The keys' flat positions in ``key_order``'s order, and the table from each triangular
    position (``tri``: those present, ascending) to its key's index in that order. The
    table is filled and the keys reordered a chunk at a time: the whole-array gathers and
    ``arange`` (three arrays over every key beside the table) made the 10⁵ x 2,000 crossed
    design's setup peak here."""
    dtype = tri.dtype
    order = key_order(_flat_positions(tri, m))
    position = np.empty(m * (m + 1) // 2, dtype=dtype)
    keys = np.empty_like(tri)
    for lo in range(0, order.shape[0], _INDEX_CHUNK):
        chunk = tri[order[lo : lo + _INDEX_CHUNK]]
        hi = lo + chunk.shape[0]
        position[chunk] = np.arange(lo, hi, dtype=dtype)
        keys[lo:hi] = _flat_positions(chunk, m)
    return keys, position


def _flat_positions(tri: np.ndarray, m: int) -> np.ndarray:
    """The flat positions e·m + f (``tri``'s dtype, a chunk at a time) of an m x m matrix's
    upper-triangle entries given by their triangular positions e·m - e(e + 1)/2 + f
    (:func:`_scalar_pairs`' keys)."""
    e = np.arange(m, dtype=np.int64)
    starts = e * m - e * (e - 1) // 2  # the triangular position of (e, e)
    out = np.empty_like(tri)
    for lo in range(0, tri.shape[0], _INDEX_CHUNK):
        t = tri[lo : lo + _INDEX_CHUNK]
        row = np.searchsorted(starts, t, side="right") - 1
        out[lo : lo + t.shape[0]] = t + row * (row + 1) // 2
    return out


def _pairs_of(level_pairs: np.ndarray, lo: int, end: int) -> int:
    """Pairs listed for levels ``lo:end`` (``level_pairs``: cumulative through each level)."""
    return int(level_pairs[end - 1] - (level_pairs[lo - 1] if lo else 0))


def _group_runs(level_pairs: np.ndarray, group_end: np.ndarray, budget: int,
                ) -> list[tuple[int, int]]:
    """Groups cut into runs ``g0:g1`` of consecutive groups whose pairs together are at most
    ``budget`` (several small groups listed at once: InstEval's 86 groups of students with
    equally many ratings in nine runs, where one at a time cost 0.1 s of Python calls),
    each larger group a run of its own."""
    runs = []
    g0, start, ngroups = 0, 0, group_end.shape[0]
    while g0 < ngroups:
        g1 = g0 + 1
        while (g1 < ngroups
               and _pairs_of(level_pairs, start, int(group_end[g1])) <= budget):
            g1 += 1
        runs.append((g0, g1))
        start = int(group_end[g1 - 1])
        g0 = g1
    return runs


def _run_columns(gc: NarrowColumns, seg: np.ndarray, sorted_group: np.ndarray, lo: int,
                 end: int, g0: int, g1: int, m: int, index: type[np.signedinteger[Any]],
                 position: np.ndarray, nkeys: int, held_rows: int | None = None,
                 ) -> list[_HeldColumn]:
    """Columns ``g0:g1`` of C (groups of levels ``lo:end``, their pairs at most an eighth of
    ``_PAIRS_CHUNK``: the CSR and CSC copies and an index pointer over every key make a
    run's pairs cost about twice a piece's in the accumulator) as the one-piece build makes
    them: the pairs listed, converted to CSR and summed by scipy (a key's pairs of one group
    added in the order listed), then read column by column (rows ascending), each column
    held narrow (:func:`_held_column`)."""
    key, values, col = _scalar_pairs(gc, seg, sorted_group, lo, end, m, index)
    at = position[key]
    del key
    col -= index(g0)
    piece = sp.csr_matrix((values, (at, col)), shape=(nkeys, g1 - g0))
    del values, at, col
    piece.sum_duplicates()
    by_col = piece.tocsc()  # a permutation of the entries: no arithmetic
    del piece
    dtype = position.dtype
    out = []
    for j in range(g1 - g0):
        a, b = int(by_col.indptr[j]), int(by_col.indptr[j + 1])
        out.append(_held_column(by_col.indices[a:b].astype(dtype), by_col.data[a:b],
                                held_rows))
    return out


def _large_group_column(gc: NarrowColumns, seg: np.ndarray, sorted_group: np.ndarray,
                        first: int, end: int, level_pairs: np.ndarray, m: int,
                        index: type[np.signedinteger[Any]], position: np.ndarray,
                        acc: np.ndarray, met: np.ndarray, held_rows: int | None = None,
                        ) -> _HeldColumn:
    """The column of C of one group of more than an eighth of ``_PAIRS_CHUNK`` pairs (levels
    ``first:end``), its pairs listed a piece at a time and added in the order listed into
    ``acc`` (all -0.0 on entry and on return; ``met``: all False, likewise)."""
    nkeys = acc.shape[0]
    touched: list[np.ndarray] = []
    by_mask = _pairs_of(level_pairs, first, end) * 8 > nkeys  # keys met: by a mask, or sort
    for lo, hi in _level_pieces(level_pairs, first, end):
        key, values, _ = _scalar_pairs(gc, seg, sorted_group, lo, hi, m, index)
        at = position[key]
        del key
        np.add.at(acc, at, values)  # in the order listed, as the one-piece build adds
        del values
        if by_mask:
            met[at] = True
        else:
            touched.append(at)
        del at
    if by_mask:
        rows = _nonzero(met, position.dtype)  # no int64 array of the keys met
        met[rows] = False
    else:
        rows = np.unique(np.concatenate(touched))
    del touched
    held = _held_column_of(rows, lambda lo, hi: acc[rows[lo:hi]], held_rows)
    acc[rows] = -0.0
    return held


# rows per block of a held column: within a block its rows are held as 16-bit offsets
_ROW_BLOCK = 1 << 16


def _narrow_rows(nkeys: int, ngroups: int) -> int | None:
    """``nkeys`` where a plan of that many keys and groups holds its columns' rows and counts
    as narrow as it can (from 2²⁰ keys: the 10⁵ x 2,000 crossed design has 1.75·10⁶, InstEval
    1.5·10⁵; and only for the few groups a narrow C is held for: each column pays a fixed
    cost, which on 10⁵ groups of one level each, as case weights make them, took the setup
    from 6.8 to 12.6 s under the profiler), else None."""
    return nkeys if nkeys >= 1 << 20 and ngroups <= NarrowPairs.MAX_COLUMNS else None


class _HeldColumn(NamedTuple):
    """A column of C while the plan is built, until C's arrays are made: its rows and its
    sums held narrow (``values``, in the narrowest dtype of ``_NARROW`` that holds them
    exactly; or, where a few of them are not small counts, the counts as bytes with zeros at
    ``wide_at`` and those few as float64 in ``wide_values``). With ``cuts``, ``rows`` are the
    rows' offsets (uint16) in blocks of ``_ROW_BLOCK`` rows, entries ``cuts[h]:cuts[h + 1]``
    in block h; else the rows themselves."""

    rows: np.ndarray
    values: np.ndarray
    wide_at: np.ndarray
    wide_values: np.ndarray
    cuts: np.ndarray | None = None

    def rows_of(self, start: int, stop: int) -> np.ndarray:
        """The rows (int64) of entries ``start:stop``."""
        if self.cuts is None:
            return self.rows[start:stop].astype(np.int64)
        out = np.empty(stop - start, dtype=np.int64)
        cuts = self.cuts
        first = int(np.searchsorted(cuts, start, side="right")) - 1
        for block in range(max(first, 0), cuts.shape[0] - 1):  # a block's rows at a time
            a, b = max(int(cuts[block]), start), min(int(cuts[block + 1]), stop)
            if a >= stop:
                break
            if a < b:
                np.add(self.rows[a:b], np.int64(block * _ROW_BLOCK),
                       out=out[a - start : b - start])
        return out

    def entry_at(self, row: int) -> int:
        """The first entry whose row is ``row`` or later."""
        if self.cuts is None:
            return int(np.searchsorted(self.rows, row))
        block = row // _ROW_BLOCK
        if block >= self.cuts.shape[0] - 1:
            return int(self.rows.shape[0])
        a, b = int(self.cuts[block]), int(self.cuts[block + 1])
        return a + int(np.searchsorted(self.rows[a:b], row % _ROW_BLOCK))


def _held_column(rows: np.ndarray, sums: np.ndarray, nrows: int | None = None,
                 bytes_first: bool = False) -> _HeldColumn:
    """``sums`` (float64) held as narrow as they are exactly: the products of two intercept
    terms' entries are co-occurrence counts, while the keys of X's and y's rows hold real
    values, a few per column (the 10⁵ x 2,000 crossed design: 52 MB of columns held as
    float64 beside C's arrays, 25 MB split). With ``nrows`` (the column's length; ``rows``
    ascending), the rows are held as 16-bit offsets in blocks (9 MB less there), and
    counts as bytes with the few above 255 apart (``bytes_first``: 4 MB less there; each
    costs a little time, so a small plan's columns are held without them)."""
    return _held_column_of(rows, lambda lo, hi: sums[lo:hi], nrows, bytes_first)


def _held_column_of(rows: np.ndarray, sums_of: Callable[[int, int], np.ndarray],
                    nrows: int | None = None, bytes_first: bool = False) -> _HeldColumn:
    """:func:`_held_column` of the sums ``sums_of(lo, hi)`` (entries ``lo:hi``, float64),
    read a chunk at a time, two or three times (the dtype, the values kept apart when some
    are, the values): a large group's column is held from its accumulator without a float64
    copy of its sums and their temporaries (on the 10⁵ x 2,000 crossed design ~1 MB a chunk
    where the whole column's took ~17 MB at the setup's peak)."""
    n = rows.shape[0]
    cuts = None
    if nrows is not None:
        blocks = -(-nrows // _ROW_BLOCK)
        if blocks > 1:
            cuts = np.searchsorted(rows, np.arange(blocks + 1, dtype=np.int64) * _ROW_BLOCK)
            rows = (rows % _ROW_BLOCK).astype(np.uint16)
        else:
            rows = rows.astype(np.uint16)
        bytes_first = True
    starts = list(range(0, n, _INDEX_CHUNK))

    def chunks() -> Iterator[np.ndarray]:
        return (sums_of(lo, min(lo + _INDEX_CHUNK, n)) for lo in starts)

    # the narrowest dtype of the whole column: the widest of its chunks' (a count up to
    # 65535 is exact in float32, so the levels order the chunks' needs)
    level = max((int(_narrowest(c, np.array([0, c.shape[0]]))[0]) for c in chunks()
                 if c.size), default=0)
    layout = None
    if not (level == 0 or (level == 1 and not bytes_first)):  # not counts throughout
        layout = _apart_layout(chunks(), n)
        if ((level == 1 and layout.dtype == _NARROW[1])  # wider counts, too many apart
                or layout.napart * 4 > n):  # mostly other values: the column as it is
            layout = None
    if layout is None:
        values = np.empty(n, dtype=_NARROW[level])
        for lo, c in zip(starts, chunks(), strict=True):
            values[lo : lo + c.shape[0]] = c  # exact: the values fit the dtype
        return _HeldColumn(rows, values, np.empty(0, dtype=np.int32), np.empty(0), cuts)
    values = np.empty(n, dtype=layout.dtype)
    wide_at, wide_values = [], []
    for lo, c in zip(starts, chunks(), strict=True):
        values[lo : lo + c.shape[0]], at = _apart_chunk(c, layout)
        wide_at.append((at + lo).astype(np.int32))
        wide_values.append(c[at])
    return _HeldColumn(rows, values, np.concatenate(wide_at), np.concatenate(wide_values),
                       cuts)


def _level_pieces(level_pairs: np.ndarray, lo: int, end: int) -> list[tuple[int, int]]:
    """Levels ``lo:end`` cut into ranges of about an eighth of ``_PAIRS_CHUNK`` pairs (at
    least one level each; ``level_pairs``: the cumulative pairs through each level). A
    piece's lists and their temporaries take ~32 bytes a pair at once: 125,000 pairs, 4 MB,
    beside the accumulator and the columns already held (a million took the 10⁵ x 2,000
    crossed design's setup 24 MB higher, a quarter of a million 4-8 MB; the pieces' Python
    calls cost ~1 ms a piece, 64 pieces there)."""
    budget = max(1, _PAIRS_CHUNK // 8)
    pieces = []
    while lo < end:
        base = int(level_pairs[lo - 1]) if lo else 0
        hi = int(np.searchsorted(level_pairs, base + budget, side="right"))
        hi = min(max(hi, lo + 1), end)
        pieces.append((lo, hi))
        lo = hi
    return pieces


def _csc_from_columns(columns: list[_HeldColumn], nrows: int) -> sp.csc_matrix:
    """The CSC matrix whose column j holds ``columns[j]`` (rows ascending and distinct),
    float64 and 32-bit indices where they fit, as scipy's ``tocsc`` of the same entries
    stores them. ``columns`` is emptied, each column freed once placed."""
    lengths = np.array([c.rows.shape[0] for c in columns], dtype=np.int64)
    nnz = int(lengths.sum())
    index: type[np.signedinteger[Any]] = (np.int32 if max(nnz, nrows, len(columns)) < 2**31
                                          else np.int64)
    indptr = np.zeros(len(columns) + 1, dtype=index)
    indptr[1:] = np.cumsum(lengths)  # exact: nnz fits the index
    data = np.empty(nnz)
    indices = np.empty(nnz, dtype=index)
    col = 0
    while columns:
        held = columns.pop(0)
        lo, hi = int(indptr[col]), int(indptr[col + 1])
        _widened(held.values, held.wide_at, held.wide_values, 0, hi - lo, out=data[lo:hi])
        indices[lo:hi] = held.rows if held.cuts is None else held.rows_of(0, hi - lo)
        del held
        col += 1
    return sp.csc_matrix((data, indices, indptr), shape=(nrows, lengths.shape[0]))


class NarrowPairs:
    """C (keys x groups, float64) stored by blocks of consecutive keys, each block a CSC
    matrix whose row indices (relative to the block's first key) are uint16 and whose values
    are held as :func:`_held_column` holds a column: the narrowest exact dtype, the few
    values that are not small counts (the X and y keys' real sums, -0.0) apart as float64.

    The pairs plan of the 10⁵ x 2,000 crossed design holds 4.4·10⁶ entries, most of them
    co-occurrence counts below 256: 53 MB as float64 values and 32-bit indices, 13 MB here.
    ``self @ v`` widens one block at a time into a reused buffer and multiplies it by scipy's
    CSC product: each key's terms are added in column order from 0.0, as in one product over
    the whole of C, so the result is the same bit for bit (blocks split the keys, never a
    key's terms). The widening costs time: InstEval's C (14 MB) took 2.7 against 1.4 ms a
    product this way, so only a C above
    :attr:`~lmeformula.pls.policy.BlockPolicy.max_wide_pairs_bytes` is held narrow.

    Attributes
    ----------
    shape
        (keys, groups) of C.
    starts
        First key of each block, and the end.
    indptrs
        Each block's CSC index pointer over the groups (int32).
    blocks
        Each block's entries: rows relative to its first key (uint16) and values, as
        :class:`_HeldColumn` holds them.
    """

    __slots__ = ("blocks", "indptrs", "shape", "starts")

    # keys per block at most: the relative rows are uint16
    MAX_BLOCK_KEYS = 1 << 16
    # groups (columns) at most: each block holds an index pointer over every column, and the
    # build visits every (column, block) pair in Python (with case weights every level is a
    # group of its own: 10⁵ columns took ~14 MB of index pointers and 10 s of loops)
    MAX_COLUMNS = 2048

    def __init__(self, shape: tuple[int, int], starts: np.ndarray, indptrs: list[np.ndarray],
                 blocks: list[_HeldColumn]) -> None:
        self.shape = shape
        self.starts = starts
        self.indptrs = indptrs
        self.blocks = blocks

    @property
    def nnz(self) -> int:
        """Stored entries."""
        return sum(int(b.rows.shape[0]) for b in self.blocks)

    @property
    def nbytes(self) -> int:
        """Bytes held by the blocks."""
        return self.starts.nbytes + sum(
            b.rows.nbytes + b.values.nbytes + b.wide_at.nbytes + b.wide_values.nbytes
            + ip.nbytes for b, ip in zip(self.blocks, self.indptrs, strict=True))

    def block_products(self, v: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """C @ v a block at a time: (first key, end, the block's part of the product). Each
        part is a new array; the widening buffers are reused."""
        if not self.blocks:
            return
        most = max(int(b.rows.shape[0]) for b in self.blocks)
        data, rows = np.empty(most), np.empty(most, dtype=np.int32)
        for lo, hi, indptr, blk in zip(self.starts[:-1].tolist(), self.starts[1:].tolist(),
                                       self.indptrs, self.blocks, strict=True):
            k = blk.rows.shape[0]
            d = _widened(blk.values, blk.wide_at, blk.wide_values, 0, k, out=data[:k])
            r = rows[:k]
            np.copyto(r, blk.rows, casting="unsafe")
            yield lo, hi, sp.csc_matrix((d, r, indptr), shape=(hi - lo, self.shape[1])) @ v

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        out = np.empty(self.shape[0])
        for lo, hi, part in self.block_products(v):
            out[lo:hi] = part
        return out

    def tocsc(self) -> sp.csc_matrix:
        """C as one CSC matrix (float64 values, 32-bit indices), as :func:`_csc_from_columns`
        makes it."""
        ncols = self.shape[1]
        rows, cols, vals = [], [], []
        for lo, indptr, blk in zip(self.starts[:-1].tolist(), self.indptrs, self.blocks,
                                   strict=True):
            d = _widened(blk.values, blk.wide_at, blk.wide_values, 0, blk.values.shape[0])
            rows.append(blk.rows.astype(np.int64) + lo)
            cols.append(np.repeat(np.arange(ncols), np.diff(indptr)))
            vals.append(d)
        r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        v = np.concatenate(vals) if vals else np.zeros(0)
        order = np.lexsort((r, c))  # by column, rows ascending: CSC's order
        indptr = np.zeros(ncols + 1, dtype=np.int32)
        np.cumsum(np.bincount(c, minlength=ncols), out=indptr[1:])
        return sp.csc_matrix((v[order], r[order].astype(np.int32), indptr),
                             shape=self.shape)


def _narrow_pairs_from_columns(columns: list[_HeldColumn], nrows: int) -> NarrowPairs:
    """:class:`NarrowPairs` whose column j holds ``columns[j]`` (rows ascending and distinct),
    in blocks of about 2¹⁷ entries (at most ``MAX_BLOCK_KEYS`` keys), one block's float64
    values at a time. ``columns`` is emptied once the blocks are made (the columns and the
    blocks are held together until then: 22 and 13 MB on the 10⁵ x 2,000 crossed design)."""
    ncols = len(columns)
    nnz = sum(int(c.rows.shape[0]) for c in columns)
    per_key = max(nnz / max(nrows, 1), 1.0)
    step = int(min(NarrowPairs.MAX_BLOCK_KEYS, max(1024, (1 << 17) / per_key)))
    starts = np.unique(np.append(np.arange(0, nrows, step), nrows)).astype(np.int64)
    # each column's cut at every block start: its entries of block b are cuts[b]:cuts[b + 1]
    cuts = [np.array([c.entry_at(int(r)) for r in starts]) for c in columns]
    indptrs, blocks = [], []
    for b, lo in enumerate(starts[:-1].tolist()):
        lengths = np.array([int(cut[b + 1] - cut[b]) for cut in cuts], dtype=np.int64)
        indptr = np.zeros(ncols + 1, dtype=np.int32)
        np.cumsum(lengths, out=indptr[1:])
        rows = np.empty(int(indptr[-1]), dtype=np.uint16)
        sums = np.empty(int(indptr[-1]))
        for j, (col, cut) in enumerate(zip(columns, cuts, strict=True)):
            a, e = int(cut[b]), int(cut[b + 1])
            if a == e:
                continue
            at = slice(int(indptr[j]), int(indptr[j + 1]))
            np.subtract(col.rows_of(a, e), lo, out=rows[at], casting="unsafe")  # below 2¹⁶
            _widened(col.values, col.wide_at, col.wide_values, a, e, out=sums[at])
        held = _held_column(rows, sums, bytes_first=True)
        del sums
        indptrs.append(indptr)
        blocks.append(held)
    columns.clear()
    return NarrowPairs((nrows, ncols), starts, indptrs, blocks)


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
