"""R's ``terms()`` algebra for the fixed part of a formula and for a bar's left-hand side.

This follows R's ``EncodeVars`` (src/library/stats/src/model.c): every variable gets an index in
order of first appearance (the response first), every term is a set of variable indices, and the
operators combine term lists:

``a + b``   union of the term lists          ``a:b``   pairwise unions
``a * b``   ``a + b + a:b``                  ``a/b``   ``a + (all of a):b``
``a %in% b`` each term of a with all of b    ``(a+b)^k`` interactions up to order k
``- b``     removes b's terms (``-1`` removes the intercept); ``0`` / ``1`` set the intercept.

Terms are then ordered by degree, keeping formula order within a degree, and labelled with their
variables in variable order (``y ~ a + b:a`` gives ``a``, ``a:b``), exactly as R labels them.
No numerics here: this module only manipulates syntax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

from ..errors import FormulaError
from .ast import BinOp, Call, Name, Node, Num, Paren, Str, UnaryOp, deparse

__all__ = ["Terms", "terms"]

Term = frozenset[int]


@dataclass(frozen=True)
class Terms:
    """The terms of a one- or two-sided formula without random-effects bars.

    Attributes
    ----------
    variables
        Every variable expression, in R's variable order (the response first).
    response
        Index of the response in ``variables``, or None for a one-sided formula.
    terms
        Each term as a tuple of variable indices in increasing order; terms are in R's order.
    intercept
        Whether the model has an intercept.
    offsets
        ``offset(...)`` expressions found among the terms; they are not terms themselves.
    """

    variables: tuple[Node, ...]
    response: int | None
    terms: tuple[tuple[int, ...], ...]
    intercept: bool
    offsets: tuple[Node, ...] = field(default=())

    @property
    def variable_names(self) -> list[str]:
        """The deparsed variable expressions (R's ``variables`` attribute)."""
        return list(self._variable_names)

    @cached_property
    def _variable_names(self) -> tuple[str, ...]:
        # deparsed once per Terms (the model matrix reads them at every fit of a formula)
        return tuple(deparse(v) for v in self.variables)

    @property
    def term_labels(self) -> list[str]:
        """R's ``term.labels``: variables of each term joined by ``:``."""
        names = self.variable_names
        return [":".join(names[i] for i in term) for term in self.terms]

    @property
    def drop_scope(self) -> list[str]:
        """R's ``drop.scope``: the labels of the terms no other term contains
        (``factor.scope``: a term can be dropped unless another term has all of its
        variables)."""
        sets = [set(term) for term in self.terms]
        return [lab for i, lab in enumerate(self.term_labels)
                if not any(j != i and sets[i] <= sets[j] for j in range(len(sets)))]

    @property
    def order(self) -> list[int]:
        """Degree of each term."""
        return [len(t) for t in self.terms]


class _Encoder:
    """Recursive term encoder with R's global intercept flag and parity for deletion."""

    def __init__(self) -> None:
        self.variables: list[Node] = []
        self.keys: dict[str, int] = {}
        self.intercept = True
        self.parity = True

    def install(self, node: Node) -> int:
        key = deparse(node)
        if key not in self.keys:
            self.keys[key] = len(self.variables)
            self.variables.append(node)
        return self.keys[key]

    def encode(self, node: Node) -> list[Term]:
        if isinstance(node, Num) and node.value in (0.0, 1.0):
            one = node.value == 1.0
            self.intercept = one if self.parity else not one
            return []
        if isinstance(node, Paren):
            return self.encode(node.expr)
        if isinstance(node, UnaryOp):
            if node.op == "+":
                return self.encode(node.operand)
            if node.op == "-":
                return self.delete([], node.operand)
            raise FormulaError(f"invalid model formula term: {deparse(node)}")
        if isinstance(node, BinOp):
            return self.binary(node)
        if isinstance(node, Name) and node.id == ".":
            raise FormulaError("'.' in formulas is not supported: name the variables")
        if isinstance(node, (Name, Call, Str)):
            return [frozenset({self.install(node)})]
        raise FormulaError(f"invalid model formula term: {deparse(node)}")

    def binary(self, node: BinOp) -> list[Term]:
        op = node.op
        if op == "+":
            return _trim(self.encode(node.left) + self.encode(node.right))
        if op == "-":
            return self.delete(self.encode(node.left), node.right)
        if op == ":":
            return _interact(self.encode(node.left), self.encode(node.right))
        if op == "*":
            left, right = self.encode(node.left), self.encode(node.right)
            return _trim(left + right + _interact(left, right))
        if op == "/":
            left, right = self.encode(node.left), self.encode(node.right)
            whole = frozenset().union(*left) if left else frozenset()
            return _trim(left + [whole | r for r in right])
        if op == "%in%":
            left, right = self.encode(node.left), self.encode(node.right)
            whole = frozenset().union(*right) if right else frozenset()
            return _trim([t | whole for t in left])
        if op == "^":
            power = node.right
            if isinstance(power, Paren):
                power = power.expr
            if (not isinstance(power, Num) or not math.isfinite(power.value)
                    or power.value < 1 or power.value != int(power.value)):
                raise FormulaError(f"invalid power in formula: {deparse(node)}")
            base = self.encode(node.left)
            result = list(base)
            # R's meaning: a power at or above the number of terms adds nothing more, so
            # (a + b)^1e9 stops after len(base) rounds instead of looping a billion times
            for _ in range(min(int(power.value), max(len(base), 1)) - 1):
                result = _trim(result + _interact(result, base))
            return result
        if op in ("|", "||"):
            raise FormulaError(f"random-effects term in an unexpected place: {deparse(node)}")
        raise FormulaError(f"invalid model formula operator '{op}' in {deparse(node)}")

    def delete(self, left: list[Term], right_node: Node) -> list[Term]:
        self.parity = not self.parity
        right = self.encode(right_node)
        self.parity = not self.parity
        drop = set(right)
        return [t for t in left if t not in drop]


def _trim(terms_: list[Term]) -> list[Term]:
    """Remove empty and repeated terms, keeping first appearances (R's TrimRepeats)."""
    seen: set[Term] = set()
    out: list[Term] = []
    for t in terms_:
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return out


def _interact(left: list[Term], right: list[Term]) -> list[Term]:
    return _trim([lt | rt for lt in left for rt in right])


def _is_offset(node: Node) -> bool:
    return isinstance(node, Call) and node.fn == "offset"


def terms(rhs: Node | None, lhs: Node | None = None) -> Terms:
    """Build R's terms object for ``lhs ~ rhs``; ``rhs`` None means ``~ 1``.

    Parameters
    ----------
    rhs
        Right-hand side without random-effects bars.
    lhs
        Response expression, or None for a one-sided formula.

    Returns
    -------
    Terms
        Variables, ordered terms, intercept flag and offsets.
    """
    enc = _Encoder()
    response = enc.install(lhs) if lhs is not None else None
    encoded = enc.encode(rhs) if rhs is not None else []
    offsets_idx = {i for i, v in enumerate(enc.variables) if _is_offset(v)}
    kept = [t for t in encoded if not (t & offsets_idx)]
    if response is not None:
        kept = [t for t in kept if t != frozenset({response})]
    # stable sort by degree, as terms.formula(keep.order = FALSE)
    ordered = sorted(kept, key=len)
    return Terms(
        variables=tuple(enc.variables),
        response=response,
        terms=tuple(tuple(sorted(t)) for t in ordered),
        intercept=enc.intercept,
        offsets=tuple(enc.variables[i] for i in sorted(offsets_idx)),
    )
