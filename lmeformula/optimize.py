"""Optimisation of the profiled criterion as lme4's ``optimizeLmer`` does it.

BOBYQA from NLopt is lme4's default (``nloptwrap``) with lme4's settings: ``xtol_abs = 1e-8``,
``ftol_abs = 1e-8``, ``maxeval = 1e5`` and, because nloptr fills in its own defaults for what
lme4 leaves unset, ``xtol_rel = 1e-4``. After the optimizer: the boundary restart
(``restart_edge``), snapping to the boundary (``boundary.tol``), finite-difference derivatives
(``deriv12``) and lme4's convergence checks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .bobyqa import bobyqa, minqa_npt
from .control import LmerControl
from .errors import (
    ConvergenceWarning,
    FittingError,
    LmeFormulaError,
    LmeFormulaWarning,
    SingularFitWarning,
)
from .neldermead import nelder_mead
from .records import NamedRecord
from .validate import check_allocation, check_count, check_number

__all__ = ["Derivs", "Lme4Conv", "OptResult", "check_conv", "deriv12", "optimize_lmer"]

Objective = Callable[[np.ndarray], float]


@dataclass(frozen=True, eq=False)
class Derivs(NamedRecord):
    """lme4's ``derivs`` (``deriv12`` at the optimum): read as lme4's list,
    ``derivs["Hessian"]``, or as attributes.

    Attributes
    ----------
    gradient
        Central-difference gradient of the criterion.
    Hessian
        Central-difference Hessian.
    """

    gradient: np.ndarray
    Hessian: np.ndarray


@dataclass(frozen=True)
class Lme4Conv:
    """lme4's ``optinfo$conv$lme4``: what its convergence checks (``checkConv``) found.

    Attributes
    ----------
    messages
        The checks' messages, in the order they were raised (empty when all passed).
    code
        lme4's codes of the checks that failed: -1 (gradient too large, or not scalable),
        -2 (relative gradient too large, when ``relTol`` is set), -5 (gradient has NAs),
        -3 (Hessian with negative eigenvalues), -4 (singular Hessian), -6 (non-finite
        Hessian), 2 and/or 3 (nearly unidentifiable: very large eigenvalue, large
        eigenvalue ratio); a Hessian check's codes replace the gradient's, as in lme4. Empty
        where lme4 has none (all passed, or a singular fit, which lme4 reports by its
        message only).
    """

    messages: tuple[str, ...] = ()
    code: tuple[int, ...] = ()


@dataclass
class OptResult:
    """lme4's ``opt`` list and ``optinfo``.

    Attributes
    ----------
    par, fval
        The optimum and the criterion there.
    conv
        Optimizer's code (0 = OK; 1000 = no optimisation).
    message
        Optimizer's message.
    feval
        Number of criterion evaluations by the optimizer (restarts included).
    derivs
        :class:`Derivs` (``gradient``, ``Hessian``) from :func:`deriv12`, or None.
    warnings
        Messages of the optimizer (lme4's ``optinfo$warnings``).
    optimizer
        Name of the optimizer used.
    lme4
        What lme4's convergence checks found (:class:`Lme4Conv`, lme4's
        ``optinfo$conv$lme4``); set by ``optimizeLmer`` / ``glmer`` after the optimizer.
    """

    par: np.ndarray
    fval: float
    conv: int
    message: str
    feval: int
    derivs: Derivs | None = None
    warnings: list[str] = field(default_factory=list)
    optimizer: str = "nloptwrap"
    lme4: Lme4Conv = field(default_factory=Lme4Conv)

    @property
    def lme4_messages(self) -> list[str]:
        """The convergence checks' messages (``optinfo$conv$lme4$messages``)."""
        return list(self.lme4.messages)


_NLOPT_MESSAGES = {
    1: "NLOPT_SUCCESS: Generic success return value.",
    2: "NLOPT_STOPVAL_REACHED: Optimization stopped because stopval (above) was reached.",
    3: "NLOPT_FTOL_REACHED: Optimization stopped because ftol_rel or ftol_abs (above) was reached.",
    4: "NLOPT_XTOL_REACHED: Optimization stopped because xtol_rel or xtol_abs (above) was reached.",
    5: "NLOPT_MAXEVAL_REACHED: Optimization stopped because maxeval (above) was reached.",
    6: "NLOPT_MAXTIME_REACHED: Optimization stopped because maxtime (above) was reached.",
}


