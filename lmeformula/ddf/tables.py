"""lmerTest's tables: the coefficient table, t- and F-tests of contrasts (``contest``), the
anova of types I-III, least-squares means and their differences.

Every test goes through two functions, as in lmerTest: :func:`contest1D` (a t-test of one
contrast) and :func:`contestMD` (an F-test of several). With Satterthwaite's method the F-test
decomposes L V L' into eigen-directions, gets a ν per direction and combines them
(``get_Fstat_ddf``); with Kenward-Roger's it is pbkrtest's ``KRmodcomp``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from ..anovatable import AnovaTable, LsMeansTable, anova_single
from ..errors import ArgumentError, LmeFormulaError, LmeFormulaWarning
from ..generics import ddf_coefficients
from ..glmermod import GlmerMod
from ..mermod import DDF_METHODS, KR_ML_MESSAGE, LmerMod, match_ddf
from ..validate import check_flag
from .contrasts import (
    _marginal,
    contrasts_type1,
    contrasts_type2,
    contrasts_type3,
    drop1_contrasts,
    fixed_terms,
    full_x,
    is_estimable,
    lsmeans_contrasts,
    nullspace,
)
from .kenward_roger import kr_ftest, lb_ddf, vcov_adjusted
from .lme4_drop1 import SumFun, drop1_lme4
from .satterthwaite import varpar_info

__all__ = ["KRFallbackWarning", "MissingCellsWarning", "RankDeficientContrastWarning",
           "anova_lmertest", "coef_table", "contest", "contest1D", "contestMD",
           "difflsmeans", "drop1", "ls_means"]

F_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
T_COLUMNS = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
CI_COLUMNS = ["Estimate", "Std. Error", "df", "t value", "lower", "upper", "Pr(>|t|)"]
_EPS = np.finfo(float).eps


class MissingCellsWarning(LmeFormulaWarning):
    """lmerTest's message for type III tests with empty cells ("Missing cells for: ...")."""


class RankDeficientContrastWarning(LmeFormulaWarning):
    """"Contrast is rank deficient and test may be affected" (a non-zero ``rhs`` with a
    rank-deficient L)."""


class KRFallbackWarning(LmeFormulaWarning):
    """Kenward-Roger's test could not be computed; Satterthwaite's is used instead."""


def _check_model(m: Any) -> LmerMod:
    if not isinstance(m, LmerMod):
        raise ArgumentError(f"expected a fitted linear mixed model (LmerMod), not "
                        f"{type(m).__name__}")
    return m


# ---- the two tests -------------------------------------------------------------------------

def _t_row(estimate: float, se: float, df: float, rhs: float, confint: bool,
           level: float) -> dict[str, float]:
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = (estimate - rhs) / se
    # scipy.special's distribution functions: scipy.stats' per-call overhead is ~100x theirs
    pvalue = 2 * float(special.stdtr(df, -abs(tstat))) if not math.isnan(tstat) else math.nan
    row = {"Estimate": estimate, "Std. Error": se, "df": df, "t value": tstat}
    if confint:
        fac = -float(special.stdtrit(df, (1 - level) / 2)) if not math.isnan(df) else math.nan
        row["lower"], row["upper"] = estimate - se * fac, estimate + se * fac
    row["Pr(>|t|)"] = pvalue
    return row


