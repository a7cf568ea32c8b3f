"""``lmer``: lme4's pipeline end to end — lFormula, mkLmerDevfun, optimizeLmer, mkMerMod."""

from __future__ import annotations

from collections.abc import Mapping
from functools import singledispatch
from typing import Any, Literal, cast, overload

import numpy as np
import pandas as pd

from .call import ModelCall
from .control import LmerControl, as_control
from .controlcall import control_call_lines
from .dataframe import as_pandas
from .errors import ArgumentError, ModelFrameError
from .formula.limits import with_recursion_room
from .mermod import LmerMod
from .modular import LmerDevfun, lformula_of, mkLmerDevfun
from .optimize import OptResult, check_conv, check_optimizer_workspace, optimize_lmer
from .pls.threads import THREAD_POLICY, engine_threads, setup_threads
from .validate import check_flag, check_unused

__all__ = ["lmer", "mkMerMod", "optimizeLmer", "refitML"]


def optimizeLmer(devfun: LmerDevfun, control: LmerControl | Mapping[str, Any] | None = None,
                 ) -> OptResult:
    """lme4's ``optimizeLmer``: optimise θ, then the boundary steps, derivatives and checks."""
    ctrl = as_control(control)
    # BLAS threads only where they pay (the engine's policy, or control's "threads"); the
    # caller's settings are back when the scope ends
    with engine_threads(devfun.problem, ctrl.threads):
        opt = optimize_lmer(devfun, devfun.start, devfun.lower, ctrl)
        opt.lme4 = check_conv(opt.derivs, opt.par, devfun.lower, ctrl)
    return opt


def mkMerMod(devfun: LmerDevfun, opt: OptResult, pf: Any, data_name: str = "data",
             call_args: dict[str, str] | None = None) -> LmerMod:
    """lme4's ``mkMerMod``: the fitted model at the optimum (the criterion is evaluated there
    once more, as lme4 does with ``use.last.params = FALSE``)."""
    threads = getattr(getattr(pf, "control", None), "threads", None)
    with engine_threads(devfun.problem, threads):
        devfun(opt.par)
        return LmerMod(pf, devfun, opt, data_name, dict(call_args or {}))


def _describe(arg: Any, default: str) -> str:
    return arg if isinstance(arg, str) else default


@overload
def lmer(
    formula: str,
    data: pd.DataFrame,
    REML: bool = ...,
    weights: Any = ...,
    offset: Any = ...,
    na_action: str = ...,
    control: LmerControl | Mapping[str, Any] | None = ...,
    start: Any = ...,
    subset: Any = ...,
    contrasts: Mapping[str, Any] | None = ...,
    devFunOnly: Literal[False] = ...,
    data_name: str | None = ...,
    syntax: str = ...,
    progress: bool = ...,
) -> LmerMod: ...


@overload
def lmer(
    formula: str,
    data: pd.DataFrame,
    REML: bool = ...,
    weights: Any = ...,
    offset: Any = ...,
    na_action: str = ...,
    control: LmerControl | Mapping[str, Any] | None = ...,
    start: Any = ...,
    subset: Any = ...,
    contrasts: Mapping[str, Any] | None = ...,
    *,
    devFunOnly: Literal[True],
    data_name: str | None = ...,
    syntax: str = ...,
    progress: bool = ...,
) -> LmerDevfun: ...


