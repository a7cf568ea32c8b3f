"""lme4's identifiability, rank and scale checks, with lme4's messages.

Each check returns the message it raised as a warning (lme4's ``wmsgs``) or raises the package's
error when its action is ``"stop"``. As lme4's, the checks take the pieces they check (the
grouping factors, the random-effects sizes, Zt, X), not the structures that hold them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .control import LmerControl
from .errors import (
    FormulaError,
    IdentifiabilityError,
    IdentifiabilityWarning,
    ModelFrameError,
    RankDeficiencyError,
    RankDeficiencyWarning,
    ScaleWarning,
)
from .transforms import drop_unused_levels

__all__ = [
    "check_nlevels",
    "check_scale_x",
    "check_zdims",
    "check_zrank",
    "rank_drop_columns",
]


def _act(action: str, message: str, error: type[Exception] = IdentifiabilityError,
         warning: type[Warning] = IdentifiabilityWarning) -> str | None:
    if action == "ignore":
        return None
    if action.startswith("stop"):
        raise error(message)
    warnings.warn(message, warning, stacklevel=4)
    return message


def check_nlevels(flist: Mapping[str, pd.Categorical], n: int, ctrl: LmerControl,
                  allow_n: bool = False) -> list[str]:
    """lme4's ``checkNlevels(flist, n, control, allow.n)`` on the grouping factors (lmer:
    ``allow.n = FALSE``; glmer: ``allow.n = TRUE``, where as many levels as observations are
    allowed)."""
    msgs: list[str] = []
    nlev = {name: len(drop_unused_levels(f).categories) for name, f in flist.items()}
    if ctrl.check_nlev_gtr_1 != "ignore" and any(v < 2 for v in nlev.values()):
        m = _act(ctrl.check_nlev_gtr_1, "grouping factors must have > 1 sampled level")
        msgs += [m] if m else []
    problems = [name for name, v in nlev.items() if (v > n if allow_n else v >= n)]
    if ctrl.check_nobs_vs_nlev != "ignore" and problems:
        m = _act(ctrl.check_nobs_vs_nlev,
                 f"number of levels of each grouping factor must be {'<=' if allow_n else '<'} "
                 "number of observations "
                 f"(problems: {', '.join(problems)})")
        msgs += [m] if m else []
    if ctrl.check_nlev_gtreq_5 != "ignore" and any(v < 5 for v in nlev.values()):
        m = _act(ctrl.check_nlev_gtreq_5,
                 "grouping factors with < 5 sampled levels may give unreliable estimates")
        msgs += [m] if m else []
    return msgs


def check_zdims(nre_by_term: Mapping[str, int], n: int, ctrl: LmerControl,
                allow_n: bool = False) -> list[str]:
    """lme4's ``checkZdims(Ztlist, n, control, allow.n)``: observations against random effects,
    term by term (glmer: ``allow.n = TRUE``, as many observations as random effects allowed).
    What it checks of ``Ztlist`` is given: the number of rows of each term's block (nl * nc),
    keyed by the term's name in ``Ztlist``, without building the blocks."""
    msgs: list[str] = []
    if ctrl.check_nobs_vs_nRE == "ignore":
        return msgs
    for name, nre in nre_by_term.items():
        if (n < nre) if allow_n else (n <= nre):
            resid = "" if allow_n else " and the residual variance (or scale parameter)"
            m = _act(ctrl.check_nobs_vs_nRE,
                     f"number of observations (={n}) {'<' if allow_n else '<='} number of "
                     f"random effects (={nre}) for term ({name}); the random-effects "
                     f"parameters{resid} are probably unidentifiable")
            msgs += [m] if m else []
    return msgs


def check_zrank(Zt: sp.spmatrix | np.ndarray | Callable[[], sp.spmatrix], n: int,
                ctrl: LmerControl, q: int | None = None) -> list[str]:
    """lme4's ``checkZrank(Zt, n, control)``: rank of Z against the number of observations.

    ``Zt`` may be a function that builds it, with ``q`` its number of rows: it is then built
    only when the rank is computed (not by default, nor for large models with "...Small")."""
    action = ctrl.check_nobs_vs_rankZ
    if action == "ignore":
        return []
    if q is None:
        Zt = Zt() if callable(Zt) else Zt
        q = Zt.shape[0]
    if action.endswith("Small"):
        if n * q > 1e6:
            return []
        action = action[: -len("Small")]
    z = sp.csc_matrix(Zt() if callable(Zt) else Zt).T.toarray()
    rank = int(np.linalg.matrix_rank(z))
    if n <= rank:
        m = _act(action,
                 f"number of observations (={n}) <= rank(Z) (={rank}); the random-effects "
                 "parameters and the residual variance (or scale parameter) are probably "
                 "unidentifiable")
        return [m] if m else []
    return []


