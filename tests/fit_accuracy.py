"""How precisely an lmer fit determines its estimates, for the tests that compare fits with
lme4's: the optimizer's stopping rule and the flatness of the criterion at the optimum.

lme4's optimizer (nloptwrap's BOBYQA: ``ftol_abs = 1e-8``, ``xtol_rel = 1e-4``) stops when its
steps fall below 1e-4·|θ| (most fits) or improve the criterion by less than 1e-8. Where our
fit takes lme4's path it stops where lme4 did, to rounding; but a last-bit difference in
the criterion (another BLAS kernel's summation order, say) can change one of BOBYQA's
decisions, and the fit then stops elsewhere in the region the stopping rules cannot tell
from the minimum. That region is what the fit determines, and these helpers measure it
from the numbers (the criterion's Hessian H in θ at lme4's θ):

* :func:`excess_bound` bounds how far above the minimum either fit may stop: what a step
  of ``2·xtol_rel·max(|θ|, 1e-3)`` costs along H's steepest direction (test_lmer_lme4's
  bound), plus 1e-7 for the ``ftol_abs`` stops, whose rule bounds the last step's
  improvement, not the distance to the minimum (a flat valley is followed in several steps
  each under 1e-8; the largest excess seen there is 5.1e-8, the sweep's 6-θ
  ``lm_three_slopes`` under OpenBLAS's Sandybridge kernels). The largest seen on the
  xtol side: carrots (lmerTest) under the Nehalem kernels, 1.3e-6 above lme4's, bound
  7.1e-5.
* Two points each within E of the minimum lie within ``2·sqrt(2·E)`` of each other in the
  norm ``sqrt(dᵀ H d)`` (:func:`assert_same_optimum`).
* A value g computed from θ is determined to the largest change of g, to first order, over
  that region: ``|∇g·d| <= sqrt(∇gᵀ H⁻¹ ∇g) · sqrt(dᵀ H d)`` (Cauchy-Schwarz), so
  ``2·sqrt(2·E · ∇gᵀ H⁻¹ ∇g)`` (:func:`accuracy`), ∇g by central differences through
  :func:`at_point`.

A flat surface (the sweep's ``lm_dummy_default`` above all: H's smallest eigenvalue 1.6,
where most of the sweep's fits have 20-50) is what makes a fit's estimates loose, and the
tolerances follow from its Hessian rather than from a list of fixtures. Everything else
the tests compare is computed at lme4's θ (:func:`at_point`, which also moves a GLMM to
lme4's (θ, β)), where it agrees with R's to rounding whatever path the optimizer took.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

import lmeformula as lmf
from lmeformula.glmermod import GlmerMod
from lmeformula.optimize import Lme4Conv, check_conv, deriv12

# lme4's nloptwrap: nloptr's default xtol_rel, which lme4 keeps
XTOL_REL = 1e-4
# the excess over the minimum an ftol_abs (1e-8) stop may leave (see above)
FTOL_EXCESS = 1e-7


class Optimum(NamedTuple):
    """lme4's optimum as our criterion sees it: its Hessian in θ and the excess over the
    minimum either fit may stop at (:func:`excess_bound`)."""

    hessian: np.ndarray
    excess: float


def at_point(m: lmf.LmerMod, theta: Any, beta: Any = None, *,
             derivs: bool = True) -> lmf.LmerMod:
    """The fit ``m`` as it would be had its optimizer stopped at θ (and β, for a GLMM whose
    last stage optimised β with θ: nAGQ > 0). Its structures, call, controls and optimizer
    record (code, message, evaluation count) are the fit's; everything computed from the
    point is evaluated there: the criterion, the estimates, and where the fit computed them
    the derivatives (lme4's ``deriv12``), with lme4's convergence checks run as the fitting
    function runs them (lmer always, glmer when ``calc_derivs`` is on: at nAGQ = 0, with no
    derivatives, the singular-fit check alone), their warnings
    silenced (the fit's own are tested on the fit). At the fit's own point this is the fit;
    at lme4's, what lme4 reported there, up to the methods' numerics, whatever path either
    optimizer took: the tests compare everything computed from the point there, at tight
    tolerances, and the fit itself at the optimizer's precision.

    ``m`` is not disturbed: the point is evaluated on a deviance function of its own, the
    same function of the parameters as the fit's:

    * an LMM's criterion is a function of θ alone: a new deviance function from the fit's
      structures (``mkLmerDevfun``), and the model built as lmer builds it (``mkMerMod``);
    * a GLMM's second stage starts PIRLS at every evaluation from the linear predictor where
      the first stage ended (lme4's ``lp0``) and stops it at ``tolPwrss`` (1e-7, relative),
      so a deviance function whose first stage ended elsewhere is a slightly different
      function: 7e-5 apart at the sweep's bin_factor_slope optimum from one whose first
      stage was skipped; a fit with no optimizer started at lme4's (θ, β) ends that stage
      at lme4's final θ, not at the stage's optimum. The fit's own is copied (its first
      stage ends where lme4's does, to that stage's tolerance), left in its state at the
      point as glmer leaves it at the optimum, and the model built as glmer builds it
      (``GlmerMod`` with the fit's control and nAGQ); its vcov comes from the
      derivatives' Hessian.

    ``derivs=False`` leaves the derivatives out (the checks that need them too, and a GLMM's
    Hessian-based vcov): for values that need none of them, the k² evaluations of the
    finite differences are saved (:func:`accuracy`'s points)."""
    theta = np.asarray(theta, dtype=float).reshape(-1)
    par = theta if beta is None else np.r_[theta, np.asarray(beta, dtype=float).reshape(-1)]
    # θ, and β exactly where the fit's last stage optimised it (a GLMM with nAGQ > 0)
    assert par.shape == np.shape(m.optinfo.par), (par.shape, np.shape(m.optinfo.par))
    if isinstance(m, GlmerMod):
        devfun: Any = copy.deepcopy(m.devfun)
        checks = m.glmer_control.checks
    else:
        devfun = lmf.mkLmerDevfun(m.lformula, start=theta)
        checks = m.call.control
    fval = float(devfun(par))
    d = deriv12(devfun, par, fx=fval) if derivs and m.optinfo.derivs is not None else None
    opt = dataclasses.replace(m.optinfo, par=par, fval=fval, derivs=d)
    # glmer runs the checks when calc_derivs is on, with or without derivatives (nAGQ = 0
    # has none: the singular-fit check alone), as lme4's glmer runs checkConv
    run_checks = True
    if isinstance(m, GlmerMod):
        calc = m.glmer_control.calc_derivs
        run_checks = bool(calc if calc is not None
                          else m.nobs < 10_000 and par.shape[0] < 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.lme4 = check_conv(d, par, devfun.lower, checks) if run_checks else Lme4Conv()
    if not isinstance(m, GlmerMod):
        return lmf.mkMerMod(devfun, opt, m.lformula, m.data_name, m.call_args)
    devfun(par)  # (deriv12 left it at its last step)
    moved = dataclasses.replace(m, devfun=devfun, optinfo=opt)
    moved.glmer_control, moved.nAGQ = m.glmer_control, m.nAGQ
    return moved


def criterion_hessian(m: lmf.LmerMod, theta: Any) -> np.ndarray:
    """The Hessian in θ of ``m``'s criterion (REML or deviance, as fitted) at θ: lme4's
    central differences (step 1e-4)."""
    theta = np.asarray(theta, dtype=float).reshape(-1)
    devfun = lmf.mkLmerDevfun(m.lformula, start=theta)
    return np.asarray(deriv12(devfun, theta).Hessian)


def excess_bound(hessian: np.ndarray, theta_ref: Any) -> float:
    """How far above the minimum a fit may stop (see the module's docstring)."""
    theta_ref = np.asarray(theta_ref, dtype=float).reshape(-1)
    step = 2 * XTOL_REL * np.maximum(np.abs(theta_ref), 1e-3)
    steepest = max(float(np.linalg.eigvalsh(hessian).max()), 0.0)
    return FTOL_EXCESS + 0.5 * steepest * float(step @ step)


def assert_same_optimum(m: lmf.LmerMod, theta_ref: Any, crit_ref: float | None) -> Optimum:
    """Assert that ``m`` stops at lme4's optimum to the optimizer's precision: the criteria
    within :func:`excess_bound` E of each other (lme4's ``crit_ref``, or where a fixture has
    none, ours at lme4's θ), and θ within ``2·sqrt(2·E)`` of lme4's in the norm of the
    criterion's Hessian there."""
    theta_ref = np.asarray(theta_ref, dtype=float).reshape(-1)
    theta = np.asarray(m.theta, dtype=float)
    devfun = lmf.mkLmerDevfun(m.lformula, start=theta)
    crit = float(devfun(theta))
    if crit_ref is None:
        crit_ref = float(devfun(theta_ref))
    h = criterion_hessian(m, theta_ref)
    excess = excess_bound(h, theta_ref)
    assert abs(crit - crit_ref) <= excess, (crit, crit_ref, excess)
    d = theta - theta_ref
    assert float(d @ h @ d) <= 8 * excess, (d, float(d @ h @ d), 8 * excess)
    return Optimum(h, excess)


def accuracy(m: lmf.LmerMod, theta_ref: Any, optimum: Optimum,
             value: Callable[[lmf.LmerMod], Any], step: float = 1e-5) -> np.ndarray:
    """How far ``value`` (an array computed from a model) can move, to first order, between
    two points that :func:`assert_same_optimum` accepts: ``2·sqrt(2·E · ∇gᵀ H⁻¹ ∇g)``
    elementwise, ∇g by central differences of step ``step`` around lme4's θ. Components of θ
    on the boundary (0 with bound 0) are left out: both fits are there, exactly."""
    theta_ref = np.asarray(theta_ref, dtype=float).reshape(-1)
    lower = np.asarray(m.devfun.lower, dtype=float)
    free = np.flatnonzero(~((lower == 0) & (theta_ref == 0)))

    def at(theta: np.ndarray) -> np.ndarray:  # (the values need no derivatives)
        return np.asarray(value(at_point(m, theta, derivs=False)), dtype=float).ravel()

    if free.size == 0:
        return np.zeros_like(at(theta_ref))
    columns = []
    for i in free:
        e = np.zeros_like(theta_ref)
        e[i] = step
        columns.append((at(theta_ref + e) - at(theta_ref - e)) / (2 * step))
    jac = np.column_stack(columns)
    hinv = np.linalg.inv(optimum.hessian[np.ix_(free, free)])
    spread = np.einsum("ij,jk,ik->i", jac, hinv, jac)
    return 2 * np.sqrt(2 * optimum.excess * np.maximum(spread, 0.0))


def assert_same_lmm_fit(m: lmf.LmerMod, theta_ref: Any, crit_ref: float | None, beta_ref: Any,
                        sigma_ref: float) -> Optimum:
    """Assert that an LMM ``m`` stops at lme4's optimum (:func:`assert_same_optimum`) and that
    its β and σ are lme4's to what that optimum's precision allows (first order in θ,
    :func:`accuracy`; β also to 1e-7 absolute and both to 1e-6 relative); the optimum."""
    optimum = assert_same_optimum(m, theta_ref, crit_ref)
    acc = accuracy(m, theta_ref, optimum, lambda mm: np.r_[mm.fixef.to_numpy(), mm.sigma])
    assert_within(m.fixef, beta_ref, rtol=1e-6, atol=1e-7 + acc[:-1])
    assert_within(m.sigma, sigma_ref, rtol=1e-6, atol=acc[-1])
    return optimum


def assert_within(ours: Any, theirs: Any, rtol: float, atol: Any) -> None:
    """``|ours - theirs| <= atol + rtol·|theirs|`` elementwise, ``atol`` an array (an
    :func:`accuracy`) or a number."""
    a = np.asarray(ours, dtype=float).ravel()
    b = np.asarray(theirs, dtype=float).ravel()
    bound = np.broadcast_to(np.asarray(atol, dtype=float).ravel(), b.shape) + rtol * np.abs(b)
    bad = np.abs(a - b) > bound
    assert not bad.any(), (a[bad], b[bad], bound[bad])


def _decimal_unit(token: str) -> float | None:
    """One unit in the last printed digit of a plain decimal token, or None."""
    try:
        float(token)
    except ValueError:
        return None
    if "e" in token.lower() or not any(c.isdigit() for c in token):
        return None
    decimals = len(token.split(".")[1]) if "." in token else 0
    return 10.0 ** -decimals


def assert_text_up_to_ties(ours: str, theirs: str, values: Any) -> None:
    """R's text to the letter, but where a value lies on a rounding boundary of its printed
    precision (within 1e-9 relative): computed at lme4's θ, our values agree with R's to
    rounding, so they print differently only there, an exact decimal tie (a balanced
    design's β = 2.4617125, R's 2.46171250000002) that the last bits decide. Such a token
    must be one unit in its last digit from R's, with one of ``values`` (R's unrounded
    numbers behind the text) on the boundary between the two."""
    if ours == theirs:
        return
    candidates = np.asarray(values, dtype=float).ravel()
    candidates = candidates[np.isfinite(candidates)]
    for la, lb, x, y in differing_tokens(ours.splitlines(), theirs.splitlines()):
        unit = _decimal_unit(y)
        assert unit is not None and _decimal_unit(x) == unit, (la, lb)
        assert abs(abs(float(x) - float(y)) - unit) <= 1e-6 * unit, (la, lb)
        tie = (float(x) + float(y)) / 2
        assert np.any(np.abs(candidates - tie) <= 1e-9 * max(abs(tie), unit)), \
            (la, lb, "no value on the boundary", tie)


def differing_tokens(ours: list[str], theirs: list[str]) -> Iterator[tuple[str, str, str, str]]:
    """The words that differ between two texts of the same layout: asserts the same number of
    lines, and for each differing line the same width and number of words; yields (our line,
    R's line, our word, R's word) for each word that differs."""
    assert len(ours) == len(theirs), (ours, theirs)
    for la, lb in zip(ours, theirs, strict=True):
        if la == lb:
            continue
        assert len(la) == len(lb), (la, lb)
        ta, tb = la.split(), lb.split()
        assert len(ta) == len(tb), (la, lb)
        for x, y in zip(ta, tb, strict=True):
            if x != y:
                yield la, lb, x, y


# Relative noise standing for round-off in the criterion: at the same θ our criterion under
# different OpenBLAS kernels differs by up to 3e-13 relative (penicillin; verbagg 2e-15),
# and from R's by as much, so 1e-12
ROUNDOFF = 1e-12


def counts_under_roundoff(devfun: Any, control: Any, seeds: int = 8) -> set[int]:
    """The optimizer's evaluation counts from ``devfun``'s start when each criterion value
    carries relative noise of :data:`ROUNDOFF` (a fixed function of θ for each seed, as
    round-off is). A count that is the same for every seed is a property of the optimizer's
    settings and the criterion; one that varies is decided by round-off, and so is the
    path: another BLAS kernel's last bits give another."""
    import hashlib

    from lmeformula.control import as_control
    from lmeformula.optimize import optimize_lmer

    ctrl = as_control(control)
    counts = set()
    for seed in range(seeds):
        def noisy(theta: np.ndarray, seed: int = seed) -> float:
            digest = hashlib.blake2b(np.asarray(theta, dtype=float).tobytes() + bytes([seed]),
                                     digest_size=8).digest()
            u = int.from_bytes(digest, "little") / 2.0**64
            return float(devfun(theta)) * (1 + ROUNDOFF * (2 * u - 1))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            counts.add(optimize_lmer(noisy, devfun.start, devfun.lower, ctrl).feval)
    return counts
