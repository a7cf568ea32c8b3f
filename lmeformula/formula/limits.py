"""Size limits of formulas, and room on Python's stack for the recursive syntax-tree walks.

R's parser refuses parentheses and calls nested more than 50 deep ("contextstack overflow")
and handles a few thousand terms. The syntax-tree walks here (``terms``, ``findbars``,
``deparse``...) recurse once or twice per level of the tree, and a chain of ``+`` is as deep
as it has terms, so a 500-term formula would pass Python's default limit of 1,000 frames.
Formulas are therefore checked for R's nesting limit and a size limit before anything else,
and the public entry points run with a recursion limit raised by what the formula can need
(Python 3.11 frames of pure-Python recursion do not use the C stack).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from ..errors import FormulaError

__all__ = ["MAX_FORMULA_TOKENS", "MAX_NESTING", "check_nesting", "recursion_room",
           "with_recursion_room"]

MAX_NESTING = 50  # R's parser: CONTEXTSTACK_SIZE
MAX_FORMULA_TOKENS = 50_000  # R fails near 20,000 terms (protect stack overflow)
_FRAMES_PER_LEVEL = 8  # the deepest walk (hashing a tree, deparse) uses ~2-3 frames a level

F = TypeVar("F", bound=Callable[..., Any])


def check_nesting(kinds: list[str], text: str) -> None:
    """Refuse more than R's 50 nested parentheses, brackets or calls, and over-long formulas.

    Parameters
    ----------
    kinds
        The kinds of the formula's tokens, in order (``"("``, ``")"``, ``"["``, ...).
    text
        The formula, for the message.
    """
    if len(kinds) > MAX_FORMULA_TOKENS:
        raise FormulaError(f"formula too long: {len(kinds)} tokens (more than "
                           f"{MAX_FORMULA_TOKENS:,}); R's parser also fails on formulas of "
                           "about this size")
    depth = 0
    for kind in kinds:
        if kind in ("(", "["):
            depth += 1
            if depth > MAX_NESTING:
                shown = text if len(text) <= 60 else text[:57] + "..."
                raise FormulaError(f"contextstack overflow: parentheses or calls nested more "
                                   f"than {MAX_NESTING} deep (R's limit) in formula {shown!r}")
        elif kind in (")", "]"):
            depth -= 1


@contextmanager
def recursion_room(size: int) -> Iterator[None]:
    """Run with Python's recursion limit raised enough for a syntax tree of ``size`` tokens
    (restored afterwards); a RecursionError that still happens becomes a FormulaError."""
    old = sys.getrecursionlimit()
    need = old + _FRAMES_PER_LEVEL * size
    raised = size > 50 and need > old
    if raised:
        sys.setrecursionlimit(need)
    try:
        yield
    except RecursionError:
        raise FormulaError(f"formula too deeply nested or too long ({size} characters) to be "
                           "processed") from None
    finally:
        if raised:
            sys.setrecursionlimit(old)


def with_recursion_room(fn: F) -> F:
    """Decorate a function whose first argument is formula text with :func:`recursion_room`."""

    @functools.wraps(fn)
    def wrapper(formula: Any, *args: Any, **kwargs: Any) -> Any:
        size = len(formula) if isinstance(formula, str) else 0
        with recursion_room(size):
            return fn(formula, *args, **kwargs)

    return cast(F, wrapper)
