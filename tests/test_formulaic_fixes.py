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


# 2. unused levels are dropped from the model frame, as lme4's model frame does
def _recipe_fixef(m: lmf.LmerMod) -> list[str]:
    return list(m.fixef.index)


def test_unused_levels_dropped_data(cake: pd.DataFrame) -> None:
    c3 = cake[cake.recipe != "A"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", lmf.RankDeficiencyWarning)
        m = _quiet_lmer("angle ~ recipe + (1|replicate)", c3, syntax="formulaic")
    r = _quiet_lmer("angle ~ recipe + (1|replicate)", c3)
    assert _recipe_fixef(m) == ["(Intercept)", "recipe[T.C]"]
    np.testing.assert_allclose(m.fixef.to_numpy(), r.fixef.to_numpy(), rtol=1e-6)
    m2 = _quiet_lmer("angle ~ 1 + (0 + recipe|replicate)", c3, syntax="formulaic")
    assert len(m2.theta) == 3


def test_unused_levels_dropped_subset_na_and_enum(cake: pd.DataFrame) -> None:
    import polars as pl

    ref = _quiet_lmer("angle ~ recipe + (1|replicate)", cake[cake.recipe != "A"],
                      syntax="formulaic").fixef
    sub = _quiet_lmer("angle ~ recipe + (1|replicate)", cake, subset='recipe != "A"',
                      syntax="formulaic").fixef
    pd.testing.assert_series_equal(sub, ref)
    na = cake.assign(angle=np.where(cake.recipe == "A", np.nan, cake.angle))
    pd.testing.assert_series_equal(
        _quiet_lmer("angle ~ recipe + (1|replicate)", na, syntax="formulaic").fixef, ref)
    c3 = cake[cake.recipe != "A"]
    enum = pl.from_pandas(c3.assign(recipe=c3.recipe.astype(str))).with_columns(
        pl.col("recipe").cast(pl.Enum(["A", "B", "C"])))
    pd.testing.assert_series_equal(
        _quiet_lmer("angle ~ recipe + (1|replicate)", enum, syntax="formulaic").fixef, ref)
    assert list(cake.recipe.cat.categories) == ["A", "B", "C"]  # caller's data untouched


# 3. decimals are numbers; 4. a polars Categorical's levels do not depend on the row order
@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_decimal_columns_are_numeric(sleepstudy: pd.DataFrame, syntax: str) -> None:
    import polars as pl

    d = pl.from_pandas(sleepstudy).with_columns(pl.col("Days").cast(pl.Decimal(10, 2)))
    for data in (d, d.to_arrow(), {"Reaction": d["Reaction"], "Days": d["Days"],
                                   "Subject": d["Subject"]}):
        m = _quiet_lmer("Reaction ~ Days + (Days|Subject)", data, syntax=syntax)
        assert m.fixef.iloc[1] == pytest.approx(10.467286, abs=1e-5)


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_polars_categorical_levels_sorted(cake: pd.DataFrame, syntax: str) -> None:
    import polars as pl

    d = cake.assign(recipe=cake.recipe.astype(str), replicate=cake.replicate.astype(str))
    reordered = d.iloc[::-1].reset_index(drop=True)  # first appearance: C, B, A
    fits = []
    for frame in (d, reordered):
        p = pl.from_pandas(frame).with_columns(pl.col("recipe").cast(pl.Categorical))
        assert list(lmf.dataframe.as_pandas(p).recipe.cat.categories) == ["A", "B", "C"]
        fits.append(_quiet_lmer("angle ~ recipe + (1|replicate)", p, syntax=syntax).fixef)
    pd.testing.assert_series_equal(fits[0], fits[1], rtol=1e-6)
    # an Enum's declared order is kept
    e = pl.from_pandas(reordered).with_columns(pl.col("recipe").cast(pl.Enum(["C", "B", "A"])))
    assert list(lmf.dataframe.as_pandas(e).recipe.cat.categories) == ["C", "B", "A"]


# 5. a backquoted grouping factor: flist / ranef named as the column, Ztlist as R deparses
@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_backquoted_grouping_factor(sleepstudy: pd.DataFrame, syntax: str) -> None:
    d = sleepstudy.rename(columns={"Subject": "Sub ject"})
    m = _quiet_lmer("Reaction ~ Days + (1|`Sub ject`)", d, syntax=syntax)
    re_ = m.lformula.reTrms
    assert list(re_.flist) == ["Sub ject"]
    assert list(re_.Ztlist) == ["1 | `Sub ject`"]
    assert m.ranef()["Sub ject"].shape == (18, 1)
    ref = _quiet_lmer("Reaction ~ Days + (1|Subject)", sleepstudy)
    np.testing.assert_allclose(m.theta, ref.theta, rtol=1e-6)


# 6. plots: shrinkage for (x||g) and (1|g), exact group lookup, package errors
@pytest.mark.parametrize("formula, var_days", [
    ("Reaction ~ Days + (Days||Subject)", True),
    ("Reaction ~ Days + (1|Subject)", False),
])
def test_shrinkage_uncorrelated_and_intercept_only(sleepstudy: pd.DataFrame, formula: str,
                                                   var_days: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmeformula import plots

    m = _quiet_lmer(formula, sleepstudy)
    ax = plots.shrinkage(m, sleepstudy, "Reaction ~ Days | Subject", "Subject")
    ellipse = next(line for line in ax.get_lines()
                   if line.get_label().startswith("random-effects covariance"))
    x, y = ellipse.get_data()
    vc = {n: t.cov[0, 0] for t in m.VarCorr.terms for n in t.names}
    assert (np.max(x) - np.min(x)) / 2 == pytest.approx(np.sqrt(vc["(Intercept)"]), rel=1e-3)
    half_height = (np.max(y) - np.min(y)) / 2
    if var_days:
        assert half_height == pytest.approx(np.sqrt(vc["Days"]), rel=1e-3)
    else:
        assert half_height == pytest.approx(0, abs=1e-9)
    plt.close("all")


def test_plot_group_lookup_is_exact(sleepstudy: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmeformula import plots

    d = sleepstudy.assign(g=sleepstudy.Subject, g2=sleepstudy.Subject.astype(str).str[-1])
    m = _quiet_lmer("Reaction ~ Days + (1|g2) + (Days|g)", d)
    cov = plots._group_covariance(m, "g", ["(Intercept)", "Days"])
    g_term = next(t for t in m.VarCorr.terms if t.group == "g")
    np.testing.assert_allclose(cov, g_term.cov)
    cov2 = plots._group_covariance(m, "g2", ["(Intercept)", "Days"])
    assert cov2[1, 1] == 0 and cov2[0, 0] > 0
    with pytest.raises(lmf.errors.RandomEffectsError, match="'Subj'"):
        plots.caterpillar(m, "Subj")
    with pytest.raises(lmf.errors.RandomEffectsError, match="'Subj'"):
        plots.shrinkage(m, d, "Reaction ~ Days | g", "Subj")
    with pytest.raises(lmf.errors.ArgumentError, match="labels"):
        plots.image(np.eye(3), row_labels=["a"])
    with pytest.raises(lmf.errors.ArgumentError, match="blocks"):
        plots.image(np.eye(3), col_blocks=[("a", 2)])
    plt.close("all")


# 7. '%' inside a Python expression is Python's modulo; R's %op% outside is refused
def test_percent_inside_python_braces(sleepstudy: pd.DataFrame) -> None:
    m = _quiet_lmer("Reaction ~ {Days%2+Days%3} + (1|Subject)", sleepstudy, syntax="formulaic")
    assert m.fixef.index[1] == "Days % 2 + Days % 3"
    d = sleepstudy.assign(v=sleepstudy.Days % 2 + sleepstudy.Days % 3)
    ref = _quiet_lmer("Reaction ~ v + (1|Subject)", d)
    assert m.fixef.iloc[1] == pytest.approx(ref.fixef.iloc[1], rel=1e-8)
    for f in ("Reaction ~ Days %in% Subject + (1|Subject)",
              "Reaction ~ Days%in%Subject + (1|Subject)", "Reaction ~ Days %/% 2 + (1|Subject)"):
        with pytest.raises(lmf.errors.FormulaError, match="%in%"):
            lmf.lmer(f, sleepstudy, syntax="formulaic")


# 8. plain error messages, '| |' is a syntax error, '.' is refused clearly (also in update)
@pytest.mark.parametrize("formula", [
    "Reaction ~ Days + (1|Subject) + (",
    "Reaction ~ Days ~ x + (1|Subject)",
    "Reaction ~ Days + (1|Subject) + a b",
])
def test_error_messages_have_no_colour_codes(sleepstudy: pd.DataFrame, formula: str) -> None:
    with pytest.raises(lmf.errors.FormulaError) as info:
        lmf.lmer(formula, sleepstudy, syntax="formulaic")
    assert "\x1b" not in str(info.value)


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_spaced_double_bar_is_a_syntax_error(sleepstudy: pd.DataFrame, syntax: str) -> None:
    with pytest.raises(lmf.errors.FormulaError, match="unexpected '\\|'"):
        lmf.lmer("Reaction ~ Days + (Days | | Subject)", sleepstudy, syntax=syntax)
    m = _quiet_lmer("Reaction ~ Days + (Days || Subject)", sleepstudy, syntax=syntax)
    assert len(m.theta) == 2


def test_dot_is_refused_in_formulaic_syntax(sleepstudy: pd.DataFrame) -> None:
    m = _quiet_lmer("Reaction ~ Days + (Days|Subject)", sleepstudy, syntax="formulaic")
    with pytest.raises(lmf.errors.FormulaError, match=r"'\.' is not supported"):
        lmf.update(m, ". ~ . - (Days|Subject) + (1|Subject)")
    with pytest.raises(lmf.errors.FormulaError, match=r"'\.' is not supported"):
        lmf.lmer("Reaction ~ . + (1|Subject)", sleepstudy, syntax="formulaic")
    m2 = lmf.update(m, "Reaction ~ Days + (1|Subject) + {np.log(.5 + Days)}")
    assert list(m2.fixef.index) == ["(Intercept)", "Days", "np.log(0.5 + Days)"]


# 9. a missing offset column in newdata is a package error naming it
@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_predict_missing_offset_column(sleepstudy: pd.DataFrame, syntax: str) -> None:
    d = sleepstudy.assign(o=1.0)
    m = _quiet_lmer("Reaction ~ Days + (1|Subject)", d, offset="o", syntax=syntax)
    base = _quiet_lmer("Reaction ~ Days + (1|Subject)", d, syntax=syntax)
    assert np.isfinite(m.predict(d.head(2), apply_offset_arg=True)).all()
    with pytest.raises(lmf.errors.VariableNotFoundError, match="'o'"):
        m.predict(d.drop(columns="o").head(2), apply_offset_arg=True)
    assert base.predict(d.drop(columns="o").head(2)).shape == (2,)
    # by default the offset= argument is left out on new data, as lme4 1.1-31 leaves it
    with pytest.warns(lmf.LmeFormulaWarning, match="not applied to newdata"):
        dropped = m.predict(d.drop(columns="o").head(2))
    np.testing.assert_allclose(dropped, m.predict(d.head(2), apply_offset_arg=True) - 1.0)


# 10. notebook 08 follows the notebook conventions and is listed
def test_notebook_08_conventions() -> None:
    import json
    from pathlib import Path

    here = Path(__file__).resolve().parent.parent / "notebooks"
    source = (here / "nb_08_formulaic_and_polars.py").read_text()
    assert "MIN_FIGURES = 1" in source and "from nbcommon import setup" in source
    assert "## Key points" in source and "## Exercises" in source and "pa.Table" in source
    assert "color=colour" in source  # a subject's curve in its points' colour
    readme = (here / "README.md").read_text()
    for name in ("07_glmer", "08_formulaic_and_polars", "09_checking_a_fit"):
        assert f"`{name}`" in readme
    nb = json.loads((here / "08_formulaic_and_polars.ipynb").read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1


# 11. caller-defined functions are not visible, and the message says so
def test_caller_functions_not_visible_message(sleepstudy: pd.DataFrame) -> None:
    with pytest.raises(lmf.errors.VariableNotFoundError,
                       match=r"object 'my_transform' not found: .*not the caller's own functions"):
        lmf.lmer("Reaction ~ my_transform(Days) + (1|Subject)", sleepstudy, syntax="formulaic")


def test_ordered_factor_poly_contrasts_written_out(cake: pd.DataFrame) -> None:
    c = cake.assign(r=pd.Categorical(cake.recipe.astype(str), ordered=True))
    f = _quiet_lmer("angle ~ C(r, contr.poly) + (1|replicate)", c, syntax="formulaic")
    r = _quiet_lmer("angle ~ r + (1|replicate)", c)
    np.testing.assert_allclose(f.fixef.to_numpy(), r.fixef.to_numpy(), rtol=1e-6)


def test_lmlist_error_has_no_colour_codes(sleepstudy: pd.DataFrame) -> None:
    with pytest.raises(lmf.errors.FormulaError) as info:
        lmf.lmList("Reaction ~ Days ~ x | Subject", sleepstudy, syntax="formulaic")
    assert "\x1b" not in str(info.value)
