"""lme4's ``glFormula``: formula + data + family -> the structures of a GLMM.

The steps are lFormula's (model frame, ``mkReTrms``, checks, X) with glmer's identifiability
checks (``allow.n = TRUE``) and its responses: numbers, logicals, two-level factors (binomial:
first level = failure) and ``cbind(successes, failures)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from .call import ModelCall
from .control import LmerControl, as_control
from .families import FamilyError, get_family
from .glformula import GlFormula, glmer_response
from .glmodular_formulaic import formulaic_glformula
from .modular import LFormula, build_lformula, formula_room, lformula_of

__all__ = ["GlFormula", "glFormula", "glformula_of", "glmer_response"]


def glFormula(
    formula: str,
    data: pd.DataFrame,
    family: Any = "gaussian",
    subset: Any = None,
    weights: Any = None,
    na_action: str = "omit",
    offset: Any = None,
    contrasts: Mapping[str, Any] | None = None,
    control: LmerControl | Mapping[str, Any] | None = None,
    syntax: str = "R",
) -> LFormula:
    """Parse a GLMM formula against data: lme4's ``glFormula``.

    Parameters
    ----------
    formula
        lme4 formula text; the response may be ``cbind(successes, failures)``.
    data
        A DataFrame (never modified).
    family
        A family name (``"binomial"``, ``"poisson"``, ``"Gamma"``, ``"gaussian"``,
        ``"inverse.gaussian"``) or object (``lmf.binomial(link="probit")``). The gaussian
        family with the identity link gives :func:`lmeformula.lFormula`'s result, as in lme4.
    subset, weights, na_action, offset, contrasts, control
        As for :func:`lmeformula.lFormula` (``control`` may be a GlmerControl).
    syntax
        ``"R"`` (default) or ``"formulaic"``, as for :func:`lmeformula.lFormula` (formulaic
        evaluates the formula's Python expressions: trusted formulas only). In formulaic
        syntax a binomial response is 0/1, a logical or two-level factor column, or
        proportions with ``weights=`` the trials; ``cbind`` is R syntax only.

    Returns
    -------
    GlFormula
    """
    fam = get_family(family)
    if fam.family == "gaussian" and fam.link.name == "identity":
        return lformula_of(ModelCall(formula, data, REML=True, subset=subset, weights=weights,
                                     na_action=na_action, offset=offset, contrasts=contrasts,
                                     control=_checks_only(control), syntax=syntax))
    if fam.family.startswith("quasi"):
        raise FamilyError('"quasi" families cannot be used in glmer')
    call = ModelCall(formula, data, REML=False, subset=subset, weights=weights,
                     na_action=na_action, offset=offset, contrasts=contrasts,
                     control=_checks_only(control), syntax=syntax, family=fam)
    return glformula_of(call)


def glformula_of(call: ModelCall) -> LFormula:
    """:func:`glFormula` of a checked call whose ``family`` is not the gaussian with the
    identity link (``glmer`` builds the call once and passes it here)."""
    fam = call.family
    with formula_room(call):  # long formulas: deep syntax trees
        if call.syntax != "R":
            return formulaic_glformula(call)
        return build_lformula(call, GlFormula, glmer_response(fam, call.data), allow_n=True,
                              family=fam)


def _checks_only(control: Any) -> LmerControl:
    """The identifiability checks' settings of a glmer control (or of an lmer one)."""
    if control is None:
        return LmerControl()
    checks = getattr(control, "checks", None)
    if checks is not None:
        return checks
    return as_control(control)
