"""lme4's bounded Nelder-Mead (its own, not NLopt's), used by glmer's second stage.

The simplex starts at x0 and x0 + xst_i e_i (moved inside the bounds as lme4 moves them);
reflection, expansion (x2), contraction (x½) and shrinking (x½ towards the best vertex) are
the textbook steps with trial points clamped to the bounds. It stops when every coordinate of
every vertex is within ``xt`` of the centroid of the simplex less its worst vertex
(lme4's only convergence test: its ``FtolAbs`` and ``FtolRel`` are accepted but not used by
the algorithm), when a trial point coincides with the centroid or the point reflected, or
after ``maxfun`` evaluations. The best point evaluated is returned.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import FittingError

__all__ = ["NMResult", "nelder_mead"]

_ALPHA, _BETA, _GAMMA, _DELTA = 1.0, 0.5, 2.0, 0.5


@dataclass
class NMResult:
    """Result of :func:`nelder_mead`.

    Attributes
    ----------
    par, fval
        Best point evaluated and its value.
    feval
        Number of evaluations.
    code
        lme4's ``NM.result``: 1 minimum below ``MinfMax``, 3 x converged (also a collapsed
        simplex), 4 maximum evaluations.
    message
        lme4's message for the code.
    """

    par: np.ndarray
    fval: float
    feval: int
    code: int
    message: str


_MESSAGES = {1: "objective function went below allowed minimum",
             3: "parameter values converged to within tolerance",
             4: "reached max evaluations"}


def _close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) <= 1e-13 * (np.abs(a) + np.abs(b))


class _Stop(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def nelder_mead(fn: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray,
                upper: np.ndarray, xst: np.ndarray, xt: np.ndarray, maxfun: int = 10000,
                minf_max: float = -np.finfo(float).max) -> NMResult:
    """Minimise ``fn`` from ``x0`` within ``[lower, upper]`` (lme4's ``Nelder_Mead``).

    Parameters
    ----------
    fn
        Objective.
    x0
        Starting point (must be feasible).
    lower, upper
        Bounds (may be infinite).
    xst
        Initial steps of the simplex, one per coordinate.
    xt
        Absolute tolerances on the simplex's spread, one per coordinate.
    maxfun
        Maximum number of evaluations.
    minf_max
        Stop as soon as a value below this is found.
    """
    x0 = np.asarray(x0, float).copy()
    lb, ub = np.asarray(lower, float), np.asarray(upper, float)
    xst, xt = np.asarray(xst, float), np.asarray(xt, float)
    n = x0.shape[0]
    if np.any(x0 < lb) or np.any(x0 > ub):
        raise FittingError("initial x is not a feasible point")
    pts = np.tile(x0[:, None], (1, n + 1))
    for i in range(n):
        v = x0[i] + xst[i]
        if v > ub[i]:
            v = ub[i] if ub[i] - x0[i] > abs(xst[i]) * 0.1 else x0[i] - abs(xst[i])
        if v < lb[i]:
            if x0[i] - lb[i] > abs(xst[i]) * 0.1:
                v = lb[i]
            else:
                v = x0[i] + abs(xst[i])
                if v > ub[i]:
                    v = 0.5 * ((ub[i] if ub[i] - x0[i] > x0[i] - lb[i] else lb[i]) + x0[i])
        if _close(np.array(v), np.array(x0[i])):
            raise FittingError("cannot generate feasible simplex")
        pts[i, i + 1] = v

    # The iterations work on Python floats: the simplex's vertices are lists (one per
    # vertex) and only the centroid's column sums are taken by numpy (on ``pts``, kept in
    # step), so that each iteration costs a few microseconds instead of some forty numpy
    # calls on arrays of n elements. The arithmetic is the same element by element (the
    # same IEEE operations in the same order; numpy's sums stay numpy's), so the steps and
    # the evaluated points are those of the vectorised form, bit for bit.
    lbl, ubl, xtl = lb.tolist(), ub.tolist(), xt.tolist()
    verts = pts.T.tolist()  # verts[j]: vertex j
    coords = range(n)
    best_x: list[float] = x0.tolist()
    best_f = math.inf
    evals = 0

    def f(x: list[float]) -> float:
        nonlocal evals, best_x, best_f
        evals += 1
        value = float(fn(np.array(x)))
        if value < best_f:
            best_f, best_x = value, x
            if best_f < minf_max:
                raise _Stop(1)
        if evals > maxfun:  # lme4 counts this evaluation, then stops
            raise _Stop(4)
        return value

    def reflect(c: list[float], scale: float, xold: list[float]) -> list[float] | None:
        # min(max(c + scale (c - xold), lower), upper), NaN kept as numpy's maximum keeps it
        xnew = []
        for i in coords:
            v = c[i] + scale * (c[i] - xold[i])
            if v < lbl[i]:
                v = lbl[i]
            if v > ubl[i]:
                v = ubl[i]
            xnew.append(v)
        if _all_close(xnew, c) or _all_close(xnew, xold):
            return None
        return xnew

    vals = [0.0] * (n + 1)
    code = 3
    try:
        while True:
            for j in range(n + 1):  # (re)initialise the values of the simplex
                vals[j] = f(verts[j])
            while True:  # lme4's "restart": order, centroid, convergence, reflect
                il, ih = _argmin(vals), _argmax(vals)
                fl, fh = vals[il], vals[ih]
                worst = verts[ih]
                total = np.add.reduce(pts, axis=1).tolist()  # (pts.sum(axis=1), unwrapped)
                c = [(total[i] - worst[i]) / n for i in coords]
                if _converged(verts, c, xtl):
                    raise _Stop(3)
                xr = reflect(c, _ALPHA, worst)
                if xr is None:
                    raise _Stop(3)
                fr = f(xr)
                if fr < fl:  # new best: try expanding
                    xe = reflect(c, _GAMMA, worst)
                    if xe is None:
                        raise _Stop(3)
                    fe = f(xe)
                    if fe < fh:
                        _replace(pts, verts, vals, ih, xe, fe)
                    else:
                        _replace(pts, verts, vals, ih, xr, fr)
                    continue
                if fr < fh:
                    _replace(pts, verts, vals, ih, xr, fr)
                    continue
                xc = reflect(c, -_BETA if fh <= fr else _BETA, worst)
                if xc is None:
                    raise _Stop(3)
                fc = f(xc)
                if fc < fr and fc < fh:
                    _replace(pts, verts, vals, ih, xc, fc)
                    continue
                # shrink towards the best vertex, then re-evaluate the whole simplex
                for j in range(n + 1):
                    if j != il:
                        xs = reflect(verts[il], -_DELTA, verts[j])
                        if xs is None:
                            raise _Stop(3)
                        _replace(pts, verts, vals, j, xs, vals[j])
                break
    except _Stop as stop:
        code = stop.code
    return NMResult(np.array(best_x), best_f, evals, code, _MESSAGES[code])


def _replace(pts: np.ndarray, verts: list[list[float]], vals: list[float], j: int,
             x: list[float], value: float) -> None:
    """Vertex j becomes x with value ``value`` (in the lists and in ``pts``)."""
    verts[j] = x
    vals[j] = value
    pts[:, j] = x


def _all_close(a: list[float], b: list[float]) -> bool:
    """``np.all(_close(a, b))`` element by element, stopping at the first pair apart."""
    return all(abs(x - y) <= 1e-13 * (abs(x) + abs(y)) for x, y in zip(a, b, strict=True))


def _converged(verts: list[list[float]], c: list[float], xt: list[float]) -> bool:
    """Every coordinate of every vertex within ``xt`` of the centroid (``np.all(max |pts -
    c| < xt)``, a NaN counting as apart), stopping at the first coordinate that is not."""
    for i, (ci, ti) in enumerate(zip(c, xt, strict=True)):
        for v in verts:
            if not abs(v[i] - ci) < ti:
                return False
    return True


def _argmin(vals: list[float]) -> int:
    """``np.argmin``: the first smallest value, or the first NaN."""
    best, value = 0, vals[0]
    if value != value:
        return 0
    for j in range(1, len(vals)):
        v = vals[j]
        if v != v:
            return j
        if v < value:
            best, value = j, v
    return best


def _argmax(vals: list[float]) -> int:
    """``np.argmax``: the first largest value, or the first NaN (the first smallest of the
    negated values: negation keeps NaNs and ties where they are)."""
    return _argmin([-v for v in vals])