# the control settings minqa's bobyqa takes (minqa:::commonArgs; iprint, obstop and force.start
# are accepted and have no effect here: no printing, and x0 is within the bounds)
_MINQA_OPTIONS = frozenset({"npt", "rhobeg", "rhoend", "iprint", "maxfun", "obstop",
                            "force.start"})

# lme4's nloptwrap settings (nloptr's xtol_rel default included; see the module docstring)
_NLOPTWRAP_DEFAULTS: dict[str, Any] = {"xtol_abs": 1e-8, "ftol_abs": 1e-8, "maxeval": 100000,
                                       "xtol_rel": 1e-4, "ftol_rel": 0.0}


def nloptwrap(fn: Objective, x0: np.ndarray, lower: np.ndarray,
              opts: dict[str, Any]) -> tuple[np.ndarray, float, int, str, int]:
    """lme4's ``nloptwrap``: NLopt (BOBYQA unless ``optCtrl`` names another algorithm) with
    lme4's settings (see the module docstring); (par, fval, code, message, evaluations)."""
    import nlopt

    settings = {**_NLOPTWRAP_DEFAULTS, **opts}
    k = x0.shape[0]
    count = 0
    # the best point so far: NLopt's Python binding raises on a round-off stop without the
    # point it stopped at (nloptr, lme4's, returns NLopt's best x)
    best: list[Any] = [math.inf, None]

    def objective(x: np.ndarray, grad: np.ndarray) -> float:
        nonlocal count
        count += 1
        value = fn(x)
        value = value if math.isfinite(value) else 1e300
        if value < best[0]:
            best[0], best[1] = value, np.array(x, dtype=float)
        return value

    algorithm = settings.pop("algorithm", "NLOPT_LN_BOBYQA")
    code_of = getattr(nlopt, str(algorithm).replace("NLOPT_", ""), None)
    if not (isinstance(algorithm, str) and algorithm.startswith("NLOPT_")
            and isinstance(code_of, int)):
        raise LmeFormulaError(f"optCtrl: incorrect algorithm supplied ({algorithm!r}); use an "
                              "NLopt algorithm name such as 'NLOPT_LN_BOBYQA'")
    # the caller's options are checked (lme4's defaults are valid: every fit passes here)
    for name in ("xtol_abs", "ftol_abs", "xtol_rel", "ftol_rel"):
        if name in opts:
            check_number(settings[name], f"optCtrl {name}", lower=0)
    if "maxeval" in opts:
        check_count(settings["maxeval"], "optCtrl maxeval")
    unused = sorted(set(settings) - _NLOPTWRAP_DEFAULTS.keys()) if opts else []
    if unused:  # lme4 ignores them; say so rather than fail
        warnings.warn(f"some options were not used: optCtrl {', '.join(map(repr, unused))}",
                      LmeFormulaWarning, stacklevel=4)
    _check_workspace(k, str(algorithm))
    opt = nlopt.opt(code_of, k)
    opt.set_lower_bounds(np.asarray(lower, float))
    opt.set_upper_bounds(np.full(k, np.inf))
    opt.set_min_objective(objective)
    opt.set_xtol_abs(settings["xtol_abs"])
    opt.set_ftol_abs(settings["ftol_abs"])
    opt.set_xtol_rel(settings["xtol_rel"])
    opt.set_ftol_rel(settings["ftol_rel"])
    opt.set_maxeval(int(settings["maxeval"]))
    x = np.clip(np.asarray(x0, float), lower, None)
    try:
        xopt = opt.optimize(x)
        code = int(opt.last_optimize_result())
    except nlopt.RoundoffLimited:
        xopt, code = (x if best[1] is None else best[1]), -4
    fval = float(opt.last_optimum_value())
    conv = 0 if 0 < code < 5 else code
    return np.asarray(xopt), fval, conv, _NLOPT_MESSAGES.get(code, f"NLopt code {code}"), count


