"""The formula layer: R's parser, deparse, terms() algebra and lme4's bar tools (no data)."""

from __future__ import annotations

import numpy as np
import pytest

import lmeformula as lmf
from lmeformula.formula import deparse, findbars, nobars, parse_expression, parse_formula, subbars
from lmeformula.formula.ast import cat_fill, deparse_lines
from lmeformula.formula.bars import expand_double_verts
from lmeformula.formula.terms import terms


def rhs(text: str):  # type: ignore[no-untyped-def]
    return parse_formula(text)[1]


@pytest.mark.parametrize(("text", "expected"), [
    ("y~x+(Days|Subject)", "y ~ x + (Days | Subject)"),
    ("y ~ log(y+1) + I(x^2) + x/2 + a:b", "y ~ log(y + 1) + I(x^2) + x/2 + a:b"),
    ("y ~ poly(x,2,raw=TRUE)", "y ~ poly(x, 2, raw = TRUE)"),
    ("y ~ `odd name` + x", "y ~ `odd name` + x"),
    ("y ~ x %in% g", "y ~ x %in% g"),
    ("y ~ -1 + x", "y ~ -1 + x"),
    ("y ~ x**2", "y ~ x^2"),
    ("y ~ I(1e5 * x)", "y ~ I(1e+05 * x)"),
    ("y ~ I(x == 'a')", 'y ~ I(x == "a")'),
])
def test_deparse_as_r(text: str, expected: str) -> None:
    assert deparse(parse_expression(text)) == expected


@pytest.mark.parametrize(("formula", "labels", "intercept"), [
    ("y ~ a*b", ["a", "b", "a:b"], True),
    ("y ~ (a + b + c)^2", ["a", "b", "c", "a:b", "a:c", "b:c"], True),
    ("y ~ a/b", ["a", "a:b"], True),
    ("y ~ (a + b)/c", ["a", "b", "a:b:c"], True),
    ("y ~ b %in% a", ["b:a"], True),
    ("y ~ a + b:a", ["a", "a:b"], True),  # variables in order of appearance
    ("y ~ b:a + a", ["a", "b:a"], True),
    ("y ~ a*b - a", ["b", "a:b"], True),
    ("y ~ 0 + a", ["a"], False),
    ("y ~ a - 1", ["a"], False),
    ("y ~ -1 + a + 1", ["a"], True),
    ("y ~ a + offset(o)", ["a"], True),
    ("y ~ 1", [], True),
])
def test_terms_algebra(formula: str, labels: list[str], intercept: bool) -> None:
    lhs, r = parse_formula(formula)
    t = terms(r, lhs)
    assert t.term_labels == labels
    assert t.intercept == intercept


def test_offsets_are_recorded() -> None:
    t = terms(rhs("y ~ x + offset(log(n))"))
    assert [deparse(o) for o in t.offsets] == ["offset(log(n))"]


@pytest.mark.parametrize(("formula", "bars"), [
    ("y ~ x + (x | g)", ["x | g"]),
    ("y ~ (1 | a/b)", ["1 | b:a", "1 | a"]),
    ("y ~ (1 | a/b/c)", ["1 | c:(b:a)", "1 | b:a", "1 | a"]),
    ("y ~ (x + z || g)", ["1 | g", "0 + x | g", "0 + z | g"]),
    ("y ~ (x*z || g)", ["1 | g", "0 + x | g", "0 + z | g", "0 + x:z | g"]),
    ("y ~ (0 + x || g)", ["0 + x | g"]),
    ("y ~ (1 | g) + x + (0 + x | h)", ["1 | g", "0 + x | h"]),
])
def test_findbars(formula: str, bars: list[str]) -> None:
    assert [deparse(b) for b in findbars(rhs(formula))] == bars


def test_double_verts_are_stored_expanded() -> None:
    assert deparse(expand_double_verts(rhs("y ~ Days + (Days || Subject)"))) == \
        "Days + ((1 | Subject) + (0 + Days | Subject))"


@pytest.mark.parametrize(("formula", "fixed"), [
    ("y ~ x + (1 | g)", "x"),
    ("y ~ (1 | g) + x + (x | h)", "x"),
    ("y ~ x - (1 | g)", "x"),
])
def test_nobars(formula: str, fixed: str) -> None:
    assert deparse(nobars(rhs(formula))) == fixed


def test_nobars_of_random_only_is_intercept() -> None:
    assert nobars(rhs("y ~ (1 | g)")) is None


def test_subbars() -> None:
    assert deparse(subbars(rhs("y ~ x + (x | g)"))) == "x + (x + g)"
    assert deparse(subbars(rhs("y ~ (1 | a/b)"))) == "(1 + a/b)"


def test_slash_must_be_top_level_in_grouping() -> None:
    with pytest.raises(lmf.FormulaError, match="unparseable formula for grouping factor"):
        findbars(rhs("y ~ (1 | log(a/b))"))


@pytest.mark.parametrize("text", ["y ~ (x | g", "y ~ x +", "y ~ x ) ", "y ~ 'x", "y ~ x $ z",
                                  "", "y x"])
def test_parse_errors(text: str) -> None:
    with pytest.raises(lmf.FormulaError):
        parse_formula(text)


def test_long_formula_lines_break_as_r_deparse() -> None:
    node = parse_expression("log(y2) ~ poly(x, 2) + log(z + 10) + scale(w) + factor(k) + "
                            "I(x^3) + (1 | g1)")
    lines = deparse_lines(node)
    assert lines == ["log(y2) ~ poly(x, 2) + log(z + 10) + scale(w) + factor(k) + I(x^3) + ",
                     "    (1 | g1)"]
    assert cat_fill(["Formula:", *lines]).split("\n")[1] == "    (1 | g1)"


def test_character_columns_become_factors_in_code_point_order_with_missing_values() -> None:
    from lmeformula.transforms import as_factor

    f = as_factor(np.array(["b", None, "B", "a", np.nan, "b"], dtype=object))
    assert list(f.categories) == ["B", "a", "b"]  # C locale: upper case first
    assert list(f.codes) == [2, -1, 0, 1, -1, 2]
    mixed = as_factor(np.array([1, "a", None], dtype=object))  # str() of each, as R's factor
    assert list(mixed.categories) == ["1", "a"]
    assert list(mixed.codes) == [0, 1, -1]
