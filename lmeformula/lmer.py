"""``lmer``: lme4's pipeline end to end — lFormula, mkLmerDevfun, optimizeLmer, mkMerMod."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .control import LmerControl, as_control
from .mermod import LmerMod
from .modular import LmerDevfun, lFormula, mkLmerDevfun
from .optimize import OptResult, check_conv, optimize_lmer

__all__ = ["lmer", "mkMerMod", "optimizeLmer", "refitML"]


def optimizeLmer(devfun: LmerDevfun, control: LmerControl | Mapping[str, Any] | None = None,
                 ) -> OptResult:
    """lme4's ``optimizeLmer``: optimise θ, then the boundary steps, derivatives and checks."""
    ctrl = as_control(control)
    opt = optimize_lmer(devfun, devfun.start, devfun.lower, ctrl)
    opt.lme4_messages = check_conv(opt.derivs, opt.par, devfun.lower, ctrl)
    return opt


def mkMerMod(devfun: LmerDevfun, opt: OptResult, pf: Any, data_name: str = "data",
             call_args: dict[str, str] | None = None) -> LmerMod:
    """lme4's ``mkMerMod``: the fitted model at the optimum (the criterion is evaluated there
    once more, as lme4 does with ``use.last.params = FALSE``)."""
    devfun(opt.par)
    return LmerMod(pf, devfun, opt, data_name, dict(call_args or {}))


def _describe(arg: Any, default: str) -> str:
    return arg if isinstance(arg, str) else default


def lmer(
    formula: str,
    data: pd.DataFrame,
    REML: bool = True,
    weights: Any = None,
    offset: Any = None,
    na_action: str = "omit",
    control: LmerControl | Mapping[str, Any] | None = None,
    start: Any = None,
    subset: Any = None,
    contrasts: Mapping[str, Any] | None = None,
    devFunOnly: bool = False,
    data_name: str | None = None,
) -> LmerMod | LmerDevfun:
    """Fit a linear mixed model by REML or ML, as lme4's ``lmer``.

    Parameters
    ----------
    formula
        lme4 formula text, ``"Reaction ~ Days + (Days | Subject)"``.
    data
        A DataFrame (never modified).
    REML
        REML (default, as lme4) or maximum likelihood.
    weights, offset
        Column names or arrays, one value per row of ``data``.
    na_action
        ``"omit"`` (default), ``"exclude"`` (pads fitted values and residuals with NaN) or
        ``"fail"``.
    control
        :class:`lmeformula.LmerControl` or a dict of lmerControl options.
    start
        Starting θ (array or ``{"theta": array}``).
    subset
        Boolean array-like or R expression text.
    contrasts
        Contrasts of fixed-effect factors, ``{"f": "contr.sum"}``.
    devFunOnly
        Return the deviance function instead of fitting.
    data_name
        Name shown on the ``Data:`` line; defaults to ``data.attrs["name"]`` or ``"data"``.

    Returns
    -------
    LmerMod
    """
    ctrl = as_control(control)
    pf = lFormula(formula, data, REML=REML, subset=subset, weights=weights,
                  na_action=na_action, offset=offset, contrasts=contrasts, control=ctrl)
    devfun = mkLmerDevfun(pf, start=start)
    if devFunOnly:
        return devfun
    opt = optimizeLmer(devfun, ctrl)
    name = data_name or data.attrs.get("name") or "data"
    return mkMerMod(devfun, opt, pf, name, describe_call(weights, offset, subset, ctrl))


def describe_call(weights: Any = None, offset: Any = None, subset: Any = None,
                  control: LmerControl | None = None) -> dict[str, str]:
    """How lme4's printed call shows the optional arguments (``Weights: w``)."""
    call_args: dict[str, str] = {}
    if weights is not None:
        call_args["weights"] = _describe(weights, "weights")
    if offset is not None:
        call_args["offset"] = _describe(offset, "offset")
    if subset is not None:
        call_args["subset"] = _describe(subset, "subset")
    if control is not None and control != LmerControl():
        call_args["control"] = "lmerControl(...)"
    return call_args


def refitML(m: LmerMod) -> LmerMod:
    """Refit a REML fit by maximum likelihood, starting from its θ (lme4's ``refitML``)."""
    if not m.is_REML:
        return m
    import dataclasses

    pf = dataclasses.replace(m.lformula, REML=False)
    devfun = mkLmerDevfun(pf, start=np.asarray(m.theta))
    ctrl = dataclasses.replace(m.lformula.control, optimizer="bobyqa")
    opt = optimizeLmer(devfun, ctrl)
    return mkMerMod(devfun, opt, pf, m.data_name, m.call_args)