def _check_workspace(k: int, algorithm: str, npt: int | None = None) -> None:
    """Refuse an optimizer whose workspace for ``k`` parameters would not fit in memory
    (NLopt does not check its allocation: θ of 45,000 parameters, (f | g) with a 300-level
    factor f, was a segmentation fault)."""
    itemsize = 8
    if algorithm == "NLOPT_LN_BOBYQA":  # NLopt's bobyqa.c: npt = 2k + 1 interpolation points
        n_pt = 2.0 * k + 1.0
        elements = (n_pt + 5.0) * (n_pt + k) + 1.5 * k * (k + 5.0)
    elif algorithm == "minqa_bobyqa":  # minqa's workspace, held as lists of Python floats
        n_pt = float(minqa_npt(k, npt))
        elements = (n_pt + 5.0) * (n_pt + k) + 1.5 * k * (k + 5.0)
        itemsize = 32  # a list's pointer and the float object it points to
    else:  # a simplex, or NLopt's other derivative-free methods: of order k²
        elements = (k + 1.0) * (k + 1.0)
    name = "bobyqa" if algorithm == "minqa_bobyqa" else algorithm.replace("NLOPT_", "")
    check_allocation(elements, f"the optimizer ({name}) for {k} parameters", itemsize)


def check_optimizer_workspace(k: int, optimizer: str | None,
                              optCtrl: Mapping[str, Any]) -> None:
    """:func:`_check_workspace` for the optimizer named ``optimizer``, before the deviance
    function is set up (which takes seconds to a minute for such a θ)."""
    algorithm = {"nloptwrap": str(dict(optCtrl).get("algorithm", "NLOPT_LN_BOBYQA")),
                 "bobyqa": "minqa_bobyqa", "Nelder_Mead": "Nelder_Mead"}.get(str(optimizer))
    if algorithm is not None:
        npt = dict(optCtrl).get("npt") if algorithm == "minqa_bobyqa" else None
        _check_workspace(k, algorithm, None if npt is None else int(npt))


def minqa_bobyqa(fn: Objective, x0: np.ndarray, lower: np.ndarray, opts: Mapping[str, Any]
                 ) -> tuple[np.ndarray, float, int, str, int]:
    """lme4's ``bobyqa``: ``minqa::bobyqa`` (:func:`lmeformula.bobyqa.bobyqa`, a port of
    minqa's Fortran that evaluates the same points) as lme4's ``optwrap`` calls it: x0 = 0
    moved to 0.001 (lme4's "minor kludge"), no upper bounds, minqa's defaults (npt = n + 2
    interpolation points, rhobeg = min(0.95, 0.2 max|x0|), rhoend = 1e-6 rhobeg, maxfun =
    10000) unless ``opts`` sets them. Returns (par, fval, conv, message, feval) as lme4
    records them: conv is minqa's ``ierr`` (0 normal exit, 1 maxfun reached, 3 a trust
    region step failed, 5 too much cancellation in a denominator), the message minqa's
    ("Normal exit from bobyqa"), feval the Fortran's evaluations."""
    x = np.asarray(x0, float).copy()
    if np.all(x == 0):
        x[:] = 0.001  # lme4's "minor kludge"
    unused = sorted(set(opts) - _MINQA_OPTIONS)
    if unused:  # minqa:::commonArgs warns and ignores them
        warnings.warn(f"unused control arguments ignored: optCtrl {', '.join(map(repr, unused))}",
                      LmeFormulaWarning, stacklevel=4)
    k = x.shape[0]
    npt = opts.get("npt")
    if npt is not None:
        npt = check_count(npt, "optCtrl npt")
    _check_workspace(k, "minqa_bobyqa", npt)
    maxfun = check_count(opts.get("maxfun", 10000), "optCtrl maxfun")
    rhobeg = opts.get("rhobeg")
    rhoend = opts.get("rhoend")
    for name, value in (("rhobeg", rhobeg), ("rhoend", rhoend)):
        if value is not None:
            check_number(value, f"optCtrl {name}", lower=0)
    res = bobyqa(fn, x, np.asarray(lower, float), math.inf, npt=npt,
                 rhobeg=None if rhobeg is None else float(rhobeg),
                 rhoend=None if rhoend is None else float(rhoend), maxfun=maxfun)
    return res.par, res.fval, res.ierr, res.msg, res.feval


