"""The call's arguments held once (ModelCall), and the typed records of a fit: devcomp and the
optimizer's convergence checks (issue 19, deliverable 2).

lme4's references: tests/fixtures/cases/*.json (devcomp of lmer fits), tests/fixtures/glmer/*.json
(devcomp of glmer fits) and tests/fixtures/call_conv.json (optinfo$conv and devcomp of a few fits,
tools/R/make_fixtures_call.R).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES, as_float_array, as_list, case_data, case_kwargs, load_case
from glmer_cases import SMALL, fixture
from glmer_cases import fit as glmer_fit

import lmeformula as lmf
import lmeformula.frame
import lmeformula.modular
from lmeformula.call import ModelCall
from lmeformula.control import LmerControl
from lmeformula.devcomp import DevComp, DevCompCmp, DevCompDims
from lmeformula.errors import ArgumentError, FormulaError
from lmeformula.lmer import update
from lmeformula.modelmatrix import XAttrs
from lmeformula.optimize import Derivs, Lme4Conv, OptResult

FORMULA = "Reaction ~ Days + (Days | Subject)"
CONV = {r["name"]: r for r in json.loads((FIXTURES / "call_conv.json").read_text())}


@pytest.fixture(scope="module")
def sleepstudy() -> pd.DataFrame:
    return lmf.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def m_sleep(sleepstudy: pd.DataFrame) -> lmf.LmerMod:
    return lmf.lmer(FORMULA, sleepstudy, data_name="sleepstudy")


def _count_calls(monkeypatch: pytest.MonkeyPatch) -> list[ModelCall]:
    """Every ModelCall constructed from now on (its __post_init__ runs once per object)."""
    built: list[ModelCall] = []
    original = ModelCall.__post_init__

    def counting(self: ModelCall) -> None:
        original(self)
        built.append(self)

    monkeypatch.setattr(ModelCall, "__post_init__", counting)
    return built


# -- ModelCall -----------------------------------------------------------------------------------
def test_model_call_is_frozen(m_sleep: lmf.LmerMod) -> None:
    call = m_sleep.call
    assert isinstance(call, ModelCall)
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.formula = "y ~ x + (1 | g)"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.weights = "w"  # type: ignore[misc]


def test_lmer_builds_the_call_once_and_every_stage_reads_it(
        sleepstudy: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    built = _count_calls(monkeypatch)
    framed: list[ModelCall] = []
    original_frame = lmeformula.frame.call_frame

    def recording_frame(call: ModelCall, lhs: Any, rhs: Any) -> Any:
        framed.append(call)
        return original_frame(call, lhs, rhs)

    monkeypatch.setattr(lmeformula.modular, "call_frame", recording_frame)
    w = np.linspace(0.5, 1.5, len(sleepstudy))
    m = lmf.lmer(FORMULA, sleepstudy, weights=w, REML=False, na_action="na.omit")
    assert len(built) == 1
    call = built[0]
    assert framed == [call]  # the model frame was built from that very object
    assert m.call is call and m.lformula.call is call
    assert call.data is sleepstudy  # a reference to the caller's data, not a copy
    assert call.weights is w and call.REML is False and call.na_action == "na.omit"
    assert m._data is sleepstudy
    np.testing.assert_array_equal(m.lformula.weights, w)  # what the frame took from the call
    assert not m.is_REML


def test_lformula_and_glformula_keep_their_call(sleepstudy: pd.DataFrame,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    built = _count_calls(monkeypatch)
    pf = lmf.lFormula(FORMULA, sleepstudy, REML=False, contrasts={})
    assert built == [pf.call]
    assert pf.call.formula == FORMULA and pf.call.REML is False and pf.REML is False
    assert pf.call.contrasts == {} and isinstance(pf.call.control, LmerControl)
    cbpp = lmf.datasets.load("cbpp")
    gf = lmf.glFormula("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                       family="binomial", control=lmf.GlmerControl())
    assert gf.call is built[-1] and len(built) == 2
    assert gf.call.family.family == "binomial" and gf.call.REML is False
    assert gf.call.control == lmf.GlmerControl().checks  # the checks' settings
    # the gaussian family with the identity link is lFormula's result, with its call
    gauss = lmf.glFormula(FORMULA, sleepstudy)
    assert type(gauss) is lmf.LFormula and gauss.call.family is None and gauss.call.REML


def test_glmer_model_shares_its_call(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _count_calls(monkeypatch)
    cbpp = lmf.datasets.load("cbpp")
    m = lmf.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                  family="binomial")
    assert len(built) == 1 and m.call is built[0] and m.call is m.lformula.call
    assert m.call.data is cbpp and m._data is cbpp and m.call.family is m.family


def test_formulaic_syntax_keeps_its_call(sleepstudy: pd.DataFrame) -> None:
    pf = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleepstudy, syntax="formulaic")
    assert pf.call.syntax == "formulaic" and pf.call["syntax"] == "formulaic"
    assert pf.call.data is sleepstudy and pf.call.formula == "Reaction ~ Days + (Days | Subject)"
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, syntax="formulaic")
    assert m.call is m.lformula.call and m.call.syntax == "formulaic"


def test_call_reads_as_the_dict_it_replaces(m_sleep: lmf.LmerMod) -> None:
    call = m_sleep.call
    assert call["formula"] == FORMULA
    assert call["weights"] is None and call.get("na_action") == "omit"
    assert call.get("no such argument", 3) == 3
    assert "subset" in call and "nope" not in call
    with pytest.raises(KeyError):
        call["nope"]
    as_dict = dict(call)
    assert list(as_dict) == ["formula", "data", "REML", "subset", "weights", "na_action",
                             "offset", "contrasts", "control", "syntax", "family"]
    assert as_dict["formula"] == FORMULA and as_dict["data"] is call.data
    assert len(call) == len(as_dict)


def test_call_checks_its_arguments() -> None:
    with pytest.raises(ArgumentError, match="REML"):
        ModelCall("y ~ x + (1 | g)", REML="yes")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="contrasts must be a dict"):
        ModelCall("y ~ x + (1 | g)", contrasts="contr.sum")  # type: ignore[arg-type]
    with pytest.raises(FormulaError, match="syntax must be 'R' or 'formulaic'"):
        ModelCall("y ~ x + (1 | g)", syntax="patsy")
    call = ModelCall("y ~ x + (1 | g)", REML=np.True_)  # type: ignore[arg-type]
    assert call.REML is True  # R's logicals become bool
    with pytest.raises(ArgumentError, match="unused argument"):
        call.replace(start=[1.0])
    again = call.replace(control={"optimizer": "bobyqa"})  # checked again: a dict of options
    assert isinstance(again.control, LmerControl) and again.control.optimizer == "bobyqa"
    assert call.control.optimizer == "nloptwrap"  # the original is unchanged


def test_update_round_trip(m_sleep: lmf.LmerMod, sleepstudy: pd.DataFrame) -> None:
    again = update(m_sleep)
    assert again.call is not m_sleep.call
    for name in m_sleep.call:
        assert again.call[name] is m_sleep.call[name] or again.call[name] == m_sleep.call[name]
    np.testing.assert_array_equal(again.theta, m_sleep.theta)
    assert str(again) == str(m_sleep)  # Formula: and Data: lines included
    assert "Formula: Reaction ~ Days + (Days | Subject)" in str(again)
    assert "   Data: sleepstudy" in str(again)

    ml = update(m_sleep, REML=False)
    assert ml.call.REML is False and not ml.is_REML
    direct = lmf.lmer(FORMULA, sleepstudy, REML=False)
    assert ml.deviance() == pytest.approx(direct.deviance(), rel=1e-12)

    smaller = update(m_sleep, ". ~ . - (Days | Subject) + (1 | Subject)")
    assert smaller.call.formula == "Reaction ~ Days + (1 | Subject)"
    assert smaller.call.data is m_sleep.call.data

    with_w = sleepstudy.assign(w=1.0 + sleepstudy["Days"].to_numpy() / 10)
    weighted = update(m_sleep, data=with_w, weights="w", control={"optimizer": "bobyqa"})
    assert weighted.call.weights == "w" and weighted.call.control.optimizer == "bobyqa"
    assert weighted.call.data is with_w and "Weights: w" in str(weighted)
    np.testing.assert_array_equal(weighted.lformula.weights, with_w["w"].to_numpy())

    half = sleepstudy.iloc[:90]
    on_half = update(m_sleep, data=half)
    assert on_half.call.data is half and on_half.n == 90
    started = update(m_sleep, start=np.asarray(m_sleep.theta))  # lmer's own arguments pass
    # from the optimum, BOBYQA stops within its tolerance of it
    assert started.REMLcrit() == pytest.approx(m_sleep.REMLcrit(), rel=1e-10)
    with pytest.raises(TypeError):
        update(m_sleep, family="binomial")  # not an lmer argument, as before


def test_glmer_update_keeps_the_call() -> None:
    m = glmer_fit("cbpp")  # the glmer fixtures' cached fit
    assert m.call.formula == "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    null = lmf.update(m, ". ~ . - period")
    assert null.call.formula == "cbind(incidence, size - incidence) ~ (1 | herd)"
    assert null.call.data is m.call.data and null.call.family.family == "binomial"
    assert null.nAGQ == m.nAGQ and null.data_name == m.data_name


# -- devcomp ---------------------------------------------------------------------------------
LMER_CASES = ["dyestuff", "dyestuff2", "penicillin", "pastes", "cake", "machines_slope_factor"]


@pytest.mark.parametrize("case_id", LMER_CASES)
def test_devcomp_is_typed_and_matches_lme4(case_id: str) -> None:
    case = load_case(case_id)
    ref = case["fit"]
    with warnings.catch_warnings():  # evaluated at lme4's θ: the pieces there, not the optimizer's
        warnings.simplefilter("ignore")
        pf = lmf.lFormula(case["formula"], case_data(case), **case_kwargs(case))
        devfun = lmf.mkLmerDevfun(pf)
        theta = as_float_array(ref["theta"])
        m = lmf.mkMerMod(devfun, OptResult(theta, devfun(theta), 0, "", 1), pf)
    dc = lmf.getME(m, "devcomp")
    assert isinstance(dc, DevComp) and isinstance(dc.cmp, DevCompCmp)
    assert isinstance(dc.dims, DevCompDims)
    # lme4's names, in lme4's order; dims exactly, compared as the dict lme4 gives
    assert list(dc) == ["cmp", "dims"]
    assert list(dc["cmp"]) == list(ref["devcomp_cmp"])
    assert list(dc["dims"]) == list(ref["devcomp_dims"])
    assert dc["dims"] == ref["devcomp_dims"] and ref["devcomp_dims"] == dc.dims
    assert dc.to_dict()["dims"] == ref["devcomp_dims"]
    for name, value in ref["devcomp_cmp"].items():
        ours = dc["cmp"][name]
        assert ours is getattr(dc.cmp, name)
        if value is None:  # R's NA
            assert math.isnan(ours), name
        elif name == "ldRX2" and m.p == 0:
            assert ours == 0.0  # lme4's is uninitialised memory without fixed effects
        else:
            assert ours == pytest.approx(value, rel=1e-8, abs=1e-10), name
    assert m.sigma == (dc.cmp.sigmaREML if m.is_REML else dc.cmp.sigmaML)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dc.cmp.pwrss = 0.0  # type: ignore[misc]
    with pytest.raises(KeyError):
        dc["cmp"]["tolPwrss"]  # an lmerMod's cmp has no tolPwrss (a glmerMod's has)


@pytest.mark.parametrize("name", ["cbpp", "poisson_offset", "gamma_log", "binomial_slope"])
def test_glmer_devcomp_matches_lme4(name: str) -> None:
    assert name in SMALL
    ref = fixture(name)["devcomp"]
    m = glmer_fit(name, at_lme4=True)  # evaluated at lme4's optimum: PIRLS there
    dc = lmf.getME(m, "devcomp")
    assert isinstance(dc, DevComp)
    assert list(dc["cmp"]) == list(ref)  # tolPwrss included, in lme4's order
    assert list(dc["dims"]) == ["N", "n", "p", "nmp", "q", "nth", "nAGQ", "compDev", "useSc",
                                "reTrms", "spFe", "REML", "GLMM", "NLMM"]
    assert dc.dims.GLMM == 1 and dc.dims.nAGQ == m.nAGQ and dc.dims.useSc == int(m.use_scale)
    for key, value in ref.items():
        if value is None:
            assert math.isnan(dc["cmp"][key]), key
        else:
            assert dc["cmp"][key] == pytest.approx(value, rel=1e-6, abs=1e-8), key


# -- the optimizer's record ------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONV))
def test_convergence_record_matches_lme4(name: str) -> None:
    ref = CONV[name]
    spec = ref["call"]
    data = lmf.datasets.load(spec["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.lmer(spec["formula"], data, REML=spec.get("REML", True),
                     control=spec.get("control"))
    opt = m.optinfo
    assert isinstance(opt.lme4, Lme4Conv)
    assert opt.conv == ref["conv_opt"]
    assert opt.lme4.messages == tuple(as_list(ref["lme4_messages"]))
    assert opt.lme4.code == tuple(as_list(ref["lme4_code"]))
    assert opt.lme4_messages == list(opt.lme4.messages)  # the read-only view printing uses
    dc = m.devcomp
    assert dc["dims"] == ref["devcomp_dims"]
    # lme4's point: its optimum, or (maxeval = 5) the same five BOBYQA steps from the same start
    for key, value in ref["devcomp_cmp"].items():
        if value is not None:
            assert dc["cmp"][key] == pytest.approx(value, rel=1e-6), key
    with pytest.raises(dataclasses.FrozenInstanceError):
        opt.lme4.messages = ()  # type: ignore[misc]


# -- the attributes of X -----------------------------------------------------------------------
@pytest.mark.parametrize("case_id", ["sim_rankdef", "sim_fixed_inter_only", "cake"])
def test_x_attrs_are_typed_and_read_as_lme4s(case_id: str) -> None:
    case = load_case(case_id)
    ref = case["lformula"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = lmf.lFormula(case["formula"], case_data(case), **case_kwargs(case))
    attrs = pf.X_attrs
    assert isinstance(attrs, XAttrs)
    assert attrs.assign == as_list(ref["X_assign"]) and attrs["assign"] == attrs.assign
    dropped = ref["X_col_dropped"]
    if dropped:
        assert attrs.col_dropped == dropped and attrs["col.dropped"] == dropped
        assert attrs.msgRankdrop and attrs["msgRankdrop"] == attrs.msgRankdrop
        assert list(attrs) == ["assign", "contrasts", "msgScaleX", "msgRankdrop", "col.dropped"]
    else:  # no entries, as lme4 sets no attributes then
        assert attrs.col_dropped is None and attrs.msgRankdrop is None
        assert "col.dropped" not in attrs and attrs.get("msgRankdrop") is None
        assert list(attrs) == ["assign", "contrasts", "msgScaleX"]
    assert dict(attrs) == attrs.to_dict() and attrs == attrs.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        attrs.assign = []  # type: ignore[misc]


def test_derivs_are_typed(m_sleep: lmf.LmerMod) -> None:
    derivs = m_sleep.optinfo.derivs
    assert isinstance(derivs, Derivs)
    assert list(derivs) == ["gradient", "Hessian"]  # lme4's names
    assert derivs["Hessian"] is derivs.Hessian and derivs["gradient"] is derivs.gradient
    assert derivs.Hessian.shape == (3, 3) and derivs.gradient.shape == (3,)
    np.testing.assert_array_equal(derivs.Hessian, derivs.Hessian.T)


def test_refitml_says_so_in_its_call(m_sleep: lmf.LmerMod) -> None:
    ml = lmf.refitML(m_sleep)
    assert ml.call.REML is False and m_sleep.call.REML is True  # lme4: REML = FALSE in the call
    assert ml.call.data is m_sleep.call.data and ml.call.formula == m_sleep.call.formula
    again = update(ml)  # refits by ML, as R's update(refitML(m))
    assert not again.is_REML
    assert again.deviance() == pytest.approx(ml.deviance(), rel=1e-8)


def test_mkmermod_keeps_lformulas_call(sleepstudy: pd.DataFrame) -> None:
    pf = lmf.lFormula(FORMULA, sleepstudy)
    devfun = lmf.mkLmerDevfun(pf)
    m = lmf.mkMerMod(devfun, lmf.optimizeLmer(devfun), pf, "sleepstudy")
    assert m.call is pf.call and m._data is sleepstudy  # as R keeps the call: update() works
    again = update(m, REML=False)
    assert not again.is_REML and again.call.data is sleepstudy
    no_data = lmf.mkMerMod(devfun, m.optinfo, dataclasses.replace(pf, call=pf.call.replace(
        data=None)))
    with pytest.raises(ArgumentError, match="update\\(\\) needs data="):
        update(no_data)


@pytest.mark.slow
def test_influence_refits_in_the_calls_syntax(sleepstudy: pd.DataFrame) -> None:
    # the deletion refits re-run the call: a formulaic formula stays formulaic
    from lmeformula import diagnostics as dg

    py = lmf.lmer("Reaction ~ np.log(Days + 1) + (1 | Subject)", sleepstudy, syntax="formulaic")
    r = lmf.lmer("Reaction ~ log(Days + 1) + (1 | Subject)", sleepstudy)
    got = dg.influence(py, group="Subject").fixed_effects_deleted
    want = dg.influence(r, group="Subject").fixed_effects_deleted
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-8)