@overload
def lmer(
    formula: str,
    data: pd.DataFrame,
    REML: bool = ...,
    weights: Any = ...,
    offset: Any = ...,
    na_action: str = ...,
    control: LmerControl | Mapping[str, Any] | None = ...,
    start: Any = ...,
    subset: Any = ...,
    contrasts: Mapping[str, Any] | None = ...,
    devFunOnly: bool = ...,
    data_name: str | None = ...,
    syntax: str = ...,
    progress: bool = ...,
) -> LmerMod | LmerDevfun: ...


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
    syntax: str = "R",
    progress: bool = False,
) -> LmerMod | LmerDevfun:
    """Fit a linear mixed model by REML or ML, as lme4's ``lmer``.

    Parameters
    ----------
    formula
        lme4 formula text, ``"Reaction ~ Days + (Days | Subject)"``.
    data
        A data frame (never modified): pandas, polars (eager or lazy), pyarrow, or a dict of
        arrays.
    REML
        REML (default, as lme4) or maximum likelihood.
    weights, offset
        Column names, R expressions of the columns (``offset="log(t)"``, evaluated in the
        data as R's model.frame does), or arrays, one value per row of ``data``.
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
    syntax
        ``"R"`` (default) or ``"formulaic"`` (formulaic's syntax with lme4's bars; it evaluates
        the formula's Python expressions, so use trusted formulas only): see
        :func:`lmeformula.lFormula`.
    progress
        Count the criterion's evaluations on a progress bar (stderr), for long fits.

    Returns
    -------
    LmerMod
    """
    check_flag(devFunOnly, "devFunOnly")
    ctrl = as_control(control)
    check_flag(progress, "progress")  # a truthy string showed a progress bar
    data = as_pandas(data)  # once, here: the stages then see pandas
    call = ModelCall(formula, data, REML=REML, subset=subset, weights=weights,
                     na_action=na_action, offset=offset, contrasts=contrasts, control=ctrl,
                     syntax=syntax)
    return fit_call(call, start=start, devFunOnly=devFunOnly, data_name=data_name,
                    progress=progress)


def fit_call(call: ModelCall, start: Any = None, devFunOnly: bool = False,
             data_name: str | None = None, progress: bool = False) -> LmerMod | LmerDevfun:
    """:func:`lmer` of a checked call (its data a pandas DataFrame): the call is built once,
    by ``lmer`` or ``update``, and the stages and the fitted model share it (``m.call``)."""
    # the structures and cross-products: one BLAS thread on a busy machine (the rank check's
    # QR of a small X took 6x its time beside two busy loops with OpenBLAS's threads)
    with setup_threads(call.control.threads, rows=len(call.data)):
        pf = lformula_of(call)
        if not check_flag(devFunOnly, "devFunOnly"):  # checked here too: update() passes it
            check_optimizer_workspace(pf.reTrms.theta.shape[0], call.control.optimizer,
                                      call.control.optCtrl)
        devfun = mkLmerDevfun(pf, start=start)
        if devFunOnly:
            return devfun
        if _serial_fit(call, devfun):
            # the engine's scopes (optimizeLmer's, mkMerMod's) would set the one thread
            # this one holds: the whole fit runs in it, rather than setting and restoring
            # each BLAS library's thread count twice more (calls into OpenBLAS, about a
            # tenth of a small fit's time on a busy machine)
            return _optimize_and_build(call, pf, devfun, data_name, progress)
    return _optimize_and_build(call, pf, devfun, data_name, progress)


def _serial_fit(call: ModelCall, devfun: LmerDevfun) -> bool:
    """Whether both the setup and the engine run on one BLAS thread by the thread policy
    (no ``threads`` requested, fewer rows than its ``serial_rows``, a dense block below its
    ``parallel_order``): then the setup's scope already holds the engine's setting."""
    return (call.control.threads is None and len(call.data) < THREAD_POLICY.serial_rows
            and THREAD_POLICY.threads(devfun.problem.dense_order) == 1)


def _optimize_and_build(call: ModelCall, pf: Any, devfun: LmerDevfun, data_name: str | None,
                        progress: bool) -> LmerMod:
    """optimizeLmer and mkMerMod of :func:`fit_call`."""
    ctrl = call.control
    if progress:
        from .progress import CountingObjective, progress_bar

        with progress_bar(None, "lmer evaluations", True) as bar:
            opt = optimizeLmer(CountingObjective(devfun, bar), ctrl)  # type: ignore[arg-type]
    else:
        opt = optimizeLmer(devfun, ctrl)
    name = data_name or call.data.attrs.get("name") or "data"
    # the model keeps the call, data included (a reference, never modified): update() refits
    # on it, as R evaluates the stored call again
    return mkMerMod(devfun, opt, pf, name,
                    describe_call(call.weights, call.offset, call.subset, ctrl))


