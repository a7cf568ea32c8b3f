"""The ``control`` argument as lme4's printed call shows it: the ``Control:`` line.

lme4's ``summary()`` prints ``Control:`` followed by ``deparse()`` of the control expression in
the call (``glmerControl(optimizer = "bobyqa")``), skipping exactly ``lmerControl()``. A Python
call has no expression, so the options the caller gave (``LmerControl.given``, in their order)
are written as the R call that gives them: lme4's names (``check.nobs.vs.nlev`` for
``check_nobs_vs_nlev``), strings in double quotes, numbers as R deparses doubles (``1e+05``),
``TRUE``/``FALSE``/``NULL``, dicts as ``list(...)`` and sequences as ``c(...)``; the lines are
broken as ``deparse()`` breaks them (width cutoff 60). A control object made without
:func:`lmerControl` / :func:`glmerControl` or a dict shows the options that differ from the
defaults.

Between the controls and the fitters in the pipeline: it reads the settings and writes text,
through the formula layer's R deparser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from numbers import Integral, Real
from typing import Any

import numpy as np

from .control import LmerControl, as_control
from .formula.ast import Call, Name, Node, Str, deparse_lines, number
from .glmercontrol import GlmerControl, as_glmer_control

__all__ = ["control_call_lines", "r_name", "r_value"]

# lme4's argument names keep this underscore (every other one is dotted)
_UNDERSCORED = frozenset({"restart_edge"})


def r_name(key: str) -> str:
    """lme4's name of a control option given by its Python name (``calc_derivs`` ->
    ``calc.derivs``); dotted names, and names without underscores, as given."""
    if key in _UNDERSCORED or "." in key:
        return key
    return key.replace("_", ".")


def r_value(value: Any) -> Node:
    """The R expression that gives a Python value, as a syntax tree for R's deparser.

    Raises
    ------
    TypeError
        For a value with no R counterpart here (an object other than a string, number,
        bool, None, dict or sequence of them).
    """
    if value is None:
        return Name("NULL")
    if isinstance(value, (bool, np.bool_)):
        return Name("TRUE" if value else "FALSE")
    if isinstance(value, (Integral, Real)):  # a Python int is an R double, as R's literal 5
        return number(float(value))
    if isinstance(value, str):
        return Str(value)
    if isinstance(value, Mapping):
        return Call("list", tuple((str(k), r_value(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value.ravel()) if isinstance(value, np.ndarray) else list(value)
        nested = any(isinstance(v, (Mapping, list, tuple, np.ndarray)) for v in items)
        return Call("list" if nested else "c", tuple((None, r_value(v)) for v in items))
    raise TypeError(f"cannot show {type(value).__name__} {value!r} as an R value")


def _make_cc(action: str, tol: float, rel_tol: float | None = None) -> Call:
    """lme4's ``.makeCC(action, tol = ...)``, the expression its users write for a check."""
    args: list[tuple[str | None, Node]] = [(None, Str(action)), ("tol", r_value(tol))]
    if rel_tol is not None:
        args.append(("relTol", r_value(rel_tol)))
    return Call(".makeCC", tuple(args))


def _differing(ctrl: LmerControl) -> list[tuple[str, Node]]:
    """An LmerControl's options that differ from lmerControl()'s, in its order."""
    default = LmerControl()
    out: list[tuple[str, Node]] = []
    for f in fields(LmerControl):
        name = f.name
        if name in ("given", "check_conv_grad_relTol"):  # relTol shows in check.conv.grad
            continue
        value = getattr(ctrl, name)
        rel = ctrl.check_conv_grad_relTol if name == "check_conv_grad" else None
        if value == getattr(default, name) and rel is None:
            continue
        if name.startswith("check_conv_"):
            out.append((r_name(name), _make_cc(value[0], value[1], rel)))
        else:
            out.append((r_name(name), r_value(dict(value) if name == "optCtrl" else value)))
    return out


def _glmer_differing(ctrl: GlmerControl) -> list[tuple[str, Node]]:
    """A GlmerControl's options that differ from glmerControl()'s, in its order, the
    identifiability and convergence checks last."""
    default = GlmerControl()
    out: list[tuple[str, Node]] = []
    for f in fields(GlmerControl):
        name = f.name
        value = getattr(ctrl, name)
        if name in ("given", "checks") or value == getattr(default, name):
            continue
        if name == "optimizer":  # one name for both stages; ("auto", "L-BFGS-B") as given
            first, second = value
            value = second if first == second or first == "auto" else value
        out.append((r_name(name), r_value(dict(value) if name == "optCtrl" else value)))
    checks = _differing(ctrl.checks)
    return out + [(k, v) for k, v in checks if k.startswith("check.")]


def _describes(ctrl: LmerControl | GlmerControl) -> bool:
    """Whether the options as given still make ``ctrl``: ``dataclasses.replace`` copies the
    record of them, so a control changed that way (a refit with another optimizer) must
    show the options it has, not the ones it was first made from."""
    given = dict(ctrl.given or ())
    try:
        made = as_glmer_control(given) if isinstance(ctrl, GlmerControl) else as_control(given)
        return bool(made == ctrl)
    except (TypeError, ValueError):  # an option that cannot be rebuilt or compared
        return False


def control_call_lines(ctrl: LmerControl | GlmerControl) -> list[str]:
    """``deparse()`` of the control expression that gives ``ctrl``'s options: the lines of
    the printed ``Control:`` line (``["lmerControl(optimizer = \\"bobyqa\\")"]``), broken as
    R breaks them.

    The options as given (``ctrl.given``) when the control was made from a dict or by
    :func:`lmerControl` / :func:`glmerControl`, with lme4's names; otherwise those that
    differ from the defaults. ``["lmerControl(...)"]`` (or glmerControl's) when an option
    has no R expression here (:func:`r_value` refuses it).
    """
    fn = "glmerControl" if isinstance(ctrl, GlmerControl) else "lmerControl"
    try:
        if ctrl.given is not None and _describes(ctrl):
            args = [(r_name(str(k)), r_value(v)) for k, v in ctrl.given]
        elif isinstance(ctrl, GlmerControl):
            args = _glmer_differing(ctrl)
        else:
            args = _differing(ctrl)
    except (TypeError, OverflowError):
        # an option the fit accepts but R has no literal for here (optCtrl's xst as a
        # pandas Series): the printed call must not fail the fit that makes it
        return [f"{fn}(...)"]
    named: tuple[tuple[str | None, Node], ...] = tuple(args)
    return deparse_lines(Call(fn, named))
