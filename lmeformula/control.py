"""``lmerControl``: the checks' actions and the optimizer's settings, with lme4's defaults.

Options can be given with lme4's dotted names (``{"check.nobs.vs.nlev": "ignore"}``) or with
Python names (``check_nobs_vs_nlev="ignore"``).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from .errors import ArgumentError, LmeFormulaError
from .validate import check_flag, check_number, match_arg

__all__ = ["LmerControl", "as_control", "lmerControl", "own_copy"]

_CHECK_ACTIONS = ("ignore", "warning", "stop")


@dataclass(frozen=True)
class LmerControl:
    """Settings of ``lmer`` and ``lFormula``, lme4 1.1-31's defaults.

    Attributes
    ----------
    check_nlev_gtr_1, check_nobs_vs_nlev, check_nlev_gtreq_5, check_nobs_vs_nRE, check_nobs_vs_rankZ
        Action of each identifiability check: ``"ignore"``, ``"warning"`` or ``"stop"``
        (``check_nobs_vs_rankZ`` also ``"warningSmall"`` / ``"stopSmall"``).
    check_rankX
        ``"message+drop.cols"``, ``"silent.drop.cols"``, ``"warn+drop.cols"``,
        ``"stop.deficient"`` or ``"ignore"``.
    check_scaleX
        ``"warning"``, ``"stop"`` or ``"ignore"``.
    check_formula_LHS
        ``"stop"`` or ``"ignore"`` for one-sided formulas.
    optimizer
        ``"nloptwrap"`` (NLopt BOBYQA with lme4's nloptwrap settings, lme4's default),
        ``"bobyqa"`` (lme4's: minqa's BOBYQA, :mod:`lmeformula.bobyqa`, with minqa's defaults
        npt = n + 2, rhobeg = min(0.95, 0.2 max|θ|), rhoend = 1e-6 rhobeg),
        ``"Nelder_Mead"`` (lme4's own Nelder-Mead with its defaults: lme4's path and
        evaluation count), ``"Powell"`` (scipy's), ``"L-BFGS-B"``,
        or None to evaluate the deviance at the start only. ``"L-BFGS-B"``
        (scipy) uses the criterion's analytic gradient and needs far fewer evaluations than
        BOBYQA, which pays off for large models (InstEval); it reaches the same optimum (or a
        better one where BOBYQA stops early) but not along lme4's path, so step counts and
        the last digits differ from lme4's. After it converges, diagonal θ on the boundary are
        tried a finite step inside (θ = 0 is a stationary point) and it restarts from there
        when that is better.
    optCtrl
        Options for the optimizer (``xtol_abs``, ``ftol_abs``, ``maxeval``...).
    restart_edge, boundary_tol
        lme4's post-optimisation steps.
    calc_derivs
        Compute the finite-difference gradient and Hessian for the convergence checks. None
        (the default) follows lme4 >= 1.1-38: only when n < 1e4 and there are fewer than 10
        covariance parameters; lme4 1.1-31 always computed them (``calc_derivs=True``).
    check_conv_grad, check_conv_singular, check_conv_hess
        ``(action, tol)`` of the convergence checks. As in lme4, each may be given as a
        dict ``{"action": ..., "tol": ...}`` (lme4's ``.makeCC``); ``check.conv.grad``'s dict
        may also hold ``"relTol"``.
    check_conv_grad_relTol
        lme4's ``check.conv.grad$relTol``: when set, also warn when the largest gradient
        relative to its parameter, ``max|grad / par|``, exceeds it (off by default, as in
        lme4).
    threads
        BLAS/LAPACK threads for the engine during the fit (numpy's and scipy's pools); None
        (the default) for the engine's policy: one thread unless its dense block is large
        (order 1,000), then as many as the machine has free cores when the fit starts
        (multi-threaded BLAS loses badly on a busy machine), never more than the caller's
        setting. The caller's settings are restored after the fit.
    given
        The options as the caller gave them to :func:`lmerControl` or as a dict, in their
        order and spelling (None for an object made otherwise): what the printed call's
        ``Control:`` line shows, as lme4 shows the control expression of the call. Not
        compared, not an option.
    """

    check_nlev_gtr_1: str = "stop"
    check_nobs_vs_nlev: str = "stop"
    check_nlev_gtreq_5: str = "ignore"
    check_nobs_vs_nRE: str = "stop"
    check_nobs_vs_rankZ: str = "ignore"
    check_rankX: str = "message+drop.cols"
    check_scaleX: str = "warning"
    check_formula_LHS: str = "stop"
    optimizer: str | None = "nloptwrap"
    optCtrl: Mapping[str, Any] = field(default_factory=dict)
    restart_edge: bool = True
    boundary_tol: float = 1e-5
    calc_derivs: bool | None = None
    check_conv_grad: tuple[str, float] = ("warning", 2e-3)
    check_conv_singular: tuple[str, float] = ("message", 1e-4)
    check_conv_hess: tuple[str, float] = ("warning", 1e-6)
    check_conv_grad_relTol: float | None = None
    threads: int | None = None
    given: tuple[tuple[str, Any], ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.threads is not None and (isinstance(self.threads, bool)
                                         or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ArgumentError(f"control 'threads' must be a positive integer or None, "
                                f"not {self.threads!r}")
        # R's match.arg: an unambiguous abbreviation means the full choice ("stop" for
        # check.rankX is "stop.deficient"); anything else is refused naming the option
        for name, choices in _CHOICES.items():
            value = match_arg(getattr(self, name), choices, name.replace("_", "."))
            object.__setattr__(self, name, value)
        for name in ("restart_edge",):
            check_flag(self.restart_edge, name.replace("_", "."))
        for name in ("check_conv_grad", "check_conv_singular", "check_conv_hess"):
            object.__setattr__(self, name, _conv_option(getattr(self, name),
                                                        name.replace("_", ".")))
        check_flag(self.calc_derivs, "calc.derivs", allow_none=True)
        check_number(self.boundary_tol, "boundary.tol", lower=0)
        if self.check_conv_grad_relTol is not None:
            check_number(self.check_conv_grad_relTol, "check.conv.grad$relTol", lower=0)
        if not isinstance(self.optCtrl, Mapping):
            raise ArgumentError("optCtrl must be a dict of optimizer options")
        # the control's own dict: the caller's later edits do not reach it, nor its the caller's
        object.__setattr__(self, "optCtrl", own_copy(self.optCtrl))


def _conv_option(value: Any, name: str) -> tuple[str, float]:
    """A ``check.conv.*`` option as (action, tol), checked as lme4's ``chk.convOpt`` does
    (its messages), the action one of those lme4's ``checkConv`` acts on."""
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ArgumentError(f"check.conv* option {name} must be a list (an action string, "
                            f"an (action, tol) pair or a dict), not {value!r}")
    action, tol = value
    if not isinstance(action, str):
        raise ArgumentError(f"check.conv* option {name} has no 'action' string")
    action = match_arg(action, ("ignore", "warning", "message", "stop"), f"{name}$action")
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real):
        raise ArgumentError(f"check.conv* option {name} must have a numeric 'tol' component")
    if not float(tol) >= 0:
        raise ArgumentError(f"check.conv* option {name}$tol must be number >= 0")
    return action, float(tol)


_CHOICES: dict[str, tuple[str, ...]] = {
    **{name: _CHECK_ACTIONS for name in ("check_nlev_gtr_1", "check_nobs_vs_nlev",
                                         "check_nlev_gtreq_5", "check_nobs_vs_nRE")},
    "check_nobs_vs_rankZ": ("ignore", "warningSmall", "warning", "stopSmall", "stop"),
    "check_rankX": ("message+drop.cols", "silent.drop.cols", "warn+drop.cols",
                    "stop.deficient", "ignore"),
    "check_scaleX": ("warning", "stop", "ignore"),
    "check_formula_LHS": ("stop", "warning", "ignore"),
}


def own_copy(value: Any) -> Any:
    """``value`` with its containers copied (mappings, as dicts; lists, tuples, sets, numpy
    arrays and pandas objects), each level of them, and every other value kept as it is.

    A control keeps the options it was given this way, so that neither the caller's later
    edits of their dicts reach the control nor the package's the caller's. Not
    ``copy.deepcopy``: an option's value may be something that can not or must not be copied
    (a lock, a generator, an open file, a callback bound to a large object), and those the
    package never changes.
    """
    if isinstance(value, Mapping):
        return {k: own_copy(v) for k, v in value.items()}
    if type(value) in (list, tuple, set):
        return type(value)(own_copy(v) for v in value)
    if isinstance(value, (np.ndarray, pd.Series, pd.DataFrame)):
        return value.copy()
    return value


_FIELD_NAMES = {f.name for f in fields(LmerControl)} - {"given"}
_DEFAULT_CONTROL = LmerControl()  # as_control(None) hands out copies


def _normalise_key(key: str) -> str:
    name = key.replace(".", "_")
    if name not in _FIELD_NAMES:
        raise LmeFormulaError(f"unknown lmerControl option {key!r}")
    return name


def lmerControl(**kwargs: Any) -> LmerControl:
    """Make an :class:`LmerControl`; keyword names may use lme4's dots via ``**{"a.b": v}``."""
    return as_control(kwargs)


def as_control(control: LmerControl | Mapping[str, Any] | None) -> LmerControl:
    """Accept an LmerControl, a dict of options (dotted or Python names), or None."""
    if control is None:
        # lmerControl()'s defaults, checked once: a copy of them with its own optCtrl dict
        # (every lmer call without control= passes here)
        default = copy.copy(_DEFAULT_CONTROL)
        object.__setattr__(default, "optCtrl", {})
        return default
    if isinstance(control, LmerControl):
        return control
    if not isinstance(control, Mapping):
        raise ArgumentError("control must be an LmerControl or a dict of options")
    values: dict[str, Any] = {}
    for key, value in control.items():
        name = _normalise_key(key)
        if name.startswith("check_conv_") and isinstance(value, str):
            default = getattr(LmerControl(), name)
            value = (value, default[1])
        elif name.startswith("check_conv_") and isinstance(value, Mapping):
            default = getattr(LmerControl(), name)
            if name == "check_conv_grad" and value.get("relTol") is not None:
                values["check_conv_grad_relTol"] = value["relTol"]
            value = (value.get("action", default[0]), value.get("tol", default[1]))
        values[name] = value
    # the options as given, for the printed call (a copy: the caller's dict may change later)
    return replace(LmerControl(), **values, given=tuple(own_copy(dict(control)).items()))
