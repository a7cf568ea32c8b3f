"""lmer against lme4 1.1-31 on formula and data corners (differential sweep, fixtures from
tools/R/make_fixtures_sweep.R): factor-by-numeric and interaction slopes, ``(0 + h:x | g)``,
``(1 | g:h)``, ``(1 | g/h)``, ``(x - 1 | g)``, ``||`` with a factor, poly/log/I()/scale(),
intercept-free fixed effects, weights with offsets, NA in numeric and factor columns (omit and
exclude), unused factor levels, bool, integer and string columns, subset text; predictions on
new data with new levels.
"""

from __future__ import annotations

import numpy as np
import pytest
from fit_accuracy import (
    assert_same_lmm_fit,
    assert_text_up_to_ties,
    at_point,
)
from sweep_cases import (
    NAMES,
    as_list,
    assert_identical_fits,
    close,
    close_ranef,
    fit,
    fit_and_warnings,
    fit_at_lme4,
    fixture,
    frame_of,
    is_glmm,
    na_floats,
    printed_values,
    r_warnings,
)

import lmeformula as lmf

LMM = [n for n in NAMES if not is_glmm(n)]


def at_lme4(name: str) -> lmf.LmerMod:
    """The fit at lme4's θ (sweep_cases.fit_at_lme4: our structures, call and optimizer
    record; lme4's convergence checks at that θ): everything computed from θ is compared
    here, where it agrees with lme4's to rounding whatever path the optimizer took; the
    fit's own θ, criterion, β and σ are compared with lme4's at the optimizer's precision
    (tests/fit_accuracy.py). A last-bit difference (another BLAS kernel's) can move
    BOBYQA's stopping point within that precision: ``lm_dummy_default`` stops 7e-10 below
    lme4's criterion with θ 1e-4 apart relative on some kernels, its surface being flat
    (H's smallest eigenvalue 1.6); ``lm_three_slopes`` (singular, 6 θ) parts from lme4's
    path (114 evaluations to 109)."""
    return fit_at_lme4(name)


@pytest.mark.parametrize("name", LMM)
def test_structures_and_estimates(name: str) -> None:
    m, fx = fit(name), fixture(name)
    theta = as_list(fx["theta"])
    # β and σ at our θ: lme4's, to what the optimum's precision allows (first order in θ)
    optimum = assert_same_lmm_fit(m, theta, fx["deviance"], as_list(fx["beta"]), fx["sigma"])
    close(m.logLik().value, fx["logLik"], rtol=0, atol=optimum.excess)
    # at lme4's θ: the criterion, β and σ to rounding
    mr = at_lme4(name)
    close(mr.fixef, fx["beta"], rtol=1e-9, atol=1e-12)
    assert list(m.fixef.index) == as_list(fx["fixef_names"])
    close(mr.logLik().value, fx["logLik"], rtol=1e-10, atol=0)
    assert m.logLik().df == fx["df"]
    crit = mr.REMLcrit() if fx["REML"] else mr.deviance()
    close(crit, fx["deviance"], rtol=1e-10, atol=0)
    close(mr.sigma, fx["sigma"], rtol=1e-9, atol=0)
    assert m.df_residual == fx["df_residual"]
    assert m.nobs == fx["nobs"]
    assert m.isSingular() == fx["isSingular"]
    assert [list(c) for c in lmf.getME(m, "cnms")] == [as_list(c) for c in fx["cnms"].values()]
    flist = lmf.getME(m, "flist")
    assert {k: [str(c) for c in v.categories] for k, v in flist.items()} == {
        k: as_list(v) for k, v in fx["flist_levels"].items()}
    assert list(lmf.getME(m, "Zt").shape) == fx["Zt_dim"]
    assert list(lmf.getME(m, "X").columns) == as_list(fx["X_colnames"])


# a singular 6-θ fit and the flattest surface of the sweep
@pytest.mark.parametrize("name", ["lm_three_slopes", "lm_dummy_default"])
def test_at_point_of_the_fits_own_theta_is_the_fit(name: str) -> None:
    # fit_accuracy.at_point, which the comparisons above are made on at lme4's θ, rebuilds
    # the fit itself at the fit's own θ: the same criterion, derivatives and checks
    m = fit(name)
    assert_identical_fits(at_point(m, m.theta), m)