def lme4_nelder_mead(fn: Objective, x0: np.ndarray, lower: np.ndarray,
                     opts: Mapping[str, Any]) -> tuple[np.ndarray, float, int, str, int]:
    """lme4's own ``Nelder_Mead`` (not scipy's or NLopt's) with its defaults: initial steps
    ``xst`` = 0.02, parameter tolerances ``xt`` = xst * 5e-4, ``maxfun`` = 10000; lme4 warns
    "failure to converge in N evaluations" and returns code 4 when it runs out."""
    k = x0.shape[0]
    _check_workspace(k, "Nelder_Mead")
    xst = np.asarray(opts.get("xst", np.full(k, 0.02)), float)
    xt = np.asarray(opts.get("xt", xst * 5e-4), float)
    maxfun = check_count(opts.get("maxfun", 10000), "optCtrl maxfun")
    res = nelder_mead(fn, np.asarray(x0, float), np.asarray(lower, float), np.full(k, np.inf),
                      xst, xt, maxfun=maxfun,
                      minf_max=float(opts.get("MinfMax", -np.finfo(float).max)))
    if res.code == 4:
        warnings.warn(f"failure to converge in {maxfun} evaluations", ConvergenceWarning,
                      stacklevel=4)
    return np.asarray(res.par), float(res.fval), 4 if res.code == 4 else 0, res.message, \
        res.feval


def _scipy_bounds(lower: np.ndarray) -> list[tuple[float | None, None]]:
    """θ's bounds as scipy takes them: no upper bounds, None for -inf."""
    return [(lo if np.isfinite(lo) else None, None) for lo in lower]


def _minimize(fun: Callable[[np.ndarray], Any], x0: np.ndarray, *, method: str, jac: Any = None,
              bounds: list[tuple[float | None, None]], options: dict[str, Any]) -> Any:
    """``scipy.optimize.minimize`` with the method and its options as run-time values: they come
    from the user's control settings, not the literal strings and typed dicts of scipy's stubs."""
    from scipy.optimize import minimize

    method_: Any = method
    options_: Any = options
    return minimize(fun, x0, method=method_, jac=jac, bounds=bounds, options=options_)


def _scipy_optimizer(method: str) -> Callable[..., tuple[np.ndarray, float, int, str, int]]:
    def run(fn: Objective, x0: np.ndarray, lower: np.ndarray,
            opts: dict[str, Any]) -> tuple[np.ndarray, float, int, str, int]:
        res = _minimize(fn, x0, method=method, bounds=_scipy_bounds(lower), options=dict(opts))
        return (np.asarray(res.x), float(res.fun), 0 if res.success else 1, str(res.message),
                int(res.nfev))

    return run


# L-BFGS-B's first step: its Hessian model starts as the identity, so the first trial point
# is the projected step -g, which for a criterion of size ~n (g in the thousands) runs every
# θ onto its bound (InstEval: to θ = 0, where the criterion is 5 % higher and the gradient is
# taken 1e-7 inside at the cost of a second factorisation; then three evaluations backtrack).
# Optimizing over z = 4θ shortens that model's step (the identity in z is 16I in θ) and
# leaves every later iterate's model as it was (L-BFGS rescales by yᵀy/sᵀy); a power of two
# keeps θ = z/4 and g/4 exact. Measured (2026-12-02): InstEval 15 -> 13 evaluations, its ML
# fit 14 -> 12, three other InstEval models and the synthetic crossed 10⁴-10⁵ rows 1-2
# fewer; the 58 fixture fits 789 -> 775 evaluations in all, each criterion within 1e-10 of
# lme4's or below. z = 2θ took 12 on InstEval but stopped the singular `insteval_large`
# (with `(0 + service | dept)`) on another face of the boundary, 0.21 higher than with θ
# or 4θ (which reach the same point); 1.5 (no change on InstEval), 3 and 10, or a scale
# set by |g| at the start, did no better.
_LBFGSB_THETA_SCALE = 4.0


