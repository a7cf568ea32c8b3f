"""R's package splines: ``bs()`` and ``ns()`` (and the ``splineDesign`` they are built on), with
R's knot placement (``quantile`` type 7 of the training x), R's linear or polynomial
continuation outside the boundary knots, and the parameters ``makepredictcall`` keeps for
predictions on new data. Plain numerics; the formula side is in :mod:`lmeformula.transforms`.

The B-spline recursions are ports of R's ``splines.c`` (``basis_funcs`` for values,
``evaluate`` for derivatives), in the same order of operations, so the bases agree with R's to
the last bits, not merely to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import FormulaError

__all__ = ["SplineBasis", "bs_basis", "ns_basis", "quantile7", "seq_length_out",
           "spline_design"]


def seq_length_out(start: float, stop: float, length: int) -> np.ndarray:
    """R's ``seq.int(from, to, length.out = n)``: the first half counted up from ``from``,
    the second half down from ``to`` (seq.c), so that ``1 - 1/3`` is what R has for 2/3."""
    out = np.empty(length)
    if length > 0:
        out[0] = start
    if length > 1:
        out[-1] = stop
    if length > 2:
        by = (stop - start) / (length - 1)
        for i in range(1, length - 1):
            out[i] = start + i * by if i < length // 2 else stop - (length - 1 - i) * by
    return out


def quantile7(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """R's ``quantile(x, probs)`` (type 7), written as R computes it:
    ``(1 - h) * x[lo] + h * x[hi]`` where the two order statistics differ."""
    xs = np.sort(x)
    n = xs.shape[0]
    index = 1 + max(n - 1, 0) * probs
    lo = np.floor(index).astype(np.int64)
    hi = np.ceil(index).astype(np.int64)
    qs = xs[lo - 1].copy()
    for i in range(probs.shape[0]):
        if index[i] > lo[i] and xs[hi[i] - 1] != qs[i]:
            h = index[i] - lo[i]
            qs[i] = (1 - h) * qs[i] + h * xs[hi[i] - 1]
    return qs


def _cursor(knots: np.ndarray, x: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """splines.c's ``set_cursor``: the index of the first knot above x (the last legitimate
    interval for x at the right boundary knot) and whether x is that boundary."""
    nk = knots.shape[0]
    curs = np.searchsorted(knots, x, side="right")
    # no knot above x: the last knot equal to x (set_cursor's loop), -1 when x is past them all
    top = curs >= nk
    curs = np.where(top, np.where(x == knots[-1], nk - 1, -1), curs)
    last = nk - order
    boundary = (curs > last) & (x == knots[last])
    return np.where(boundary, last, curs), boundary


def _basis_values(knots: np.ndarray, x: np.ndarray, curs: np.ndarray, order: int
                  ) -> np.ndarray:
    """splines.c's ``basis_funcs``: the ``order`` non-zero B-splines at each x."""
    ordm1 = order - 1
    nx = x.shape[0]
    rdel = np.empty((nx, max(ordm1, 1)))
    ldel = np.empty((nx, max(ordm1, 1)))
    for i in range(ordm1):
        rdel[:, i] = knots[curs + i] - x
        ldel[:, i] = x - knots[curs - (i + 1)]
    b = np.zeros((nx, order))
    b[:, 0] = 1.0
    for j in range(1, order):
        saved = np.zeros(nx)
        for r in range(j):
            den = rdel[:, r] + ldel[:, j - 1 - r]
            ok = den != 0
            term = np.divide(b[:, r], den, out=np.zeros(nx), where=ok)
            keep_saved = ~ok & ((r != 0) | (rdel[:, r] != 0))
            b[:, r] = np.where(ok, saved + rdel[:, r] * term,
                               np.where(keep_saved, saved, b[:, r]))
            saved = np.where(ok, ldel[:, j - 1 - r] * term, 0.0)
        b[:, j] = saved
    return b


