"""Block 2's criterion from CHOLMOD's supernodal sparse Cholesky (through cvxopt).

Per θ the profiled criterion needs only the pivots of block 2's factor: the log-determinant
of its random-effects part, the log-determinant of RX (X's pivots) and the penalised RSS (the
square of the response's pivot). Where block 2 is sparse enough, a fill-reducing ordering
makes its factor much cheaper than the dense one: InstEval's block 2 (order 1,159, 22 %
non-zero) factors with AMD's ordering into 47-52 % of a dense triangle and about a quarter of
the dense factor's flops, and CHOLMOD's supernodal factor took ~10 ms against ``dpotrf``'s
~37 ms on one loaded core (2026-12-03; PROFILING.md). lme4 itself factors with CHOLMOD.

The analysis (ordering, supernodes, storage) is done once per model; each θ writes the
assembled S's values into the pattern's slots and refactors numerically. Everything else the
engine does with the factor (the solutions, the gradient, the fitted model) still takes the
dense factor, at the θ it is asked for: the sparse factor gives the criterion alone.

cvxopt bundles CHOLMOD (SuiteSparse) and its own OpenBLAS in its wheels. It is imported only
when a model's block 2 is large and sparse enough to use it; without it the engine stays
dense (the same criterion to rounding).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["SparsePivots", "cholmod_module"]


@lru_cache(maxsize=1)
def cholmod_module() -> tuple[Any, Any, Any] | None:
    """cvxopt's (base, cholmod, amd) modules, or None where cvxopt cannot be imported.

    cvxopt loads its own OpenBLAS: the thread scopes' lists of loaded BLAS libraries are made
    again so that the engine's thread policy sets its pool too."""
    try:
        import cvxopt
        import cvxopt.amd
        import cvxopt.cholmod
    except ImportError:  # pragma: no cover - cvxopt is a dependency; a source build may lack it
        return None
    from . import threads

    threads._openblas_libraries.cache_clear()
    threads._controller.cache_clear()
    return cvxopt, cvxopt.cholmod, cvxopt.amd


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
        Stored entries of the factor over a dense lower triangle's (from the first numeric
        factorisation; supernodes store some zeros).
    """

    flat: np.ndarray
    fill: float
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
        missing, S is not positive definite at this θ, or the factor stores more than
        ``max_fill`` of a dense triangle.

        The ordering is AMD's for the first ``random`` rows (the random effects), followed
        by X's and the response's rows in their order, so that the last pivots are RX's
        and the response's as in the dense factor."""
        mods = cholmod_module()
        if mods is None:
            return None
        cvxopt, cholmod, amd = mods
        cols, rows = np.divmod(flat, m)  # S's (col, row) in the upper triangle: L's (row, col)
        matrix = cvxopt.spmatrix(cvxopt.matrix(values),
                                 cvxopt.matrix(rows.astype(np.int64), tc="i"),
                                 cvxopt.matrix(cols.astype(np.int64), tc="i"), (m, m))
        # AMD on the whole pattern, X's and the response's rows then moved to the end
        # (AMD puts such dense rows last anyway; this fixes their order)
        order = np.asarray(amd.order(matrix), dtype=np.int64).ravel()
        order = np.concatenate([order[order < random], np.arange(random, m, dtype=np.int64)])
        perm = cvxopt.matrix(order, tc="i")
        counted = cholmod.symbolic(matrix, p=perm)
        try:
            cholmod.numeric(matrix, counted)
        except ArithmeticError:
            return None
        first = np.array(cholmod.diag(counted), dtype=float).ravel()
        # getfactor turns its factor simplicial: the one kept is analysed afresh
        fill = len(cholmod.getfactor(counted).V) / (m * (m + 1) / 2)
        if fill > max_fill:
            return None
        return cls(flat, fill, matrix, cholmod.symbolic(matrix, p=perm)), first

    def pivots(self, values: np.ndarray) -> np.ndarray | None:
        """The factor's diagonal (in the analysis' order: the random effects' pivots in AMD's
        order, then X's, then the response's) for S's ``values`` at the pattern's entries,
        or None when S is not positive definite (the dense factor then diagnoses it)."""
        mods = cholmod_module()
        assert mods is not None  # analysed, so imported
        cvxopt, cholmod, _ = mods
        values = cvxopt.matrix(values)
        with self._lock:
            self._matrix.V = values
            try:
                cholmod.numeric(self._matrix, self._factor)
            except ArithmeticError:
                return None
            return np.array(cholmod.diag(self._factor), dtype=float).ravel()