def _lbfgsb(fn: Objective, x0: np.ndarray, lower: np.ndarray,
            opts: dict[str, Any]) -> tuple[np.ndarray, float, int, str, int]:
    """scipy's L-BFGS-B with the analytic gradient where the deviance function has one
    (``fn.gradient``), else with central finite differences. The default tolerances are tighter than
    scipy's, which stop too early for criteria of size ~n: a relative decrease below 1e-13
    or a projected gradient below 1e-7 times the criterion."""
    objective: Callable[[np.ndarray], Any]
    jac: bool | str
    # with the analytic gradient the optimizer works on z = 4θ (see _LBFGSB_THETA_SCALE),
    # bounded by 4·lower (a finite lower bound other than 0, a user's, bounds θ, not z)
    analytic = bool(getattr(fn, "has_gradient", False))
    zs = _LBFGSB_THETA_SCALE if analytic else 1.0
    bounds = _scipy_bounds(np.asarray(lower, float) * zs)
    if analytic:
        gradient = fn.gradient  # type: ignore[attr-defined]
        # the gradient needs the dense factor at each point: the criterion is taken from it
        # too, from the first point on (no sparse analysis of block 2 for nothing)
        getattr(fn, "keep_factors", lambda: None)()

        def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
            theta = z / zs  # exact: zs is a power of two
            return fn(theta), gradient(theta) / zs

        objective, jac = fun, True
    else:  # central differences: forward ones are too coarse to converge tightly
        objective, jac = fn, "3-point"
    x0 = np.clip(np.asarray(x0, float), lower, None)
    scale = max(abs(float(fn(x0))), 1.0)
    # the gradient in z is the gradient in θ over zs: the same stopping rule in θ
    options = {"ftol": 1e-13, "gtol": 1e-7 * scale / zs, "maxiter": 1000, **opts}
    if "gtol" in opts:  # a user's gtol is in θ, as the default's
        options["gtol"] = float(opts["gtol"]) / zs
    res = _minimize(objective, x0 * zs, jac=jac, method="L-BFGS-B", bounds=bounds,
                    options=options)
    res.x = np.asarray(res.x) / zs
    nfev = int(res.nfev) + 1
    # θ = 0 on a diagonal is a stationary point of the criterion (it is even in a scalar
    # term's θ), so a gradient method can stop there although moving inwards lowers the
    # criterion. As lme4's restart_edge, look a finite step inside and restart from there.
    for _ in range(3):
        trial, used = _better_inside(fn, np.asarray(res.x, float), float(res.fun), lower)
        nfev += used
        if trial is None:
            break
        res = _minimize(objective, trial * zs, jac=jac, method="L-BFGS-B", bounds=bounds,
                        options=options)
        res.x = np.asarray(res.x) / zs
        nfev += int(res.nfev)
    return (np.asarray(res.x), float(res.fun), 0 if res.success else 1, str(res.message),
            nfev)


def _better_inside(fn: Objective, x: np.ndarray, fx: float, lower: np.ndarray
                   ) -> tuple[np.ndarray | None, int]:
    """The best point, if any beats ``fx``, among steps of 1e-3, 1e-2 and 1e-1 inside the
    boundary from each diagonal θ that sits on it, and the number of evaluations spent."""
    best, best_value, used = None, fx - 1e-10 * max(abs(fx), 1.0), 0
    for i in np.flatnonzero((lower == 0) & (x <= 1e-6)):
        for step in (1e-3, 1e-2, 1e-1):
            trial = x.copy()
            trial[i] = step
            value = float(fn(trial))
            used += 1
            if value < best_value:
                best, best_value = trial, value
    return best, used


OPTIMIZERS: dict[str, Callable[..., tuple[np.ndarray, float, int, str, int]]] = {
    "nloptwrap": nloptwrap,
    "bobyqa": minqa_bobyqa,
    "Nelder_Mead": lme4_nelder_mead,
    "Powell": _scipy_optimizer("Powell"),  # scipy's bounded Powell (used by allFit)
    "L-BFGS-B": _lbfgsb,
}


