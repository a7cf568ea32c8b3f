"""The result of lme4's ``lFormula``: the parsed formula (:class:`ParsedFormula`) and the
structures built from it and the data (:class:`LFormula`), each printing itself with
:mod:`lmeformula.rformat`.

:func:`lmeformula.modular.lFormula` builds an :class:`LFormula` (R syntax), and so does the
formulaic front end (:mod:`lmeformula.pyformula`, a subclass); both sit above this module, which
is why the dataclass lives here and not in ``modular`` (imports run one way down the pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import pandas as pd

from .call import ModelCall
from .control import LmerControl
from .errors import FormulaError
from .formula.ast import BinOp, Node, deparse
from .formula.bars import expand_double_verts, findbars, nobars
from .formula.parser import parse_formula
from .formula.terms import Terms, terms
from .frame import ModelFrame
from .modelmatrix import XAttrs
from .reterms import ReTrms, format_reterms

__all__ = ["LFormula", "ParsedFormula", "format_lformula", "parse_lmer_formula"]


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
    """

    text: str
    lhs: Node | None
    rhs: Node
    bars: tuple[BinOp, ...]
    fixed: Terms

    @cached_property
    def expanded(self) -> str:
        """The formula lme4 stores: ``||`` expanded."""
        rhs = deparse(self.rhs)
        return f"{deparse(self.lhs)} ~ {rhs}" if self.lhs is not None else f"~{rhs}"


def parse_lmer_formula(formula: str) -> ParsedFormula:
    """Split an lme4 formula into response, random-effects bars and fixed terms."""
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, not {type(formula).__name__}")
    return _parse_lmer_formula(formula)


@lru_cache(maxsize=256)
def _parse_lmer_formula(formula: str) -> ParsedFormula:
    # cached: the result is immutable (frozen syntax trees), and refits, bootstraps and
    # profiles parse the same text again and again
    lhs, rhs = parse_formula(formula)
    rhs = expand_double_verts(rhs)
    bars = tuple(findbars(rhs))
    fixed_rhs = nobars(rhs)
    return ParsedFormula(formula, lhs, rhs, bars, terms(fixed_rhs, lhs))


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