def independent_columns(x: np.ndarray, tol: float = 1e-7) -> list[int]:
    """Greedy left-to-right linearly independent columns, as R's LINPACK ``qr()`` keeps them.

    A column is dropped when its norm after projecting out the kept columns falls below
    ``tol`` times its original norm (dqrdc2's limited pivoting).
    """
    kept: list[int] = []
    basis = np.zeros((x.shape[0], 0))
    p = x.shape[1]
    for j in range(p):
        col = x[:, j].astype(float)  # a copy: the residual is formed in it
        # Euclidean norms as np.linalg.norm forms them for a vector, sqrt(x·x), without its
        # Python-level dispatch
        norm0 = math.sqrt(float(col.dot(col)))
        resid = np.subtract(col, basis @ (basis.T @ col), out=col)
        np.subtract(resid, basis @ (basis.T @ resid), out=resid)  # re-orthogonalise
        norm = math.sqrt(float(resid.dot(resid)))
        if norm0 > 0 and norm > tol * norm0:
            kept.append(j)
            if j < p - 1:  # the last column's direction is never projected out (10⁶ rows: a
                # second n x p basis less at X's rank check)
                resid /= norm
                basis = np.column_stack([basis, resid])
    return kept


def rank_drop_columns(x: np.ndarray, columns: list[str], ctrl: LmerControl,
                      ) -> tuple[list[int], str | None]:
    """lme4's ``chkRank.drop.cols``: which columns of X to keep, and the message.

    Returns
    -------
    kept, message
        Indices of the kept columns (original order) and lme4's message, or None.
    """
    kind = ctrl.check_rankX
    p = x.shape[1]
    if kind == "ignore" or p == 0:
        return list(range(p)), None
    kept = independent_columns(x)
    if len(kept) == p:
        return kept, None
    if kind == "stop.deficient":
        raise RankDeficiencyError(
            f"the fixed-effects model matrix is column rank deficient (rank(X) = {len(kept)} "
            f"< {p} = p);\nthe fixed effects will be jointly unidentifiable"
        )
    ndrop = p - len(kept)
    dropped = [columns[j] for j in range(p) if j not in set(kept)]
    message = (
        f"fixed-effect model matrix is rank deficient so dropping {ndrop} "
        + ("column / coefficient" if ndrop == 1 else "columns / coefficients")
    )
    if kind != "silent.drop.cols":
        warnings.warn(f"{message} ({', '.join(dropped)})", RankDeficiencyWarning, stacklevel=3)
    return kept, message


def check_scale_x(x: np.ndarray, ctrl: LmerControl) -> str | None:
    """lme4's ``checkScaleX``: warn when non-binary columns differ in scale by over 1000x."""
    if ctrl.check_scaleX == "ignore" or x.shape[1] == 0:
        return None
    binary = np.all((x == 0) | (x == 1), axis=0)
    cols = x[:, ~binary]
    if cols.shape[1] == 0 or cols.shape[0] < 2:
        return None
    # the columns' standard deviations (ddof = 1) by the steps of numpy's std, without its
    # Python-level dispatch: mean, squared deviations, their sum over n - 1, square root
    dev = cols - np.add.reduce(cols, axis=0, keepdims=True) / cols.shape[0]
    np.multiply(dev, dev, out=dev)
    sds = np.sqrt(np.add.reduce(dev, axis=0) / (cols.shape[0] - 1))
    sds = sds[sds > 0]
    if sds.size == 0:
        return None
    logs = np.log(sds)
    bound = math.log(1000.0)
    if np.abs(logs).max() > bound or (logs.max() - logs.min()) > bound:
        message = "Some predictor variables are on very different scales: consider rescaling"
        return _act(ctrl.check_scaleX, message, IdentifiabilityError, ScaleWarning)
    return None


NA_IN_Z = ("NA in Z (random-effects model matrix): please use \"na.action='na.omit'\" or "
           "\"na.action='na.exclude'\"")


def check_finite_z(terms: Mapping[str, np.ndarray]) -> None:
    """Stop on non-finite values of Z, read off each term's X_i (``terms``: name -> X_i).

    NaN (left by ``na_action="pass"``) gets lme4's message. lme4 lets ``Inf`` through and stops
    at its first evaluation ("objective in x0 returns NA"); here it is refused before the
    fit, naming the term.
    """
    bad = [name for name, xi in terms.items() if not np.isfinite(xi).all()]
    if not bad:
        return
    if any(np.isnan(terms[name]).any() for name in bad):  # lme4's anyNA over the whole of Zt
        raise FormulaError(NA_IN_Z)
    raise FormulaError(f"Inf in Z (random-effects model matrix): the term ({bad[0]}) has "
                       "infinite values (lme4 stops at its first evaluation: "
                       "'objective in x0 returns NA')")


def check_finite_columns(values: np.ndarray, columns: list[str]) -> None:
    """lme4 stops on a non-finite fixed-effects model matrix (NaN left by ``na_action="pass"``,
    ``Inf`` from the data or from ``log(0)``, ``1/0``); dropping the column as rank deficient
    would silently fit another model."""
    with np.errstate(over="ignore", invalid="ignore"):
        # 1e308 is finite, its square is not: X'X would overflow
        squares = np.einsum("ij,ij->j", values, values) if values.size else np.zeros(0)
    if np.isfinite(squares).all():  # then every value is finite too (NaN, Inf square to NaN, Inf)
        return
    bad = ~np.isfinite(values).all(axis=0)
    if bad.any():
        names = ", ".join(f"'{columns[j]}'" for j in np.flatnonzero(bad))
        raise ModelFrameError(f"NA/NaN/Inf in 'x': the fixed-effects model matrix column "
                              f"{names} has non-finite values")
    bad = ~np.isfinite(squares)
    if bad.any():
        names = ", ".join(f"'{columns[j]}'" for j in np.flatnonzero(bad))
        raise ModelFrameError(f"the fixed-effects model matrix column {names} is too large: "
                              "its cross-products overflow; rescale it")
