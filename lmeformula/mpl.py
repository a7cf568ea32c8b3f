"""matplotlib, an optional dependency, imported only when a figure is drawn."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError saying how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("lmeformula's figures need matplotlib: pip install "
                          "'lmeformula[plot]'") from err
    return plt
