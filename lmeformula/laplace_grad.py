"""The analytic gradient of glmer's Laplace deviance over (θ, β), for canonical links.

lme4's Laplace deviance (nAGQ = 1) at (θ, β) is

    D(θ, β) = a(η*) + ‖u*‖² + log|A|,   A = Λ'Z'WZΛ + I,   η* = o + Xβ + ZΛu*,

where u* is PIRLS's mode, ``a`` is the family's aic (-2 log-likelihood of the response,
which differs from the summed deviance residuals by a constant) and W the working weights
at u*. For a canonical link (binomial logit, Poisson log) ``∂a/∂η = -2 r`` with
``r = a_i (y - μ)`` (prior weights ``a_i``) and ``∂r/∂η = -W``, so the Hessian of the
penalised deviance in u is 2A itself and:

* the penalised part ``a + ‖u‖²`` is differentiated at fixed u (u* is its minimum: the
  envelope theorem);
* ``d log|A| = tr(A⁻¹ dA)``, where dA has Λ's own derivative and ``diag(dW/dη · dη)``, with
  dη including ``ZΛ du*`` (implicit function theorem on ``u = Λ'Z'r``:
  ``du* = -A⁻¹ ∂F``). One adjoint solve ``v = A⁻¹ Λ'Z'c`` with ``c_i = W'_i h_i`` and
  ``h_i = (ZΛ A⁻¹ Λ'Z')_ii`` gives every component.

With ``g = -2 r + c - W (ZΛ v)`` and ``D_k = Z ∂Λ/∂θ_k`` (constant: Λ is linear in θ):

    ∂D/∂β   = X'g
    ∂D/∂θ_k = g'(D_k u) + r'(D_k v) + 2 Σ_i W_i (ZΛ)_i A⁻¹ (D_k)_i'

Only the entries of A⁻¹ where two random effects share an observation are needed. They
come from A's block structure: the first term (most levels, lme4's order) is block
diagonal, the others are kept dense, and the Schur complement of the first block gives the
rest (the same partition lme4's and the engine's factorisations use).

Other links (probit, cloglog, the non-canonical Poisson links, Gamma, inverse Gaussian) have
an expected-information W that is not the Hessian in u; they are refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla

from .errors import LmeFormulaError
from .pirls_constants import MAX_STEP_HALVINGS
from .pls import policy as _pls_policy

__all__ = ["LaplaceGradient", "LaplaceObjective", "gradient_derivs", "lbfgsb_laplace",
           "require_laplace", "supports_gradient"]

_potrf: Any = sla.lapack.get_lapack_funcs("potrf", (np.zeros(1),))
_potrs: Any = sla.lapack.get_lapack_funcs("potrs", (np.zeros(1),))
# families whose canonical link this module differentiates
_CANONICAL = {("binomial", "logit"), ("poisson", "log")}


def require_laplace(nAGQ: int) -> None:
    """Refuse the L-BFGS-B option (this module's gradient) for anything but the Laplace
    stage."""
    if nAGQ != 1:
        raise LmeFormulaError("optimizer 'L-BFGS-B' is available for the Laplace stage "
                              "(nAGQ = 1) only; use bobyqa, nloptwrap or Nelder_Mead "
                              "for the first stage and for nAGQ = 0 or nAGQ > 1")


def supports_gradient(family: Any) -> bool:
    """Whether :class:`LaplaceGradient` handles ``family`` (canonical links only)."""
    return (family.family, family.link.name) in _CANONICAL


@dataclass(frozen=True)
class AFactor:
    """A = Λ'Z'WZΛ + I at one point, in the blocks the gradient reads.

    Attributes
    ----------
    logdet
        log|A|.
    lev
        Each observation's level of the first term.
    a11inv0
        The first (block-diagonal) part's own inverse, per level (nl1 x nc1 x nc1).
    a11inv
        The diagonal blocks of A⁻¹ over the first term's levels (nl1 x nc1 x nc1).
    ainv12, ainv22
        A⁻¹'s blocks between the first term and the rest, and among the rest (None when
        there is one term).
    t
        A11⁻¹ A12 (q1 x q2), None with one term.
    a12
        A12 (q1 x q2), None with one term.
    chol
        The lower Cholesky factor of the Schur complement A22 - A12'T, None with one term.
    """

    logdet: float
    lev: np.ndarray
    a11inv0: np.ndarray
    a11inv: np.ndarray
    ainv12: np.ndarray | None = None
    ainv22: np.ndarray | None = None
    t: np.ndarray | None = None
    a12: np.ndarray | None = None
    chol: np.ndarray | None = None


class LaplaceGradient:
    """Gradient of a :class:`~lmeformula.pirls.GlmerDevfun`'s Laplace deviance at its last
    evaluation.

    Parameters
    ----------
    devfun
        A glmer deviance function with ``nAGQ = 1`` (its state after a call at (θ, β) is
        where the gradient is taken).
    """

    def __init__(self, devfun: Any) -> None:
        fam = devfun.family
        if not supports_gradient(fam):
            raise LmeFormulaError(
                f"the analytic Laplace gradient (optimizer 'L-BFGS-B') is implemented for "
                f"the canonical links binomial(logit) and poisson(log) only, not "
                f"{fam.family}({fam.link.name}); use the default optimizers")
        self.devfun = devfun
        self.binomial = fam.family == "binomial"
        re = devfun.pf.reTrms
        shapes = devfun.shapes
        factors = devfun._factors
        self.X = devfun.X
        ntheta = devfun.ntheta
        n = devfun.nobs
        # column index J[i, a] of each observation's random effects and, per θ_k, the values
        # V_k[i, a] of Z ∂Λ/∂θ_k there (Λ = Λt' has θ_k at Λt's stored entries with Lind == k)
        offs = np.cumsum([0] + [t.nl * t.nc for t in shapes])
        m = int(sum(t.nc for t in shapes))
        J = np.empty((n, m), dtype=np.int64)
        V = np.zeros((ntheta, n, m))
        lt = re.Lambdat.tocsc()
        lind = np.asarray(re.Lind, dtype=np.int64)
        col = 0
        for ti, (t, (codes, x)) in enumerate(zip(shapes, factors, strict=True)):
            nc = t.nc
            off = int(offs[ti])
            base = off + codes * nc
            for a in range(nc):
                J[:, col + a] = base + a
            # the first block of the term in Λt: Λt[r, c] = θ_k means Λ[c, r] = θ_k, so
            # (Z ∂Λ/∂θ_k)[i, off + r] = X_t[i, c - off]
            for c in range(off, off + nc):
                for idx in range(lt.indptr[c], lt.indptr[c + 1]):
                    r = int(lt.indices[idx])
                    k = int(lind[idx])
                    V[k, :, col + (r - off)] += x[:, c - off]
            col += nc
        # stored by columns (m x n, contiguous rows), and Z ∂Λ/∂θ_k by its nonzero columns
        self.J = np.ascontiguousarray(J.T)
        self.Vcols = [[(a, np.ascontiguousarray(V[kk, :, a])) for a in range(m)
                       if np.any(V[kk, :, a] != 0.0)] for kk in range(ntheta)]
        self.m = m
        self.q1 = int(shapes[0].nl * shapes[0].nc)
        self.nc1 = int(shapes[0].nc)
        self.nl1 = int(shapes[0].nl)
        self.q = int(offs[-1])
        self.q2 = self.q - self.q1
        # the dense part of A (random effects of all terms but the first): up to the
        # engine's limit (read at each use: tests swap the policy)
        if self.q2 > _pls_policy.POLICY.max_laplace_dense:
            raise LmeFormulaError(
                f"the analytic Laplace gradient keeps the random effects of all terms but the "
                f"first dense: {self.q2} of them is too many; use the default optimizers")
        self.m1 = self.nc1  # the first term's columns in J
        self.evaluations = 0

    # -- A and the entries of A⁻¹ -----------------------------------------------------------
    def _factor(self, zl: np.ndarray, W: np.ndarray) -> AFactor:
        """A = (ZΛ)'W(ZΛ) + I in blocks, the Schur complement of its first (block diagonal)
        part, log|A| and the entries of A⁻¹ that observations touch (``zl``: ZΛ's values
        at J, m x n)."""
        J, m1, nc1, nl1, q1, q2 = self.J, self.m1, self.nc1, self.nl1, self.q1, self.q2
        m = J.shape[0]
        wz = zl * W[None, :]
        lev = J[0] // nc1
        a11 = np.empty((nl1, nc1, nc1))
        for a in range(nc1):
            for b in range(a, nc1):
                col = np.bincount(lev, weights=wz[a] * zl[b], minlength=nl1)
                a11[:, a, b] = col
                a11[:, b, a] = col
        a11[:, np.arange(nc1), np.arange(nc1)] += 1.0
        if nc1 == 1:
            logdet = float(np.sum(np.log(a11[:, 0, 0])))
            a11inv: np.ndarray = 1.0 / a11
        else:
            c11 = np.linalg.cholesky(a11)
            logdet = 2.0 * float(np.sum(np.log(np.diagonal(c11, axis1=1, axis2=2))))
            a11inv = np.asarray(np.linalg.inv(a11), dtype=float)
        if q2 == 0:
            return AFactor(logdet=logdet, lev=lev, a11inv0=a11inv, a11inv=a11inv)
        J2 = J[m1:] - q1
        # A12 (dense q1 x q2) and A22 (dense q2 x q2) from the observations' products
        flat12 = np.zeros(q1 * q2)
        for a in range(m1):
            for b in range(m - m1):
                flat12 += np.bincount(J[a] * q2 + J2[b], weights=wz[a] * zl[m1 + b],
                                      minlength=q1 * q2)
        a12 = flat12.reshape(q1, q2)
        flat22 = np.zeros(q2 * q2)
        for a in range(m - m1):
            for b in range(m - m1):
                flat22 += np.bincount(J2[a] * q2 + J2[b], weights=wz[m1 + a] * zl[m1 + b],
                                      minlength=q2 * q2)
        a22 = flat22.reshape(q2, q2)
        a22[np.arange(q2), np.arange(q2)] += 1.0
        # T = A11⁻¹ A12 block by block; S = A22 - A12' T; A⁻¹ from S⁻¹
        if nc1 == 1:
            t = a12 * a11inv[:, 0, :]
        else:
            t = np.einsum("lab,lbj->laj", a11inv, a12.reshape(nl1, nc1, q2)).reshape(q1, q2)
        # (LAPACK's potrf/potrs directly, as cho_factor/cho_solve call them, without
        # their checks: this small factorisation is in every gradient)
        chol, info = _potrf(a22 - a12.T @ t, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("the Schur complement of A is not positive definite")
        logdet += 2.0 * float(np.sum(np.log(np.diag(chol))))
        sinv = _potrs(chol, np.eye(q2), lower=1)[0]
        u = t @ sinv  # A⁻¹12 = -U
        if nc1 == 1:
            d11 = np.einsum("ij,ij->i", u, t)[:, None, None]
        else:
            d11 = np.einsum("laj,lbj->lab", u.reshape(nl1, nc1, q2), t.reshape(nl1, nc1, q2))
        return AFactor(logdet=logdet, lev=lev, a11inv0=a11inv, a11inv=a11inv + d11,
                       ainv12=-u, ainv22=sinv, t=t, a12=a12, chol=chol)

    def _ainv_times(self, f: AFactor, zl: np.ndarray) -> np.ndarray:
        """Row by row, A⁻¹[J_i, J_i] (ZΛ)_i' (m x n): the entries of A⁻¹ two random effects
        of one observation share, gathered pair by pair."""
        J, m1, q1 = self.J, self.m1, self.q1
        m = J.shape[0]
        gz = np.zeros_like(zl)
        a11, lev = f.a11inv, f.lev
        for a in range(m1):
            for b in range(m1):
                gz[a] += a11[lev, a, b] * zl[b]
        if m > m1:
            J2 = J[m1:] - q1
            a12, a22 = f.ainv12, f.ainv22
            assert a12 is not None and a22 is not None  # more than one term
            for a in range(m1):
                for b in range(m - m1):
                    v = a12[J[a], J2[b]]
                    gz[a] += v * zl[m1 + b]
                    gz[m1 + b] += v * zl[a]
            for a in range(m - m1):
                for b in range(m - m1):
                    gz[m1 + a] += a22[J2[a], J2[b]] * zl[m1 + b]
        return gz

    def _zlt(self, zl: np.ndarray, c: np.ndarray) -> np.ndarray:
        """(ZΛ)' c for a vector c over the observations (``zl``: ZΛ's values at J)."""
        return np.bincount(self.J.ravel(), weights=(zl * c[None, :]).ravel(), minlength=self.q)

    def _solve(self, f: AFactor, rhs: np.ndarray) -> np.ndarray:
        """A⁻¹ rhs by the block partition (rhs a vector or a q x r matrix)."""
        q1 = self.q1
        nl1, nc1 = self.nl1, self.nc1
        r1 = rhs[:q1].reshape(nl1, nc1, -1)
        x1 = np.einsum("lab,lbr->lar", f.a11inv0, r1).reshape(rhs[:q1].shape)
        if self.q2 == 0:
            return x1
        assert f.chol is not None and f.a12 is not None and f.t is not None
        x2 = _potrs(f.chol, rhs[q1:] - f.a12.T @ x1, lower=1)[0]
        x1 = x1 - f.t @ x2
        return np.concatenate([x1, x2])

    def beta_hessian(self) -> np.ndarray:
        """At the last gradient's point, ∂²/∂β² of the penalised deviance with u at its mode:
        2 (X'WX - X'WZΛ A⁻¹ Λ'Z'WX) = 2 RX'RX (the log-determinant's curvature left out):
        the β block of the preconditioner, at no PIRLS cost."""
        f, zl, W = self._f, self._zl, self._W
        WX = self.X * W[:, None]
        p = WX.shape[1]
        b = np.empty((self.q, p))
        for j in range(p):
            b[:, j] = self._zlt(zl, WX[:, j])
        hbb = self.X.T @ WX - b.T @ self._solve(f, b)
        return 2.0 * (hbb + hbb.T) / 2.0

    def predict_mode(self, x: np.ndarray) -> np.ndarray:
        """The mode at x = (θ, β) predicted to first order from the last gradient's point:
        ``u* + A⁻¹ (∂F/∂x) Δx`` (F = Λ'Z'r(η) - u, as in :func:`_linearized_hessian`),
        one solve."""
        theta0, beta0, u, r = self._at
        k = theta0.shape[0]
        dtheta, dbeta = x[:k] - theta0, x[k:] - beta0
        J, q = self.J, self.q
        uJ = u[J]
        d = self.X @ dbeta if dbeta.size else np.zeros(J.shape[1])
        rhs = np.zeros(q)
        for kk, cols in enumerate(self.Vcols):
            if dtheta[kk] == 0.0:
                continue
            for a, vec in cols:
                d += dtheta[kk] * (vec * uJ[a])
                rhs += np.bincount(J[a], weights=dtheta[kk] * (vec * r), minlength=q)
        rhs -= self._zlt(self._zl, self._W * d)
        return np.asarray(u + self._solve(self._f, rhs), dtype=float)

    # -- the gradient ------------------------------------------------------------------------
    def __call__(self) -> np.ndarray:
        """∂D/∂(θ, β) at the deviance function's last evaluation (θ, β)."""
        self.evaluations += 1
        dev = self.devfun
        s, resp = dev.state, dev.resp
        theta, u = s.theta, s.u
        mu, wt = resp.mu, resp.weights
        J = self.J
        zl = np.zeros(J.shape)  # ZΛ at J
        for k, cols in enumerate(self.Vcols):
            for a, vec in cols:
                zl[a] += theta[k] * vec
        r = wt * (resp.y - mu)
        if self.binomial:
            W = wt * mu * (1.0 - mu)
            dW = W * (1.0 - 2.0 * mu)
        else:
            W = wt * mu
            dW = W
        f = self._factor(zl, W)
        gz = self._ainv_times(f, zl)  # A⁻¹ (ZΛ)_i' at J_i
        h = np.einsum("ai,ai->i", zl, gz)  # (ZΛ A⁻¹ Λ'Z')_ii
        c = dW * h
        v = self._solve(f, self._zlt(zl, c))
        vJ, uJ = v[J], u[J]
        e = np.einsum("ai,ai->i", zl, vJ)
        g = -2.0 * r + c - W * e
        grad_beta = self.X.T @ g
        grad_theta = np.zeros(len(self.Vcols))
        wr = 2.0 * W
        for k, cols in enumerate(self.Vcols):
            for a, vec in cols:
                grad_theta[k] += (g @ (vec * uJ[a]) + r @ (vec * vJ[a])
                                  + wr @ (vec * gz[a]))
        self.logdet = f.logdet
        self._f, self._zl, self._W = f, zl, W  # for beta_hessian
        self._at = (theta.copy(), s.beta.copy(), u.copy(), r)  # for predict_mode
        return np.concatenate([grad_theta, grad_beta])


