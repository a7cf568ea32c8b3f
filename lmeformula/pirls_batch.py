"""The Laplace deviance at many (θ, β) points in one pass: deriv12's points on a model whose
scalar random-effects terms are each nested in the next (cbpp's ``(1 | herd)``,
grouseticks' INDEX in BROOD in LOCATION: glmer's :class:`ChainStep`), for a logit binomial
or a log Poisson response.

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
evaluated one by one: other designs, families and links, a μ that lme4's clamps would
change, a step that needs halving (which reads the previous evaluation's u), or no
convergence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from .families import logistic_parts
from .pirls_constants import DBL_MAX, EPS
from .pls.pirls_chain import (
    ChainStep,
    back_substitute,
    bincount_rows,
    chain_system,
    eliminate,
    one_term_solve,
)

__all__ = ["laplace_batch"]

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
    if not isinstance(kernel, ChainStep) or not all(kernel.ones):
        return None
    if kernel.K > 1 and (kernel.stacked_keys is None or any(
            up[4] is not None for ups in kernel.updates for up in ups)):
        return None
    resp = dev.resp
    fam = resp.family
    family, link = fam.family, fam.link.name
    logit = family == "binomial" and link == "logit" and resp._binary() is None
    if not (logit or (family == "poisson" and link == "log")):
        return None
    if dev.ntheta != kernel.K or points.shape[1] != kernel.K + dev.X.shape[1]:
        return None
    # μ at lp0, where every evaluation starts, and its w and (y - μ)/μ'(η), as working()
    # forms them there
    resp.offset = dev.base_offset
    dev._start_mu()
    eta0, mu0, me0, _me_is_mu, var0, inside0 = dev._lp0_mu[1]
    if logit and not inside0:  # lp0's μ clamped: other arithmetic
        return None
    if not logit:
        me0 = var0 = mu0  # log link: μ'(η) = μ, and the Poisson variance is μ
    unit = resp._unit_weights()
    w0 = np.multiply(me0, me0)
    if not unit:
        w0 *= resp.weights
    w0 /= var0
    zq0 = np.subtract(resp.y, mu0)
    zq0 /= me0

    m, n = points.shape[0], eta0.shape[0]
    tol, maxit = dev.tolPwrss, dev.maxit
    X, base, y = dev.X, dev.base_offset, resp.y
    K = kernel.K
    thetas = points[:, :K].copy()
    off = np.empty((m, n))
    for j in range(m):  # each point's offset as its evaluation forms it: base + X β
        beta = points[j, K:].copy()
        off[j] = base + X @ beta if beta.size else base
    values = [math.nan] * m
    steps = [0] * m
    final_mu = np.empty((m, n))
    active = np.arange(m)
    old_pdev = [DBL_MAX] * m
    W: np.ndarray = np.broadcast_to(w0, (m, n))
    Z = zq0 + (eta0 - off)  # the first step's z: (y - μ)/μ'(η) + (η - offset)
    for _ in range(maxit):
        TH = thetas[active]
        U, pivots = _chain_steps(kernel, TH, np.ascontiguousarray(W), Z)
        offa = off[active]
        eta = offa + _lin_pred(kernel, dev, TH, U)
        if logit:  # update_mu, the logistic inside lme4's clamps (else one by one)
            mu, me, var, inside = logistic_parts(eta)
            if not inside:
                return None
            dsum = _binomial_dev_sums(resp, mu)
        else:  # update_mu for the log link: μ = max(exp(η), ε), μ'(η) = μ
            mu = np.exp(eta)
            np.maximum(mu, EPS, out=mu)
            me = var = mu
            dsum = _poisson_dev_sums(resp, mu, unit)
        keep = []
        for i, j in enumerate(active.tolist()):
            u = U[i]
            pdev = dsum[i] + float(u @ u)
            steps[j] += 1
            old = old_pdev[j]
            if abs((old - pdev) / pdev) < tol:
                ld = 0.0
                for piv in pivots:  # ChainResult.ldL2, term by term
                    ld += float(_sum(np.log(piv[i])))
                values[j] = 2.0 * ld + float(u @ u)
                final_mu[j] = mu[i]
                continue
            if math.isnan(pdev) or pdev > old:  # step halving: one by one instead
                return None
            old_pdev[j] = pdev
            keep.append(i)
        if not keep:
            break
        idx = np.array(keep)
        active = active[idx]
        # the next step's w and z (working(): w = μ'² a / V(μ), V = μ (1 - μ) for the
        # logit inside the clamps and μ for the Poisson)
        me, mu, var, eta, offa = me[idx], mu[idx], var[idx], eta[idx], offa[idx]
        W = np.multiply(me, me)
        if not unit:
            W *= resp.weights
        W /= var
        Z = np.subtract(y, mu)
        Z /= me
        Z += np.subtract(eta, offa)
    else:
        return None
    aics = _binomial_aics(resp, final_mu) if logit else _poisson_aics(resp, final_mu, unit)
    dev.evaluations += m
    dev.pirls_iterations += sum(steps)
    return np.array([values[j] + aics[j] for j in range(m)])


def _chain_steps(kernel: ChainStep, TH: np.ndarray, W: np.ndarray,
                 Z: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """:meth:`ChainStep.step` (x all ones) for each row: u (rows, q) and each term's
    pivots (rows, nl_t)."""
    rows = TH.shape[0]
    wz = Z * W
    if kernel.K == 1:  # ChainStep._one_term
        c, nl = kernel.codes[0], kernel.nls[0]
        col, piv = one_term_solve(bincount_rows(c, wz, nl), bincount_rows(c, W, nl), TH[:, :1])
        return col, [piv]
    K, q, bounds = kernel.K, kernel.q, kernel.bounds
    assert kernel.stacked_keys is not None
    counts = bincount_rows(kernel.stacked_keys, np.concatenate([wz] * K + [W] * K, axis=1),
                            2 * q)
    zx, cnt = counts[:, :q], counts[:, q:]
    thq = TH.take(kernel.term_of_level, axis=1)
    cols, diags = chain_system(zx, cnt, thq, bounds)
    vcols: dict[tuple[int, int], np.ndarray] = {}
    for t in range(K - 1):
        lo, hi = bounds[t]
        for s in kernel.later[t]:
            vcols[(t, s)] = cnt[:, lo:hi] * (TH[:, t] * TH[:, s])[:, None]
    piv_t = eliminate(kernel, cols, diags, vcols)  # ChainStep.step's, row by row
    u = np.empty((rows, q))
    back_substitute(kernel, cols.__getitem__, vcols, piv_t, u)
    return u, piv_t


def _lin_pred(kernel: ChainStep, dev: Any, TH: np.ndarray, U: np.ndarray) -> np.ndarray:
    """:class:`ScalarLinPred` (x all ones) for each row."""
    lin = dev._zlu
    if kernel.K == 1:
        out: np.ndarray = (U * TH[:, :1]).take(lin.keys, axis=1)
        return out
    rows = U.shape[0]
    parts = (U * TH.take(lin.term_of_level, axis=1)).take(lin.keys, axis=1)
    parts = parts.reshape(rows, kernel.K, lin.n)
    out = parts[:, 0] + parts[:, 1]
    for k in range(2, kernel.K):
        out += parts[:, k]
    return out


def binomial_resid(resp: Any, mu: np.ndarray) -> np.ndarray:
    """The binomial deviance residuals of ``resp`` at μ (one vector, or one per row of a 2-D
    μ), 2 wt (a + b) with a = y log(y/μ) and b = (1 - y) log((1 - y)/(1 - μ)) where they
    count, formed in place (the terms a and b of an observation where only one counts are
    a + 0 and 0 + b, what the scatter leaves). GlmerResponse's residuals and the batch's
    rows share it, so they are the same numbers."""
    i1, y1, i2, y2 = resp._dev_index()
    n = mu.shape[-1]
    a = mu.take(i1, axis=-1)
    np.divide(y1, a, out=a)
    np.log(a, out=a)
    a *= y1
    if i2.shape[0] == n:  # every observation has failures: b over all of them, then + a
        r = np.subtract(1.0, mu)
        np.divide(y2, r, out=r)
        np.log(r, out=r)
        r *= y2
        r[..., i1] += a  # (b + a: the same sum as a + b; b alone elsewhere, as 0 + b)
    else:
        b = mu.take(i2, axis=-1)
        np.subtract(1.0, b, out=b)
        np.divide(y2, b, out=b)
        np.log(b, out=b)
        b *= y2
        r = np.zeros(mu.shape)
        r[..., i1] = a
        r[..., i2] += b
    r *= resp._twice_weights()  # (2 wt)(a + b)
    return r


def _binomial_dev_sums(resp: Any, mu: np.ndarray) -> list[float]:
    """GlmerResponse._binomial_dev_sum for each row of μ."""
    out: list[float] = _sum(binomial_resid(resp, mu), axis=1).tolist()
    return out


def poisson_half_resid(resp: Any, mu: np.ndarray, unit: bool) -> np.ndarray:
    """Half the Poisson deviance residuals of ``resp`` at μ (one vector, or one per row of
    a 2-D μ), wt (y log(y/μ) - (y - μ)) (wt μ where y = 0), formed in place; the product by
    the weights is left out when they are all 1 (``unit``: exact). GlmerResponse's
    residuals and the batch's rows share it, so they are the same numbers."""
    i1, y1, w1 = resp._dev_index()
    r = mu.copy() if unit else mu * resp.weights
    m1 = mu.take(i1, axis=-1)
    d = y1 - m1
    np.divide(y1, m1, out=m1)
    np.log(m1, out=m1)
    m1 *= y1
    m1 -= d
    if not unit:
        m1 = np.multiply(w1, m1, out=m1)
    r[..., i1] = m1
    return r


def _poisson_dev_sums(resp: Any, mu: np.ndarray, unit: bool) -> list[float]:
    """GlmerResponse._poisson_dev_sum for each row of μ."""
    r = poisson_half_resid(resp, mu, unit)
    return [2.0 * v for v in _sum(r, axis=1).tolist()]


def _binomial_aics(resp: Any, mu: np.ndarray) -> list[float]:
    """GlmerResponse.aic (binomial, not binary) for each row of μ."""
    const, k, rest, factor, nonzero, plain = resp._aic_parts()
    logp = special.xlogy(k, mu)
    np.add(const, logp, out=logp)
    logp += special.xlog1py(rest, -mu)
    if not plain:
        logp = np.where(nonzero, factor * logp, 0.0)
    out: list[float] = (-2.0 * _sum(logp, axis=1)).tolist()
    return out


def _poisson_aics(resp: Any, mu: np.ndarray, unit: bool) -> list[float]:
    """GlmerResponse.aic (Poisson) for each row of μ."""
    gam = resp._aic_parts()[0]
    logp = special.xlogy(resp.y, mu)
    logp -= mu
    logp -= gam
    if not unit:
        logp *= resp.weights
    out: list[float] = (-2.0 * _sum(logp, axis=1)).tolist()
    return out
