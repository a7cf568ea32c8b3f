"""Evaluation of R variable expressions (``log(y + 1)``, ``I(x^2)``, ``poly(x, 2)``, ``factor(x)``)
over the columns of a data frame.

Values are numpy vectors (numeric or logical), pandas Categoricals (factors), or
:class:`MatrixValue` (``poly`` and ``scale`` return matrices, as in R). Data-dependent transforms
(``poly``, ``scale``) record their parameters in a ``state`` dictionary keyed by the deparsed call,
so that predictions on new data reuse them (R's ``predvars``).
"""

from __future__ import annotations

import itertools
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import numpy as np
import pandas as pd

from .errors import (
    ColumnTypeWarning,
    FormulaError,
    LmeFormulaWarning,
    NaNsProducedWarning,
    VariableNotFoundError,
)
from .formula.ast import (
    BinOp,
    Call,
    Name,
    Node,
    Num,
    Paren,
    Str,
    UnaryOp,
    deparse,
    format_r_number,
)
from .splines import bs_basis, ns_basis, quantile7, seq_length_out

__all__ = ["DroppedContrastsFactor", "MatrixValue", "Value", "as_factor", "c_contrasts", "evaluate",
           "is_factor_like", "r_number_labels"]


@dataclass(frozen=True)
class MatrixValue:
    """A matrix-valued variable; ``colnames`` None when R's matrix has no column names."""

    values: np.ndarray
    colnames: tuple[str, ...] | None

    def __len__(self) -> int:
        return self.values.shape[0]

    def take(self, index: np.ndarray) -> MatrixValue:
        return MatrixValue(self.values[index], self.colnames)


Value = Any  # np.ndarray | pd.Categorical | MatrixValue


def r_number_labels(values: np.ndarray) -> list[str]:
    """Format numbers as R's ``as.character`` does (15 significant digits, ``1e+05``)."""
    return [format_r_number(float(v)) for v in values]


def is_factor_like(value: Value) -> bool:
    """Whether model.matrix codes the value by contrasts (factors, logicals, strings)."""
    if isinstance(value, pd.Categorical):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "bOUT"


def drop_unused_levels(factor: pd.Categorical) -> pd.Categorical:
    """The factor without its unused levels (R's ``droplevels``), in O(n) without sorting
    when nothing is to be dropped."""
    codes = np.asarray(factor.codes)
    k = len(factor.categories)
    counts = np.bincount(codes[codes >= 0], minlength=k) if k else np.zeros(0, dtype=int)
    if counts.all():
        return factor
    keep = np.flatnonzero(counts)
    remap = np.full(k + 1, -1, dtype=np.int64)
    remap[keep] = np.arange(keep.shape[0])
    return pd.Categorical.from_codes(remap[codes], categories=factor.categories[keep],
                                     ordered=factor.ordered)


@lru_cache(maxsize=1)
def _string_index_dtype() -> Any:
    """The dtype pandas infers for an Index of strings (``str`` in pandas 3, object before)."""
    return pd.Index(["a"]).dtype


def factor_from_codes(codes: np.ndarray, levels: Sequence[str]) -> pd.Categorical:
    """``pd.Categorical.from_codes(codes, categories=levels)``. pandas makes the Index of the
    levels itself; made here, it is an untyped ``pd.Index`` (pandas-stubs accepts only an
    Index, and types the result by its element type, which ``pd.Categorical`` is not)."""
    # strings get the dtype pandas would infer for them, given rather than inferred (the
    # inference pass cost a third of an interaction factor's time on small models)
    dtype = (_string_index_dtype() if len(levels) and all(isinstance(v, str) for v in levels)
             else None)
    categories: pd.Index = pd.Index(levels, dtype=dtype)
    if dtype is not None:
        # distinct strings and codes in range, checked here: pandas' own checks (the levels'
        # uniqueness through a hash table of an object copy of the Index, the codes' range)
        # took three quarters of an interaction factor's time on small models
        fast = _validated_categorical(np.asarray(codes), categories, levels)
        if fast is not None:
            return fast
    return pd.Categorical.from_codes(codes, categories=categories)


def _validated_categorical(codes: np.ndarray, categories: pd.Index, levels: Sequence[str],
                           ) -> pd.Categorical | None:
    """The Categorical ``from_codes`` would make, built without pandas' validation when the
    levels are distinct and the codes integers in [-1, len(levels)); None otherwise (or
    where pandas lacks the unvalidated constructor), and the caller's validated path then
    decides, errors included."""
    k = len(levels)
    fastpath = getattr(pd.CategoricalDtype, "_from_fastpath", None)
    if (fastpath is None or codes.ndim != 1 or codes.dtype.kind not in "iu"
            or len(set(levels)) != k
            or (codes.size and (int(codes.min()) < -1 or int(codes.max()) >= k))):
        return None
    try:
        return pd.Categorical.from_codes(codes, dtype=fastpath(categories, False),
                                         validate=False)
    except (TypeError, ValueError):
        return None


def as_factor(value: Value, name: str = "x") -> pd.Categorical:
    """R's ``factor(x)``: numbers sorted numerically, strings in C-locale order, logicals
    FALSE < TRUE; an existing factor keeps its level order (unused levels are dropped)."""
    if isinstance(value, pd.Categorical):
        return drop_unused_levels(value)
    if isinstance(value, MatrixValue):
        raise FormulaError(f"cannot use the matrix-valued '{name}' as a factor")
    arr = np.asarray(value)
    if arr.dtype.kind == "O" and _is_logical_na(arr):  # a logical with NA
        return drop_unused_levels(logical_factor(arr))
    if arr.dtype.kind == "b":
        labels = np.where(arr, "TRUE", "FALSE").astype(object)
        return pd.Categorical(labels, categories=[c for c in ("FALSE", "TRUE") if c in set(labels)])
    if arr.dtype.kind in "iuf":
        mask = np.isnan(arr.astype(float))
        uniq = np.unique(arr[~mask].astype(float))
        levels = r_number_labels(uniq)
        codes = np.full(arr.shape[0], -1, dtype=np.int64)
        codes[~mask] = np.searchsorted(uniq, arr[~mask].astype(float))
        return factor_from_codes(codes, levels)
    if pd.api.types.infer_dtype(arr, skipna=True) == "string":
        # strings (and missing values) only: factorize them as they are
        codes, uniques = pd.factorize(arr, sort=True, use_na_sentinel=True)
        return factor_from_codes(codes, list(uniques))
    values = pd.Series(arr, dtype=object)
    mask = values.isna().to_numpy()
    strings = values.where(mask, values.astype(str)) if not mask.all() else values
    # hash-based coding; sort=True orders the levels by Python's str comparison, which is
    # code-point order: R's order under LC_ALL=C
    codes, str_uniques = pd.factorize(strings, sort=True, use_na_sentinel=True)
    return factor_from_codes(codes, [str(u) for u in str_uniques])


def column_value(series: pd.Series) -> Value:
    """Convert a data-frame column to an evaluation value (numbers become float64 with NaN)."""
    dtype = series.dtype
    if dtype == np.float64:  # the common case, without pandas' NA handling
        return np.array(series.to_numpy(), dtype=float)
    if isinstance(dtype, pd.CategoricalDtype):
        return series.array.copy()
    check_column_type(series)  # complex numbers, lists, dates...: the package's errors
    if _is_arrow_dictionary(dtype):
        # a pandas column of Arrow dictionary type: a factor, its dictionary's order kept (an
        # ordered dictionary an ordered factor), as for a pyarrow Table's dictionary column
        return cast(pd.Categorical, pd.Series(series.array.__arrow_array__().to_pandas()).array)
    if pd.api.types.is_bool_dtype(dtype):
        if series.isna().any():  # R's logical NA: True, False and None (the model frame
            # drops the rows and holds a logical, as a comparison of NA gives)
            return np.array([None if pd.isna(v) else bool(v) for v in series], dtype=object)
        return series.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(dtype):
        return series.to_numpy(dtype=float, na_value=np.nan)
    if pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(
            series, skipna=True) in ("integer", "floating", "mixed-integer-float", "decimal"):
        # numbers stored as Python objects: a numeric variable, not one level per value
        warnings.warn(f"column '{series.name}' holds numbers with object dtype; "
                      "it is used as a numeric variable", ColumnTypeWarning, stacklevel=6)
        return series.astype(float).to_numpy(dtype=float, na_value=np.nan)
    # strings, or objects check_column_type let through: a factor's values
    # (pandas-stubs leave None out of na_value's types; pandas takes it: NA becomes None)
    return series.to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]