def _pirls_from_mode(dev: Any, x: np.ndarray, u0: np.ndarray) -> bool:
    """PIRLS at x = (θ, β) (u only, β in the offset) started from u0, the mode predicted
    from the last evaluation's (:meth:`LaplaceGradient.predict_mode`), taken as PIRLS's
    first iterate: lme4's rule
    (stop when the penalised deviance changes by less than ``tolPwrss`` relative to the
    previous iterate; step halving while it rises) with that start counted, so that one
    step suffices where the start was already a mode to the tolerance (the default path
    always takes a second step to test the first). The accepted point is, as lme4's, one
    Newton step after an iterate whose step changed the deviance by less than the
    tolerance. False (nothing done) where the deviance function has no PIRLS kernel or no
    usable start; the caller then runs the deviance function itself."""
    from .pirls import _NO_BETA

    kernel = dev._kernels.get(True)
    s, resp = dev.state, dev.resp
    k = dev.ntheta
    if kernel is None or dev.nAGQ != 1 or not np.all(np.isfinite(u0)):
        return False
    dev.evaluations += 1
    theta, beta = x[:k].copy(), x[k:].copy()
    s.theta, s.beta = theta, beta
    resp.offset = dev.base_offset + dev.X @ beta if beta.size else dev.base_offset
    u = np.array(u0, dtype=float)
    s.u = u
    resp.update_mu(dev._lin_pred(theta, u, _NO_BETA))
    old_pdev = dev._pdev()
    if not np.isfinite(old_pdev):
        return False
    tol = dev.tolPwrss
    for it in range(dev.maxit):
        old_u = s.u
        w, z = resp.working(kernel.response_row())
        step = kernel.step(theta, w, z)
        if step is None:
            return False
        s.w, s.z, s.factor = w, z, None
        s.u = np.asarray(step.u, float)
        resp.update_mu(dev._lin_pred(theta, s.u, _NO_BETA))
        pdev = dev._pdev()
        s.iterations = it + 1
        dev.pirls_iterations += 1
        if abs((old_pdev - pdev) / pdev) < tol:
            s.ldL2 = step.ldL2
            return True
        if math.isnan(pdev) or pdev > old_pdev:
            if it == 0:  # the prediction misled (a long step, e.g. onto θ's bound):
                return False  # PIRLS from the last η, as the default path
            h = 0
            while h < MAX_STEP_HALVINGS and (math.isnan(pdev) or pdev > old_pdev):
                s.u = (old_u + s.u) / 2.0
                resp.update_mu(dev._lin_pred(theta, s.u, _NO_BETA))
                pdev = dev._pdev()
                h += 1
            if math.isnan(pdev) or pdev - old_pdev > tol:
                return False
        old_pdev = pdev
    return False


