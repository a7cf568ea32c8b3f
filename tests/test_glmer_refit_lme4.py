"""refit() of a glmerMod against lme4 1.1-31's refit.merMod (tools/R/make_fixtures_glmer_refit.R).

lme4 re-runs only the fit's last optimisation — Nelder-Mead over (θ, β) after a second stage,
bobyqa over θ for nAGQ = 0 — from the fitted (θ, β), after one PIRLS on the new response at the
fitted θ, with the optimizers' default settings (Nelder-Mead's initial steps 0.02), no boundary
check, and the derivatives when the fit has them."""

from __future__ import annotations

import copy
import json
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf

REF = json.loads((Path(__file__).parent / "fixtures" / "glmer_refit.json").read_text())
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@cache
def _model(name: str) -> lmf.GlmerMod:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (VerbAgg's gradient check warns, as in lme4)
        if name.startswith("cbpp"):
            nagq = 0 if "nagq0" in name else 5 if "nagq5" in name else 1
            return lmf.glmer(CBPP, lmf.datasets.load("cbpp"), "binomial", nAGQ=nagq)
        if name == "grouse_offset":
            gt = lmf.datasets.load("grouseticks").copy()
            gt["cHEIGHT"] = REF[name]["data"]["cHEIGHT"]
            gt["lh"] = REF[name]["data"]["lh"]
            return lmf.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", gt,
                             "poisson", offset="lh")
        assert name == "verbagg_new"
        return lmf.glmer("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                         lmf.datasets.load("VerbAgg"), "binomial")


def _refit(name: str) -> tuple[lmf.GlmerMod, lmf.GlmerMod]:
    m = _model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return m, lmf.refit(m, np.asarray(REF[name]["newresp"], float))


# cases where the refit follows lme4's Nelder-Mead step for step (the same evaluations);
# (estimate tolerance)
EXACT = {"cbpp_same": 1e-7, "cbpp_new": 1e-7, "cbpp_nagq5": 1e-7, "cbpp_nagq5_same": 1e-7}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_refit_follows_lme4_step_for_step(name: str) -> None:
    m, r = _refit(name)
    ref = REF[name]
    assert m.optinfo.feval == ref["fit"]["feval"]  # (the fit itself is lme4's)
    assert r.optinfo.optimizer == ref["refit"]["optimizer"] == "Nelder_Mead"
    assert r.optinfo.feval == ref["refit"]["feval"]
    np.testing.assert_allclose(r.theta, ref["refit"]["theta"], atol=EXACT[name])
    np.testing.assert_allclose(r.fixef, ref["refit"]["beta"], atol=EXACT[name])
    assert r.logLik().value == pytest.approx(ref["refit"]["logLik"], abs=1e-8)
    d = r.optinfo.derivs
    assert d is not None
    np.testing.assert_allclose(d.gradient, ref["refit"]["gradient"], atol=1e-5)
    np.testing.assert_allclose(d.Hessian, np.asarray(ref["refit"]["Hessian"]), rtol=1e-5,
                               atol=1e-5)


def test_refit_nagq0_runs_bobyqa_over_theta() -> None:
    # bobyqa over θ from the fitted θ with minqa's own rhobeg (0.2 |θ|): our BOBYQA
    # (nlopt's) is not minqa's, so the evaluations may differ by one or two; no derivatives
    # (an nAGQ = 0 fit has none)
    m, r = _refit("cbpp_nagq0")
    ref = REF["cbpp_nagq0"]
    assert r.optinfo.optimizer == ref["refit"]["optimizer"] == "bobyqa"
    assert abs(r.optinfo.feval - ref["refit"]["feval"]) <= 2
    np.testing.assert_allclose(r.theta, ref["refit"]["theta"], atol=1e-6)
    np.testing.assert_allclose(r.fixef, ref["refit"]["beta"], atol=1e-6)
    assert r.logLik().value == pytest.approx(ref["refit"]["logLik"], abs=1e-8)
    assert m.optinfo.derivs is None and r.optinfo.derivs is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["grouse_offset", "verbagg_new"])
