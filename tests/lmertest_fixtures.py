"""Shared helpers for the lmerTest / pbkrtest tests: the R fixtures
(tools/R/make_fixtures_lmertest.R) and each model fitted once."""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fit_accuracy import at_point, differing_tokens
from scipy import stats

import lmeformula as lmf

FIXTURES = Path(__file__).parent / "fixtures" / "lmertest.json"
REF: dict[str, Any] = json.loads(FIXTURES.read_text())
MODELS: dict[str, Any] = REF["models"]
REML_MODELS = [name for name, spec in MODELS.items() if spec["REML"]]
ML_MODELS = [name for name, spec in MODELS.items() if not spec["REML"]]

# the tolerances: estimates and standard errors; df, statistics and p-values
RTOL_EST = 1e-4
RTOL_DF = 1e-3
RTOL = {"Estimate": RTOL_EST, "Std. Error": RTOL_EST, "lower": RTOL_EST, "upper": RTOL_EST,
        "df": RTOL_DF, "t value": RTOL_DF, "Pr(>|t|)": RTOL_DF, "Sum Sq": RTOL_DF,
        "Mean Sq": RTOL_DF, "NumDF": 0.0, "DenDF": RTOL_DF, "F value": RTOL_DF,
        "Pr(>F)": RTOL_DF, "npar": 0.0, "logLik": 1e-6, "AIC": 1e-6, "LRT": RTOL_DF,
        "Df": 0.0, "Pr(>Chisq)": RTOL_DF}


def as_list(x: Any) -> list[Any]:
    """jsonlite writes vectors of length one as scalars."""
    return x if isinstance(x, list) else [x]


def ref_table(t: dict[str, Any]) -> pd.DataFrame:
    """An R data frame written by the fixture script."""
    cols = as_list(t["colnames"])
    data = {c: [np.nan if v is None else v for v in as_list(t["columns"][c])] for c in cols}
    index = as_list(t["rownames"]) if t.get("rownames") is not None else None
    return pd.DataFrame(data, index=index)


def ref_matrix(t: dict[str, Any]) -> np.ndarray:
    return np.atleast_2d(np.array([as_list(r) for r in as_list(t["values"])], dtype=float))


# A p-value's statistic and degrees of freedom (the columns of the same table it is computed
# from), and its log as a function of them
P_VALUES: dict[str, tuple[str, ...]] = {"Pr(>|t|)": ("t value", "df"),
                                        "Pr(>F)": ("F value", "NumDF", "DenDF"),
                                        "Pr(>Chisq)": ("LRT", "Df")}


def _log_p(col: str, args: np.ndarray) -> np.ndarray:
    if col == "Pr(>|t|)":
        return np.log(2.0) + stats.t.logsf(np.abs(args[0]), args[1])
    if col == "Pr(>F)":
        return stats.f.logsf(args[0], args[1], args[2])
    return stats.chi2.logsf(args[0], args[1])


