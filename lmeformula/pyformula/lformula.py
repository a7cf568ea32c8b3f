"""``lFormula(..., syntax="formulaic")``: the formulaic front end's :class:`LFormula`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..call import SYNTAXES, ModelCall, check_syntax
from ..errors import FormulaError
from ..lformula import LFormula
from .design import FormulaicDesign, formulaic_model
from .parser import parse_formulaic

__all__ = ["SYNTAXES", "FormulaicLFormula", "check_syntax", "formulaic_lformula"]

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


def formulaic_lformula(call: ModelCall) -> FormulaicLFormula:
    """lme4's ``lFormula`` for a call in formulaic syntax (see :func:`lmeformula.lFormula`).

    The formula's Python expressions are evaluated by formulaic: use trusted formulas only.
    """
    ctrl = call.control
    parsed = parse_formulaic(call.formula)
    if parsed.response is None and ctrl.check_formula_LHS == "stop":
        raise FormulaError("formula must have a response (left-hand side): "
                           f"{call.formula!r} is one-sided")
    model = formulaic_model(parsed, call.data, ctrl, subset=call.subset, weights=call.weights,
                            na_action=call.na_action, offset=call.offset,
                            contrasts=call.contrasts)
    return FormulaicLFormula(REML=call.REML, **result_fields(model, parsed, call))


def result_fields(model: Any, parsed: Any, call: ModelCall) -> dict[str, Any]:
    """The fields an lFormula-like result of the formulaic syntax takes from the materialised
    model (:func:`formulaic_model`) and its call: shared by lFormula's and glFormula's
    formulaic results."""
    return {
        "X_values": model.X_values, "X_names": model.X_names, "reTrms": model.reTrms,
        "formula": call.formula, "wmsgs": model.wmsgs, "y": model.y, "frame": model.frame,
        "X_attrs": model.X_attrs,
        "parsed": parsed,  # printing and anova read lhs / term labels
        "control": call.control, "call": call, "design": model.design,
    }