# what pandas infers for object columns that R's data frames cannot hold as variables (its
# "invalid type (list) for variable 'x'"); a factor of their printed forms would be a silently
# different model
_NOT_VARIABLES = {"complex": "complex", "datetime": "datetime", "date": "date",
                  "time": "time", "timedelta": "timedelta", "period": "period",
                  "interval": "interval", "bytes": "bytes"}


def _check_object_values(series: pd.Series) -> None:
    """Refuse an object column of values a model formula cannot use (lists, dicts, arrays,
    dates, complex numbers, bytes), naming the column."""
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    kind = _NOT_VARIABLES.get(inferred)
    if kind is None and inferred == "mixed":
        odd = next((v for v in series.array if isinstance(
            v, (list, tuple, dict, set, frozenset, np.ndarray, pd.Series, pd.DataFrame))), None)
        kind = None if odd is None else type(odd).__name__
    if kind is not None:
        raise FormulaError(f"invalid type ({kind}) for variable '{series.name}': a model "
                           "formula takes numbers, strings, booleans or factors")


def _near_names(name: str, columns: Any) -> str:
    """A hint naming the data's columns that ``name`` nearly is (another case, surrounding
    spaces, a typo), for "object 'x' not found"; empty when there is none."""
    import difflib

    data = getattr(columns, "_data", None)  # frame._LazyColumns
    names = [str(c) for c in (data.columns if data is not None else columns)][:10_000]
    key = name.strip().casefold()
    near = [c for c in names if c != name and c.strip().casefold() == key]
    near += [c for c in difflib.get_close_matches(name, names, n=3, cutoff=0.8)
             if c not in near and c != name]
    if not near:
        return ""
    quoted = any(not re.fullmatch(r"[A-Za-z.][A-Za-z0-9._]*", c) for c in near[:3])
    return (f" (the data have {', '.join(map(repr, near[:3]))}"
            + ("; a name with spaces or other characters is written in backticks in a "
               "formula, `my var`)" if quoted else ")"))


def check_column_type(series: pd.Series) -> None:
    """Raise :func:`column_value`'s error for a column a model formula cannot use, without
    converting it (the formulaic front end checks the columns it hands to formulaic)."""
    dtype = series.dtype
    if pd.api.types.is_complex_dtype(dtype):
        # R: "complex variables are not currently allowed in model matrices"; numpy's cast to
        # float would drop the imaginary part with a mere warning
        raise FormulaError(f"column '{series.name}': complex variables are not currently "
                           "allowed in model matrices")
    if pd.api.types.is_object_dtype(dtype):
        _check_object_values(series)
    elif not (isinstance(dtype, pd.CategoricalDtype) or _is_arrow_dictionary(dtype)
              or pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype)
              or pd.api.types.is_string_dtype(dtype)):
        raise FormulaError(
            f"column '{series.name}' has type {dtype}, which a model formula cannot use")


def _is_arrow_dictionary(dtype: Any) -> bool:
    # pyarrow's DictionaryType (its index and value types), without importing pyarrow
    pa_type = getattr(dtype, "pyarrow_dtype", None)
    return (isinstance(dtype, pd.ArrowDtype) and hasattr(pa_type, "index_type")
            and hasattr(pa_type, "value_type"))


def na_of(value: Value) -> np.ndarray:
    """Where a value is NA: NaN, a factor's NA level, None (a scalar: a 0-d array; a
    matrix value: its rows with any NA)."""
    if isinstance(value, pd.Categorical):
        return np.asarray(value.codes) < 0
    if isinstance(value, MatrixValue):
        return np.isnan(value.values).any(axis=1)
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    if arr.dtype.kind == "O":
        return np.asarray(pd.isna(arr), dtype=bool)
    return np.zeros(arr.shape, dtype=bool)


def logical_factor(values: Any) -> pd.Categorical:
    """A logical (bools, or True, False and None) as R's model.matrix codes it: a factor of
    both levels FALSE and TRUE, whichever occur; NA where missing."""
    arr = np.asarray(values)
    if arr.dtype.kind == "b":
        codes = arr.astype(np.int64)
    else:
        codes = np.array([-1 if v is None or v is pd.NA else int(bool(v)) for v in arr],
                         dtype=np.int64)
    return factor_from_codes(codes, ["FALSE", "TRUE"])


def _is_logical_na(arr: np.ndarray) -> bool:
    """An object array of R's logical values with NA (True, False and None)."""
    return arr.dtype.kind == "O" and all(v is None or isinstance(v, (bool, np.bool_))
                                         for v in arr.ravel())


def _with_na(value: np.ndarray, na: np.ndarray) -> np.ndarray:
    """A logical result: a bool array, or where some are NA an object array of True, False
    and None (R's logical NA; the model frame drops those rows)."""
    value = np.asarray(value, dtype=bool)
    if not np.asarray(na).any():
        return value
    out = value.astype(object)
    out[np.broadcast_to(na, value.shape)] = None
    return out


def _logical_parts(value: Value) -> tuple[np.ndarray, np.ndarray]:
    """A logical operand as (values with NA read as FALSE, NA mask)."""
    arr = np.asarray(value)
    na = na_of(value)
    if arr.dtype.kind == "O":
        return np.array([bool(v) if not m else False
                         for v, m in zip(arr.ravel(), na.ravel(), strict=True)],
                        dtype=bool).reshape(arr.shape), na
    if arr.dtype.kind == "f":
        return np.where(na, False, arr != 0), na
    return arr.astype(bool), na


def _numeric(value: Value, what: str) -> np.ndarray:
    if isinstance(value, MatrixValue):
        return value.values
    if isinstance(value, pd.Categorical):
        raise FormulaError(f"non-numeric argument to mathematical function in '{what}'")
    arr = np.asarray(value)
    if arr.dtype.kind == "b":
        return arr.astype(float)
    if _is_logical_na(arr):  # logical with NA: TRUE 1, FALSE 0, NA NaN
        return np.array([np.nan if v is None else float(v) for v in arr.ravel()],
                        dtype=float).reshape(arr.shape)
    if arr.dtype.kind not in "iuf":
        raise FormulaError(f"non-numeric argument to mathematical function in '{what}'")
    return arr.astype(float, copy=False)


def _poly(x: np.ndarray, degree: int, state: dict[str, Any] | None) -> MatrixValue:
    if np.isnan(x).any():
        raise FormulaError("missing values are not allowed in 'poly'")
    if (state is None or "alpha" not in state) and degree >= len(np.unique(x)):
        raise FormulaError("'degree' must be less than number of unique points")
    names = tuple(str(i) for i in range(1, degree + 1))  # after the check: poly(x, 1e10)
    if state is None or "alpha" not in state:
        xbar = x.mean()
        xc = x - xbar
        powers = np.vander(xc, degree + 1, increasing=True)
        q, r = np.linalg.qr(powers)
        z = q * np.diag(r)
        norm2 = (z**2).sum(axis=0)
        alpha = ((xc[:, None] * z**2).sum(axis=0) / norm2 + xbar)[:degree]
        values = z / np.sqrt(norm2)
        if state is not None:
            state["alpha"] = alpha
            state["norm2"] = np.concatenate([[1.0], norm2])
        return MatrixValue(values[:, 1:], names)
    alpha, norm2 = state["alpha"], state["norm2"]
    z = np.ones((x.shape[0], degree + 1))
    z[:, 1] = x - alpha[0]
    for i in range(1, degree):
        z[:, i + 1] = (x - alpha[i]) * z[:, i] - (norm2[i + 1] / norm2[i]) * z[:, i - 1]
    z = z / np.sqrt(norm2[1:])
    return MatrixValue(z[:, 1:], names)


def _polym(xs: list[np.ndarray], degree: int, raw: bool, state: dict[str, Any],
           what: str) -> MatrixValue:
    """R's ``polym(x, z, ..., degree, raw)``: each variable's polynomial of that degree
    (orthogonal, or its powers when ``raw``), and the products of their columns whose degrees
    sum to 1..degree, in ``expand.grid``'s order (the first variable's degree varying
    fastest), named by the degrees (``1.0``, ``2.0``, ``0.1``, ``1.1``, ``0.2``)."""
    if len(xs) * degree > 1e4:
        raise FormulaError(f"'degree' {degree} is too large for {len(xs)} variables (in {what})")
    bases = []
    for i, x in enumerate(xs):
        if raw:
            if np.isnan(x).any():
                raise FormulaError("missing values are not allowed in 'poly'")
            cols = np.column_stack([x**k for k in range(1, degree + 1)])
        else:
            cols = _poly(x, degree, state.setdefault(f"variable {i + 1}", {})).values
        bases.append(np.column_stack([np.ones(x.shape[0]), cols]))
    combos = [c[::-1] for c in itertools.product(range(degree + 1), repeat=len(xs))]
    combos = [c for c in combos if 0 < sum(c) <= degree]
    values = np.column_stack([np.prod([b[:, k] for b, k in zip(bases, c, strict=True)], axis=0)
                              for c in combos])
    return MatrixValue(values, tuple(".".join(map(str, c)) for c in combos))


