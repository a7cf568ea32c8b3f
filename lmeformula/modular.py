"""lme4's modular steps: ``lFormula`` (formula + data -> model structures).

The steps are the ones lme4 takes (R/modular.R): expand ``||``; build the model frame over every
variable; build the random-effects structures (``mkReTrms``); run the identifiability checks;
build the fixed-effects matrix from ``nobars(formula)``; drop rank-deficient columns; check
scales. Each result is a plain object a user can inspect; the result's dataclasses
(:class:`LFormula`, :class:`ParsedFormula`) are defined in :mod:`lmeformula.lformula`, below the
two front ends that build them, and are this module's names too.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .call import ModelCall
from .checks import (
    check_finite_columns,
    check_finite_z,
    check_nlevels,
    check_scale_x,
    check_zdims,
    check_zrank,
    rank_drop_columns,
)
from .control import LmerControl, as_control
from .errors import ArgumentError, FormulaError, LmeFormulaWarning, ModelFrameError
from .formula.ast import deparse
from .formula.bars import nobars
from .formula.limits import recursion_room
from .formula.terms import terms
from .frame import ModelFrame, call_frame, check_response
from .lformula import (  # modular's names too
    LFormula,
    ParsedFormula,
    has_dot,
    parse_lmer_formula,
)
from .modelmatrix import XAttrs, check_contrasts, model_matrix
from .pls.protocol import Factor, PLSEngine
from .reterms import mk_re_trms

__all__ = ["LFormula", "ParsedFormula", "lFormula", "lformula_of", "parse_lmer_formula"]

# How far inside the boundary the gradient is taken where λ is singular
_BOUNDARY_STEP = 1e-7


def lFormula(
    formula: str,
    data: pd.DataFrame,
    REML: bool = True,
    subset: Any = None,
    weights: Any = None,
    na_action: str = "omit",
    offset: Any = None,
    contrasts: Mapping[str, Any] | None = None,
    control: LmerControl | Mapping[str, Any] | None = None,
    syntax: str = "R",
) -> LFormula:
    """Parse an lme4 formula against data: lme4's ``lFormula``.

    Parameters
    ----------
    formula
        R formula text, ``"Reaction ~ Days + (Days | Subject)"``.
    data
        A data frame: pandas, polars (eager or lazy), pyarrow, or a dict of arrays (see
        :func:`lmeformula.dataframe.as_pandas`); it is never modified.
    REML
        Use the REML criterion (stored for the deviance function).
    subset
        Boolean array-like or R expression text selecting rows.
    weights, offset
        Column names, R expressions of the columns (``offset="log(t)"``, ``weights="1/w"``),
        or arrays, with one value per row of ``data``.
    na_action
        ``"omit"`` (default), ``"exclude"`` or ``"fail"``.
    contrasts
        Contrasts for factors of the fixed part, ``{"recipe": "contr.sum"}``.
    control
        :class:`lmeformula.control.LmerControl` or a dict of its options.
    syntax
        ``"R"`` (default): R's formula syntax, exactly as lme4 reads it; nothing is evaluated
        as Python. ``"formulaic"``: formulaic's syntax with lme4's bars inside parentheses;
        the fixed part and each bar's left side are materialised by formulaic (Python
        transforms such as ``np.log(x)``, ``{x**2}``, ``center(x)``, ``bs(x, df=4)``,
        ``C(f, contr.sum)``; formulaic's column names, the intercept named ``(Intercept)``).
        **formulaic evaluates the formula's Python expressions: use trusted formulas only.**
        See :mod:`lmeformula.pyformula`.

    Returns
    -------
    LFormula
        The model frame ``fr`` is a pandas DataFrame whatever kind of data frame was given.
    """
    call = ModelCall(formula, data, REML=REML, subset=subset, weights=weights,
                     na_action=na_action, offset=offset, contrasts=contrasts,
                     control=as_control(control), syntax=syntax)
    return lformula_of(call)


def warn_response_on_rhs(parsed: ParsedFormula) -> None:
    """R's model.matrix warning for a response that is also a fixed-effects term (``y ~ y +
    x``): terms() drops it there, as R does, and R says so."""
    if parsed.lhs is None:
        return
    lhs = deparse(parsed.lhs)
    fixed = nobars(parsed.rhs)
    if fixed is None or lhs not in deparse(fixed):  # the common case: no terms() needed
        return
    rhs_terms = terms(fixed)
    if any(len(t) == 1 and deparse(rhs_terms.variables[t[0]]) == lhs for t in rhs_terms.terms):
        warnings.warn("the response appeared on the right-hand side and was dropped",
                      LmeFormulaWarning, stacklevel=5)


def check_start_finite(theta0: np.ndarray) -> None:
    """A starting θ with NaN or an infinity stops here with nloptr's messages (lme4: "x0
    contains NA", "objective in x0 returns NA"); nlopt itself fails on NaN obscurely."""
    if np.isnan(theta0).any():
        raise ArgumentError(f"x0 contains NA (start = {theta0.tolist()})")
    if not np.isfinite(theta0).all():
        raise ArgumentError(f"objective in x0 returns NA (start = {theta0.tolist()} is not "
                            "finite)")


