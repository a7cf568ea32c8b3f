"""Which engine a model gets: ``make_problem``.

The dense engine for small systems (:mod:`.dense`), the blocked engine (:mod:`.engine`), or
the blocked engine with a compact block 2 for a large one (:mod:`.large`,
which extends the blocked engine; the choice lives here so that neither imports the other
both ways). A model whose dense block would not fit in memory is refused first
(:mod:`.memory`), or, on the compact engine, whose sparse factor may serve instead, where the
dense block is first needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import ModelSizeError
from . import memory
from .dense import DensePLSProblem
from .engine import PLSProblem
from .large import LargeBlockPLSProblem, large_block
from .memory import check_dense_memory, release_freed_memory
from .system import _policy
from .terms import TermShape

__all__ = ["make_problem"]


def make_problem(Zt: sp.csc_matrix | Callable[[], sp.csc_matrix], X: np.ndarray, y: np.ndarray,
                 weights: np.ndarray | None, terms: list[TermShape],
                 factors: list[tuple[np.ndarray, np.ndarray]] | None = None,
                 *, names: Sequence[str] | None = None,
                 ) -> PLSProblem | DensePLSProblem:
    """The engine for a model: dense for small systems, blocked otherwise (with block 2
    compact when it is large: :func:`~lmeformula.pls.large.large_block`).

    ``factors`` (each term's level codes and model matrix X_i, in Zt's order) lets the
    blocked engine form its cross-products by counting instead of sparse products; then Zt
    may be given as a function that builds it (called only by a path that reads it: the
    dense engine, sparse products), so that a large model's fit never holds it. A model
    whose dense block would not fit in memory raises
    :class:`~lmeformula.errors.ModelSizeError` first (``names``: the terms' names for it);
    on the compact engine, where block 2's sparse factor needs no dense block, where the
    dense block is first needed (:meth:`~lmeformula.pls.large.LargeBlockPLSProblem.
    defer_dense_refusal`)."""
    q = sum(t.size for t in terms) if callable(Zt) else Zt.shape[0]
    if q + X.shape[1] + 1 <= _policy().dense_limit:
        # with the factors, the dense engine reads Z off them: Zt is built only if asked for
        if factors is not None:
            return DensePLSProblem(Zt, X, y, weights, terms, factors)
        return DensePLSProblem(Zt() if callable(Zt) else Zt, X, y, weights, terms)
    problem: PLSProblem
    if large_block(terms, X.shape[1], factors is not None):  # one dense array per θ
        refusal = None
        try:
            check_dense_memory(terms, X.shape[1], names, copies=1.0)
        except ModelSizeError as err:  # raised if and when the dense block is needed
            refusal = err
        problem = LargeBlockPLSProblem(Zt, X, y, weights, terms, factors)
        if refusal is not None:
            problem.defer_dense_refusal(refusal)
    else:
        check_dense_memory(terms, X.shape[1], names)
        problem = PLSProblem(Zt, X, y, weights, terms, factors)
    # the setup's temporaries (counting, the downdate's plan) are freed: their pages go back
    # to the system before the per-θ arrays are made (see release_freed_memory); only for
    # large data, as malloc_trim walks the whole heap (milliseconds in a busy session)
    if X.shape[0] >= memory.TRIM_MIN_ROWS:
        release_freed_memory()
    return problem
