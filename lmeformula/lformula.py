"""The result of lme4's ``lFormula``: the parsed formula (:class:`ParsedFormula`) and the
structures built from it and the data (:class:`LFormula`), each printing itself with
:mod:`lmeformula.rformat`.

:func:`lmeformula.modular.lFormula` builds an :class:`LFormula` (R syntax), and so does the
formulaic front end (:mod:`lmeformula.pyformula`, a subclass); both sit above this module, which
is why the dataclass lives here and not in ``modular`` (imports run one way down the pipeline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import pandas as pd

from .call import ModelCall
from .control import LmerControl
from .errors import FormulaError
from .formula.ast import BinOp, Name, Node, Paren, UnaryOp, deparse
from .formula.bars import expand_double_verts, findbars, nobars
from .formula.parser import parse_formula
from .formula.terms import Terms, terms
from .frame import ModelFrame
from .modelmatrix import XAttrs
from .reterms import ReTrms, format_reterms

__all__ = ["LFormula", "ParsedFormula", "format_lformula", "has_dot", "parse_lmer_formula"]


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula split into its parts (no data involved).

    Attributes
    ----------
    text
        The formula as given.
    lhs
        Response expression, or None.
    rhs
        Right-hand side with ``||`` expanded (lme4 stores this form).
    bars
        Random-effects terms in formula order, slashes expanded.
    fixed
        The fixed-effects terms (``nobars``).
    written
        Where a ``.`` was expanded over the data's columns: the right-hand side as lme4
        stores and prints it, the ``.`` kept (``||`` expanded); None otherwise.
    """

    text: str
    lhs: Node | None
    rhs: Node
    bars: tuple[BinOp, ...]
    fixed: Terms
    written: Node | None = None

    @property
    def stored_rhs(self) -> Node:
        """The right-hand side lme4 stores: ``||`` expanded, a ``.`` kept."""
        return self.rhs if self.written is None else self.written

    @cached_property
    def expanded(self) -> str:
        """The formula lme4 stores: ``||`` expanded."""
        rhs = deparse(self.stored_rhs)
        return f"{deparse(self.lhs)} ~ {rhs}" if self.lhs is not None else f"~{rhs}"


def parse_lmer_formula(formula: str, columns: Sequence[str] | None = None) -> ParsedFormula:
    """Split an lme4 formula into response, random-effects bars and fixed terms.

    ``columns``: the data's column names, for a ``.`` in the formula (every column but the
    response's variables, as R's model.frame expands it); without them a ``.`` is an error."""
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, not {type(formula).__name__}")
    dot = columns is not None and has_dot(formula)
    return _parse_lmer_formula(formula, tuple(map(str, columns)) if dot and columns is not None
                               else None)


@lru_cache(maxsize=256)
def has_dot(formula: str) -> bool:
    """Whether the formula has a ``.`` among its terms (outside calls and bars)."""
    _lhs, rhs = parse_formula(formula)
    return _replace_dot(rhs, rhs) is not rhs


def _replace_dot(node: Node, expansion: Node) -> Node:
    """``node`` with each ``.`` among its terms replaced by ``expansion`` (the same object
    when there is none); a ``.`` inside a function call or a random-effects bar is left."""
    if isinstance(node, Name) and node.id == ".":
        return expansion
    if isinstance(node, BinOp) and node.op not in ("|", "||"):
        left, right = _replace_dot(node.left, expansion), _replace_dot(node.right, expansion)
        return node if left is node.left and right is node.right else BinOp(node.op, left,
                                                                            right)
    if isinstance(node, UnaryOp) and node.op in ("+", "-"):
        operand = _replace_dot(node.operand, expansion)
        return node if operand is node.operand else UnaryOp(node.op, operand)
    if isinstance(node, Paren):
        expr = _replace_dot(node.expr, expansion)
        return node if expr is node.expr else Paren(expr)
    return node


def _expand_dot(lhs: Node | None, rhs: Node, columns: tuple[str, ...]) -> Node:
    """R's ``.`` in a model formula: ``(a + b + ...)``, the data's columns other than the
    response's variables, in the data's order."""
    if lhs is not None and not isinstance(lhs, Name):
        # lme4 expands the fixed part's '.' over the model frame's columns, where the
        # response is a column named by its expression, which R does not recognise as the
        # response: log(y) ~ . has log(y) among its own predictors there
        raise FormulaError(f"'.' with a response that is an expression ({deparse(lhs)}): "
                           "lme4 would count the response among the predictors; name the "
                           "variables")
    response = {lhs.id} if isinstance(lhs, Name) else set()
    names = [Name(c) for c in columns if c not in response]
    if not names:
        raise FormulaError("'.' in the formula stands for no variable: the data have no "
                           "column but the response")
    total: Node = names[0]
    for name in names[1:]:
        total = BinOp("+", total, name)
    return Paren(total)


