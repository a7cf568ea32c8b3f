"""``lFormula(..., syntax="formulaic")``: the formulaic front end's :class:`LFormula`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..control import LmerControl, as_control
from ..errors import FormulaError
from ..lformula import LFormula
from .design import FormulaicDesign, formulaic_model
from .parser import parse_formulaic

__all__ = ["SYNTAXES", "FormulaicLFormula", "check_syntax", "formulaic_lformula"]

SYNTAXES = ("R", "formulaic")


def check_syntax(syntax: str) -> str:
    """The ``syntax=`` argument, checked: ``"R"`` (default) or ``"formulaic"``."""
    if syntax not in SYNTAXES:
        raise FormulaError(f"syntax must be 'R' or 'formulaic', not {syntax!r}")
    return syntax


@dataclass(repr=False)  # LFormula's repr: the structures printed as lme4 prints them
class FormulaicLFormula(LFormula):
    """:class:`lmeformula.lformula.LFormula` of a formula in formulaic syntax.

    Everything downstream (the deviance function, the fit, printing, inference) reads the
    same attributes as for the R syntax. In addition:

    Attributes
    ----------
    design
        The formulaic ModelSpecs and what new data need (:class:`FormulaicDesign`); used by
        ``predict``, ``simulate`` and ``refit`` on new data.
    syntax
        ``"formulaic"``.
    """

    design: FormulaicDesign | None = field(default=None, repr=False)
    syntax: str = "formulaic"


def formulaic_lformula(
    formula: str,
    data: Any,
    REML: bool = True,
    subset: Any = None,
    weights: Any = None,
    na_action: str = "omit",
    offset: Any = None,
    contrasts: Mapping[str, Any] | None = None,
    control: LmerControl | Mapping[str, Any] | None = None,
) -> FormulaicLFormula:
    """lme4's ``lFormula`` for a formula in formulaic syntax (see :func:`lmeformula.lFormula`).

    The formula's Python expressions are evaluated by formulaic: use trusted formulas only.
    """
    ctrl = as_control(control)
    parsed = parse_formulaic(formula)
    if parsed.response is None and ctrl.check_formula_LHS == "stop":
        raise FormulaError("formula must have a response (left-hand side): "
                           f"{formula!r} is one-sided")
    model = formulaic_model(parsed, data, ctrl, subset=subset, weights=weights,
                            na_action=na_action, offset=offset, contrasts=contrasts)
    return FormulaicLFormula(REML=REML, **result_fields(model, parsed, formula, ctrl, {
        "weights": weights, "offset": offset, "subset": subset, "na_action": na_action,
        "contrasts": contrasts}))


def result_fields(model: Any, parsed: Any, formula: str, ctrl: LmerControl,
                  call: dict[str, Any]) -> dict[str, Any]:
    """The fields an lFormula-like result of the formulaic syntax takes from the materialised
    model (:func:`formulaic_model`): shared by lFormula's and glFormula's formulaic results."""
    return {
        "X_values": model.X_values, "X_names": model.X_names, "reTrms": model.reTrms,
        "formula": formula, "wmsgs": model.wmsgs, "y": model.y, "frame": model.frame,
        "X_attrs": model.X_attrs,
        "parsed": parsed,  # printing and anova read lhs / term labels
        "control": ctrl, "call": {"formula": formula, **call, "syntax": "formulaic"},
        "design": model.design,
    }