@lru_cache(maxsize=32)
def _deriv12_offsets(k: int, centre: bool) -> np.ndarray:
    """deriv12's points as multiples of the step: +e_i, then -e_i, then for each pair i > j
    e_i + e_j, e_i - e_j, -e_i + e_j, -e_i - e_j, then (``centre``) the centre."""
    steps = np.eye(k)
    rows = [steps[i] for i in range(k)] + [-steps[i] for i in range(k)]
    for i in range(k):
        for j in range(i):
            rows += [steps[i] + steps[j], steps[i] - steps[j], -steps[i] + steps[j],
                     -steps[i] - steps[j]]
    if centre:
        rows.append(np.zeros(k))
    out = np.array(rows).reshape(-1, k)
    out.flags.writeable = False
    return out


def deriv12(fn: Objective, x: np.ndarray, delta: float = 1e-4,
            fx: float | None = None) -> Derivs:
    """lme4's ``deriv12``: central-difference gradient and Hessian (no bounds applied).

    The points are evaluated together through ``fn.batch`` when ``fn`` has one."""
    k = x.shape[0]
    pairs = [(i, j) for i in range(k) for j in range(i)]
    points = x + _deriv12_offsets(k, fx is None) * delta
    batch = getattr(fn, "batch", None)
    values = (np.asarray(batch(points)) if batch is not None
              else np.array([fn(p) for p in points]))
    f0 = values[-1] if fx is None else fx
    fplus, fminus = values[:k], values[k : 2 * k]
    # an infinite criterion (a zero prior weight makes lme4's REML criterion +Inf) gives
    # NaN differences silently, as in R: check_conv reports "Gradient contains NAs"
    with np.errstate(invalid="ignore"):
        grad = (fplus - fminus) / (2 * delta)
        hess = np.diag((fplus - 2 * f0 + fminus) / delta**2)
        for n, (i, j) in enumerate(pairs):
            a, b, c, d = values[2 * k + 4 * n : 2 * k + 4 * n + 4]
            hess[i, j] = hess[j, i] = ((a - b) - c + d) / (4 * delta**2)
    return Derivs(grad, hess)


def _emit(action: str, message: str, category: type[Warning]) -> None:
    if action == "ignore":
        return
    if action == "stop":
        raise LmeFormulaError(message)
    warnings.warn(message, category, stacklevel=5)


def check_conv(derivs: Derivs | None, par: np.ndarray, lower: np.ndarray,
               ctrl: LmerControl) -> Lme4Conv:
    """lme4 1.1-31's ``checkConv``: singular fit first, then gradient and Hessian checks.

    ``lower`` is lme4's ``lbound``, the bounds of every optimised parameter. For a GLMM's
    second stage it covers β too (``-inf``), as lme4's ``updateGlmerDevfun`` extends it, so
    lme4's separate fixed-effect Hessian check (run only when there are more parameters
    than bounds) never runs there, and does not here. Warnings are raised as lme4 raises
    them (one per check, a Hessian check's messages joined by ``;``); "Gradient contains
    NAs" is recorded without a warning, as lme4 does.
    """
    action, tol = ctrl.check_conv_singular
    if np.any(par[lower == 0] < tol):
        msg = "boundary (singular) fit: see help('isSingular')"
        _emit(action, msg, SingularFitWarning)
        return Lme4Conv((msg,) if action != "ignore" else ())
    if derivs is None:
        return Lme4Conv()
    g, h = derivs.gradient, derivs.Hessian  # the fields (the Mapping lookup scans them)
    if np.isnan(g).any():
        return Lme4Conv(("Gradient contains NAs",), (-5,))
    # both checks need the Hessian's Cholesky factor, or to know it has none: h is
    # factored once, here, and a failed factorisation is not tried again
    chol = _cholesky(h)
    messages, code = _check_gradient(g, par, ctrl, chol)
    h_action, h_tol = ctrl.check_conv_hess
    if h_action != "ignore":
        hess_code, hess_messages = check_hess(h, h_tol, factored=chol is not None)
        if hess_messages:
            code = hess_code
            messages = [*messages, *hess_messages]
            _emit(h_action, ";".join(hess_messages), ConvergenceWarning)
    return Lme4Conv(tuple(messages), code)


