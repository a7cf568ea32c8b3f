"""Inference on fitted models: ``anova``, ``confint`` (Wald, profile, bootstrap), ``profile``
and the parametric bootstrap, as lme4 does them.

Profiles follow lme4's ``profile.merMod``: the model is refitted by ML; each variance parameter
(on the standard-deviation / correlation scale, then σ) is stepped away from the optimum in
steps of ζ = sign·sqrt(deviance - minimum) of about ``cutoff/8``, re-optimising the others at
each step; each fixed effect is profiled by refitting with its column moved to the offset.
Intervals come from the inverse of an interpolating spline of ζ, as R's ``backSpline``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .anovatable import AnovaTable, anova_single
from .ddf.tables import anova_lmertest
from .errors import ArgumentError, LmeFormulaError, LmeFormulaWarning, RefitMLWarning
from .glmmprofile import glmm_boot_statistic, glmm_responses, profile_glmm
from .mermod import LmerMod
from .modular import mkLmerDevfun
from .pls.threads import blas_threads, engine_threads
from .profiling import (
    Profile,
    bounded_bobyqa,
    fill_profile,
    parameter_names,
    perc_label,
    profile_points,
    sdcor_from_theta,
    term_sizes,
    theta_from_sdcor,
)
from .validate import as_generator, check_count, check_flag, check_number, model_functions

__all__ = [
    "AnovaTable",
    "Profile",
    "anova",
    "bootstrap",
    "confint",
    "parameter_names",
    "profile",
    "sdcor_from_theta",
    "theta_from_sdcor",
]


# ---- anova ---------------------------------------------------------------------------------

def _check_same_observations(items: list[tuple[str, LmerMod]]) -> None:
    """lme4 refuses models fitted to different data objects or subsets (it compares the
    calls' expressions); here the responses are compared, as sets of values, so that models
    of the same observations compare however the data were given (a polars frame converted
    per fit, a column added for the larger model, rows reordered), and models of different
    rows or of a transformed response of the same size do not."""
    name0, m0 = items[0]
    y0 = m0.lformula.y
    for name, mm in items[1:]:
        y = mm.lformula.y
        if (y0 is not None and y is not None and np.shape(y0) == np.shape(y)
                and not np.array_equal(np.sort(np.ravel(y0)), np.sort(np.ravel(y)),
                                       equal_nan=True)):
            raise LmeFormulaError(f"all models must be fit to the same data object: the "
                                  f"responses of {name} and {name0} differ (other rows, or a "
                                  "transformed response)")


def anova(*models: LmerMod, refit: bool = True, type: int | str | None = None,
          ddf: str | None = None, **named: LmerMod) -> AnovaTable:
    """lme4's ``anova``: one model gives the sequential F table of its fixed effects; several
    give likelihood-ratio tests, refitting REML fits by ML first (with lme4's message).

    Models can be named by keyword (``anova(fm0=fm0, fm1=fm1)``); positional ones are named
    ``MODEL1``, ``MODEL2``, ... as R names unnamed arguments.

    With ``type`` (1, 2, 3) or ``ddf`` (``"Satterthwaite"``, ``"Kenward-Roger"``), one model
    gets lmerTest's table instead: F-tests with denominator degrees of freedom and p-values
    (type III and Satterthwaite by default; ``ddf="lme4"`` keeps lme4's table). See
    :func:`lmeformula.ddf.anova_lmertest`.
    """
    check_flag(refit, "refit")
    items = [(f"MODEL{i + 1}", mm) for i, mm in enumerate(models)] + list(named.items())
    if not items:
        raise ArgumentError("anova() needs at least one fitted model")
    for name, mm in items:
        if not isinstance(mm, LmerMod):
            raise ArgumentError(f"{name} is not a fitted model")
    if len(items) == 1 and (type is not None or ddf is not None):
        return anova_lmertest(items[0][1], type=3 if type is None else type,
                              ddf="Satterthwaite" if ddf is None else ddf)
    if len(items) == 1:
        return anova_single(items[0][1])
    nobs = {mm.nobs for _, mm in items}
    if len(nobs) > 1:
        raise LmeFormulaError("models were not all fitted to the same size of dataset")
    _check_same_observations(items)
    if refit and any(mm.is_REML for _, mm in items):
        warnings.warn("refitting model(s) with ML (instead of REML)", RefitMLWarning,
                      stacklevel=2)
        from .lmer import refitML

        items = [(n, refitML(mm) if mm.is_REML else mm) for n, mm in items]
    order = sorted(range(len(items)), key=lambda i: items[i][1].npar())
    items = [items[i] for i in order]
    rows = []
    prev = None
    for _, mm in items:
        ll = mm.logLik()
        dev = -2 * ll.value
        row = {"npar": mm.npar(), "AIC": mm.AIC(), "BIC": mm.BIC(), "logLik": ll.value,
               "deviance": dev, "Chisq": math.nan, "Df": math.nan, "Pr(>Chisq)": math.nan}
        if prev is not None:
            chisq = 2 * max(0.0, ll.value - prev[0])
            df = mm.npar() - prev[1]
            row["Chisq"], row["Df"] = chisq, df
            row["Pr(>Chisq)"] = float(stats.chi2.sf(chisq, df)) if df > 0 else math.nan
        prev = (ll.value, mm.npar())
        rows.append(row)
    table = pd.DataFrame(rows, index=[n for n, _ in items])
    heading = [f"Data: {items[0][1].data_name}", "Models:"]
    heading += [f"{n}: {mm.formula}" for n, mm in items]
    return AnovaTable(table, heading, "lrt")


# ---- profiles ------------------------------------------------------------------------------

def _ml_deviance_fixed_sigma(m: LmerMod) -> Callable[[np.ndarray], float]:
    """lme4's ``devfun2``: the ML deviance as a function of (sd/cor parameters, σ)."""
    devfun = m.devfun
    prob = devfun.problem
    sizes = term_sizes(m)
    n = m.n

    def dev2(pars: np.ndarray) -> float:
        sigma = pars[-1]
        if sigma <= 0:
            return math.inf
        f = devfun.factor(theta_from_sdcor(pars, sizes))
        return f.ldL2 - prob.ldW + f.pwrss / sigma**2 + n * math.log(2 * math.pi * sigma**2)

    return dev2


def profile(m: LmerMod, which: list[str] | None = None, alphamax: float = 0.01,
            delta_cutoff: float = 1 / 8, oldNames: bool = True,
            progress: bool = False) -> Profile:
    """lme4's ``profile.merMod`` (see the module docstring; for a GLMM,
    :func:`lmeformula.glmmprofile.profile_glmm`); ``progress`` shows a progress bar (tqdm, on
    stderr), one step per parameter."""
    if getattr(m, "is_glmm", False):
        with blas_threads(1):  # as glmer's own fit (PIRLS's small factors)
            return profile_glmm(m, which, alphamax, delta_cutoff,  # type: ignore[arg-type]
                                oldNames, progress)
    from .lmer import refitML

    check_number(alphamax, "alphamax", lower=0, upper=1, lower_open=True, upper_open=True)
    check_number(delta_cutoff, "delta_cutoff", lower=0, lower_open=True)
    ml = refitML(m) if m.is_REML else m
    # the profile's hundreds of optimizations factor as the fit does: under the engine's
    # thread policy, not the caller's threads (two threads of a small dpotrf beside other
    # work took 47 ms a factor where one takes ~2)
    with engine_threads(ml.devfun.problem):
        return _profile_lmm(ml, which, alphamax, delta_cutoff, oldNames, progress)


def _profile_lmm(ml: LmerMod, which: list[str] | None, alphamax: float, delta_cutoff: float,
                 oldNames: bool, progress: bool) -> Profile:
    """:func:`profile` of an LMM's ML fit ``ml``."""
    from .progress import progress_bar

    sizes = term_sizes(ml)
    names = parameter_names(ml, oldNames)
    nvp = len(ml.theta) + 1
    opt = np.concatenate([sdcor_from_theta(ml.theta.to_numpy(), sizes, ml.sigma), ml.beta])
    base = ml.deviance()
    cutoff = math.sqrt(stats.chi2.ppf(1 - alphamax, len(opt)))
    delta = cutoff * delta_cutoff
    theta_lower = ml.lformula.reTrms.lower
    lower = np.concatenate([np.maximum(theta_lower, -1.0), [0.0]])
    upper = np.concatenate([np.where(theta_lower == 0, np.inf, 1.0), [np.inf]])
    dev2 = _ml_deviance_fixed_sigma(ml)
    wanted = names if which is None else [which] if isinstance(which, str) else which
    if not any(name in wanted for name in names):  # lme4's get.which warns, and profiles none
        warnings.warn(f"Nothing selected by 'which={which!r}' (the parameters are "
                      f"{', '.join(names)})", LmeFormulaWarning, stacklevel=2)
    points: dict[str, pd.DataFrame] = {}
    bounds_lo: dict[str, float] = {}
    bounds_hi: dict[str, float] = {}
    # closed at the end, or when collected if a step raises (a with-block would re-indent
    # the loops below)
    steps = ExitStack()
    bar = steps.enter_context(progress_bar(
        sum(name in wanted for name in names[: nvp + ml.p]), "profile", progress))
    for w in range(nvp):
        if names[w] not in wanted:
            continue
        others = [i for i in range(nvp) if i != w]
        state = {"start": opt[others]}

        def zeta_at(value: float, w: int = w, others: list[int] = others,
                    state: dict = state) -> float:
            def fn(x: np.ndarray) -> float:
                pars = np.empty(nvp)
                pars[w] = value
                pars[others] = x
                return dev2(pars)

            x, fval = bounded_bobyqa(fn, state["start"], lower[others], upper[others])
            state["start"] = x  # lme4's startmethod = "prev"
            diff = max(0.0, fval - base)
            return math.copysign(math.sqrt(diff), value - opt[w])

        pw = opt[w]
        shift = 1e-3 if pw == 0 else pw * 1.01
        zshift = zeta_at(shift)
        up = fill_profile([(pw, 0.0), (shift, zshift)], lower[w], upper[w], zeta_at, cutoff, delta)
        state["start"] = opt[others]
        down = (fill_profile([(shift, zshift), (pw, 0.0)], lower[w], upper[w], zeta_at, cutoff,
                      delta) if pw > lower[w] else [])
        points[names[w]] = profile_points(up + down)
        bounds_lo[names[w]], bounds_hi[names[w]] = lower[w], upper[w]
        bar.update(1)
    se = np.sqrt(np.diag(ml.vcov().to_numpy()))
    for j in range(ml.p):
        name = names[nvp + j]
        if name not in wanted:
            continue
        zeta_fe = _fixed_effect_zeta(ml, j, base)
        est = ml.beta[j]
        first = est + delta * se[j]
        zfirst = zeta_fe(first)
        up = fill_profile([(est, 0.0), (first, zfirst)], -np.inf, np.inf, zeta_fe, cutoff, delta)
        down = fill_profile([(first, zfirst), (est, 0.0)], -np.inf, np.inf, zeta_fe, cutoff, delta)
        points[name] = profile_points(up + down)
        bounds_lo[name], bounds_hi[name] = -np.inf, np.inf
        bar.update(1)
    steps.close()
    return Profile(points, bounds_lo, bounds_hi)


def _fixed_effect_zeta(ml: LmerMod, j: int, base: float) -> Callable[[float], float]:
    """ζ for fixed effect j: its column moves to the offset and θ is re-optimised (ML)."""
    pf = ml.lformula
    X = pf.X_values
    xj = X[:, j]
    keep = [c for c in range(X.shape[1]) if c != j]
    X_drop, names_drop = X[:, keep], [pf.X_names[c] for c in keep]
    offset0 = np.zeros(ml.n) if pf.offset is None else pf.offset
    start = ml.theta.to_numpy()
    lower = pf.reTrms.lower
    est = ml.beta[j]

    def zeta(value: float) -> float:
        frame = dataclasses.replace(pf.frame, offset=offset0 + xj * value)
        pf2 = dataclasses.replace(pf, X_values=X_drop, X_names=names_drop, REML=False,
                                  frame=frame)
        dev = mkLmerDevfun(pf2, start=start)
        _, fval = bounded_bobyqa(dev, start, lower, np.full(lower.shape, np.inf))
        return math.copysign(math.sqrt(max(0.0, fval - base)), value - est)

    return zeta


# ---- bootstrap -----------------------------------------------------------------------------

def _boot_statistic(m: LmerMod) -> np.ndarray:
    sizes = term_sizes(m)
    return np.concatenate([sdcor_from_theta(m.theta.to_numpy(), sizes, m.sigma), m.beta])


def bootstrap(m: LmerMod, nsim: int = 500, rng: np.random.Generator | int | None = None,
              FUN: Callable[[LmerMod], np.ndarray] | None = None, use_u: bool = False,
              progress: bool = False, n_jobs: int = 1) -> pd.DataFrame:
    """Parametric bootstrap (lme4's ``bootMer``): simulate from the fit, refit, apply FUN.

    The default statistic is lme4's: standard deviations and correlations, σ, fixed effects
    (for a GLMM, lme4's: standard deviations and correlations on θ's scale, σ only for the
    families with a scale, fixed effects).
    All responses are simulated first, in this process, from ``rng``; the refits then run in
    ``n_jobs`` worker processes (one BLAS thread each; -1: one per CPU), so a seed gives the
    same replicates whatever ``n_jobs`` is. With ``n_jobs > 1`` a custom ``FUN`` must be
    picklable (defined at module level). ``progress`` shows a progress bar (tqdm) on stderr.

    Returns
    -------
    DataFrame with one row per replicate (failed refits are NaN rows); ``attrs["t0"]`` holds
    the statistic of the original fit.
    """
    from .parallel import refit_replicates

    gen = as_generator(rng)
    if FUN is not None and not callable(FUN):
        raise ArgumentError(f"FUN must be a function of the fitted model, not {FUN!r}")
    if FUN is not None:
        fun = FUN
    elif getattr(m, "is_glmm", False):
        fun = glmm_boot_statistic  # type: ignore[assignment]
    else:
        fun = _boot_statistic
    nsim = check_count(nsim, "nsim")
    t0 = np.asarray(fun(m), dtype=float)
    sims = m.simulate(nsim, rng=gen, use_u=use_u).to_numpy()
    if getattr(m, "is_glmm", False):
        sims = glmm_responses(m, sims)  # a cbind response's draws as (successes, failures)
    out = refit_replicates(m, sims, fun, t0.shape[0], n_jobs=n_jobs, progress=progress)
    cols = parameter_names(m) if FUN is None else [f"t{i + 1}" for i in range(t0.shape[0])]
    df = pd.DataFrame(out, columns=cols)
    df.attrs["t0"] = pd.Series(t0, index=cols)
    return df


def _norm_inter(t: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """boot's ``norm.inter``: order statistics interpolated on the normal quantile scale."""
    t = np.sort(t[np.isfinite(t)])
    r = t.shape[0]
    out = np.empty(alpha.shape[0])
    for i, a in enumerate(alpha):
        rk = (r + 1) * a
        k = math.trunc(rk)
        if k == rk and 0 < k <= r:
            out[i] = t[k - 1]
        elif k <= 0:
            out[i] = t[0]
        elif k >= r:
            out[i] = t[-1]
        else:
            z = stats.norm.ppf
            frac = (z(a) - z(k / (r + 1))) / (z((k + 1) / (r + 1)) - z(k / (r + 1)))
            out[i] = t[k - 1] + frac * (t[k] - t[k - 1])
    return out


# ---- confint -------------------------------------------------------------------------------

def confint(m: LmerMod, parm: Any = None, level: float = 0.95,
            method: str = "profile", nsim: int = 500, boot_type: str = "perc",
            rng: np.random.Generator | int | None = None, oldNames: bool = True,
            progress: bool = False, n_jobs: int = 1) -> pd.DataFrame:
    """lme4's ``confint.merMod``: profile (default), Wald or parametric-bootstrap intervals,
    rows named as lme4 names them (``.sig01``, ..., ``.sigma``, fixed effects).

    ``parm`` selects rows as lme4's: names (in the table's order), ``"theta_"`` (the
    variance parameters), ``"beta_"`` (the fixed effects), or 1-based positions.

    ``progress`` shows a progress bar for the profile or the bootstrap; ``n_jobs`` runs the
    bootstrap's refits in worker processes (see :func:`bootstrap`)."""
    check_number(level, "level", lower=0, upper=1, lower_open=True, upper_open=True)
    check_flag(oldNames, "oldNames")
    if method == "boot":
        nsim = check_count(nsim, "nsim")
    names = parameter_names(m, oldNames)
    a = (1 - level) / 2
    cols = [perc_label(a), perc_label(1 - a)]
    if method == "Wald":
        z = stats.norm.ppf(1 - a)
        se = np.sqrt(np.diag(m.vcov().to_numpy()))
        nvp = len(names) - len(m.beta)
        lo = np.concatenate([np.full(nvp, np.nan), m.beta - z * se])
        hi = np.concatenate([np.full(nvp, np.nan), m.beta + z * se])
        table = pd.DataFrame({cols[0]: lo, cols[1]: hi}, index=names)
    elif method == "profile":
        # lme4 profiles only the parameters asked for (each profile stands on its own)
        wanted = None if parm is None else \
            list(dict.fromkeys(_which_parameters(parm, names, len(names) - len(m.beta))))
        table = profile(m, which=wanted, oldNames=oldNames, progress=progress).confint(level)
        table = table.loc[[n for n in names if n in table.index]]
    elif method == "boot":
        boots = bootstrap(m, nsim, rng, progress=progress, n_jobs=n_jobs)
        boots.columns = names
        t0 = boots.attrs["t0"].to_numpy()
        rows = {}
        for k, name in enumerate(names):
            t = boots[name].to_numpy()
            if boot_type == "perc":
                rows[name] = _norm_inter(t, np.array([a, 1 - a]))
            elif boot_type == "basic":
                q = _norm_inter(t, np.array([1 - a, a]))
                rows[name] = 2 * t0[k] - q
            elif boot_type == "norm":
                t = t[np.isfinite(t)]
                bias = t.mean() - t0[k]
                sd = t.std(ddof=1)
                z = stats.norm.ppf(1 - a)
                rows[name] = np.array([t0[k] - bias - z * sd, t0[k] - bias + z * sd])
            else:
                raise LmeFormulaError(f"unknown boot_type {boot_type!r}")
        table = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    else:
        raise LmeFormulaError(f"unknown method {method!r}: use 'profile', 'Wald' or 'boot'")
    if parm is not None:
        table = table.loc[_which_parameters(parm, names, len(names) - len(m.beta))]
    return table


def _which_parameters(parm: Any, names: list[str], nvp: int) -> list[str]:
    """lme4's ``get.which``: names select in the table's order (``sort(unique(...))``), with
    ``"theta_"`` the variance parameters and ``"beta_"`` the fixed effects; integers are
    1-based positions, taken in the order given. A name that is none of the parameters is
    an error here (lme4 ignores it)."""
    items: list[Any]
    if isinstance(parm, (str, numbers.Number)) or not isinstance(parm, Iterable):
        items = [parm]
    else:
        items = list(parm)
    if items and all(isinstance(p, (int, np.integer)) and not isinstance(p, bool)
                     for p in items):
        bad = [int(p) for p in items if not 1 <= int(p) <= len(names)]
        if bad:
            raise ArgumentError(f"parm: positions {', '.join(map(str, bad))} are outside "
                                f"1..{len(names)}")
        return [names[int(p) - 1] for p in items]
    if not all(isinstance(p, str) for p in items):
        raise ArgumentError("parm must be parameter names (or 'theta_', 'beta_') or 1-based "
                            "positions")
    unknown = [p for p in items if p not in names and p not in ("theta_", "beta_")]
    if unknown:
        raise ArgumentError(f"parm: {', '.join(map(repr, unknown))} not among the "
                            f"parameters ({', '.join(names)})")
    chosen = set(items)
    if "theta_" in chosen:
        chosen.update(names[:nvp])
    if "beta_" in chosen:
        chosen.update(names[nvp:])
    return [n for n in names if n in chosen]


model_functions(globals(), __all__)  # a clear error for a non-model first argument