@lru_cache(maxsize=256)
def _parse_lmer_formula(formula: str, columns: tuple[str, ...] | None = None
                        ) -> ParsedFormula:
    # cached: the result is immutable (frozen syntax trees), and refits, bootstraps and
    # profiles parse the same text again and again
    lhs, rhs = parse_formula(formula)
    written = None
    if columns is not None:
        written = expand_double_verts(rhs)
        rhs = _replace_dot(rhs, _expand_dot(lhs, rhs, columns))
    rhs = expand_double_verts(rhs)
    bars = tuple(findbars(rhs))
    fixed_rhs = nobars(rhs)
    return ParsedFormula(formula, lhs, rhs, bars, terms(fixed_rhs, lhs), written)


@dataclass
class LFormula:
    """The result of :func:`lFormula`, lme4's ``lFormula()`` list.

    Attributes
    ----------
    fr
        The model frame (rows kept, variables used), a DataFrame with the caller's index.
    X
        Fixed-effects model matrix, columns named exactly as R's ``model.matrix``.
    X_values, X_names
        The same matrix as an array and its column names (what the fit uses; ``fr`` and ``X``
        are built from them, and from ``frame``, on first access). Where a random-effects
        term's model matrix holds the same numbers (``y ~ x + (x | g)``) the two are one
        read-only array: to change X, pass an edited copy with ``dataclasses.replace``.
    reTrms
        Random-effects structures (:class:`lmeformula.reterms.ReTrms`).
    REML
        Whether the REML criterion is to be used.
    formula
        The formula with ``||`` expanded, as lme4 stores it.
    wmsgs
        Messages of the checks that warned (lme4's ``wmsgs``).
    y
        The response (None for a one-sided formula).
    frame
        The full :class:`lmeformula.frame.ModelFrame` (transform state, NA record, offset).
    X_attrs
        R's attributes of X (:class:`lmeformula.modelmatrix.XAttrs`): ``assign``,
        ``contrasts``, ``msgScaleX`` and, when columns were dropped, ``msgRankdrop`` and
        ``col.dropped``.
    parsed
        The :class:`ParsedFormula`.
    control
        The checks' settings used.
    call
        The arguments of the call (:class:`lmeformula.call.ModelCall`: ``formula``, ``data``,
        ``weights``, ``offset``, ``subset``, ``na_action``, ``contrasts``, ...), the object the
        frame and the structures were built from, kept for ``predict``, ``update`` and
        ``refit``.
    """

    X_values: np.ndarray = field(repr=False)
    X_names: list[str]
    reTrms: ReTrms
    REML: bool
    formula: str
    wmsgs: list[str]
    y: np.ndarray | None
    frame: ModelFrame = field(repr=False)
    X_attrs: XAttrs = field(repr=False)
    parsed: ParsedFormula = field(repr=False)
    control: LmerControl = field(repr=False)
    call: ModelCall = field(repr=False)

    # The DataFrames are built on first access: a fit needs only the arrays.
    @cached_property
    def fr(self) -> pd.DataFrame:
        """The model frame (rows kept, variables used), with the caller's index."""
        return self.frame.data

    @cached_property
    def X(self) -> pd.DataFrame:
        """The fixed-effects model matrix, columns named as R's ``model.matrix`` names them."""
        return pd.DataFrame(self.X_values, columns=self.X_names, index=self.frame.index)

    @property
    def weights(self) -> np.ndarray | None:
        """Prior weights, or None."""
        return self.frame.weights

    @property
    def offset(self) -> np.ndarray | None:
        """The total offset, or None."""
        return self.frame.offset

    def __getitem__(self, key: str) -> Any:
        """lme4-style access: ``pf["reTrms"]``."""
        return getattr(self, key)

    def __repr__(self) -> str:
        return format_lformula(self)



def format_lformula(pf: LFormula, width: int = 80) -> str:
    """The lFormula result: formula, X's columns, and the random-effects structures."""
    n, p = pf.X.shape
    lines = [
        f"lFormula: {pf.formula}",
        f"  {'REML' if pf.REML else 'ML'}; {n} observations used"
        + (f" ({len(pf.frame.na_action.omitted)} rows dropped for NA)"
           if pf.frame.na_action is not None else ""),
        "",
        f"$X  ({n} x {p}) columns: " + ", ".join(pf.X.columns),
        "",
        f"$reTrms$Zt: {pf.reTrms.Zt.shape[0]} x {pf.reTrms.Zt.shape[1]} sparse, "
        f"{pf.reTrms.Zt.nnz} non-zeros",
        "",
        format_reterms(pf.reTrms, width),
    ]
    if pf.wmsgs:
        lines += ["", "$wmsgs"] + [f"  {m}" for m in pf.wmsgs]
    return "\n".join(lines)
