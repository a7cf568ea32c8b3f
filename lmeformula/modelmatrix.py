"""R's ``model.matrix``: columns, coding and names exactly as R builds them.

For each term and each factor in it, R decides between contrasts and full indicator coding
(``TermCode`` in R's model.c): a factor is coded by contrasts when the term without it is empty
or is contained in an earlier term, and by indicators otherwise. Without an intercept, the first
factor of the first term that has one is switched to indicators. Columns of a term are the
products of its variables' columns, the first variable varying fastest, named ``a1:b2`` style
(``recipeB:temp``, ``temperature.L``, ``poly(x, 2)1``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .errors import FormulaError, LmeFormulaWarning
from .formula.terms import Terms
from .records import NamedRecord
from .transforms import (
    ContrastSpec,
    DroppedContrastsFactor,
    MatrixValue,
    Value,
    as_factor,
    c_contrasts,
    is_factor_like,
    logical_factor,
)
from .validate import check_allocation

__all__ = ["ModelMatrix", "XAttrs", "check_contrasts", "contrast_matrix", "factor_coding",
           "model_matrix"]

_CONTRASTS = ("contr.treatment", "contr.SAS", "contr.sum", "contr.helmert", "contr.poly")


@dataclass(frozen=True)
class ModelMatrix:
    """A dense model matrix with R's attributes.

    Attributes
    ----------
    values
        n x p array.
    columns
        R's column names.
    assign
        Term index of each column (0 for the intercept, 1.. for the terms), R's ``assign``.
    contrasts
        Contrast name used for each factor coded by contrasts, R's ``contrasts`` attribute.
    """

    values: np.ndarray
    columns: list[str]
    assign: list[int]
    contrasts: dict[str, str]

    def to_frame(self, index: pd.Index | None = None) -> pd.DataFrame:
        """The matrix as a DataFrame with R's column names."""
        return pd.DataFrame(self.values, columns=self.columns, index=index)


@dataclass(frozen=True, eq=False)  # a Mapping's equality: equal to a dict of its entries
class XAttrs(NamedRecord):
    """lme4's attributes of the fixed-effects matrix X (``pf.X_attrs``), after the rank and
    scale checks; read by R's names as the dict they were, ``attrs["col.dropped"]``.

    Attributes
    ----------
    assign
        Term index of each kept column (0 for the intercept), R's ``assign``.
    contrasts
        Contrast name used for each factor coded by contrasts, R's ``contrasts``.
    msgScaleX
        The scale check's message, if it warned (a list of at most one).
    msgRankdrop
        The rank check's message when columns were dropped, else None (no entry, as in lme4).
    col_dropped
        ``"col.dropped"``: the dropped columns' names and 1-based positions in the full
        matrix, else None (no entry).
    """

    assign: list[int]
    contrasts: dict[str, Any]
    msgScaleX: list[str] = field(default_factory=list)
    msgRankdrop: str | None = None
    col_dropped: dict[str, int] | None = None

    _OPTIONAL = frozenset({"msgRankdrop", "col_dropped"})
    _ALIASES: ClassVar[dict[str, str]] = {"col.dropped": "col_dropped"}


def contrast_matrix(levels: list[str], kind: str | np.ndarray | pd.DataFrame,
                    ) -> tuple[np.ndarray, list[str]]:
    """R's ``contr.*`` matrices (levels x columns) and the column suffixes R uses."""
    k = len(levels)
    if isinstance(kind, pd.DataFrame):
        return kind.to_numpy(dtype=float), [str(c) for c in kind.columns]
    if isinstance(kind, np.ndarray):
        return kind.astype(float), [str(i + 1) for i in range(kind.shape[1])]
    if k < 2:
        raise FormulaError("contrasts can be applied only to factors with 2 or more levels")
    if kind == "contr.treatment":
        return np.eye(k)[:, 1:], list(levels[1:])
    if kind == "contr.SAS":
        return np.eye(k)[:, :-1], list(levels[:-1])
    if kind == "contr.sum":
        m = np.vstack([np.eye(k - 1), -np.ones(k - 1)])
        return m, [str(i + 1) for i in range(k - 1)]
    if kind == "contr.helmert":
        m = np.zeros((k, k - 1))
        for j in range(k - 1):
            m[: j + 1, j] = -1.0
            m[j + 1, j] = j + 1.0
        return m, [str(i + 1) for i in range(k - 1)]
    if kind == "contr.poly":
        scores = np.arange(1, k + 1, dtype=float)
        powers = np.vander(scores - scores.mean(), k, increasing=True)
        q, r = np.linalg.qr(powers)
        raw = q * np.diag(r)
        z = raw / np.sqrt((raw**2).sum(axis=0))
        names = [".L", ".Q", ".C"] + [f"^{i}" for i in range(4, k)]
        return z[:, 1:], names[: k - 1]
    raise FormulaError(f"unknown contrasts {kind!r}")


