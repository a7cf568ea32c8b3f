"""Powell's BOBYQA as minqa 1.2.5 runs it (lme4's ``optimizer = "bobyqa"``, glmer's first stage).

A port of minqa's Fortran (``bobyqa.f``, ``bobyqb.f``, ``prelim.f``, ``trsbox.f``, ``altmov.f``,
``rescue.f``, ``updatebobyqa.f``) and of what its R function and C++ wrapper do around it:
the default number of interpolation points npt = n + 2 (``minqa:::commonArgs``: min(n + 2,
2n), then at least n + 2 and at most (n + 1)(n + 2)/2), rhobeg = min(0.95, 0.2 max|x0|),
rhoend = 1e-6 rhobeg, maxfun = 10000; a non-finite value of the objective replaced by the
largest double (the C++ ``calfun``); the objective evaluated once at x0 before the Fortran
starts (``bobyqa()``'s ``checkObj``) and once at the returned point after it (``rval``), neither
counted in ``feval``; Powell's exit codes mapped to minqa's ``ierr`` and messages.

Each subroutine is a function of the same name, its loops the Fortran's loops over Python
floats: every sum is accumulated in the Fortran's order and every expression is evaluated
as gfortran evaluates it (left to right, ``x**2`` as ``x*x``, no fused multiply-adds), so the
evaluated points are minqa's bit for bit (tests/test_bobyqa_minqa.py checks the sequence of
points against R). Arrays are lists of floats, indexed from 0; the variables keep Powell's
names. A ``goto`` becomes a ``label`` variable of a loop where the control flow needs it.

One departure: minqa's ``RESCUE`` (called only when rounding errors have damaged the
interpolation system, "not invoked in most applications") evaluates the objective at an
uninitialised variable ``X`` (a local of ``RESCUE``, not the point it has just set in ``W``),
undefined behaviour; here it evaluates at the point Powell's original code evaluates.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import FittingError, LmeFormulaWarning

__all__ = ["BobyqaResult", "bobyqa", "minqa_npt"]

_DBL_MAX = sys.float_info.max

# minqa.R's codes and messages for Powell's IERR (0: "Normal exit from bobyqa")
_MINQA_CODES = {
    10: (2, "bobyqa -- NPT is not in the required interval"),
    320: (5, "bobyqa detected too much cancellation in denominator"),
    390: (1, "bobyqa -- maximum number of function evaluations exceeded"),
    430: (3, "bobyqa -- a trust region step failed to reduce q"),
    20: (4, "bobyqa -- one of the box constraint ranges is too small (< 2*RHOBEG)"),
}


@dataclass(frozen=True)
class BobyqaResult:
    """What ``minqa::bobyqa`` returns.

    Attributes
    ----------
    par
        The best point found (Powell's returned X).
    fval
        The objective at ``par`` (evaluated again there, as minqa's ``rval`` does).
    feval
        Number of evaluations by the Fortran (minqa's ``feval``: not counting the
        evaluation before it starts and the one after it ends).
    ierr
        minqa's code: 0 normal exit, 1 maxfun reached, 2 npt out of range, 3 a trust
        region step failed to reduce the model, 4 a box too small for rhobeg, 5 too much
        cancellation in a denominator (lme4 reports it as the convergence code).
    msg
        minqa's message ("Normal exit from bobyqa" for code 0).
    fortran_ierr
        Powell's (minqa's Fortran) IERR: 0, 10, 20, 320, 390 or 430.
    """

    par: np.ndarray
    fval: float
    feval: int
    ierr: int
    msg: str
    fortran_ierr: int


def minqa_npt(n: int, npt: int | None = None) -> int:
    """minqa's number of interpolation points for ``n`` parameters: ``npt`` (default
    min(n + 2, 2n)) brought into [n + 2, (n + 1)(n + 2)/2] (``minqa:::commonArgs``)."""
    if npt is None:
        npt = min(n + 2, 2 * n)
    return max(n + 2, min(int(npt), ((n + 1) * (n + 2)) // 2))


class _Calfun:
    """minqa's C++ ``calfun``: counts the evaluations, refuses a non-finite point, and
    replaces a non-finite value by the largest double."""

    def __init__(self, fn: Callable[[np.ndarray], float]) -> None:
        self.fn = fn
        self.count = 0

    def __call__(self, x: list[float]) -> float:
        self.count += 1
        for v in x:
            if not math.isfinite(v):
                raise FittingError("non-finite x values not allowed in calfun")
        f = float(self.fn(np.array(x)))
        return f if math.isfinite(f) else _DBL_MAX


# -- the model's arrays -----------------------------------------------------------------------

class _Model:
    """BOBYQB's arrays (Powell's names): XBASE, XPT (npt rows of n), FVAL, XOPT, GOPT, HQ
    (the explicit second derivatives, packed by columns), PQ (the implicit ones), BMAT
    (npt + n rows of n), ZMAT (npt rows of npt - n - 1), SL and SU (the bounds relative to
    XBASE)."""

    def __init__(self, n: int, npt: int, sl: list[float], su: list[float]) -> None:
        self.n, self.npt, self.ndim = n, npt, npt + n
        self.nptm = npt - n - 1
        self.xbase = [0.0] * n
        self.xpt = [[0.0] * n for _ in range(npt)]
        self.fval = [0.0] * npt
        self.xopt = [0.0] * n
        self.gopt = [0.0] * n
        self.hq = [0.0] * (n * (n + 1) // 2)
        self.pq = [0.0] * npt
        self.bmat = [[0.0] * n for _ in range(npt + n)]
        self.zmat = [[0.0] * self.nptm for _ in range(npt)]
        self.sl, self.su = sl, su


def _add_hq_times(g: list[float], hq: list[float], v: list[float]) -> None:
    """g += HQ v in the order of Powell's loops over the packed HQ (``GOPT`` at labels 30
    and 540 of BOBYQB, ``HS`` at 220 of TRSBOX)."""
    ih = 0
    for j in range(len(v)):
        vj = v[j]
        for i in range(j):
            h = hq[ih]
            g[j] = g[j] + h * v[i]
            g[i] = g[i] + h * vj
            ih += 1
        g[j] = g[j] + hq[ih] * vj
        ih += 1


def _add_pq_times(g: list[float], pq: list[float], xpt: list[list[float]], v: list[float],
                  skip_zero: bool = False) -> None:
    """g += sum_k PQ(k) (XPT(k,.) . v) XPT(k,.) (the implicit second derivatives times v);
    ``skip_zero``: TRSBOX skips the points with PQ(k) = 0."""
    for pk, xk in zip(pq, xpt, strict=True):
        if skip_zero and pk == 0.0:
            continue
        temp = 0.0
        for xkj, vj in zip(xk, v, strict=True):
            temp = temp + xkj * vj
        temp = pk * temp
        for i, xki in enumerate(xk):  # (a loop: cheaper than a new list for a few elements)
            g[i] = g[i] + temp * xki


# From this many parameters on, TRSBOX's products of the second derivative matrix with a
# vector (its most frequent O(n^2 + npt n) work) run in numpy. The sums are still taken in
# the Fortran's order: numpy's cumulative sums (np.add.accumulate) add one term at a time,
# left to right, unlike its sums and dot products, so the last partial sum is the Fortran
# loop's sum, bit for bit; products are elementwise. Below it, numpy's per-call cost
# exceeds the Python loops' (measured, 2026-12-03: no gain up to 12 parameters, 10 % at 21
# on a quadratic, 33 % at 30; 3.0 -> 2.0 ms per evaluation on a glmer first stage of 21 θ,
# whose TRSBOX runs more conjugate gradient steps). tests/test_bobyqa_minqa.py's 12-parameter
# case runs this path, the others the loops.
_NUMPY_FROM = 12


class _SecondDerivatives:
    """HS = (HQ + sum_k PQ(k) XPT(k,.) XPT(k,.)^T) S as TRSBOX's label 210 computes it,
    for the HQ, PQ and XPT of one TRSBOX call (they do not change within it)."""

    def __init__(self, hq: list[float], pq: list[float], xpt: list[list[float]],
                 n: int) -> None:
        full = np.empty((n, n))
        ih = 0
        for j in range(n):
            for i in range(j + 1):
                full[i, j] = full[j, i] = hq[ih]
                ih += 1
        # Powell's loop adds to HS(J) the terms of row J of HQ in column order (HQ(I,J) S(I)
        # for I < J at its J-th pass, HQ(J,J') S(J') for J' >= J at later passes)
        self.full = full
        keep = [k for k, pk in enumerate(pq) if pk != 0.0]  # (PQ(K) = 0 is skipped)
        self.x = np.array([xpt[k] for k in keep]).reshape(len(keep), n)
        self.p = np.array([pq[k] for k in keep])

    def times(self, s: list[float]) -> list[float]:
        sv = np.array(s)
        # row j: ((HQ(j,1) S(1) + HQ(j,2) S(2)) + ...), from HS(J) = 0
        hs = np.add.accumulate(self.full * sv, axis=1)[:, -1]
        if self.p.size:
            # TEMP_k = PQ(k) (XPT(k,.) . S), then HS(I) += TEMP_k XPT(k,I) for k in order
            temp = self.p * np.add.accumulate(self.x * sv, axis=1)[:, -1]
            terms = np.vstack([hs[None, :], temp[:, None] * self.x])
            hs = np.add.accumulate(terms, axis=0)[-1]
        return hs.tolist()


# -- PRELIM -----------------------------------------------------------------------------------

def prelim(m: _Model, x: list[float], xl: list[float], xu: list[float], rhobeg: float,
           maxfun: int, calfun: _Calfun) -> tuple[int, int]:
    """Powell's PRELIM: the first npt points (x0, then steps of rhobeg along each axis and
    back, then pairs of axes) and the first quadratic model and H; (nf, kopt)."""
    n, npt = m.n, m.npt
    xbase, xpt, fval, gopt, hq, bmat, zmat = m.xbase, m.xpt, m.fval, m.gopt, m.hq, m.bmat, m.zmat
    sl, su = m.sl, m.su
    rhosq = rhobeg * rhobeg
    recip = 1.0 / rhosq
    np_ = n + 1
    xbase[:] = x
    nf = 0
    kopt = 0
    fbeg = 0.0
    stepa = stepb = 0.0
    ipt = jpt = 0
    while True:
        # 1-based counters as in the Fortran: NF is the number of the point being set
        nfm = nf
        nfx = nf - n
        nf += 1
        row = xpt[nf - 1]
        if nfm <= 2 * n:
            if 1 <= nfm <= n:
                stepa = rhobeg
                if su[nfm - 1] == 0.0:
                    stepa = -stepa
                row[nfm - 1] = stepa
            elif nfm > n:
                stepa = xpt[nf - n - 1][nfx - 1]
                stepb = -rhobeg
                if sl[nfx - 1] == 0.0:
                    stepb = min(2.0 * rhobeg, su[nfx - 1])
                if su[nfx - 1] == 0.0:
                    stepb = max(-2.0 * rhobeg, sl[nfx - 1])
                row[nfx - 1] = stepb
        else:
            itemp = (nfm - np_) // n
            jpt = nfm - itemp * n - n
            ipt = jpt + itemp
            if ipt > n:
                itemp = jpt
                jpt = ipt - n
                ipt = itemp
            row[ipt - 1] = xpt[ipt][ipt - 1]
            row[jpt - 1] = xpt[jpt][jpt - 1]
        for j in range(n):
            x[j] = min(max(xl[j], xbase[j] + row[j]), xu[j])
            if row[j] == sl[j]:
                x[j] = xl[j]
            if row[j] == su[j]:
                x[j] = xu[j]
        f = calfun(x)
        fval[nf - 1] = f
        if nf == 1:
            fbeg = f
            kopt = 1
        elif f < fval[kopt - 1]:
            kopt = nf
        # the initial BMAT, ZMAT and model; for NF > N + 1 the NF-th and (NF-N)-th points
        # may be switched so that the lower value contributes to the off-diagonal terms
        if nf <= 2 * n + 1:
            if 2 <= nf <= n + 1:
                gopt[nfm - 1] = (f - fbeg) / stepa
                if npt < nf + n:
                    bmat[0][nfm - 1] = -1.0 / stepa
                    bmat[nf - 1][nfm - 1] = 1.0 / stepa
                    bmat[npt + nfm - 1][nfm - 1] = -0.5 * rhosq
            elif nf >= n + 2:
                ih = (nfx * (nfx + 1)) // 2 - 1
                temp = (f - fbeg) / stepb
                diff = stepb - stepa
                hq[ih] = 2.0 * (temp - gopt[nfx - 1]) / diff
                gopt[nfx - 1] = (gopt[nfx - 1] * stepb - temp * stepa) / diff
                if stepa * stepb < 0.0 and f < fval[nf - n - 1]:
                    fval[nf - 1] = fval[nf - n - 1]
                    fval[nf - n - 1] = f
                    if kopt == nf:
                        kopt = nf - n
                    xpt[nf - n - 1][nfx - 1] = stepb
                    row[nfx - 1] = stepa
                bmat[0][nfx - 1] = -(stepa + stepb) / (stepa * stepb)
                bmat[nf - 1][nfx - 1] = -0.5 / xpt[nf - n - 1][nfx - 1]
                bmat[nf - n - 1][nfx - 1] = -bmat[0][nfx - 1] - bmat[nf - 1][nfx - 1]
                zmat[0][nfx - 1] = math.sqrt(2.0) / (stepa * stepb)
                zmat[nf - 1][nfx - 1] = math.sqrt(0.5) / rhosq
                zmat[nf - n - 1][nfx - 1] = -zmat[0][nfx - 1] - zmat[nf - 1][nfx - 1]
        else:
            ih = (ipt * (ipt - 1)) // 2 + jpt - 1
            zmat[0][nfx - 1] = recip
            zmat[nf - 1][nfx - 1] = recip
            zmat[ipt][nfx - 1] = -recip
            zmat[jpt][nfx - 1] = -recip
            temp = row[ipt - 1] * row[jpt - 1]
            hq[ih] = (fbeg - fval[ipt] - fval[jpt] + f) / temp
        if not (nf < npt and nf < maxfun):
            return nf, kopt - 1


# -- TRSBOX -----------------------------------------------------------------------------------

def trsbox(m: _Model, delta: float, xnew: list[float], d: list[float],
           gnew: list[float]) -> tuple[float, float]:
    """Powell's TRSBOX: a step D from XOPT that approximately minimises the model within the
    trust region of radius ``delta`` and the bounds (truncated conjugate gradients, then
    rotations on the trust region's boundary); XNEW = XOPT + D, GNEW the model's gradient
    there. Returns (DSQ, CRVMIN): |D|^2 and the least curvature met in an unconstrained
    search (0 if D reaches the boundary, -1 if every search was constrained)."""
    n = m.n
    xpt, xopt, gopt, hq, pq, sl, su = m.xpt, m.xopt, m.gopt, m.hq, m.pq, m.sl, m.su
    xbdi = [0.0] * n
    s = [0.0] * n
    hs = [0.0] * n
    hred = [0.0] * n

    if n >= _NUMPY_FROM:
        product = _SecondDerivatives(hq, pq, xpt, n)

        def mult_hs() -> None:  # label 210: HS = (second derivative matrix) S
            hs[:] = product.times(s)
    else:
        def mult_hs() -> None:  # label 210: HS = (second derivative matrix) S
            for i in range(n):
                hs[i] = 0.0
            _add_hq_times(hs, hq, s)
            _add_pq_times(hs, pq, xpt, s, skip_zero=True)

    iterc = 0
    nact = 0
    for i in range(n):
        xbdi[i] = 0.0
        if xopt[i] <= sl[i]:
            if gopt[i] >= 0.0:
                xbdi[i] = -1.0
        elif xopt[i] >= su[i] and gopt[i] <= 0.0:
            xbdi[i] = 1.0
        if xbdi[i] != 0.0:
            nact += 1
        d[i] = 0.0
        gnew[i] = gopt[i]
    delsq = delta * delta
    qred = 0.0
    crvmin = -1.0
    beta = gredsq = stepsq = ggsav = 0.0
    itermax = 0
    dredsq = dredg = sredg = angbd = xsav = 0.0
    iact = -1
    label = 20
    while True:
        if label == 20:  # restart the conjugate gradients (steepest descent)
            beta = 0.0
            label = 30
        if label == 30:
            stepsq = 0.0
            for i in range(n):
                if xbdi[i] != 0.0:
                    s[i] = 0.0
                elif beta == 0.0:
                    s[i] = -gnew[i]
                else:
                    s[i] = beta * s[i] - gnew[i]
                stepsq = stepsq + s[i] * s[i]
            if stepsq == 0.0:
                label = 190
            else:
                if beta == 0.0:
                    gredsq = stepsq
                    itermax = iterc + n - nact
                if gredsq * delsq <= 1.0e-4 * qred * qred:
                    label = 190
                else:
                    mult_hs()  # CRVMIN is not zero here: on to label 50
                    label = 50
        if label == 50:  # the step length along S, the bounds, the CG update
            resid = delsq
            ds = 0.0
            shs = 0.0
            for i in range(n):
                if xbdi[i] == 0.0:
                    resid = resid - d[i] * d[i]
                    ds = ds + s[i] * d[i]
                    shs = shs + s[i] * hs[i]
            if resid <= 0.0:
                label = 90
            else:
                temp = math.sqrt(stepsq * resid + ds * ds)
                blen = (temp - ds) / stepsq if ds < 0.0 else resid / (temp + ds)
                stplen = blen
                if shs > 0.0:
                    stplen = min(blen, gredsq / shs)
                iact = -1
                for i in range(n):
                    if s[i] != 0.0:
                        xsum = xopt[i] + d[i]
                        temp = ((su[i] - xsum) if s[i] > 0.0 else (sl[i] - xsum)) / s[i]
                        if temp < stplen:
                            stplen = temp
                            iact = i
                sdec = 0.0
                if stplen > 0.0:
                    iterc += 1
                    temp = shs / stepsq
                    if iact < 0 and temp > 0.0:
                        crvmin = min(crvmin, temp)
                        if crvmin == -1.0:
                            crvmin = temp
                    ggsav = gredsq
                    gredsq = 0.0
                    for i in range(n):
                        gnew[i] = gnew[i] + stplen * hs[i]
                        if xbdi[i] == 0.0:
                            gredsq = gredsq + gnew[i] * gnew[i]
                        d[i] = d[i] + stplen * s[i]
                    sdec = max(stplen * (ggsav - 0.5 * stplen * shs), 0.0)
                    qred = qred + sdec
                if iact >= 0:  # a new bound: fix the variable and restart
                    nact += 1
                    xbdi[iact] = 1.0
                    if s[iact] < 0.0:
                        xbdi[iact] = -1.0
                    delsq = delsq - d[iact] * d[iact]
                    label = 90 if delsq <= 0.0 else 20
                    continue
                if stplen < blen:
                    if iterc == itermax or sdec <= 0.01 * qred:
                        label = 190
                    else:
                        beta = gredsq / ggsav
                        label = 30
                    continue
                label = 90
        if label == 90:  # D is on the trust region's boundary
            crvmin = 0.0
            label = 100
        if label == 100:  # prepare an alternative iteration (a rotation of D)
            if nact >= n - 1:
                label = 190
            else:
                dredsq = 0.0
                dredg = 0.0
                gredsq = 0.0
                for i in range(n):
                    if xbdi[i] == 0.0:
                        dredsq = dredsq + d[i] * d[i]
                        dredg = dredg + d[i] * gnew[i]
                        gredsq = gredsq + gnew[i] * gnew[i]
                        s[i] = d[i]
                    else:
                        s[i] = 0.0
                mult_hs()  # (CRVMIN = 0, ITERC = ITCSAV): HRED = HS, on to label 120
                hred[:] = hs
                label = 120
        if label == 120:  # S: the reduced G made orthogonal to the reduced D
            iterc += 1
            temp = gredsq * dredsq - dredg * dredg
            if temp <= 1.0e-4 * qred * qred:
                label = 190
            else:
                temp = math.sqrt(temp)
                for i in range(n):
                    if xbdi[i] == 0.0:
                        s[i] = (dredg * d[i] - dredsq * gnew[i]) / temp
                    else:
                        s[i] = 0.0
                sredg = -temp
                # ANGBD: a bound on tan(half the angle) from the simple bounds; a free
                # variable already at a bound is fixed, back to label 100
                angbd = 1.0
                iact = -1
                fixed = False
                for i in range(n):
                    if xbdi[i] == 0.0:
                        tempa = xopt[i] + d[i] - sl[i]
                        tempb = su[i] - xopt[i] - d[i]
                        if tempa <= 0.0:
                            nact += 1
                            xbdi[i] = -1.0
                            fixed = True
                            break
                        elif tempb <= 0.0:
                            nact += 1
                            xbdi[i] = 1.0
                            fixed = True
                            break
                        ssq = d[i] * d[i] + s[i] * s[i]
                        t = xopt[i] - sl[i]
                        temp = ssq - t * t
                        if temp > 0.0:
                            temp = math.sqrt(temp) - s[i]
                            if angbd * temp > tempa:
                                angbd = tempa / temp
                                iact = i
                                xsav = -1.0
                        t = su[i] - xopt[i]
                        temp = ssq - t * t
                        if temp > 0.0:
                            temp = math.sqrt(temp) + s[i]
                            if angbd * temp > tempb:
                                angbd = tempb / temp
                                iact = i
                                xsav = 1.0
                if fixed:
                    label = 100
                    continue
                mult_hs()  # (CRVMIN = 0, ITERC > ITCSAV): on to label 150
                label = 150
        if label == 150:  # the best angle of the alternative iteration
            shs = 0.0
            dhs = 0.0
            dhd = 0.0
            for i in range(n):
                if xbdi[i] == 0.0:
                    shs = shs + s[i] * hs[i]
                    dhs = dhs + d[i] * hs[i]
                    dhd = dhd + d[i] * hred[i]
            redmax = 0.0
            isav = 0
            redsav = 0.0
            rdprev = rdnext = 0.0
            iu = int(17.0 * angbd + 3.1)
            angt = 0.0
            for i in range(1, iu + 1):
                angt = angbd * float(i) / float(iu)
                sth = (angt + angt) / (1.0 + angt * angt)
                temp = shs + angt * (angt * dhd - dhs - dhs)
                rednew = sth * (angt * dredg - sredg - 0.5 * sth * temp)
                if rednew > redmax:
                    redmax = rednew
                    isav = i
                    rdprev = redsav
                elif i == isav + 1:
                    rdnext = rednew
                redsav = rednew
            if isav == 0:
                label = 190
            else:
                if isav < iu:
                    temp = (rdnext - rdprev) / (redmax + redmax - rdprev - rdnext)
                    angt = angbd * (float(isav) + 0.5 * temp) / float(iu)
                cth = (1.0 - angt * angt) / (1.0 + angt * angt)
                sth = (angt + angt) / (1.0 + angt * angt)
                temp = shs + angt * (angt * dhd - dhs - dhs)
                sdec = sth * (angt * dredg - sredg - 0.5 * sth * temp)
                if sdec <= 0.0:
                    label = 190
                else:
                    dredg = 0.0
                    gredsq = 0.0
                    for i in range(n):
                        gnew[i] = gnew[i] + (cth - 1.0) * hred[i] + sth * hs[i]
                        if xbdi[i] == 0.0:
                            d[i] = cth * d[i] + sth * s[i]
                            dredg = dredg + d[i] * gnew[i]
                            gredsq = gredsq + gnew[i] * gnew[i]
                        hred[i] = cth * hred[i] + sth * hs[i]
                    qred = qred + sdec
                    if iact >= 0 and isav == iu:
                        nact += 1
                        xbdi[iact] = xsav
                        label = 100
                    elif sdec > 0.01 * qred:
                        label = 120
                    else:
                        label = 190
                    continue
        if label == 190:  # XNEW = XOPT + D, exactly on the bounds that were fixed
            dsq = 0.0
            for i in range(n):
                v = max(min(xopt[i] + d[i], su[i]), sl[i])
                if xbdi[i] == -1.0:
                    v = sl[i]
                if xbdi[i] == 1.0:
                    v = su[i]
                xnew[i] = v
                d[i] = v - xopt[i]
                dsq = dsq + d[i] * d[i]
            return dsq, crvmin


# -- ALTMOV -----------------------------------------------------------------------------------

def altmov(m: _Model, kopt: int, knew: int, adelt: float, xnew: list[float],
           xalt: list[float]) -> tuple[float, float]:
    """Powell's ALTMOV: two candidate positions for the KNEW-th point within ``adelt`` of
    XOPT, XNEW on a line through XOPT and another point (a large denominator) and XALT a
    constrained Cauchy step of the KNEW-th Lagrange function; (ALPHA, CAUCHY)."""
    n, npt = m.n, m.npt
    xpt, xopt, bmat, zmat, sl, su = m.xpt, m.xopt, m.bmat, m.zmat, m.sl, m.su
    const = 1.0 + math.sqrt(2.0)
    # HCOL: the KNEW-th column of H's leading npt x npt block
    hcol = [0.0] * npt
    zk = zmat[knew]
    for j in range(m.nptm):
        temp = zk[j]
        for k in range(npt):
            hcol[k] = hcol[k] + temp * zmat[k][j]
    alpha = hcol[knew]
    ha = 0.5 * alpha
    # GLAG: the gradient of the KNEW-th Lagrange function at XOPT
    glag = list(bmat[knew])
    for k in range(npt):
        xk = xpt[k]
        temp = 0.0
        for j in range(n):
            temp = temp + xk[j] * xopt[j]
        temp = hcol[k] * temp
        for i in range(n):
            glag[i] = glag[i] + temp * xk[i]
    # a large denominator along the lines through XOPT and each other point
    presav = 0.0
    # (the Fortran leaves these undefined if no line gives a positive PREDSQ)
    ksav, stpsav = knew, 0.0
    for k in range(npt):
        if k == kopt:
            continue
        xk = xpt[k]
        dderiv = 0.0
        distsq = 0.0
        for i in range(n):
            temp = xk[i] - xopt[i]
            dderiv = dderiv + glag[i] * temp
            distsq = distsq + temp * temp
        subd = adelt / math.sqrt(distsq)
        slbd = -subd
        sumin = min(1.0, subd)
        # SLBD and SUBD within the bounds (Powell's ILBD, IUBD, ISBD and IBDSAV, the bound
        # each step meets, are dropped: minqa sets IBDSAV = 0 before it would be used)
        for i in range(n):
            temp = xk[i] - xopt[i]
            if temp > 0.0:
                if slbd * temp < sl[i] - xopt[i]:
                    slbd = (sl[i] - xopt[i]) / temp
                if subd * temp > su[i] - xopt[i]:
                    subd = max(sumin, (su[i] - xopt[i]) / temp)
            elif temp < 0.0:
                if slbd * temp > su[i] - xopt[i]:
                    slbd = (su[i] - xopt[i]) / temp
                if subd * temp < sl[i] - xopt[i]:
                    subd = max(sumin, (sl[i] - xopt[i]) / temp)
        if k == knew:
            diff = dderiv - 1.0
            step = slbd
            vlag = slbd * (dderiv - slbd * diff)
            temp = subd * (dderiv - subd * diff)
            if abs(temp) > abs(vlag):
                step = subd
                vlag = temp
            tempd = 0.5 * dderiv
            tempa = tempd - diff * slbd
            tempb = tempd - diff * subd
            if tempa * tempb < 0.0:
                temp = tempd * tempd / diff
                if abs(temp) > abs(vlag):
                    step = tempd / diff
                    vlag = temp
        else:
            step = slbd
            vlag = slbd * (1.0 - slbd)
            temp = subd * (1.0 - subd)
            if abs(temp) > abs(vlag):
                step = subd
                vlag = temp
            if subd > 0.5 and abs(vlag) < 0.25:
                step = 0.5
                vlag = 0.25
            vlag = vlag * dderiv
        temp = step * (1.0 - step) * distsq
        predsq = vlag * vlag * (vlag * vlag + ha * temp * temp)
        if predsq > presav:
            presav = predsq
            ksav = k
            stpsav = step
    # XNEW on the chosen line (minqa sets IBDSAV = 0 here, its 2022 fix of an uninitialised
    # variable, so no bound is imposed exactly beyond the clipping)
    xk = xpt[ksav]
    for i in range(n):
        temp = xopt[i] + stpsav * (xk[i] - xopt[i])
        xnew[i] = max(sl[i], min(su[i], temp))
    # XALT: the constrained Cauchy step in W (its fixed components' squares in WFIXSQ, the
    # free ones set to BIGSTP), first downhill, then uphill after reversing GLAG
    bigstp = adelt + adelt
    w = [0.0] * n
    wdown = [0.0] * n
    csave = 0.0
    cauchy = 0.0
    iflag = 0
    while True:  # label 100
        wfixsq = 0.0
        ggfree = 0.0
        for i in range(n):
            w[i] = 0.0
            tempa = min(xopt[i] - sl[i], glag[i])
            tempb = max(xopt[i] - su[i], glag[i])
            if tempa > 0.0 or tempb < 0.0:
                w[i] = bigstp
                ggfree = ggfree + glag[i] * glag[i]
        if ggfree == 0.0:
            return alpha, 0.0
        step = 0.0
        while True:  # label 120
            temp = adelt * adelt - wfixsq
            if temp > 0.0:
                wsqsav = wfixsq
                step = math.sqrt(temp / ggfree)
                ggfree = 0.0
                for i in range(n):
                    if w[i] == bigstp:
                        temp = xopt[i] - step * glag[i]
                        if temp <= sl[i]:
                            w[i] = sl[i] - xopt[i]
                            wfixsq = wfixsq + w[i] * w[i]
                        elif temp >= su[i]:
                            w[i] = su[i] - xopt[i]
                            wfixsq = wfixsq + w[i] * w[i]
                        else:
                            ggfree = ggfree + glag[i] * glag[i]
                if wfixsq > wsqsav and ggfree > 0.0:
                    continue
            break
        gw = 0.0
        for i in range(n):
            if w[i] == bigstp:
                w[i] = -step * glag[i]
                xalt[i] = max(sl[i], min(su[i], xopt[i] + w[i]))
            elif w[i] == 0.0:
                xalt[i] = xopt[i]
            elif glag[i] > 0.0:
                xalt[i] = sl[i]
            else:
                xalt[i] = su[i]
            gw = gw + glag[i] * w[i]
        # CURV: the curvature of the KNEW-th Lagrange function along W
        curv = 0.0
        for k in range(npt):
            xk = xpt[k]
            temp = 0.0
            for j in range(n):
                temp = temp + xk[j] * w[j]
            curv = curv + hcol[k] * temp * temp
        if iflag == 1:
            curv = -curv
        if -gw < curv < -const * gw:
            scale = -gw / curv
            for i in range(n):
                temp = xopt[i] + scale * w[i]
                xalt[i] = max(sl[i], min(su[i], temp))
            temp = 0.5 * gw * scale
            cauchy = temp * temp
        else:
            temp = gw + 0.5 * curv
            cauchy = temp * temp
        if iflag == 0:
            for i in range(n):
                glag[i] = -glag[i]
                wdown[i] = xalt[i]
            csave = cauchy
            iflag = 1
            continue
        if csave > cauchy:
            xalt[:] = wdown
            cauchy = csave
        return alpha, cauchy


# -- UPDATE -----------------------------------------------------------------------------------

def update(m: _Model, vlag: list[float], beta: float, denom: float, knew: int) -> None:
    """Powell's UPDATE (minqa's ``UPDATEBOBYQA``): BMAT and ZMAT after the KNEW-th point
    moves, given VLAG (H w, the Lagrange functions at the new point), BETA and DENOM."""
    n, npt = m.n, m.npt
    bmat, zmat = m.bmat, m.zmat
    nptm = m.nptm
    ztest = 0.0
    for j in range(nptm):  # (the Fortran runs K outer, J inner: a max, order-free)
        for k in range(npt):
            ztest = max(ztest, abs(zmat[k][j]))
    ztest = 1.0e-20 * ztest
    # rotations that put zeros in the KNEW-th row of ZMAT
    zk = zmat[knew]
    for j in range(1, nptm):
        if abs(zk[j]) > ztest:
            temp = math.sqrt(zk[0] * zk[0] + zk[j] * zk[j])
            tempa = zk[0] / temp
            tempb = zk[j] / temp
            for i in range(npt):
                zi = zmat[i]
                temp = tempa * zi[0] + tempb * zi[j]
                zi[j] = tempa * zi[j] - tempb * zi[0]
                zi[0] = temp
        zk[j] = 0.0
    # the first NPT components of the KNEW-th column of HLAG, and the updating formula
    w = [zk[0] * zmat[i][0] for i in range(npt)]
    alpha = w[knew]
    tau = vlag[knew]
    vlag[knew] = vlag[knew] - 1.0
    temp = math.sqrt(denom)
    tempb = zk[0] / temp
    tempa = tau / temp
    for i in range(npt):
        zmat[i][0] = tempa * zmat[i][0] - tempb * vlag[i]
    w.extend([0.0] * n)
    for j in range(n):
        jp = npt + j
        w[jp] = bmat[knew][j]
        tempa = (alpha * vlag[jp] - tau * w[jp]) / denom
        tempb = (-beta * w[jp] - tau * vlag[jp]) / denom
        for i in range(npt):
            bi = bmat[i]
            bi[j] = bi[j] + tempa * vlag[i] + tempb * w[i]
        bjp = bmat[jp]
        for i in range(npt, jp + 1):  # (and the symmetric element, which no later i reads)
            v = bmat[i][j] + tempa * vlag[i] + tempb * w[i]
            bmat[i][j] = v
            bjp[i - npt] = v


# -- RESCUE -----------------------------------------------------------------------------------

def rescue(m: _Model, xl: list[float], xu: list[float], maxfun: int, nf: int, delta: float,
           kopt: int, vlag: list[float], calfun: _Calfun) -> tuple[int, int]:
    """Powell's RESCUE: XBASE moved to XOPT and BMAT, ZMAT rebuilt from provisional points
    along the axes, replacing original points whose positions make the interpolation
    conditions nearly dependent; (nf, kopt), nf = -1 when MAXFUN stops it."""
    n, npt, ndim, nptm = m.n, m.npt, m.ndim, m.nptm
    xbase, xpt, fval, xopt, gopt = m.xbase, m.xpt, m.fval, m.xopt, m.gopt
    hq, pq, bmat, zmat, sl, su = m.hq, m.pq, m.bmat, m.zmat, m.sl, m.su
    np_ = n + 1
    sfrac = 0.5 / float(np_)
    w = [0.0] * (ndim + npt)
    ptsaux = [[0.0] * n for _ in range(2)]
    ptsid = [0.0] * npt
    # shift the points so that XOPT is the origin; their squared distances in W(NDIM+K)
    sumpq = 0.0
    winc = 0.0
    for k in range(npt):
        xk = xpt[k]
        distsq = 0.0
        for j in range(n):
            xk[j] = xk[j] - xopt[j]
            distsq = distsq + xk[j] * xk[j]
        sumpq = sumpq + pq[k]
        w[ndim + k] = distsq
        winc = max(winc, distsq)
        for j in range(nptm):
            zmat[k][j] = 0.0
    ih = 0
    for j in range(n):
        w[j] = 0.5 * sumpq * xopt[j]
        for k in range(npt):
            w[j] = w[j] + pq[k] * xpt[k][j]
        for i in range(j + 1):
            hq[ih] = hq[ih] + w[i] * xopt[j] + w[j] * xopt[i]
            ih += 1
    for j in range(n):
        xbase[j] = xbase[j] + xopt[j]
        sl[j] = sl[j] - xopt[j]
        su[j] = su[j] - xopt[j]
        xopt[j] = 0.0
        ptsaux[0][j] = min(delta, su[j])
        ptsaux[1][j] = max(-delta, sl[j])
        if ptsaux[0][j] + ptsaux[1][j] < 0.0:
            temp = ptsaux[0][j]
            ptsaux[0][j] = ptsaux[1][j]
            ptsaux[1][j] = temp
        if abs(ptsaux[1][j]) < 0.5 * abs(ptsaux[0][j]):
            ptsaux[1][j] = 0.5 * ptsaux[0][j]
        for i in range(ndim):
            bmat[i][j] = 0.0
    fbase = fval[kopt]
    # identifiers of the provisional points along the axes, their BMAT and ZMAT elements
    # (PTSID(K) = p + q/(n+1) + SFRAC with p, q 1-based axes, 0 for none)
    ptsid[0] = sfrac
    for j1 in range(1, n + 1):
        j = j1 - 1
        jp = j1  # (0-based row of the Fortran's JP = J + 1)
        jpn = jp + n
        ptsid[jp] = float(j1) + sfrac
        p1, p2 = ptsaux[0][j], ptsaux[1][j]
        if jpn + 1 <= npt:
            ptsid[jpn] = float(j1) / float(np_) + sfrac
            temp = 1.0 / (p1 - p2)
            bmat[jp][j] = -temp + 1.0 / p1
            bmat[jpn][j] = temp + 1.0 / p2
            bmat[0][j] = -bmat[jp][j] - bmat[jpn][j]
            zmat[0][j] = math.sqrt(2.0) / abs(p1 * p2)
            zmat[jp][j] = zmat[0][j] * p2 * temp
            zmat[jpn][j] = -zmat[0][j] * p1 * temp
        else:
            bmat[0][j] = -1.0 / p1
            bmat[jp][j] = 1.0 / p1
            bmat[j + npt][j] = -0.5 * (p1 * p1)
    if npt >= n + np_:
        for k1 in range(2 * np_, npt + 1):
            iw = int((float(k1 - np_) - 0.5) / float(n))
            ip = k1 - np_ - iw * n
            iq = ip + iw
            if iq > n:
                iq = iq - n
            ptsid[k1 - 1] = float(ip) + float(iq) / float(np_) + sfrac
            temp = 1.0 / (ptsaux[0][ip - 1] * ptsaux[0][iq - 1])
            col = k1 - np_ - 1
            zmat[0][col] = temp
            zmat[ip][col] = -temp
            zmat[iq][col] = -temp
            zmat[k1 - 1][col] = temp

    def decode(k: int) -> tuple[int, int]:
        """(p, q) of PTSID(K), as the Fortran's integer conversions truncate."""
        ip = int(ptsid[k])
        iq = int(float(np_) * ptsid[k] - float(ip * np_))
        return ip, iq

    nrem = npt
    kold = 0
    knew = kopt
    beta = denom = 0.0
    label = 80
    while True:
        if label == 80:  # exchange PTSID(KOLD) and PTSID(KNEW)
            bo, bk = bmat[kold], bmat[knew]
            for j in range(n):
                temp = bo[j]
                bo[j] = bk[j]
                bk[j] = temp
            zo, zk = zmat[kold], zmat[knew]
            for j in range(nptm):
                temp = zo[j]
                zo[j] = zk[j]
                zk[j] = temp
            ptsid[kold] = ptsid[knew]
            ptsid[knew] = 0.0
            w[ndim + knew] = 0.0
            nrem -= 1
            if knew != kopt:
                temp = vlag[kold]
                vlag[kold] = vlag[knew]
                vlag[knew] = temp
                update(m, vlag, beta, denom, knew)
                if nrem == 0:
                    return nf, kopt
                for k in range(npt):
                    w[ndim + k] = abs(w[ndim + k])
            label = 120
        if label == 120:  # the next original point to reinstate
            dsqmin = 0.0
            for k in range(npt):
                if w[ndim + k] > 0.0 and (dsqmin == 0.0 or w[ndim + k] < dsqmin):
                    knew = k
                    dsqmin = w[ndim + k]
            if dsqmin == 0.0:
                break  # label 260
            for j in range(n):
                w[npt + j] = xpt[knew][j]
            for k in range(npt):
                sum_ = 0.0
                if k == kopt:
                    pass
                elif ptsid[k] == 0.0:
                    for j in range(n):
                        sum_ = sum_ + w[npt + j] * xpt[k][j]
                else:
                    ip, iq = decode(k)
                    if ip > 0:
                        sum_ = w[npt + ip - 1] * ptsaux[0][ip - 1]
                    if iq > 0:
                        iw = 0 if ip > 0 else 1
                        sum_ = sum_ + w[npt + iq - 1] * ptsaux[iw][iq - 1]
                w[k] = 0.5 * sum_ * sum_
            # VLAG and BETA for reinstating XPT(KNEW,.)
            for k in range(npt):
                sum_ = 0.0
                for j in range(n):
                    sum_ = sum_ + bmat[k][j] * w[npt + j]
                vlag[k] = sum_
            beta = 0.0
            for j in range(nptm):
                sum_ = 0.0
                for k in range(npt):
                    sum_ = sum_ + zmat[k][j] * w[k]
                beta = beta - sum_ * sum_
                for k in range(npt):
                    vlag[k] = vlag[k] + sum_ * zmat[k][j]
            bsum = 0.0
            distsq = 0.0
            for j in range(n):
                sum_ = 0.0
                for k in range(npt):
                    sum_ = sum_ + bmat[k][j] * w[k]
                jp = j + npt
                bsum = bsum + sum_ * w[jp]
                for ip in range(npt, ndim):
                    sum_ = sum_ + bmat[ip][j] * w[ip]
                bsum = bsum + sum_ * w[jp]
                vlag[jp] = sum_
                distsq = distsq + xpt[knew][j] * xpt[knew][j]
            beta = 0.5 * distsq * distsq + beta - bsum
            vlag[kopt] = vlag[kopt] + 1.0
            # KOLD: the provisional point to delete (the largest denominator)
            denom = 0.0
            vlmxsq = 0.0
            for k in range(npt):
                if ptsid[k] != 0.0:
                    hdiag = 0.0
                    for j in range(nptm):
                        hdiag = hdiag + zmat[k][j] * zmat[k][j]
                    den = beta * hdiag + vlag[k] * vlag[k]
                    if den > denom:
                        kold = k
                        denom = den
                vlmxsq = max(vlmxsq, vlag[k] * vlag[k])
            if denom <= 1.0e-2 * vlmxsq:
                w[ndim + knew] = -w[ndim + knew] - winc
                label = 120
            else:
                label = 80
    # label 260: evaluate F at the provisional points that remain, updating the model
    for kpt in range(npt):
        if ptsid[kpt] == 0.0:
            continue
        if nf >= maxfun:
            return -1, kopt
        ih = 0
        xk = xpt[kpt]
        for j in range(n):
            w[j] = xk[j]
            xk[j] = 0.0
            temp = pq[kpt] * w[j]
            for i in range(j + 1):
                hq[ih] = hq[ih] + temp * w[i]
                ih += 1
        pq[kpt] = 0.0
        ip, iq = decode(kpt)
        xp = xq = 0.0
        ihp = 0
        if ip > 0:
            xp = ptsaux[0][ip - 1]
            xk[ip - 1] = xp
        if iq > 0:
            xq = ptsaux[0][iq - 1]
            if ip == 0:
                xq = ptsaux[1][iq - 1]
            xk[iq - 1] = xq
        # VQUAD: the current model at the new point
        vquad = fbase
        if ip > 0:
            ihp = (ip + ip * ip) // 2
            vquad = vquad + xp * (gopt[ip - 1] + 0.5 * xp * hq[ihp - 1])
        if iq > 0:
            ihq = (iq + iq * iq) // 2
            vquad = vquad + xq * (gopt[iq - 1] + 0.5 * xq * hq[ihq - 1])
            if ip > 0:
                iw = max(ihp, ihq) - abs(ip - iq)
                vquad = vquad + xp * xq * hq[iw - 1]
        for k in range(npt):
            temp = 0.0
            if ip > 0:
                temp = temp + xp * xpt[k][ip - 1]
            if iq > 0:
                temp = temp + xq * xpt[k][iq - 1]
            vquad = vquad + 0.5 * pq[k] * temp * temp
        for i in range(n):
            v = min(max(xl[i], xbase[i] + xk[i]), xu[i])
            if xk[i] == sl[i]:
                v = xl[i]
            if xk[i] == su[i]:
                v = xu[i]
            w[i] = v
        nf += 1
        # Powell's CALFUN(N,W,F); minqa's CALFUN(N,X,IPRINT) reads an undefined X here
        f = calfun(w[:n])
        fval[kpt] = f
        if f < fval[kopt]:
            kopt = kpt
        diff = f - vquad
        # update the model (the new point's Lagrange function times DIFF)
        for i in range(n):
            gopt[i] = gopt[i] + diff * bmat[kpt][i]
        for k in range(npt):
            sum_ = 0.0
            for j in range(nptm):
                sum_ = sum_ + zmat[k][j] * zmat[kpt][j]
            temp = diff * sum_
            if ptsid[k] == 0.0:
                pq[k] = pq[k] + temp
            else:
                ip, iq = decode(k)
                ihq = (iq * iq + iq) // 2
                if ip == 0:
                    hq[ihq - 1] = hq[ihq - 1] + temp * (ptsaux[1][iq - 1] * ptsaux[1][iq - 1])
                else:
                    ihp = (ip * ip + ip) // 2
                    hq[ihp - 1] = hq[ihp - 1] + temp * (ptsaux[0][ip - 1] * ptsaux[0][ip - 1])
                    if iq > 0:
                        hq[ihq - 1] = hq[ihq - 1] + temp * (ptsaux[0][iq - 1]
                                                            * ptsaux[0][iq - 1])
                        iw = max(ihp, ihq) - abs(iq - ip)
                        hq[iw - 1] = hq[iw - 1] + temp * ptsaux[0][ip - 1] * ptsaux[0][iq - 1]
        ptsid[kpt] = 0.0
    return nf, kopt


