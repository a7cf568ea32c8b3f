"""Bad input: lme4's messages, the package's own exception classes, the caller's data untouched."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES, case_data, load_case

import lmeformula as lmf

MESSAGES = json.loads((FIXTURES / "messages.json").read_text())


@pytest.fixture()
def sim() -> pd.DataFrame:
    return case_data(load_case("sim_weights"))


def expect_error(name: str, exc: type[Exception], call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc) as info:
        call()
    assert str(info.value) == MESSAGES[name]["error"]
    assert isinstance(info.value, ValueError | TypeError)


def test_no_random_effects(sim: pd.DataFrame) -> None:
    expect_error("no_bars", lmf.FormulaError, lambda: lmf.lFormula("y ~ x", sim))


def test_unknown_variables_are_named(sim: pd.DataFrame) -> None:
    expect_error("unknown_var", lmf.VariableNotFoundError,
                 lambda: lmf.lFormula("y ~ nosuch + (1 | g1)", sim))
    expect_error("unknown_group", lmf.VariableNotFoundError,
                 lambda: lmf.lFormula("y ~ x + (1 | nosuchg)", sim))


def test_one_level_grouping_factor(sim: pd.DataFrame) -> None:
    sim = sim.assign(g0=pd.Categorical(["only"] * len(sim)))
    expect_error("nlev_lt2", lmf.IdentifiabilityError, lambda: lmf.lFormula("y ~ x + (1 | g0)", sim))


def test_levels_not_fewer_than_observations(sim: pd.DataFrame) -> None:
    sim = sim.assign(id=np.arange(len(sim)))
    with pytest.raises(lmf.IdentifiabilityError) as info:
        lmf.lFormula("y ~ x + (1 | id)", sim)
    # lme4 1.1-31 appends "(problems: id)"
    assert str(info.value) == MESSAGES["nlev_ge_n"]["error"]


def test_observations_not_more_than_random_effects(sim: pd.DataFrame) -> None:
    expect_error("nobs_le_nre", lmf.IdentifiabilityError,
                 lambda: lmf.lFormula("y ~ x + (x + z | b)", sim.iloc[:30]))


def test_no_complete_cases(sim: pd.DataFrame) -> None:
    expect_error("zero_cases", lmf.ModelFrameError,
                 lambda: lmf.lFormula("y ~ x + (1 | g1)", sim.assign(x=np.nan)))


def test_rank_deficiency(sim: pd.DataFrame) -> None:
    expect_error("rank_stop", lmf.RankDeficiencyError,
                 lambda: lmf.lFormula("y ~ x + x2 + (1 | g1)", sim,
                                      control={"check.rankX": "stop.deficient"}))
    with pytest.warns(lmf.RankDeficiencyWarning) as rec:
        pf = lmf.lFormula("y ~ x + x2 + z + (1 | g1)", sim)
    message = MESSAGES["rank_drop"]["messages"].strip()
    # lme4's message, then the column that went
    assert str(rec[0].message) == f"{message} (x2)"
    assert list(pf.X.columns) == ["(Intercept)", "x", "z"]


def test_scale_warning(sim: pd.DataFrame) -> None:
    with pytest.warns(lmf.ScaleWarning) as rec:
        lmf.lFormula("y ~ x + I(z * 1e4) + (1 | g1)", sim)
    assert str(rec[0].message) == MESSAGES["scale_warn"]["warnings"]


def test_plus_in_grouping_factor(sim: pd.DataFrame) -> None:
    expect_error("plus_group", lmf.RandomEffectsError,
                 lambda: lmf.lFormula("y ~ x + (1 | a + b)", sim))


def test_check_actions_can_warn(sim: pd.DataFrame) -> None:
    sim = sim.assign(id=np.arange(len(sim)))
    with pytest.warns(lmf.IdentifiabilityWarning):
        pf = lmf.lFormula("y ~ x + (1 | id)", sim, control={"check.nobs.vs.nlev": "warning",
                                                            "check.nobs.vs.nRE": "warning"})
    assert pf.wmsgs == MESSAGES["nlev_ge_n_warn"]["warnings"]
    with pytest.warns(lmf.IdentifiabilityWarning, match="< 5 sampled levels"):
        lmf.lFormula("y ~ x + (1 | e)", sim, control={"check.nlev.gtreq.5": "warning"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lmf.lFormula("y ~ x + (1 | e)", sim)  # default: ignore


def test_one_sided_formula(sim: pd.DataFrame) -> None:
    with pytest.raises(lmf.FormulaError, match="one-sided"):
        lmf.lFormula("~ x + (1 | g1)", sim)
    pf = lmf.lFormula("~ x + (1 | g1)", sim, control={"check.formula.LHS": "ignore"})
    assert pf.y is None


@pytest.mark.parametrize("formula", ["y ~ x + (1 | )", "y ~ x + (1 | g1", "y ~ (x | g1) +",
                                     "y ~ x + (1 || )", "y ~ x + `g1"])
def test_malformed_formulas(sim: pd.DataFrame, formula: str) -> None:
    with pytest.raises(lmf.FormulaError):
        lmf.lFormula(formula, sim)


def test_bad_types(sim: pd.DataFrame) -> None:
    with pytest.raises(TypeError):
        lmf.lFormula("y ~ x + (1 | g1)", sim.to_dict())  # type: ignore[arg-type]
    with pytest.raises(lmf.FormulaError):
        lmf.lFormula(42, sim)  # type: ignore[arg-type]
    with pytest.raises(lmf.ModelFrameError, match="response must be numeric"):
        lmf.lFormula("f ~ x + (1 | g1)", sim)
    with pytest.raises(lmf.ModelFrameError, match="negative weights"):
        lmf.lFormula("y ~ x + (1 | g1)", sim, weights=-sim["w"])
    with pytest.raises(lmf.ModelFrameError, match="missing values in object"):
        lmf.lFormula("y ~ x + (1 | g1)", sim.assign(x=np.where(sim.x > 1, np.nan, sim.x)),
                     na_action="fail")
    with pytest.raises(lmf.LmeFormulaError, match="unknown lmerControl option"):
        lmf.lFormula("y ~ x + (1 | g1)", sim, control={"check.nosuch": "stop"})


def test_callers_data_is_never_modified(sim: pd.DataFrame) -> None:
    data = sim.assign(cc=sim["cc"].astype(object), gnum=sim["gnum"])
    data.loc[data.index[3], "x"] = np.nan
    before = data.copy(deep=True)
    dtypes = data.dtypes.copy()
    lmf.lFormula("log(y2) ~ poly(z, 2) + scale(w) + cc + (x | gnum) + (1 | a:b)", data,
                 weights="w", offset="off",
                 control={"check.nobs.vs.nRE": "ignore", "check.nobs.vs.nlev": "ignore"})
    pd.testing.assert_frame_equal(data, before)
    pd.testing.assert_series_equal(data.dtypes, dtypes)


def test_subset_expressions_as_in_r(sim: pd.DataFrame) -> None:
    pf = lmf.lFormula("y ~ x + (1 | g1)", sim, subset='g1 %in% c("G01", "G02", "G03") & x > -1')
    expected = sim[sim.g1.isin(["G01", "G02", "G03"]) & (sim.x > -1)]
    assert list(pf.fr.index) == list(expected.index)
    assert list(pf.reTrms.flist["g1"].categories) == ["G01", "G02", "G03"]
