"""allFit: every optimizer, lme4's summary table; minqa's and NLopt's refits against
lme4's allFit (fixtures from tools/R/make_fixtures_allfit.R)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES

import lmeformula as lmf
from lmeformula.allfit import ALLFIT_OPTIMIZERS, AllFit

REF = json.loads((FIXTURES / "allfit.json").read_text())


def _fit(formula: str, data_name: str, **kw: object) -> lmf.LmerMod:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.lmer(formula, lmf.datasets.load(data_name), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fm1() -> lmf.LmerMod:
    return _fit("Reaction ~ Days + (Days | Subject)", "sleepstudy")


@pytest.fixture(scope="module")
def pen() -> lmf.LmerMod:
    return _fit("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin")


@pytest.fixture(scope="module")
def all_fm1(fm1: lmf.LmerMod) -> AllFit:
    """allFit of fm1 with every optimizer (shared: the tests only read it)."""
    return lmf.allFit(fm1)


@pytest.mark.parametrize("key", ["fm1", "pen"])
def test_minqa_and_nlopt_refits_follow_lme4s_allfit(key: str, request: pytest.FixtureRequest) -> None:
    ref = REF[key]
    model = request.getfixturevalue(key)
    a = lmf.allFit(model, optimizers=ref["names"])
    s = a.summary()
    assert list(s.which_OK) == ref["names"] and all(s.which_OK.values())
    nlopt = [i for i, name in enumerate(ref["names"]) if name.startswith("nloptwrap.")]
    # NLopt: same algorithms, same settings, same start: the same path (criterion at θ to
    # ~1e-10), evaluation for evaluation
    np.testing.assert_allclose(s.theta.to_numpy()[nlopt], np.array(ref["theta"])[nlopt],
                               rtol=1e-6)
    np.testing.assert_allclose(s.fixef.to_numpy()[nlopt].ravel(),
                               np.array(ref["fixef"])[nlopt].ravel(), rtol=1e-9)
    np.testing.assert_allclose(s.llik.to_numpy(), ref["llik"], rtol=1e-10)
    np.testing.assert_array_equal(s.feval.to_numpy()[nlopt], np.array(ref["feval"])[nlopt])
    # minqa's bobyqa: the port follows minqa point for point given R's function values
    # (tests/test_bobyqa_minqa.py); our deviance's last bits move its last steps by a few
    # evaluations (fm1 97 against 98, Penicillin 38 against 35), so the optimum agrees at
    # the optimizer's precision along a flat direction (θ to ~2e-6, the criterion to 1e-10)
    (b,) = [i for i, name in enumerate(ref["names"]) if name == "bobyqa"]
    np.testing.assert_allclose(s.theta.to_numpy()[b], ref["theta"][b], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(s.fixef.to_numpy()[b], ref["fixef"][b], rtol=1e-6)
    assert abs(int(s.feval.to_numpy()[b]) - ref["feval"][b]) <= 5


def test_every_optimizer_reaches_the_same_optimum(fm1: lmf.LmerMod,
                                                  all_fm1: AllFit) -> None:
    s = all_fm1.summary()
    assert list(s.which_OK) == list(ALLFIT_OPTIMIZERS) and all(s.which_OK.values())
    assert all(m == [] for m in s.msgs.values())
    np.testing.assert_allclose(s.llik, fm1.logLik().value, rtol=1e-8)
    np.testing.assert_allclose(s.fixef, np.tile(fm1.fixef.to_numpy(), (len(all_fm1), 1)),
                               rtol=1e-6)
    np.testing.assert_allclose(s.theta, np.tile(fm1.theta.to_numpy(), (len(all_fm1), 1)),
                               rtol=2e-3, atol=1e-5)
    assert list(s.sdcor.columns) == ["Subject.(Intercept)", "Subject.Days",
                                     "Subject.(Intercept).Days", "sigma"]
    np.testing.assert_allclose(s.sdcor.loc["nloptwrap.NLOPT_LN_BOBYQA"],
                               [24.74065799, 5.92213766, 0.06555124, 25.59179572], rtol=1e-6)
    assert (s.feval > 0).all() and (s.times >= 0).all()
    # the default optimizer's refit is the original fit
    np.testing.assert_array_equal(all_fm1["nloptwrap.NLOPT_LN_BOBYQA"].theta, fm1.theta)
    text = str(s)
    for name in ALLFIT_OPTIMIZERS:
        assert name in text
    assert "$fixef" in text and "$theta" in text


def test_failures_are_kept_and_messages_collected(fm1: lmf.LmerMod) -> None:
    # a one-evaluation budget: NLopt stops at once and the refit carries lme4's messages
    a = lmf.allFit(fm1, optimizers=["nloptwrap.NLOPT_LN_BOBYQA"], maxfun=1)
    s = a.summary()
    assert s.which_OK["nloptwrap.NLOPT_LN_BOBYQA"]
    assert any("convergence code" in m or "failed to converge" in m
               for m in s.msgs["nloptwrap.NLOPT_LN_BOBYQA"])
    with pytest.raises(lmf.LmeFormulaError, match="unknown optimizer"):
        lmf.allFit(fm1, optimizers=["nmkbw"])


def test_catch_errs(monkeypatch: pytest.MonkeyPatch, fm1: lmf.LmerMod) -> None:
    import lmeformula.allfit as allfit

    def broken(*args: object, **kw: object) -> None:
        raise ArithmeticError("no luck")

    monkeypatch.setattr(allfit, "optimizeLmer", broken)
    a = lmf.allFit(fm1, optimizers=["Powell", "L-BFGS-B"])
    s = a.summary()
    assert s.which_OK == {"Powell": False, "L-BFGS-B": False}
    assert s.msgs["Powell"] == ["ArithmeticError: no luck"]
    assert s.fixef.empty
    with pytest.raises(ArithmeticError):
        lmf.allFit(fm1, optimizers=["Powell"], catch_errs=False)


@pytest.mark.slow
def test_tidy_and_glance_of_allfit(monkeypatch: pytest.MonkeyPatch, fm1: lmf.LmerMod,
                                   all_fm1: AllFit) -> None:
    # broom.mixed's tidy.allFit / glance.allFit: per optimizer, failed refits left out of tidy
    # and NaN in glance, NLL_rel = best logLik - logLik (Inf when failed)
    t = lmf.tidy(all_fm1)
    assert t.columns[0] == "optimizer" and list(t.columns[1:]) == list(lmf.tidy(fm1).columns)
    assert t["optimizer"].unique().tolist() == list(ALLFIT_OPTIMIZERS)
    one = t[t["optimizer"] == "nloptwrap.NLOPT_LN_BOBYQA"].drop(columns="optimizer")
    pd.testing.assert_frame_equal(one.reset_index(drop=True), lmf.tidy(fm1))
    g = lmf.glance(all_fm1)
    assert list(g.columns) == ["optimizer", *lmf.glance(fm1).columns, "NLL_rel"]
    np.testing.assert_allclose(g["NLL_rel"], g["logLik"].max() - g["logLik"])
    assert (g["NLL_rel"] >= 0).all() and (g["NLL_rel"] < 1e-6).all()

    import lmeformula.allfit as allfit

    real = allfit.optimizeLmer

    def flaky(devfun, ctrl):  # type: ignore[no-untyped-def]
        if ctrl.optimizer == "Powell":
            raise ArithmeticError("no luck")
        return real(devfun, ctrl)

    monkeypatch.setattr(allfit, "optimizeLmer", flaky)
    a = lmf.allFit(fm1, optimizers=["Powell", "L-BFGS-B"])
    assert lmf.tidy(a)["optimizer"].unique().tolist() == ["L-BFGS-B"]
    g = lmf.glance(a)
    assert np.isnan(g.loc[0, "logLik"]) and g.loc[0, "NLL_rel"] == np.inf
    assert g.loc[1, "NLL_rel"] == 0.0
