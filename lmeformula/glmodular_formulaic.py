"""``glFormula(..., syntax="formulaic")``: the formulaic front end's :class:`GlFormula`.

The same materialisation as :func:`lmeformula.pyformula.formulaic_lformula`, with glmer's
responses (numbers; for the binomial, 0/1, proportions with ``weights=`` the numbers of trials,
a logical or a two-level factor column, first level = failure) and glmer's identifiability
checks (lme4's ``allow.n = TRUE``). ``cbind(successes, failures)`` is R syntax only.

It sits below :mod:`lmeformula.glmodular` (which dispatches to it), above the formulaic front
end whose materialisation it uses and :mod:`lmeformula.glformula`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .call import ModelCall
from .errors import FormulaError
from .glformula import GlFormula, glmer_response
from .pyformula.design import FormulaicDesign, formulaic_model
from .pyformula.lformula import result_fields
from .pyformula.parser import parse_formulaic

__all__ = ["FormulaicGlFormula", "formulaic_glformula"]


@dataclass(repr=False)  # LFormula's repr: the structures printed as lme4 prints them
class FormulaicGlFormula(GlFormula):
    """:class:`lmeformula.GlFormula` of a formula in formulaic syntax.

    Attributes
    ----------
    design
        The formulaic ModelSpecs (:class:`lmeformula.pyformula.FormulaicDesign`); used by
        ``predict`` and ``simulate`` on new data.
    syntax
        ``"formulaic"``.
    """

    design: FormulaicDesign | None = field(default=None, repr=False)
    syntax: str = "formulaic"


def formulaic_glformula(call: ModelCall) -> FormulaicGlFormula:
    """lme4's ``glFormula`` for a call in formulaic syntax (see :func:`lmeformula.glFormula`;
    ``call.family`` is a non-gaussian-identity family, ``call.control`` the checks' settings).

    The formula's Python expressions are evaluated by formulaic: use trusted formulas only.
    """
    formula, ctrl = call.formula, call.control
    parsed = parse_formulaic(formula)
    if parsed.response is None and ctrl.check_formula_LHS == "stop":
        raise FormulaError("formula must have a response (left-hand side): "
                           f"{formula!r} is one-sided")
    lhs = parsed.text.split("~", 1)[0].strip() if parsed.response is not None else ""
    if re.match(r"cbind\s*\(", lhs):
        raise FormulaError(
            f"cbind(successes, failures) is R syntax and formulaic has no cbind: "
            f"{lhs!r}. Fit it with syntax='R', or give the proportion of "
            "successes as the response and the numbers of trials as weights= "
            "({successes / trials} ~ ..., weights=trials)")
    model = formulaic_model(parsed, call.data, ctrl, subset=call.subset, weights=call.weights,
                            na_action=call.na_action, offset=call.offset,
                            contrasts=call.contrasts,
                            response=glmer_response(call.family, call.data), allow_n=True)
    return FormulaicGlFormula(REML=False, family=call.family,
                              **result_fields(model, parsed, call))
