"""Refits of a model to many simulated responses, in this process or in worker processes.

The parametric bootstrap draws every simulated response in the calling process from the one
random stream it was given, before any refit; workers only refit. A refit is deterministic
given its response, so the replicates are the same numbers whatever ``n_jobs`` is and however
the work is split. Each worker runs with one BLAS thread (k workers on k cores would
otherwise oversubscribe them); so does the in-process path when threadpoolctl is installed,
so that both run the same BLAS code path.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from .progress import progress_bar

__all__ = ["refit_replicates"]

_BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                   "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

# the worker's model and statistic, set once per worker by _init_worker
_STATE: dict[str, Any] = {}


def _one_blas_thread() -> Any:
    """A context with one BLAS thread (threadpoolctl), or a no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is in the test environment
        return nullcontext()
    return threadpool_limits(limits=1)


@contextmanager
def _blas_environment() -> Iterator[None]:
    """BLAS thread variables set to 1 while worker processes start (they read them at
    start-up), restored afterwards."""
    saved = {k: os.environ.get(k) for k in _BLAS_VARIABLES}
    os.environ.update({k: "1" for k in _BLAS_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _refit_block(m: Any, fun: Callable[[Any], np.ndarray], ys: np.ndarray,
                 width: int) -> np.ndarray:
    """The statistic of the refit to each response ``ys[..., i]`` (the last axis runs over
    replicates); NaN where a refit fails."""
    from .lmer import refit

    out = np.full((ys.shape[-1], width), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(ys.shape[-1]):
            try:
                out[i] = fun(refit(m, ys[..., i]))
            except (ValueError, ArithmeticError, np.linalg.LinAlgError):
                continue
    return out


def _start_method() -> str:
    """``fork`` on Linux: a forked worker has the model and the package already in memory,
    where a spawned one re-imports numpy, scipy and pandas first (seconds on a loaded machine).
    Elsewhere ``spawn`` (macOS' system libraries are not fork-safe; Windows has no fork)."""
    methods = multiprocessing.get_all_start_methods()
    return "fork" if sys.platform.startswith("linux") and "fork" in methods else "spawn"


def _init_worker(m: Any, fun: Callable[[Any], np.ndarray], width: int) -> None:
    _STATE.update(model=m, fun=fun, width=width, blas=_one_blas_thread())
    _STATE["blas"].__enter__()


def _worker(ys: np.ndarray) -> np.ndarray:
    return _refit_block(_STATE["model"], _STATE["fun"], ys, _STATE["width"])


def refit_replicates(m: Any, sims: np.ndarray, fun: Callable[[Any], np.ndarray], width: int,
                     n_jobs: int = 1, progress: bool = False,
                     desc: str = "bootstrap") -> np.ndarray:
    """``fun(refit(m, y))`` for each response y = ``sims[..., i]`` (n x nsim, or n x 2 x nsim
    for a binomial ``cbind`` response): an nsim x width array, NaN rows for failed refits.

    Parameters
    ----------
    n_jobs
        Worker processes (1: in this process; -1: one per CPU). Workers are forked on Linux
        and spawned elsewhere, where ``fun`` must be picklable (a module-level function).
    progress
        Progress bar on stderr, one step per replicate.
    """
    nsim = sims.shape[-1]
    if n_jobs < 0:
        n_jobs = os.cpu_count() or 1
    n_jobs = max(1, min(int(n_jobs), nsim))
    # blocks small enough for a smooth progress bar and an even load, large enough that
    # sending them costs little next to the refits
    block = max(1, min(50, nsim // (4 * n_jobs) or 1))
    starts = list(range(0, nsim, block))
    out = np.empty((nsim, width))
    with progress_bar(nsim, desc, progress) as bar:
        if n_jobs == 1:
            with _one_blas_thread():
                for s in starts:
                    part = _refit_block(m, fun, sims[..., s : s + block], width)
                    out[s : s + part.shape[0]] = part
                    bar.update(part.shape[0])
            return out
        ctx = multiprocessing.get_context(_start_method())
        with _blas_environment():
            pool = ctx.Pool(n_jobs, initializer=_init_worker, initargs=(m, fun, width))
        try:
            blocks = [np.ascontiguousarray(sims[..., s : s + block]) for s in starts]
            for s, part in zip(starts, pool.imap(_worker, blocks), strict=True):
                out[s : s + part.shape[0]] = part
                bar.update(part.shape[0])
        finally:
            pool.close()
            pool.join()
    return out
