"""What a deviance function (``LmerDevfun``) and a fitted model need of an engine.

Both engines (:class:`~lmeformula.pls.engine.PLSProblem`, blocked, and
:class:`~lmeformula.pls.engine.DensePLSProblem`, one dense factor) satisfy it; so must any
later one (a sparse Cholesky for large second blocks, structured covariances).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp

from .terms import TermShape

__all__ = ["Factor", "PLSEngine"]


class Factor(Protocol):
    """A factorisation at one θ: the θ, log-determinants and penalised RSS."""

    @property
    def theta(self) -> np.ndarray: ...

    @property
    def ldL2(self) -> float: ...

    @property
    def ldRX2(self) -> float: ...

    @property
    def pwrss(self) -> float: ...


class PLSEngine(Protocol):
    """The penalised least-squares system of a model at any θ (and new case weights)."""

    @property
    def n(self) -> int: ...

    @property
    def p(self) -> int: ...

    @property
    def q(self) -> int: ...

    @property
    def ldW(self) -> float: ...

    @property
    def terms(self) -> list[TermShape]: ...

    @property
    def has_gradient(self) -> bool: ...

    @property
    def dense_order(self) -> int: ...

    def factor(self, theta: np.ndarray) -> Factor: ...

    def deviance(self, theta: np.ndarray, REML: bool) -> tuple[float, Factor]: ...

    def deviances(self, thetas: np.ndarray, REML: bool) -> np.ndarray: ...

    def criterion(self, f: Factor, REML: bool) -> float: ...

    def gradient(self, f: Factor, REML: bool) -> np.ndarray: ...

    def solve(self, f: Factor) -> tuple[np.ndarray, np.ndarray]: ...

    def rzx_rx(self, f: Factor) -> tuple[np.ndarray, np.ndarray]: ...

    def rx(self, f: Factor) -> np.ndarray: ...

    def sparse_L(self, f: Factor) -> sp.csc_matrix: ...

    def inverse_diagonal_blocks(self, f: Factor) -> list[np.ndarray]: ...

    def reweight(self, w: np.ndarray, y: np.ndarray) -> None: ...
