"""Loading the glmer fixtures (tests/fixtures/glmer/*.json, tools/R/make_fixtures_glmer.R)."""

from __future__ import annotations

import json
import warnings
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from cases import FIXTURES

import lmeformula as lmf

GLMER = FIXTURES / "glmer"
# the R script's name for each model's data (the Data: line)
DATA_NAMES = {
    "cbpp": "cb", "cbpp_probit": "cb", "cbpp_nagq0": "cb", "cbpp_nagq5": "cb",
    "cbpp_prop": "cb", "grouseticks": "grouseticks", "verbagg": "VerbAgg",
    "poisson_offset": "d_off", "gamma_log": "d_gam", "binomial_slope": "d_slope",
    "binomial_singular": "d_sing", "binomial_crossed": "d_cross",
}
SMALL = ["cbpp", "cbpp_probit", "cbpp_nagq0", "cbpp_nagq5", "cbpp_prop", "poisson_offset",
         "gamma_log", "binomial_slope", "binomial_singular", "binomial_crossed"]
LARGE = ["grouseticks", "verbagg"]


@cache
def fixture(name: str) -> dict[str, Any]:
    return json.loads((GLMER / f"{name}.json").read_text())  # type: ignore[no-any-return]


def as_array(value: Any) -> np.ndarray:
    # numpy reads jsonlite's null (R's NA) as NaN in a float array, nested lists included
    return np.array(value if isinstance(value, (list, tuple, np.ndarray, pd.Series)) else [value],
                    dtype=float)


def data_of(name: str) -> pd.DataFrame:
    fx = fixture(name)
    if fx.get("data") is not None:
        d = pd.DataFrame(fx["data"])
        for c in ("g", "A", "B"):
            if c in d:
                labels = d[c].astype(str)
                d[c] = pd.Categorical(labels, categories=sorted(set(labels), key=int))
        return d
    if name.startswith("cbpp"):
        d = lmf.datasets.load("cbpp")
        if name == "cbpp_prop":
            d = d.assign(prop=d["incidence"] / d["size"])
        return d
    return lmf.datasets.load({"grouseticks": "grouseticks", "verbagg": "VerbAgg"}[name])


def family_of(name: str) -> lmf.Family:
    args = fixture(name)["args"]
    fam = args["family"].replace(".", "_")
    return getattr(lmf, fam)(link=args["link"])  # type: ignore[no-any-return]


@cache
def fit(name: str, at_lme4: bool = False) -> lmf.GlmerMod:
    """The model fitted as lme4 fits it; ``at_lme4``: evaluated at lme4's optimum instead
    (no optimisation: PIRLS and the derivatives there)."""
    fx = fixture(name)
    args = fx["args"]
    kw: dict[str, Any] = {}
    if at_lme4:
        kw["control"] = {"optimizer": (None, None)}
        kw["start"] = {"theta": as_array(fx["theta"]), "fixef": as_array(fx["beta"])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.glmer(args["formula"], data_of(name), family=family_of(name),  # type: ignore[no-any-return]
                         nAGQ=args["nAGQ"], weights=args.get("weights"),
                         data_name=DATA_NAMES[name], **kw)