def p_value_rtol(col: str, ours: pd.DataFrame, ref: pd.DataFrame) -> np.ndarray:
    """The relative tolerance of each p-value of ``col``: the issue's (RTOL_DF) plus the
    change of p that the differences of its statistic and degrees of freedom from R's
    (each asserted at its own tolerance) make, to first order: Σ |∂ log p / ∂ log x| ·
    |x_ours / x_R - 1|. A p-value is a steep function of them: ∂ log p / ∂ log |t| is
    -(df + 1) t² / (df + t²), about -41 at carrots' t = 56 and df = 40, where a fit whose t
    agrees with R's to 5e-6 and df to 2e-5 (the optimizer's precision) gives p 1.4e-3 apart
    (1.3e-39); about -1 for p near 0.3, where it adds little to RTOL_DF."""
    names = P_VALUES[col]
    x_ref = np.array([ref[c].to_numpy(dtype=float) for c in names])
    x_ours = np.array([ours[c].to_numpy(dtype=float) for c in names])
    shift = np.zeros(x_ref.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(len(names)):
            step = np.zeros_like(x_ref)
            step[i] = 1e-6 * x_ref[i]
            elasticity = (_log_p(col, x_ref + step) - _log_p(col, x_ref - step)) / 2e-6
            shift += np.abs(elasticity * (x_ours[i] / x_ref[i] - 1))
    return RTOL[col] + np.nan_to_num(shift)


def assert_table(ours: pd.DataFrame, ref: pd.DataFrame, index: bool = True) -> None:
    """Every column of R's table, at the issue's tolerances (plus an absolute tolerance of
    1e-7 of the column's largest value, for entries that are zero up to rounding); p-values
    at the tolerance their statistic's and degrees of freedom's accuracy gives them
    (:func:`p_value_rtol`)."""
    assert len(ours) == len(ref), (list(ours.index), list(ref.index))
    if index:
        assert [str(i) for i in ours.index] == [str(i) for i in ref.index]
    for col in ref.columns:
        a = ours[col].to_numpy(dtype=float)
        b = ref[col].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), (col, a, b)
        ok = ~np.isnan(b)
        if not ok.any():
            continue
        scale = float(np.max(np.abs(b[ok])))
        rtol = RTOL[col]
        if col in P_VALUES and all(c in ref.columns for c in P_VALUES[col]):
            rtol = p_value_rtol(col, ours, ref)[ok]
        bound = rtol * np.abs(b[ok]) + 1e-7 * scale
        bad = np.abs(a[ok] - b[ok]) > bound
        assert not bad.any(), (col, a[ok][bad], b[ok][bad], bound[bad])


def dataset(name: str) -> pd.DataFrame:
    if name == "cake_missing":
        cake = lmf.datasets.load("cake")
        rows = np.array(REF["cake_missing_rows"]) - 1
        df = cake.iloc[rows].reset_index(drop=True)
        df.index = pd.RangeIndex(1, len(df) + 1)
        df.attrs["name"] = "cake_missing"
        return df
    return lmf.datasets.load(name)


@cache
def fit_of(name: str) -> lmf.LmerMod:
    """The fixture's model as lmer fits it, once per test session."""
    spec = MODELS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank-deficient X (cake_missing), singular fits
        fit = lmf.lmer(spec["formula"], dataset(spec["data"]), REML=spec["REML"],
                       contrasts=spec.get("contrasts"))
    assert isinstance(fit, lmf.LmerMod)
    return fit


@cache
def model(name: str) -> lmf.LmerMod:
    """The fit at lme4's θ, where the inference is compared with lmerTest's and pbkrtest's:
    computed there, as R computed it at its own fit, it differs from R's only by the
    methods' numerics, whatever path the optimizer took (another BLAS kernel's last bits
    move the fit's θ within the optimizer's precision, and carrots' Kenward-Roger
    covariance by 5e-4 with it). The fit itself is compared in test_fit_matches_lme4."""
    return at_point(fit_of(name), as_list(MODELS[name]["theta"]))


def coefficient_block(text: str) -> list[str]:
    """The lines of a printed summary from "Fixed effects:" to the significance legend."""
    lines = text.splitlines()
    start = lines.index("Fixed effects:")
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("Signif. codes")),
               None)
    if end is None:  # no stars: the block ends at the first empty line
        end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
        return lines[start:end]
    return lines[start : end + 1]


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def assert_same_text(ours: list[str], theirs: list[str]) -> None:
    """The same lines, the same widths and words; numbers equal or within the issue's
    tolerance (1e-3 relative) or one unit of the last printed digit: a fit's optimum agrees
    with lme4's to the optimizer's tolerance, which can move the 7th significant digit."""
    for a, b, x, y in differing_tokens(ours, theirs):
        fx, fy = _number(x), _number(y)
        assert fx is not None and fy is not None, (a, b)
        decimals = len(y.split(".")[1]) if "." in y and "e" not in y else 0
        assert abs(fx - fy) <= max(1e-3 * abs(fy), 1.01 * 10.0**-decimals), (a, b)
