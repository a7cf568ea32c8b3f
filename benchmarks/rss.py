"""A fit's own peak memory: the process's resident set size before a fit and its high-water
mark during it. Shared by the benchmark's engine processes (:mod:`benchmarks.engines`, whose
children import it from the repository root) and :mod:`benchmarks.memory`; standard library
only, so every engine's process can import it."""

from __future__ import annotations

import gc
import resource
import sys

__all__ = ["peak_after_fit", "reset_peak", "status_mb"]


def status_mb(key: str) -> float | None:
    """A ``/proc/self/status`` figure (``VmRSS``, ``VmHWM``) in MB; None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak(collect: bool = True) -> bool:
    """Collect garbage (unless ``collect`` is False), then reset the high-water mark (VmHWM)
    to the current RSS (Linux: "5" in ``/proc/self/clear_refs``), so that VmHWM after a fit
    is the fit's own peak. False where it cannot be reset."""
    if collect:
        gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def peak_after_fit() -> tuple[float, str]:
    """The peak since :func:`reset_peak` (VmHWM) in MB and how it was measured; elsewhere the
    process's peak so far (``ru_maxrss``)."""
    hwm = status_mb("VmHWM")
    if hwm is not None:
        return hwm, "VmHWM"
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, "ru_maxrss"
