"""The Laplace deviance at many (θ, β) points in one pass: deriv12's points on a model with
one scalar random-effects term and a logit binomial response (cbpp's ``(1 | herd)``).

Each of deriv12's 2k² points (50 for cbpp) is a full evaluation: PIRLS from the stage's
``lp0`` until the penalised deviance settles, then log|L|² + ‖u‖² + the family's aic. On a
small model each evaluation is some eighty numpy calls on arrays of a few dozen numbers, so
their fixed costs are most of the time. Here the points take their PIRLS steps together, as
the rows of (points, observations) arrays: every number is formed by the same IEEE
operation on the same operands as in the one-point evaluation (elementwise operations
row by row; each level's weighted counts by one bincount over stacked keys, which sums each
bin's terms in the same order; the sums of a row by the same reduction over the same
contiguous numbers; ‖u‖² by the same dot product on each row), and a point leaves the pass
at the step where its own evaluation stops. So the values are those of the one-point
evaluations, bit for bit.

Where that can not be vouched for, :func:`laplace_batch` returns None and the points are
evaluated one by one: other designs and families, a μ that lme4's clamps would change, a
step that needs halving (which reads the previous evaluation's u), or no convergence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from .pls.pirls_chain import ChainStep

__all__ = ["laplace_batch"]

_DBL_MAX = float(np.finfo(float).max)
_EPS = float(np.finfo(float).eps)
_INNER = 4.0 * _EPS
_INNER_VAR = 1e-14  # as pirls._INNER_VAR
_sum = np.add.reduce


def laplace_batch(dev: Any, points: np.ndarray) -> np.ndarray | None:
    """The Laplace deviances of ``dev`` (a :class:`lmeformula.pirls.GlmerDevfun` in its
    second stage) at the rows of ``points``, or None where the batch does not apply (the
    caller then evaluates the points one by one). Counts the evaluations and PIRLS steps
    as the one-point evaluations would; leaves the deviance function's state as it was
    after its stage's lp0 was last restored (the caller evaluates at the optimum next)."""
    points = np.asarray(points, dtype=float)
    if dev.nAGQ != 1 or points.ndim != 2 or points.shape[0] < 2:
        return None
    kernel = dev._kernels.get(True)
    if not isinstance(kernel, ChainStep) or kernel.K != 1 or not kernel.ones[0]:
        return None
    resp = dev.resp
    fam = resp.family
    if fam.family != "binomial" or fam.link.name != "logit" or resp._binary() is not None:
        return None
    if dev.ntheta != 1 or points.shape[1] != 1 + dev.X.shape[1]:
        return None
    # μ at lp0, where every evaluation starts (and its w and (y - μ)/μ'(η), as working()
    # forms them there)
    resp.offset = dev.base_offset
    dev._start_mu()
    eta0, mu0, me0, _me_is_mu, var_is_me = dev._lp0_mu[1]
    if not var_is_me or me0 is None:  # lp0's μ clamped: not this path's arithmetic
        return None
    w0 = np.multiply(me0, me0)
    unit = resp._unit_weights()
    if not unit:
        w0 *= resp.weights
    w0 /= me0
    zq0 = np.subtract(resp.y, mu0)
    zq0 /= me0

    m, n = points.shape[0], eta0.shape[0]
    codes, nl = kernel.codes[0], kernel.nls[0]
    tol, maxit = dev.tolPwrss, dev.maxit
    X, base = dev.X, dev.base_offset
    y = resp.y
    i1, y1, i2, y2 = resp._dev_index()
    full2 = i2.shape[0] == n
    tw = resp._twice_weights()

    # each point's θ (as the one-point evaluation's theta[0]) and offset base + X β
    theta = points[:, 0].copy()
    tt = theta.tolist()
    off = np.empty((m, n))
    for j in range(m):
        beta = points[j, 1:].copy()
        off[j] = base + X @ beta if beta.size else base
    values = [math.nan] * m
    steps = [0] * m
    final_mu = np.empty((m, n))
    active = np.arange(m)
    old_pdev = [_DBL_MAX] * m
    # the first step's w and z: the restored μ's, with each point's offset
    W = np.broadcast_to(w0, (m, n))
    Z = zq0 + (eta0 - off)
    for _ in range(maxit):
        na = active.shape[0]
        ta = np.array([tt[j] for j in active.tolist()])[:, None]
        # the chain step of one scalar term (ChainStep._one_term), row by row
        keys = (codes + (np.arange(na) * nl)[:, None]).ravel()
        wz = Z * W
        zx = np.bincount(keys, weights=wz.ravel(), minlength=na * nl).reshape(na, nl)
        cnt = np.bincount(keys, weights=np.ascontiguousarray(W).ravel(),
                          minlength=na * nl).reshape(na, nl)
        col = zx * ta
        diag = cnt * (ta * ta)
        diag += 1.0
        piv = np.sqrt(diag)
        col /= piv
        col /= piv
        U = col
        # η = offset + Z Λ u and μ (update_mu, logit inside the clamps)
        offa = off[active]
        eta = offa + (U * ta).take(codes, axis=1)
        p = special.expit(eta)
        me = np.subtract(1.0, p)
        me *= p
        inside = np.minimum.reduce(me, axis=1) > _INNER_VAR
        if not inside.all():
            lo_ok = np.minimum.reduce(p, axis=1) >= _INNER
            hi_ok = np.maximum.reduce(p, axis=1) <= 1.0 - _INNER
            if not (lo_ok & hi_ok).all():
                return None
        # Σ of the deviance residuals (GlmerResponse._binomial_dev_sum), row by row
        a = p.take(i1, axis=1)
        np.divide(y1, a, out=a)
        np.log(a, out=a)
        a *= y1
        if full2:
            r = np.subtract(1.0, p)
            np.divide(y2, r, out=r)
            np.log(r, out=r)
            r *= y2
            r[:, i1] += a
        else:
            b = p.take(i2, axis=1)
            np.subtract(1.0, b, out=b)
            np.divide(y2, b, out=b)
            np.log(b, out=b)
            b *= y2
            r = np.zeros((na, n))
            r[:, i1] = a
            r[:, i2] += b
        r *= tw
        dsum = _sum(r, axis=1).tolist()
        keep = []
        for i, j in enumerate(active.tolist()):
            u = U[i]
            pdev = float(dsum[i]) + float(u @ u)
            steps[j] += 1
            old = old_pdev[j]
            if abs((old - pdev) / pdev) < tol:
                ld = 0.0
                ld += float(_sum(np.log(piv[i])))
                values[j] = 2.0 * ld + float(u @ u)
                final_mu[j] = p[i]
                continue
            if math.isnan(pdev) or pdev > old:  # step halving: one by one instead
                return None
            old_pdev[j] = pdev
            keep.append(i)
        if not keep:
            break
        idx = np.array(keep)
        active = active[idx]
        # the next step's w and z (working(), logit inside the clamps: var = μ'(η))
        me, p, eta, offa = me[idx], p[idx], eta[idx], offa[idx]
        W = np.multiply(me, me)
        if not unit:
            W *= resp.weights
        W /= me
        Z = np.subtract(y, p)
        Z /= me
        Z += np.subtract(eta, offa)
    else:
        return None
    # each point's aic at its last μ (GlmerResponse.aic for a binomial), row by row
    const, k, rest, factor, nonzero, plain = resp._aic_parts()
    logp = special.xlogy(k, final_mu)
    np.add(const, logp, out=logp)
    logp += special.xlog1py(rest, -final_mu)
    if plain:
        aics = (-2.0 * _sum(logp, axis=1)).tolist()
    else:
        aics = (-2.0 * _sum(np.where(nonzero, factor * logp, 0.0), axis=1)).tolist()
    dev.evaluations += m
    dev.pirls_iterations += sum(steps)
    return np.array([values[j] + aics[j] for j in range(m)])