class LaplaceObjective:
    """The Laplace deviance over (θ, β) with its analytic gradient, for
    :func:`lmeformula.optimize` 's L-BFGS-B (``has_gradient``, ``gradient``).

    Each call runs the deviance function's PIRLS at (θ, β) and then evaluates
    ``a(η*) + ‖u*‖² + log|A|`` with A's weights at the mode u* itself, where lme4 takes them
    from PIRLS's last-but-one step (its ``ldL2``): the deviance the gradient belongs to
    (the two differ by the PIRLS tolerance, ~1e-3 on VerbAgg). The gradient of the last
    point is kept for :meth:`gradient`.

    Parameters
    ----------
    devfun
        A glmer deviance function with ``nAGQ = 1``.
    """

    has_gradient = True

    def __init__(self, devfun: Any) -> None:
        require_laplace(devfun.nAGQ)
        self.devfun = devfun
        self.grad = LaplaceGradient(devfun)
        self.lower = devfun.lower
        self.evaluations = 0
        self._last: list[tuple[np.ndarray, float, np.ndarray]] = []
        self._warm: np.ndarray | None = None

    @property
    def ntheta(self) -> int:
        """Length of θ."""
        return int(self.devfun.ntheta)

    def _evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        for last in self._last:
            if np.array_equal(last[0], x):
                return last[1], last[2]
        self.evaluations += 1
        dev = self.devfun
        if (self._warm is not None and self.grad.evaluations > 0
                and _pirls_from_mode(dev, x, self.grad.predict_mode(x))):
            g = self.grad()
            value = dev.resp.aic() + float(dev.state.u @ dev.state.u) + self.grad.logdet
        else:
            if self._warm is not None:  # PIRLS from the last mode (see warm_start)
                dev.lp0 = self._warm
            lagged = dev(x)
            g = self.grad()
            value = lagged - dev.state.ldL2 + self.grad.logdet
        # the last few points (the optimizer asks again for the points a Hessian started at)
        self._last = [(np.array(x, dtype=float), value, g), *self._last[:3]]
        if self._warm is not None:
            s = dev.state
            self._warm = dev._lin_pred(s.theta, s.u, s.beta)
        return value, g

    @contextmanager
    def warm_start(self) -> Iterator[None]:
        """Within the block, each evaluation's PIRLS starts from the previous evaluation's
        mode (lme4's deviance functions start from the stored ``lp0``, stage 1's): the same
        modes to PIRLS's tolerance in fewer steps. ``lp0`` is put back afterwards."""
        dev = self.devfun
        saved = dev.lp0
        self._warm = saved
        try:
            yield
        finally:
            self._warm = None
            self._last = []
            dev.lp0 = saved

    def __call__(self, x: np.ndarray) -> float:
        """The Laplace deviance at x = (θ, β)."""
        return self._evaluate(np.asarray(x, dtype=float))[0]

    def beta_hessian_at(self, x: np.ndarray) -> np.ndarray:
        """:meth:`LaplaceGradient.beta_hessian` at x (evaluated there if x is not the
        last point)."""
        x = np.asarray(x, dtype=float)
        if not (self._last and np.array_equal(self._last[0][0], x)):
            self._last = []
            self._evaluate(x)
        return self.grad.beta_hessian()

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """Its gradient at x."""
        return self._evaluate(np.asarray(x, dtype=float))[1].copy()