def _scale(x: np.ndarray, center: bool, scale: bool, state: dict[str, Any] | None) -> MatrixValue:
    if state is not None and "center" in state:
        c, s = state["center"], state["scale"]
    else:
        c = np.nanmean(x) if center else 0.0
        xc = x - c
        ok = ~np.isnan(xc)
        dof = int(ok.sum()) - 1  # R: NaN (no error) for fewer than two values
        s = (math.sqrt(float((xc[ok] ** 2).sum()) / dof) if dof > 0 else math.nan) if scale \
            else 1.0
        if state is not None:
            state["center"], state["scale"] = c, s
    return MatrixValue(((x - c) / s)[:, None], None)


def _bool_arg(node: Node | None, default: bool) -> bool:
    if node is None:
        return default
    if isinstance(node, Name) and node.id in ("TRUE", "T"):
        return True
    if isinstance(node, Name) and node.id in ("FALSE", "F"):
        return False
    raise FormulaError(f"expected TRUE or FALSE, got {deparse(node)}")


def _caller_outside_package() -> int:
    """The ``stacklevel`` (for a warning raised by the function calling this one) of the
    first frame outside the package: the caller's line, whichever entry point (lFormula,
    lmer, glmer, update) led here."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            package + os.sep):
        frame = frame.f_back
        level += 1
    return level


# R's math functions that warn "NaNs produced" where they give NaN for a number (log(-1),
# sqrt(-1), sin(Inf)); exp, abs, rounding and R's arithmetic operators never do
_WARN_NAN = frozenset({"log", "sqrt", "log10", "log2", "log1p", "sin", "cos", "tan"})

_MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log10": np.log10, "log2": np.log2,
    "log1p": np.log1p, "expm1": np.expm1, "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "floor": np.floor, "ceiling": np.ceil, "trunc": np.trunc, "as.numeric": lambda x: x,
    "as.double": lambda x: x,
}


class Evaluator:
    """Evaluate R expressions against a mapping of column name -> column value."""

    def __init__(self, columns: Mapping[str, Value], nrow: int,
                 state: dict[str, dict[str, Any]] | None = None, *,
                 nan_warning: bool = False) -> None:
        self.columns = columns
        self.nrow = nrow
        self.state = state if state is not None else {}
        self.nan_warning = nan_warning

    def _nans_produced(self, x: Any, out: Any) -> Any:
        """R's warning "NaNs produced" when a math function made NaN of a value that was not
        NA (``log(y + 3)`` with y < -3): R warns and the model frame drops those rows as
        missing. lme4's predict does not warn (nor do we there: ``nan_warning`` is off)."""
        if self.nan_warning:
            xs, os_ = np.asarray(x, dtype=float), np.asarray(out, dtype=float)
            if (np.isnan(os_) & ~np.isnan(np.broadcast_to(xs, os_.shape))).any():
                warnings.warn("NaNs produced", NaNsProducedWarning,
                              stacklevel=_caller_outside_package())
        return out

    def __call__(self, node: Node) -> Value:
        return self.eval(node)

    def eval(self, node: Node) -> Value:
        if isinstance(node, Name):
            return self.lookup(node.id)
        if isinstance(node, Num):
            return node.value
        if isinstance(node, Str):
            return node.value
        if isinstance(node, Paren):
            return self.eval(node.expr)
        if isinstance(node, UnaryOp):
            operand = self.eval(node.operand)
            if node.op == "-":
                # a scalar operand is a number (a string fails here, as in R)
                return (-_numeric(operand, deparse(node)) if not np.isscalar(operand)
                        else -cast(float, operand))
            if node.op == "+":
                return operand
            if node.op == "!":
                value, na = _logical_parts(operand)
                return _with_na(~value, na)
            raise FormulaError(f"cannot evaluate {deparse(node)}")
        if isinstance(node, BinOp):
            return self.binary(node)
        if isinstance(node, Call):
            return self.call(node)
        raise FormulaError(f"cannot evaluate {deparse(node)}")

    def lookup(self, name: str) -> Value:
        if name in self.columns:
            return self.columns[name]
        constants = {"TRUE": True, "T": True, "FALSE": False, "F": False, "pi": math.pi,
                     "Inf": math.inf}
        if name in constants:
            return constants[name]
        raise VariableNotFoundError(f"object '{name}' not found{_near_names(name, self.columns)}")

    def binary(self, node: BinOp) -> Value:
        left, right = self.eval(node.left), self.eval(node.right)
        what = deparse(node)
        if node.op in ("==", "!="):
            lv = np.asarray(left.astype(object) if isinstance(left, pd.Categorical) else left)
            out = lv == right if node.op == "==" else lv != right
            return _with_na(np.asarray(out, dtype=bool), na_of(left) | na_of(right))
        if node.op == "%in%":
            lv = np.asarray(left.astype(object) if isinstance(left, pd.Categorical) else left)
            rv = np.atleast_1d(np.asarray(right, dtype=object))
            return np.isin(lv.astype(object), rv)
        if node.op == ":":  # outside a model formula's terms, ':' is R's sequence
            return _sequence(left, right, what)
        if node.op in ("&", "&&", "|", "||"):
            # R's three-valued logic: NA & FALSE is FALSE, NA | TRUE is TRUE, else NA
            (lb, ln), (rb, rn) = _logical_parts(left), _logical_parts(right)
            if node.op in ("&", "&&"):
                return _with_na(lb & rb, (ln | rn) & ~((~lb & ~ln) | (~rb & ~rn)))
            return _with_na(lb | rb, (ln | rn) & ~((lb & ~ln) | (rb & ~rn)))
        a = left if np.isscalar(left) else _numeric(left, what)
        b = right if np.isscalar(right) else _numeric(right, what)
        ops: dict[str, Callable[[Any, Any], Any]] = {
            "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power,
            "%%": np.mod, "%/%": np.floor_divide, "<": np.less, ">": np.greater,
            "<=": np.less_equal, ">=": np.greater_equal,
        }
        if node.op not in ops:
            raise FormulaError(f"cannot evaluate operator '{node.op}' in {what}")
        af, bf = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = ops[node.op](af, bf)
        if node.op in ("<", ">", "<=", ">="):  # NA compared is NA, as in R
            return _with_na(out, np.isnan(af) | np.isnan(bf))
        return out

    def _factor_with_levels(self, node: Call, what: str) -> pd.Categorical:
        """R's ``factor(x, levels = , labels = )``: without ``levels``, :func:`as_factor`;
        with them, each value matched to a level as character strings (no match: NA), the
        levels renamed by ``labels`` (one name per level, or one prefix numbered 1..k)."""
        x = self.eval(node.positional[0])
        lev_node = node.kwarg("levels") or (node.positional[1] if len(node.positional) > 1
                                            else None)
        lab_node = node.kwarg("labels") or (node.positional[2] if len(node.positional) > 2
                                            else None)
        if lev_node is None and lab_node is None:
            return as_factor(x, deparse(node.positional[0]))
        if lev_node is None:
            f = as_factor(x, deparse(node.positional[0]))
            levels = [str(c) for c in f.categories]
            codes = np.asarray(f.codes, dtype=np.int64)
        else:
            levels = [v for v in _r_strings(self.eval(lev_node), what) if v is not None]
            if len(set(levels)) < len(levels):
                raise FormulaError(f"factor level is duplicated (in {what})")
            index = {lev: i for i, lev in enumerate(levels)}
            codes = np.array([index.get(v, -1) if v is not None else -1
                              for v in _r_strings(x, what)], dtype=np.int64)
        if lab_node is not None:
            labels = [str(v) for v in _r_strings(self.eval(lab_node), what)]
            if len(labels) == 1 and len(levels) > 1:
                labels = [f"{labels[0]}{i}" for i in range(1, len(levels) + 1)]
            if len(labels) != len(levels):
                raise FormulaError(f"invalid 'labels'; length {len(labels)} should be 1 or "
                                   f"{len(levels)} (in {what})")
            if len(set(labels)) < len(labels):  # R merges such levels; not supported here
                raise FormulaError(f"duplicated factor labels are not supported (in {what})")
            levels = labels
        out = factor_from_codes(codes, levels)
        # R's default ordered = is.ordered(x)
        return out.as_ordered() if isinstance(x, pd.Categorical) and x.ordered else out

    def call(self, node: Call) -> Value:
        what = deparse(node)
        fn, pos = _function_name(node.fn, what), node.positional
        if fn in _R_FUNCTIONS:  # R's argument matching: names, partial names, positions
            return _R_FUNCTIONS[fn](self, node, what)
        if not pos and fn not in ("c", "pmin", "pmax"):
            # R: 'argument "x" is missing, with no default' (lme4 reaches "subscript out of
            # bounds" first); an error naming the call either way
            raise FormulaError(f'argument "x" is missing, with no default in {what}')
        if fn in ("I", "offset", "c") and len(pos) == 1:
            return self.eval(pos[0])
        if fn in _FACTOR_FUNCTIONS:
            value = self.eval(pos[0])
            if isinstance(value, pd.Categorical):
                return _FACTOR_FUNCTIONS[fn](value)
        if fn == "c":  # R's c() concatenates: c(1:200, 401:900) is one vector of 700
            parts = [self.eval(p) for p in pos]
            return np.concatenate([np.atleast_1d(np.asarray(
                v.astype(object) if isinstance(v, pd.Categorical) else v, dtype=object))
                for v in parts])
        if fn == "[":
            return _index(self.eval(pos[0]), [self.eval(p) for p in pos[1:]], what)
        if fn in ("factor", "ordered"):
            # R's factor(x, levels, labels, ordered): levels matched as character strings
            f = self._factor_with_levels(node, what)
            if fn == "ordered" or _bool_arg(node.kwarg("ordered"), False):
                return f.as_ordered()
            return f
        if fn == "as.factor":
            return as_factor(self.eval(pos[0]), deparse(pos[0]))
        if fn == "as.ordered":
            f = as_factor(self.eval(pos[0]), deparse(pos[0]))
            return f.as_ordered()
        if fn == "ifelse" and len(pos) == 3:
            return _ifelse(self.eval(pos[0]), self.eval(pos[1]), self.eval(pos[2]),
                           nrow=self.nrow, what=what)
        if fn == "relevel":
            return _relevel(self.eval(pos[0]), node.kwarg("ref") or
                            (pos[1] if len(pos) > 1 else None), self, what)
        if fn == "interaction":
            return _interaction([self.eval(p) for p in pos], node, self, what)
        if fn == "as.integer":
            return np.trunc(_numeric(self.eval(pos[0]), what))
        if fn == "is.na" and len(pos) == 1:  # subset = "!is.na(x)"
            return _is_na(self.eval(pos[0]))
        if fn in ("as.character", "unclass", "as.logical", "levels", "nlevels"):
            return _plain_vector_function(fn, self.eval(pos[0]), what)
        if fn == "log":
            x = _numeric(self.eval(pos[0]), what)
            base = node.kwarg("base") or (pos[1] if len(pos) > 1 else None)
            with np.errstate(divide="ignore", invalid="ignore"):
                out = np.log(x)
                if base is not None:  # a number or, as in R, one base per value
                    b = self.eval(base)
                    out = out / np.log(b if np.isscalar(b) else _numeric(b, what))
            return self._nans_produced(x, out)
        if fn in _MATH and len(pos) == 1:
            x = _numeric(self.eval(pos[0]), what)
            with np.errstate(divide="ignore", invalid="ignore"):
                out = _MATH[fn](x)
            return self._nans_produced(x, out) if fn in _WARN_NAN else out
        if fn == "round":
            digits = node.kwarg("digits") or (pos[1] if len(pos) > 1 else None)
            d = _scalar(self.eval(digits), "digits", what) if digits is not None else 0.0
            return _round(_numeric(self.eval(pos[0]), what), d)
        if fn == "poly":
            x = _vector(_numeric(self.eval(pos[0]), what), what)
            # R's poly(x, ..., degree = 1): one argument of length one in ... is the degree;
            # other arguments in ... are further variables, polym(x, z, degree = 2)
            deg_node = node.kwarg("degree")
            others = list(pos[1:])
            if deg_node is None and len(others) == 1 and np.size(self.eval(others[0])) == 1:
                deg_node, others = others[0], []
            deg = _scalar(self.eval(deg_node), "degree", what) if deg_node is not None else 1.0
            if deg < 1:
                raise FormulaError(f"'degree' must be at least 1 (in {what})")
            degree = int(deg)  # sizes are checked before anything is allocated
            if others:
                values = [self.eval(o) for o in others]
                if any(np.size(v) != x.shape[0] for v in values):
                    raise FormulaError(f"arguments must have the same length (in {what})")
                xs = [x, *(_vector(_numeric(v, what), what) for v in values)]
                return _polym(xs, degree, _bool_arg(node.kwarg("raw"), False),
                              self.state.setdefault(what, {}), what)
            if _bool_arg(node.kwarg("raw"), False):
                if x.shape[0] * deg > 1e8:
                    raise FormulaError(f"'degree' {degree} is too large: {what} would have "
                                       f"{degree} columns")
                return MatrixValue(np.column_stack([x**k for k in range(1, degree + 1)]),
                                   tuple(str(k) for k in range(1, degree + 1)))
            return _poly(x, degree, self.state.setdefault(what, {}))
        if fn == "scale":
            x = _vector(_numeric(self.eval(pos[0]), what), what)
            center = _bool_arg(node.kwarg("center"), True)
            scale = _bool_arg(node.kwarg("scale"), True)
            return _scale(x, center, scale, self.state.setdefault(what, {}))
        if fn == "cbind":  # a matrix response (glmer's successes and failures)
            cols = [_numeric(self.eval(p), what) for p in pos]
            names = tuple(p.id if isinstance(p, Name) else "" for p in pos)
            return MatrixValue(np.column_stack([np.broadcast_to(c, (self.nrow,))
                                                for c in cols]).astype(float), names)
        if fn == "dummy":
            return _dummy(node, self, what)
        if fn in ("pmin", "pmax"):
            arrays = [np.asarray(self.eval(p), dtype=float) for p in pos]
            pfun = np.minimum if fn == "pmin" else np.maximum
            out = arrays[0]
            for a in arrays[1:]:
                out = pfun(out, a)
            return out
        raise FormulaError(f"could not find function \"{fn}\" (in {what})")


