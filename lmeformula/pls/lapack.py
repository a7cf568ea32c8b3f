"""LAPACK helpers of the engines: an in-place Cholesky, the careful one for an exact fit, and
lme4's check that X is of full rank."""

from __future__ import annotations

import numpy as np
import scipy.linalg as la

from ..errors import FittingError

__all__ = ["check_rx", "cholesky_exact_fit", "potrf"]


def check_rx(rx_diag: np.ndarray, xtx_diag: np.ndarray) -> None:
    """lme4's error when a column of X is (numerically) in the span of the others: its
    pivot in RX is round-off (LAPACK may return a tiny positive one instead of failing)."""
    if np.any(rx_diag**2 <= 1e-13 * np.maximum(xtx_diag, np.finfo(float).tiny)):
        raise FittingError("Downdated VtV is not positive definite")


def cholesky_exact_fit(s: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of an augmented matrix (upper triangle used) whose last pivot,
    the penalised residual sum of squares, may vanish (an exact fit); lme4's error when the
    [Z X] part is not positive definite."""
    s = np.triu(s) + np.triu(s, 1).T
    try:
        core = la.cholesky(s[:-1, :-1], lower=True, check_finite=False)
    except la.LinAlgError as err:
        raise FittingError("Downdated VtV is not positive definite") from err
    out = np.zeros_like(s)
    out[:-1, :-1] = core
    row = la.solve_triangular(core, s[:-1, -1], lower=True, check_finite=False)
    out[-1, :-1] = row
    out[-1, -1] = np.sqrt(max(s[-1, -1] - row @ row, 0.0))  # exact fit: pwrss = 0
    return out


def finish_exact_fit(l22: np.ndarray, last: float) -> None:
    """Complete in place a factor whose ``dpotrf`` failed only at its last pivot (an exact
    fit: the penalised residual sum of squares, ``last`` the pivot's entry before the
    factorisation, is round-off): the leading columns are complete, so the pivot is
    sqrt(last - |its row|²), clamped at 0 (pwrss = 0)."""
    row = l22[-1, :-1]
    l22[-1, -1] = np.sqrt(max(last - float(row @ row), 0.0))


def potrf(a_fortran: np.ndarray) -> tuple[np.ndarray, int]:
    """In-place lower Cholesky of an F-contiguous array (LAPACK dpotrf); the strict upper
    triangle is not cleared (that would be another pass over the matrix per evaluation)."""
    lfac, info = la.lapack.dpotrf(a_fortran, lower=1, clean=0, overwrite_a=1)
    return lfac, int(info)
