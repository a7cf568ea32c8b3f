"""The model frame (R's ``model.frame``): every variable the formula uses, evaluated once, with
joint NA handling, unused factor levels dropped, and ``weights`` / ``offset``.

As in R, variables are evaluated on all rows of the data first (so ``scale(x)`` and ``poly(x)``
see the rows that NA handling later removes), then ``subset`` and ``na_action`` select rows.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, cast

import numpy as np
import pandas as pd

from .call import ModelCall
from .dataframe import as_pandas, borrows_caller_arrays
from .errors import FormulaError, LmeFormulaWarning, ModelFrameError
from .formula.ast import Name, Node, deparse
from .formula.bars import subbars
from .formula.terms import terms
from .transforms import (
    DroppedContrastsFactor,
    MatrixValue,
    Value,
    _caller_outside_package,
    as_factor,
    c_contrasts,
    column_value,
    drop_unused_levels,
    evaluate,
    factor_from_codes,
    na_of,
)

__all__ = ["ModelFrame", "NAAction", "call_frame", "model_frame"]

NA_ACTIONS = ("omit", "exclude", "fail", "pass")


@dataclass(frozen=True)
class NAAction:
    """Which rows NA handling removed (R's ``attr(fr, "na.action")``).

    Attributes
    ----------
    kind
        ``"omit"`` or ``"exclude"`` (``"exclude"`` pads residuals and fitted values back).
    omitted
        0-based positions, in the caller's data, of the removed rows.
    labels
        The caller's index labels of the removed rows.
    """

    kind: str
    omitted: np.ndarray
    labels: list[Any]


@dataclass
class ModelFrame:
    """The evaluated variables of a mixed-model formula on the rows that are kept.

    Attributes
    ----------
    data
        ``fr``: one column per variable, named by its R expression (matrix-valued variables such
        as ``poly(x, 2)`` give one column per matrix column, ``poly(x, 2).1``), plus
        ``(weights)`` and ``(offset)`` when those arguments were given; the caller's index.
        Built on first access.
    index
        The caller's index labels of the kept rows.
    extras
        ``(weights)`` and ``(offset)`` as given, on the kept rows.
    variables
        Deparsed expression -> evaluated value on the kept rows (exact types, matrices intact).
    response
        Deparsed response expression, or None for a one-sided formula.
    weights
        Prior weights, or None.
    offset
        Total offset (``offset()`` terms plus the ``offset=`` argument), or None.
    na_action
        The rows removed for NA, or None when none were.
    kept_rows
        0-based positions of the kept rows in the caller's data, or None when every row is
        kept in order (then no n-length index is held: a 10⁶-row fit's 8 MB); read
        :attr:`rows`.
    nrow_data
        Number of rows of the caller's data.
    state
        Parameters of data-dependent transforms (``poly``, ``scale``), keyed by expression.
    character
        The variables that were character vectors (strings), held as factors as lme4's
        ``factorize`` makes them after ``model.frame``, whose ``dataClasses`` still say
        "character" (lmerTest reads those: a character variable is not a factor there).
    """

    index: pd.Index
    variables: dict[str, Value]
    response: str | None
    weights: np.ndarray | None
    offset: np.ndarray | None
    na_action: NAAction | None
    kept_rows: np.ndarray | None
    nrow_data: int
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    character: frozenset[str] = frozenset()

    @cached_property
    def data(self) -> pd.DataFrame:
        """The model frame as a DataFrame (lme4's ``fr``)."""
        return _frame_table(self.variables, self.extras, self.index)

    @property
    def rows(self) -> np.ndarray:
        """0-based positions of the kept rows in the caller's data."""
        if self.kept_rows is None:
            return np.arange(self.nrow_data)
        return self.kept_rows

    @property
    def nrow(self) -> int:
        """Number of rows kept."""
        return self.nrow_data if self.kept_rows is None else int(self.kept_rows.shape[0])


def na_mask(value: Value) -> np.ndarray:
    """Rows where a variable is missing (NaN, NA level, None): :func:`na_of` of a
    variable."""
    return na_of(value)


def _take(value: Value, rows: np.ndarray) -> Value:
    if isinstance(value, pd.Categorical):
        taken = value if rows.shape[0] == len(value) else value.take(rows)
        return drop_unused_levels(taken)  # drop.unused.levels = TRUE
    if isinstance(value, MatrixValue):
        return value.take(rows)
    arr = np.asarray(value)
    # every row kept: the evaluated value itself (a new array, never the caller's), not a
    # second copy of an n-length column
    return arr if rows.shape[0] == arr.shape[0] else arr[rows]


def _c_levels(name: str, value: Value, kept: Value) -> Value:
    """A ``C(f, sum)`` factor that lost levels in the model frame (unused in the data, or
    only on rows dropped for NA): R's model.frame drops its contrasts, with R's warning, and
    model.matrix codes it by the default contrasts (:class:`DroppedContrastsFactor`)."""
    if (isinstance(value, pd.Categorical) and isinstance(kept, pd.Categorical)
            and len(kept.categories) < len(value.categories)
            and c_contrasts(name, bool(value.ordered)) is not None):
        warnings.warn(f"contrasts dropped from factor {name} due to missing levels",
                      LmeFormulaWarning, stacklevel=_caller_outside_package())
        return DroppedContrastsFactor.from_codes(np.asarray(kept.codes),
                                                 categories=kept.categories,
                                                 ordered=kept.ordered)
    return kept


def _string_factor(column: pd.Series) -> pd.Categorical:
    """A column of pandas' string dtype as the factor the model frame makes of it (strings
    sorted in code-point order, R's under LC_ALL=C; missing values coded -1), coded by
    pandas on the column's own storage: the same factor as :func:`as_factor` of its values,
    without one Python string per row (a 10⁶-row column: 60 MB of them, then a hash table)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    levels = [str(u) for u in uniques]
    order = sorted(range(len(levels)), key=levels.__getitem__)
    rank = np.full(len(levels) + 1, -1, dtype=np.int64)  # rank[-1]: missing stays -1
    rank[order] = np.arange(len(levels))
    return factor_from_codes(rank[codes], [levels[i] for i in order])


def _is_string_column(columns: _LazyColumns, node: Node) -> bool:
    """Whether ``node`` names one column of pandas' string dtype (not object)."""
    if not isinstance(node, Name) or node.id not in columns:
        return False
    if columns.stored(node.id) is not None:  # a numeric or categorical column
        return False
    dtype = getattr(columns.series(node.id), "dtype", None)  # duplicated names: a DataFrame
    return (dtype is not None and pd.api.types.is_string_dtype(dtype)
            and not pd.api.types.is_object_dtype(dtype))


def extra_columns(weights: Any, offset: Any, data: pd.DataFrame) -> dict[str, np.ndarray]:
    """The model frame's ``(weights)`` and ``(offset)`` columns, those given (R's model.frame
    adds them under these names), each checked as a numeric vector of the data's length."""
    extras: dict[str, np.ndarray] = {}
    if weights is not None:
        extras["(weights)"] = _vector_argument(weights, data, "weights")
    if offset is not None:
        extras["(offset)"] = _vector_argument(offset, data, "offset")
    return extras


def _vector_argument(arg: Any, data: pd.DataFrame, what: str) -> np.ndarray:
    if isinstance(arg, str):
        arg = data[arg] if arg in data.columns else r_argument(arg, data, what)
    raw = np.asarray(arg)
    if isinstance(arg, pd.Categorical) or isinstance(getattr(arg, "dtype", None),
                                                     pd.CategoricalDtype):
        raw = np.asarray([], dtype=object)  # a factor is not numeric, whatever its labels
    if raw.dtype.kind == "O":  # numbers stored as objects are numbers; anything else is not
        kind = pd.api.types.infer_dtype(raw, skipna=True) if raw.size else "empty"
        if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
            raw = pd.Series(raw).astype(float).to_numpy()
    if raw.dtype.kind not in "iufb" or raw.ndim != 1:
        raise ModelFrameError(f"'{what}' must be a numeric vector" if what == "weights"
                              else f"'{what}' must be numeric")
    values = np.asarray(raw, dtype=float)
    if np.isinf(values).any():  # NaN is missing (NA handling); Inf is an error, as in lme4
        raise ModelFrameError(f"NA/NaN/Inf in '{what}'")
    if values.ndim != 1 or values.shape[0] != len(data):
        raise ModelFrameError(
            f"variable lengths differ (found for '({what})'): {values.shape[0]} != {len(data)}"
        )
    return values


def r_argument(text: str, data: pd.DataFrame, what: str, *,
               nan_warning: bool = True) -> Value:
    """``weights=`` or ``offset=`` text that is not a column's name: an R expression of the
    data's columns (``offset = "log(t)"``, ``weights = "1/w"``), evaluated in the data as R's
    model.frame evaluates these arguments (and ``subset``)."""
    from .formula.parser import parse_expression

    try:
        node = parse_expression(text)
        value = evaluate(node, _LazyColumns(data), len(data), nan_warning=nan_warning)
    except (FormulaError, TypeError) as err:
        raise ModelFrameError(f"{what}: {err}") from None
    if isinstance(value, MatrixValue):
        raise ModelFrameError(f"'{what}' must be a numeric vector, not a matrix ({text})")
    return value


def frame_variables(lhs: Node | None, rhs: Node) -> list[Node]:
    """Variables of ``model.frame(subbars(formula))``: the response first, then the right side's."""
    return list(_frame_variables(lhs, rhs))


@lru_cache(maxsize=256)
def _frame_variables(lhs: Node | None, rhs: Node) -> tuple[Node, ...]:
    return tuple(terms(subbars(rhs), lhs).variables)  # syntax trees are frozen: cacheable


@lru_cache(maxsize=256)
def _named_frame_variables(lhs: Node | None, rhs: Node) -> tuple[tuple[Node, str], ...]:
    """:func:`frame_variables` with each variable's deparsed name (the frame's column)."""
    return tuple((node, deparse(node)) for node in _frame_variables(lhs, rhs))


def model_frame(
    lhs: Node | None,
    rhs: Node,
    data: pd.DataFrame,
    *,
    weights: Any = None,
    offset: Any = None,
    subset: Any = None,
    na_action: str = "omit",
) -> ModelFrame:
    """Build the model frame for ``lhs ~ rhs`` (bars allowed in ``rhs``).

    Parameters
    ----------
    lhs, rhs
        The formula's sides as syntax trees.
    data
        The caller's data, any data frame :func:`lmeformula.dataframe.as_pandas` accepts
        (pandas, polars, pyarrow, dict of arrays); never modified.
    weights, offset
        Column names or array-likes of length ``len(data)``.
    subset
        Boolean array-like, or R expression text evaluated in ``data`` (``"Days > 1"``).
    na_action
        ``"omit"`` (default), ``"exclude"`` or ``"fail"``.

    Returns
    -------
    ModelFrame
    """
    data = as_pandas(data)  # polars, pyarrow, dicts...: converted once, here
    if isinstance(data.columns, pd.MultiIndex):
        raise ModelFrameError("data has several levels of column names (a MultiIndex): "
                              "give one name per column, e.g. data.columns.to_flat_index()")
    if isinstance(na_action, str) and na_action.startswith("na."):
        na_action = na_action[3:]  # R's names: "na.omit", "na.exclude", "na.fail", "na.pass"
    if na_action not in NA_ACTIONS:
        raise ModelFrameError(f"na_action must be one of {NA_ACTIONS}, not {na_action!r}")
    n = len(data)
    columns = _LazyColumns(data)
    state: dict[str, dict[str, Any]] = {}
    values: dict[str, Value] = {}
    character: set[str] = set()
    for node, name in _named_frame_variables(lhs, rhs):
        if _is_string_column(columns, node):  # the factor the frame would make of it, directly
            assert isinstance(node, Name)
            values[name] = _string_factor(cast(pd.Series, columns.series(node.id)))
            character.add(name)
        else:
            values[name] = evaluate(node, columns, n, state, nan_warning=True)

    extras = extra_columns(weights, offset, data)

    keep = np.ones(n, dtype=bool)
    if subset is not None:
        keep &= _subset_mask(subset, columns, n)
    na = np.zeros(n, dtype=bool)
    for value in list(values.values()) + list(extras.values()):
        na |= na_mask(value)
    na &= keep
    if na.any() and na_action == "fail":
        raise ModelFrameError("missing values in object")
    if na_action == "pass":  # rows kept: the checks on y, X, Z and weights then refuse NAs
        na[:] = False
    keep &= ~na
    rows = np.flatnonzero(keep)
    if rows.shape[0] == 0:
        raise ModelFrameError("0 (non-NA) cases")

    kept = {name: _take(v, rows) for name, v in values.items()}
    kept = {name: _c_levels(name, values[name], v) for name, v in kept.items()}
    for name, v in kept.items():
        if isinstance(v, np.ndarray) and v.dtype.kind == "O":
            if pd.api.types.infer_dtype(v, skipna=True) == "boolean":
                kept[name] = v.astype(bool)  # a logical whose NA rows were dropped: x > 2
                continue
            kept[name] = as_factor(v, name)  # lFormula: character columns become factors
            character.add(name)
    kept_extras = {name: v[rows] for name, v in extras.items()}

    if "(weights)" in kept_extras and (kept_extras["(weights)"] < 0).any():
        raise ModelFrameError("negative weights not allowed: all(weights >= 0) is not TRUE")

    offset_total = None
    offset_terms = [k for k in kept if k.startswith("offset(")]
    if offset_terms or "(offset)" in kept_extras:
        offset_total = np.zeros(rows.shape[0])
        for k in offset_terms:
            offset_total = offset_total + _offset_term(kept[k], k)
        if "(offset)" in kept_extras:
            offset_total = offset_total + kept_extras["(offset)"]

    omitted = np.flatnonzero(na)
    na_record = (
        NAAction(na_action, omitted, [data.index[int(i)] for i in omitted])
        if omitted.size else None
    )
    return ModelFrame(
        index=data.index if rows.shape[0] == n else data.index[rows],
        variables=kept,
        response=deparse(lhs) if lhs is not None else None,
        weights=kept_extras.get("(weights)"),
        offset=offset_total,
        na_action=na_record,
        kept_rows=None if rows.shape[0] == n else rows,
        nrow_data=n,
        state=state,
        extras=kept_extras,
        character=frozenset(character),
    )


def call_frame(call: ModelCall, lhs: Node | None, rhs: Node) -> ModelFrame:
    """The model frame of ``lhs ~ rhs`` on a call's data, subset, weights, offset and NA
    action (:func:`model_frame` with the arguments read from ``call``)."""
    return model_frame(lhs, rhs, call.data, weights=call.weights, offset=call.offset,
                       subset=call.subset, na_action=call.na_action)


def _offset_term(value: Any, name: str) -> np.ndarray:
    """An ``offset()`` term's values: numbers only (lme4: "'offset' must be numeric")."""
    arr = None if isinstance(value, (pd.Categorical, MatrixValue)) else np.asarray(value)
    if arr is None or arr.dtype.kind not in "iufb":
        raise ModelFrameError(f"'offset' must be numeric: {name} is not")
    out = np.asarray(arr, dtype=float)
    if not np.isfinite(out).all():
        raise ModelFrameError(f"NA/NaN/Inf in 'offset': {name}")
    return out


# float64 columns of at least this many rows are shared with the caller's frame, read-only
# (see _LazyColumns._shared_view); shorter ones are copied (a Series costs tens of µs)
SHARE_MIN_ROWS = 100_000


@lru_cache(maxsize=1)
def _copy_on_write() -> bool:
    """Whether pandas always copies a frame's data before writing to it while a Series of it
    lives: from pandas 3 on. pandas 2's ``mode.copy_on_write`` is read at each write, so a fit
    made with it on would be reached by writes after it is turned off: no sharing there."""
    return int(pd.__version__.split(".")[0]) >= 3


class _Anchored:
    """An array's memory together with the pandas object that owns it: ``np.asarray`` of
    this gives an array whose base is this object, so every view of it keeps ``owner``
    (and with it pandas' record that the data is shared) alive."""

    def __init__(self, values: np.ndarray, owner: object) -> None:
        self.__array_interface__ = values.__array_interface__
        self._values = values
        self._owner = owner


class _LazyColumns(dict):
    """Column lookup converting a data-frame column only when a formula uses it."""

    def __init__(self, data: pd.DataFrame) -> None:
        super().__init__()
        self._data = data
        # each column taken out of the frame once (pandas builds a Series at every
        # ``data[key]``, tens of µs, and deep-copies the frame's attrs into it)
        self._series: dict[str, pd.Series | pd.DataFrame] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._data.columns

    def series(self, key: str) -> pd.Series | pd.DataFrame:
        """The data's column ``key`` (a DataFrame when the name is duplicated)."""
        column = self._series.get(key)
        if column is None:
            column = self._series[key] = self._data[key]
        return column

    def stored(self, key: str) -> Value | None:
        """The value of column ``key`` read straight off the frame's storage for the common
        column types, float64 (a copy, as :func:`column_value` makes, or from
        ``SHARE_MIN_ROWS`` rows a read-only view: :meth:`_shared_view`), numpy integers (as
        floats) and categorical (a copy of the Categorical), without the Series pandas would
        build for ``data[key]`` (a deep chain of Python calls: a tenth of a small model's
        setup); None for any
        other column, a duplicated name, or a pandas whose internals differ (then the
        Series path decides)."""
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        try:
            loc = self._data.columns.get_loc(key)
            manager = getattr(self._data, "_mgr", None)
            if not isinstance(loc, (int, np.integer)) or manager is None:
                return None
            raw = manager.iget_values(int(loc))
        except (AttributeError, KeyError, TypeError, IndexError):
            return None
        value: Value
        if isinstance(raw, np.ndarray) and raw.dtype == np.float64 and raw.ndim == 1:
            shared = (self._shared_view(key, raw) if raw.shape[0] >= SHARE_MIN_ROWS
                      else None)
            value = np.array(raw, dtype=float) if shared is None else shared
        elif isinstance(raw, np.ndarray) and raw.dtype.kind in "iu" and raw.ndim == 1:
            # numpy integers (no missing values): the floats column_value converts them to
            value = raw.astype(float)
        elif isinstance(raw, pd.Categorical):
            value = raw.copy()
        else:
            return None
        dict.__setitem__(self, key, value)
        return value

    def _shared_view(self, key: str, raw: np.ndarray) -> np.ndarray | None:
        """A read-only view of a long float64 column instead of a copy (a 10⁶-row column is
        8 MB the model frame need not hold twice), where pandas copies on write: the view
        keeps the column's Series alive, so a later write to the caller's frame copies the
        frame's data first and never reaches the model. None before pandas 3, where the
        frame's arrays are a mapping's (the caller's own, which the caller can write into
        without pandas knowing), or where the column is not the array read. (A frame the
        caller built with ``copy=False`` over numpy arrays they write into later is beyond
        pandas' guard, and so beyond this one: README, Speed.)"""
        if not _copy_on_write() or borrows_caller_arrays(self._data):
            return None
        series = self.series(key)
        if not isinstance(series, pd.Series):
            return None
        values = series.to_numpy()
        if (not isinstance(values, np.ndarray) or values.dtype != np.float64
                or not np.shares_memory(values, raw)):
            return None
        view = np.asarray(_Anchored(values, series))
        view.flags.writeable = False
        return view

    def __getitem__(self, key: str) -> Value:
        if not dict.__contains__(self, key) and self.stored(key) is None:
            column = self.series(key)
            if isinstance(column, pd.DataFrame):  # duplicated column names
                raise ModelFrameError(f"data has {column.shape[1]} columns named '{key}': "
                                      "column names must be unique")
            dict.__setitem__(self, key, column_value(column))
        return dict.__getitem__(self, key)


def _row_numbers_mask(value: np.ndarray, n: int, text: str) -> np.ndarray:
    """An R subset that is numbers (``subset = 1:300``, ``-(1:10)``) selects rows by their
    1-based numbers, as R's ``data[subset, ]`` in model.frame does: positive numbers keep
    those rows, negative ones drop them, zeros are ignored and fractions truncated. Rows
    in the data's order, each once, is what a model frame here can hold: numbers that
    repeat or reorder rows, or point past the data, are refused. Logical values pass
    through."""
    if value.dtype.kind not in "iuf" and not (
            value.dtype.kind == "O" and value.size and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return value
    idx = np.trunc(value.astype(float).ravel())
    if np.isnan(idx).any():
        raise ModelFrameError(f"subset {text!r}: row numbers must not be missing")
    idx = idx[idx != 0]
    mask = np.zeros(n, dtype=bool)
    if idx.size == 0:
        return mask
    if (idx < 0).any() and (idx > 0).any():
        raise ModelFrameError(f"subset {text!r}: only 0's may be mixed with negative "
                              "subscripts")
    if (np.abs(idx) > n).any():
        raise ModelFrameError(f"subset {text!r}: row numbers must be between 1 and {n} "
                              "(the rows of data)")
    rows = np.abs(idx).astype(np.int64) - 1
    if (idx < 0).all():
        mask[:] = True
        mask[rows] = False
        return mask
    if (np.diff(rows) <= 0).any():
        raise ModelFrameError(f"subset {text!r}: row numbers that repeat or reorder rows "
                              "are not supported; give them in increasing order, each once")
    mask[rows] = True
    return mask


def _subset_mask(subset: Any, columns: _LazyColumns, n: int) -> np.ndarray:
    if isinstance(subset, str):
        from .formula.parser import parse_expression

        mask = evaluate(parse_expression(subset), columns, n, nan_warning=True)
        if isinstance(mask, np.ndarray) and mask.dtype.kind == "O" and \
                pd.api.types.infer_dtype(mask, skipna=True) == "boolean":
            mask = np.array([bool(v) for v in mask], dtype=bool)  # R's subset: NA as FALSE
        if not isinstance(mask, (pd.Categorical, MatrixValue)):
            mask = _row_numbers_mask(np.asarray(mask), n, subset)
    else:
        mask = np.asarray(subset)
    mask = np.asarray(mask)
    if mask.dtype.kind != "b" or mask.shape != (n,):
        raise ModelFrameError("subset must be a logical vector with one value per row of data")
    return mask


def _frame_table(
    variables: dict[str, Value], extras: dict[str, np.ndarray], index: pd.Index
) -> pd.DataFrame:
    cols: dict[str, Any] = {}
    for name, v in variables.items():
        if isinstance(v, MatrixValue):
            labels = v.colnames or tuple(str(i + 1) for i in range(v.values.shape[1]))
            if v.values.shape[1] == 1 and v.colnames is None:
                cols[name] = v.values[:, 0]
            else:
                for j, lab in enumerate(labels):
                    cols[f"{name}.{lab}"] = v.values[:, j]
        else:
            cols[name] = v
    cols.update(extras)
    return pd.DataFrame(cols, index=index)


def check_response(frame: ModelFrame) -> np.ndarray:
    """The numeric response vector (lme4's ``mkRespMod`` checks and messages)."""
    if frame.response is None:
        raise FormulaError("the formula has no response (left-hand side)")
    y = frame.variables[frame.response]
    if isinstance(y, (pd.Categorical, MatrixValue)):
        if isinstance(y, MatrixValue):
            raise ModelFrameError(
                "can't handle matrix-valued responses: consider using refit()"
            )
        raise ModelFrameError("response must be numeric")
    arr = np.asarray(y)
    if arr.dtype.kind == "b":
        arr = arr.astype(float)
    if arr.dtype.kind not in "iuf":
        raise ModelFrameError("response must be numeric")
    # no copy of a float column: the frame's own array (never modified) serves as y
    arr = arr.astype(float, copy=False)
    if not np.isfinite(arr).all():
        raise ModelFrameError("NA/NaN/Inf in 'y'")
    return arr
