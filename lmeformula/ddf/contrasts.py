"""The hypothesis matrices of lmerTest's anova types I-III and least-squares means.

* Type I: rows of ``t(L)`` of the Doolittle decomposition ``X'X = LU`` (entries below 1e-6 set
  to zero), one block of rows per term, in X's parameterisation.
* Type II: a term contained in no other term is tested marginally (its coefficients = 0);
  otherwise the Doolittle rows of the term with X's columns reordered to put the term and the
  terms containing it last. A term contains another when its (contrast-coded) variables include
  the other's and both have the same numeric variables.
* Type III: X is rebuilt with treatment contrasts for every factor and reduced to full rank
  (pivoted QR, tol 1e-7); each term's hypothesis is the term's rows of ``ginv(X) rdX``, where
  rdX holds every term's full indicator coding, made orthogonal to the terms that contain it
  (higher orders first), then mapped back to X's own parameterisation (``ginv(X_treatment) X``).
  So the test does not depend on the contrasts. Rows with absolute sum below 1e-8 are dropped:
  an empty cell lowers the numerator degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..checks import independent_columns
from ..errors import LmeFormulaError
from ..formula.terms import Terms
from ..mermod import LmerMod
from ..modelmatrix import factor_coding, model_matrix
from ..transforms import MatrixValue, is_factor_like

__all__ = [
    "FixedTerms",
    "contrasts_type1",
    "contrasts_type2",
    "contrasts_type3",
    "doolittle",
    "fixed_terms",
    "is_estimable",
    "lsmeans_contrasts",
    "nullspace",
]


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall(x, digits)`` (R 4.2: ``round(x, digits - log10(max|x|))``, the number of
    decimals rounded to the nearest integer)."""
    x = np.asarray(x, dtype=float)
    finite = x[np.isfinite(x)]
    mx = float(np.max(np.abs(finite))) if finite.size else 0.0
    decimals = max(0, math.floor(digits - math.log10(mx) + 0.5)) if mx > 0 else digits
    return np.round(x, decimals)


