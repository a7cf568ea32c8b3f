"""A model whose dense blocks would not fit in memory is refused before anything is built.

The blocked engine factors block 2 (every term after the first, X and y) as one dense m x m
matrix; its cross-products M22 and the per-θ copy that LAPACK factors in place are two such
matrices, and the downdate's positions (when G is dense) half of another. Two crossed factors
of 10^5 levels each make m = 10^5: 80 GB per matrix. Allocating that would end in a
``MemoryError`` or in swapping; a clear error naming the terms is better.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from ..errors import ModelSizeError

__all__ = ["available_memory", "check_dense_memory", "dense_bytes", "release_freed_memory"]

# dense m x m matrices of float64 held at once per θ (M22, the factored copy, the downdate)
_DENSE_COPIES = 2.5


class _Shape(Protocol):
    @property
    def nl(self) -> int: ...

    @property
    def nc(self) -> int: ...


def available_memory() -> int:
    """Bytes of memory available now (Linux's MemAvailable; else the physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1


def dense_bytes(order: int, copies: float = _DENSE_COPIES) -> int:
    """Bytes the engine holds per θ for a dense block of this order (``copies`` of it: 1 for
    the compact engine of :mod:`lmeformula.pls.large`)."""
    return int(copies * 8 * order * order)


def check_dense_memory(terms: Sequence[_Shape], p: int, names: Sequence[str] | None = None,
                       available: int | None = None, copies: float = _DENSE_COPIES) -> None:
    """Raise :class:`~lmeformula.errors.ModelSizeError` when the engine's dense block (block 2
    of the blocked engine: every term after the first, X and y) would not fit in memory.

    Parameters
    ----------
    terms
        The random-effects terms in the engine's order (levels ``nl``, columns ``nc``).
    p
        Number of fixed-effect columns.
    names
        The terms' names for the message (lme4's ``"1 | item"``); positions when None.
    available
        Bytes available (default: what the operating system reports now).
    copies
        Dense m x m arrays the engine holds at once.
    """
    if not terms:
        return
    order = sum(t.nl * t.nc for t in terms[1:]) + p + 1
    need = dense_bytes(order, copies)
    have = available_memory() if available is None else available
    if need <= have:
        return
    labels = list(names) if names is not None else [f"term {i + 1}" for i in range(len(terms))]
    parts = [f"'{label}' ({t.nl:,} levels x {t.nc} column{'s' if t.nc > 1 else ''})"
             for label, t in zip(labels[1:], terms[1:], strict=True)]
    first = terms[0]
    raise ModelSizeError(
        f"the model is too large for the engine's dense block: the random effects of "
        f"{', '.join(parts)} with {p} fixed effect{'s' if p != 1 else ''} and the response "
        f"form a dense {order:,} x {order:,} matrix ({8 * order * order / 1e9:.1f} GB each; "
        f"about {need / 1e9:.1f} GB in all), but {have / 1e9:.1f} GB of memory are "
        f"available (the first term, '{labels[0]}' with {first.nl:,} levels, is handled level "
        f"by level). Fewer levels in the crossed terms, or nesting them, would help.")


# rows from which mkLmerDevfun gives lFormula's freed pages back (below, the model frame's
# temporaries are a few MB at most, and the trim costs more than it saves)
TRIM_MIN_ROWS = 100_000


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> None:
    """Give the pages of freed memory back to the system (glibc's ``malloc_trim(0)``; a no-op
    elsewhere). glibc keeps blocks freed below its moving mmap threshold (up to 32 MB) in its
    heap, resident, and serves only smaller requests from them: after an engine's setup (the
    10⁵ x 2,000 crossed design: ~100 MB of freed counting and plan temporaries) the per-θ
    arrays above the threshold (block 2's factor, 32 MB) are mapped anew beside them, and the
    fit's peak grew by what the setup had freed. Nothing is changed but which pages are
    resident; no setting of the allocator is touched."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