@pytest.mark.parametrize("name", LMM)
def test_accessors(name: str) -> None:
    m, fx = at_lme4(name), fixture(name)
    close(m.vcov().to_numpy(), np.array(fx["vcov"], dtype=float), rtol=1e-5, atol=1e-9)
    close(m.fitted(), fx["fitted"], rtol=1e-6, atol=1e-8)
    for kind in ("deviance", "pearson", "response"):
        close(m.residuals(type=kind), fx[f"resid_{kind}"], rtol=1e-5, atol=1e-7)
    close(m.predict(re_form="~0"), fx["predict_population"], rtol=1e-6, atol=1e-7)
    close_ranef(m, fx["ranef"], rtol=1e-4, atol=1e-7)
    vc = m.VarCorr.as_data_frame()
    assert list(vc["grp"]) == as_list(fx["varcorr"]["grp"])
    close(vc["sdcor"], fx["varcorr"]["sdcor"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", LMM)
def test_printed_output(name: str) -> None:
    m, fx = at_lme4(name), fixture(name)
    values = printed_values(fx, na_floats(fx["resid_pearson"]) / fx["sigma"], fx["deviance"])
    # the Control: line too: the dict of options prints as lme4 deparses lmerControl(...)
    assert_text_up_to_ties(str(m.summary()), fx["summary"], values)
    assert_text_up_to_ties(str(m), fx["print"], values)
    assert str(lmf.anova(m)) == fx["anova_text"]


@pytest.mark.parametrize("name", LMM)
def test_coef_and_condvar(name: str) -> None:
    m, fx = at_lme4(name), fixture(name)
    co = lmf.coef(m)
    assert list(co) == list(fx["coef"])
    for grp, ref in fx["coef"].items():
        assert list(co[grp].columns) == as_list(ref["colnames"])
        close(co[grp].to_numpy().ravel(order="F"), np.array(ref["values"]).T.ravel(),
              rtol=1e-5, atol=1e-7)
    for grp, ref in fx["ranef"].items():
        pv = m.ranef(condVar=True)[grp].attrs["postVar"]
        if isinstance(ref["postVar"], dict):  # one (k, k, levels) array per term
            for k, term in enumerate(ref["postVar"].values()):
                close(np.transpose(pv[k], (1, 2, 0)).ravel(), np.ravel(term), rtol=1e-4,
                      atol=1e-7)
        else:
            close(np.transpose(pv, (1, 2, 0)).ravel(order="F"), ref["postVar"], rtol=1e-4,
                  atol=1e-7)


@pytest.mark.parametrize("name", LMM)
def test_warnings_and_messages(name: str) -> None:
    assert set(fit_and_warnings(name)[1]) == {w.removeprefix("message: ")
                                              for w in r_warnings(name)}


@pytest.mark.parametrize("name", [n for n in LMM if "newdata" in fixture(n)])
def test_predict_newdata(name: str) -> None:
    m, fx = at_lme4(name), fixture(name)
    nd = frame_of(fx["newdata"])
    close(m.predict(newdata=nd, allow_new_levels=True), fx["predict_newdata"], rtol=1e-6,
          atol=1e-8)


@pytest.mark.parametrize("name", LMM)
def test_getme_and_partial_re_form(name: str) -> None:
    from test_sweep_glmer import getme_close

    m, fx = fit(name), fixture(name)
    getme_close(m, fx)
    if fx.get("re_form_first"):
        close(at_lme4(name).predict(re_form=fx["re_form_first"]), fx["predict_re_first"],
              rtol=1e-5, atol=1e-7)


def test_simulate_under_na_exclude() -> None:
    # it failed with a shape error; lme4 pads the removed rows with NA
    m = fit("lm_na_exclude")
    sim = lmf.simulate(m, 3, rng=2)
    fitted = m.fitted()
    assert sim.shape == (fitted.shape[0], 3)
    np.testing.assert_array_equal(sim.isna().to_numpy()[:, 1], fitted.isna().to_numpy())
    assert list(sim.index) == list(fitted.index)