def check_contrasts(contrasts: Mapping[str, Any], variables: Mapping[str, Value]) -> None:
    """R's model.matrix checks of a ``contrasts`` argument against the model frame's variables
    (``variables``: every variable of the formula, random part included, as in lme4's frame):
    a name that is not a variable warns and is ignored, a variable that is not a factor, an
    unknown contrast and a matrix whose rows are not the factor's levels are errors."""
    for name, kind in contrasts.items():
        if name not in variables:
            warnings.warn(f"variable '{name}' is absent, its contrast will be ignored",
                          LmeFormulaWarning, stacklevel=5)
            continue
        value = variables[name]
        if not is_factor_like(value):
            raise FormulaError(f"contrasts apply only to factors (variable '{name}')")
        if isinstance(kind, str):
            if kind not in _CONTRASTS:
                raise FormulaError(f"object '{kind}' of mode 'function' was not found "
                                   f"(contrasts for '{name}'; use one of {', '.join(_CONTRASTS)} "
                                   "or a matrix)")
            continue
        if not isinstance(kind, (np.ndarray, pd.DataFrame)):
            raise FormulaError(f"numeric contrasts or contrast name expected (contrasts for "
                               f"'{name}', got {type(kind).__name__})")
        nlevels = len(_factor_of(value, name).categories)
        if kind.ndim != 2 or kind.shape[0] != nlevels:
            raise FormulaError(f"wrong number of contrast matrix rows (contrasts for '{name}': "
                               f"{kind.shape[0] if kind.ndim else 0} rows, {nlevels} levels)")
        if not np.issubdtype(np.asarray(kind).dtype, np.number):
            raise FormulaError(f"numeric contrasts or contrast name expected (contrasts for "
                               f"'{name}')")


def _factor_of(value: Value, name: str) -> pd.Categorical:
    if isinstance(value, pd.Categorical):
        return value
    if np.asarray(value).dtype.kind == "b":  # R's model.matrix: a logical has both levels
        return logical_factor(value)
    return as_factor(value, name)


def _term_codes(t: Terms, factor_vars: set[int]) -> list[dict[int, int]]:
    """For each term, variable -> 1 (contrasts) or 2 (indicators), factors only (R's TermCode)."""
    codes: list[dict[int, int]] = []
    seen: list[frozenset[int]] = []
    for term in t.terms:
        tset = frozenset(term)
        code: dict[int, int] = {}
        for v in term:
            if v not in factor_vars:
                continue
            rest = tset - {v}
            code[v] = 1 if not rest or any(rest <= prev for prev in seen) else 2
        codes.append(code)
        seen.append(tset)
    if not t.intercept:
        for term, code in zip(t.terms, codes, strict=True):
            first = next((v for v in term if v in code), None)
            if first is not None:
                code[first] = 2
                break
    return codes


