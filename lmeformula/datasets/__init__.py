"""lme4's example data sets, with R's column types.

The files in ``data/`` were exported from R 4.2.2 (lme4 1.1-31; ``Machines`` from nlme) by
``tools/R/export_datasets.R``: values as CSV (doubles written with 17 significant digits so they
round-trip exactly) and a JSON description of each column's R type and factor levels, so that
factors load as pandas Categoricals in R's level order (ordered factors as ordered Categoricals).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["describe", "list", "load"]

_builtin_list = list


def _data_dir() -> Traversable:
    return resources.files(__name__).joinpath("data")


def list() -> _builtin_list[str]:
    """Names of the available data sets."""
    return sorted(p.name[: -len(".json")] for p in _data_dir().iterdir()
                  if p.name.endswith(".json"))


def describe(name: str) -> dict:
    """Provenance and column types of a data set (the exported JSON)."""
    path = _data_dir().joinpath(f"{name}.json")
    if not path.is_file():
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(list())}")
    return json.loads(path.read_text())


@cache
def _load_cached(name: str) -> pd.DataFrame:
    meta = describe(name)
    with _data_dir().joinpath(f"{name}.csv.gz").open("rb") as fh:
        raw = pd.read_csv(fh, compression="gzip", dtype=str, keep_default_na=False)
    cols: dict[str, Any] = {}
    for col in meta["columns"]:
        values = raw[col["name"]]
        na = values == "NA"
        kind = col["type"]
        if kind in ("factor", "ordered"):
            levels = col["levels"]
            lookup = {lev: i for i, lev in enumerate(levels)}
            codes = np.array([-1 if m else lookup[v] for v, m in zip(values, na, strict=True)])
            cols[col["name"]] = pd.Categorical.from_codes(
                codes, categories=levels, ordered=kind == "ordered")
        elif kind == "logical":
            cols[col["name"]] = pd.array([None if m else v == "TRUE"
                                          for v, m in zip(values, na, strict=True)],
                                         dtype="boolean" if na.any() else bool)
        elif kind == "integer" and not na.any():
            cols[col["name"]] = values.astype(np.int64).to_numpy()
        else:
            cols[col["name"]] = pd.to_numeric(values.where(~na, None), errors="raise").astype(float)
    df = pd.DataFrame(cols)
    df.index = pd.RangeIndex(1, len(df) + 1)  # R's row names "1".."n"
    return df


def load(name: str) -> pd.DataFrame:
    """Load a data set by its R name (``"sleepstudy"``); a fresh copy every call.

    Factors are pandas Categoricals with R's levels in R's order; the index is R's row names
    (1..n), so rows dropped for NA are reported with the numbers R would show.
    """
    df = _load_cached(name).copy()
    df.attrs["name"] = name  # shown on the Data: line of printed fits
    return df