def test_refit_long_runs_reach_lme4s_optimum(name: str) -> None:
    # Nelder-Mead is lme4's own here too, but these refits take 600 and 2,000 evaluations
    # on flat surfaces, where the fit's (θ, β) (lme4's to ~1e-7, after the same number of
    # evaluations) takes the simplex along a slightly different path: the same optimum to
    # the optimizer's tolerance, about the same number of evaluations. Started at lme4's
    # own fitted (θ, β), the refit is lme4's step for step.
    m, r = _refit(name)
    ref = REF[name]
    assert m.optinfo.feval == ref["fit"]["feval"]
    assert r.optinfo.feval == pytest.approx(ref["refit"]["feval"], rel=0.05)
    tol = 1e-6 if name == "grouse_offset" else 1e-4
    np.testing.assert_allclose(r.theta, ref["refit"]["theta"], atol=tol)
    np.testing.assert_allclose(r.fixef, ref["refit"]["beta"], atol=tol)
    assert r.logLik().value == pytest.approx(ref["refit"]["logLik"], abs=1e-6)
    assert r.optinfo.derivs is not None
    at_lme4 = copy.copy(m)  # (the fit with lme4's (θ, β); u only seeds step halving)
    at_lme4._theta = np.atleast_1d(np.asarray(ref["fit"]["theta"], float))
    at_lme4._beta = np.atleast_1d(np.asarray(ref["fit"]["beta"], float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r2 = lmf.refit(at_lme4, np.asarray(ref["newresp"], float))
    assert r2.optinfo.feval == ref["refit"]["feval"]
    np.testing.assert_allclose(r2.theta, ref["refit"]["theta"], atol=1e-7)
    np.testing.assert_allclose(r2.fixef, ref["refit"]["beta"], atol=1e-7)


def test_refit_keeps_the_response_data_and_leaves_the_fit_alone() -> None:
    m = _model("cbpp_same")
    before = (m.optinfo.par.copy(), m.logLik().value)
    y = np.asarray(REF["cbpp_new"]["newresp"], float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = lmf.refit(m, y)
    np.testing.assert_array_equal(np.asarray(r.lformula.y), y)
    np.testing.assert_array_equal(m.optinfo.par, before[0])
    assert m.logLik().value == before[1]
    # a second refit from the same fit is the same (the fit's state is not used up)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r2 = lmf.refit(m, y)
    np.testing.assert_array_equal(r2.optinfo.par, r.optinfo.par)
    assert r2.optinfo.feval == r.optinfo.feval


@cache
def _lbfgsb_cbpp() -> lmf.GlmerMod:
    return lmf.glmer(CBPP, lmf.datasets.load("cbpp"), "binomial",
                     control={"optimizer": "L-BFGS-B"})


@pytest.mark.parametrize("name", ["cbpp_same", "cbpp_new"])
def test_refit_of_an_lbfgsb_fit_runs_lbfgsb_from_the_fit(name: str) -> None:
    # this package's L-BFGS-B option: the refit runs that option's optimisation (the
    # analytic gradient) from the fitted (θ, β), and reaches lme4's refit optimum
    m = _lbfgsb_cbpp()
    assert m.optinfo.optimizer == "L-BFGS-B"
    y = np.asarray(REF[name]["newresp"], float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = lmf.refit(m, y)
        direct = lmf.glmer(CBPP, lmf.datasets.load("cbpp").assign(incidence=y[:, 0]),
                           "binomial", control={"optimizer": "L-BFGS-B"})
    assert r.optinfo.optimizer == "L-BFGS-B"
    ref = REF[name]["refit"]
    np.testing.assert_allclose(r.fixef, ref["beta"], atol=2e-3)
    np.testing.assert_allclose(r.theta, ref["theta"], atol=2e-3)
    assert r.logLik().value >= ref["logLik"] - 1e-5
    np.testing.assert_allclose(r.optinfo.par, direct.optinfo.par, atol=1e-4)
    assert isinstance(r.fixef, pd.Series)