def _linearized_hessian(obj: LaplaceObjective, x: np.ndarray, delta: float,
                        rows: int | None = None) -> np.ndarray:
    """Forward differences of the analytic gradient where each displaced point's mode is
    not found by PIRLS but predicted from the mode at x: ``u(x + δe_i) ≈ u* + δ du*/dx_i``,
    with ``du*/dx = A⁻¹ ∂F/∂x`` from the mode's equation ``F = Λ'Z'r(η) - u = 0``
    (∂F/∂β = -Λ'Z'WX, ∂F/∂θ_k = (Z ∂Λ/∂θ_k)'r - Λ'Z'W Z ∂Λ/∂θ_k u*). The prediction's
    error is O(δ²), so the difference's is O(δ), as forward differencing's own; PIRLS's
    steps are saved (k gradients, no deviance). x is evaluated first unless it was the
    objective's last evaluation (its mode and the gradient's blocks are used); the deviance
    function's θ, β, u and μ and the gradient's blocks are put back at x's afterwards.
    With ``rows``, only the first ``rows`` rows (and columns) are differenced and the
    rest of the matrix is left uninitialised."""
    x = np.asarray(x, dtype=float)
    if not (obj._last and np.array_equal(obj._last[0][0], x)):
        obj._last = []
    g0 = obj.gradient(x)
    grad = obj.grad
    dev = obj.devfun
    s, resp = dev.state, dev.resp
    k = dev.ntheta
    npar = x.shape[0]
    f, zl, W, J = grad._f, grad._zl, grad._W, grad.J
    u = s.u.copy()
    theta = s.theta.copy()
    beta = x[k:].copy()
    r = resp.weights * (resp.y - resp.mu)
    q = grad.q
    rhs = np.empty((q, npar if rows is None else rows))
    uJ = u[J]
    for kk, cols in enumerate(grad.Vcols):
        dku = np.zeros(J.shape[1])  # (Z ∂Λ/∂θ_k u*)_i
        part = np.zeros(q)
        for a, vec in cols:
            dku += vec * uJ[a]
            part += np.bincount(J[a], weights=vec * r, minlength=q)
        rhs[:, kk] = part - grad._zlt(zl, W * dku)
    X = grad.X
    nrow = npar if rows is None else rows
    for j in range(nrow - k):
        rhs[:, k + j] = -grad._zlt(zl, W * X[:, j])
    du = grad._solve(f, rhs)
    base = dev.base_offset
    hess = np.empty((npar, npar))
    saved = (f, zl, W, grad.logdet, grad._at)
    try:
        for i in range(nrow):
            th, bt = theta.copy(), beta.copy()
            if i < k:
                th[i] += delta
            else:
                bt[i - k] += delta
            s.theta, s.beta = th, bt
            s.u = u + delta * du[:, i]
            resp.offset = base + X @ bt if bt.size else base
            resp.update_mu(dev._lin_pred(th, s.u, np.zeros(0)))
            hess[i] = (grad() - g0) / delta
    finally:  # back to x's mode (its μ from the same numbers) and gradient blocks
        s.theta, s.beta, s.u = theta, beta, u
        resp.offset = base + X @ beta if beta.size else base
        resp.update_mu(dev._lin_pred(theta, u, np.zeros(0)))
        grad._f, grad._zl, grad._W, grad.logdet, grad._at = saved
    if rows is not None:
        hess[:, :nrow] = hess[:nrow].T
        return hess
    return (hess + hess.T) / 2.0


