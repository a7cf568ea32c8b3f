"""What both engines share: the augmented system's base class, lme4's profiled criterion, the
case weights' checks, and the engine's size policy as read at each use (tests swap
``lmeformula.pls.policy.POLICY``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ModelFrameError
from . import policy as _policy_module
from .policy import BlockPolicy
from .terms import TermShape, lambda_template


def _policy() -> BlockPolicy:
    """The engine's size thresholds, read at each use from :mod:`lmeformula.pls.policy` (tests
    swap ``lmeformula.pls.policy.POLICY``)."""
    return _policy_module.POLICY


@lru_cache(maxsize=64)
def _upper_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of an n x n upper triangle, row by row (read-only, cached)."""
    out = np.triu_indices(n)
    for a in out:
        a.flags.writeable = False
    return out


@lru_cache(maxsize=32)
def _lambda_pattern(terms: tuple[TermShape, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Λ's pattern for the engines (read-only, cached: refits and bootstraps repeat it):
    Λ'[rows, cols] = θ[lind], i.e. T[cols, rows] = θ[lind] for T = diag(Λ, I)."""
    idx, ptr, lind = lambda_template(terms)
    out = (idx, np.repeat(np.arange(ptr.shape[0] - 1), np.diff(ptr)), lind)
    for a in out:
        a.flags.writeable = False
    return out


def profiled_criterion(ldL2: float, ldRX2: float, pwrss: float, n: int, p: int, ldW: float,
                       REML: bool) -> float:
    """lme4's profiled criterion: REML ``ldL2 - ldW + ldRX2 + (n-p)(1 + log(2π pwrss/(n-p)))``
    or ML ``ldL2 - ldW + n(1 + log(2π pwrss/n))`` (with p = 0 the two coincide)."""
    # on Python floats with math.log (it runs once per evaluation); an exact fit (pwrss = 0)
    # or worse gets numpy's -inf or nan, as for arrays, without numpy's warning (the value
    # is the answer: the optimizer and lme4's checks deal with it)
    if pwrss > 0.0:
        return float(_criterion(ldL2, ldRX2, pwrss, n, p, ldW, REML, math.log))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(_criterion(ldL2, ldRX2, pwrss, n, p, ldW, REML, np.log))


def profiled_criteria(ldL2: np.ndarray, ldRX2: np.ndarray, pwrss: np.ndarray, n: int, p: int,
                      ldW: float, REML: bool) -> np.ndarray:
    """:func:`profiled_criterion` for arrays of factorisations (or scalars)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # exact fits: -inf, as above
        return _criterion(ldL2, ldRX2, pwrss, n, p, ldW, REML, np.log)


def _criterion(ldL2: Any, ldRX2: Any, pwrss: Any, n: int, p: int, ldW: float, REML: bool,
               log: Callable[[Any], Any]) -> Any:
    if REML:
        nmp = n - p
        return ldL2 - ldW + ldRX2 + nmp * (1.0 + log(2.0 * math.pi * pwrss / nmp))
    return ldL2 - ldW + n * (1.0 + log(2.0 * math.pi * pwrss / n))


@dataclass
class _AugmentedSystem:
    """The data of the augmented system [Z X y] with prior weights (shared by both engines).

    Parameters
    ----------
    Zt
        q x n random-effects matrix (lme4's order of terms), or a function that builds it:
        the blocked engine's counting path never reads it (:meth:`_zt` builds it when a path
        does).
    X
        n x p fixed-effects matrix.
    y
        Response minus offset.
    weights
        Prior weights or None.
    terms
        Shapes of the terms, in Zt's row order.
    """

    Zt: sp.csc_matrix | Callable[[], sp.csc_matrix]
    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None
    terms: list[TermShape]
    n: int = field(init=False)
    p: int = field(init=False)
    q: int = field(init=False)
    m: int = field(init=False)
    ldW: float = field(init=False)

    def _weights(self) -> np.ndarray:
        """Set n, p, q and log|W|; return the weights (ones when none were given)."""
        self.n, self.p = self.X.shape
        self.q = (sum(t.size for t in self.terms) if callable(self.Zt)
                  else self.Zt.shape[0])
        w = np.ones(self.n) if self.weights is None else np.asarray(self.weights, float)
        # a zero weight (a glmer observation with no trials) makes log|W| -inf, which only
        # lmer's criterion uses: no numpy warning for it
        with np.errstate(divide="ignore"):
            self.ldW = float(np.log(w).sum()) if self.weights is not None else 0.0
        return w

    def _zt(self) -> sp.csc_matrix:
        """Zt, built (and kept) on first use when it was given as a function."""
        if callable(self.Zt):
            self.Zt = self.Zt()
        return self.Zt

    @property
    def dense_order(self) -> int:
        """Order of the largest dense matrix factored per θ (the thread policy's measure)."""
        return self.m

    def criterion(self, f: Any, REML: bool) -> float:
        """lme4's profiled REML criterion or ML deviance (REML with p = 0 is ML)."""
        return profiled_criterion(f.ldL2, f.ldRX2, f.pwrss, self.n, self.p, self.ldW, REML)

    def factor(self, theta: np.ndarray) -> Any:
        raise NotImplementedError

    def deviance(self, theta: np.ndarray, REML: bool) -> tuple[float, Any]:
        """The criterion at ``theta`` and the factorisation behind it (None when the engine
        computed the criterion alone)."""
        f = self.factor(np.asarray(theta, dtype=float))
        return self.criterion(f, REML), f

    def deviances(self, thetas: np.ndarray, REML: bool) -> np.ndarray:
        """The criterion at each row of ``thetas``."""
        return np.array([self.deviance(th, REML)[0] for th in thetas])

    def rzx_rx(self, f: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def rx(self, f: Any) -> np.ndarray:
        """lme4's RX (p x p upper triangular) at ``f``: :meth:`rzx_rx`'s, where an engine
        has no cheaper way to it."""
        return self.rzx_rx(f)[1]


def _check_reweight(w: Any, y: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Case weights and response for :meth:`reweight`, checked (new float arrays)."""
    w = np.array(w, dtype=float).ravel()
    y = np.array(y, dtype=float).ravel()
    if w.shape[0] != n or y.shape[0] != n:
        raise ModelFrameError(f"reweight: w and y must have length {n} (the number of "
                              f"observations), not {w.shape[0]} and {y.shape[0]}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ModelFrameError("reweight: weights must be finite and non-negative")
    if not np.all(np.isfinite(y)):
        raise ModelFrameError("reweight: the response must be finite")
    return w, y


def _log_det_weights(w: np.ndarray) -> float:
    """log|W| = Σ log w (minus infinity with a zero weight, as for prior weights)."""
    with np.errstate(divide="ignore"):
        return float(np.log(w).sum())