def lformula_of(call: ModelCall) -> LFormula:
    """:func:`lFormula` of a checked call (``lmer`` and ``update`` build the call once and
    pass it here); the result keeps the call as ``call``."""
    with formula_room(call):  # long formulas: deep syntax trees
        if call.syntax != "R":
            from .pyformula import formulaic_lformula

            return formulaic_lformula(call)
        return build_lformula(call, LFormula, check_response, allow_n=False)


def formula_room(call: ModelCall) -> AbstractContextManager[None]:
    """Python's recursion limit raised for the call's formula while the structures are built
    (:func:`lmeformula.formula.limits.recursion_room`)."""
    return recursion_room(len(call.formula) if isinstance(call.formula, str) else 0)


def _column_names(data: Any) -> list[str] | None:
    """The data's column names (what a ``.`` in the formula stands for), or None."""
    columns = getattr(data, "columns", None)
    if columns is None and isinstance(data, Mapping):
        columns = list(data)
    if columns is None:
        columns = getattr(data, "column_names", None)  # a pyarrow Table
    return None if columns is None else [str(c) for c in columns]


def build_lformula(call: ModelCall, cls: type[LFormula],
                   response: Callable[[ModelFrame], np.ndarray], allow_n: bool,
                   **extra: Any) -> Any:
    """lFormula's steps (R syntax) on ``call``, shared with glFormula: ``response`` turns the
    frame's response into the stored y, ``allow_n`` selects glmer's identifiability checks,
    ``cls`` and ``extra`` the result's class and its additional fields."""
    formula, ctrl = call.formula, call.control
    parsed = parse_lmer_formula(formula, columns=_column_names(call.data)
                                if isinstance(formula, str) and has_dot(formula) else None)
    if parsed.lhs is None and ctrl.check_formula_LHS == "stop":
        raise FormulaError("formula must have a response (left-hand side): "
                           f"{formula!r} is one-sided")
    if not parsed.bars:
        raise FormulaError("No random effects terms specified in formula")
    warn_response_on_rhs(parsed)
    frame = call_frame(call, parsed.lhs, parsed.rhs)
    y = response(frame) if parsed.lhs is not None else None
    re = mk_re_trms(parsed.bars, frame)
    n = frame.nrow
    nre = {t.key: t.nl * t.nc for t in re.terms}  # rows of each Zt_i, what checkZdims reads
    wmsgs = (check_nlevels(re.flist, n, ctrl, allow_n=allow_n)
             + check_zdims(nre, n, ctrl, allow_n=allow_n))
    check_finite_z({t.name: t.X for t in re.terms})  # Zt's values, without building Zt
    wmsgs += check_zrank(re.make_zt, n, ctrl, q=re.q)

    if call.contrasts:
        check_contrasts(call.contrasts, frame.variables)
    mm = model_matrix(parsed.fixed, frame.variables, n, call.contrasts)
    check_finite_columns(mm.values, mm.columns)
    kept, rank_msg = rank_drop_columns(mm.values, mm.columns, ctrl)
    dropped = {mm.columns[j]: j + 1 for j in range(len(mm.columns)) if j not in set(kept)}
    xvals = mm.values[:, kept]
    re.share_fixed_matrix(xvals)  # X and an equal X_i: one array
    xcols = [mm.columns[j] for j in kept]
    scale_msg = check_scale_x(xvals, ctrl)
    X_attrs = XAttrs(assign=[mm.assign[j] for j in kept], contrasts=dict(mm.contrasts),
                     msgScaleX=[scale_msg] if scale_msg else [],
                     msgRankdrop=rank_msg or None, col_dropped=dropped if rank_msg else None)
    return cls(
        X_values=xvals,
        X_names=xcols,
        reTrms=re,
        REML=call.REML,
        formula=parsed.expanded,
        wmsgs=wmsgs,
        y=y,
        frame=frame,
        X_attrs=X_attrs,
        parsed=parsed,
        control=ctrl,
        call=call,
        **extra,
    )