def _dummy(node: Call, ev: Evaluator, what: str) -> MatrixValue:
    """lme4's ``dummy(f, levelsToKeep)``: 0/1 indicator columns of the factor's levels
    ``levelsToKeep`` (by default all but the first), for random terms such as
    ``(0 + dummy(f, "b") | g)``; a missing factor value gives a missing row."""
    f = as_factor(ev.eval(node.positional[0]), deparse(node.positional[0]))
    levels = [str(c) for c in f.categories]
    keep_node = node.kwarg("levelsToKeep") or (
        node.positional[1] if len(node.positional) > 1 else None)
    if keep_node is None:
        keep = levels[1:]
    else:
        keep = [str(v) for v in np.atleast_1d(np.asarray(ev.eval(keep_node), dtype=object))]
    unknown = [k for k in keep if k not in levels]
    if unknown:
        raise FormulaError(f"subscript out of bounds: {', '.join(unknown)} not a level "
                           f"(in {what})")
    codes = np.asarray(f.codes)
    mat = np.column_stack([(codes == levels.index(k)).astype(float) for k in keep]) \
        if keep else np.zeros((codes.shape[0], 0))
    mat[codes < 0] = np.nan
    return MatrixValue(mat, tuple(keep))


def _is_na(value: Value) -> np.ndarray:
    """R's ``is.na``: TRUE where a value is missing (NA or NaN; an NA level of a factor);
    elementwise on a matrix, as R's."""
    if isinstance(value, pd.Categorical):
        return np.asarray(value.codes) < 0
    if isinstance(value, MatrixValue):
        return np.isnan(value.values)
    arr = np.asarray(value)
    if arr.dtype.kind in "fc":
        return np.isnan(arr)
    if arr.dtype.kind == "O":
        return np.asarray(pd.isna(arr), dtype=bool)
    return np.zeros(arr.shape, dtype=bool)


def _vector(x: np.ndarray, what: str) -> np.ndarray:
    """A one-column matrix as a vector (``scale(scale(x))``); wider matrices are refused."""
    if x.ndim == 2 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim != 1:
        raise FormulaError(f"a matrix with several columns cannot be used in {what}")
    return x


