"""Satterthwaite's degrees of freedom as lmerTest 3.x computes them.

lmerTest (``as_lmerModLT``) describes a fit by its variance parameters ``varpar = (θ, σ)``:

* their asymptotic covariance, ``2 H⁻¹``, where H is the Hessian of the (REML or ML) deviance
  ``f(θ, σ) = ldL2 + pwrss/σ² + n' log(2πσ²)`` (+ ``ldRX2`` for REML, with n' = n - p; n' = n
  for ML), inverted through its eigen-decomposition keeping eigenvalues above 1e-8;
* the derivatives ``J_k = ∂ vcov(β) / ∂ varpar_k`` of ``vcov(β) = σ² RX⁻¹RX⁻ᵀ``.

A contrast ``l`` then has variance ``v = l'Vl`` and Satterthwaite's ``ν = 2v² / (g'Ag)`` with
``g_k = l'J_k l`` and A = 2H⁻¹ (:func:`contest1D`).

lmerTest differentiates numerically (numDeriv's Richardson extrapolation, some 80 deviance
evaluations for four parameters). Here most of it is analytic, and only the profiled criterion's
Hessian in θ is a finite difference:

* σ enters f in closed form. At σ² = pwrss/n' (σ̂, which is what the fit reports) the Hessian of
  f in θ is that of the profiled criterion d(θ) = min_σ f plus ``n' g g'/pwrss²``, where
  ``g = ∂pwrss/∂θ = -2 r'WZ (∂Λ/∂θ) u`` (the envelope theorem: β and u are optimal); the mixed
  and σσ entries are ``-2g/σ³`` and ``4n'/σ²``.
* ``∂(X'Σ⁻¹X)/∂θ_k = -N'D_kN`` with ``Σ = W⁻¹ + ZΛΛ'Z'``, ``N = Z'Σ⁻¹X`` and
  ``D_k = ∂(ΛΛ')/∂θ_k``; since ``Λ'N = L⁻ᵀRZX`` =: S, ``N'D_kN = (Λ_k'N)'S + S'(Λ_k'N)``, and
  ``N = Z'W(X - ZΛS)``: a few sparse products and one triangular solve.
* The Hessian of d(θ) is a finite difference: of the engine's analytic gradient for small
  models (Richardson-extrapolated), of the deviance function for large ones (2 evaluations
  per parameter and 2 per pair of parameters, one batch); see :func:`profiled_hessian`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve_triangular

from ..errors import LmeFormulaWarning
from ..mermod import LmerMod, getME

__all__ = ["HessianWarning", "VarparInfo", "varpar_info"]


class HessianWarning(LmeFormulaWarning):
    """lmerTest's warnings when the Hessian of the deviance in (θ, σ) is not positive
    definite ("Model failed to converge with 1 negative eigenvalue: ...")."""


@dataclass(frozen=True)
class VarparInfo:
    """What lmerTest's ``lmerModLmerTest`` object adds to a fit.

    Attributes
    ----------
    beta
        Fixed effects.
    vcov_beta
        ``vcov(β)``, p x p.
    vcov_varpar
        Asymptotic covariance of (θ, σ): twice the pseudo-inverse of the deviance's Hessian.
    jacobian
        ``∂ vcov(β) / ∂ varpar_k``, an array (k + 1, p, p) (θ's, then σ).
    hessian
        The Hessian of the deviance in (θ, σ).
    """

    beta: np.ndarray
    vcov_beta: np.ndarray
    vcov_varpar: np.ndarray
    jacobian: np.ndarray
    hessian: np.ndarray


def varpar_info(m: LmerMod, tol: float = 1e-8) -> VarparInfo:
    """lmerTest's ``as_lmerModLmerTest``: vcov(β), the covariance of the variance parameters
    and the Jacobian of vcov(β). Computed once per model and kept."""
    cache = m.__dict__.setdefault("_lmertest_cache", {})
    if "varpar" not in cache:
        cache["varpar"] = _compute(m, tol)
    return cache["varpar"]


def _compute(m: LmerMod, tol: float) -> VarparInfo:
    theta = np.asarray(m.theta, dtype=float)
    k = theta.shape[0]
    sigma = m.sigma
    p = m.p
    n_eff = m.n - p if m.is_REML else m.n
    pwrss = m.pwrss
    vcov_beta = np.asarray(m.vcov().to_numpy(), dtype=float) if p else np.zeros((0, 0))

    # ---- the pieces of the analytic derivatives ----------------------------------------
    lambdat = getME(m, "Lambdat").tocsc()
    lind = np.asarray(getME(m, "Lind"))
    Z = getME(m, "Z").tocsr()
    w = np.asarray(m.weights, dtype=float)
    # ∂Λ'/∂θ_k: Λ' with ones where θ_k sits, zeros elsewhere
    dlambdat = []
    for j in range(k):
        d = lambdat.copy()
        d.data = (lind == j).astype(float)
        d.eliminate_zeros()
        dlambdat.append(d)
    u = m.u
    resid = getME(m, "y") - getME(m, "mu")
    wzr = Z.T @ (w * resid)  # Z'Wr
    # g_k = ∂pwrss/∂θ_k = -2 r'WZ Λ_k u = -2 (Z'Wr)'(Λ_k'ᵀ u)
    g = np.array([-2.0 * float(wzr @ (dlambdat[j].T @ u)) for j in range(k)])

    # ---- Hessian of f(θ, σ) --------------------------------------------------------------
    h_profiled = profiled_hessian(m)
    hess = np.empty((k + 1, k + 1))
    hess[:k, :k] = h_profiled + n_eff * np.outer(g, g) / pwrss**2
    hess[:k, k] = hess[k, :k] = -2.0 * g / sigma**3
    hess[k, k] = 4.0 * n_eff / sigma**2
    vcov_varpar = _vcov_varpar(hess, tol)

    # ---- Jacobian of vcov(β) ---------------------------------------------------------------
    jac = np.zeros((k + 1, p, p))
    if p:
        rzx = np.asarray(m.RZX(), dtype=float)
        L = getME(m, "L").tocsr()
        # S = L⁻ᵀ RZX = Λ'Z'Σ⁻¹X
        S = _solve_upper(L.T.tocsr(), rzx)
        X = m.lformula.X_values
        T = X - Z @ (lambdat.T @ S)
        N = Z.T @ (w[:, None] * T)  # Z'Σ⁻¹X
        v0 = vcov_beta / sigma**2
        for j in range(k):
            a = (dlambdat[j] @ N).T @ S  # (Λ_j'N)'S
            jac[j] = sigma**2 * (v0 @ (a + a.T) @ v0)
        jac[k] = 2.0 * vcov_beta / sigma
    return VarparInfo(np.asarray(m.beta), vcov_beta, vcov_varpar, jac, hess)


def _solve_upper(U: sp.csr_matrix, B: np.ndarray) -> np.ndarray:
    if U.shape[0] == 0:
        return np.zeros_like(B)
    return np.asarray(spsolve_triangular(U, B, lower=False), dtype=float).reshape(B.shape)


def _vcov_varpar(hess: np.ndarray, tol: float) -> np.ndarray:
    """2 x the pseudo-inverse of the Hessian on its eigenvalues above ``tol``, with lmerTest's
    warnings for negative and near-zero eigenvalues."""
    values, vectors = np.linalg.eigh(hess)
    order = np.argsort(values)[::-1]  # R's eigen(): decreasing
    values, vectors = values[order], vectors[:, order]
    neg = values < -tol
    zero = (values > -tol) & (values < tol)
    if neg.any():
        word = "eigenvalues" if neg.sum() > 1 else "eigenvalue"
        vals = " ".join(_r_sprintf_e(v) for v in values[neg])
        warnings.warn(f"Model failed to converge with {int(neg.sum())} negative {word}: {vals}",
                      HessianWarning, stacklevel=4)
    if zero.any():
        word = "eigenvalues" if zero.sum() > 1 else "eigenvalue"
        vals = " ".join(_r_sprintf_e(v) for v in values[zero])
        warnings.warn(f"Model may not have converged with {int(zero.sum())} {word} close to "
                      f"zero: {vals}", HessianWarning, stacklevel=4)
    pos = values > tol
    vp = vectors[:, pos]
    return 2.0 * (vp / values[pos]) @ vp.T


def _r_sprintf_e(x: float) -> str:
    """R's ``sprintf("%1.1e", x)``."""
    return f"{x:1.1e}"


# ---- the profiled criterion's Hessian -----------------------------------------------------

# lme4's own rule for computing derivatives after a fit (calc.derivs): below these sizes the
# Hessian is taken from the analytic gradient, Richardson-extrapolated (about 1e-9 relative:
# lmerTest's printed digits); above them from 2k + k(k - 1) deviance evaluations (about 1e-6
# relative, well inside the tolerances, at the cost of a fifth of a large fit)
_SMALL_N = 10_000
_SMALL_K = 10


def _step(theta: np.ndarray, rel: float) -> np.ndarray:
    # relative to θ, absolute near 0 (where the criterion is even in a scalar term's θ)
    return rel * np.maximum(np.abs(theta), 0.1)


def profiled_hessian(m: LmerMod) -> np.ndarray:
    """The Hessian in θ of the fit's criterion (REML criterion or ML deviance, profiled over
    β and σ) at the estimates.

    Small models (n < 10⁴, fewer than 10 θ) whose engine has the analytic gradient: central
    differences of the gradient at steps h and h/2 (h = 10⁻³ |θ|), Richardson-extrapolated.
    Otherwise central differences of the criterion itself at θ ± h_i e_i and
    θ ± (h_i e_i + h_j e_j), one batch of 2k + k(k - 1) + 1 evaluations.

    Points below a lower bound of 0 are as good as any: the criterion is even in the θ of a
    scalar term (lme4's devfun and numDeriv evaluate there too).
    """
    theta = np.asarray(m.theta, dtype=float)
    k = theta.shape[0]
    if k == 0:
        return np.zeros((0, 0))
    devfun: Any = m.devfun
    if getattr(devfun, "has_gradient", False) and m.n < _SMALL_N and k < _SMALL_K:
        return _gradient_differences(devfun, theta)
    return _deviance_differences(devfun, theta)


def _gradient_differences(devfun: Any, theta: np.ndarray) -> np.ndarray:
    estimates = []
    for rel in (1e-3, 5e-4):
        h = _step(theta, rel)
        cols = [(devfun.gradient(theta + h[i] * e) - devfun.gradient(theta - h[i] * e))
                / (2 * h[i]) for i, e in enumerate(np.eye(theta.shape[0]))]
        hess = np.column_stack(cols)
        estimates.append((hess + hess.T) / 2)
    # the error is c h² + O(h⁴) in both
    return (4 * estimates[1] - estimates[0]) / 3


def _deviance_differences(devfun: Any, theta: np.ndarray) -> np.ndarray:
    k = theta.shape[0]
    h = _step(theta, 1e-3)
    steps = np.diag(h)
    pairs = [(i, j) for i in range(k) for j in range(i)]
    points = [theta + sign * steps[i] for i in range(k) for sign in (1, -1)]
    points += [theta + sign * (steps[i] + steps[j]) for i, j in pairs for sign in (1, -1)]
    values = _evaluate(devfun, np.array([*points, theta]))
    f0 = values[-1]
    hess = np.empty((k, k))
    for i in range(k):
        hess[i, i] = (values[2 * i] - 2 * f0 + values[2 * i + 1]) / h[i] ** 2
    for n_pair, (i, j) in enumerate(pairs):
        fpp, fmm = values[2 * k + 2 * n_pair], values[2 * k + 2 * n_pair + 1]
        # f(x + a + b) + f(x - a - b) - 2f(x) = (a + b)'H(a + b) + O(h⁴)
        both = (fpp - 2 * f0 + fmm) / (h[i] * h[j])
        hess[i, j] = hess[j, i] = (both - hess[i, i] * h[i] / h[j]
                                   - hess[j, j] * h[j] / h[i]) / 2
    return hess


def _evaluate(devfun: Any, points: np.ndarray) -> np.ndarray:
    batch = getattr(devfun, "batch", None)
    if batch is not None:
        # keep the deviance function's evaluation count as it was: these are not the fit's
        count = getattr(devfun, "evaluations", None)
        values = np.asarray(batch(points), dtype=float)
        if count is not None:
            devfun.evaluations = count
        return values
    return np.array([float(devfun(p)) for p in points])


def satterthwaite_df(var_con: float, grad: np.ndarray, vcov_varpar: np.ndarray) -> float:
    """ν = 2 v² / (g'Ag)."""
    denom = float(grad @ vcov_varpar @ grad)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(2.0 * var_con**2 / denom) if denom != 0 else math.inf
