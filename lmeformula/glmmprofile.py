"""Profiles and the bootstrap statistic of a GLMM, as lme4's ``profile.merMod`` and
``confint.merMod`` do them for a ``glmerMod``.

A GLMM has no profiled-out scale, so lme4 profiles every parameter the same way: the
standard deviations and correlations of the random effects (on θ's scale, σ = 1) and the fixed
effects are all arguments of one deviance function, lme4's ``devfun2``, which maps them back to
(θ, β) and calls the fit's second-stage deviance function (Laplace or adaptive quadrature, on
the -2 log-likelihood scale). Each parameter in turn is held at values stepped away from the
optimum (steps of ζ = sign·sqrt(deviance - minimum) of about ``cutoff/8``, lme4's
``nextpar``) while the others are re-optimised from the previous point's values, with the fit's
second-stage optimizer (lme4's Nelder-Mead unless the fit used BOBYQA) and its default
controls, as lme4 reuses ``fitted@optinfo$optimizer``. The intervals then come from the same
inverse-spline code as a linear mixed model's (:class:`lmeformula.profiling.Profile`).

Families with a scale parameter (Gamma, inverse Gaussian) are refused with lme4's message.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from typing import Any

import nlopt
import numpy as np
import pandas as pd
from scipy import stats

from .errors import FittingError, LmeFormulaError, LmeFormulaWarning
from .glmermod import GlmerMod
from .mermod import LmerMod
from .profiling import (
    Profile,
    bounded_bobyqa,
    fill_profile,
    parameter_names,
    profile_points,
    sdcor_from_theta,
    term_sizes,
    theta_from_sdcor,
)
from .progress import progress_bar
from .validate import check_number

__all__ = ["glmm_boot_statistic", "glmm_devfun2", "glmm_responses", "profile_glmm",
           "zeta_at_values"]

# lme4's profile.merMod defaults
_DEVTOL = 1e-9
_BASE_MATCH_TOL = 1e-5


def glmm_boot_statistic(m: GlmerMod) -> np.ndarray:
    """lme4's ``bootFun`` of ``confint.merMod`` for a GLMM: standard deviations and
    correlations on θ's scale (not multiplied by σ), σ when the family has a scale, then β."""
    sd = sdcor_from_theta(np.asarray(m.theta, float), term_sizes(m), 1.0)[:-1]
    scale = [m.sigma] if m.use_scale else []
    return np.concatenate([sd, scale, m.beta])


def glmm_responses(m: LmerMod, sims: np.ndarray) -> np.ndarray:
    """Simulated responses (n x nsim) as ``refit`` takes them: for a binomial ``cbind``
    response, the proportions drawn by ``simulate`` become (successes, failures) of the
    model's totals, n x 2 x nsim (lme4's simulate draws the two columns; its bootMer refits
    to them); other responses unchanged."""
    y = np.asarray(m.lformula.y, dtype=float)
    if y.ndim != 2:
        return sims
    totals = y.sum(axis=1)[:, None]
    successes = sims * totals
    return np.stack([successes, totals - successes], axis=1)


def glmm_devfun2(m: GlmerMod) -> Callable[[np.ndarray], float]:
    """lme4's ``devfun2`` for a GLMM: the fit's deviance as a function of (standard deviations
    and correlations, β).

    It evaluates a copy of the fit's deviance function, so the model's own state is untouched.
    """
    if m.nAGQ == 0:
        raise LmeFormulaError("profiles of a glmer fit need nAGQ >= 1: with nAGQ = 0 the "
                              "deviance is not a function of the fixed effects")
    devfun = copy.deepcopy(m._glmer_devfun)
    sizes = term_sizes(m)
    ntheta = len(m.theta)

    def dev2(pars: np.ndarray) -> float:
        theta = theta_from_sdcor(np.append(pars[:ntheta], 1.0), sizes)
        return float(devfun(np.concatenate([theta, pars[ntheta:]])))

    return dev2