def _scalar(value: Value, name: str, what: str) -> float:
    """A single finite number argument (``degree``, ``digits``)."""
    arr = np.asarray(value) if not isinstance(value, (pd.Categorical, MatrixValue)) else None
    if arr is None or arr.size != 1 or arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
        raise FormulaError(f"'{name}' must be a single finite number (in {what})")
    return float(arr.reshape(()))


def _round(x: np.ndarray, digits: float) -> np.ndarray:
    """R's ``round(x, digits)`` for any digits: where scaling by 10^digits overflows, a double
    has no digits left to round away and ``x`` is returned (``round(x, 1e300)`` is x)."""
    d = int(np.clip(digits, -400, 400))
    if d < -308:
        return np.zeros_like(x)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.round(x, d)
    bad = ~np.isfinite(out) & np.isfinite(x)
    out[bad] = x[bad]
    return out


def _sequence(left: Value, right: Value, what: str) -> np.ndarray:
    """R's ``from:to`` for two numbers (steps of 1, down when ``to < from``)."""
    ends = []
    for v in (left, right):
        arr = np.asarray(v) if not isinstance(v, (pd.Categorical, MatrixValue)) else None
        if arr is None or arr.size < 1 or arr.dtype.kind not in "iufb":
            raise FormulaError(f"':' needs two numbers in {what}")
        ends.append(float(arr.ravel()[0]))
    lo, hi = ends
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise FormulaError(f"NA/NaN argument to ':' in {what}")
    count = math.floor(abs(hi - lo) + 1e-10) + 1
    if count > 1e8:
        raise FormulaError(f"result would be too long a vector in {what}")
    return lo + np.arange(count) * (1.0 if hi >= lo else -1.0)


def _index(value: Value, index: list[Value], what: str) -> Value:
    """R's ``x[i]`` for a vector or factor: 1-based positions, negative ones dropped, or a
    logical mask (recycled)."""
    if len(index) != 1 or isinstance(value, MatrixValue):
        raise FormulaError(f"only vector indexing x[i] is supported in {what}")
    arr = value if isinstance(value, pd.Categorical) else np.atleast_1d(np.asarray(value))
    n = len(arr)
    i = np.atleast_1d(np.asarray(index[0]))
    if i.dtype.kind == "b":
        mask = np.resize(i, n) if i.size else np.zeros(n, dtype=bool)
        return arr[mask]
    if i.dtype.kind not in "iuf" or np.isnan(i.astype(float)).any():
        raise FormulaError(f"invalid subscript type in {what}")
    pos = np.trunc(i.astype(float)).astype(np.int64)
    if (pos < 0).any():
        if (pos > 0).any():
            raise FormulaError(f"can't mix positive and negative subscripts in {what}")
        keep = np.ones(n, dtype=bool)
        keep[np.clip(-pos - 1, 0, n)[(-pos - 1) < n]] = False
        return arr[keep]
    pos = pos[pos > 0] - 1
    if (pos >= n).any():
        raise FormulaError(f"subscript out of bounds in {what}")
    return arr[pos]


def _r_strings(value: Value, what: str) -> list[str | None]:
    """R's ``as.character`` of a value (None for NA), element by element: ``c(3, 1, 2)``
    evaluates to an object array of numbers."""
    if isinstance(value, (pd.Categorical, MatrixValue)):
        return list(_plain_vector_function("as.character", value, what))
    out: list[str | None] = []
    for v in np.atleast_1d(np.asarray(value, dtype=object)).ravel():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif isinstance(v, (bool, np.bool_)):
            out.append("TRUE" if v else "FALSE")
        elif isinstance(v, (int, float, np.integer, np.floating)):
            out.append(format_r_number(float(v)))
        else:
            out.append(str(v))
    return out


def _ifelse(test: Value, yes: Value, no: Value, nrow: int, what: str) -> np.ndarray:
    """R's ``ifelse(test, yes, no)``: ``yes`` where the test is TRUE, ``no`` where FALSE, NA
    where it is NA; numbers, or strings (a character vector, a factor in the frame) when
    either branch is one."""
    if any(isinstance(v, (pd.Categorical, MatrixValue)) for v in (test, yes, no)):
        raise FormulaError(f"ifelse() of a factor or a matrix is not supported (in {what})")
    t = np.broadcast_to(np.asarray(test), (nrow,))
    na = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in t]) \
        if t.dtype.kind == "O" else (np.isnan(t) if t.dtype.kind == "f" else np.zeros(nrow, bool))
    cond = np.where(na, False, t.astype(bool) if t.dtype.kind != "O" else
                    np.array([bool(v) if not m else False for v, m in zip(t, na, strict=True)]))
    branches = [np.broadcast_to(np.asarray(v), (nrow,)) for v in (yes, no)]
    if any(b.dtype.kind in "OUS" for b in branches):
        strings = [np.array(_r_strings(b, what), dtype=object) for b in branches]
        out = np.where(cond, strings[0], strings[1]).astype(object)
        out[na] = None
        return out
    out = np.where(cond, branches[0].astype(float), branches[1].astype(float))
    out[na] = np.nan
    return out


def _relevel(f: Value, ref_node: Node | None, ev: Evaluator, what: str) -> pd.Categorical:
    """R's ``relevel(x, ref)``: the factor with level ``ref`` (a name or a 1-based position)
    first, the others in their order; for unordered factors only, as R."""
    if not isinstance(f, pd.Categorical):
        raise FormulaError(f"'relevel' only for (unordered) factors (in {what})")
    if f.ordered:
        raise FormulaError(f"'relevel' only for unordered factors (in {what})")
    if ref_node is None:
        raise FormulaError(f'argument "ref" is missing, with no default (in {what})')
    ref = ev.eval(ref_node)
    levels = [str(c) for c in f.categories]
    if isinstance(ref, str) or (isinstance(ref, np.ndarray) and ref.dtype.kind in "OU"):
        name = str(_r_strings(ref, what)[0])
        if name not in levels:
            raise FormulaError(f"'ref' must be an existing level (in {what})")
        k = levels.index(name)
    else:
        pos = _scalar(ref, "ref", what)
        if not (1 <= pos <= len(levels)) or pos != int(pos):
            raise FormulaError(f"ref = {format_r_number(pos)} must be in 1L:{len(levels)} "
                               f"(in {what})")
        k = int(pos) - 1
    order = [k] + [i for i in range(len(levels)) if i != k]
    remap = np.empty(len(levels), dtype=np.int64)
    remap[order] = np.arange(len(levels))
    codes = np.asarray(f.codes, dtype=np.int64)
    return factor_from_codes(np.where(codes >= 0, remap[np.maximum(codes, 0)], -1),
                             [levels[i] for i in order])


def _interaction(args: list[Value], node: Call, ev: Evaluator, what: str) -> pd.Categorical:
    """R's ``interaction(f, g, ..., sep = ".", lex.order = FALSE, drop = FALSE)``: the factor
    of the combinations, every combination a level (the first factor's levels varying
    fastest, the last's with ``lex.order = TRUE``), labels pasted with ``sep``."""
    sep_node, lex_node = node.kwarg("sep"), node.kwarg("lex.order")
    sep = "." if sep_node is None else str(_r_strings(ev.eval(sep_node), what)[0])
    lex = _bool_arg(lex_node, False)
    factors = [a if isinstance(a, pd.Categorical) else as_factor(a, what) for a in args]
    if len({len(f) for f in factors}) > 1:
        raise FormulaError(f"arguments must have the same length (in {what})")
    codes = np.zeros(len(factors[0]), dtype=np.int64)
    missing = np.zeros(len(factors[0]), dtype=bool)
    levels: list[str] = []
    for i in range(len(factors) - 1, -1, -1):  # R's loop, from the last factor
        f = factors[i]
        lv = [str(c) for c in f.categories]
        c = np.asarray(f.codes, dtype=np.int64)
        missing |= c < 0
        if i == len(factors) - 1:
            codes, levels = c, lv
        elif lex:
            codes = codes + len(levels) * c
            levels = [f"{a}{sep}{b}" for a in lv for b in levels]
        else:
            codes = codes * len(lv) + c
            levels = [f"{a}{sep}{b}" for b in levels for a in lv]
    out = factor_from_codes(np.where(missing, -1, codes), levels)
    return drop_unused_levels(out) if _bool_arg(node.kwarg("drop"), False) else out


def _factor_codes(f: pd.Categorical) -> np.ndarray:
    """R's integer codes of a factor (1-based, NA as NaN): ``as.numeric(f)``."""
    codes = np.asarray(f.codes, dtype=float) + 1.0
    codes[codes == 0] = np.nan
    return codes


_FACTOR_FUNCTIONS: dict[str, Callable[[pd.Categorical], Value]] = {
    "as.numeric": _factor_codes, "as.double": _factor_codes, "as.integer": _factor_codes,
}