def model_matrix(
    t: Terms,
    variables: Mapping[str, Value],
    nrow: int,
    contrasts: Mapping[str, Any] | None = None,
) -> ModelMatrix:
    """Build R's model matrix for the terms ``t`` from evaluated variables.

    Parameters
    ----------
    t
        The terms (from :func:`lmeformula.formula.terms.terms`).
    variables
        Deparsed variable expression -> value (from the model frame).
    nrow
        Number of rows.
    contrasts
        Optional variable name -> ``"contr.treatment"``, ``"contr.sum"``, ``"contr.helmert"``,
        ``"contr.poly"``, ``"contr.SAS"`` or a matrix (levels x columns).

    Returns
    -------
    ModelMatrix
    """
    contrasts = dict(contrasts or {})
    names = t.variable_names
    values: dict[int, Value] = {}
    factor_vars: set[int] = set()
    for term in t.terms:
        for v in term:
            if v not in values:
                values[v] = variables[names[v]]
                if is_factor_like(values[v]):
                    factor_vars.add(v)
    codes = _term_codes(t, factor_vars)

    blocks: list[np.ndarray] = []
    columns: list[str] = []
    assign: list[int] = []
    used: dict[str, str] = {}
    if t.intercept:
        blocks.append(np.ones((nrow, 1)))
        columns.append("(Intercept)")
        assign.append(0)
    for ti, (term, code) in enumerate(zip(t.terms, codes, strict=True), start=1):
        mat = np.ones((nrow, 1))
        labels = [""]
        # the term's size is known before any product is formed: refuse what cannot fit
        width = 1.0
        for v in term:
            value = values[v]
            if isinstance(value, MatrixValue):
                width *= value.values.shape[1]
            elif v in codes[ti - 1]:
                width *= max(len(_factor_of(value, names[v]).categories), 1)
        check_allocation(width * nrow, f"the model matrix columns of term "
                                       f"{':'.join(names[v] for v in term)}")
        for k, v in enumerate(term):
            vmat, vlabels = _variable_columns(values[v], names[v], code.get(v), contrasts, used)
            if k == 0:  # 1 x the columns: the columns themselves (as floats)
                mat = np.asarray(vmat, dtype=float)
            else:  # the first variable varies fastest: new columns = old (inner) x this (outer)
                mat = (mat[:, :, None] * vmat[:, None, :]).reshape(nrow, -1, order="F")
            labels = [f"{a}:{b}" if a else b for b in vlabels for a in labels]
        blocks.append(mat)
        columns.extend(labels)
        assign.extend([ti] * mat.shape[1])
    values_ = np.hstack(blocks) if blocks else np.zeros((nrow, 0))
    return ModelMatrix(values_, columns, assign, used)


def _variable_columns(
    value: Value, name: str, code: int | None, contrasts: dict[str, Any], used: dict[str, str]
) -> tuple[np.ndarray, list[str]]:
    if code is None:
        if isinstance(value, MatrixValue):
            k = value.values.shape[1]
            if k == 1:  # R names a one-column matrix by the variable alone, colnames or not
                suffixes = [""]
            elif value.colnames is None:
                suffixes = [str(i + 1) for i in range(k)]
            else:
                suffixes = list(value.colnames)
            return value.values, [name + s for s in suffixes]
        arr = np.asarray(value, dtype=float)
        return arr[:, None], [name]
    factor = _factor_of(value, name)
    levels = [str(c) for c in factor.categories]
    codes = np.asarray(factor.codes)
    indicators = np.zeros((codes.shape[0], len(levels)))
    indicators[np.arange(codes.shape[0]), codes] = 1.0
    kind, spec = factor_coding(name, value, contrasts)
    used[name] = kind if isinstance(kind, str) else "custom"  # R records it for every factor
    if code == 2:
        return indicators, [name + lev for lev in levels]
    if spec is not None and spec.numbered:
        cmat, suffixes = _numbered_contrasts(spec, len(levels))
    else:
        cmat, suffixes = contrast_matrix(levels, spec.kind if spec is not None else kind)
    return indicators @ cmat, [name + s for s in suffixes]


def factor_coding(name: str, value: Value, contrasts: Mapping[str, Any]
                  ) -> tuple[Any, ContrastSpec | None]:
    """The contrasts model.matrix codes a factor variable by (R's ``contrasts`` attribute of
    the matrix): the ``contrasts=`` argument's, else those a ``C(f, sum)`` call set (its spec
    too; a function given, ``C(f, contr.sum)``, sets a matrix: ``"custom"``), else the
    default (polynomial for an ordered factor)."""
    ordered = isinstance(value, pd.Categorical) and bool(value.ordered)
    spec = (None if name in contrasts or isinstance(value, DroppedContrastsFactor)
            else c_contrasts(name, ordered))
    if spec is not None:
        return ("custom" if spec.numbered else spec.kind), spec
    return contrasts.get(name, "contr.poly" if ordered else "contr.treatment"), None


def _numbered_contrasts(spec: ContrastSpec, k: int) -> tuple[np.ndarray, list[str]]:
    """The matrix ``contr(k, base = )`` that ``C(f, contr.*, how.many)`` stores on the factor:
    the contrast function called with the number of levels, so its columns are named as for
    levels 1..k (``contr.treatment(3)``: 2 and 3), or numbered where it names none; the first
    ``how.many`` columns."""
    numbers = [str(i + 1) for i in range(k)]
    if spec.base is not None:
        keep = [j for j in range(k) if j != spec.base - 1]
        cmat, suffixes = np.eye(k)[:, keep], [numbers[j] for j in keep]
    else:
        cmat, suffixes = contrast_matrix(numbers, spec.kind)
    if spec.how_many is not None:
        cmat, suffixes = cmat[:, : spec.how_many], suffixes[: spec.how_many]
    return cmat, suffixes
