"""The ``Control:`` line of printed models against lme4 1.1-31 (fixtures from
tools/R/make_fixtures_control_line.R): summary() shows the control expression of the call as
R deparses it (lme4's names, R's numbers, nested lists, lines broken as deparse() and
cat(fill = TRUE) break them), not for exactly ``lmerControl()``; print() never shows it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

import lmeformula as lmf
from lmeformula import datasets
from lmeformula.controlcall import control_call_lines, r_name, r_value
from lmeformula.formula.ast import cat_fill, deparse

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "control_line.json").read_text())
CASES = {c["id"]: c for c in FIXTURE["cases"]}


def _fit(case: dict[str, Any], control: Any) -> Any:
    data = datasets.load(case["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Nelder-Mead's convergence warning, as in lme4
        if case["fun"] == "lmer":
            return lmf.lmer(case["formula"], data, REML=case["REML"], control=control,
                            data_name=case["data"])
        return lmf.glmer(case["formula"], data, family="binomial", control=control,
                         data_name=case["data"])


def _call_block(text: str) -> list[str]:
    """The title and call lines: everything before the first empty line."""
    lines = text.split("\n")
    return lines[:lines.index("")] if "" in lines else lines


def _print_head(text: str) -> list[str]:
    """print()'s lines up to the criterion (REML) or the AIC table's header."""
    lines = text.split("\n")
    end = next(k for k, line in enumerate(lines)
               if line.startswith("REML criterion") or "AIC" in line)
    return lines[:end]


@pytest.fixture(scope="module")
def fits() -> dict[str, Any]:
    return {name: _fit(case, case["py"]) for name, case in CASES.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_summary_call_lines_match_lme4(fits: dict[str, Any], name: str) -> None:
    ours = _call_block(str(fits[name].summary()))
    assert ours == _call_block(CASES[name]["summary"])
    # lmerControl() exactly is not shown; every other control is, glmerControl() too
    shown = any(line.startswith("Control:") for line in ours)
    assert shown == (CASES[name]["r_control"] != "lmerControl()")


@pytest.mark.parametrize("name", list(CASES))
def test_print_has_no_control_line(fits: dict[str, Any], name: str) -> None:
    ours = _print_head(str(fits[name]))
    assert ours == _print_head(CASES[name]["print"])
    assert not any(line.startswith("Control:") for line in ours)


@pytest.mark.parametrize("item", FIXTURE["numbers"], ids=lambda i: i["deparse"])
def test_numbers_deparse_as_r(item: dict[str, str]) -> None:
    assert deparse(r_value(float(item["value"]))) == item["deparse"]


def test_python_ints_are_r_doubles() -> None:
    # R's literal 100000 is a double, deparsed 1e+05: a Python int the same
    assert deparse(r_value(100000)) == "1e+05"
    assert deparse(r_value(20000)) == "20000"


@pytest.mark.parametrize("item", FIXTURE["fill"], ids=lambda i: "-".join(
    str(len(x)) for x in i["items"]))
def test_cat_fill_as_r(item: dict[str, Any]) -> None:
    assert cat_fill(list(item["items"])) == item["text"]


def test_values_as_r_expressions() -> None:
    assert deparse(r_value(None)) == "NULL"
    assert deparse(r_value(True)) == "TRUE"
    assert deparse(r_value(("bobyqa", "Nelder_Mead"))) == 'c("bobyqa", "Nelder_Mead")'
    assert deparse(r_value({"a": [1, 2], "b": {"c": False}})) == \
        "list(a = c(1, 2), b = list(c = FALSE))"
    assert deparse(r_value('say "hi"')) == '"say \\"hi\\""'
    with pytest.raises(TypeError, match="object"):
        r_value(object())


def test_names_as_lme4_spells_them() -> None:
    assert r_name("check_nobs_vs_nlev") == "check.nobs.vs.nlev"
    assert r_name("check.rankX") == "check.rankX"
    assert r_name("restart_edge") == "restart_edge"  # lme4's own underscore
    assert r_name("optCtrl") == "optCtrl"


def test_control_objects_made_by_the_constructors() -> None:
    # lmerControl()/glmerControl() keep the options as given, in their order
    ctrl = lmf.lmerControl(**{"check.conv.grad": {"action": "warning", "tol": 1e-3}},
                           restart_edge=False)
    assert control_call_lines(ctrl) == \
        ["lmerControl(check.conv.grad = list(action = \"warning\", tol = 0.001), ",
         "    restart_edge = FALSE)"]
    case = CASES["glmer_long"]
    gctrl = lmf.glmerControl(**case["py"])
    assert _call_block(str(_fit(case, gctrl).summary())) == _call_block(case["summary"])


def test_control_objects_made_otherwise_show_their_non_defaults() -> None:
    # no options recorded: those that differ from the defaults, in the fields' order
    ctrl = lmf.LmerControl(optimizer="bobyqa", check_conv_grad=("warning", 1e-3),
                           check_conv_grad_relTol=0.1)
    assert control_call_lines(ctrl) == [
        'lmerControl(optimizer = "bobyqa", check.conv.grad = .makeCC("warning", ',
        "    tol = 0.001, relTol = 0.1))"]
    assert control_call_lines(lmf.LmerControl()) == ["lmerControl()"]
    g = lmf.GlmerControl(optimizer="bobyqa", tolPwrss=1e-8,
                         checks=lmf.LmerControl(check_nlev_gtr_1="ignore"))
    assert control_call_lines(g) == [
        'glmerControl(optimizer = "bobyqa", tolPwrss = 1e-08, check.nlev.gtr.1 = "ignore")']
    assert control_call_lines(lmf.GlmerControl(optimizer="L-BFGS-B")) == \
        ['glmerControl(optimizer = "L-BFGS-B")']
    m = _fit(CASES["lmer_empty"], lmf.LmerControl(optimizer="bobyqa"))
    assert 'Control: lmerControl(optimizer = "bobyqa")' in str(m.summary()).split("\n")
    m = _fit(CASES["lmer_empty"], lmf.LmerControl())
    assert "Control:" not in str(m.summary())


def test_no_control_no_line() -> None:
    for name in ("lmer_empty", "glmer_empty"):
        m = _fit(CASES[name], None)
        assert "Control:" not in str(m.summary())


def test_line_is_the_call_s_not_the_callers_dict_later(fits: dict[str, Any]) -> None:
    case = CASES["lmer_nelder_mead"]
    given = json.loads(json.dumps(case["py"]))
    m = _fit(case, given)
    given["optCtrl"]["maxfun"] = 5
    given["optimizer"] = "bobyqa"
    assert _call_block(str(m.summary())) == _call_block(case["summary"])


def test_update_keeps_the_call_s_control(fits: dict[str, Any]) -> None:
    # R's update() evaluates the call again: its control expression stays, a call without
    # one stays without
    for name in ("lmer_nelder_mead", "glmer_bobyqa", "glmer_empty"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m2 = lmf.update(fits[name], ". ~ .")
        assert _call_block(str(m2.summary())) == _call_block(CASES[name]["summary"])
    plain = _fit(CASES["glmer_empty"], None)
    assert "Control:" not in str(lmf.update(plain, ". ~ .").summary())


def test_an_option_r_cannot_show_does_not_fail_the_fit() -> None:
    # optCtrl's xst as a pandas Series: the optimizer takes it (np.asarray), R's deparser
    # here has no literal for it; the fit completes and shows the control as lmerControl(...)
    import pandas as pd

    data = datasets.load("sleepstudy")
    control = {"optimizer": "Nelder_Mead", "optCtrl": {"xst": pd.Series([0.02, 0.02, 0.02])}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.lmer("Reaction ~ Days + (Days | Subject)", data, control=control)
    assert "Control: lmerControl(...)" in str(m.summary()).split("\n")
    assert control_call_lines(lmf.lmerControl(optCtrl={"maxfun": 10**400})) == \
        ["lmerControl(...)"]


def test_a_control_changed_by_replace_shows_its_own_options() -> None:
    # dataclasses.replace copies the record of the options as given; the line must show
    # what the changed control holds (lmer's refits and influence() change controls so)
    import dataclasses

    from lmeformula.control import as_control
    from lmeformula.controlcall import control_call_lines
    from lmeformula.glmercontrol import as_glmer_control

    ctrl = as_control({"optimizer": "Nelder_Mead", "optCtrl": {"maxfun": 100000}})
    assert control_call_lines(ctrl) == [
        'lmerControl(optimizer = "Nelder_Mead", optCtrl = list(maxfun = 1e+05))']
    changed = dataclasses.replace(ctrl, optimizer="bobyqa")
    assert "Nelder_Mead" not in control_call_lines(changed)[0]
    assert 'optimizer = "bobyqa"' in control_call_lines(changed)[0]
    gctrl = dataclasses.replace(as_glmer_control({"optimizer": "bobyqa"}),
                                optimizer="Nelder_Mead")
    assert control_call_lines(gctrl) == ['glmerControl(optimizer = "Nelder_Mead")']