def _plain_vector_function(fn: str, value: Value, what: str) -> Value:
    """R's ``as.character``, ``unclass``, ``as.logical``, ``levels``, ``nlevels``."""
    if fn == "nlevels":
        return float(len(value.categories)) if isinstance(value, pd.Categorical) else 0.0
    if fn == "levels":
        if not isinstance(value, pd.Categorical):
            raise FormulaError(f"'levels' of a variable that is not a factor (in {what})")
        return np.array([str(c) for c in value.categories], dtype=object)
    if isinstance(value, MatrixValue):
        raise FormulaError(f"cannot use the matrix-valued argument of {what}")
    if isinstance(value, pd.Categorical):
        labels = np.asarray(value.astype(object))
        labels = np.array([None if pd.isna(v) else str(v) for v in labels], dtype=object)
        if fn == "unclass":
            return _factor_codes(value)
        if fn == "as.character":
            return labels
        value = labels  # as.logical(f) reads the labels, as R does
    arr = np.asarray(value)
    if fn == "as.character":
        if arr.dtype.kind in "iuf":
            return np.array([None if np.isnan(v) else format_r_number(float(v))
                             for v in arr.astype(float)], dtype=object)
        if arr.dtype.kind == "b":
            return np.where(arr, "TRUE", "FALSE").astype(object)
        return arr.astype(object)
    if fn == "unclass":
        return arr
    # as.logical: numbers are TRUE when non-zero; strings as R reads them, others NA
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype.kind in "iuf":
        out = arr.astype(float) != 0
        if np.isnan(arr.astype(float)).any():
            return np.array([None if np.isnan(v) else bool(v != 0) for v in arr.astype(float)],
                            dtype=object)
        return out
    truth = {"TRUE": True, "true": True, "T": True, "True": True,
             "FALSE": False, "false": False, "F": False, "False": False}
    mapped = [truth.get(v) if isinstance(v, str) else None for v in arr]
    if all(v is not None for v in mapped):
        return np.array(mapped, dtype=bool)
    return np.array(mapped, dtype=object)


def evaluate(node: Node, columns: Mapping[str, Value], nrow: int,
             state: dict[str, dict[str, Any]] | None = None, *,
             nan_warning: bool = False) -> Value:
    """Evaluate one variable expression; scalars are recycled to ``nrow`` values.
    ``nan_warning``: R's "NaNs produced" warning from its math functions (the model frame
    sets it, as R's model.frame warns; lme4's predict on new data does not)."""
    value = Evaluator(columns, nrow, state, nan_warning=nan_warning).eval(node)
    if np.isscalar(value) or (isinstance(value, np.ndarray) and value.ndim == 0):
        if isinstance(value, str):
            return np.full(nrow, value, dtype=object)
        return np.full(nrow, value, dtype=bool if isinstance(value, bool) else float)
    if isinstance(value, np.ndarray) and value.ndim == 2:
        return MatrixValue(value, None)
    return value


# ---------------------------------------------------------------------------------------------
# ns(), bs() (package splines), cut(), C() and droplevels(), with R's argument matching

# packages whose functions a formula may name as pkg::fn (splines::ns(x, 3))
_PACKAGES = frozenset({"base", "stats", "splines"})


def _function_name(fn: str, what: str) -> str:
    """The function a call names: ``splines::ns`` is ``ns``; another package's is unknown."""
    if "::" not in fn:
        return fn
    package, _, name = fn.partition("::")
    if package not in _PACKAGES:
        raise FormulaError(f"could not find function \"{fn}\" (in {what}; of other packages, "
                           f"only {', '.join(sorted(_PACKAGES))} are known)")
    return name.lstrip(":")


def _match_args(node: Call, formals: tuple[str, ...], what: str, *, dots: bool = False
                ) -> tuple[dict[str, Node], list[tuple[str | None, Node]]]:
    """R's argument matching of a call against a function's formals (``...`` last when
    ``dots``): exact names, then unique partial names, then positions; the arguments left
    over go to ``...`` or are R's "unused argument" errors."""
    matched: dict[str, Node] = {}
    rest: list[tuple[str | None, Node]] = []
    partial: list[tuple[int, str, Node]] = []
    for position, (key, value) in enumerate(node.args, start=1):
        if key is None:
            continue
        if key in formals:
            if key in matched:
                raise FormulaError(f'formal argument "{key}" matched by multiple actual '
                                   f"arguments (in {what})")
            matched[key] = value
        else:
            partial.append((position, key, value))
    for position, key, value in partial:
        candidates = [f for f in formals if f.startswith(key) and f not in matched]
        if len(candidates) > 1:
            raise FormulaError(f"argument {position} matches multiple formal arguments "
                               f"(in {what})")
        if candidates:
            matched[candidates[0]] = value
        elif dots:
            rest.append((key, value))
        else:
            raise FormulaError(f"unused argument ({key} = {deparse(value)}) (in {what})")
    free = [f for f in formals if f not in matched]
    for value in node.positional:
        if free:
            matched[free.pop(0)] = value
        elif dots:
            rest.append((None, value))
        else:
            raise FormulaError(f"unused argument ({deparse(value)}) (in {what})")
    return matched, rest


def _required(args: dict[str, Node], name: str, what: str) -> Node:
    if name not in args:
        raise FormulaError(f'argument "{name}" is missing, with no default (in {what})')
    return args[name]


def _is_null(node: Node | None) -> bool:
    return node is None or (isinstance(node, Name) and node.id == "NULL")


def _numbers_arg(ev: Evaluator, node: Node | None, name: str, what: str) -> np.ndarray | None:
    """A numeric vector argument (``knots = c(2, 5)``), None when absent or NULL."""
    if _is_null(node):
        return None
    assert node is not None
    value = ev.eval(node)
    if isinstance(value, (pd.Categorical, MatrixValue)):
        raise FormulaError(f"'{name}' must be numeric (in {what})")
    try:
        return np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    except (TypeError, ValueError):
        raise FormulaError(f"'{name}' must be numeric (in {what})") from None


def _count_arg(ev: Evaluator, node: Node | None, name: str, what: str) -> float | None:
    values = _numbers_arg(ev, node, name, what)
    if values is None:
        return None
    if values.size != 1 or not np.isfinite(values[0]):
        raise FormulaError(f"'{name}' must be a single finite number (in {what})")
    return float(values[0])


def _logical_arg(ev: Evaluator, node: Node | None, name: str, default: bool, what: str) -> bool:
    if node is None:
        return default
    value = np.atleast_1d(np.asarray(ev.eval(node)))
    if value.size != 1 or value.dtype.kind not in "bif" or np.isnan(value.astype(float)[0]):
        raise FormulaError(f"'{name}' must be TRUE or FALSE (in {what})")
    return bool(value[0])


def _spline_x(ev: Evaluator, args: dict[str, Node], fn: str, what: str) -> np.ndarray:
    value = ev.eval(_required(args, "x", what))
    if isinstance(value, pd.Categorical) or (
            isinstance(value, np.ndarray) and value.dtype.kind not in "iufb"
            and not _is_logical_na(value)):
        # R's ns() and bs() of a factor or of strings fail deep inside (splineDesign's
        # "missing value where TRUE/FALSE needed", or quantile's "(unordered) factors are not
        # allowed")
        raise FormulaError(f"{fn}() needs a numeric 'x', not a factor or strings (in {what})")
    return _vector(_numeric(value, what), what)


