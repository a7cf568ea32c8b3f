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
1.50 s. So the engine runs single-threaded unless its dense block reaches
:attr:`ThreadPolicy.parallel_order`, and from there on with as many threads as the machine has
free cores at the start of the fit (:func:`free_cores`: the kernel's instantaneous count of
runnable threads, the 4th field of ``/proc/loadavg``, less this process's own), capped by the
caller's setting. The 1-minute load average, used before, lags both ways: two busy
processes started beside a quiet machine take about 40 s to lift it from 0.5 past 1.5 (it
moves by 1 - exp(-t/60) of the change), and a fit started within that time gets two threads
beside them (one InstEval evaluation at load ~11: 76 ms on one thread, 91 ms beside two busy
loops; on two threads 373 ms and 1,053 ms); and at a load of ~10 from other jobs, ``dpotrf``
of order 1,200 took 1.0-1.5 s with two threads against 0.1-0.2 s with one (2026-12-02).
Small blocks get one thread too
(OpenBLAS does thread some kernels of small order: ``dpotrf`` of order 186 took 14.7 ms with
two threads and 0.38 ms with one at load 9, 2026-12-02), and scipy's L-BFGS-B calls BLAS
between evaluations (sleepstudy with L-BFGS-B beside two busy loops: 96 ms against 8 ms
alone). numpy and scipy each bundle their own OpenBLAS with its own pool: both are set.
The caller's settings are restored when the scope ends.

Where the loaded OpenBLAS libraries can be read off ``/proc/self/maps`` (Linux), their own
``openblas_get/set_num_threads`` are called directly (microseconds); elsewhere threadpoolctl
does it (its first use scans every loaded library: ~13 ms once per process).

Large orders get one thread whatever the policy or the caller says, because the threaded
path crashes there. OpenBLAS's threaded ``syrk`` (``driver/level3/level3_syrk_threaded.c``,
also inside the threaded ``dpotrf``) packs each thread's whole column panel, ``GEMM_Q``
rows deep, into one buffer of ``BUFFER_SIZE`` bytes, without blocking it by ``GEMM_R`` as
the single-threaded path does. numpy's and scipy's wheels build OpenBLAS with a 32 MB buffer
(``BUFFERSIZE=20``), so a panel wider than 32 MB / (8 ``GEMM_Q``) columns writes past it:
a segmentation fault (numpy issue 19685, OpenBLAS issues 1413 and 2562). The widest panel
of t threads is order / √t columns (the partition gives each thread an equal share of the
triangle). Measured here (OpenBLAS 0.3.31, SkylakeX kernels, ``GEMM_Q`` 384, two threads,
2026-12-03): ``dpotrf`` crashed from order 15,600 (15,500 passed), ``g @ g.T`` and
``dsyrk`` from ~18,000; the Haswell kernels (``GEMM_Q`` 256) passed at 20,000; one thread
passed at every order. :attr:`ThreadPolicy.max_thread_panel` keeps a margin for kernels
with a deeper ``GEMM_Q``.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

__all__ = ["THREAD_POLICY", "ThreadPolicy", "blas_threads", "engine_threads", "free_cores",
           "level3_safe", "runnable_tasks", "setup_threads", "usable_cores"]