def contest1D(m: LmerMod, L: Any, rhs: float = 0.0, ddf: str = "Satterthwaite",
              confint: bool = False, level: float = 0.95) -> dict[str, float]:
    """lmerTest's ``contest1D``: the t-test of ``l'β = rhs`` for one contrast vector.

    Returns a dict with ``Estimate``, ``Std. Error``, ``df``, ``t value`` (``lower`` and
    ``upper`` with ``confint``) and ``Pr(>|t|)``; NaN everywhere when ``L`` has a NaN.
    """
    method = match_ddf(ddf, DDF_METHODS[:2])
    _check_level(level)
    lvec = np.asarray(L, dtype=float).ravel()
    if lvec.shape[0] != m.p:
        raise LmeFormulaError(f"the contrast has length {lvec.shape[0]}; the model has {m.p} "
                              f"fixed effects")
    if np.isnan(lvec).any():
        return _t_row(math.nan, math.nan, math.nan, rhs, confint, level)
    estimate = float(lvec @ m.beta)
    if method == "Kenward-Roger":
        if not m.is_REML:
            raise LmeFormulaError(KR_ML_MESSAGE)
        adj = vcov_adjusted(m)
        var = float(lvec @ adj.vcov @ lvec)
        return _t_row(estimate, math.sqrt(var), lb_ddf(lvec, adj), rhs, confint, level)
    info = varpar_info(m)
    var = float(lvec @ info.vcov_beta @ lvec)
    grad = np.einsum("i,kij,j->k", lvec, info.jacobian, lvec)
    denom = float(grad @ info.vcov_varpar @ grad)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = float(np.divide(2 * var**2, denom))
    return _t_row(estimate, math.sqrt(var), df, rhs, confint, level)


def _check_level(level: float) -> None:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise LmeFormulaError("'level' must be a number between 0 and 1")


