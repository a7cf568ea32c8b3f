"""lmerTest's printed ls_means / difflsmeans tables (print.ls_means), character for character
against R (tools/R/make_fixtures_lsmeans_print.R), and the table staying a DataFrame."""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fit_accuracy import at_point

import lmeformula as lmf
from lmeformula.anovatable import LsMeansTable

REF: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "lsmeans_print.json").read_text())
CASES: list[dict[str, Any]] = REF["cases"]


def _as_list(x: Any) -> list[Any]:
    """jsonlite writes vectors of length one as scalars."""
    return x if isinstance(x, list) else [x]


def _data(name: str) -> pd.DataFrame:
    if name == "cake_missing":
        cake = lmf.datasets.load("cake")
        df = cake.iloc[np.array(REF["cake_missing_rows"]) - 1].reset_index(drop=True)
        df.attrs["name"] = "cake_missing"
        return df
    return lmf.datasets.load(name)


@cache
def _model(name: str) -> lmf.LmerMod:
    """The fixture's model at lme4's θ: what is printed is computed there, so the optimizer's
    last digits (its precision, not the methods') cannot move a printed digit."""
    spec = REF["models"][name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cake_missing's rank-deficient X
        fit = lmf.lmer(spec["formula"], _data(spec["data"]), REML=spec["REML"])
    assert isinstance(fit, lmf.LmerMod)
    return at_point(fit, _as_list(spec["theta"]))


def _call(case: dict[str, Any]) -> pd.DataFrame:
    fun = lmf.ls_means if case["fun"] == "ls_means" else lmf.difflsmeans
    kwargs: dict[str, Any] = {"level": case.get("level", 0.95),
                              "ddf": case.get("ddf", "Satterthwaite")}
    if "which" in case:
        kwargs["which"] = case["which"]
    if case.get("pairwise"):
        kwargs["pairwise"] = True
    return fun(_model(case["model"]), **kwargs)


def _case_id(case: dict[str, Any]) -> str:
    args = [f"{k}={case[k]}" for k in ("which", "pairwise", "level", "ddf") if k in case]
    return f"{case['model']}-{case['fun']}({', '.join(args)})"


def _noise_rows(case: dict[str, Any]) -> list[str]:
    """The rows whose estimate is a difference of two equal means: zero but for round-off
    (R's 3.2e-14 for cake's recipeB:temperature195 - recipeC:temperature195, another
    round-off here). printCoefmat formats that number (and, for its range of magnitudes, the
    whole Estimate/Std. Error/lower/upper block in scientific notation), so its own token is
    noise in both programs: every other character is compared."""
    est = [np.nan if v is None else v for v in _as_list(case["estimate"])]
    names = _as_list(case["rownames"]) if case["rownames"] is not None else []
    return [n for n, e in zip(names, est, strict=True) if abs(e) < 1e-10]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_printed_as_lmertest(case: dict[str, Any]) -> None:
    tab = _call(case)
    ours = str(tab).split("\n")
    theirs = _as_list(case["text"])
    noise = _noise_rows(case)
    assert len(ours) == len(theirs), "\n".join(ours)
    for a, b in zip(ours, theirs, strict=True):
        if a == b:
            continue
        # only a round-off row's estimate may differ (in the first block of columns; its
        # later blocks are compared exactly above): the same width, every other token the
        # same, the estimate tiny in both
        row = next((n for n in noise if b.startswith(n + " ")), None)
        assert row is not None, (a, b)
        assert len(a) == len(b), (a, b)
        ta, tb = a[len(row):].split(), b[len(row):].split()
        assert ta[1:] == tb[1:], (a, b)
        assert abs(float(ta[0])) < 1e-10 and abs(float(tb[0])) < 1e-10, (a, b)
        assert float(tab.loc[row, "Estimate"]) == pytest.approx(0.0, abs=1e-10)


def test_noise_rows_are_where_expected() -> None:
    # the tokens masked above: the differences of equal cell means only (cake's recipe B
    # and C at 195 degrees have the same mean angle)
    masked = {_case_id(c): _noise_rows(c) for c in CASES if _noise_rows(c)}
    assert masked == {
        "cake-difflsmeans()":
            ["recipeB:temperature195 - recipeC:temperature195"],
        "cake_missing-difflsmeans(which=recipe:temperature)":
            ["recipeB:temperature195 - recipeC:temperature195"],
    }


def test_still_a_dataframe() -> None:
    m = _model("cake")
    tab = lmf.ls_means(m, which="recipe")
    assert isinstance(tab, LsMeansTable) and isinstance(tab, pd.DataFrame)
    assert list(tab.columns) == ["Estimate", "Std. Error", "df", "t value", "lower", "upper",
                                 "Pr(>|t|)"]
    assert list(tab.index) == ["recipeA", "recipeB", "recipeC"]
    assert tab.attrs["confidence_level"] == 0.95 and tab.attrs["ddf"] == "Satterthwaite"
    # selections and arithmetic are plain DataFrames, printed by pandas
    for derived in (tab.head(2), tab[["Estimate"]], tab * 2, tab.loc[["recipeA"]]):
        assert type(derived) is pd.DataFrame
        assert "Least Squares Means" not in str(derived)
    assert type(tab.table) is pd.DataFrame
    assert repr(tab) == str(tab)
    diff = lmf.difflsmeans(m, which="recipe")
    assert isinstance(diff, LsMeansTable)
    assert list(diff.index) == ["recipeA - recipeB", "recipeA - recipeC", "recipeB - recipeC"]


def test_attributes_decide_the_trailing_lines() -> None:
    # print.ls_means prints the confidence level and the method only when present
    tab = lmf.ls_means(_model("machines"))
    del tab.attrs["confidence_level"]
    lines = str(tab).split("\n")
    assert lines[-1] == "  Degrees of freedom method: Satterthwaite "
    assert not any("Confidence level" in x for x in lines)
    del tab.attrs["ddf"]
    assert str(tab).split("\n")[-1].startswith("Signif. codes:")


def test_html() -> None:
    tab = lmf.difflsmeans(_model("machines"))
    out = tab._repr_html_()
    assert "Least Squares Means table:" in out
    # an HTML table (not the text in <pre>), with the heading and trailing lines around it
    assert "<pre>" not in out and '<table class="lmeformula lsmeans">' in out
    assert out.index("Least Squares Means table:") < out.index("<table")
    assert '<th class="row">MachineA - MachineB</th>' in out and "<th>Pr(&gt;|t|)</th>" in out
    assert out.index("<div>Confidence level: 95%</div>") > out.index("</table>")
    assert "<div>Degrees of freedom method: Satterthwaite</div>" in out
    # a not-estimable mean: empty cells
    na = lmf.ls_means(_model("cake_missing"), which="recipe")._repr_html_()
    assert '<th class="row">recipeC</th><td></td>' in na
