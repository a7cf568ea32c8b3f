"""lmerTest's coefficient tables, anova of types I-III, contest and summaries, against R
(lmerTest 3.1-3, pbkrtest 0.5.2; fixtures from tools/R/make_fixtures_lmertest.R)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fit_accuracy import accuracy, assert_same_optimum, assert_within
from lmertest_fixtures import (
    MODELS,
    REML_MODELS,
    as_list,
    assert_same_text,
    assert_table,
    coefficient_block,
    fit_of,
    model,
    ref_matrix,
    ref_table,
)

import lmeformula as lmf
from lmeformula.anovatable import AnovaTable
from lmeformula.ddf import MissingCellsWarning, varpar_info

ALL = list(MODELS)


@pytest.mark.parametrize("name", ALL)
def test_fit_matches_lme4(name: str) -> None:
    # the inference below is computed at lme4's θ (model()); the fit itself stops at lme4's
    # optimum to the optimizer's precision (tests/fit_accuracy.py), β to what that allows
    spec = MODELS[name]
    m, theta, beta = fit_of(name), as_list(spec["theta"]), list(spec["fixef"].values())
    optimum = assert_same_optimum(m, theta, None)
    acc = accuracy(m, theta, optimum, lambda mm: mm.fixef.to_numpy())
    assert_within(m.fixef.to_numpy(), beta, rtol=1e-6, atol=1e-9 + acc)
    np.testing.assert_allclose(model(name).fixef.to_numpy(), beta, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_satterthwaite_internals(name: str) -> None:
    """lmerTest's vcov_varpar (2 H⁻¹ of the deviance in (θ, σ)) and the Jacobian of vcov(β)."""
    spec = MODELS[name]
    info = varpar_info(model(name))
    ref = ref_matrix(spec["vcov_varpar"])
    scale = np.abs(ref).max()
    np.testing.assert_allclose(info.vcov_varpar, ref, rtol=1e-3, atol=1e-4 * scale)
    jac = np.array(spec["jac"], dtype=float).reshape(info.jacobian.shape)
    np.testing.assert_allclose(info.jacobian, jac, rtol=1e-3, atol=1e-4 * np.abs(jac).max())