@dataclass(frozen=True)
class ThreadPolicy:
    """When BLAS threads pay.

    Attributes
    ----------
    parallel_order
        From this order of the engine's largest dense factorisation on, the fit uses as many
        BLAS threads as the machine has free cores (at most the caller's setting); below it,
        one thread.
    samples
        Readings of the runnable-task count behind one decision for a large block (the
        largest is used: a task that runs half the time shows in 7 of 8 triples) ...
    sample_interval
        ... this many seconds apart.
    serial_rows
        Below this many rows of data, a model is built (frame, X's rank check,
        cross-products) with one thread without reading the machine's load: its BLAS calls
        are too small for threads to pay, and the reading (``/proc``, ~0.1 ms) was a
        tenth of a small model's setup.
    max_thread_panel
        The widest column panel (order / √threads) given to OpenBLAS's threaded ``syrk``
        and ``dpotrf``; above it one thread (the module docstring: wider panels overflow the
        wheels' 32 MB buffer). 8,192 columns take 25 MB at ``GEMM_Q`` 384 (this machine's
        kernels crashed from 10,900) and fit up to ``GEMM_Q`` 512: two threads up to order
        11,585, four up to 16,384.
    """

    parallel_order: int = 1000
    samples: int = 3
    sample_interval: float = 0.001
    serial_rows: int = 10_000
    max_thread_panel: int = 8192

    def threads(self, order: int, free: int | None = None) -> int:
        """Threads for a dense block of this order: one below :attr:`parallel_order`, else the
        free cores (``free``, measured by :func:`free_cores` when None), at least one, and
        one where that many would crash (:meth:`safe_threads`). The caller's own setting
        caps it (:func:`engine_threads`)."""
        if order < self.parallel_order:
            return 1
        if free is None:
            free = free_cores(self.samples, self.sample_interval)
        return self.safe_threads(order, max(1, free))

    def safe_threads(self, order: int, threads: int) -> int:
        """``threads``, or one where OpenBLAS's threaded level-3 routines would pack a panel
        wider than :attr:`max_thread_panel` for a matrix of this order."""
        if threads > 1 and order > self.max_thread_panel * math.sqrt(threads):
            return 1
        return threads

    @property
    def always_safe_order(self) -> int:
        """Up to this order any thread count is safe (two threads pack the widest panels)."""
        return int(self.max_thread_panel * math.sqrt(2.0))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def runnable_tasks() -> int | None:
    """Threads running or ready to run on the whole machine at this instant, the calling one
    included: the kernel's count (4th field of ``/proc/loadavg``, ``procs_running``). Unlike
    the load averages it has no memory: two busy processes started a second ago count fully,
    ones ended a second ago not at all. None where the system has no such file."""
    try:
        with open("/proc/loadavg", "rb") as fh:
            return int(fh.read().split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return None


def own_running_threads(tasks: list[str] | None = None) -> int:
    """This process's threads that are running or ready to run (at least the calling one):
    BLAS workers spin for a while after a call and must not count as other work. ``tasks``:
    the names in ``/proc/self/task`` when already read."""
    try:
        tasks = os.listdir("/proc/self/task") if tasks is None else tasks
    except OSError:
        return 1
    count = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat", "rb") as fh:
                # the state follows the parenthesised command name, which may hold spaces
                count += fh.read().rsplit(b")", 1)[1].split()[0] == b"R"
        except (OSError, IndexError):
            continue
    return max(1, count)


def _other_tasks(tasks: int, cores: int) -> int:
    """Runnable threads of other processes, given the machine's count ``tasks`` (this thread
    included). Our own are read (tens of µs a thread) only when they could change the answer:
    when the count is above one and not so high that the machine is busy whatever they are."""
    if tasks <= 1:
        return 0
    try:
        names = os.listdir("/proc/self/task")
    except OSError:
        return tasks - 1
    if tasks - len(names) >= cores - 1:  # busy even if every thread of ours is running
        return tasks - len(names)
    return tasks - own_running_threads(names)


def free_cores(samples: int = 1, interval: float = 0.0,
               runnable: Callable[[], int | None] | None = None) -> int:
    """Cores not taken by other work at this instant, this process's core included: the usable
    cores less the threads of other processes running or waiting for a core (the largest of
    ``samples`` readings ``interval`` seconds apart). Where the system gives no instantaneous
    count, the 1-minute load average stands for it; where there is neither, 1 (busy is the
    safe guess: threads on a busy machine cost far more than one thread on an idle one).
    ``runnable`` replaces :func:`runnable_tasks` (tests)."""
    read = runnable_tasks if runnable is None else runnable
    counts = []
    for i in range(max(1, samples)):
        if i:
            time.sleep(interval)
        count = read()
        if count is None:
            break
        counts.append(count)
    cores = usable_cores()
    if counts:
        others = _other_tasks(max(counts), cores)
    else:
        try:
            others = round(os.getloadavg()[0]) - 1  # this process among them, presumably
        except (AttributeError, OSError):
            return 1
    return max(1, cores - max(0, others))


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
        if _sequential(lib):  # built without threads (cvxopt's, for CHOLMOD): nothing to set
            continue
        setter, getter = found
        setter.argtypes, setter.restype = [ctypes.c_int], None
        getter.argtypes, getter.restype = [], ctypes.c_int
        libs.append(_OpenBLAS(get=getter, set=setter))
    return tuple(libs) if libs else None


def _sequential(lib: ctypes.CDLL) -> bool:
    """Whether an OpenBLAS library was built without threads (``openblas_get_parallel``
    gives 0), so that its thread count is always one."""
    name = next((n.replace("_set_num_threads", "_get_parallel") for n in _SETTERS
                 if hasattr(lib, n.replace("_set_num_threads", "_get_parallel"))), None)
    if name is None:
        return False
    getter = getattr(lib, name)
    getter.argtypes, getter.restype = [], ctypes.c_int
    return int(getter()) == 0


@lru_cache(maxsize=1)
def _controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries (found once: a scan of the loaded
    shared objects costs milliseconds). numpy and scipy.linalg are loaded by then."""
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


class blas_threads:  # lower case: called as the function it was, ``with blas_threads(1):``
    """Run the block with ``threads`` BLAS threads in every loaded BLAS (None: unchanged; with
    ``at_most``, no more than each library has already: the caller's setting caps it),
    restoring each library's previous setting afterwards. With ``order``, the largest dense
    matrix the block factors or multiplies, a library whose count would crash OpenBLAS's
    threaded routines at that order gets one thread (:meth:`ThreadPolicy.safe_threads`).

    A class rather than a generator-based context manager: every fit enters two or three of
    these scopes, and contextlib's machinery cost as much as the thread calls themselves."""

    __slots__ = ("_at_most", "_libs", "_limit", "_order", "_previous", "_threads")

    def __init__(self, threads: int | None, at_most: bool = False, order: int = 0) -> None:
        self._threads = threads
        self._at_most = at_most
        self._order = order
        self._libs: tuple[_OpenBLAS, ...] | None = None
        self._previous: list[int] | None = None
        self._limit: Any = None

    def _wanted(self, count: int) -> int:
        """The count for a library that has ``count`` threads now."""
        threads = self._threads
        if threads is None:
            return THREAD_POLICY.safe_threads(self._order, count)
        return THREAD_POLICY.safe_threads(
            self._order, min(threads, count) if self._at_most else threads)

    def __enter__(self) -> None:
        if self._threads is None and self._order <= THREAD_POLICY.always_safe_order:
            return
        libs = _openblas_libraries()
        if libs is not None:
            previous = [lib.get() for lib in libs]
            wanted = [self._wanted(count) for count in previous]
            if wanted == previous:
                return
            for lib, count in zip(libs, wanted, strict=True):
                lib.set(count)
            self._libs, self._previous = libs, previous
            return
        controller = _controller()
        counts = [lib.num_threads for lib in controller.lib_controllers]
        wanted = [self._wanted(count) for count in counts]
        if wanted == counts:
            return
        # threadpoolctl sets one count for all (the smallest wanted: a cap never crashes)
        self._limit = controller.limit(limits=min(wanted))
        self._limit.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._libs is not None and self._previous is not None:
            for lib, count in zip(self._libs, self._previous, strict=True):
                lib.set(count)
            self._libs = self._previous = None
        elif self._limit is not None:
            limit, self._limit = self._limit, None
            limit.__exit__(*exc)


def engine_threads(problem: Any, requested: int | None = None) -> Any:
    """The scope for an engine's work: ``requested`` threads, else the policy's for the
    problem's largest dense block (``problem.dense_order``) and the machine's load at this
    moment, capped by the caller's setting; one where more would crash at that order."""
    order = int(getattr(problem, "dense_order", 0))
    if requested is not None:
        return blas_threads(requested, order=order)
    return blas_threads(THREAD_POLICY.threads(order), at_most=True, order=order)


class _HasDenseOrder(Protocol):
    @property
    def dense_order(self) -> int: ...


_Engine = TypeVar("_Engine", bound=_HasDenseOrder)
_Params = ParamSpec("_Params")
_Result = TypeVar("_Result")


def level3_safe(method: Callable[Concatenate[_Engine, _Params], _Result],
                ) -> Callable[Concatenate[_Engine, _Params], _Result]:
    """An engine method that factors or multiplies dense matrices of the engine's
    ``dense_order``, run with no more BLAS threads than that order allows, whoever calls it
    and whatever the caller's setting (a fitted model's solutions, conditional variances
    and gradient are computed after the fit's scope has ended). Free below
    :attr:`ThreadPolicy.always_safe_order`."""

    @functools.wraps(method)
    def run(self: _Engine, /, *args: _Params.args, **kwargs: _Params.kwargs) -> _Result:
        order = self.dense_order
        if order <= THREAD_POLICY.always_safe_order:
            return method(self, *args, **kwargs)
        with blas_threads(None, order=order):
            return method(self, *args, **kwargs)

    return run


def setup_threads(requested: int | None = None, rows: int | None = None) -> Any:
    """The scope for building a model (frame, X's rank check, cross-products), before the
    engine's order is known: ``requested`` threads, else one for data of fewer than
    :attr:`ThreadPolicy.serial_rows` rows, else as many as the machine has free cores at
    this moment (one reading of the runnable-task count), capped by the caller's
    setting."""
    if requested is not None:
        return blas_threads(requested)
    if rows is not None and rows < THREAD_POLICY.serial_rows:
        return blas_threads(1, at_most=True)
    return blas_threads(free_cores(), at_most=True)
