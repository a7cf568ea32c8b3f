"""lme4's formula tools on syntax trees: ``findbars``, ``nobars``, ``subbars``,
``expand_double_verts`` and the slash expansion of nested grouping factors (lme4 1.1-31).
"""

from __future__ import annotations

from ..errors import FormulaError
from .ast import BinOp, Call, Name, Node, Paren, UnaryOp, deparse
from .parser import parse_expression
from .terms import terms

__all__ = [
    "expand_double_verts",
    "expand_slash",
    "findbars",
    "group_label",
    "is_bar",
    "nobars",
    "subbars",
]


def is_bar(node: Node) -> bool:
    """True for ``a | b`` and ``a || b``, also inside parentheses."""
    while isinstance(node, Paren):
        node = node.expr
    return isinstance(node, BinOp) and node.op in ("|", "||")


def _any_bars(node: Node) -> bool:
    if is_bar(node):
        return True
    if isinstance(node, Paren):
        return _any_bars(node.expr)
    if isinstance(node, UnaryOp):
        return _any_bars(node.operand)
    if isinstance(node, BinOp):
        return _any_bars(node.left) or _any_bars(node.right)
    if isinstance(node, Call):
        return any(_any_bars(v) for _, v in node.args)
    return False


def _expand_double_vert(bar: BinOp) -> Node:
    """``(x + z || g)`` -> ``(1 | g) + (0 + x | g) + (0 + z | g)``, as lme4 builds it."""
    lhs_terms = terms(bar.left)
    pieces = ["0+" + label for label in lhs_terms.term_labels]
    if lhs_terms.intercept:
        pieces.insert(0, "1")
    group = deparse(bar.right)
    text = "(" + ")+(".join(f"{p}|{group}" for p in pieces) + ")"
    return parse_expression(text)


def expand_double_verts(node: Node) -> Node:
    """Rewrite every ``(lhs || g)`` into independent terms (lme4's ``expandDoubleVerts``)."""
    if isinstance(node, BinOp):
        if node.op == "||":
            return _expand_double_vert(node)
        return BinOp(node.op, expand_double_verts(node.left), expand_double_verts(node.right))
    if isinstance(node, Paren):
        return Paren(expand_double_verts(node.expr))
    if isinstance(node, UnaryOp):
        return UnaryOp(node.op, expand_double_verts(node.operand))
    return node


def _raw_bars(node: Node) -> list[BinOp]:
    if isinstance(node, Paren):
        return _raw_bars(node.expr)
    if isinstance(node, BinOp):
        if node.op == "|":
            return [node]
        return _raw_bars(node.left) + _raw_bars(node.right)
    if isinstance(node, UnaryOp):
        return _raw_bars(node.operand)
    if isinstance(node, Call) and any(_any_bars(v) for _, v in node.args):
        raise FormulaError(
            f"random-effects term inside a function call is not supported: {deparse(node)}"
        )
    return []


def _contains_slash(node: Node) -> bool:
    if isinstance(node, BinOp):
        return node.op == "/" or _contains_slash(node.left) or _contains_slash(node.right)
    if isinstance(node, Paren):
        return _contains_slash(node.expr)
    if isinstance(node, UnaryOp):
        return _contains_slash(node.operand)
    if isinstance(node, Call):
        return any(_contains_slash(v) for _, v in node.args)
    return False


def _slash_tree(node: Node) -> Node | list:
    """``a/b/c`` -> nested lists ``[[a, b], c]`` (lme4's ``slashTerms``)."""
    if not _contains_slash(node):
        return node
    if isinstance(node, Paren):
        return _slash_tree(node.expr)
    if not (isinstance(node, BinOp) and node.op == "/"):
        raise FormulaError("unparseable formula for grouping factor")
    return [_slash_tree(node.left), _slash_tree(node.right)]


def _make_interaction(tree: Node | list) -> list:
    """lme4's ``makeInteraction``: innermost first, ``c:(b:a)``, then ``b:a``, then ``a``."""
    if not isinstance(tree, list):
        return [tree]
    outer = _make_interaction(tree[0])
    inner = tree[1]
    if isinstance(inner, list):
        raise FormulaError("unparseable formula for grouping factor")
    return [BinOp(":", inner, outer[0]), *outer]


def expand_slash(bar: BinOp) -> list[BinOp]:
    """Expand ``lhs | a/b`` into ``[lhs | b:a, lhs | a]``; other bars are returned unchanged."""
    tree = _slash_tree(bar.right)
    if not isinstance(tree, list):
        return [bar]
    return [BinOp("|", bar.left, group) for group in _make_interaction(tree)]


def findbars(rhs: Node) -> list[BinOp]:
    """The random-effects terms of a formula's right-hand side, in lme4's order.

    ``||`` is expanded first, then each ``a/b`` grouping is expanded into its nested terms.
    """
    bars: list[BinOp] = []
    for bar in _raw_bars(expand_double_verts(rhs)):
        bars.extend(expand_slash(bar))
    return bars


def nobars(rhs: Node) -> Node | None:
    """The right-hand side with every bar term removed; None when nothing is left (``~ 1``)."""
    if not _any_bars(rhs):
        return rhs
    if is_bar(rhs):
        return None
    if isinstance(rhs, Paren):
        inner = nobars(rhs.expr)
        return None if inner is None else Paren(inner)
    if isinstance(rhs, UnaryOp):
        inner = nobars(rhs.operand)
        return None if inner is None else UnaryOp(rhs.op, inner)
    if isinstance(rhs, BinOp):
        left, right = nobars(rhs.left), nobars(rhs.right)
        if left is None:
            return right
        if right is None:
            return left
        return BinOp(rhs.op, left, right)
    return None  # a call with a bar argument is deleted, as lme4 does


def subbars(node: Node) -> Node:
    """Replace ``|`` and ``||`` by ``+`` everywhere (lme4's ``subbars``)."""
    if isinstance(node, BinOp):
        op = "+" if node.op in ("|", "||") else node.op
        return BinOp(op, subbars(node.left), subbars(node.right))
    if isinstance(node, Paren):
        return Paren(subbars(node.expr))
    if isinstance(node, UnaryOp):
        return UnaryOp(node.op, subbars(node.operand))
    return node


def bar_name(bar: BinOp) -> str:
    """lme4's term name: ``deparse(bar)``, for example ``"0 + Days | Subject"``."""
    return deparse(bar)


def interaction_parts(group: Node) -> list[Node]:
    """The parts of a grouping expression's interaction (``a:factor(k)`` -> ``[a, factor(k)]``;
    a lone expression is its own part), parentheses removed."""
    if isinstance(group, Paren):
        return interaction_parts(group.expr)
    if isinstance(group, BinOp) and group.op == ":":
        return interaction_parts(group.left) + interaction_parts(group.right)
    return [group]


def grouping_variables(group: Node) -> list[Name]:
    """The variables a grouping expression uses as parts (``a:b`` -> ``[a, b]``)."""
    return [part for part in interaction_parts(group) if isinstance(part, Name)]


def group_label(group: Node) -> str:
    """lme4's name of a grouping factor (flist, cnms, ranef): R's ``deparse(g)``, which writes
    a lone name without backticks (``Sub ject``) and a call with them (```a b`:c``)."""
    if isinstance(group, Paren):
        return deparse(group)
    return group.id if isinstance(group, Name) else deparse(group)