def _cholesky(h: np.ndarray) -> np.ndarray | None:
    """The lower Cholesky factor of ``h``, or None where it has none (numpy's)."""
    try:
        return np.linalg.cholesky(h)
    except np.linalg.LinAlgError:
        return None


def _check_gradient(g: np.ndarray, par: np.ndarray, ctrl: LmerControl,
                    chol: np.ndarray | None) -> tuple[list[str], tuple[int, ...]]:
    """lme4's ``check.conv.grad``: the gradient scaled by the Hessian's Cholesky factor
    ``chol`` (None where the Hessian has none: "unable to evaluate scaled gradient"), each
    component the smaller of scaled and raw, against ``tol``; then, when ``relTol`` is
    set, ``max|grad / par|`` against it (its message replaces the first, as in lme4)."""
    action, tol = ctrl.check_conv_grad
    if action == "ignore":
        return [], ()
    messages: list[str] = []
    code: tuple[int, ...] = ()
    try:
        scgrad: np.ndarray | None = None if chol is None else np.linalg.solve(chol.T, g)
    except np.linalg.LinAlgError:
        scgrad = None
    if scgrad is None or np.isnan(scgrad).any():
        messages, code = ["unable to evaluate scaled gradient"], (-1,)
    else:
        mingrad = float(np.max(np.minimum(np.abs(scgrad), np.abs(g))))
        if mingrad > tol:
            # lme4 names which.max() of the maximum itself: always component 1
            messages = [f"Model failed to converge with max|grad| = {mingrad:.6g} "
                        f"(tol = {tol:g}, component 1)"]
            code = (-1,)
    if messages:
        _emit(action, messages[0], ConvergenceWarning)
    rel_tol = ctrl.check_conv_grad_relTol
    if rel_tol is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            max_rel = float(np.max(np.abs(g / par)))
        if max_rel > rel_tol:
            messages = [f"Model failed to converge with max|relative grad| = {max_rel:.6g} "
                        f"(tol = {rel_tol:g})"]
            code = (-2,)
            _emit(action, messages[0], ConvergenceWarning)
    return messages, code


def check_hess(h: np.ndarray, tol: float, hesstype: str = "",
               factored: bool | None = None) -> tuple[tuple[int, ...], list[str]]:
    """lme4's ``checkHess``: the codes and messages of a Hessian's eigenvalue checks.

    Negative eigenvalues (-3); a numerically singular Hessian, by a near-zero eigenvalue or
    a failed Cholesky factorisation (-4); otherwise a very large eigenvalue (2) and a large
    eigenvalue ratio (3), both reported when both hold; non-finite entries (-6). No
    messages when all pass. ``factored``: whether h has a Cholesky factor, when the caller
    has tried to factor it (then h is not factored again, its failure included); None to
    factor it here, only where the eigenvalues leave the answer open."""
    if not np.all(np.isfinite(h)):
        return (-6,), ["Problem with Hessian check (infinite or missing values?)"]
    # the eigenvalues as Python floats: a handful, compared with the same IEEE operations
    # numpy's reductions would use, without a numpy call per comparison
    evd = np.linalg.eigvalsh(h).tolist()
    negative = sum(v < -tol for v in evd)
    if negative:
        # R's paste() puts a space on each side of an empty hesstype
        return (-3,), [" ".join(["Model failed to converge:", "degenerate", hesstype,
                                 f"Hessian with {negative} negative eigenvalues"])]
    if any(abs(v) < tol for v in evd) or not (
            _cholesky(h) is not None if factored is None else factored):
        return (-4,), [" ".join([hesstype, "Hessian is numerically singular: parameters are "
                                           "not uniquely determined"])]
    codes: list[int] = []
    messages: list[str] = []
    if max(evd) * tol > 1:
        codes.append(2)
        messages.append("Model is nearly unidentifiable: very large eigenvalue\n"
                        " - Rescale variables?")
    if min(evd) / max(evd) < tol:
        codes.append(3)
        messages.append("Model is nearly unidentifiable: large eigenvalue ratio\n"
                        " - Rescale variables?")
    return tuple(codes), messages


