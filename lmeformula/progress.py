"""Progress bars for long work (profiles, bootstrap, allFit): tqdm when it is installed.

tqdm is an optional dependency (the ``progress`` extra): progress is off by default in the
library, so a plain install does not need it. Asked for without tqdm, progress is a one-line
counter on stderr. Bars go to stderr, so printed results stay clean.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = ["CountingObjective", "Progress", "progress_bar"]


class Progress(Protocol):
    """What the long-running functions call: one step done."""

    def update(self, n: int = 1) -> object: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        return None


class _Counter:
    """A minimal stand-in for tqdm: ``desc: done/total`` rewritten in place on stderr."""

    def __init__(self, total: int | None, desc: str) -> None:
        self.total, self.desc, self.done = total, desc, 0

    def update(self, n: int = 1) -> None:
        self.done += n
        total = f"/{self.total}" if self.total else ""
        print(f"\r{self.desc}: {self.done}{total}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.done:
            print(file=sys.stderr, flush=True)


@contextmanager
def progress_bar(total: int | None, desc: str, enabled: bool) -> Iterator[Progress]:
    """A progress bar of ``total`` steps (None: unknown) when ``enabled``, else a no-op."""
    if not enabled:
        yield _Silent()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        counter = _Counter(total, desc)
        try:
            yield counter
        finally:
            counter.close()
        return
    bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()


class CountingObjective:
    """A deviance function that moves a progress bar one step per evaluation.

    Everything else (``batch``, ``gradient``, ``start``, ``lower``...) is the wrapped
    function's, so an optimizer sees the same object; the wrapped function keeps its own state.
    """

    def __init__(self, fn: Any, bar: Progress) -> None:
        self._fn, self._bar = fn, bar

    def __call__(self, theta: Any) -> float:
        self._bar.update(1)
        return float(self._fn(theta))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)