def gradient_derivs(obj: LaplaceObjective, x: np.ndarray, delta: float = 1e-6) -> Any:
    """lme4's ``deriv12`` result (gradient and Hessian over (θ, β)) from the analytic
    gradient: the gradient at x and the Hessian by forward differences of the gradient,
    symmetrised, at displaced points whose modes are predicted to first order rather than
    found by PIRLS (:func:`_linearized_hessian`: k gradients and no PIRLS where deriv12
    takes 2k² + 1 deviances). Without PIRLS's round-off in the differences the step can be
    small: the error, ~δ times the third derivatives, is ~1e-5 of the standard errors'
    product at δ = 1e-6 (VerbAgg; 7e-4 for PIRLS-solved forward differences at deriv12's
    1e-4)."""
    from .optimize import Derivs

    x = np.asarray(x, dtype=float)
    hess = _linearized_hessian(obj, x, delta)
    return Derivs(obj.gradient(x), hess)


def _approx_hessian(obj: LaplaceObjective, x: np.ndarray) -> np.ndarray:
    """A Hessian for preconditioning, for θ's k gradients and no PIRLS: θ's rows and
    columns by :func:`_linearized_hessian`, the β block by
    :meth:`LaplaceGradient.beta_hessian` at x (the full linearized Hessian, k + p
    gradients, gives the same iterations on VerbAgg)."""
    k = obj.devfun.ntheta
    hess = _linearized_hessian(obj, x, 1e-6, rows=k)
    hess[k:, k:] = obj.beta_hessian_at(x)
    hess[:k, :k] = (hess[:k, :k] + hess[:k, :k].T) / 2.0
    return hess