def describe_call(weights: Any = None, offset: Any = None, subset: Any = None,
                  control: LmerControl | None = None) -> dict[str, str]:
    """How lme4's printed call shows the optional arguments (``Weights: w``); the control's
    deparsed lines joined by newlines (:func:`lmeformula.controlcall.control_call_lines`)."""
    call_args: dict[str, str] = {}
    if weights is not None:
        call_args["weights"] = _describe(weights, "weights")
    if offset is not None:
        call_args["offset"] = _describe(offset, "offset")
    if subset is not None:
        call_args["subset"] = _describe(subset, "subset")
    if control is not None:
        # lme4 shows the control expression of the call unless it is exactly lmerControl()
        lines = control_call_lines(control)
        if lines != ["lmerControl()"]:
            call_args["control"] = "\n".join(lines)
    return call_args


def refitML(m: LmerMod) -> LmerMod:
    """Refit a REML fit by maximum likelihood, starting from its θ (lme4's ``refitML``)."""
    if not m.is_REML:
        return m
    import dataclasses

    # the call says REML = FALSE too, as lme4's refitML's does (update() then refits by ML)
    pf = dataclasses.replace(m.lformula, REML=False, call=m.call.replace(REML=False))
    devfun = mkLmerDevfun(pf, start=np.asarray(m.theta))
    ctrl = dataclasses.replace(m.lformula.control, optimizer="bobyqa")
    opt = optimizeLmer(devfun, ctrl)
    return mkMerMod(devfun, opt, pf, m.data_name, m.call_args)


