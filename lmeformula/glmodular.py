"""lme4's ``glFormula``: formula + data + family -> the structures of a GLMM.

The steps are lFormula's (model frame, ``mkReTrms``, checks, X) with glmer's identifiability
checks (``allow.n = TRUE``) and its responses: numbers, logicals, two-level factors (binomial:
first level = failure) and ``cbind(successes, failures)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .call import ModelCall
from .control import LmerControl, as_control
from .errors import ModelFrameError
from .families import Family, FamilyError, get_family
from .frame import ModelFrame
from .modular import LFormula, build_lformula, formula_room, lformula_of
from .transforms import MatrixValue

__all__ = ["GlFormula", "glFormula", "glformula_of", "glmer_response"]


@dataclass
class GlFormula(LFormula):
    """The result of :func:`glFormula`: :class:`lmeformula.modular.LFormula`'s fields and the
    family. ``y`` is the response as the frame holds it: a vector (0/1 for a factor or
    logical response) or, for ``cbind(s, f)``, an (n, 2) array."""

    family: Family = field(default=None, repr=False)  # type: ignore[assignment]


def glmer_response(family: Family) -> Any:
    """The response step of glFormula for ``family`` (lme4's ``mkRespMod`` type checks)."""

    def response(frame: ModelFrame) -> np.ndarray:
        if frame.response is None:
            raise ModelFrameError("the formula has no response (left-hand side)")
        y = frame.variables[frame.response]
        binom = family.family == "binomial"
        if isinstance(y, MatrixValue):
            if (not binom and y.values.shape[1] > 1) or y.values.shape[1] > 2:
                raise ModelFrameError(
                    "can't handle matrix-valued responses: consider using refit()")
            arr = np.asarray(y.values, dtype=float)
            if arr.shape[1] == 1:
                arr = arr[:, 0]
        elif isinstance(y, pd.Categorical):
            if not binom:
                raise ModelFrameError("response must be numeric")
            # R's binomial initialize: y <- y != levels(y)[1]
            arr = (np.asarray(y.codes) != 0).astype(float)
        else:
            arr = np.asarray(y)
            if arr.dtype.kind == "b":
                arr = arr.astype(float)
            if arr.dtype.kind not in "iuf":
                raise ModelFrameError("response must be numeric or factor" if binom
                                      else "response must be numeric")
            arr = arr.astype(float)
        if not np.isfinite(arr).all():
            raise ModelFrameError("NA/NaN/Inf in 'y'")
        return arr

    return response


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
            from .glmodular_formulaic import formulaic_glformula

            return formulaic_glformula(call)
        return build_lformula(call, GlFormula, glmer_response(fam), allow_n=True, family=fam)


def _checks_only(control: Any) -> LmerControl:
    """The identifiability checks' settings of a glmer control (or of an lmer one)."""
    if control is None:
        return LmerControl()
    checks = getattr(control, "checks", None)
    if checks is not None:
        return checks
    return as_control(control)