def _preconditioner(hess: np.ndarray, k: int) -> np.ndarray:
    """S with x = x0 + S z such that the Hessian in z is near the identity, θ's components
    each a multiple of one z (so that θ's bounds stay bounds on z): S = [[D, 0], [-Hββ⁻¹Hβθ D,
    Lβ⁻ᵀ]] with Hββ = Lβ Lβ' and D the inverse square roots of the diagonal of θ's Schur
    complement. Falls back to diagonal scaling (or none) where the Hessian is not positive."""
    npar = hess.shape[0]
    s = np.eye(npar)
    hbb, htb = hess[k:, k:], hess[:k, k:]
    try:
        lb = np.linalg.cholesky(hbb) if npar > k else np.zeros((0, 0))
    except np.linalg.LinAlgError:
        d = np.abs(np.diag(hess))
        return np.diag(np.where(d > 1e-8, 1.0 / np.sqrt(np.maximum(d, 1e-8)), 1.0))
    if npar > k:
        s[k:, k:] = np.linalg.inv(lb).T
        coupling = np.linalg.solve(hbb, htb.T)  # Hββ⁻¹ Hβθ
        schur = np.diag(hess[:k, :k]) - np.einsum("ij,ji->i", htb, coupling)
    else:
        coupling = np.zeros((0, k))
        schur = np.diag(hess[:k, :k]).copy()
    # (at most one unit of θ per unit of z where the curvature is small or negative: the
    # Hessian far from the optimum says little, and θ is of order 1)
    dth = 1.0 / np.sqrt(np.maximum(schur, 1.0))
    s[:k, :k] = np.diag(dth)
    s[k:, :k] = -coupling * dth[None, :]
    return s