@singledispatch
def refit(m: LmerMod, newresp: Any) -> LmerMod:
    """lme4's ``refit``: the same model fitted to a new response, starting from m's θ.

    A generic function, as in lme4: :mod:`lmeformula.glmer` registers a glmerMod's.

    Parameters
    ----------
    m
        A fitted model.
    newresp
        The new response, one value per observation used by ``m`` (or per row of the data
        when the model dropped rows for NA: then the dropped rows are ignored).
    """
    import dataclasses

    pf = m.lformula
    try:
        y = np.asarray(newresp, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ArgumentError("newresp must be numeric") from None
    if y.shape[0] == pf.frame.nrow_data and y.shape[0] != m.n:
        y = y[pf.frame.rows]
    if y.shape != (m.n,):
        raise ArgumentError(f"newresp must have {m.n} values, not {y.shape[0]}")
    if not np.isfinite(y).all():
        raise ModelFrameError("NA/NaN/Inf in 'y'")
    pf2 = dataclasses.replace(pf, y=y)
    devfun = mkLmerDevfun(pf2, start=np.asarray(m.theta))
    opt = optimizeLmer(devfun, pf.control)
    return mkMerMod(devfun, opt, pf2, m.data_name, m.call_args)


@singledispatch
def update(m: LmerMod, formula: str | None = None, data: pd.DataFrame | None = None,
           REML: bool | None = None, **kwargs: Any) -> LmerMod:
    """lme4's ``update``: refit with a changed formula, data, REML flag or argument.

    In ``formula``, ``.`` stands for the corresponding side of the old formula, as in R:
    ``update(m, ". ~ . - (Days | Subject) + (1 | Subject)")``. A model fitted with
    ``syntax="formulaic"`` keeps that syntax (``syntax=`` changes it); there a new formula is
    taken as written and must be complete: ``.`` is not supported in that syntax (a clear
    FormulaError says so). A generic function: :mod:`lmeformula.glmer` registers a
    glmerMod's.
    """
    call = m.call
    new_formula, data = updated_formula_and_data(call, formula, data,
                                                 kwargs.get("syntax", call.syntax))
    changes = {k: kwargs.pop(k) for k in list(kwargs) if k in call and k != "family"}
    check_unused(kwargs, [k for k in kwargs
                          if k not in ("start", "devFunOnly", "data_name", "progress")])
    # REML: the structures' (a model refitted by REML or ML internally says which it is)
    new_call = call.replace(formula=new_formula, data=as_pandas(data),
                            REML=m.lformula.REML if REML is None else REML, **changes)
    kwargs.setdefault("data_name", m.data_name)
    return cast(LmerMod, fit_call(new_call, **kwargs))


def updated_formula_and_data(call: ModelCall, formula: str | None, data: Any,
                             syntax: str) -> tuple[str, Any]:
    """update()'s formula and data (lmer's and glmer's): the call's data unless new data
    are given, and the new formula with ``.`` for the old sides where the call and the
    refit (``syntax``) are in R syntax, else taken as written (formulaic syntax)."""
    if data is None:
        data = call.data
        if data is None:
            raise ArgumentError("update() needs data= (the fitted model does not keep the data)")
    if formula is None:
        return call.formula, data
    if syntax == "R" and call.syntax == "R":
        return update_formula(call.formula, formula), data
    return formula, data  # formulaic syntax: as written (no '.')


@with_recursion_room
def update_formula(old: str, new: str) -> str:
    """R's ``update.formula``: substitute the old sides for ``.``, then simplify the terms."""
    from .formula.ast import BinOp, Call, Name, Node, Paren, UnaryOp, deparse
    from .formula.parser import parse_formula

    old_lhs, old_rhs = parse_formula(old)
    new_lhs, new_rhs = parse_formula(new)

    def substitute(node: Node | None, dot: Node | None) -> Node | None:
        if node is None:
            return None
        if isinstance(node, Name) and node.id == "." and dot is not None:
            return Paren(dot) if isinstance(dot, BinOp) else dot
        if isinstance(node, BinOp):
            return BinOp(node.op, sub(node.left, dot), sub(node.right, dot))
        if isinstance(node, UnaryOp):
            return UnaryOp(node.op, sub(node.operand, dot))
        if isinstance(node, Paren):
            return Paren(sub(node.expr, dot))
        if isinstance(node, Call):
            # R's ExpandDots also reaches into calls (log(.) ~ .); a "." standing alone as an
            # argument gets the old side as it is, no parentheses added (the argument is
            # delimited already)
            return Call(node.fn, tuple(
                (k, dot if dot is not None and isinstance(v, Name) and v.id == "."
                 else sub(v, dot)) for k, v in node.args))
        return node

    def sub(node: Node, dot: Node | None) -> Node:
        # a child is never None: a "." with no old side to put there (a new left side over
        # a one-sided old formula) stays a ".", as R's updateform leaves it
        return cast(Node, substitute(node, dot))

    lhs = substitute(new_lhs, old_lhs) if new_lhs is not None else old_lhs
    rhs = substitute(new_rhs, old_rhs)
    return _simplify(lhs, rhs, deparse)


def _simplify(lhs: Any, rhs: Any, deparse: Any) -> str:
    """R's ``formula(terms(f, simplify = TRUE))``: the right side expanded into its terms,
    ordered by degree (main effects, then two-way interactions, ...), offsets last, ``- 1``
    for a removed intercept; random-effects bars are single terms kept in parentheses."""
    from .formula.ast import BinOp, Call, Name, Node, Paren, UnaryOp
    from .formula.bars import is_bar
    from .formula.terms import terms

    hidden: dict[str, str] = {}

    def hide(node: Node) -> Node:
        # a bar is one term to R's terms(): stand it in by a name the encoder treats as a
        # variable, and put its text back afterwards
        if is_bar(node):
            text = deparse(node.expr if isinstance(node, Paren) else node)
            key = next((k for k, v in hidden.items() if v == text), f".bar{len(hidden)}.")
            hidden[key] = text
            return Name(key)
        if isinstance(node, BinOp):
            return BinOp(node.op, hide(node.left), hide(node.right))
        if isinstance(node, UnaryOp):
            return UnaryOp(node.op, hide(node.operand))
        if isinstance(node, Paren):
            return Paren(hide(node.expr))
        return node

    def label(var: Node) -> str:
        if isinstance(var, Name) and var.id in hidden:
            return f"({hidden[var.id]})"
        return str(deparse(var))

    tt = terms(hide(rhs), lhs)
    parts = [":".join(label(tt.variables[i]) for i in term) for term in tt.terms]
    parts += [deparse(off) for off in tt.offsets if isinstance(off, Call)]
    if not tt.intercept:
        parts.append("- 1")
    right = " + ".join(parts).replace("+ - 1", "- 1") if parts else "1"
    if right == "- 1":
        right = "1 - 1"  # R's spelling of a formula with neither terms nor intercept
    return f"{deparse(lhs)} ~ {right}" if lhs is not None else f"~{right}"