def _ns_bs(ev: Evaluator, node: Call, what: str) -> MatrixValue:
    """``ns(x, df, knots, intercept, Boundary.knots)`` and ``bs(x, df, knots, degree,
    intercept, Boundary.knots)``: the basis of package splines. The knots, boundary knots,
    intercept and degree are kept in the state, so that new data get the training data's
    basis (R's makepredictcall); beyond the boundary knots R's continuation applies."""
    fn = _function_name(node.fn, what)
    formals = (("x", "df", "knots", "intercept", "Boundary.knots") if fn == "ns"
               else ("x", "df", "knots", "degree", "intercept", "Boundary.knots"))
    args, _ = _match_args(node, formals, what)
    saved = ev.state.get(what)
    degree = 3
    if saved is None:
        if fn == "bs":
            deg = _count_arg(ev, args.get("degree"), "degree", what)
            degree = 3 if deg is None else int(deg)  # R's as.integer
            if degree < 1:
                raise FormulaError(f"'degree' must be integer >= 1 (in {what})")
        x = _spline_x(ev, args, fn, what)
        df = _count_arg(ev, args.get("df"), "df", what)
        if df is not None and df != int(df):
            # R's seq.int(length.out = ) and negative indexing of a fractional count give
            # knots at other quantiles than the ones a whole df names
            raise FormulaError(f"'df' must be a whole number here (in {what})")
        knots = _numbers_arg(ev, args.get("knots"), "knots", what)
        boundary = _numbers_arg(ev, args.get("Boundary.knots"), "Boundary.knots", what)
        if boundary is not None and boundary.size != 2:
            raise FormulaError(f"'Boundary.knots' must be two numbers (in {what})")
        intercept = _logical_arg(ev, args.get("intercept"), "intercept", False, what)
        if np.isnan(x).all():
            raise FormulaError(f"{fn}() of a variable that is NA throughout (in {what})")
        if knots is not None and np.isnan(knots).any():
            raise FormulaError(f"'knots' must not be NA (in {what})")
    else:  # new data: the training data's knots (R's makepredictcall)
        x = _spline_x(ev, args, fn, what)
        df, knots, boundary = None, saved["knots"], saved["Boundary.knots"]
        intercept, degree = saved["intercept"], saved["degree"]
    if fn == "ns":
        basis = ns_basis(x, df, knots, intercept, boundary)
    else:
        basis = bs_basis(x, df, knots, degree, intercept, boundary)
    if saved is None:
        ev.state[what] = {"knots": basis.knots, "Boundary.knots": basis.boundary_knots,
                          "intercept": basis.intercept, "degree": basis.degree}
    # R's warnings where the model frame gives them (lme4's predict wraps its model.frame
    # on new data in suppressWarnings: bs() beyond the boundary knots is silent there)
    for message in basis.warnings if ev.nan_warning else ():
        warnings.warn(message, LmeFormulaWarning, stacklevel=_caller_outside_package())
    width = basis.values.shape[1]
    return MatrixValue(basis.values, tuple(str(j + 1) for j in range(width)))


def _format_breaks(values: np.ndarray, digits: int) -> list[str]:
    """R's ``formatC(0 + breaks, digits = d, width = 1)``: C's ``%.*g`` for numbers; the
    infinite ones written ``Inf`` and ``-Inf``, right-justified to a common width
    (``" Inf"`` beside ``"-Inf"``), as formatC formats its special values together."""
    text = [f"{v + 0.0:.{digits}g}" for v in values.tolist()]
    special = [i for i, v in enumerate(values.tolist()) if math.isinf(v)]
    width = max((4 if values[i] < 0 else 3) for i in special) if special else 0
    for i in special:
        text[i] = ("Inf" if values[i] > 0 else "-Inf").rjust(width)
    return text


def _cut(ev: Evaluator, node: Call, what: str) -> Value:
    """R's ``cut(x, breaks, labels, include.lowest, right, dig.lab, ordered_result)``: a
    factor of the intervals, labelled ``(a,b]`` with the breaks formatted to the fewest
    digits (from ``dig.lab``) that tell them apart; ``breaks = k`` splits the range into k
    intervals widened by 0.1 % of it; ``labels = FALSE`` gives the interval numbers."""
    args, _ = _match_args(node, ("x", "breaks", "labels", "include.lowest", "right",
                                 "dig.lab", "ordered_result"), what, dots=True)
    raw = ev.eval(_required(args, "x", what))
    if isinstance(raw, (pd.Categorical, MatrixValue)) or np.asarray(raw).dtype.kind not in "iuf":
        raise FormulaError(f"'x' must be numeric (in {what})")
    x = np.asarray(raw, dtype=float)
    breaks = _numbers_arg(ev, _required(args, "breaks", what), "breaks", what)
    assert breaks is not None
    if breaks.size == 1:
        if np.isnan(breaks[0]) or breaks[0] < 2:
            raise FormulaError(f"invalid number of intervals (in {what})")
        nb = int(breaks[0] + 1)
        ok = x[~np.isnan(x)]
        if ok.size == 0:
            raise FormulaError(f"cut() of a variable that is NA throughout (in {what})")
        lo, hi = float(ok.min()), float(ok.max())
        dx = hi - lo
        if dx == 0:
            dx = abs(lo) if lo != 0 else 1.0
            breaks = seq_length_out(lo - dx / 1000, hi + dx / 1000, nb)
        else:
            breaks = seq_length_out(lo, hi, nb)
            breaks[0], breaks[-1] = lo - dx / 1000, hi + dx / 1000
    else:
        breaks = np.sort(breaks)
        nb = breaks.shape[0]
    if np.unique(breaks).shape[0] < nb:
        raise FormulaError(f"'breaks' are not unique (in {what})")
    right = _logical_arg(ev, args.get("right"), "right", True, what)
    lowest = _logical_arg(ev, args.get("include.lowest"), "include.lowest", False, what)
    label_node = args.get("labels")
    codes_only = False
    if _is_null(label_node):
        dig_lab = _count_arg(ev, args.get("dig.lab"), "dig.lab", what)
        dig0 = 3 if dig_lab is None else int(dig_lab)
        found = False
        for dig in range(dig0, max(12, dig0) + 1):
            text = _format_breaks(breaks, dig)
            if all(a != b for a, b in itertools.pairwise(text)):
                found = True
                break
        if found:
            op, cl = ("(", "]") if right else ("[", ")")
            labels = [f"{op}{a},{b}{cl}" for a, b in itertools.pairwise(text)]
            if lowest and right:
                labels[0] = "[" + labels[0][1:]
            elif lowest:
                labels[-1] = labels[-1][:-1] + "]"
        else:
            labels = [f"Range_{i}" for i in range(1, nb)]
    else:
        assert label_node is not None
        value = ev.eval(label_node)
        if isinstance(value, (bool, np.bool_)) and not value:
            codes_only = True
            labels = []
        else:
            labels = [str(v) for v in _r_strings(value, what)]
            if len(labels) != nb - 1:
                raise FormulaError(f"lengths of 'breaks' and 'labels' differ (in {what})")
            if len(set(labels)) < len(labels):
                raise FormulaError(f"duplicated labels are not supported (in {what})")
    # R's .bincode: (b[i], b[i+1]] (right) or [b[i], b[i+1]), the outer end closed by
    # include.lowest; outside the breaks, NA
    nan = np.isnan(x)
    xs = np.where(nan, breaks[0], x)
    code = np.searchsorted(breaks, xs, side="left" if right else "right")
    valid = ~nan & (xs >= breaks[0]) & (xs <= breaks[-1])
    edge = breaks[0] if right else breaks[-1]
    if lowest:
        code = np.where(xs == edge, 1 if right else nb - 1, code)
    else:
        valid &= xs != edge
    valid &= (code >= 1) & (code <= nb - 1)
    if codes_only:
        return np.where(valid, code.astype(float), np.nan)
    f = factor_from_codes(np.where(valid, code - 1, -1).astype(np.int64), labels)
    return f.as_ordered() if _logical_arg(ev, args.get("ordered_result"), "ordered_result",
                                          False, what) else f


# C()'s contrast names: what R's C() maps a bare name to, and the contr.* functions
_C_SHORT = {"poly": "contr.poly", "helmert": "contr.helmert", "sum": "contr.sum",
            "treatment": "contr.treatment", "SAS": "contr.SAS"}
_C_FUNCTIONS = frozenset(_C_SHORT.values())


@dataclass(frozen=True)
class ContrastSpec:
    """The contrasts R's ``C(f, contr, how.many, ...)`` sets on a factor.

    Attributes
    ----------
    kind
        The ``contr.*`` function.
    numbered
        Whether the contrasts are the function's matrix for ``nlevels(f)`` (the function
        given, or ``how.many`` / further arguments: columns named as for levels 1..k, so
        ``C(f, contr.treatment)2``), rather than the function's name (``C(f, sum)``:
        columns named by the levels, as R's model.matrix names a contrast by name).
    how_many
        ``how.many``: the first columns kept, or None.
    base
        ``contr.treatment``'s ``base``, or None.
    """

    kind: str
    numbered: bool
    how_many: int | None
    base: int | None


