"""Loading lme4 fixtures (tests/fixtures/cases/*.json, written by tools/R/make_fixtures.R)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

import lmeformula as lmf

FIXTURES = Path(__file__).parent / "fixtures"
CASE_IDS = sorted(p.stem for p in (FIXTURES / "cases").glob("*.json"))
# Cases whose data have more rows than this make a test "slow" (conftest.py marks them)
SLOW_ROWS = 20_000


def as_list(value: Any) -> list:
    """jsonlite writes length-1 vectors as scalars; undo that."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def as_float_array(value: Any, null: float = -np.inf) -> np.ndarray:
    """Numbers with R's -Inf/NaN written as null (-Inf in bounds, NaN elsewhere)."""
    return np.array([null if v is None else v for v in as_list(value)], dtype=float)


def fingerprint(values: Any) -> np.ndarray:
    """tools/R/make_fixtures.R's ``fingerprint``: a whole vector in three numbers (its sum, its
    sum weighted by 1-based position, and weighted by position modulo 9973), exact for integer
    vectors (computed in int64), for the fixtures too large to store whole."""
    v = np.asarray(values)
    k = np.arange(1, v.size + 1, dtype=np.int64)
    if v.dtype.kind in "iub":
        v = v.astype(np.int64)
        return np.array([v.sum(), (v * k).sum(), (v * (k % 9973)).sum()], dtype=np.int64)
    v = v.astype(float)
    return np.array([v.sum(), (v * k).sum(), (v * (k % 9973)).sum()])


@cache
def load_case(case_id: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "cases" / f"{case_id}.json").read_text())


def _case_rows(case_id: str) -> int:
    case = load_case(case_id)
    return int(case.get("lformula", {}).get("n") or case.get("n") or 0)


def case_data(case: dict[str, Any]) -> pd.DataFrame:
    """The data the case was run on, with R's column types and row names 1..n."""
    if "columns" not in case:
        return lmf.datasets.load(case["data"])
    cols: dict[str, Any] = {}
    for col in case["columns"]:
        values = as_list(col["values"])
        kind = col["type"]
        if kind in ("factor", "ordered"):
            cols[col["name"]] = pd.Categorical(values, categories=as_list(col["levels"]),
                                               ordered=kind == "ordered")
        elif kind == "character":
            cols[col["name"]] = np.array(values, dtype=object)
        elif kind == "logical":
            cols[col["name"]] = np.array(values, dtype=bool)
        else:
            cols[col["name"]] = np.array([np.nan if v is None else v for v in values], float)
    df = pd.DataFrame(cols)
    df.index = pd.RangeIndex(1, len(df) + 1)
    return df


CONTROLS = {
    None: None,
    "ignore_nRE": {"check.nobs.vs.nRE": "ignore"},
    "warn_nlev5": {"check.nlev.gtreq.5": "warning"},
    "ignore_nRE_nlev": {"check.nobs.vs.nRE": "ignore", "check.nobs.vs.nlev": "ignore"},
}


def case_kwargs(case: dict[str, Any]) -> dict[str, Any]:
    """lFormula/lmer keyword arguments equivalent to the R call of the case."""
    kwargs: dict[str, Any] = {}
    if case.get("weights"):
        kwargs["weights"] = case["weights"]
    if case.get("offset"):
        kwargs["offset"] = case["offset"]
    if case.get("na_action"):
        kwargs["na_action"] = case["na_action"].replace("na.", "")
    if case.get("subset"):
        kwargs["subset"] = case["subset"]
    if case.get("contrasts"):
        kwargs["contrasts"] = case["contrasts"]
    kwargs["control"] = CONTROLS[case.get("control")]
    return kwargs


def r_sparse(spec: dict[str, Any]) -> sp.csc_matrix:
    dim = as_list(spec["dim"])
    return sp.csc_matrix(
        (as_float_array(spec["x"]), np.array(as_list(spec["i"]), dtype=np.int64),
         np.array(as_list(spec["p"]), dtype=np.int64)), shape=tuple(dim))


SLOW_CASES = frozenset(c for c in CASE_IDS if _case_rows(c) > SLOW_ROWS)

# The fixture cases a test parametrised by ``case_id`` runs on in the quick loop
# (``pytest -m "not slow"``): one of each kind of model -- a correlated vector term
# (sleepstudy_slope), crossed scalar terms (penicillin), prior weights (sim_weights), and four
# model-matrix-only cases (poly * f, h/f/x nesting, a character grouping factor, a check that
# warns). Every other case is marked slow by conftest.py: CI runs all of them.
QUICK_CASES = frozenset({"sleepstudy_slope", "penicillin", "sim_weights", "mm_05", "mm_12",
                         "sim_chargroup", "sim_nlev5_warning"})


def dense_g_crossed(seed: int = 7, n: int = 3000) -> tuple[pd.DataFrame, np.random.Generator]:
    """A crossed design, ``y ~ x + (x | g1) + (1 | g2)`` with 40 x 25 levels over n rows,
    whose G is dense (the engine's BLAS downdate), and the generator, left where the data
    leave it, for anything else a test draws."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"g1": rng.integers(0, 40, n).astype(str),
                       "g2": rng.integers(0, 25, n).astype(str), "x": rng.normal(size=n)})
    df["y"] = 1 + 0.5 * df.x + rng.normal(size=n)
    return df, rng


def crossed_intercepts(seed: int, n: int, nsubj: int, nitem: int) -> pd.DataFrame:
    """Data for ``y ~ x + (1 | subj) + (1 | item)``: n rows, subjects and items drawn
    uniformly from nsubj and nitem levels (string codes), one intercept per level."""
    rng = np.random.default_rng(seed)
    subj = rng.integers(0, nsubj, n)
    item = rng.integers(0, nitem, n)
    x = rng.normal(size=n)
    y = (1 + 0.5 * x + rng.normal(size=nsubj)[subj] + rng.normal(size=nitem)[item]
         + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "subj": subj.astype(str), "item": item.astype(str)})
