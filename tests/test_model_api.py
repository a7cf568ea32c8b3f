"""The fitted-model API: accessors as functions and methods, getME, warnings, NA handling."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from cases import FIXTURES, case_data, load_case

import lmeformula as lmf
from lmeformula.mermod import GETME_NAMES


@pytest.fixture(scope="module")
def fm1() -> lmf.LmerMod:
    return lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"))


def test_functions_and_methods_agree(fm1: lmf.LmerMod) -> None:
    pd.testing.assert_series_equal(lmf.fixef(fm1), fm1.fixef)
    assert lmf.sigma(fm1) == fm1.sigma
    assert lmf.nobs(fm1) == 180 and lmf.df_residual(fm1) == 174
    assert lmf.AIC(fm1) == fm1.AIC() and lmf.BIC(fm1) == fm1.BIC()
    assert lmf.REMLcrit(fm1) == fm1.REMLcrit()
    assert lmf.isREML(fm1) and not lmf.isSingular(fm1)
    assert lmf.npar(fm1) == 6
    assert lmf.ngrps(fm1).to_dict() == {"Subject": 18}
    pd.testing.assert_frame_equal(lmf.vcov(fm1), fm1.vcov())
    pd.testing.assert_series_equal(lmf.fitted(fm1), fm1.fitted())
    pd.testing.assert_series_equal(lmf.residuals(fm1, type="pearson"),
                                   fm1.residuals(type="pearson"))
    pd.testing.assert_series_equal(lmf.predict(fm1), fm1.fitted(), check_names=False)
    assert str(lmf.summary(fm1)) == str(fm1.summary())


def test_deviance_of_reml_fit_warns_as_lme4(fm1: lmf.LmerMod) -> None:
    messages = json.loads((FIXTURES / "messages.json").read_text())
    with pytest.warns(lmf.DeprecatedUsageWarning) as rec:
        value = lmf.deviance(fm1)
    assert str(rec[0].message) == messages["deviance_reml"]["warnings"]
    assert value == fm1.REMLcrit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fm1.deviance(REML=False) == pytest.approx(1751.98586643, abs=1e-6)


def test_coef_is_fixef_plus_ranef(fm1: lmf.LmerMod) -> None:
    c = lmf.coef(fm1)["Subject"]
    r = lmf.ranef(fm1)["Subject"]
    np.testing.assert_allclose(c["Days"], fm1.fixef["Days"] + r["Days"])
    assert list(c.columns) == ["(Intercept)", "Days"]


def test_population_predictions(fm1: lmf.LmerMod) -> None:
    pop = fm1.predict(re_form="~0").to_numpy()[:6]
    np.testing.assert_allclose(pop, [251.405, 261.872, 272.340, 282.807, 293.274, 303.742],
                               atol=1e-3)
    np.testing.assert_allclose(fm1.predict(re_form=np.nan).to_numpy()[:6], pop)


def test_getme_has_every_lmm_name(fm1: lmf.LmerMod) -> None:
    everything = lmf.getME(fm1, "ALL")
    assert set(everything) == set(GETME_NAMES)
    assert lmf.getME(fm1, "Zt").shape == (36, 180)
    assert (lmf.getME(fm1, "Z") != lmf.getME(fm1, "Zt").T).nnz == 0
    assert list(lmf.getME(fm1, "Ztlist")) == ["Subject.(Intercept)", "Subject.Days"]
    assert list(lmf.getME(fm1, "theta").index) == ["Subject.(Intercept)",
                                                   "Subject.Days.(Intercept)", "Subject.Days"]
    lam = lmf.getME(fm1, "Lambda").toarray()
    np.testing.assert_allclose(lmf.getME(fm1, "b"), lam @ lmf.getME(fm1, "u"))
    # L is the sparse Cholesky factor of Λ'Z'ZΛ + I (rows in Zt's order)
    L = lmf.getME(fm1, "L")
    A = lmf.getME(fm1, "A")
    assert sp.issparse(L)
    np.testing.assert_allclose((L @ L.T).toarray(), (A @ A.T).toarray() + np.eye(36),
                               atol=1e-9)
    rzx, rx = lmf.getME(fm1, "RZX"), lmf.getME(fm1, "RX")
    X = lmf.getME(fm1, "X").to_numpy()
    np.testing.assert_allclose(rx.T @ rx + rzx.T @ rzx, X.T @ X, rtol=1e-10)
    assert lmf.getME(fm1, "Tp").tolist() == [0, 3]
    assert lmf.getME(fm1, "m_i").tolist() == [3]
    assert lmf.getME(fm1, "REML") == 2
    with pytest.raises(lmf.LmeFormulaError, match="not a valid name"):
        lmf.getME(fm1, "nosuch")


def test_na_exclude_pads_back_to_the_data() -> None:
    case = load_case("sim_na_exclude")
    data = case_data(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.lmer(case["formula"], data, na_action="exclude")
    res = m.residuals()
    assert len(res) == len(data)
    assert list(res.index) == list(data.index)
    assert res.isna().sum() == len(m.lformula.frame.na_action.omitted)
    omit = lmf.lmer(case["formula"], data)
    assert len(omit.fitted()) == omit.nobs


def test_ranef_of_factor_shared_by_terms() -> None:
    m = lmf.lmer("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
                 lmf.datasets.load("sleepstudy"))
    r = m.ranef(condVar=True)["Subject"]
    assert list(r.columns) == ["(Intercept)", "Days"]
    pv = r.attrs["postVar"]
    assert isinstance(pv, list) and [a.shape for a in pv] == [(18, 1, 1), (18, 1, 1)]
    assert list(m.VarCorr.as_data_frame()["grp"]) == ["Subject", "Subject.1", "Residual"]


def test_downdated_vtv_error() -> None:
    data = lmf.datasets.load("sleepstudy").assign(D2=lambda d: 2 * d.Days)
    with pytest.raises(lmf.FittingError, match="Downdated VtV is not positive definite"):
        lmf.lmer("Reaction ~ Days + D2 + (1 | Subject)", data,
                 control={"check.rankX": "ignore"})


def test_no_optimization_and_start() -> None:
    df = lmf.datasets.load("sleepstudy")
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", df, control={"optimizer": None},
                 start=[0.9667417739674123, 0.0151690588960361, 0.2309099532077945])
    assert m.optinfo.conv == 1000
    assert m.REMLcrit() == pytest.approx(1743.62827195995, rel=1e-10)
    dev = lmf.lmer("Reaction ~ Days + (Days | Subject)", df, devFunOnly=True)
    assert isinstance(dev, lmf.LmerDevfun)


@pytest.mark.parametrize("probe", json.loads((FIXTURES / "api.json").read_text())
                         ["devfun_sleepstudy"])
def test_devfun_only_equals_lme4s_away_from_the_optimum(probe: dict) -> None:
    dev = lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"),
                   REML=probe["REML"], devFunOnly=True)
    assert dev(np.array(probe["theta"], dtype=float)) == pytest.approx(probe["value"], rel=1e-10)


def test_refit_ml_matches_ml_fit(fm1: lmf.LmerMod) -> None:
    ml = lmf.refitML(fm1)
    assert not ml.is_REML
    assert ml.deviance() == pytest.approx(1751.93934448899, abs=1e-5)


def test_singular_fit_is_reported() -> None:
    with pytest.warns(lmf.SingularFitWarning, match=r"boundary \(singular\) fit"):
        m = lmf.lmer("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff2"))
    assert m.isSingular()
    assert "boundary (singular) fit: see help('isSingular')" in str(m.summary())


def test_html_repr(fm1: lmf.LmerMod) -> None:
    # issue 17 replaced the <pre>-wrapped text by real tables (tests/test_html.py checks them)
    text = fm1._repr_html_()
    assert "<pre>" not in text and "<table" in text
    assert "Linear mixed model (lmerMod)" in text and ">REML<" in text
