"""Kenward and Roger's adjusted covariance and degrees of freedom, as pbkrtest 0.5 computes them.

pbkrtest (``vcovAdj``) writes the marginal covariance of y as ``Σ = Σ_i γ_i G_i + σ² I``, with
one γ per variance or covariance of each random-effects term (``VarCorr``'s lower triangle)
and ``G_i = Z_t (I_levels ⊗ E_i) Z_t'``, and forms n x n matrices from it. Here the same
quantities are computed in the q-dimensional space of the random effects: with
``C = Λ'Z'ZΛ + I``, ``Σ⁻¹ = σ⁻²(I - ZΛC⁻¹Λ'Z')`` (Woodbury), so every product pbkrtest needs
(``X'Σ⁻¹G_iΣ⁻¹X``, ``tr(G_iΣ⁻¹G_jΣ⁻¹)``, ``X'Σ⁻³X``, ``tr Σ⁻²``...) is a product of the
(q + p)-square matrices ``U'Σ⁻¹U`` and ``U'Σ⁻²U`` with ``U = [Z X]``.

As in pbkrtest, Σ has no case weights (its residual part is σ²I) while Φ = vcov(β) is the
fit's; an ML fit is refitted by REML first.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg, stats

from ..errors import LmeFormulaError
from ..mermod import KR_ML_MESSAGE, LmerMod, getME
from ..pls.threads import blas_threads

__all__ = ["KRAdjusted", "kr_ftest", "lb_ddf", "vcov_adjusted"]

_MAX_Q = 12_000  # dense q x q matrices of about 1 GB


@dataclass(frozen=True)
class KRAdjusted:
    """pbkrtest's ``vcovAdj`` with its attributes.

    Attributes
    ----------
    vcov
        Φ_A, the adjusted covariance of β.
    phi
        Φ = vcov(β) of the (REML) fit.
    P
        ``P_i = -X'Σ⁻¹G_iΣ⁻¹X``, one per variance parameter (σ² last).
    W
        Twice the inverse (or pseudo-inverse) of the expected information of the variance
        parameters.
    beta
        The REML fit's fixed effects.
    """

    vcov: np.ndarray
    phi: np.ndarray
    P: list[np.ndarray]
    W: np.ndarray
    beta: np.ndarray


def refit_reml(m: LmerMod) -> LmerMod:
    """The model refitted by REML (pbkrtest's ``update(object, . ~ ., REML = TRUE)``)."""
    if m.is_REML:
        return m
    from ..lmer import mkMerMod, optimizeLmer
    from ..modular import mkLmerDevfun

    pf = dataclasses.replace(m.lformula, REML=True)
    devfun = mkLmerDevfun(pf)
    opt = optimizeLmer(devfun, pf.control)
    return mkMerMod(devfun, opt, pf, m.data_name, m.call_args)


def vcov_adjusted(m: LmerMod) -> KRAdjusted:
    """pbkrtest's ``vcovAdj(m)`` (an ML fit is refitted by REML, quietly, as pbkrtest does).
    Computed once per model and kept."""
    cache = m.__dict__.setdefault("_lmertest_cache", {})
    if "kr" not in cache:
        order = int(m.lformula.reTrms.q) + int(m.p)  # its dense matrices' order
        with blas_threads(None, order=order):  # threaded syrk/dpotrf crash at large orders
            cache["kr"] = _vcov_adjusted(refit_reml(m))
    return cache["kr"]


def _param_blocks(m: LmerMod) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """For each variance parameter of the random effects (per term, lower triangle column by
    column), its E_i as pairs (a, b) of index sets of Z's columns: E_i = Σ e_a e_b'."""
    out = []
    gp = np.asarray(getME(m, "Gp"))
    for t, start in zip(m.lformula.reTrms.terms, gp[:-1], strict=True):
        nl, nc = t.nl, t.nc
        cols = [int(start) + np.arange(nl) * nc + c for c in range(nc)]
        for c in range(nc):
            for r in range(c, nc):
                out.append([(cols[r], cols[r])] if r == c else
                           [(cols[r], cols[c]), (cols[c], cols[r])])
    return out


def _vcov_adjusted(m: LmerMod) -> KRAdjusted:
    X = np.asarray(m.lformula.X_values, dtype=float)
    n, p = X.shape
    Z = getME(m, "Z").tocsc()
    q = Z.shape[1]
    if q > _MAX_Q:
        # several dense (q + p)-square matrices: refuse before allocating them
        raise LmeFormulaError(
            f"Kenward-Roger's adjustment needs dense matrices of the random effects' size; "
            f"q = {q} random effects ({8 * (q + p) ** 2 / 1e9:.1f} GB each) is more than it "
            f"handles ({_MAX_Q}): use ddf='Satterthwaite'")
    lam = getME(m, "Lambdat").T.tocsc()
    s2 = m.sigma**2
    phi = np.asarray(m.vcov().to_numpy(), dtype=float)

    zl = (Z @ lam).tocsc()
    B = (zl.T @ zl).toarray()
    C = B + np.eye(q)
    cho = linalg.cho_factor(C, lower=True)
    # G = Λ'Z'U, U'U with U = [Z X]
    G = np.hstack([(zl.T @ Z).toarray(), zl.T @ X])
    UtU = np.block([[(Z.T @ Z).toarray(), Z.T @ X], [(Z.T @ X).T, X.T @ X]])
    K = linalg.cho_solve(cho, G)
    GK = G.T @ K
    S1 = (UtU - GK) / s2  # U'Σ⁻¹U
    S2 = (UtU - GK - GK.T + K.T @ B @ K) / s2**2  # U'Σ⁻²U
    S1 = (S1 + S1.T) / 2
    S2 = (S2 + S2.T) / 2
    a = np.vstack([-(lam @ K[:, q:]), np.eye(p)]) / s2  # Σ⁻¹X = U a
    X3 = a.T @ S1 @ a  # X'Σ⁻³X
    cinv = linalg.cho_solve(cho, np.eye(q))
    tr_s2 = (n - q + float(np.sum(cinv * cinv))) / s2**2

    M, N = S1[:q, :q], S1[:q, q:]
    M2, N2 = S2[:q, :q], S2[:q, q:]
    blocks = _param_blocks(m)
    g = len(blocks) + 1  # σ² last

    P: list[np.ndarray] = []
    for bl in blocks:
        P.append(-sum(N[a].T @ N[b] for a, b in bl))
    P.append(-S2[q:, q:])
    P = [(x + x.T) / 2 for x in P]  # forceSymmetric

    # Q_ij = X'Σ⁻¹G_iΣ⁻¹G_jΣ⁻¹X (i <= j), Ktrace_ij = tr(G_iΣ⁻¹G_jΣ⁻¹)
    Q: dict[tuple[int, int], np.ndarray] = {}
    ktrace = np.empty((g, g))
    for i, bi in enumerate(blocks):
        for j in range(i, len(blocks)):
            bj = blocks[j]
            Q[i, j] = sum(N[a].T @ M[np.ix_(b, c)] @ N[d] for a, b in bi for c, d in bj)
            ktrace[i, j] = ktrace[j, i] = sum(
                float(np.sum(M[np.ix_(b, c)] * M[np.ix_(d, a)].T)) for a, b in bi for c, d in bj)
        Q[i, g - 1] = sum(N[a].T @ N2[b] for a, b in bi)
        ktrace[i, g - 1] = ktrace[g - 1, i] = sum(float(np.trace(M2[np.ix_(b, a)]))
                                                  for a, b in bi)
    Q[g - 1, g - 1] = X3
    ktrace[g - 1, g - 1] = tr_s2

    ie2 = _pbkr_ie2(ktrace, phi, P, Q, g)
    condi = float(np.min(np.abs(np.linalg.eigvalsh(ie2))))
    W = 2 * (np.linalg.inv(ie2) if condi > 1e-10 else _ginv(ie2))
    W = (W + W.T) / 2
    UU = np.zeros((p, p))
    for i in range(g - 1):
        for j in range(i + 1, g):
            UU += W[i, j] * (Q[i, j] - P[i] @ phi @ P[j])
    UU = UU + UU.T
    for i in range(g):
        UU += W[i, i] * (Q[i, i] - P[i] @ phi @ P[i])
    phi_a = phi + 2 * (phi @ UU @ phi)
    return KRAdjusted(phi_a, phi, P, W, np.asarray(m.beta))


def _pbkr_ie2(ktrace: np.ndarray, phi: np.ndarray, P: list[np.ndarray],
              Q: dict[tuple[int, int], np.ndarray], g: int) -> np.ndarray:
    """pbkrtest's IE2: ``Ktrace - 2 sum(Φ * Q_ij) + sum((Φ P_i) * (P_j Φ))`` (elementwise
    sums, as its code has them)."""
    ie2 = np.empty((g, g))
    for i in range(g):
        phi_pi = phi @ P[i]
        for j in range(i, g):
            ie2[i, j] = ie2[j, i] = (ktrace[i, j] - 2 * float(np.sum(phi * Q[i, j]))
                                     + float(np.sum(phi_pi * (P[j] @ phi))))
    return ie2


def _ginv(a: np.ndarray) -> np.ndarray:
    """MASS's ``ginv``: the pseudo-inverse on singular values above √ε times the largest."""
    return np.asarray(np.linalg.pinv(a, rcond=math.sqrt(np.finfo(float).eps)))


def _kr_aux(L: np.ndarray, adj: KRAdjusted, q: int) -> dict[str, float]:
    """The common part of pbkrtest's ``Lb_ddf`` and ``.KR_adjust``: A1, A2 and the
    denominator degrees of freedom."""
    phi = adj.phi
    theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
    theta_phi = theta @ phi
    u = [theta_phi @ Pi @ phi for Pi in adj.P]
    tr = [float(np.trace(x)) for x in u]
    A1 = A2 = 0.0
    g = len(u)
    for i in range(g):
        for j in range(i, g):
            e = 1.0 if i == j else 2.0
            A1 += e * adj.W[i, j] * tr[i] * tr[j]
            A2 += e * adj.W[i, j] * float(np.sum(u[i] * u[j].T))
    B = (A1 + 6 * A2) / (2 * q)
    gg = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    c1 = gg / (3 * q + 2 * (1 - gg))
    c2 = (q - gg) / (3 * q + 2 * (1 - gg))
    c3 = (q + 2 - gg) / (3 * q + 2 * (1 - gg))
    V0 = 1 + c1 * B
    V1 = 1 - c2 * B
    V2 = 1 - c3 * B
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    x, y = 1 - A2 / q, V1
    ratio = 1.0 if abs(x) < 1e-14 and abs(y) < 1e-14 else x / y  # pbkrtest's .divZero
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1 / q * ratio**2 * V0 / V2
        df2 = 4 + (q + 2) / (q * rho - 1)
    return {"A1": A1, "A2": A2, "df2": float(df2)}


def lb_ddf(L: np.ndarray, adj: KRAdjusted) -> float:
    """pbkrtest's ``Lb_ddf(L, V0 = vcov(m), Vadj = vcovAdj(m))``: Kenward-Roger's degrees of
    freedom for the rows of ``L`` (q = the number of rows)."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    return _kr_aux(L, adj, L.shape[0])["df2"]


def _rank(a: np.ndarray) -> int:
    """Matrix's ``rankMatrix``: singular values ≥ max(dim) ε σ_max."""
    if a.size == 0:
        return 0
    s = np.linalg.svd(a, compute_uv=False)
    return int(np.sum(s >= max(a.shape) * np.finfo(float).eps * s[0])) if s[0] > 0 else 0


def _in_row_space(m: LmerMod, L: np.ndarray) -> bool:
    """Whether the rows of L are combinations of X's rows (pbkrtest checks that
    ``rank(rbind(X, L)) == rank(X)``; the same, with X's row space computed once)."""
    cache = m.__dict__.setdefault("_lmertest_cache", {})
    if "x_rows" not in cache:
        X = m.lformula.X_values
        _, s, vt = np.linalg.svd(X, full_matrices=False)
        r = int(np.sum(s >= max(X.shape) * np.finfo(float).eps * s[0])) if s.size and s[0] else 0
        cache["x_rows"] = vt[:r]
    V = cache["x_rows"]
    resid = L - (L @ V.T) @ V
    return bool(np.abs(resid).max(initial=0.0) <= 1e-8 * max(1.0, np.abs(L).max(initial=0.0)))


def _full_rank(L: np.ndarray) -> np.ndarray:
    """pbkrtest's ``force_full_rank``: rows spanning L's row space when L is rank deficient
    (the test does not depend on which)."""
    r = _rank(L)
    if r < L.shape[0]:
        _, _, vt = np.linalg.svd(L, full_matrices=False)
        return vt[:r]
    return L


def kr_ftest(m: LmerMod, L: np.ndarray, rhs: np.ndarray | None = None) -> dict[str, float]:
    """pbkrtest's ``KRmodcomp(m, L, betaH)``: the F-test of ``Lβ = rhs`` with Kenward-Roger's
    adjustment; returns ``ndf``, ``ddf``, ``F.scaling``, ``FstatU`` (unscaled), ``Fstat``."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    if not _in_row_space(m, L):
        raise LmeFormulaError("Models have equal mean stucture or are not nested!")
    beta_h = np.zeros(L.shape[1]) if rhs is None or not np.any(rhs) else _ginv(L) @ rhs
    L = _full_rank(L)
    adj = vcov_adjusted(m)
    q = _rank(L)
    aux = _kr_aux(L, adj, q)
    df2, A2 = aux["df2"], aux["A2"]
    scaling = 1.0 if abs(df2 - 2) < 0.01 else df2 * (1 - A2 / q) / (df2 - 2)
    diff = L @ (adj.beta - beta_h)
    wald = float(diff @ np.linalg.solve(L @ adj.vcov @ L.T, diff))
    return {"ndf": float(q), "ddf": df2, "F.scaling": float(scaling), "FstatU": wald / q,
            "Fstat": scaling * wald / q,
            "p.value": float(stats.f.sf(scaling * wald / q, q, df2))}


def check_reml(m: Any) -> None:
    """lmerTest's error for Kenward-Roger on an ML fit."""
    if not m.is_REML:
        raise LmeFormulaError(KR_ML_MESSAGE)
