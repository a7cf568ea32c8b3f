"""LAPACK helpers of the engines: an in-place Cholesky, the careful one for an exact fit, and
lme4's check that X is of full rank."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import scipy.linalg as la

from ..errors import FittingError
from .system import _policy

__all__ = ["check_rx", "cholesky_exact_fit", "inverse_in_upper", "leading_inverse_in_place",
           "potrf"]


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


@contextmanager
def inverse_in_upper(a: np.ndarray) -> Iterator[None]:
    """Within the block, the upper triangle and diagonal of the factor's m x m array (F
    order, L in its lower triangle) hold L⁻ᵀ, whose leading s x s triangle is that of
    L_s⁻ᵀ for every s: L is mirrored into the upper triangle (the strict upper one is not
    read by anything else) and inverted there in place by ``dtrtri``. The last pivot (the
    response's, zero for an exact fit) is taken as 1 meanwhile (its row and column of the
    inverse are not read). On leaving, the diagonal is L's again: the lower triangle, the
    part of the factor that is read, is as it was."""
    m = a.shape[0]
    if not a.flags.f_contiguous:  # LAPACK would work on a copy
        raise ValueError("the factor's array must be in Fortran order")
    diagonal = np.diagonal(a).copy()
    band = _policy().band
    try:
        for c0 in range(0, m, band):  # the strict lower triangle mirrored, by bands
            c1 = min(m, c0 + band)
            a[:c0, c0:c1] = a[c0:c1, :c0].T
            square = a[c0:c1, c0:c1]
            upper = np.triu_indices(c1 - c0, 1)
            square[upper] = square.T[upper]
        a[-1, -1] = 1.0
        inv, info = la.lapack.dtrtri(a, lower=0, overwrite_c=1)
        if info != 0 or not np.shares_memory(inv, a):
            raise FittingError(f"the inverse of block 2's factor failed (dtrtri info {info})")
        yield
    finally:
        a[np.diag_indices(m)] = diagonal


@contextmanager
def leading_inverse_in_place(a: np.ndarray, s: int) -> Iterator[np.ndarray]:
    """Within the block, S_s⁻¹ (S = L Lᵀ, ``a`` the factor's m x m array in Fortran order,
    L in its lower triangle; S_s its leading s rows and columns) made in ``a`` itself
    rather than in a copy (the 10⁵ x 2,000 crossed design: 32 MB less per L-BFGS-B
    gradient): L⁻ᵀ in its upper triangle (:func:`inverse_in_upper`), its columns from s on
    cleared above the diagonal (so that the product below is that of the leading s x s
    triangle, L_s⁻ᵀ), then ``dlauum``: U Uᵀ = L_s⁻ᵀ L_s⁻¹ = S_s⁻¹ in the upper triangle.
    Yields the leading s x s block of the array's transpose, whose lower triangle that is.
    The same inverse as ``dpotri`` of the leading block (dtrtri and dlauum too), on the
    upper triangle rather than the lower: equal up to rounding. On leaving, the factor is
    as it was (its lower triangle and diagonal, everything that is read of it)."""
    with inverse_in_upper(a):
        a[:s, s:] = 0.0  # columns from s on: nothing above the diagonal
        inv, info = la.lapack.dlauum(a, lower=0, overwrite_c=1)
        if info != 0 or not np.shares_memory(inv, a):
            raise FittingError(f"the inverse of block 2 failed (dlauum info {info})")
        yield a.T[:s, :s]
