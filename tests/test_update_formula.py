"""R's update.formula: "." substituted on each side (also inside calls), terms simplified.

The expected strings are what R 4.2.2's ``update(old, new)`` printed (LC_ALL=C).
"""

from __future__ import annotations

import pytest

from lmeformula.lmer import update_formula

R_UPDATES = [
    ("y ~ x", ". ~ . + z", "y ~ x + z"),
    ("y ~ x", "log(.) ~ . + z", "log(y) ~ x + z"),
    ("a + b ~ x", "log(.) ~ . + z", "log(a + b) ~ x + z"),
    ("y ~ x + w", "sqrt(.) ~ . - w + (1 | g)", "sqrt(y) ~ x + (1 | g)"),
    ("~ x", "log(w) + . ~ . + z", "log(w) + . ~ x + z"),
    ("~ x", "~ . + z", "~x + z"),
    ("y ~ x * w", ". ~ . - x:w", "y ~ x + w"),
    ("y ~ x + (1 | g)", ". ~ . - (1 | g) + (x | g)", "y ~ x + (x | g)"),
    ("y ~ x", "~ . + z", "y ~ x + z"),
    ("y ~ x + z", ". ~ 0 + .", "y ~ x + z - 1"),
    ("y ~ x", "exp(.) ~ poly(., 2)", "exp(y) ~ poly(x, 2)"),
    ("y ~ x + (1 | g)", ". ~ . + z", "y ~ x + (1 | g) + z"),
    ("y ~ x * w", ". ~ . + z", "y ~ x + w + z + x:w"),
    ("y ~ x * w + (1 | g)", ". ~ . - 1", "y ~ x + w + (1 | g) + x:w - 1"),
    ("y ~ x", ". ~ . + offset(o) + z:x", "y ~ x + x:z + offset(o)"),
    ("y ~ x", ". ~ . - x - 1", "y ~ 1 - 1"),
    ("y ~ x", ". ~ . - x", "y ~ 1"),
    ("y ~ x + (1 | g) + (1 | g)", ". ~ .", "y ~ x + (1 | g)"),
    ("y ~ x + (x || g)", ". ~ . + w", "y ~ x + (x || g) + w"),
]


def _squash(formula: str) -> str:
    # R deparses a one-sided formula as "~x"; compare without spaces
    return formula.replace(" ", "")


@pytest.mark.parametrize(("old", "new", "expected"), R_UPDATES)
def test_update_formula_as_r(old: str, new: str, expected: str) -> None:
    assert _squash(update_formula(old, new)) == _squash(expected)