def get_Fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's ``get_Fstat_ddf``: the denominator df of an F statistic from the ν of its
    independent t statistics: ν itself for one, their mean when all are equal, 2 when any is
    at most 2, else ``2E/(E - q)`` with ``E = Σ ν/(ν - 2)``."""
    nu = np.asarray(nu, dtype=float)
    if nu.shape[0] == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2)))
    return 2 * E / (E - nu.shape[0])


def _f_row(F: float, ndf: float, ddf: float, sigma: float, scale: float = 1.0,
           ) -> dict[str, float]:
    ms = F * sigma**2
    F = F * scale
    p = float(special.fdtrc(ndf, ddf, F)) if not math.isnan(F) else math.nan
    return {"Sum Sq": ms * ndf, "Mean Sq": ms, "NumDF": ndf, "DenDF": ddf, "F value": F,
            "Pr(>F)": p}


def _ginv(a: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.pinv(a, rcond=math.sqrt(_EPS)))


def contestMD(m: LmerMod, L: Any, rhs: Any = 0.0, ddf: str = "Satterthwaite",
              eps: float = math.sqrt(_EPS)) -> dict[str, float] | None:
    """lmerTest's ``contestMD``: the F-test of ``Lβ = rhs``.

    Returns a dict with ``Sum Sq``, ``Mean Sq``, ``NumDF``, ``DenDF``, ``F value`` and
    ``Pr(>F)``, or None when nothing is tested (L without rows, or of rank 0).
    """
    method = match_ddf(ddf, DDF_METHODS[:2])
    L = np.asarray(L, dtype=float)
    if L.ndim == 1:
        L = L[None, :]
    if L.shape[1] != m.p:
        raise LmeFormulaError(f"the contrast matrix has {L.shape[1]} columns; the model has "
                              f"{m.p} fixed effects")
    rhs_v = np.broadcast_to(np.asarray(rhs, dtype=float), (L.shape[0],)).copy() \
        if np.ndim(rhs) == 0 else np.asarray(rhs, dtype=float)
    if rhs_v.shape != (L.shape[0],):
        raise LmeFormulaError(f"'rhs' must have length 1 or {L.shape[0]} (the rows of L)")
    if L.shape[0] == 0:
        return None
    if np.isnan(L).any():
        return _f_row(math.nan, math.nan, math.nan, math.nan)
    if method == "Kenward-Roger":
        if not m.is_REML:
            raise LmeFormulaError(KR_ML_MESSAGE)
        if np.linalg.matrix_rank(L) < L.shape[0] and np.any(rhs_v != 0):
            warnings.warn("Contrast is rank deficient and test may be affected",
                          RankDeficientContrastWarning, stacklevel=3)
        try:
            kr = kr_ftest(m, L, rhs_v)
        except (LmeFormulaError, np.linalg.LinAlgError):
            warnings.warn("Unable to compute Kenward-Roger F-test: using Satterthwaite instead",
                          KRFallbackWarning, stacklevel=3)
        else:
            return _f_row(kr["FstatU"], kr["ndf"], kr["ddf"], m.sigma, kr["F.scaling"])
    if L.shape[0] == 1:
        res = contest1D(m, L[0], rhs=float(rhs_v[0]))
        return _f_row(res["t value"] ** 2, 1.0, res["df"], m.sigma)
    info = varpar_info(m)
    beta = info.beta
    if np.any(rhs_v != 0):
        beta = beta - _ginv(L) @ rhs_v
    vl = L @ info.vcov_beta @ L.T
    d, P = np.linalg.eigh((vl + vl.T) / 2)
    d, P = d[::-1], P[:, ::-1]  # R's eigen(): decreasing
    tol = max(eps * d[0], 0.0)
    pos = d > tol
    q = int(pos.sum())
    if q < L.shape[0] and np.any(rhs_v != 0):
        warnings.warn("Contrast is rank deficient and test may be affected",
                      RankDeficientContrastWarning, stacklevel=3)
    if q <= 0:
        return None
    PtL = (P.T @ L)[:q]
    if q == 1:
        res = contest1D(m, PtL[0], rhs=float(rhs_v[0]))
        return _f_row(res["t value"] ** 2, 1.0, res["df"], m.sigma)
    t2 = (PtL @ beta) ** 2 / d[:q]
    F = float(t2.sum() / q)
    grads = np.einsum("mi,kij,mj->mk", PtL, info.jacobian, PtL)
    nu = np.array([2 * d[i] ** 2 / float(grads[i] @ info.vcov_varpar @ grads[i])
                   for i in range(q)])
    return _f_row(F, float(q), get_Fstat_ddf(nu, tol=1e-8), m.sigma)


# ---- public tables -------------------------------------------------------------------------

def coef_table(m: LmerMod, ddf: str = "Satterthwaite") -> pd.DataFrame:
    """The fixed-effects coefficient table with degrees of freedom and p-values
    (lmerTest's ``summary(m, ddf = ...)$coefficients``).

    Parameters
    ----------
    m
        A fitted model.
    ddf
        ``"Satterthwaite"`` (default), ``"Kenward-Roger"`` (REML fits only) or ``"lme4"``
        (lme4's table: no df, no p-values).

    Returns
    -------
    pandas.DataFrame
        Indexed by the fixed-effect names, with columns ``Estimate``, ``Std. Error``, ``df``,
        ``t value`` and ``Pr(>|t|)`` (``lme4``: ``Estimate``, ``Std. Error``, ``t value``).

    Examples
    --------
    >>> import lmeformula as lmf
    >>> m = lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"))
    >>> lmf.coef_table(m).round(3).loc["Days", ["df", "t value"]].tolist()
    [17.0, 6.771]
    """
    m = _check_model(m)
    method = match_ddf(ddf)
    fe = m.fixef
    if method == "lme4":
        return m.summary().coefficients
    if method == "Kenward-Roger" and not m.is_REML:
        raise LmeFormulaError(KR_ML_MESSAGE)
    eye = np.eye(m.p)
    rows = [contest1D(m, eye[i], ddf=method) for i in range(m.p)]
    return pd.DataFrame(rows, index=fe.index, columns=T_COLUMNS, dtype=float)


def _as_contrasts(L: Any, p: int) -> list[tuple[Any, np.ndarray, list[Any] | None]]:
    """L as a list of (name, matrix, row names): a dict or a list of arrays / DataFrames is
    several contrast matrices; anything else (a vector, a matrix, nested lists) is one."""
    if isinstance(L, Mapping):
        return [(k, *_as_matrix(v, p)) for k, v in L.items()]
    if isinstance(L, (list, tuple)) and L and all(isinstance(x, (np.ndarray, pd.DataFrame))
                                                  for x in L):
        return [(None, *_as_matrix(v, p)) for v in L]
    return [(None, *_as_matrix(L, p))]


def _as_matrix(L: Any, p: int) -> tuple[np.ndarray, list[Any] | None]:
    names = list(L.index) if isinstance(L, pd.DataFrame) else None
    try:
        arr = np.asarray(L.to_numpy() if isinstance(L, pd.Series) else L, dtype=float)
    except (TypeError, ValueError):
        raise ArgumentError(f"L must be a numeric vector or matrix of contrasts, not "
                            f"{L!r}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise LmeFormulaError("L must be a vector or a matrix of contrasts")
    if arr.shape[1] != p:
        raise LmeFormulaError(f"L has {arr.shape[1]} columns; the model has {p} fixed effects")
    return arr, names


def contest(m: LmerMod, L: Any, rhs: Any = 0.0, joint: bool = True, collect: bool = True,
            confint: bool = True, level: float = 0.95, check_estimability: bool = False,
            ddf: str = "Satterthwaite") -> pd.DataFrame | list[pd.DataFrame]:
    """Tests of linear contrasts of the fixed effects (lmerTest's ``contest``).

    Parameters
    ----------
    m
        A fitted model.
    L
        A contrast vector (length p), a matrix (rows are contrasts; a DataFrame's index names
        them), or a list / dict of such matrices.
    rhs
        The hypothesised value(s) of ``Lβ``.
    joint
        One F-test per matrix (True) or a t-test per row (False).
    collect
        Stack the results of several matrices into one table.
    confint, level
        Confidence intervals of the t-tests.
    check_estimability
        Rows that are not estimable (in the full model matrix, before lme4 dropped columns)
        give NA; L then has the full matrix's columns.
    ddf
        ``"Satterthwaite"`` or ``"Kenward-Roger"``.

    Returns
    -------
    pandas.DataFrame
        joint: ``Sum Sq``, ``Mean Sq``, ``NumDF``, ``DenDF``, ``F value``, ``Pr(>F)``;
        otherwise ``Estimate``, ``Std. Error``, ``df``, ``t value``, ``lower``, ``upper``,
        ``Pr(>|t|)``.
    """
    m = _check_model(m)
    method = match_ddf(ddf, DDF_METHODS[:2])
    _check_level(level)
    joint = bool(check_flag(joint, "joint"))
    collect = bool(check_flag(collect, "collect"))
    confint = bool(check_flag(confint, "confint"))
    check_estimability = bool(check_flag(check_estimability, "check_estimability"))
    try:
        rhs = np.asarray(rhs, dtype=float)
    except (TypeError, ValueError):
        raise ArgumentError(f"rhs must be numeric, not {rhs!r}") from None
    if not np.isfinite(rhs).all():
        raise ArgumentError("rhs must be finite (it has NA/NaN/Inf)")
    if not joint and np.size(rhs) != 1:
        raise LmeFormulaError("'rhs' must be a single number for t-tests (joint=False)")
    ft = fixed_terms(m) if check_estimability and not joint else None
    width = m.p if ft is None else full_x(ft)[0].shape[1]
    items = _as_contrasts(L, width)
    results = []
    for name, mat, names in items:
        if joint:
            row = contestMD(m, mat, rhs=rhs, ddf=method)
            tab = pd.DataFrame([row] if row is not None else [], columns=F_COLUMNS,
                               dtype=float)
            if name is not None and row is not None:
                tab.index = [name]
        else:
            if ft is not None:
                X, cols = full_x(ft)
                estim = is_estimable(mat, nullspace(X))
                mat = mat.copy()
                mat[~estim] = np.nan
                keep = [cols.index(c) for c in m.fixef.index]
                mat = mat[:, keep]
            rhs_v = float(np.asarray(rhs, dtype=float).ravel()[0])
            rows = [contest1D(m, r, rhs=rhs_v, ddf=method, confint=confint, level=level)
                    for r in mat]
            tab = pd.DataFrame(rows, columns=CI_COLUMNS if confint else T_COLUMNS, dtype=float)
            if names is not None:
                tab.index = names
        results.append(tab)
    if not collect:
        return results
    return results[0] if len(results) == 1 else pd.concat(results)


_ROMAN = {"1": "1", "2": "2", "3": "3", "I": "1", "II": "2", "III": "3"}


def anova_lmertest(m: LmerMod, type: Any = 3, ddf: str = "Satterthwaite") -> AnovaTable:
    """lmerTest's ``anova(m, type, ddf)`` of one model: F-tests of each fixed-effects term.

    ``type`` is 1, 2 or 3 (``"I"``, ``"II"``, ``"III"``); ``ddf="lme4"`` gives lme4's table.
    """
    m = _check_model(m)
    method = match_ddf(ddf)
    if method == "lme4":
        return anova_single(m)
    key = _ROMAN.get(str(type))
    if key is None:
        raise LmeFormulaError("'type' must be one of 1, 2, 3 (or \"I\", \"II\", \"III\")")
    if method == "Kenward-Roger" and not m.is_REML:
        raise LmeFormulaError(KR_ML_MESSAGE)
    ft = fixed_terms(m)
    if key == "1":
        Llist = contrasts_type1(ft)
    elif key == "2":
        Llist = contrasts_type2(ft)
    else:
        Llist, zero = contrasts_type3(ft)
        if zero:
            warnings.warn(f"Missing cells for: {', '.join(zero)}. \nInterpret type III "
                          "hypotheses with care.", MissingCellsWarning, stacklevel=3)
    rows, names = [], []
    for term, L in Llist.items():
        row = contestMD(m, L, ddf=method)
        if row is not None:
            rows.append(row)
            names.append(term)
    # terms with nothing to test come last, as NA rows (lmerTest's single_anova)
    for term in Llist:
        if term and term not in names:
            rows.append(dict.fromkeys(F_COLUMNS, math.nan))
            names.append(term)
    table = pd.DataFrame(rows, index=names, columns=F_COLUMNS, dtype=float)
    roman = {"1": "I", "2": "II", "3": "III"}[key]
    method_name = {"Satterthwaite": "Satterthwaite's", "Kenward-Roger": "Kenward-Roger's"}
    heading = [f"Type {roman} Analysis of Variance Table with {method_name[method]} method"]
    out = AnovaTable(table, heading, "lmertest")
    out.attrs["hypotheses"] = {k: v for k, v in Llist.items() if k}
    return out


def drop1(m: LmerMod, scope: str | Sequence[str] | None = None, ddf: str | None = None,
          force_get_contrasts: bool = False, *, test: str = "none", k: float = 2.0,
          scale: float = 0.0, trace: bool | int = False,
          sum_fun: SumFun | None = None) -> AnovaTable:
    """lmerTest's ``drop1``: single term deletions of the fixed-effects terms.

    With ``ddf="Satterthwaite"`` (the default for a linear mixed model) or
    ``"Kenward-Roger"``: an F-test of each
    marginal fixed-effects term (one no other term contains), testing its coefficients = 0
    as dropping it from the model would, with Satterthwaite's or Kenward-Roger's
    denominator degrees of freedom. No refit. When X lost columns for rank deficiency (or
    with ``force_get_contrasts``) each hypothesis is the difference between X and the model
    matrix without the term, as lmerTest's ``get_Ldiffmat2``.

    With ``ddf="lme4"``: lme4's ``drop1.merMod``, to which lmerTest hands on: the model
    refitted without each term, compared by AIC (of maximum-likelihood refits) and, with
    ``test="Chisq"``, likelihood-ratio tests (:func:`lmeformula.ddf.lme4_drop1.drop1_lme4`).
    A glmer fit has this one only, as in R (lmerTest's method is for lmer fits).

    Parameters
    ----------
    m
        A fitted model.
    scope
        The terms to drop (by default all marginal terms). lmerTest's tests accept marginal
        terms only; lme4's any fixed-effects term label, or a formula as a string.
    ddf
        ``"Satterthwaite"``, ``"Kenward-Roger"`` or ``"lme4"`` (or a unique prefix); None:
        ``"Satterthwaite"`` for an lmer fit, ``"lme4"`` for a glmer fit.
    force_get_contrasts
        lmerTest's tests: the hypotheses from the model matrices with and without each term
        even when X is of full rank.
    test, k, scale, trace, sum_fun
        lme4's arguments (``ddf="lme4"`` only; lmerTest's tests do not take them):
        ``test`` ``"none"``, ``"Chisq"`` or ``"user"`` (with ``sum_fun``), the penalty
        ``k`` per parameter, ``scale`` (printed only), ``trace`` (above 1 prints each
        term tried).

    Returns
    -------
    AnovaTable
        lmerTest's F table (``Sum Sq`` ... ``Pr(>F)``), or lme4's (``npar``, ``AIC``, and
        ``LRT``, ``Pr(Chi)`` with ``test="Chisq"``, a ``<none>`` row first).
    """
    m = _check_model(m)
    if isinstance(m, GlmerMod):
        # R's drop1 of a glmerMod is lme4's drop1.merMod: lmerTest has no method for it
        if ddf is not None and match_ddf(ddf) != "lme4":
            raise LmeFormulaError("Satterthwaite's and Kenward-Roger's tests are for linear "
                                  "mixed models: drop1 of a glmer fit is lme4's (ddf=\"lme4\")")
        method = "lme4"
    else:
        method = match_ddf("Satterthwaite" if ddf is None else ddf)
    if method == "lme4":
        if force_get_contrasts:
            raise ArgumentError("force_get_contrasts is for lmerTest's F-tests, not "
                                "ddf = \"lme4\"")
        return drop1_lme4(m, scope=scope, scale=scale, test=test, k=k, trace=trace,
                          sum_fun=sum_fun)
    if (test, k, scale, trace, sum_fun) != ("none", 2.0, 0.0, False, None):
        # lmerTest's drop1 would pass them on to nothing: say so rather than ignore them
        raise ArgumentError("test, k, scale, trace and sum_fun are lme4's drop1 arguments: "
                            "use them with ddf = \"lme4\"")
    if method == "Kenward-Roger" and not m.is_REML:
        raise LmeFormulaError(KR_ML_MESSAGE)
    ft = fixed_terms(m)
    marginal = ft.terms.drop_scope  # R's drop.scope
    if scope is None:
        chosen = marginal
    else:
        if isinstance(scope, str) or not len(scope) or \
                not all(isinstance(t, str) for t in scope):
            raise LmeFormulaError("'scope' should be a character vector naming terms to be "
                                  "dropped")
        if not all(t in marginal for t in scope):
            raise LmeFormulaError("Only marginal terms can be dropped from the model")
        chosen = list(scope)
    # lmerTest's get_contrasts_marginal: type I contrasts when X has at most one column or
    # the model at most one term, else the term's rows of the identity
    if ft.X.shape[1] <= 1 or len(ft.labels) <= 1:
        Llist = contrasts_type1(ft)
    else:
        Llist = _marginal(ft, ft.labels)
    if chosen and (m.lformula.X_attrs.get("col.dropped") or force_get_contrasts):
        Llist = {t: drop1_contrasts(ft, t) for t in chosen}
    rows = []
    for term in chosen:
        row = contestMD(m, Llist[term], ddf=method)
        rows.append(dict.fromkeys(F_COLUMNS, math.nan) if row is None else row)
    table = pd.DataFrame(rows, index=chosen, columns=F_COLUMNS, dtype=float)
    method_name = {"Satterthwaite": "Satterthwaite's", "Kenward-Roger": "Kenward-Roger's"}
    # lmerTest's deparse2(formula(object)): lme4's stored formula, (x || g) expanded (the
    # summary's Formula line, from the call, keeps it as written)
    heading = [f"Single term deletions using {method_name[method]} method:", "\nModel:",
               m.formula]
    out = AnovaTable(table, heading, "lmertest")
    out.attrs["hypotheses"] = {t: Llist[t] for t in chosen}
    return out


def ls_means(m: LmerMod, which: str | Sequence[str] | None = None, level: float = 0.95,
             ddf: str = "Satterthwaite", pairwise: bool = False) -> LsMeansTable:
    """Least-squares means of the factor terms (lmerTest's ``ls_means``).

    Each mean averages the model's predictions over a grid of every factor's levels with the
    numeric covariates at their means; levels whose mean is not estimable (an empty cell of a
    rank-deficient model) give NA rows.

    Parameters
    ----------
    m
        A fitted model.
    which
        A factor term's label, or several; None for all factor terms.
    level
        Confidence level of the intervals.
    ddf
        ``"Satterthwaite"`` or ``"Kenward-Roger"``.
    pairwise
        Differences of each pair of levels instead (:func:`difflsmeans`).

    Returns
    -------
    LsMeansTable
        A DataFrame indexed by level (``"recipeA"``, ``"recipeA:temperature175"``,
        ``"recipeA - recipeB"``), with ``Estimate``, ``Std. Error``, ``df``, ``t value``,
        ``lower``, ``upper``, ``Pr(>|t|)``; ``attrs["term"]`` gives each row's term,
        ``attrs["hypotheses"]`` the contrast matrices, ``attrs["confidence_level"]`` and
        ``attrs["ddf"]`` the level and method. It prints as lmerTest's ``print.ls_means``
        (heading, R's ``printCoefmat`` with stars, confidence level and df method); its
        selections and arithmetic are plain DataFrames.
    """
    m = _check_model(m)
    method = match_ddf(ddf, DDF_METHODS[:2])
    _check_level(level)
    if isinstance(which, str):
        which = [which]
    if which is not None and (not isinstance(which, (list, tuple))
                              or not all(isinstance(w, str) for w in which)):
        raise ArgumentError(f"'which' must be term names (strings), not {which!r}")
    ft = fixed_terms(m)
    Llist = lsmeans_contrasts(ft, None if which is None else list(which))
    X, cols = full_x(ft)
    null = nullspace(X)
    keep = [cols.index(c) for c in m.fixef.index]
    rows, names, terms, hyps = [], [], [], {}
    for term, (L, levels) in Llist.items():
        if pairwise:
            L, levels = _pairs(L, levels)
        hyps[term] = pd.DataFrame(L, index=levels, columns=cols)
        estim = is_estimable(L, null)
        L = L.copy()
        L[~estim] = np.nan
        for i in range(L.shape[0]):
            rows.append(contest1D(m, L[i, keep], ddf=method, confint=True, level=level))
            names.append(levels[i])
            terms.append(term)
    # lmerTest's heading attribute "Least Squares Means table:\n", which print.ls_means
    # writes with cat(sep = "\n"): the line and an empty one (difflsmeans's too)
    out = LsMeansTable(pd.DataFrame(rows, index=names, columns=CI_COLUMNS, dtype=float),
                       ["Least Squares Means table:", ""])
    out.attrs.update({"term": terms, "hypotheses": hyps, "confidence_level": level,
                      "ddf": method})
    return out


def _pairs(L: np.ndarray, levels: list[str]) -> tuple[np.ndarray, list[str]]:
    """lmerTest's ``get_pairs``: every difference level_i - level_j, i < j."""
    rows, names = [], []
    for i in range(len(levels)):
        for j in range(i + 1, len(levels)):
            rows.append(L[i] - L[j])
            names.append(f"{levels[i]} - {levels[j]}")
    return (np.array(rows) if rows else np.zeros((0, L.shape[1]))), names


def difflsmeans(m: LmerMod, which: str | Sequence[str] | None = None, level: float = 0.95,
                ddf: str = "Satterthwaite") -> LsMeansTable:
    """Differences of least-squares means (lmerTest's ``difflsmeans``): every pair of levels
    of each factor term, with t-tests and confidence intervals. See :func:`ls_means`.

    Returns
    -------
    LsMeansTable
        A DataFrame indexed by pair (``"recipeA - recipeB"``), as :func:`ls_means`'s; printed
        as lmerTest prints it.
    """
    return ls_means(m, which=which, level=level, ddf=ddf, pairwise=True)


# summary(ddf=...)'s coefficients (LmerMod reaches this table through lmeformula.generics)
ddf_coefficients.register(LmerMod, coef_table)