def _derivative(knots: np.ndarray, x: float, curs: int, boundary: bool, order: int,
                coef: np.ndarray, nder: int) -> float:
    """splines.c's ``evaluate``: derivative ``nder`` at x of the spline with these ``order``
    coefficients of the B-splines that are non-zero there."""
    outer = order - 1
    if boundary and nder == outer:  # R: "value is arbitrary"
        return 0.0
    a = coef.astype(float).copy()
    for _ in range(nder):
        for m in range(outer):
            a[m] = outer * (a[m + 1] - a[m]) / (knots[curs + m] - knots[curs - outer + m])
        outer -= 1
    rdel = [knots[curs + i] - x for i in range(outer)]
    ldel = [x - knots[curs - (i + 1)] for i in range(outer)]
    while outer > 0:
        outer -= 1
        for m in range(outer + 1):
            a[m] = (a[m + 1] * ldel[outer - m] + a[m] * rdel[m]) / (rdel[m] + ldel[outer - m])
    return float(a[0])


def spline_design(knots: np.ndarray, x: np.ndarray, order: int,
                  derivs: tuple[int, ...] = (0,)) -> np.ndarray:
    """R's ``splineDesign(knots, x, ord, derivs)`` for x within the knots' inner range (as
    ``bs`` and ``ns`` call it): len(x) x (len(knots) - ord), the derivatives recycled over x."""
    knots = np.sort(np.asarray(knots, dtype=float))
    x = np.asarray(x, dtype=float)
    nk = knots.shape[0]
    ncoef = nk - order
    design = np.zeros((x.shape[0], ncoef))
    if x.shape[0] == 0:
        return design
    curs, boundary = _cursor(knots, x, order)
    offsets = curs - order
    der = np.resize(np.asarray(derivs, dtype=np.int64), x.shape[0])
    values = np.zeros((x.shape[0], order))
    plain = der == 0
    if plain.any():
        values[plain] = _basis_values(knots, x[plain], curs[plain], order)
    for i in np.flatnonzero(~plain):
        for ii in range(order):
            unit = np.zeros(order)
            unit[ii] = 1.0
            values[i, ii] = _derivative(knots, float(x[i]), int(curs[i]), bool(boundary[i]),
                                        order, unit, int(der[i]))
    rows = np.repeat(np.arange(x.shape[0]), order)
    cols = (offsets[:, None] + np.arange(order)[None, :]).ravel()
    design[rows, cols] = values.ravel()
    return design


@dataclass(frozen=True)
class SplineBasis:
    """A basis and the attributes R's ``makepredictcall`` puts back into the call for new
    data (``knots``, ``Boundary.knots``, ``intercept``; ``degree`` for ``bs``); ``warnings``
    are R's warnings from building it."""

    values: np.ndarray
    knots: np.ndarray
    boundary_knots: np.ndarray
    intercept: bool
    degree: int
    warnings: tuple[str, ...]


def _inner_knots(x: np.ndarray, outside: np.ndarray, n_inner: int) -> np.ndarray:
    """R's default knots: quantiles of the x inside the boundary at equally spaced
    probabilities (the ends left out)."""
    if n_inner <= 0:
        return np.zeros(0)
    probs = seq_length_out(0.0, 1.0, n_inner + 2)[1:-1]
    return quantile7(x[~outside], probs)


