"""A control keeps its own copy of the options' containers, and only of those.

The caller's dicts (control=, optCtrl=) are never changed by the package, and the caller's
later edits of them do not reach a control made from them; a value that can not be copied
(a lock, a generator, an open file, a callback bound to an object that refuses copying) is
kept as it is and does not make lmer or glmer fail.
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import lmeformula as lmf
from lmeformula.control import LmerControl, as_control, own_copy
from lmeformula.glmercontrol import GlmerControl, as_glmer_control


class _Uncopyable:
    """An object whose copies fail, as a callback's owner may."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Uncopyable:
        raise TypeError("this object can not be copied")

    def callback(self) -> None:
        """A bound method: deep-copying it copies (here: fails on) its object."""


def _gen() -> Iterator[int]:
    yield 1


def _uncopyables() -> dict[str, Any]:
    return {"lock": threading.Lock(), "gen": _gen(), "file": open(__file__),
            "callback": _Uncopyable().callback}


def test_uncopyable_values_really_are() -> None:
    # (the values below are ones copy.deepcopy refuses: else this file tests nothing)
    values = _uncopyables()
    try:
        for value in values.values():
            with pytest.raises(TypeError):
                copy.deepcopy(value)
    finally:
        values["file"].close()


@pytest.mark.parametrize("where", ["optCtrl", "nested"])
def test_lmer_takes_options_that_can_not_be_copied(where: str) -> None:
    values = _uncopyables()
    opt_ctrl: dict[str, Any] = dict(values) if where == "optCtrl" else {"extra": [values]}
    control = {"optimizer": "nloptwrap", "optCtrl": opt_ctrl}
    data = lmf.datasets.load("sleepstudy")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nloptwrap: "some options were not used"
            m = lmf.lmer("Reaction ~ Days + (Days | Subject)", data, control=control)
            plain = lmf.lmer("Reaction ~ Days + (Days | Subject)", data)
        assert np.array_equal(m.theta, plain.theta)
        assert "Control:" in str(m.summary())  # the printed call does not fail either
        ctrl = as_control(control)
        # kept as they are (the same objects), in the control and in its record of the call
        held = ctrl.optCtrl if where == "optCtrl" else ctrl.optCtrl["extra"][0]
        record = dict(ctrl.given or ())["optCtrl"]
        record = record if where == "optCtrl" else record["extra"][0]
        for name, value in values.items():
            assert held[name] is value and record[name] is value
        assert ctrl.optCtrl is not opt_ctrl
    finally:
        values["file"].close()


def test_glmer_takes_options_that_can_not_be_copied() -> None:
    values = _uncopyables()
    cbpp = lmf.datasets.load("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = lmf.glmer(formula, cbpp, "binomial",
                          control={"optimizer": "bobyqa", "optCtrl": dict(values)})
            plain = lmf.glmer(formula, cbpp, "binomial", control={"optimizer": "bobyqa"})
        assert np.array_equal(m.theta, plain.theta)
        assert "Control:" in str(m.summary())
        gctrl = as_glmer_control({"optCtrl": dict(values), "check.nlev.gtr.1": "ignore"})
        assert all(gctrl.optCtrl[k] is v for k, v in values.items())
        assert gctrl.checks.check_nlev_gtr_1 == "ignore"
    finally:
        values["file"].close()


def _nested() -> dict[str, Any]:
    return {"optimizer": "Nelder_Mead",
            "optCtrl": {"maxfun": 500, "xst": np.array([0.1, 0.1, 0.1]), "trace": [1, 2]},
            "check.conv.grad": {"action": "ignore", "tol": 1e-3}}


@pytest.mark.parametrize("make", ["lmer", "glmer"])
def test_the_package_s_edits_never_reach_the_callers_dict(make: str) -> None:
    given = _nested()
    snapshot = copy.deepcopy(given)
    ctrl: LmerControl | GlmerControl = (as_control(given) if make == "lmer"
                                        else as_glmer_control(given))
    # every container the control holds is its own: editing it leaves the caller's alone
    opt = ctrl.optCtrl
    assert isinstance(opt, dict)
    opt["maxfun"] = 1
    opt["trace"].append(3)
    opt["xst"][0] = 9.0
    record = dict(ctrl.given or ())
    record["optCtrl"]["maxfun"] = 2
    record["optCtrl"]["xst"][1] = 8.0
    record["check.conv.grad"]["tol"] = 1.0
    assert given.keys() == snapshot.keys()
    assert given["optCtrl"]["maxfun"] == 500 and given["optCtrl"]["trace"] == [1, 2]
    assert np.array_equal(given["optCtrl"]["xst"], snapshot["optCtrl"]["xst"])
    assert given["check.conv.grad"] == snapshot["check.conv.grad"]


def test_the_callers_later_edits_never_reach_the_control() -> None:
    given = _nested()
    ctrl = as_control(given)
    direct = LmerControl(optCtrl=given["optCtrl"])
    gdirect = GlmerControl(optCtrl=given["optCtrl"])
    given["optCtrl"]["maxfun"] = 7
    given["optCtrl"]["trace"].append(3)
    given["optCtrl"]["xst"][:] = 5.0
    given["check.conv.grad"]["tol"] = 9.0
    given["optimizer"] = "bobyqa"
    for c in (ctrl, direct, gdirect):
        assert c.optCtrl["maxfun"] == 500 and c.optCtrl["trace"] == [1, 2]
        assert np.array_equal(c.optCtrl["xst"], [0.1, 0.1, 0.1])
    record = dict(ctrl.given or ())
    assert record["optimizer"] == "Nelder_Mead"
    assert record["optCtrl"]["maxfun"] == 500
    assert record["check.conv.grad"] == {"action": "ignore", "tol": 1e-3}
    assert ctrl.check_conv_grad == ("ignore", 1e-3)


def test_a_fit_leaves_the_callers_dict_as_it_was() -> None:
    given = {"optimizer": "Nelder_Mead", "optCtrl": {"maxfun": 5000, "xst": [0.02] * 3}}
    snapshot = copy.deepcopy(given)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"),
                 control=given)
    assert given == snapshot


def test_own_copy_copies_containers_only() -> None:
    lock = threading.Lock()
    arr = np.arange(3.0)
    value = {"a": [arr, (lock, {1, 2})], "b": lock}
    out = own_copy(value)
    assert out is not value and out["a"] is not value["a"]
    assert out["a"][0] is not arr and np.array_equal(out["a"][0], arr)
    assert out["a"][1][0] is lock and out["b"] is lock
    assert out["a"][1][1] == {1, 2} and out["a"][1][1] is not value["a"][1][1]
