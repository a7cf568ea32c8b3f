"""R's number formatting (``format``, ``print`` of named vectors, ``abbreviate``), so that
printed output lines up with R's character for character. Presentation only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["abbreviate", "format_numbers", "print_named", "signif_digits", "zapsmall"]


def signif_digits(x: float, digits: int) -> tuple[int, int]:
    """(significant digits needed, power of ten) of ``x`` shown with ``digits`` significant
    digits, trailing zeros dropped (R's ``scientific()`` in format.c)."""
    if x == 0 or not math.isfinite(x):
        return 1, 0
    mantissa, exponent = f"{abs(x):.{digits - 1}e}".split("e")
    sig = mantissa.replace(".", "").rstrip("0")
    return max(len(sig), 1), int(exponent)


def format_numbers(values: Sequence[float], digits: int = 7, nsmall: int = 0) -> list[str]:
    """R's ``format(x, digits, nsmall)`` of a numeric vector: common decimals, common width."""
    # + 0.0 turns -0.0 into 0.0, as R prints it; 15 significant digits drop the round-off
    # noise in which two engines differ (1527.4999999999998 is 1527.5 to R and to us)
    xs = [float(f"{float(v):.15g}") + 0.0 for v in values]
    finite = [x for x in xs if math.isfinite(x)]
    if not finite:
        out = ["NA" if math.isnan(x) else ("Inf" if x > 0 else "-Inf") for x in xs]
    else:
        rgt, left, neg, mxns = 0, 1, 0, 1
        min_e, max_e = 10**6, -(10**6)
        for x in finite:
            sig, kp = signif_digits(x, digits)
            rgt = max(rgt, sig - kp - 1)
            left = max(left, kp + 1)
            neg = max(neg, 1 if x < 0 else 0)
            mxns = max(mxns, sig)
            min_e, max_e = min(min_e, kp), max(max_e, kp)
        rgt = max(rgt, nsmall, 0)
        fixed_width = neg + left + (rgt + 1 if rgt > 0 else 0)
        exp_width = 4 if max(abs(min_e), abs(max_e)) < 100 else 5
        sci_width = neg + (mxns + 1 if mxns > 1 else mxns) + exp_width
        if fixed_width > sci_width:
            out = [_sci(x, mxns - 1) if math.isfinite(x) else _nonfinite(x) for x in xs]
        else:
            out = [f"{x:.{rgt}f}" if math.isfinite(x) else _nonfinite(x) for x in xs]
    width = max(len(s) for s in out)
    return [s.rjust(width) for s in out]


def _nonfinite(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Inf" if x > 0 else "-Inf")


def _sci(x: float, decimals: int) -> str:
    m, e = f"{x:.{decimals}e}".split("e")
    sign = "-" if e.startswith("-") else "+"
    return f"{m}e{sign}{e.lstrip('+-').lstrip('0').rjust(2, '0')}"


def zapsmall(values: np.ndarray, digits: int) -> np.ndarray:
    """R 4.2's ``zapsmall``: ``round(x, digits - log10(max|x|))``, where ``round`` takes the
    nearest integer number of decimals (R 4.2 has no ``ceiling`` here)."""
    x = np.asarray(values, float)
    mx = np.nanmax(np.abs(x)) if x.size else 0.0
    decimals = max(0, math.floor(digits - math.log10(mx) + 0.5)) if mx > 0 else digits
    return np.round(x, decimals)


def print_named(values: Sequence[str], names: Sequence[str], width: int = 80) -> str:
    """R's print of a named vector (already formatted): names right-aligned above values."""
    w = max([len(v) for v in values] + [len(n) for n in names])
    per_line = max(1, width // (w + 1))
    lines = []
    for start in range(0, len(values), per_line):
        chunk = slice(start, start + per_line)
        lines.append("".join(n.rjust(w) + " " for n in names[chunk]))
        lines.append("".join(v.rjust(w) + " " for v in values[chunk]))
    return "\n".join(lines)


def abbreviate(name: str, minlength: int) -> str:
    """R's ``abbreviate(name, minlength)`` (``stripchars`` in R's C code).

    From the right, never touching the first character or one that follows a space, it drops
    lower-case vowels, then lower-case letters, until the length without spaces is at most
    ``minlength``; then spaces go.
    """
    chars = list(name.strip())
    if len(chars) <= minlength:
        return "".join(chars)
    while chars and chars[-1].isspace():
        chars.pop()
    nspace = sum(c.isspace() for c in chars)

    def short() -> bool:
        return len(chars) - nspace <= minlength

    # abbreviate(strict = FALSE): only lower-case letters go, so the result may stay longer
    # than minlength ("poly(Days, 3)1" -> "p(D,3)1")
    tests = (lambda c: c in "aeiou", str.islower)
    done = short()
    for test in tests:
        if done:
            break
        for i in range(len(chars) - 1, 0, -1):
            if i < len(chars) and test(chars[i]) and not chars[i - 1].isspace():
                del chars[i]
            if short():
                done = True
                break
    if len(chars) > minlength:
        chars = [chars[0]] + [c for c in chars[1:] if not c.isspace()]
    return "".join(chars)