# -- BOBYQB -----------------------------------------------------------------------------------

def _shift_base(m: _Model, xnew: list[float], vlag: list[float]) -> None:
    """BOBYQB's label 90 block: XBASE moved to XOPT (severe cancellation is likely when XOPT
    is far from XBASE), with the changes to BMAT and to the model's second derivatives."""
    n, npt, nptm = m.n, m.npt, m.nptm
    xpt, xopt, bmat, zmat, pq, hq = m.xpt, m.xopt, m.bmat, m.zmat, m.pq, m.hq
    xoptsq = 0.0
    for i in range(n):
        xoptsq = xoptsq + xopt[i] * xopt[i]
    fracsq = 0.25 * xoptsq
    sumpq = 0.0
    w = [0.0] * n
    wnpt = [0.0] * npt  # W(NPT+K)
    for k in range(npt):
        xk = xpt[k]
        sumpq = sumpq + pq[k]
        sum_ = -0.5 * xoptsq
        for i in range(n):
            sum_ = sum_ + xk[i] * xopt[i]
        wnpt[k] = sum_
        temp = fracsq - 0.5 * sum_
        bk = bmat[k]
        for i in range(n):
            w[i] = bk[i]
            vlag[i] = sum_ * xk[i] + temp * xopt[i]
            brow = bmat[npt + i]
            wi, vi = w[i], vlag[i]
            for j in range(i + 1):
                brow[j] = brow[j] + wi * vlag[j] + vi * w[j]
    # the revisions of BMAT that depend on ZMAT
    for jj in range(nptm):
        sumz = 0.0
        sumw = 0.0
        for k in range(npt):
            z = zmat[k][jj]
            sumz = sumz + z
            vlag[k] = wnpt[k] * z
            sumw = sumw + vlag[k]
        for j in range(n):
            sum_ = (fracsq * sumz - 0.5 * sumw) * xopt[j]
            for k in range(npt):
                sum_ = sum_ + vlag[k] * xpt[k][j]
            w[j] = sum_
            for k in range(npt):
                bmat[k][j] = bmat[k][j] + sum_ * zmat[k][jj]
        for i in range(n):
            brow = bmat[i + npt]
            temp = w[i]
            for j in range(i + 1):
                brow[j] = brow[j] + temp * w[j]
    # complete the shift, with the second derivative parameters of the model
    ih = 0
    for j in range(n):
        wj = -0.5 * sumpq * xopt[j]
        for k in range(npt):
            wj = wj + pq[k] * xpt[k][j]
            xpt[k][j] = xpt[k][j] - xopt[j]
        w[j] = wj
        for i in range(j + 1):
            hq[ih] = hq[ih] + w[i] * xopt[j] + xopt[i] * w[j]
            bmat[npt + i][j] = bmat[npt + j][i]
            ih += 1
    for i in range(n):
        m.xbase[i] = m.xbase[i] + xopt[i]
        xnew[i] = xnew[i] - xopt[i]
        m.sl[i] = m.sl[i] - xopt[i]
        m.su[i] = m.su[i] - xopt[i]
        xopt[i] = 0.0