def doolittle(x: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """lmerTest's ``doolittle``: the LU decomposition of a square matrix without pivoting
    (unit diagonal L); multipliers of a pivot below ``eps`` are 0, and entries of L and U below
    ``eps`` in absolute value are set to 0 at the end."""
    n = x.shape[0]
    L = np.eye(n)
    U = np.zeros((n, n))
    for i in range(n):
        U[i, :] = x[i, :] - L[i, :i] @ U[:i, :]
        if i + 1 < n:
            col = x[i + 1 :, i] - L[i + 1 :, :i] @ U[:i, i]
            L[i + 1 :, i] = 0.0 if abs(U[i, i]) < eps else col / U[i, i]
    L[np.abs(L) < eps] = 0.0
    U[np.abs(U) < eps] = 0.0
    return L, U


def nullspace(a: np.ndarray) -> np.ndarray:
    """lmerTest's ``nullspace``: right singular vectors beyond the rank (singular values above
    1e-8 times the largest count)."""
    if a.size == 0:
        return np.zeros((0, 0))
    # V complete (p x p) needs the full decomposition only when a has fewer rows than columns
    _, s, vt = np.linalg.svd(a, full_matrices=a.shape[0] < a.shape[1])
    rank = int(np.sum(s > max(1e-8 * s[0], 0)))
    return np.asarray(vt[rank:].T)


def is_estimable(L: np.ndarray, null: np.ndarray, tol: float = math.sqrt(np.finfo(float).eps),
                 ) -> np.ndarray:
    """lmerTest's ``is_estimable``: ``|rowSums(L N)| < tol`` for the null space N of X."""
    if null.size == 0:
        return np.ones(L.shape[0], dtype=bool)
    return np.asarray(np.abs((L @ null).sum(axis=1)) < tol)


# ---- the fixed-effects terms as lmerTest sees them ---------------------------------------

@dataclass(frozen=True)
class FixedTerms:
    """``terms(model)`` and ``model.matrix(model)`` with the attributes lmerTest reads.

    Attributes
    ----------
    terms
        The fixed-effects terms (the response included).
    labels
        Term labels.
    variables
        Variable names (R's ``variables`` attribute, the response first when there is one).
    factors
        R's ``factors`` attribute: variables x terms, 1 (coded by contrasts), 2 (by indicators)
        or 0.
    data_classes
        R's ``.MFclass`` of each variable: ``numeric``, ``factor``, ``ordered``, ``logical``,
        ``character`` (a string column, which the frame holds as a factor), ``nmatrix.k``...
    X, X_names, assign
        The fitted X (columns lme4 dropped for rank are not in it) with R's ``assign``.
    contrasts
        The contrasts of the call (for rebuilding X as ``contrasts = "restore"``).
    frame_variables
        The model frame's variables.
    nrow
        Number of observations.
    """

    terms: Terms
    labels: list[str]
    variables: list[str]
    factors: np.ndarray
    data_classes: dict[str, str]
    X: np.ndarray
    X_names: list[str]
    assign: list[int]
    contrasts: dict[str, Any]
    frame_variables: Mapping[str, Any]
    nrow: int

    @property
    def intercept(self) -> bool:
        return bool(self.terms.intercept)

    @property
    def order(self) -> list[int]:
        return self.terms.order

    def term_vars(self, j: int) -> list[str]:
        """Variables with code 1 in term j (lmerTest's ``get_vars``)."""
        return [self.variables[v] for v in range(len(self.variables)) if self.factors[v, j] == 1]


def _data_class(value: Any) -> str:
    if isinstance(value, MatrixValue):
        return f"nmatrix.{value.values.shape[1]}"
    if isinstance(value, pd.Categorical):
        return "ordered" if value.ordered else "factor"
    arr = np.asarray(value)
    if arr.dtype == bool:
        return "logical"
    if arr.dtype.kind in "iuf":
        return "numeric"
    if arr.dtype.kind in "OUS":
        return "character"
    return "other"


def _factor_codes(t: Terms) -> np.ndarray:
    """R's ``TermCode`` for every variable of every term: 1 when the term without the variable
    is empty or contained in an earlier term, else 2."""
    out = np.zeros((len(t.variables), len(t.terms)), dtype=int)
    seen: list[frozenset[int]] = []
    for j, term in enumerate(t.terms):
        tset = frozenset(term)
        for v in term:
            rest = tset - {v}
            out[v, j] = 1 if not rest or any(rest <= prev for prev in seen) else 2
        seen.append(tset)
    return out


def fixed_terms(m: LmerMod) -> FixedTerms:
    """The fixed part of a fitted model as lmerTest reads it: R's terms of an R-syntax
    formula (a formulaic-syntax model is refused: its terms are formulaic's, whose
    variables and codings lmerTest's hypotheses are not built from)."""
    pf = m.lformula
    t = pf.parsed.fixed
    if not isinstance(t, Terms):
        raise LmeFormulaError(
            "lmerTest's term-wise tests (anova with ddf or type, drop1, ls_means) read the "
            "fixed-effects terms of an R-syntax formula; this model was fitted with "
            "syntax=\"formulaic\": refit it with syntax=\"R\" (summary(), contest() of a "
            "contrast matrix, and anova() of nested models work for both)")
    names = t.variable_names
    variables = pf.frame.variables
    # a character variable is held as a factor, but R's dataClasses (model.frame's, before
    # lme4's factorize) say "character": lmerTest does not count it as a factor
    classes = {nm: "character" if nm in pf.frame.character else _data_class(variables[nm])
               for nm in names if nm in variables}
    return FixedTerms(
        terms=t, labels=t.term_labels, variables=names, factors=_factor_codes(t),
        data_classes=classes, X=pf.X_values, X_names=list(pf.X_names),
        assign=list(pf.X_attrs["assign"]), contrasts=dict(pf.call.get("contrasts") or {}),
        frame_variables=variables, nrow=pf.X_values.shape[0])


def term2colx(ft: FixedTerms, assign: list[int]) -> dict[str, list[int]]:
    """lmerTest's ``term2colX``: term label (and ``(Intercept)``) -> 0-based columns."""
    labels = ft.labels
    col_terms = [("(Intercept)" if a == 0 else labels[a - 1]) for a in assign]
    names = list(dict.fromkeys(col_terms)) + [lab for lab in labels if lab not in col_terms]
    out: dict[str, list[int]] = {nm: [] for nm in names}
    for j, nm in enumerate(col_terms):
        out[nm].append(j)
    return out


def containment(ft: FixedTerms) -> dict[str, list[str]]:
    """lmerTest's ``containment``: for each term, the terms that contain it."""
    labels = ft.labels
    vars_ = [set(ft.term_vars(j)) for j in range(len(labels))]
    numerics = [{v for v in vs if ft.data_classes.get(v) == "numeric"} for vs in vars_]
    out = {}
    for i, lab in enumerate(labels):
        out[lab] = [labels[j] for j in range(len(labels))
                    if vars_[i] <= vars_[j] and vars_[j] - vars_[i] and numerics[i] == numerics[j]]
    return out


def _empty_type1(ft: FixedTerms) -> dict[str, np.ndarray] | None:
    p = ft.X.shape[1]
    if p == 0:
        return {"": np.zeros((0, 0))}
    if p == 1 and ft.intercept:
        return {"": np.zeros((0, 1))}
    return None


def contrasts_type1(ft: FixedTerms) -> dict[str, np.ndarray]:
    """Type I hypothesis matrices (lmerTest's ``get_contrasts_type1``). A key ``""`` marks
    lmerTest's unnamed empty list (a model with at most an intercept)."""
    empty = _empty_type1(ft)
    if empty is not None:
        return empty
    X = ft.X
    Lt = np.ones((1, 1)) if X.shape[1] == 1 else doolittle(X.T @ X)[0].T
    cols = term2colx(ft, ft.assign)
    return {lab: Lt[cols[lab]] for lab in ft.labels}


def _marginal(ft: FixedTerms, which: list[str]) -> dict[str, np.ndarray]:
    eye = np.eye(ft.X.shape[1])
    cols = term2colx(ft, ft.assign)
    return {lab: eye[cols[lab]] for lab in which}


def _type2_terms(ft: FixedTerms, which: list[str]) -> dict[str, np.ndarray]:
    """lmerTest's ``get_contrasts_type2`` for the given terms."""
    X = ft.X
    contained = containment(ft)
    col_terms = [("(Intercept)" if a == 0 else ft.labels[a - 1]) for a in ft.assign]
    by_term: dict[str, list[int]] = {}
    for j, nm in enumerate(col_terms):
        by_term.setdefault(nm, []).append(j)
    out = {}
    for term in which:
        cols = [j for nm in [term, *contained[term]] for j in by_term.get(nm, [])]
        rest = [j for j in range(X.shape[1]) if j not in set(cols)]
        order = rest + cols
        xn = X[:, order]
        lc = doolittle(xn.T @ xn)[0].T
        rows = np.array([i for i, j in enumerate(order) if col_terms[j] == term], dtype=int)
        back = np.argsort(order)  # columns back in X's order
        out[term] = lc[np.ix_(rows, back)]
    return out


def contrasts_type2(ft: FixedTerms) -> dict[str, np.ndarray]:
    """Type II hypothesis matrices (lmerTest's ``get_contrasts_type2_unfolded``)."""
    if ft.X.shape[1] <= 1 or len(ft.labels) <= 1:
        return contrasts_type1(ft)
    contained = containment(ft)
    marginal = [lab for lab in ft.labels if not contained[lab]]
    others = [lab for lab in ft.labels if contained[lab]]
    out = _marginal(ft, marginal)
    out.update(_type2_terms(ft, others))
    return {lab: out[lab] for lab in ft.labels}


def _term_matrix(ft: FixedTerms, term: tuple[int, ...], variables: Mapping[str, Any],
                 nrow: int, contrasts: Mapping[str, Any] | None = None) -> tuple[np.ndarray,
                                                                                list[str]]:
    """``model.matrix(~ 0 + term)``: the term's full indicator coding."""
    t = Terms(ft.terms.variables, None, (term,), False)
    mm = model_matrix(t, variables, nrow, contrasts)
    return mm.values, mm.columns


def _rdx(ft: FixedTerms) -> tuple[np.ndarray, list[str], list[str]]:
    """lmerTest's ``get_rdX``: every term's full coding side by side (an intercept first);
    also the names of its all-zero columns (empty cells)."""
    blocks, names = [], []
    if ft.intercept:
        blocks.append(np.ones((ft.nrow, 1)))
        names.append("(Intercept)")
    for term in ft.terms.terms:
        vals, cols = _term_matrix(ft, term, ft.frame_variables, ft.nrow)
        blocks.append(vals)
        names += cols
    rdx = np.hstack(blocks) if blocks else np.zeros((ft.nrow, 0))
    zero = [nm for j, nm in enumerate(names) if np.all(rdx[:, j] == 0)]
    return rdx, names, zero


def _ginv(a: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.pinv(a, rcond=math.sqrt(np.finfo(float).eps)))


def _residuals(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``resid(lm.fit(x, y))``: y minus its projection on the span of x's columns (columns
    dependent at tol 1e-7 left out, as LINPACK's QR does)."""
    keep = independent_columns(x, 1e-7)
    if not keep:
        return y.copy()
    q, _ = np.linalg.qr(x[:, keep])
    return np.asarray(y - q @ (q.T @ y))


def _treatment_x(ft: FixedTerms) -> tuple[np.ndarray, list[str], list[int]]:
    """X rebuilt with treatment contrasts for every factor, reduced to full column rank."""
    factors = {nm: "contr.treatment" for nm in ft.variables
               if nm in ft.frame_variables and is_factor_like(ft.frame_variables[nm])}
    t = Terms(ft.terms.variables, ft.terms.response, ft.terms.terms, ft.terms.intercept)
    mm = model_matrix(t, ft.frame_variables, ft.nrow, factors)
    keep = independent_columns(mm.values, 1e-7)
    return mm.values[:, keep], [mm.columns[j] for j in keep], [mm.assign[j] for j in keep]


def _type3_in(ft: FixedTerms, X: np.ndarray, names: list[str], assign: list[int],
              ) -> tuple[dict[str, np.ndarray], list[str]]:
    """lmerTest's ``extract_contrasts_type3`` for a treatment-coded full-rank X."""
    rdx, rd_names, zero = _rdx(ft)
    L = zapsmall((_ginv(X) @ rdx).T)  # rows: rdX's columns; columns: X's
    cols = term2colx(ft, assign)
    contained = containment(ft)
    order = ft.order
    # higher orders first, formula order among equals (R's stable order(decreasing = TRUE))
    for j in sorted(range(len(ft.labels)), key=lambda j: -order[j]):
        term = ft.labels[j]
        contains = contained[term]
        if contains and cols[term]:
            xcols = [c for nm in contains for c in cols[nm]]
            L[:, cols[term]] = zapsmall(_residuals(L[:, xcols], L[:, cols[term]]))
    row_of = {nm: i for i, nm in enumerate(rd_names)}
    L = L[[row_of[nm] for nm in names]]
    out = {}
    for term in ft.labels:
        lt = L[:, cols[term]].T
        out[term] = lt[np.abs(lt).sum(axis=1) > 1e-8]
    return out, zero


def contrasts_type3(ft: FixedTerms) -> tuple[dict[str, np.ndarray], list[str]]:
    """Type III hypothesis matrices (lmerTest's ``get_contrasts_type3``), and the names of the
    empty cells (lmerTest's "Missing cells for: ..." message)."""
    if ft.X.shape[1] <= 1 or len(ft.labels) <= 1:
        return contrasts_type1(ft), []
    used = _used_codings(ft)
    if used and all(c == "contr.treatment" for c in used.values()):
        return _type3_in(ft, ft.X, ft.X_names, ft.assign)
    X, names, assign = _treatment_x(ft)
    out, zero = _type3_in(ft, X, names, assign)
    mapping = zapsmall(_ginv(X) @ ft.X)
    return {lab: L @ mapping for lab, L in out.items()}, zero


def _used_codings(ft: FixedTerms) -> dict[str, Any]:
    """R's ``attr(model.matrix(model), "contrasts")``: the coding of every factor variable."""
    out: dict[str, Any] = {}
    for nm in ft.variables:
        val = ft.frame_variables.get(nm)
        if val is None or not is_factor_like(val) or nm == _response_name(ft):
            continue
        if any(ft.factors[ft.variables.index(nm), j] for j in range(len(ft.labels))):
            out[nm] = factor_coding(nm, val, ft.contrasts)[0]  # C(f, sum)'s too
    return out


def _response_name(ft: FixedTerms) -> str | None:
    r = ft.terms.response
    return None if r is None else ft.variables[r]


# ---- least-squares means -------------------------------------------------------------------

def numeric_terms(ft: FixedTerms) -> dict[str, bool]:
    """lmerTest's ``numeric_terms``: terms with a variable that is not a factor."""
    factor_vars = {v for v, c in ft.data_classes.items() if c in ("factor", "ordered")}
    resp = _response_name(ft)
    num_vars = {v for v in ft.variables if v != resp and v not in factor_vars}
    return {lab: any(v in num_vars for v in lab.split(":")) for lab in ft.labels}


def _grid(ft: FixedTerms) -> tuple[dict[str, Any], int]:
    """lmerTest's ``get_min_data``: ``expand.grid`` of every factor's levels (the first varying
    fastest) and every numeric variable at its mean."""
    resp = _response_name(ft)
    xvars = [v for v in ft.variables if v != resp and v in ft.frame_variables]
    facs = [(v, ft.frame_variables[v]) for v in xvars if is_factor_like(ft.frame_variables[v])]
    nums = [(v, ft.frame_variables[v]) for v in xvars if not is_factor_like(ft.frame_variables[v])]
    cats = [val if isinstance(val, pd.Categorical) else pd.Categorical(np.asarray(val))
            for _, val in facs]
    sizes = [len(c.categories) for c in cats]
    nrow = int(np.prod(sizes)) if sizes else 1
    out: dict[str, Any] = {}
    rep = 1
    for (v, _), cat, k in zip(facs, cats, sizes, strict=True):
        codes = np.tile(np.repeat(np.arange(k), rep), nrow // (k * rep))
        out[v] = pd.Categorical.from_codes(codes, categories=cat.categories, ordered=cat.ordered)
        rep *= k
    for v, val in nums:
        if isinstance(val, MatrixValue):
            means = val.values.mean(axis=0)
            out[v] = MatrixValue(np.tile(means, (nrow, 1)), val.colnames)
        else:
            out[v] = np.full(nrow, float(np.mean(np.asarray(val, dtype=float))))
    return out, nrow


def lsmeans_contrasts(ft: FixedTerms, which: list[str] | None = None,
                      ) -> dict[str, tuple[np.ndarray, list[str]]]:
    """lmerTest's ``lsmeans_contrasts``: for each factor term, the average over the grid of the
    rows of X at each level (combination) of the term; columns are the full X (before any
    rank-deficient columns are dropped), with their names."""
    numeric = numeric_terms(ft)
    factor_terms = [lab for lab in ft.labels if not numeric[lab]]
    which = factor_terms if which is None else list(which)
    bad = [w for w in which if w not in factor_terms]
    if bad:
        raise LmeFormulaError(f"'which' must name factor terms of the model ({', '.join(bad)} "
                              f"{'is' if len(bad) == 1 else 'are'} not one of: "
                              f"{', '.join(factor_terms)})")
    grid, nrow = _grid(ft)
    t = Terms(ft.terms.variables, None, ft.terms.terms, ft.terms.intercept)
    ux = model_matrix(t, grid, nrow, ft.contrasts)
    out = {}
    for lab in which:
        term = ft.terms.terms[ft.labels.index(lab)]
        lt, names = _term_matrix(ft, term, grid, nrow)
        avg = (lt / lt.sum(axis=0)).T
        out[lab] = (avg @ ux.values, names)
    return out


def full_x(ft: FixedTerms) -> tuple[np.ndarray, list[str]]:
    """X as ``model.matrix`` builds it with the call's contrasts, no column dropped."""
    t = Terms(ft.terms.variables, ft.terms.response, ft.terms.terms, ft.terms.intercept)
    mm = model_matrix(t, ft.frame_variables, ft.nrow, ft.contrasts)
    return mm.values, mm.columns


def drop1_contrasts(ft: FixedTerms, term: str) -> np.ndarray:
    """lmerTest's ``drop1`` hypothesis for ``term`` when X lost columns for rank deficiency
    (or with ``force_get_contrasts``): ``get_Ldiffmat2(X0, X)``, X0 the model matrix without
    the term (the call's contrasts): X's columns' residuals on X0 (those not all zero), L the
    transposed orthonormal basis of X' R (R's qr.Q; a rotation of its rows leaves the F-test
    unchanged). A row of NaN when nothing is left to test."""
    j = ft.labels.index(term)
    rest = tuple(t for k, t in enumerate(ft.terms.terms) if k != j)
    t0 = Terms(ft.terms.variables, None, rest, ft.terms.intercept)
    X0 = model_matrix(t0, ft.frame_variables, ft.nrow, ft.contrasts).values
    X = ft.X
    R = _residuals(X0, X) if X0.shape[1] else X.copy()
    R = R[:, np.abs(R).sum(axis=0) > 1e-8]
    if R.shape[1] == 0:
        return np.full((1, X.shape[1]), np.nan)
    q, _ = np.linalg.qr(X.T @ R)
    return np.asarray(zapsmall(q).T)
