"""``glmer``: lme4's pipeline for GLMMs — glFormula, mkGlmerDevfun, the two optimisation
stages, mkMerMod.

Stage 1 minimises the nAGQ = 0 deviance over θ (β solved inside PIRLS) with BOBYQA; stage 2
minimises the Laplace (or adaptive quadrature) deviance over (θ, β) with lme4's Nelder-Mead,
started at stage 1's optimum with initial steps 0.02 for θ and 0.2·min(SE(β), 10) for β and
tolerances 5e-4 times those steps. Then lme4's ``check.boundary`` (``boundary_tol``), the
finite-difference derivatives over (θ, β) and the convergence checks.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .controlcall import control_call_lines
from .dataframe import as_pandas
from .errors import ArgumentError, ConvergenceWarning, DeprecatedUsageWarning, LmeFormulaError
from .families import Family, get_family
from .glmercontrol import GlmerControl, as_glmer_control
from .glmermod import GlmerMod
from .glmodular import glFormula
from .laplace_grad import LaplaceObjective, gradient_derivs, lbfgsb_laplace, require_laplace
from .lmer import lmer, refit, update, updated_formula_and_data
from .modular import check_start_finite
from .neldermead import nelder_mead
from .optimize import (
    Lme4Conv,
    OptResult,
    check_boundary,
    check_conv,
    check_optimizer_workspace,
    deriv12,
    minqa_bobyqa,
    nloptwrap,
)
from .pirls import GlmerDevfun
from .pls.threads import blas_threads
from .progress import CountingObjective, Progress, progress_bar
from .validate import check_flag, check_number, check_unused

__all__ = ["glmer", "optimizeGlmer", "refit_glmer", "update_glmer"]


def optimizeGlmer(devfun: GlmerDevfun, optimizer: str | None, start: np.ndarray,
                  boundary_tol: float, optCtrl: Mapping[str, Any] | None = None,
                  calc_derivs: bool = False, adj: bool | None = None) -> OptResult:
    """lme4's ``optimizeGlmer`` (with ``optwrap``): one stage.

    Parameters
    ----------
    devfun
        The deviance function (its ``nAGQ`` says which stage).
    optimizer
        ``"bobyqa"``, ``"nloptwrap"``, ``"Nelder_Mead"``, ``"L-BFGS-B"`` (the Laplace
        stage only: scipy's L-BFGS-B with the analytic gradient,
        :mod:`lmeformula.laplace_grad`) or None (evaluate at the start).
    start
        Starting parameters (θ, or (θ, β)).
    boundary_tol
        lme4's ``check.boundary`` tolerance (0 for none).
    optCtrl
        Optimizer options.
    calc_derivs
        Compute deriv12's gradient and Hessian at the optimum.
    adj
        optwrap's ``adj``: the second stage's initial steps (bobyqa's rhobeg 2e-4, Nelder-
        Mead's from the fixed effects' SEs). None: for the second stage (``nAGQ > 0``), as
        ``optimizeGlmer``; ``refit`` passes False (the optimizers' own defaults).
    """
    opts = dict(optCtrl or {})
    if adj is None:
        adj = devfun.nAGQ > 0
    lower = devfun.lower
    start = np.asarray(start, float)
    laplace: LaplaceObjective | None = None
    laplace_derivs: Any = None
    if optimizer is None:  # evaluate at the start (derivatives and boundary steps as usual)
        par, fval, conv, message, feval = start, devfun(start), 0, "no optimization", 1
        optimizer = "none"
    elif optimizer == "bobyqa":
        if adj:  # lme4's optwrap(adj = TRUE) for the second stage
            opts.setdefault("rhobeg", 2e-4)
            opts.setdefault("rhoend", 2e-7)
        par, fval, conv, message, feval = minqa_bobyqa(devfun, start, lower, opts)
    elif optimizer == "nloptwrap":  # lme4's nloptwrap, with its own defaults
        par, fval, conv, message, feval = nloptwrap(devfun, start, lower, opts)
    elif optimizer == "L-BFGS-B":
        laplace = LaplaceObjective(devfun)  # (refuses nAGQ != 1)
        with laplace.warm_start():  # (the Hessian's PIRLS too start from the last mode)
            par, fval, conv, message, feval = lbfgsb_laplace(laplace, start, lower, opts)
            laplace_derivs = gradient_derivs(laplace, par) if calc_derivs else None
    elif optimizer == "Nelder_Mead":
        xst = opts.pop("xst", None)
        xt = opts.pop("xt", None)
        if adj and xst is None:
            # lme4's optwrap for the second stage: steps from the fixed effects' SEs
            beta_sd = np.sqrt(np.diag(devfun.unsc()))
            xst = 0.2 * np.concatenate([np.full(devfun.ntheta, 0.1),
                                        np.minimum(beta_sd, 10.0)])
        xst = np.full(start.shape[0], 0.02) if xst is None else np.asarray(xst, float)
        xt = xst * 5e-4 if xt is None else np.asarray(xt, float)
        res = nelder_mead(devfun, start, lower, np.full(start.shape[0], np.inf), xst, xt,
                          maxfun=int(opts.get("maxfun", 10000)),
                          minf_max=float(opts.get("MinfMax", -np.finfo(float).max)))
        par, fval, feval, message = res.par, res.fval, res.feval, res.message
        conv = 4 if res.code == 4 else 0
        if res.code == 4:
            warnings.warn(f"failure to converge in {opts.get('maxfun', 10000)} evaluations",
                          ConvergenceWarning, stacklevel=3)
    else:
        raise LmeFormulaError(f"unknown optimizer {optimizer!r}; choose bobyqa, nloptwrap, "
                              "Nelder_Mead or L-BFGS-B")
    notes: list[str] = []
    if conv != 0:
        note = f"convergence code {conv} from {optimizer}: {message}"
        warnings.warn(note, ConvergenceWarning, stacklevel=3)
        notes.append(note)
    if not calc_derivs:
        derivs = None
    elif laplace is not None:  # the Hessian from the analytic gradient
        derivs = laplace_derivs
    else:
        derivs = deriv12(devfun, par, fx=fval)
    devfun(par)  # leave the deviance function's state at the optimum, as lme4 does
    if boundary_tol > 0:  # (L-BFGS-B: on the deviance it minimised and reports)
        par, fval = _check_boundary(devfun if laplace is None else laplace, par, fval,
                                    boundary_tol)
    return OptResult(np.asarray(par, float), float(fval), conv, message, feval, derivs, notes,
                     optimizer)


def _check_boundary(devfun: GlmerDevfun | LaplaceObjective, par: np.ndarray, fval: float,
                    tol: float) -> tuple[np.ndarray, float]:
    """lme4's ``check.boundary`` on θ (the first ``ntheta`` components; β has no bound)."""
    k = devfun.ntheta
    lower = np.full(par.shape, -np.inf)
    lower[:k] = devfun.lower[:k]
    return check_boundary(devfun, par, fval, lower, tol)


def glmer(
    formula: str,
    data: pd.DataFrame,
    family: str | Family | Any = "gaussian",
    nAGQ: int = 1,
    weights: Any = None,
    offset: Any = None,
    control: GlmerControl | Mapping[str, Any] | None = None,
    start: Any = None,
    na_action: str = "omit",
    subset: Any = None,
    contrasts: Mapping[str, Any] | None = None,
    mustart: Any = None,
    devFunOnly: bool = False,
    data_name: str | None = None,
    syntax: str = "R",
    progress: bool = False,
) -> Any:
    """Fit a generalized linear mixed model as lme4's ``glmer``.

    Parameters
    ----------
    formula
        lme4 formula text; for a binomial response ``cbind(successes, failures) ~ ...``, 0/1,
        a logical or a two-level factor (first level = failure), or proportions with
        ``weights`` the numbers of trials.
    data
        A DataFrame (never modified).
    family
        ``"binomial"``, ``"poisson"``, ``"Gamma"``, ``"gaussian"``, ``"inverse.gaussian"``
        or a family object (``lmf.binomial(link="probit")``). The gaussian family with the
        identity link is fitted by :func:`lmeformula.lmer`, with lme4's warning.
    nAGQ
        0 (θ only, β by PIRLS), 1 (Laplace) or k > 1 (adaptive Gauss-Hermite quadrature with
        k points, single scalar random-effects term only).
    weights, offset
        Prior weights and offset: column names, R expressions of the columns
        (``offset="log(t)"``), or arrays, one value per row of ``data``.
    control
        :class:`lmeformula.GlmerControl` or a dict of glmerControl options.
    start
        Starting values: an array (θ) or a dict with ``theta`` and ``fixef`` (or ``beta``).
    na_action, subset, contrasts
        As for :func:`lmeformula.lmer`.
    mustart
        Starting values of μ for the first PIRLS.
    devFunOnly
        Return the deviance function (of stage 2 when nAGQ > 0) instead of fitting.
    data_name
        Name on the ``Data:`` line.
    syntax
        ``"R"`` (default) or ``"formulaic"`` (see :func:`lmeformula.glFormula`; formulaic
        evaluates the formula's Python expressions: trusted formulas only).
    progress
        Count the deviance evaluations of both optimisation stages on a progress bar
        (stderr), for long fits; the fit is the same with or without it.

    Returns
    -------
    GlmerMod
    """
    check_flag(progress, "progress")
    data = as_pandas(data)  # polars, pyarrow, dicts...: converted once, here (as lmer does)
    # one BLAS thread: PIRLS factors small matrices thousands of times, where BLAS threads
    # only wait on each other (dpotrf at order 186, load 9: 14.7 ms with two, 0.38 ms with one)
    with blas_threads(1), progress_bar(None, "glmer evaluations", progress) as bar:
        return _glmer(formula, data, family, nAGQ, weights, offset, control, start, na_action,
                      subset, contrasts, mustart, devFunOnly, data_name, syntax,
                      bar if progress else None)


def _glmer(formula: str, data: pd.DataFrame, family: Any, nAGQ: int, weights: Any,
           offset: Any, control: Any, start: Any, na_action: str, subset: Any,
           contrasts: Mapping[str, Any] | None, mustart: Any, devFunOnly: bool,
           data_name: str | None, syntax: str = "R", bar: Progress | None = None) -> Any:
    ctrl = as_glmer_control(control)
    fam = get_family(family)
    if fam.family == "gaussian" and fam.link.name == "identity":
        warnings.warn("calling glmer() with family=gaussian (identity link) as a shortcut to "
                      "lmer() is deprecated; please call lmer() directly",
                      DeprecatedUsageWarning, stacklevel=2)
        return lmer(formula, data, weights=weights, offset=offset, na_action=na_action,
                    start=start, subset=subset, contrasts=contrasts, data_name=data_name,
                    control=ctrl.checks, syntax=syntax, progress=bar is not None)
    # R's as.integer(nAGQ): a number, truncated; not a string or a logical
    nAGQ = int(check_number(nAGQ, "nAGQ") or 0)
    if not 0 <= nAGQ <= 100:
        raise LmeFormulaError("nAGQ must be an integer between 0 and 100")
    if "L-BFGS-B" in ctrl.optimizer:  # before the formula's work
        require_laplace(nAGQ)
    pf = glFormula(formula, data, family=fam, subset=subset, weights=weights,
                   na_action=na_action, offset=offset, contrasts=contrasts,
                   control=ctrl.checks, syntax=syntax)
    if nAGQ > 1:
        re = pf.reTrms
        if len(re.flist) != 1 or len(re.cnms[0]) != 1:
            raise LmeFormulaError("nAGQ > 1 is only available for models with a single, "
                                  "scalar random-effects term")
    y = np.asarray(pf.y)
    if ctrl.check_response_not_const != "ignore" and y.ndim == 1 and y.size and np.all(
            y == y[0]):
        msg = "Response is constant"
        if ctrl.check_response_not_const == "stop":
            raise LmeFormulaError(msg)
        warnings.warn(msg, ConvergenceWarning, stacklevel=2)
    theta0, beta0 = _parse_start(start, pf)
    n_init = 0 if ctrl.nAGQ0initStep else nAGQ
    if not devFunOnly:  # the optimizers' memory, before PIRLS' setup (a minute for a large θ)
        ntheta = pf.reTrms.theta.shape[0]
        if n_init == 0:
            check_optimizer_workspace(ntheta, _stage1(ctrl, pf), ctrl.optCtrl)
        if nAGQ > 0:
            check_optimizer_workspace(ntheta + len(pf.X_names), ctrl.optimizer[1], ctrl.optCtrl)
    devfun = GlmerDevfun(pf, fam, n_init, ctrl.tolPwrss,
                         mustart=None if mustart is None else _vector(mustart, data, pf))
    if devFunOnly and nAGQ == 0:
        return devfun
    # the optimizers see a counting wrapper when a progress bar is asked for (same values)
    objective: Any = devfun if bar is None else _CountingDevfun(devfun, bar)
    opt: OptResult | None = None
    if n_init == 0:
        start1 = devfun.state.theta.copy() if theta0 is None else theta0
        opt = optimizeGlmer(objective, _stage1(ctrl, pf), start1,
                            boundary_tol=ctrl.boundary_tol if nAGQ == 0 else 0.0,
                            optCtrl=ctrl.optCtrl, calc_derivs=False)
        if nAGQ > 0:
            devfun.update(nAGQ)
            if devFunOnly:
                return devfun
    elif devFunOnly:
        return devfun
    n = devfun.nobs
    npar = devfun.lower.shape[0]
    calc = ctrl.calc_derivs
    if calc is None:
        calc = n < 10_000 and npar < 20
    if nAGQ > 0:
        theta_start = devfun.state.theta.copy()
        if theta0 is not None and n_init != 0:
            theta_start = theta0
        beta_start = devfun.state.beta.copy() if beta0 is None else beta0
        if beta_start.shape[0] != devfun.X.shape[1]:
            raise LmeFormulaError("starting value of 'fixef' has length not equal to "
                                  f"{devfun.X.shape[1]}")
        opt = optimizeGlmer(objective, ctrl.optimizer[1],
                            np.concatenate([theta_start, beta_start]),
                            boundary_tol=ctrl.boundary_tol, optCtrl=ctrl.optCtrl,
                            calc_derivs=bool(calc))
    assert opt is not None
    opt.lme4 = check_conv(opt.derivs, opt.par, devfun.lower, ctrl.checks) if calc \
        else Lme4Conv()
    name = data_name or data.attrs.get("name") or "data"
    model = GlmerMod(pf, devfun, opt, name,  # type: ignore[arg-type]
                     _describe(weights, offset, subset,
                               None if control is None else ctrl))
    model.glmer_control = ctrl
    model.nAGQ = nAGQ
    return model


def _stage1(ctrl: GlmerControl, pf: Any) -> str | None:
    """The first stage's optimizer; ``"auto"`` (what ``optimizer="L-BFGS-B"`` sets): none
    (the deviance at the start θ, PIRLS giving β there) when every random-effects term is
    scalar, lme4's bobyqa otherwise. With a vector-valued term the Laplace deviance can
    have minima on the boundary of Λ's triangular parametrisation that a gradient method
    from θ = 1 runs into (VerbAgg with ``(1 + Anger | item)``: θ_item,11 = 0, 13 log-
    likelihood units below the optimum); from the first stage's optimum it does not."""
    opt = ctrl.optimizer[0]
    if opt == "auto":
        return None if all(len(c) == 1 for c in pf.reTrms.cnms) else "bobyqa"
    return opt


class _CountingDevfun(CountingObjective):
    """A glmer's progress counter: deriv12's points, evaluated together by the deviance
    function's ``batch``, move the bar a step a point (glmer counts every evaluation)."""

    def batch(self, points: np.ndarray) -> np.ndarray:
        values: np.ndarray = self._fn.batch(points)
        self._bar.update(len(values))
        return values


def _vector(value: Any, data: pd.DataFrame, pf: Any) -> np.ndarray:
    arr = np.asarray(data[value] if isinstance(value, str) else value, dtype=float)
    return arr[pf.frame.rows] if arr.shape[0] == pf.frame.nrow_data else arr


def _parse_start(start: Any, pf: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """lme4's ``getStart``: θ and β from ``start`` (array = θ; dict with par/theta and
    fixef/beta)."""
    if start is None:
        return None, None
    ntheta = pf.reTrms.theta.shape[0]
    if isinstance(start, Mapping):
        valid = {"par", "theta", "fixef", "beta"}
        bad = [k for k in start if k not in valid]
        if bad:  # lme4's message (par and beta are this package's aliases)
            raise ArgumentError(f"bad name(s) for start vector ({', '.join(map(str, bad))}); "
                                "should be 'theta' and/or 'fixef'")
        theta = start.get("theta", start.get("par"))
        beta = start.get("fixef", start.get("beta"))
        # a scalar is a length-one vector, as in R (start = list(theta = 0.5))
        theta = None if theta is None else _numeric_start(theta)
        beta = None if beta is None else _numeric_start(beta)
    else:
        theta, beta = _numeric_start(start), None
    if theta is not None and theta.shape[0] != ntheta:
        raise LmeFormulaError(f"starting value of 'par' has length not equal to {ntheta}")
    for value in (theta, beta):
        if value is not None:
            check_start_finite(value)
    return theta, beta


def _numeric_start(value: Any) -> np.ndarray:
    try:
        return np.atleast_1d(np.asarray(value, float)).reshape(-1)
    except (TypeError, ValueError):
        raise ArgumentError(f"all elements of start must be numeric, not {value!r}") from None


def _describe(weights: Any, offset: Any, subset: Any,
              ctrl: GlmerControl | None = None) -> dict[str, str]:
    """How lme4's printed call shows the optional arguments; ``ctrl`` None when the call
    has no control."""
    out: dict[str, str] = {}
    # lme4's summary shows the control expression of the call, glmerControl() included
    if ctrl is not None:
        out["control"] = "\n".join(control_call_lines(ctrl))
    if weights is not None:
        out["weights"] = weights if isinstance(weights, str) else "weights"
    if offset is not None:
        out["offset"] = offset if isinstance(offset, str) else "offset"
    if subset is not None:
        out["subset"] = subset if isinstance(subset, str) else "subset"
    return out


def update_glmer(m: Any, formula: str | None = None, data: pd.DataFrame | None = None,
                 REML: bool | None = None, **kwargs: Any) -> Any:
    """lme4's ``update`` for a glmerMod: refit with a changed formula (``.`` for the old
    sides), data or argument (``family``, ``nAGQ``, ``weights``, ...). A model fitted with
    ``syntax="formulaic"`` keeps that syntax, where a new formula is taken as written.
    ``REML`` is refused with R's message (glmer has no such argument)."""
    if REML is not None:
        raise ArgumentError(f"unused argument (REML = {str(REML).upper()})")
    call = m.call
    new_formula, data = updated_formula_and_data(call, formula, data,
                                                 kwargs.get("syntax", call.syntax))
    args: dict[str, Any] = {k: call[k] for k in ("weights", "offset", "subset", "na_action",
                                                 "contrasts")}
    # the control only when the call had one (its Control: line is the call's)
    control = m.glmer_control if "control" in m.call_args else None
    args.update({"family": m.family, "nAGQ": m.nAGQ, "control": control,
                 "data_name": m.data_name, "syntax": call.syntax})
    accepted = inspect.signature(glmer).parameters
    check_unused(kwargs, [k for k in kwargs if k not in accepted or k in ("formula", "data")])
    args.update(kwargs)
    return glmer(new_formula, data, **args)


def refit_glmer(m: Any, newresp: Any) -> Any:
    """lme4's ``refit`` for a glmerMod: the same model fitted to a new response (a vector, or
    for a ``cbind`` binomial an (n, 2) array of successes and failures).

    As lme4 1.1-31's ``refit.merMod``: only the fit's last optimisation runs again — over
    (θ, β) with the optimizer of the second stage (over θ with the first stage's for
    ``nAGQ = 0``) — started at the fitted (θ, β) after one PIRLS on the new response there,
    with glmerControl()'s default optimizer settings (Nelder-Mead's initial steps 0.02 for
    every parameter and bobyqa's own rhobeg, not the second stage's steps), no boundary check,
    derivatives when the fit has them, and glmerControl()'s default convergence checks. So a
    refit with the same response moves from the fit by about the optimizer's tolerance
    (lme4's cbpp: about 5e-4 in β), not to the same numbers. A fit made with
    ``optimizer="L-BFGS-B"`` (this package's option) runs that option's optimisation from the
    fitted point.
    """
    import dataclasses

    from .prediction import fitted_positions

    pf = m.lformula
    try:
        y = np.asarray(newresp, dtype=float)
    except (TypeError, ValueError):  # lme4's mkRespMod
        raise ArgumentError("newresp: response must be numeric or factor") from None
    if y.ndim == 0:
        raise ArgumentError("newresp: response must be a vector (or, for a cbind binomial "
                            "response, a two-column array)")
    if y.shape[0] == pf.frame.nrow_data and y.shape[0] != m.n:
        y = y[pf.frame.rows]
    elif y.ndim >= 1 and y.shape[0] != m.n:  # simulate()'s length under na_action="exclude"
        y = y[fitted_positions(pf, y.shape[0])]
    if y.shape[0] != m.n or y.shape[1:] != np.asarray(pf.y).shape[1:]:
        raise LmeFormulaError(f"newresp must have the shape of the model's response "
                              f"{np.asarray(pf.y).shape}")
    if not np.isfinite(y).all():
        raise LmeFormulaError("NA/NaN/Inf in 'y'")
    pf2 = dataclasses.replace(pf, y=y)
    ctrl = m.glmer_control or GlmerControl()
    optimizer = m.optinfo.optimizer
    theta, beta = np.asarray(m._theta, float), np.asarray(m._beta, float)
    with blas_threads(1):  # as in glmer()
        devfun = GlmerDevfun(pf2, m.family, 0, m.devfun.tolPwrss)
        # lme4's PIRLS on the new response at the fit's θ, on a copy of the fit's predictor
        # module: for nAGQ = 0 over (u, β); after a second stage over u alone with that
        # module's β at 0 (the second stage keeps β in the offset, and the fresh response
        # module's offset is the base one), so the linear predictor there is Z Λ u
        u_only = m.nAGQ > 0
        devfun.refit_start(theta, np.asarray(m._u, float),
                           np.zeros_like(beta) if u_only else beta, u_only=u_only)
        start = theta.copy()
        if m.nAGQ > 0:
            devfun.update(m.nAGQ)
            start = np.concatenate([theta, beta])
        calc = m.optinfo.derivs is not None
        opt = optimizeGlmer(devfun, None if optimizer == "none" else optimizer, start, 0.0,
                            calc_derivs=calc, adj=False)
        checks = GlmerControl().checks  # lme4: glmerControl() when refit is given no control
        opt.lme4 = check_conv(opt.derivs, opt.par, devfun.lower, checks) if calc \
            else Lme4Conv()
        out = GlmerMod(pf2, devfun, opt, m.data_name,  # type: ignore[arg-type]
                       dict(m.call_args))
    out.glmer_control, out.nAGQ = ctrl, m.nAGQ
    return out


# lme4's refit and update are generic functions: a glmerMod's are these
refit.register(GlmerMod, refit_glmer)
update.register(GlmerMod, update_glmer)