@dataclass
class LmerDevfun:
    """lme4's ``mkLmerDevfun`` result: the profiled criterion as a function of θ.

    Calling it returns the REML criterion (or the ML deviance); the last factorisation is kept,
    so evaluating at the optimum leaves every derived quantity ready, as lme4's ``pp`` does.

    Attributes
    ----------
    problem
        The engine's cross-products (:class:`lmeformula.pls.PLSProblem`).
    REML
        Whether the criterion is REML (False also when X has no columns, as in lme4).
    lower
        Bounds on θ.
    start
        Starting θ (lme4's special start for scalar intercept terms included).
    evaluations
        Number of calls so far.
    """

    problem: PLSEngine
    REML: bool
    lower: np.ndarray
    start: np.ndarray
    evaluations: int = 0
    last: Factor | None = None
    # the lowest criterion so far, its (REML, θ as bytes) and factorisation: the optimizer returns
    # the best point it evaluated, and lme4 evaluates there once more (mkMerMod)
    _best: tuple[float, tuple[bool, bytes], Factor] | None = field(default=None, repr=False)

    def __call__(self, theta: np.ndarray) -> float:
        self.evaluations += 1
        theta = np.asarray(theta, dtype=float)
        key = (self.REML, theta.tobytes())
        best = self._best
        if best is not None and best[1] == key:
            self.last = best[2]
            return best[0]
        self.last = None  # released first: a large model's block 2 is not held twice
        value, self.last = self.problem.deviance(theta, self.REML)
        # (an engine whose factors are each one large dense array keeps no second one)
        if (self.last is not None and not getattr(self.problem, "holds_one_factor", False)
                and (best is None or value < best[0])):
            self._best = (value, key, self.last)
        return value

    @property
    def has_gradient(self) -> bool:
        """Whether the engine gives the criterion's gradient analytically."""
        return bool(getattr(self.problem, "has_gradient", False))

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        """The criterion's gradient in θ (analytic; see the engines' ``gradient``).

        The blocked engine's formula needs λ⁻¹; on the boundary (a zero on λ's diagonal) the
        gradient is taken a step of 1e-7 inside instead, where it differs from the boundary's
        by about 1e-7 times the curvature (the criterion is smooth there)."""
        theta = np.asarray(theta, dtype=float)
        self.keep_factors()
        try:
            return self.problem.gradient(self.factor(theta), self.REML)
        except np.linalg.LinAlgError:
            inside = np.where((self.lower == 0) & (theta == 0), _BOUNDARY_STEP, theta)
            return self.problem.gradient(self.problem.factor(inside), self.REML)

    def keep_factors(self) -> None:
        """Take every criterion from the factorisation (the engine's, where it has a sparse
        one for the criterion alone): a gradient method needs the factorisation at each of
        its points, and then makes it once per point."""
        keep = getattr(self.problem, "keep_factors", None)
        if keep is not None:
            keep()

    def batch(self, thetas: np.ndarray) -> np.ndarray:
        """The criterion at each row of ``thetas`` (one batched computation where the engine
        has one: the finite-difference derivatives evaluate ~k² points at once)."""
        thetas = np.asarray(thetas, dtype=float)
        self.evaluations += thetas.shape[0]
        return self.problem.deviances(thetas, self.REML)

    @property
    def nobs(self) -> int:
        """Number of observations."""
        return int(self.problem.n)

    def factor(self, theta: np.ndarray) -> Factor:
        """The factorisation at ``theta`` (reusing the last one when θ is unchanged)."""
        theta = np.asarray(theta, dtype=float)
        if self.last is None or not np.array_equal(self.last.theta, theta):
            self.last = None
            self.last = self.problem.factor(theta)
        return self.last


