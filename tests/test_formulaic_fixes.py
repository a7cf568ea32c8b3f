"""Regression tests for the reviewer's defects in the formulaic front end, any-frame input and
plots (issues 15 and 16 follow-up)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
from lmeformula.errors import LmeFormulaError


@pytest.fixture(scope="module")
def cake() -> pd.DataFrame:
    return lmf.datasets.load("cake")


@pytest.fixture(scope="module")
def sleepstudy() -> pd.DataFrame:
    return lmf.datasets.load("sleepstudy")


def _quiet_lmer(*args, **kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.lmer(*args, **kwargs)


# 1. a new fixed-effect (or bar left-side) factor level in predict is an error, as in R
NEW = pd.DataFrame(dict(recipe=["A", "D"], temp=[180, 190], replicate=["1", "2"]))


@pytest.mark.parametrize("formula, name", [
    ("angle ~ recipe + temp + (1|replicate)", "recipe"),
    ("angle ~ C(recipe, contr.sum) + temp + (1|replicate)", "C(recipe, contr.sum)"),
    ("angle ~ temp + (recipe|replicate)", "recipe"),
])
def test_predict_new_level_is_an_error(cake: pd.DataFrame, formula: str, name: str) -> None:
    m = _quiet_lmer(formula, cake, syntax="formulaic")
    assert np.isfinite(m.predict(NEW.iloc[:1])).all()
    with pytest.raises(LmeFormulaError, match=re.escape(f"factor {name} has new level D")):
        m.predict(NEW)


def test_predict_new_level_of_an_expression_is_an_error(cake: pd.DataFrame) -> None:
    m = _quiet_lmer("angle ~ {recipe.str.lower()} + temp + (1|replicate)", cake,
                    syntax="formulaic")
    with pytest.raises(LmeFormulaError, match="new factor levels"):
        m.predict(NEW)


def test_predict_missing_level_is_na_not_error(cake: pd.DataFrame) -> None:
    m = _quiet_lmer("angle ~ recipe + temp + (1|replicate)", cake, syntax="formulaic")
    nd = NEW.copy()
    nd.loc[1, "recipe"] = None
    p = m.predict(nd)
    assert np.isfinite(p.iloc[0]) and np.isnan(p.iloc[1])