@pytest.mark.parametrize("name", ALL)
def test_coef_table_satterthwaite(name: str) -> None:
    tab = lmf.coef_table(model(name))
    assert list(tab.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    assert_table(tab, ref_table(MODELS[name]["coef_satterthwaite"]))


@pytest.mark.parametrize("name", REML_MODELS)
def test_coef_table_kenward_roger(name: str) -> None:
    assert_table(lmf.coef_table(model(name), ddf="Kenward-Roger"),
                 ref_table(MODELS[name]["coef_kr"]))


@pytest.mark.parametrize("name", ALL)
def test_coef_table_lme4(name: str) -> None:
    tab = lmf.coef_table(model(name), ddf="lme4")
    assert list(tab.columns) == ["Estimate", "Std. Error", "t value"]
    assert_table(tab, ref_table(MODELS[name]["coef_lme4"]))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("type_", [1, 2, 3])
def test_anova_satterthwaite(name: str, type_: int) -> None:
    ref = MODELS[name][f"anova{type_}_satterthwaite"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingCellsWarning)
        tab = lmf.anova(model(name), type=type_, ddf="Satterthwaite")
    assert isinstance(tab, pd.DataFrame)
    assert list(tab.columns) == ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    assert_table(tab, ref_table(ref))
    # the hypothesis matrices themselves, term by term
    for term, L in ref["hypotheses"].items():
        ours = tab.attrs["hypotheses"][term]
        theirs = ref_matrix(L) if L["values"] else np.zeros((0, model(name).p))
        assert ours.shape == theirs.reshape(-1, model(name).p).shape, term
        np.testing.assert_allclose(ours, theirs.reshape(ours.shape), atol=1e-6, err_msg=term)


@pytest.mark.parametrize("name", REML_MODELS)
@pytest.mark.parametrize("type_", [1, 2, 3])
def test_anova_kenward_roger(name: str, type_: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingCellsWarning)
        tab = lmf.anova(model(name), type=type_, ddf="Kenward-Roger")
    assert_table(tab, ref_table(MODELS[name][f"anova{type_}_kr"]))


# How far a value of these tables, computed at lme4's θ, is determined: the Satterthwaite
# degrees of freedom come from numerical second derivatives (numDeriv's Richardson
# extrapolation in lmerTest, central differences here), which agree to about 1e-7 relative
METHOD_RTOL = 1e-6


def anova_prints(name: str) -> list[tuple[str, dict[str, Any]]]:
    """The printed anova tables of a fixture: its key and the arguments of ``anova``."""
    out: list[tuple[str, dict[str, Any]]] = [
        (f"anova{t}_satterthwaite", {"type": t}) for t in (1, 2, 3)]
    if MODELS[name]["REML"]:
        out.append(("anova3_kr", {"type": 3, "ddf": "Kenward-Roger"}))
    return out


def with_values(table: AnovaTable, values: np.ndarray) -> AnovaTable:
    """``table`` (its heading, rows and columns) holding other values."""
    return AnovaTable(pd.DataFrame(values, index=table.index, columns=table.columns),
                      table.heading, table.kind)


@pytest.mark.parametrize("name", ALL)
def test_anova_printed_as_r(name: str) -> None:
    m = model(name)
    for key, kw in anova_prints(name):
        ref = MODELS[name][key]
        theirs = ref_table(ref).to_numpy(dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingCellsWarning)
            ours = lmf.anova(m, **kw)
        # R's values printed here: R's text to the letter
        assert str(with_values(ours, theirs)) == ref["text"], key
        # ours: R's text to the letter, but for a value that lies within the methods'
        # accuracy of a rounding boundary (R's text changes when R's value moves by that
        # much): that one prints as ours, which must be within that accuracy of R's
        # (oats' 168.35, exact whatever θ, is R's 168.349999999999: 168.3 or 168.4)
        acc = METHOD_RTOL * np.abs(theirs)
        values = ours.to_numpy(dtype=float)
        shown = theirs.copy()
        for i, j in zip(*np.nonzero(~np.isnan(theirs)), strict=True):
            moved = [theirs.copy(), theirs.copy()]
            moved[0][i, j] -= acc[i, j]
            moved[1][i, j] += acc[i, j]
            if any(str(with_values(ours, v)) != ref["text"] for v in moved):
                assert abs(values[i, j] - theirs[i, j]) <= acc[i, j], \
                    (key, ours.index[i], ours.columns[j], values[i, j], theirs[i, j], acc[i, j])
                shown[i, j] = values[i, j]
        assert str(ours) == str(with_values(ours, shown)), key


def test_anova_defaults_and_lme4_table() -> None:
    m = model("cake")
    # type alone: Satterthwaite; ddf alone: type III; ddf="lme4": lme4's own table
    t3 = lmf.anova(m, type="III")
    assert t3.heading == ["Type III Analysis of Variance Table with Satterthwaite's method"]
    pd.testing.assert_frame_equal(pd.DataFrame(lmf.anova(m, ddf="Satterthwaite")),
                                  pd.DataFrame(t3))
    plain = lmf.anova(m)
    assert str(lmf.anova(m, ddf="lme4")) == str(plain) == MODELS["cake"]["anova_lme4"]
    assert isinstance(plain, pd.DataFrame)
    assert list(plain.columns) == ["npar", "Sum Sq", "Mean Sq", "F value"]
    # selections are plain DataFrames, printed by pandas
    assert type(plain[["F value"]]) is pd.DataFrame


def test_type3_does_not_depend_on_the_contrasts() -> None:
    treatment = lmf.anova(model("cake"), type=3)
    summed = lmf.anova(model("cake_sum"), type=3)
    np.testing.assert_allclose(summed.to_numpy(), treatment.to_numpy(), rtol=1e-5)


def test_empty_cell_reduces_numdf() -> None:
    m = model("cake_missing")
    with pytest.warns(MissingCellsWarning, match="Missing cells for: recipeC:temperature225"):
        tab = lmf.anova(m, type=3)
    assert tab.loc["recipe:temperature", "NumDF"] == 9  # 10 with every cell
    assert_table(tab, ref_table(MODELS["cake_missing"]["anova3_satterthwaite"]))


@pytest.mark.parametrize("name", ALL)
def test_contest(name: str) -> None:
    m = model(name)
    c = MODELS[name]["contest"]
    L2, Ld = ref_matrix(c["L2"]), ref_matrix(c["Ld"])
    rhs2 = np.resize([1.0, -1.0], L2.shape[0])
    assert_table(lmf.contest(m, L2), ref_table(c["joint_sat"]), index=False)
    rows = lmf.contest(m, L2, joint=False)
    assert list(rows.columns) == ["Estimate", "Std. Error", "df", "t value", "lower", "upper",
                                  "Pr(>|t|)"]
    assert_table(rows, ref_table(c["rows_sat"]), index=False)
    assert_table(lmf.contest(m, Ld, joint=False), ref_table(c["diff_sat"]), index=False)
    assert_table(lmf.contest(m, Ld, rhs=1, joint=False), ref_table(c["rhs_sat"]), index=False)
    assert_table(lmf.contest(m, L2, rhs=rhs2), ref_table(c["joint_rhs_sat"]), index=False)
    if MODELS[name]["REML"]:
        kr = "Kenward-Roger"
        assert_table(lmf.contest(m, L2, ddf=kr), ref_table(c["joint_kr"]), index=False)
        assert_table(lmf.contest(m, L2, joint=False, ddf=kr), ref_table(c["rows_kr"]),
                     index=False)
        assert_table(lmf.contest(m, Ld, rhs=1, joint=False, ddf=kr), ref_table(c["rhs_kr"]),
                     index=False)
        assert_table(lmf.contest(m, L2, rhs=rhs2, ddf=kr), ref_table(c["joint_rhs_kr"]),
                     index=False)


@pytest.mark.parametrize("name", ALL)
def test_summary_coefficient_block(name: str) -> None:
    m = model(name)
    spec = MODELS[name]
    text = str(m.summary(ddf="Satterthwaite"))
    theirs = spec["summary_satterthwaite"]
    assert_same_text(coefficient_block(text), coefficient_block(theirs))
    # lmerTest's title (wrapped as lme4's .prt.methTit wraps it)
    n_title = next(i for i, line in enumerate(theirs.splitlines()) if line.startswith("Formula"))
    assert text.splitlines()[:n_title] == theirs.splitlines()[:n_title]
    if spec["REML"]:
        kr = str(lmf.summary(m, ddf="Kenward-Roger"))
        assert_same_text(coefficient_block(kr), coefficient_block(spec["summary_kr"]))
        assert kr.splitlines()[0].endswith("t-tests use Kenward-Roger's method [")


@pytest.mark.parametrize("name", ALL)
def test_summary_whole_text(name: str) -> None:
    ours = str(model(name).summary(ddf="Satterthwaite"))
    theirs = MODELS[name]["summary_satterthwaite"]
    assert_same_text(ours.splitlines(), theirs.splitlines())
    if name in ("sleepstudy_reml", "sleepstudy_ml", "cake", "cake_sum", "cake_missing",
                "oats_ml"):
        # where the fits agree with lme4's to every printed digit, R's text to the letter
        assert ours == theirs
        if MODELS[name]["REML"]:
            assert str(model(name).summary(ddf="Kenward-Roger")) == MODELS[name]["summary_kr"]


def test_summary_default_is_lme4() -> None:
    m = model("sleepstudy_reml")
    assert str(m.summary()) == str(m.summary(ddf="lme4"))
    assert "t-tests use" not in str(m.summary())
    assert list(m.summary(ddf="Satterthwaite").coefficients.columns)[-1] == "Pr(>|t|)"


@pytest.mark.parametrize("name", ALL)
def test_vcov_kenward_roger(name: str) -> None:
    """pbkrtest's vcovAdj (an ML fit is refitted by REML first, as pbkrtest does)."""
    m = model(name)
    v = lmf.vcov(m, adjust="Kenward-Roger")
    assert list(v.index) == list(m.fixef.index)
    np.testing.assert_allclose(v.to_numpy(), ref_matrix(MODELS[name]["vcovAdj"]), rtol=1e-4,
                               atol=1e-9)