def lbfgsb_laplace(obj: LaplaceObjective, x0: np.ndarray, lower: np.ndarray,
                   opts: dict[str, Any]) -> tuple[np.ndarray, float, int, str, int]:
    """Minimise the Laplace deviance over (θ, β) from x0: scipy's L-BFGS-B with the analytic
    gradient, on variables preconditioned by an approximate Hessian
    (:func:`_approx_hessian`, :func:`_preconditioner`). Rounds of at most ``round_iter``
    (default 10) iterations, each preconditioned anew at its start, at most ``max_rounds``
    (20): the first to a preconditioned gradient of ``coarse`` (default 1.0), the others to
    ``gtol`` (the Hessian in the preconditioned variables is about the identity, so a
    gradient g leaves about |g|²/2 of deviance; default 1e-5). Other option: ``ftol``
    (1e-15).

    Returns (par, fval, conv, message, evaluations), as the package's other optimizers."""
    from .optimize import _better_inside, _minimize

    k = obj.devfun.ntheta
    opts = dict(opts)
    gtol = float(opts.pop("gtol", 1e-5))
    coarse = float(opts.pop("coarse", 1.0))
    round_iter = int(opts.pop("round_iter", 10))
    max_rounds = int(opts.pop("max_rounds", 20))
    options = {"ftol": 1e-15, **opts, "maxiter": round_iter}
    used0 = obj.evaluations

    def run(start: np.ndarray, tol: float) -> tuple[np.ndarray, float, Any]:
        xs = start.copy()
        s = _preconditioner(_approx_hessian(obj, xs), k)
        bounds: list[tuple[float | None, None]] = []
        for i in range(start.shape[0]):
            if i < k and np.isfinite(lower[i]):
                bounds.append(((lower[i] - xs[i]) / s[i, i], None))
            else:
                bounds.append((None, None))

        def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
            x = xs + s @ z
            x[:k] = np.maximum(x[:k], lower[:k])  # round-off at the bounds
            value = obj(x)
            return value, s.T @ obj.gradient(x)

        res = _minimize(fun, np.zeros(start.shape[0]), jac=True, method="L-BFGS-B",
                        bounds=bounds, options={**options, "gtol": tol})
        x = xs + s @ np.asarray(res.x, float)
        x[:k] = np.maximum(x[:k], lower[:k])
        return x, float(res.fun), res

    x = np.maximum(np.asarray(x0, dtype=float), lower)
    # rounds of at most ``round_iter`` iterations, each preconditioned at its start (the
    # Hessian where PIRLS starts, θ = 1, can be far from the optimum's), the first to
    # ``coarse``, the others to ``gtol``
    tol = max(coarse, gtol)
    for _ in range(max_rounds):
        x, fx, res = run(x, tol)
        if res.success:
            if tol == gtol:
                break
            tol = gtol
        elif int(res.nit) < round_iter:  # stopped by the line search (at round-off), not
            break                        # by the round's cap
    # θ = 0 on a diagonal is a stationary point (the deviance is even in a scalar term's θ):
    # look a finite step inside, as the package's lmer L-BFGS-B does, and restart there
    for _ in range(3):
        trial, _ = _better_inside(obj, x, fx, lower)
        if trial is None:
            break
        x, fx, res = run(trial, gtol)
    return x, fx, 0 if res.success else 1, str(res.message), obj.evaluations - used0