def _checked_start(fn: Objective) -> Objective:
    """``fn`` whose first value must be a number: lme4's "objective in x0 returns NA" (an
    overflow in the cross-products, an infinite weight) instead of a fit of NaNs."""
    first = True

    def checked(theta: np.ndarray) -> float:
        nonlocal first
        value = fn(theta)
        if first:
            first = False
            if math.isnan(value):
                raise FittingError("objective in x0 returns NA: the criterion is NaN at the "
                                   "starting theta (overflow in the data?)")
        return value

    for name in ("gradient", "has_gradient", "nobs", "keep_factors"):  # what the
        # optimizers look up on fn
        if hasattr(fn, name):
            setattr(checked, name, getattr(fn, name))
    return checked


def check_boundary(fn: Callable[[np.ndarray], float], par: np.ndarray, fval: float,
                   lower: np.ndarray, tol: float) -> tuple[np.ndarray, float]:
    """lme4's check.boundary: each component within ``tol`` of its bound is moved onto it
    (keeping the moves already made) when that gives a lower criterion than the optimizer's
    value ``fval``; the criterion is then evaluated at the point kept (lmer and glmer)."""
    bdiff = par - lower
    near = np.flatnonzero((bdiff > 0) & (bdiff < tol))
    if near.size == 0:
        return par, fval
    moved = par.copy()
    for i in near:
        trial = moved.copy()
        trial[i] = lower[i]
        if fn(trial) < fval:
            moved[i] = lower[i]
    return moved, fn(moved)


def optimize_lmer(fn: Objective, start: np.ndarray, lower: np.ndarray,
                  ctrl: LmerControl) -> OptResult:
    """Minimise ``fn`` from ``start`` subject to ``lower``, then lme4's post-processing.

    Parameters
    ----------
    fn
        The profiled criterion as a function of θ.
    start
        Starting θ.
    lower
        Lower bounds (0 on diagonals of Λ, -inf elsewhere).
    ctrl
        Optimizer choice and settings, and the convergence checks' actions.

    Returns
    -------
    OptResult
    """
    start = np.asarray(start, float)
    if ctrl.optimizer is None:
        return OptResult(start, fn(start), 1000, "no optimization", 1, optimizer="none")
    if ctrl.optimizer not in OPTIMIZERS:
        raise LmeFormulaError(
            f"unknown optimizer {ctrl.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    run = OPTIMIZERS[ctrl.optimizer]
    opts = dict(ctrl.optCtrl)
    notes: list[str] = []

    def optimise(x0: np.ndarray, objective: Objective) -> tuple[np.ndarray, float, int, str, int]:
        """One run of the optimizer; a non-zero code warns, as lme4's optwrap does."""
        result = run(objective, x0, lower, opts)
        if result[2] != 0:
            note = f"convergence code {result[2]} from {ctrl.optimizer}: {result[3]}"
            warnings.warn(note, ConvergenceWarning, stacklevel=4)
            notes.append(note)
        return result

    par, fval, conv, message, feval = optimise(start, _checked_start(fn))

    if ctrl.restart_edge:
        # one-sided derivative at components on the boundary: restart if any points inwards
        bvals = np.flatnonzero((par == lower) & (lower == 0))
        if bvals.size:
            base = fn(par)
            grads = []
            for i in bvals:
                e = np.zeros_like(par)
                e[i] = 1e-5
                grads.append((fn(par + e) - base) / 1e-5)
            if any(g < 0 for g in grads):
                # lme4's optinfo$feval is the optimizer's own count, of its last run: the
                # restart replaces the first run's record (lme4's opt), and neither these
                # probes nor check.boundary's evaluations below are counted
                par, fval, conv, message, feval = optimise(par, fn)

    # lme4's optwrap computes the derivatives at the optimizer's point, before
    # check.boundary moves it: optinfo$derivs are there, as in glmer's _check_boundary
    derivs = None
    calc = ctrl.calc_derivs
    if calc is None:  # lme4 >= 1.1-38: skipped for large n and many parameters
        calc = getattr(fn, "nobs", 0) < 10_000 and start.shape[0] < 10
    if calc:
        derivs = deriv12(fn, par, fx=fval)

    par, fval = check_boundary(fn, par, fval, lower, ctrl.boundary_tol)
    return OptResult(par, fval, conv, message, feval, derivs, notes, ctrl.optimizer)