def _contrast_spec(node: Call, ordered: bool | None, what: str) -> ContrastSpec:
    args, extra = _match_args(node, ("object", "contr", "how.many"), what, dots=True)
    contr = args.get("contr")
    if contr is None:  # R: getOption("contrasts"), by name
        kind, numbered = ("contr.poly" if ordered else "contr.treatment"), False
    elif isinstance(contr, Name) and contr.id in _C_SHORT:
        kind, numbered = _C_SHORT[contr.id], False
    elif isinstance(contr, Name) and contr.id in _C_FUNCTIONS:
        kind, numbered = contr.id, True
    elif isinstance(contr, Str) and contr.value in _C_FUNCTIONS:
        kind, numbered = contr.value, False
    elif isinstance(contr, Name):
        raise FormulaError(f"object '{contr.id}' not found (in {what}; C() takes "
                           f"{', '.join(sorted(_C_SHORT))} or contr.*)")
    else:
        raise FormulaError(f"C() takes a contrast function's name, not {deparse(contr)} "
                           f"(in {what})")
    how_many: int | None = None
    if "how.many" in args:
        value = args["how.many"]
        if not isinstance(value, Num) or value.value != int(value.value) or value.value < 1:
            raise FormulaError(f"'how.many' must be a positive whole number (in {what})")
        how_many, numbered = int(value.value), True
    base: int | None = None
    for key, value in extra:
        if key == "base" and kind == "contr.treatment" and isinstance(value, Num):
            base, numbered = int(value.value), True
        else:
            shown = deparse(value) if key is None else f"{key} = {deparse(value)}"
            raise FormulaError(f"unused argument ({shown}) (in {what})")
    return ContrastSpec(kind, numbered, how_many, base)


@lru_cache(maxsize=256)
def _c_call(name: str) -> Call | None:
    from .formula.parser import parse_expression

    if not (name.startswith("C(") or name.startswith("stats::C(")):
        return None
    try:
        node = parse_expression(name)
    except FormulaError:
        return None
    return node if isinstance(node, Call) and _function_name(node.fn, name) == "C" else None


class DroppedContrastsFactor(pd.Categorical):
    """A ``C(f, ...)`` factor whose contrasts R's model frame dropped: it lost levels there
    (unused in the data, or only on rows dropped for NA), and R's ``[.factor`` with
    ``drop = TRUE`` keeps no contrasts ("contrasts dropped from factor C(f, sum) due to
    missing levels"), so model.matrix codes it by the default contrasts under its C() name,
    and so does lme4's predict (X's contrasts attribute says so)."""


def c_contrasts(name: str, ordered: bool) -> ContrastSpec | None:
    """The contrasts of a model-frame variable that is a call to R's ``C()`` (the variable's
    name is the call: the contrasts follow from its text), None for any other variable."""
    node = _c_call(name)
    return None if node is None else _contrast_spec(node, ordered, name)


def _c(ev: Evaluator, node: Call, what: str) -> pd.Categorical:
    """R's ``C(object, contr, how.many, ...)``: the factor, whose contrasts
    :func:`c_contrasts` reads off the call when the model matrix is built."""
    args, _ = _match_args(node, ("object", "contr", "how.many"), what, dots=True)
    value = ev.eval(_required(args, "object", what))
    if not isinstance(value, pd.Categorical) or len(value.categories) == 0:
        raise FormulaError(f"object not interpretable as a factor (in {what})")
    spec = _contrast_spec(node, value.ordered, what)
    k = len(value.categories)
    if k < 2:
        raise FormulaError(f"contrasts can be applied only to factors with 2 or more levels "
                           f"(in {what})")
    if (spec.how_many is not None and spec.how_many > k - 1
            and spec.kind not in ("contr.sum", "contr.helmert")):
        # R's contrasts<- pads the names of a matrix with fewer columns than how.many (a
        # contr.* matrix has all k - 1), which fails where the matrix has column names; an
        # unnamed one (sum, Helmert) is kept whole
        raise FormulaError(f"length of 'dimnames' [2] not equal to array extent (in {what})")
    if spec.base is not None and not 1 <= spec.base <= k:
        raise FormulaError(f"baseline group number out of range (in {what})")
    return value


def _droplevels(ev: Evaluator, node: Call, what: str) -> pd.Categorical:
    """R's ``droplevels(f, exclude)``: the factor without its unused levels, nor the levels
    in ``exclude`` (their values become NA)."""
    args, _ = _match_args(node, ("x", "exclude"), what, dots=True)
    value = ev.eval(_required(args, "x", what))
    if isinstance(value, pd.Categorical):
        exclude = args.get("exclude")
        if not _is_null(exclude) and not (isinstance(exclude, Name) and exclude.id == "NA"):
            assert exclude is not None
            drop = {v for v in _r_strings(ev.eval(exclude), what) if v is not None}
            gone = np.array([str(c) in drop for c in value.categories], dtype=bool)
            codes = np.asarray(value.codes)
            value = pd.Categorical.from_codes(
                np.where((codes >= 0) & gone[np.maximum(codes, 0)], -1, codes),
                categories=value.categories, ordered=value.ordered)
        return drop_unused_levels(value)
    arr = np.asarray(value.values if isinstance(value, MatrixValue) else value)
    kind = ("c('double', 'numeric')" if arr.dtype.kind in "iuf" else
            "logical" if arr.dtype.kind == "b" or _is_logical_na(arr) else "character")
    raise FormulaError(f"no applicable method for 'droplevels' applied to an object of class "
                       f"\"{kind}\" (in {what})")


def _seq(ev: Evaluator, node: Call, what: str) -> np.ndarray:
    """R's ``seq(from, to, by)`` and ``seq(from, to, length.out = n)`` (seq.default's
    arithmetic: ``from + (0:n) * by`` capped at ``to``; ``from + i * (to - from) / (n - 1)``
    inside), for breaks and knots: ``cut(x, seq(0, 10, by = 2.5))``."""
    args, _ = _match_args(node, ("from", "to", "by", "length.out"), what)
    start = _count_arg(ev, args.get("from"), "from", what)
    stop = _count_arg(ev, args.get("to"), "to", what)
    by = _count_arg(ev, args.get("by"), "by", what)
    length = _count_arg(ev, args.get("length.out"), "length.out", what)
    if by is not None and length is not None:
        raise FormulaError(f"too many arguments (in {what})")
    if start is None or stop is None:
        raise FormulaError(f"seq() needs 'from' and 'to' here (in {what})")
    if by is None and length is None:
        return _sequence(start, stop, what)
    if length is not None:
        n = math.ceil(length)
        if n < 0:
            raise FormulaError(f"'length.out' must be a non-negative number (in {what})")
        if n <= 2:
            return np.array([start, stop][:n])
        if start == stop:
            return np.full(n, start)
        step = (stop - start) / (n - 1)
        return np.concatenate([[start], start + np.arange(1, n - 1) * step, [stop]])
    assert by is not None
    span = stop - start
    if (span != 0 and by == 0) or span * by < 0:
        raise FormulaError(f"wrong sign in 'by' argument (in {what})")
    if span == 0 or abs(span) / max(abs(start), abs(stop)) < 100 * np.finfo(float).eps:
        return np.array([start])
    count = int(span / by + 1e-10)
    if count > 1e8:
        raise FormulaError(f"'by' argument is much too small (in {what})")
    out = start + np.arange(count + 1) * by
    return np.minimum(out, stop) if by > 0 else np.maximum(out, stop)


def _quantile(ev: Evaluator, node: Call, what: str) -> np.ndarray:
    """R's ``quantile(x, probs, na.rm)`` of type 7 (the default), for breaks and knots:
    ``cut(x, quantile(x, c(0, 0.5, 1), na.rm = TRUE), include.lowest = TRUE)``."""
    args, _ = _match_args(node, ("x", "probs", "na.rm", "names", "type"), what)
    x = _numbers_arg(ev, _required(args, "x", what), "x", what)
    assert x is not None
    probs = _numbers_arg(ev, args.get("probs"), "probs", what)
    if probs is None:
        probs = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    kind = _count_arg(ev, args.get("type"), "type", what)
    if kind is not None and kind != 7:
        raise FormulaError(f"only quantile type 7 (R's default) is supported (in {what})")
    if _logical_arg(ev, args.get("na.rm"), "na.rm", False, what):
        x = x[~np.isnan(x)]
    elif np.isnan(x).any():
        raise FormulaError(f"missing values and NaN's not allowed if 'na.rm' is FALSE "
                           f"(in {what})")
    if np.isnan(probs).any() or (probs < -100 * np.finfo(float).eps).any() or (
            probs > 1 + 100 * np.finfo(float).eps).any():
        raise FormulaError(f"'probs' outside [0,1] (in {what})")
    if x.size == 0:
        return np.full(probs.shape, np.nan)
    return quantile7(x, np.clip(probs, 0.0, 1.0))


_R_FUNCTIONS: dict[str, Callable[[Evaluator, Call, str], Value]] = {
    "ns": _ns_bs, "bs": _ns_bs, "cut": _cut, "C": _c, "droplevels": _droplevels,
    "seq": _seq, "quantile": _quantile,
}