def _prepare(x: np.ndarray, boundary: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """x without its NAs, the NA mask, the sorted boundary knots (the range of x when none
    were given) and the masks of x left and right of them."""
    nax = np.isnan(x)
    xv = x[~nax]
    if boundary is None:
        bk = (np.array([xv.min(), xv.max()]) if xv.size else np.array([np.nan, np.nan]))
        none = np.zeros(xv.shape[0], dtype=bool)
        return xv, nax, bk, None, none
    bk = np.sort(boundary)
    left, right = xv < bk[0], xv > bk[1]
    return xv, nax, bk, left, right


def _with_na_rows(basis: np.ndarray, nax: np.ndarray) -> np.ndarray:
    if not nax.any():
        return basis
    out = np.full((nax.shape[0], basis.shape[1]), np.nan)
    out[~nax] = basis
    return out


def bs_basis(x: np.ndarray, df: float | None = None, knots: np.ndarray | None = None,
             degree: int = 3, intercept: bool = False,
             boundary: np.ndarray | None = None) -> SplineBasis:
    """R's ``splines::bs`` (R 4.2): B-splines of ``degree``; outside the boundary knots each
    column is continued by its Taylor polynomial at a pivot a quarter of the way to the next
    knot, with R's warning."""
    order = 1 + degree
    xv, nax, bk, left, right = _prepare(x, boundary)
    outside = (left | right) if left is not None else right
    warns: list[str] = []
    if df is not None and knots is None:
        n_inner = int(df - order + (1 - int(intercept)))
        if n_inner < 0:
            n_inner = 0
            warns.append(f"'df' was too small; have used {order - (1 - int(intercept))}")
        knots = _inner_knots(xv, outside, n_inner)
    inner = np.zeros(0) if knots is None else np.asarray(knots, dtype=float)
    aknots = np.sort(np.concatenate([np.repeat(bk, order), inner]))
    ncol = aknots.shape[0] - degree - 1
    if outside.any():
        warns.append("some 'x' values beyond boundary knots may cause ill-conditioned bases")
        basis = np.zeros((xv.shape[0], ncol))
        derivs = tuple(range(order))
        scalef = np.array([math.gamma(k) for k in range(1, order + 1)])
        e = 0.25
        for mask, pivot in ((left, (1 - e) * bk[0] + e * aknots[order]),
                            (right, (1 - e) * bk[1] + e * aknots[-order - 1])):
            if mask is not None and mask.any():
                powers = np.column_stack(
                    [np.ones(int(mask.sum()))]
                    + [(xv[mask] - pivot) ** k for k in range(1, degree + 1)])
                tt = spline_design(aknots, np.full(order, pivot), order, derivs)
                basis[mask] = powers @ (tt / scalef[:, None])
        inside = ~outside
        if inside.any():
            basis[inside] = spline_design(aknots, xv[inside], order)
    else:
        basis = spline_design(aknots, xv, order)
    if not intercept:
        basis = basis[:, 1:]
    return SplineBasis(_with_na_rows(basis, nax), inner, bk, intercept, degree, tuple(warns))


def ns_basis(x: np.ndarray, df: float | None = None, knots: np.ndarray | None = None,
             intercept: bool = False, boundary: np.ndarray | None = None) -> SplineBasis:
    """R's ``splines::ns`` (R 4.2): the cubic B-splines projected, through the QR
    decomposition of their second derivatives at the boundary knots, onto the splines that
    are linear beyond them; outside the boundary, continued linearly."""
    xv, nax, bk, left, right = _prepare(x, boundary)
    outside = (left | right) if left is not None else right
    if boundary is None and xv.shape[0] == 1:
        bk = xv[0] * np.array([7.0, 9.0]) / 8.0
    warns: list[str] = []
    if df is not None and knots is None:
        n_inner = int(df - 1 - int(intercept))
        if n_inner < 0:
            n_inner = 0
            warns.append(f"'df' was too small; have used {1 + int(intercept)}")
        knots = _inner_knots(xv, outside, n_inner)
    inner = np.zeros(0) if knots is None else np.asarray(knots, dtype=float)
    aknots = np.sort(np.concatenate([np.repeat(bk, 4), inner]))
    if outside.any():
        basis = np.zeros((xv.shape[0], inner.shape[0] + 4))
        for mask, pivot in ((left, bk[0]), (right, bk[1])):
            if mask is not None and mask.any():
                lin = np.column_stack([np.ones(int(mask.sum())), xv[mask] - pivot])
                tt = spline_design(aknots, np.array([pivot, pivot]), 4, (0, 1))
                basis[mask] = lin @ tt
        inside = ~outside
        if inside.any():
            basis[inside] = spline_design(aknots, xv[inside], 4)
    else:
        basis = spline_design(aknots, xv, 4)
    with np.errstate(divide="ignore", invalid="ignore"):
        const = spline_design(aknots, bk, 4, (2, 2))
    if not np.isfinite(const).all():
        # a knot beyond the boundary knots: R's qr() of the constraints fails
        raise FormulaError("NA/NaN/Inf in foreign function call (arg 1): ns()'s knots must "
                           "lie within its boundary knots")
    if not intercept:
        const, basis = const[:, 1:], basis[:, 1:]
    # R: t(qr.qty(qr(t(const)), t(basis)))[, -(1:2)]; LINPACK's and LAPACK's Householder
    # reflections share their sign convention, so Q is R's
    q, _ = np.linalg.qr(const.T, mode="complete")
    basis = (basis @ q)[:, 2:]
    return SplineBasis(_with_na_rows(basis, nax), inner, bk, intercept, 3, tuple(warns))