def _choose_knew(m: _Model, beta: float, vlag: list[float], delta: float,
                 centre: list[float], skip: int) -> tuple[int, float, float, float]:
    """The point to replace by a trust region step (BOBYQB's loops 350 and 460): the
    largest denominator BETA HDIAG + VLAG(K)^2, weighted by the distance from ``centre``
    when beyond ``delta``; (KNEW (-1: none), DENOM, SCADEN, BIGLSQ)."""
    npt, nptm, n = m.npt, m.nptm, m.n
    xpt, zmat = m.xpt, m.zmat
    delsq = delta * delta
    scaden = 0.0
    biglsq = 0.0
    knew = -1
    denom = 0.0
    for k in range(npt):
        if k == skip:
            continue
        zk = zmat[k]
        hdiag = 0.0
        for jj in range(nptm):
            hdiag = hdiag + zk[jj] * zk[jj]
        vk = vlag[k]
        den = beta * hdiag + vk * vk
        xk = xpt[k]
        distsq = 0.0
        for j in range(n):
            t = xk[j] - centre[j]
            distsq = distsq + t * t
        q = distsq / delsq
        temp = max(1.0, q * q)
        if temp * den > scaden:
            scaden = temp * den
            knew = k
            denom = den
        biglsq = max(biglsq, temp * (vk * vk))
    return knew, denom, scaden, biglsq


