"""Checks of public functions' arguments: one helper per kind (logical, number, count, choice).

R checks an argument where it is used (``if (REML)`` fails with "argument is not interpretable
as logical"); Python would silently take any truthy object. Every public function therefore
passes its flags and numbers through these helpers, which raise
:class:`lmeformula.errors.ArgumentError` (a ValueError and a TypeError) naming the argument.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import os
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import ArgumentError

__all__ = ["as_generator", "check_allocation", "check_choice", "check_count", "check_flag",
           "check_number", "check_unused", "match_arg", "model_functions"]


def check_flag(value: Any, name: str, *, allow_none: bool = False) -> bool | None:
    """A logical argument: True/False (numpy's too; 0 and 1 as R's ``if`` takes them).

    Raises
    ------
    ArgumentError
        For strings, None (unless ``allow_none``), NaN, arrays and any other object, with R's
        message ("argument is not interpretable as logical").
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    raise ArgumentError(f"{name}: argument is not interpretable as logical (got {value!r}); "
                        "use True or False")


def check_unused(kwargs: Mapping[str, Any], unused: Sequence[str]) -> None:
    """R's "unused argument (foo = 1)" for the keyword arguments ``unused`` of ``kwargs``
    that the function does not take (none: nothing happens).

    Raises
    ------
    ArgumentError
        Naming each with its value, as R does.
    """
    if unused:
        raise ArgumentError("unused argument ("
                            + ", ".join(f"{k} = {kwargs[k]!r}" for k in unused) + ")")


def as_generator(rng: Any, name: str = "rng") -> np.random.Generator:
    """A random-number argument as a numpy Generator: None (fresh entropy), a non-negative
    integer seed, a SeedSequence / BitGenerator, or a Generator (used as it is).

    Raises
    ------
    ArgumentError
        For anything else (strings, floats, negative seeds), with R's ``set.seed`` message.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    ok = (rng is None or isinstance(rng, (np.random.SeedSequence, np.random.BitGenerator))
          or (isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_))
              and int(rng) >= 0))
    if not ok:
        raise ArgumentError(f"{name}: supplied seed is not a valid integer (got {rng!r}); use "
                            "None, a non-negative integer or a numpy Generator")
    return np.random.default_rng(rng)


def check_number(value: Any, name: str, *, lower: float | None = None,
                 upper: float | None = None, lower_open: bool = False,
                 upper_open: bool = False, allow_none: bool = False) -> float | None:
    """A finite real number in [lower, upper] (ends open where asked).

    Raises
    ------
    ArgumentError
        For non-numbers (booleans included), NaN, infinities and values out of range.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"{name} must be a number, not {type(value).__name__} ({value!r})")
    x = float(value)
    if not math.isfinite(x):
        raise ArgumentError(f"{name} must be finite, not {x!r}")
    if lower is not None and (x < lower or (lower_open and x == lower)):
        raise ArgumentError(f"{name} must be {'>' if lower_open else '>='} {lower:g}, not {x:g}")
    if upper is not None and (x > upper or (upper_open and x == upper)):
        raise ArgumentError(f"{name} must be {'<' if upper_open else '<='} {upper:g}, not {x:g}")
    return x


def check_count(value: Any, name: str, *, lower: int = 1, upper: int | None = None) -> int:
    """A whole number (``1`` or ``1.0``, not ``1.5`` or ``True``) of at least ``lower``."""
    x = check_number(value, name, lower=lower, upper=upper)
    assert x is not None
    if x != int(x):
        raise ArgumentError(f"{name} must be a whole number, not {value!r}")
    return int(x)


def match_arg(value: Any, choices: Sequence[str], name: str) -> str:
    """R's ``match.arg``: an exact choice, or the one choice that ``value`` abbreviates.

    Raises
    ------
    ArgumentError
        R's message ``'arg' should be one of ...`` naming the argument, for no match or an
        ambiguous abbreviation.
    """
    if isinstance(value, str):
        if value in choices:
            return value
        hits = [c for c in choices if value and c.startswith(value)]
        if len(hits) == 1:
            return hits[0]
    quoted = ", ".join(f'"{c}"' for c in choices)
    raise ArgumentError(f"{name}: 'arg' should be one of {quoted} (got {value!r})")


def check_choice(value: Any, choices: Sequence[str], name: str) -> str:
    """An exact choice among ``choices`` (for Python-style options, no abbreviation)."""
    if isinstance(value, str) and value in choices:
        return value
    raise ArgumentError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")


@lru_cache(maxsize=1)  # the machine's memory does not change; every model matrix asks
def _memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE")) * float(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16e9


def check_allocation(elements: float, what: str, itemsize: int = 8) -> None:
    """Refuse to build an array of ``elements`` values that would not fit in the machine's
    memory (a quarter of it), before allocating anything."""
    need = float(elements) * itemsize
    limit = _memory_bytes() / 4
    if need > limit:
        raise ArgumentError(
            f"{what} would need {need / 1e9:.3g} GB of memory (more than a quarter of this "
            f"machine's {limit * 4 / 1e9:.3g} GB); ask for less"
        )


def _needs_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with a clear error when its model argument is not a fitted model at all (an
    AttributeError from a fitted model itself is a bug and propagates)."""

    @functools.wraps(fn)
    def wrapper(m: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(m, *args, **kwargs)
        except AttributeError:
            # one of the package's own objects (a fitted model, an lmList): a bug, not the
            # caller's; this layer knows no model classes, so it asks for the class's module
            if type(m).__module__.split(".")[0] == __name__.split(".")[0]:
                raise
            raise ArgumentError(f"{fn.__name__}() needs a fitted model (from lmer or glmer), "
                                f"not {type(m).__name__}") from None

    return wrapper


def model_functions(namespace: MutableMapping[str, Any], names: Sequence[str]) -> None:
    """Wrap the functions ``names`` of a module's ``namespace`` whose first parameter is the
    model ``m``: given something else (a string, a number), they raise ArgumentError saying
    so instead of an AttributeError from deep inside."""
    for name in names:
        fn = namespace[name]
        if callable(fn) and next(iter(inspect.signature(fn).parameters), None) == "m":
            namespace[name] = _needs_model(fn)
