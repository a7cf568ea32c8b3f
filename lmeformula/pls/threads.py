"""How many BLAS/LAPACK threads the engine's calls use, and a scope that sets them.

OpenBLAS's worker threads spin while they wait; on a machine whose cores are busy with other
work (parallel fits, other programs) they lose their time slices and a multi-threaded
Cholesky becomes many times slower than a single-threaded one. Measured on the 2-core
benchmark machine (``python -m benchmarks.threads``, medians, 2026-12-01, shared with other
jobs): ``dpotrf`` with 1 thread was faster than with 2 at every order up to 2,400, by 3-1000x
under contention; a G Gᵀ product gained from 2 threads only above order ~1,200 and only
under load. On the same machine when it was idle (load average below 1, 23:10 the same day),
2 threads paid from order ~1,000 on: ``dpotrf`` at order 1,200 took 12.4 ms against 16.7 ms
with 1 thread (600-800: no gain), and the InstEval fit (block order 1,159) 1.14 s against
1.50 s. So the engine runs single-threaded unless its dense block is large
(:attr:`ThreadPolicy.parallel_order`), or moderately large
(:attr:`ThreadPolicy.idle_parallel_order`) while the machine has a core to spare (the
1-minute load average, this process included, at most the core count less one half); there
it leaves the caller's setting alone (all cores by default). Small blocks too: OpenBLAS does
thread some kernels of small order (``dpotrf`` of order 186 took 14.7 ms with two threads and
0.38 ms with one at load 9, 2026-12-02), and scipy's L-BFGS-B calls BLAS between evaluations
(sleepstudy with L-BFGS-B beside two busy loops: 96 ms against 8 ms alone). numpy and scipy
each bundle their own OpenBLAS with its own pool: both are set. The caller's settings are
restored when the scope ends.

Where the loaded OpenBLAS libraries can be read off ``/proc/self/maps`` (Linux), their own
``openblas_get/set_num_threads`` are called directly (microseconds); elsewhere threadpoolctl
does it (its first use scans every loaded library: ~13 ms once per process).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["THREAD_POLICY", "ThreadPolicy", "blas_threads", "engine_threads", "machine_is_idle",
           "setup_threads"]


@dataclass(frozen=True)
class ThreadPolicy:
    """When BLAS threads pay.

    Attributes
    ----------
    parallel_order
        From this order of the engine's largest dense factorisation on, the caller's thread
        setting is kept (all cores by default); below it, one thread, except as below.
    idle_parallel_order
        From this order on, the caller's setting is kept while the machine is idle
        (:func:`machine_is_idle`).
    """

    parallel_order: int = 4000
    idle_parallel_order: int = 1000

    def threads(self, order: int, idle: bool | None = None) -> int | None:
        """Threads for a dense block of this order (None: leave the caller's setting);
        ``idle`` says whether the machine has a core to spare (measured when None and the
        order makes it matter)."""
        if order >= self.parallel_order:
            return None
        if order >= self.idle_parallel_order and (machine_is_idle() if idle is None else idle):
            return None
        return 1


def machine_is_idle() -> bool:
    """Whether the 1-minute load average (this process included) leaves at least half a core
    free; False where the operating system gives no load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return False
    return load <= (os.cpu_count() or 1) - 0.5


THREAD_POLICY = ThreadPolicy()


@dataclass(frozen=True)
class _OpenBLAS:
    """One loaded OpenBLAS library's thread-count getter and setter."""

    get: Callable[[], int]
    set: Callable[[int], None]


_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_")


@lru_cache(maxsize=1)
def _openblas_libraries() -> tuple[_OpenBLAS, ...] | None:
    """The loaded OpenBLAS libraries (numpy's and scipy's), read off ``/proc/self/maps``; None
    where that cannot be done or a library is not recognised (threadpoolctl then)."""
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines()
                    if "openblas" in line.rsplit("/", 1)[-1].lower()
                    and line.split()[-1].startswith("/")})
    libs = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | os.RTLD_LAZY)
        except OSError:
            return None
        found = next(((getattr(lib, name), getattr(lib, name.replace("_set_", "_get_")))
                      for name in _SETTERS if hasattr(lib, name)
                      and hasattr(lib, name.replace("_set_", "_get_"))), None)
        if found is None:
            return None
        setter, getter = found
        setter.argtypes, setter.restype = [ctypes.c_int], None
        getter.argtypes, getter.restype = [], ctypes.c_int
        libs.append(_OpenBLAS(get=getter, set=setter))
    return tuple(libs) if libs else None


@lru_cache(maxsize=1)
def _controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries (found once: a scan of the loaded
    shared objects costs milliseconds). numpy and scipy.linalg are loaded by then."""
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


@contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` BLAS threads in every loaded BLAS (None: unchanged),
    restoring each library's previous setting afterwards."""
    if threads is None:
        yield
        return
    libs = _openblas_libraries()
    if libs is not None:
        previous = [lib.get() for lib in libs]
        if all(count == threads for count in previous):
            yield
            return
        for lib in libs:
            lib.set(threads)
        try:
            yield
        finally:
            for lib, count in zip(libs, previous, strict=True):
                lib.set(count)
        return
    controller = _controller()
    if all(lib.num_threads == threads for lib in controller.lib_controllers):
        yield
        return
    with controller.limit(limits=threads):
        yield


def engine_threads(problem: Any, requested: int | None = None) -> Any:
    """The scope for an engine's work: ``requested`` threads, else the policy's for the
    problem's largest dense block (``problem.dense_order``)."""
    if requested is None:
        requested = THREAD_POLICY.threads(int(getattr(problem, "dense_order", 0)))
    return blas_threads(requested)


def setup_threads(requested: int | None = None) -> Any:
    """The scope for building a model (frame, X's rank check, cross-products), before the
    engine's order is known: ``requested`` threads, else one while the machine is busy
    (:func:`machine_is_idle`), the caller's setting when it is idle."""
    if requested is None and not machine_is_idle():
        requested = 1
    return blas_threads(requested)
