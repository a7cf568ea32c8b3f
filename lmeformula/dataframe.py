"""Any data frame in, a pandas DataFrame out: the one place where input data change type.

The model frame ``fr`` is a pandas DataFrame whatever the caller gave, so every later stage
(transforms, model matrices, predictions) deals with pandas only. :func:`as_pandas` accepts

* a pandas DataFrame: returned as it is (no copy; it is never modified downstream);
* anything narwhals understands as a data frame: polars (eager, or lazy: it is collected),
  pyarrow Tables, and other pandas-like frames; converted once by the library's own
  ``to_pandas`` (polars and pyarrow go through Arrow, one conversion);
* a mapping of column name -> 1-D array-like (numpy arrays, lists, pandas / polars Series),
  all of one length.

Declared level order is kept: a polars ``Enum`` and an Arrow dictionary column become pandas
Categoricals whose categories are in the input's order (unordered factors, except an Arrow
dictionary flagged ``ordered``, which becomes R's ordered factor). A polars ``Categorical``
declares no order (its categories come in order of first appearance, which depends on the row
order), so its levels are sorted as R sorts strings (C-locale order), like string columns, which
stay strings and become factors later, as in R's ``lFormula``. Decimal columns become floats.
Missing values of nullable types survive: integers with nulls become floats with NaN,
booleans with nulls become pandas' nullable ``boolean`` (a factor FALSE/TRUE with NA, as R has
it), strings with nulls keep their missing values.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .errors import ArgumentError, ModelFrameError

__all__ = ["as_pandas", "borrows_caller_arrays"]

# the frames made from a mapping here, by id: their columns are the caller's own arrays
# (copy=False), which the caller may still write into, unseen by pandas' copy-on-write
_BORROWED: weakref.WeakValueDictionary[int, pd.DataFrame] = weakref.WeakValueDictionary()


def borrows_caller_arrays(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` is :func:`as_pandas`'s frame over a mapping's arrays (their memory
    the caller's: the model frame copies rather than shares its columns)."""
    return _BORROWED.get(id(frame)) is frame


def as_pandas(data: Any, what: str = "data") -> pd.DataFrame:
    """Convert a data frame of any supported kind to pandas (see the module's description).

    Parameters
    ----------
    data
        pandas / polars (eager or lazy) / pyarrow / any narwhals-supported frame, or a dict of
        1-D arrays.
    what
        The argument's name, for error messages (``"data"``, ``"newdata"``).

    Returns
    -------
    pandas.DataFrame
        ``data`` itself when it is already a pandas DataFrame.

    Raises
    ------
    TypeError
        When ``data`` is not a data frame or a mapping of columns.
    ModelFrameError
        When a mapping's columns are not 1-D or differ in length.
    """
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        return _from_mapping(data, what)
    import narwhals as nw

    try:
        frame = nw.from_native(data, allow_series=False)
    except TypeError:
        raise ArgumentError(
            f"{what} must be a data frame (pandas, polars, pyarrow, or any frame narwhals "
            f"supports) or a dict of arrays, not {type(data).__name__}"
        ) from None
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect()
    out = frame.to_pandas()
    polars = frame.implementation.is_polars()
    for name, dtype in frame.schema.items():
        fixed = _native_column(out[name], dtype, polars)
        if fixed is not out[name]:
            out[name] = fixed
    return out


def _native_column(column: pd.Series, dtype: Any, polars: bool) -> pd.Series:
    """A converted column in the type the model frame expects (``column`` itself if fine)."""
    import narwhals as nw

    if dtype == nw.Boolean and column.dtype == object:
        # booleans with nulls arrive as object columns of True/False/None: pandas' nullable
        # boolean, which the model frame turns into R's FALSE/TRUE factor with NA
        return column.astype("boolean")
    if dtype == nw.Decimal:
        # decimals arrive as object columns of decimal.Decimal, which would become a factor:
        # they are numbers (R reads a decimal column as double)
        return column.astype("float64")
    if polars and isinstance(column.dtype, pd.CategoricalDtype):
        if dtype == nw.Categorical:
            # a polars Categorical has no declared order (its categories are in order of first
            # appearance, which depends on the row order): R's factor() of its strings, levels
            # in C-locale order like any string column
            return column.cat.reorder_categories(sorted(map(str, column.cat.categories)),
                                                 ordered=False)
        if column.cat.ordered:
            # a polars Enum fixes the level order but is no ordinal scale: R's factor(), coded
            # by treatment contrasts, not an ordered factor (Arrow's explicit flag is kept)
            return column.cat.as_unordered()
    return column


def _from_mapping(data: Mapping[Any, Any], what: str) -> pd.DataFrame:
    columns: dict[str, Any] = {}
    length: int | None = None
    for key, value in data.items():
        if not isinstance(key, str):
            raise ArgumentError(f"{what}: column names must be strings, not {type(key).__name__}")
        if not isinstance(value, (pd.Series, pd.Categorical, pd.api.extensions.ExtensionArray)):
            value = _as_1d(value, key, what)
        elif isinstance(value, pd.Series):
            value = value.array  # the values, without the Series' index
        if length is None:
            length = len(value)
        elif len(value) != length:
            raise ModelFrameError(
                f"{what}: arguments imply differing number of rows: {length}, {len(value)} "
                f"(column '{key}')"
            )
        columns[key] = value
    # copy=False: the arrays are only read downstream, so one buffer per column is enough
    # (they stay the caller's: see borrows_caller_arrays)
    out = pd.DataFrame(columns, copy=False)
    _BORROWED[id(out)] = out
    return out


def _as_1d(value: Any, key: str, what: str) -> Any:
    """A mapping's column as something pandas takes without a second conversion."""
    module = type(value).__module__.split(".")[0]
    if module in ("polars", "pyarrow"):
        import narwhals as nw

        series = nw.from_native(value, series_only=True)
        return _native_column(series.to_pandas(), series.dtype,
                              series.implementation.is_polars()).array
    if isinstance(value, (Mapping, str, bytes)) or np.ndim(value) == 0:
        raise ArgumentError(f"{what}: column '{key}' must be a 1-D array-like, "
                        f"not {type(value).__name__}")
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ModelFrameError(f"{what}: column '{key}' must be one-dimensional, "
                              f"not of shape {arr.shape}")
    return arr