def profile_glmm(m: GlmerMod, which: list[str] | None = None, alphamax: float = 0.01,
                 delta_cutoff: float = 1 / 8, oldNames: bool = True,
                 progress: bool = False) -> Profile:
    """lme4's ``profile.merMod`` for a GLMM (see the module docstring).

    Parameters
    ----------
    m
        A fitted GLMM (binomial or Poisson family; nAGQ >= 1).
    which
        Names of the parameters to profile (all by default).
    alphamax, delta_cutoff
        As lme4's: the profile extends to ζ beyond sqrt(qchisq(1 - alphamax, npar)), in steps
        of ``delta_cutoff`` times that.
    oldNames
        ``.sig01`` names (True) or ``sd_(Intercept)|herd`` names.
    progress
        A progress bar (stderr), one step per parameter.
    """
    check_number(alphamax, "alphamax", lower=0, upper=1, lower_open=True, upper_open=True)
    check_number(delta_cutoff, "delta_cutoff", lower=0, lower_open=True)
    dev2, names, opt, lower, upper, base = _setup(m, oldNames)
    nptot = opt.shape[0]
    cutoff = math.sqrt(stats.chi2.ppf(1 - alphamax, nptot))
    delta = cutoff * delta_cutoff
    wanted = names if which is None else list(which)
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise LmeFormulaError(f"which: {', '.join(map(repr, unknown))} not among the "
                              f"parameters ({', '.join(names)})")
    points: dict[str, pd.DataFrame] = {}
    bounds_lo: dict[str, float] = {}
    bounds_hi: dict[str, float] = {}
    with progress_bar(sum(n in wanted for n in names), "profile", progress) as bar:
        for w in range(nptot):
            if names[w] not in wanted:
                continue
            zeta_at, restart = _zeta_function(dev2, opt, w, lower, upper, base)
            pw = opt[w]
            shift = 1e-3 if pw == 0 else pw * 1.01
            zshift = zeta_at(shift)
            up = fill_profile([(pw, 0.0), (shift, zshift)], lower[w], upper[w], zeta_at, cutoff,
                       delta)
            restart()
            down = (fill_profile([(shift, zshift), (pw, 0.0)], lower[w], upper[w], zeta_at, cutoff,
                          delta) if pw > lower[w] else [])
            points[names[w]] = profile_points(up + down)
            bounds_lo[names[w]], bounds_hi[names[w]] = lower[w], upper[w]
            bar.update(1)
    return Profile(points, bounds_lo, bounds_hi)


def _zeta_function(dev2: Callable[[np.ndarray], float], opt: np.ndarray, w: int,
                   lower: np.ndarray, upper: np.ndarray, base: float
                   ) -> tuple[Callable[[float], float], Callable[[], None]]:
    """ζ(value) of parameter w (the others re-optimised from the previous point, lme4's
    ``startmethod = "prev"``), and a function that restarts from the optimum."""
    others = np.array([i for i in range(opt.shape[0]) if i != w], dtype=np.int64)
    state = {"start": opt[others].copy()}
    pw = opt[w]

    def zeta_at(value: float) -> float:
        def fn(x: np.ndarray) -> float:
            pars = np.empty(opt.shape[0])
            pars[w] = value
            pars[others] = x
            return dev2(pars)

        try:
            x, fval = bounded_bobyqa(fn, state["start"], lower[others], upper[others])
        except (FittingError, ArithmeticError, np.linalg.LinAlgError, nlopt.RoundoffLimited):
            fval = math.nan
        if not math.isfinite(fval):
            warnings.warn("NAs detected in profiling", LmeFormulaWarning, stacklevel=3)
            return math.nan
        state["start"] = x
        devdiff = fval - base
        if devdiff < -_DEVTOL:
            raise LmeFormulaError("profiling detected new, lower deviance")
        if devdiff < 0:
            warnings.warn(f"slightly lower deviances (diff={devdiff:g}) detected",
                          LmeFormulaWarning, stacklevel=3)
        return math.copysign(math.sqrt(max(0.0, devdiff)), value - pw)

    def restart() -> None:
        state["start"] = opt[others].copy()

    return zeta_at, restart


def zeta_at_values(m: GlmerMod, name: str, values: Any) -> np.ndarray:
    """ζ of one parameter (an ``oldNames`` name) at given values, the other parameters
    re-optimised from the optimum for each: a check of the profile against another
    implementation's points, independent of where the profile put its own."""
    dev2, names, opt, lower, upper, base = _setup(m, True)
    if name not in names:
        raise LmeFormulaError(f"{name!r} is not among the parameters ({', '.join(names)})")
    zeta_at, restart = _zeta_function(dev2, opt, names.index(name), lower, upper, base)
    out = []
    for v in np.asarray(values, float):
        restart()
        out.append(zeta_at(float(v)))
    return np.array(out)


def _setup(m: GlmerMod, oldNames: bool) -> tuple[Callable[[np.ndarray], float], list[str],
                                                 np.ndarray, np.ndarray, np.ndarray, float]:
    """devfun2, the names, the optimum, the bounds (sd >= 0, -1 <= cor <= 1, β free) and the
    base deviance (-2 logLik), after lme4's check that devfun2 reproduces the fit."""
    if m.use_scale:
        raise LmeFormulaError("can't (yet) profile GLMMs with non-fixed scale parameters")
    dev2 = glmm_devfun2(m)
    names = parameter_names(m, oldNames)
    opt = np.concatenate([sdcor_from_theta(np.asarray(m.theta, float), term_sizes(m),
                                           1.0)[:-1], m.beta])
    base = -2.0 * m.logLik().value
    if not abs(dev2(opt) - base) <= _BASE_MATCH_TOL * abs(base):
        raise LmeFormulaError("Profiling over both the residual variance and\nfixed effects "
                              "is not numerically consistent with\nprofiling over the fixed "
                              "effects only")
    theta_lower = m.lformula.reTrms.lower
    lower = np.concatenate([np.maximum(theta_lower, -1.0), np.full(m.p, -np.inf)])
    upper = np.concatenate([np.where(theta_lower == 0, np.inf, 1.0), np.full(m.p, np.inf)])
    return dev2, names, opt, lower, upper, base