def bobyqb(calfun: _Calfun, n: int, npt: int, x: list[float], xl: list[float],
           xu: list[float], rhobeg: float, rhoend: float, maxfun: int, sl: list[float],
           su: list[float]) -> int:
    """Powell's BOBYQB: the trust region iterations. ``x`` is set to the point returned;
    returns minqa's IERR (0, 320, 390 or 430)."""
    m = _Model(n, npt, sl, su)
    nptm = m.nptm
    nh = (n * (n + 1)) // 2
    xpt, fval, xopt, gopt, hq, pq, bmat, zmat = (m.xpt, m.fval, m.xopt, m.gopt, m.hq, m.pq,
                                                  m.bmat, m.zmat)
    ndim = m.ndim
    xnew = [0.0] * n
    xalt = [0.0] * n
    d = [0.0] * n
    gnew = [0.0] * n  # TRSBOX's GNEW (BOBYQB's W(1..N) after TRSBOX)
    vlag = [0.0] * ndim
    w = [0.0] * npt  # W(K), K <= NPT
    wnpt = [0.0] * npt  # W(NPT+K): XPT(K,.) . D at label 230, for VQUAD
    ierr = 0

    nf, kopt = prelim(m, x, xl, xu, rhobeg, maxfun, calfun)
    xoptsq = 0.0
    for i in range(n):
        xopt[i] = xpt[kopt][i]
        xoptsq = xoptsq + xopt[i] * xopt[i]
    fsave = fval[0]
    f = fsave
    # (variables the Fortran sets before any use on every path)
    rho = rhobeg
    delta = rho
    nresc = nf
    ntrits = 0
    diffa = diffb = diffc = 0.0
    itest = 0
    nfsav = nf
    kbase = 0
    knew = -1
    dsq = crvmin = dnorm = ratio = denom = alpha = beta = cauchy = adelt = distsq = 0.0
    vquad = 0.0
    label = 20
    if nf < npt:
        ierr = 390
        label = 720
    while True:
        if label == 20:  # GOPT at XOPT, if XOPT is not the base point of the model
            if kopt != kbase:
                _add_hq_times(gopt, hq, xopt)
                if nf > npt:
                    _add_pq_times(gopt, pq, xpt, xopt)
            label = 60
        if label == 60:  # a trust region step
            dsq, crvmin = trsbox(m, delta, xnew, d, gnew)
            dnorm = min(delta, math.sqrt(dsq))
            if dnorm < 0.5 * rho:
                # too short to try: reduce RHO, or end, if the model's errors at the last
                # three points are small compared with the improvements likely within RHO/2
                ntrits = -1
                t = 10.0 * rho
                distsq = t * t
                if nf <= nfsav + 2:
                    label = 650
                else:
                    errbig = max(diffa, diffb, diffc)
                    frhosq = 0.125 * rho * rho
                    if crvmin > 0.0 and errbig > frhosq * crvmin:
                        label = 650
                    else:
                        bdtol = errbig / rho
                        label = 680
                        for j in range(n):
                            bdtest = bdtol
                            if xnew[j] == sl[j]:
                                bdtest = gnew[j]
                            if xnew[j] == su[j]:
                                bdtest = -gnew[j]
                            if bdtest < bdtol:
                                curv = hq[(j + 1 + (j + 1) * (j + 1)) // 2 - 1]
                                for k in range(npt):
                                    xkj = xpt[k][j]
                                    curv = curv + pq[k] * (xkj * xkj)
                                bdtest = bdtest + 0.5 * curv * rho
                                if bdtest < bdtol:
                                    label = 650
                                    break
            else:
                ntrits += 1
                label = 90
        if label == 90:
            if dsq <= 1.0e-3 * xoptsq:
                _shift_base(m, xnew, vlag)
                xoptsq = 0.0
            label = 210 if ntrits == 0 else 230
        if label == 190:  # RESCUE (rounding errors have damaged a denominator)
            nfsav = nf
            kbase = kopt
            nf, kopt = rescue(m, xl, xu, maxfun, nf, delta, kopt, vlag, calfun)
            xoptsq = 0.0
            if kopt != kbase:
                for i in range(n):
                    xopt[i] = xpt[kopt][i]
                    xoptsq = xoptsq + xopt[i] * xopt[i]
            if nf < 0:
                nf = maxfun
                ierr = 390
                label = 720
            else:
                nresc = nf
                if nfsav < nf:
                    nfsav = nf
                    label = 20
                    continue
                if ntrits > 0:
                    label = 60
                    continue
                label = 210
        if label == 210:  # an alternative step, to improve the interpolation set
            alpha, cauchy = altmov(m, kopt, knew, adelt, xnew, xalt)
            for i in range(n):
                d[i] = xnew[i] - xopt[i]
            label = 230
        if label == 230:  # VLAG and BETA for D; XPT(K,.) . D kept in W(NPT+K) for VQUAD
            for k in range(npt):
                suma = 0.0
                sumb = 0.0
                sum_ = 0.0
                for xkj, dj, xoj, bkj in zip(xpt[k], d, xopt, bmat[k], strict=True):
                    suma = suma + xkj * dj
                    sumb = sumb + xkj * xoj
                    sum_ = sum_ + bkj * dj
                w[k] = suma * (0.5 * suma + sumb)
                vlag[k] = sum_
                wnpt[k] = suma
            beta = 0.0
            for jj in range(nptm):
                sum_ = 0.0
                for zk, wk in zip(zmat, w, strict=True):
                    sum_ = sum_ + zk[jj] * wk
                beta = beta - sum_ * sum_
                for k, zk in enumerate(zmat):
                    vlag[k] = vlag[k] + sum_ * zk[jj]
            dsq = 0.0
            bsum = 0.0
            dx = 0.0
            for j in range(n):
                dj = d[j]
                dsq = dsq + dj * dj
                sum_ = 0.0
                for wk, bk in zip(w, bmat, strict=False):
                    sum_ = sum_ + wk * bk[j]
                bsum = bsum + sum_ * dj
                jp = npt + j
                for bjpi, di in zip(bmat[jp], d, strict=True):
                    sum_ = sum_ + bjpi * di
                vlag[jp] = sum_
                bsum = bsum + sum_ * dj
                dx = dx + dj * xopt[j]
            beta = dx * dx + dsq * (xoptsq + dx + dx + 0.5 * dsq) + beta - bsum
            vlag[kopt] = vlag[kopt] + 1.0
            if ntrits == 0:
                # the Cauchy step XALT may give a larger denominator than ALTMOV's XNEW
                vk = vlag[knew]
                denom = vk * vk + alpha * beta
                if denom < cauchy and cauchy > 0.0:
                    for i in range(n):
                        xnew[i] = xalt[i]
                        d[i] = xnew[i] - xopt[i]
                    cauchy = 0.0
                    continue  # label 230 again
                if denom <= 0.5 * (vk * vk):
                    if nf > nresc:
                        label = 190
                        continue
                    ierr = 320
                    label = 720
                else:
                    label = 360
            else:
                # KNEW: the point to make room for the trust region step, chosen before F
                # is computed, so that RESCUE can be called if the denominator is damaged
                knew, denom, scaden, biglsq = _choose_knew(m, beta, vlag, delta, xopt, kopt)
                if scaden <= 0.5 * biglsq:
                    if nf > nresc:
                        label = 190
                        continue
                    ierr = 320
                    label = 720
                else:
                    label = 360
        if label == 360:  # F at XBASE + XNEW, unless MAXFUN evaluations have been made
            for i in range(n):
                xi = min(max(xl[i], m.xbase[i] + xnew[i]), xu[i])
                if xnew[i] == sl[i]:
                    xi = xl[i]
                if xnew[i] == su[i]:
                    xi = xu[i]
                x[i] = xi
            if nf >= maxfun:
                ierr = 390
                label = 720
            else:
                nf += 1
                f = calfun(x)
                if ntrits == -1:
                    fsave = f
                    label = 720
                else:
                    label = 400
        if label == 400:
            # the model's prediction of the change in F, and its error DIFF
            fopt = fval[kopt]
            vquad = 0.0
            ih = 0
            for j in range(n):
                dj = d[j]
                vquad = vquad + dj * gopt[j]
                for i in range(j + 1):
                    temp = d[i] * dj
                    if i == j:
                        temp = 0.5 * temp
                    vquad = vquad + hq[ih] * temp
                    ih += 1
            for k in range(npt):
                t = wnpt[k]
                vquad = vquad + 0.5 * pq[k] * (t * t)
            diff = f - fopt - vquad
            diffc = diffb
            diffb = diffa
            diffa = abs(diff)
            if dnorm > rho:
                nfsav = nf
            if ntrits > 0:  # the next DELTA after a trust region step
                if vquad >= 0.0:
                    ierr = 430
                    label = 720
                    continue
                ratio = (f - fopt) / vquad
                if ratio <= 0.1:
                    delta = min(0.5 * delta, dnorm)
                elif ratio <= 0.7:
                    delta = max(0.5 * delta, dnorm)
                else:
                    delta = max(0.5 * delta, dnorm + dnorm)
                if delta <= 1.5 * rho:
                    delta = rho
                if f < fopt:  # KNEW and DENOM again, about the new point
                    ksav, densav = knew, denom
                    knew, denom, scaden, biglsq = _choose_knew(m, beta, vlag, delta, xnew,
                                                               -1)
                    if scaden <= 0.5 * biglsq:
                        knew, denom = ksav, densav
            # BMAT and ZMAT for moving the KNEW-th point, and the model's second derivatives
            update(m, vlag, beta, denom, knew)
            ih = 0
            pqold = pq[knew]
            pq[knew] = 0.0
            xknew = xpt[knew]
            for i in range(n):
                temp = pqold * xknew[i]
                for j in range(i + 1):
                    hq[ih] = hq[ih] + temp * xknew[j]
                    ih += 1
            zknew = zmat[knew]
            for jj in range(nptm):
                temp = diff * zknew[jj]
                for k, zk in enumerate(zmat):
                    pq[k] = pq[k] + temp * zk[jj]
            # the new point in the set, and the change to GOPT at the old XOPT
            fval[knew] = f
            for i in range(n):
                xknew[i] = xnew[i]
                w[i] = bmat[knew][i]  # (W(1..N); n < npt)
            for zk, xk in zip(zmat, xpt, strict=True):
                suma = 0.0
                for zkn, zkj in zip(zknew, zk, strict=True):
                    suma = suma + zkn * zkj
                sumb = 0.0
                for xkj, xoj in zip(xk, xopt, strict=True):
                    sumb = sumb + xkj * xoj
                temp = suma * sumb
                for i, xki in enumerate(xk):
                    w[i] = w[i] + temp * xki
            for i in range(n):
                gopt[i] = gopt[i] + diff * w[i]
            if f < fopt:  # the new best point: XOPT, GOPT, KOPT
                kopt = knew
                xoptsq = 0.0
                for j in range(n):
                    xopt[j] = xnew[j]
                    xoptsq = xoptsq + xopt[j] * xopt[j]
                _add_hq_times(gopt, hq, d)
                _add_pq_times(gopt, pq, xpt, d)
            if ntrits > 0:
                # the least Frobenius norm interpolant to the current data, its gradient at
                # XOPT in VLAG(NPT+I); it replaces the model if that has been much worse
                # three times running
                fk = fval[kopt]
                for k in range(npt):
                    vlag[k] = fval[k] - fk
                    w[k] = 0.0
                for j in range(nptm):
                    sum_ = 0.0
                    for zk, vk in zip(zmat, vlag, strict=False):
                        sum_ = sum_ + zk[j] * vk
                    for k, zk in enumerate(zmat):
                        w[k] = w[k] + sum_ * zk[j]
                for k, xk in enumerate(xpt):
                    sum_ = 0.0
                    for xkj, xoj in zip(xk, xopt, strict=True):
                        sum_ = sum_ + xkj * xoj
                    wnpt[k] = w[k]
                    w[k] = sum_ * w[k]
                gqsq = 0.0
                gisq = 0.0
                for i in range(n):
                    sum_ = 0.0
                    for bk, vk, xk, wk in zip(bmat, vlag, xpt, w, strict=False):
                        sum_ = sum_ + bk[i] * vk + xk[i] * wk
                    g = gopt[i]
                    if xopt[i] == sl[i]:
                        t, u = min(0.0, g), min(0.0, sum_)
                    elif xopt[i] == su[i]:
                        t, u = max(0.0, g), max(0.0, sum_)
                    else:
                        t, u = g, sum_
                    gqsq = gqsq + t * t
                    gisq = gisq + u * u
                    vlag[npt + i] = sum_
                itest += 1
                if gqsq < 10.0 * gisq:
                    itest = 0
                if itest >= 3:
                    for i in range(max(npt, nh)):
                        if i < n:
                            gopt[i] = vlag[npt + i]
                        if i < npt:
                            pq[i] = wnpt[i]
                        if i < nh:
                            hq[i] = 0.0
                        itest = 0
            # another trust region step after a sufficient decrease (or an alternative one)
            if ntrits == 0 or f <= fopt + 0.1 * vquad:
                label = 60
                continue
            t = 2.0 * delta
            u = 10.0 * rho
            distsq = max(t * t, u * u)
            label = 650
        if label == 650:  # is an interpolation point too far from XOPT?
            knew = -1
            for k in range(npt):
                xk = xpt[k]
                sum_ = 0.0
                for j in range(n):
                    t = xk[j] - xopt[j]
                    sum_ = sum_ + t * t
                if sum_ > distsq:
                    knew = k
                    distsq = sum_
            if knew >= 0:  # ALTMOV moves it within ADELT of XOPT (via label 90)
                dist = math.sqrt(distsq)
                if ntrits == -1:
                    delta = min(0.1 * delta, 0.5 * dist)
                    if delta <= 1.5 * rho:
                        delta = rho
                ntrits = 0
                adelt = max(min(0.1 * dist, delta), rho)
                dsq = adelt * adelt
                label = 90
                continue
            if ntrits != -1 and (ratio > 0.0 or max(delta, dnorm) > rho):
                label = 60
                continue
            label = 680
        if label == 680:  # the work with this RHO is done: the next RHO and DELTA, or the end
            if rho > rhoend:
                delta = 0.5 * rho
                ratio = rho / rhoend
                if ratio <= 16.0:
                    rho = rhoend
                elif ratio <= 250.0:
                    rho = math.sqrt(ratio) * rhoend
                else:
                    rho = 0.1 * rho
                delta = max(delta, rho)
                ntrits = 0
                nfsav = nf
                label = 60
                continue
            if ntrits == -1:  # a last Newton-Raphson step, too short to have been tried
                label = 360
                continue
            label = 720
        if label == 720:
            if fval[kopt] <= fsave:
                for i in range(n):
                    xi = min(max(xl[i], m.xbase[i] + xopt[i]), xu[i])
                    if xopt[i] == sl[i]:
                        xi = xl[i]
                    if xopt[i] == su[i]:
                        xi = xu[i]
                    x[i] = xi
            return ierr


# -- BOBYQA and minqa's bobyqa() ----------------------------------------------------------------

def bobyqa_fortran(calfun: _Calfun, x: list[float], xl: list[float], xu: list[float],
                   npt: int, rhobeg: float, rhoend: float, maxfun: int) -> int:
    """Powell's BOBYQA (minqa's ``bobyqa.f``): checks NPT and the box, moves x0 inside it by
    at least rhobeg from each bound (or onto the bound), then BOBYQB. ``x`` is set to the
    point returned; returns the Fortran's IERR."""
    n = len(x)
    if npt < n + 2 or npt > ((n + 2) * (n + 1)) // 2:
        return 10
    sl = [0.0] * n
    su = [0.0] * n
    for j in range(n):
        temp = xu[j] - xl[j]
        if temp < rhobeg + rhobeg:
            return 20
        sl[j] = xl[j] - x[j]
        su[j] = xu[j] - x[j]
        if sl[j] >= -rhobeg:
            if sl[j] >= 0.0:
                x[j] = xl[j]
                sl[j] = 0.0
                su[j] = temp
            else:
                x[j] = xl[j] + rhobeg
                sl[j] = -rhobeg
                su[j] = max(xu[j] - x[j], rhobeg)
        elif su[j] <= rhobeg:
            if su[j] <= 0.0:
                x[j] = xu[j]
                sl[j] = -temp
                su[j] = 0.0
            else:
                x[j] = xu[j] - rhobeg
                sl[j] = min(xl[j] - x[j], -rhobeg)
                su[j] = rhobeg
    return bobyqb(calfun, n, npt, x, xl, xu, rhobeg, rhoend, maxfun, sl, su)


def _warn(message: str) -> None:
    warnings.warn(message, LmeFormulaWarning, stacklevel=4)


def bobyqa(fn: Callable[[np.ndarray], float], par: Sequence[float] | np.ndarray,
           lower: float | Sequence[float] | np.ndarray = -math.inf,
           upper: float | Sequence[float] | np.ndarray = math.inf, *,
           npt: int | None = None, rhobeg: float | None = None, rhoend: float | None = None,
           maxfun: int = 10000) -> BobyqaResult:
    """Minimise ``fn`` within the box [lower, upper] as ``minqa::bobyqa`` does.

    Parameters
    ----------
    fn
        The objective, a function of a float array.
    par
        Starting point (within the bounds).
    lower, upper
        Bounds (scalars are recycled).
    npt
        Number of interpolation points (default min(n + 2, 2n), brought into
        [n + 2, (n + 1)(n + 2)/2]).
    rhobeg, rhoend
        Initial and final trust region radii (defaults min(0.95, 0.2 max|par|) and
        1e-6 rhobeg).
    maxfun
        Maximum number of evaluations by the Fortran.

    Returns
    -------
    BobyqaResult
        minqa's ``par``, ``fval``, ``feval``, ``ierr`` and ``msg``.

    Notes
    -----
    As minqa's R function: the objective is evaluated at ``par`` before the optimisation
    (``checkObj``) and at the returned point after it (``fval``), neither counted in
    ``feval``; warnings for ``npt`` > 2n + 1 and ``maxfun`` < 10 n^2; a box narrower than
    2 rhobeg sets rhobeg to a fifth of its narrowest side (with a warning).
    """
    x0 = np.array(par, dtype=float).ravel()
    n = x0.shape[0]
    if n == 0 or not np.all(np.isfinite(x0)):
        raise FittingError("bobyqa: the starting values must be finite (and at least one)")
    npt = minqa_npt(n, npt)
    if npt > 2 * n + 1:
        _warn("Setting npt > 2 * length(par) + 1 is not recommended.")
    if rhobeg is None or (isinstance(rhobeg, float) and math.isnan(rhobeg)):
        rhobeg = min(0.95, 0.2 * float(np.max(np.abs(x0))))
    rhobeg = float(rhobeg)
    if rhoend is None or (isinstance(rhoend, float) and math.isnan(rhoend)):
        rhoend = 1.0e-6 * rhobeg
    rhoend = float(rhoend)
    if not 0.0 < rhoend <= rhobeg:
        raise FittingError("bobyqa: rhoend must be positive and at most rhobeg "
                           f"(rhobeg = {rhobeg:g}, rhoend = {rhoend:g})")
    maxfun = int(maxfun)
    if maxfun < 10 * n * n:
        _warn("maxfun < 10 * length(par)^2 is not recommended.")
    calfun = _Calfun(fn)
    check = float(fn(x0))  # minqa's checkObj (not counted in feval)
    del check
    xl = np.broadcast_to(np.asarray(lower, dtype=float), (n,)).tolist()
    xu = np.broadcast_to(np.asarray(upper, dtype=float), (n,)).tolist()
    if not all(lo < hi for lo, hi in zip(xl, xu, strict=True)):
        raise FittingError("bobyqa: every lower bound must be below its upper bound")
    if np.any(x0 < np.array(xl)) or np.any(x0 > np.array(xu)):
        raise FittingError("Starting values violate bounds")
    rng = [hi - lo for lo, hi in zip(xl, xu, strict=True)]
    if any(r < 2.0 * rhobeg for r in rng):
        _warn("All upper - lower must be >= 2*rhobeg. Changing rhobeg")
        rhobeg = 0.2 * min(rng)
    x = x0.tolist()
    if all(math.isfinite(v) for v in xl + xu):
        # minqa's "Jens modification" (not force.start); it tests rng < rhobeg, which the
        # check above has made impossible, so it never moves x: kept for the record
        for i in range(n):
            if rng[i] < rhobeg:
                x[i] = xl[i] + rhobeg
    try:
        fierr = bobyqa_fortran(calfun, x, xl, xu, npt, rhobeg, rhoend, maxfun)
    except (ZeroDivisionError, ValueError) as err:  # a NaN or infinity the Fortran would carry
        raise FittingError(f"bobyqa: the iterations broke down ({err}): non-finite values "
                           "in the model") from err
    out = np.array(x)
    fval = float(fn(out))  # minqa's rval evaluates the objective at the returned point
    code, msg = _MINQA_CODES.get(fierr, (0, "Normal exit from bobyqa"))
    return BobyqaResult(out, fval, calfun.count, code, msg, fierr)