def lme4_start(pf: LFormula) -> np.ndarray:
    """lme4's starting θ: 1 on diagonals, 0 elsewhere; for models whose terms are all scalar
    intercepts on distinct factors, ``sqrt(v_i / v_e)`` from the variance of group means."""
    re = pf.reTrms
    start = re.theta.copy()
    scalar_intercepts = all(c == ["(Intercept)"] for c in re.cnms)
    if scalar_intercepts and len(re.flist) == len(re.lower) and pf.y is not None:
        y = pf.y
        v = []
        for f in re.flist.values():
            codes = np.asarray(f.codes)
            means = np.bincount(codes, weights=y) / np.bincount(codes)
            v.append(np.var(means[codes], ddof=1))
        v_e = np.var(y, ddof=1) - sum(v)
        if np.isfinite(v_e) and v_e > 0:
            start = np.sqrt(np.array(v) / v_e)
    return start


def mkLmerDevfun(pf: LFormula, start: Any = None) -> LmerDevfun:
    """lme4's ``mkLmerDevfun``: the deviance function of an :func:`lFormula` result.

    Parameters
    ----------
    pf
        The result of :func:`lFormula`.
    start
        Starting θ: an array, or ``{"theta": array}``; None for lme4's default.

    Returns
    -------
    LmerDevfun
    """
    from .pls import make_problem, memory, term_shapes

    if pf.y is None:
        raise FormulaError("a response is needed to fit the model")
    re = pf.reTrms
    shapes = term_shapes(re.terms)
    y = pf.y - pf.offset if pf.offset is not None else pf.y
    if y.shape[0] and "(Intercept)" in pf.X_names and np.ptp(y) == 0:
        # y is the intercept's column: every residual sum of squares is 0 and the criterion
        # log(0); lme4 "converges" to a REML criterion of -Inf with σ = 0 and convergence
        # warnings: there is no model to fit
        what = "y - offset" if pf.offset is not None else "every value"
        raise ModelFrameError(f"the response is constant ({what} = {y[0]:g}): the residual "
                              "variance would be zero, and a linear mixed model cannot be "
                              "fitted (lme4 reports a REML criterion of -Inf)")
    # codes at their own width and Zt built only if a path reads it (the counting path
    # does not): a 10^6-row fit holds neither an int64 copy of the codes nor Zt
    factors = re.level_factors(compact=True)
    # lFormula's temporaries (the model frame's, X's rank check) are freed: their pages go
    # back before the engine's arrays are made (the dense 10⁶-row design: 18 MB off its peak).
    # Large data only: malloc_trim walks the whole heap, 0.4-8 ms measured (a fresh process;
    # one holding 80 MB of small arrays), where a small fit takes about 2 ms in all
    if pf.X_values.shape[0] >= memory.TRIM_MIN_ROWS:
        memory.release_freed_memory()
    problem = make_problem(re.make_zt, pf.X_values, y, pf.weights, shapes, factors,
                           names=[t.name for t in re.terms])
    if isinstance(start, Mapping):
        # lme4's getStart: theta (and fixef, which lmer does not use), nothing else
        bad = [str(k) for k in start if k not in ("theta", "fixef")]
        if bad:
            raise ArgumentError(f"incorrect components in start list: {', '.join(bad)}")
        start = start.get("theta")
    try:
        theta0 = lme4_start(pf) if start is None else np.asarray(start, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ArgumentError(f"start must be numeric (theta), not {start!r}") from None
    if theta0.shape != re.theta.shape:
        raise FormulaError(f"start must have length {re.theta.shape[0]} (the length of theta)")
    check_start_finite(theta0)
    if pf.X_values.shape[0] >= memory.TRIM_MIN_ROWS:
        memory.release_freed_memory()  # lme4_start's n-length temporaries (~15 MB at 10⁶)
    return LmerDevfun(problem, bool(pf.REML and pf.X_values.shape[1] > 0), re.lower.copy(), theta0)
