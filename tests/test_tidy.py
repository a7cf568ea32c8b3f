"""tidy / glance / augment against broom.mixed 0.2.9 on three lmer fits
(fixtures from tools/R/make_fixtures_broom.R)."""

from __future__ import annotations

import json
import warnings
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES

import lmeformula as lmf

REF = json.loads((FIXTURES / "broom.json").read_text())
SS = lmf.datasets.load("sleepstudy")
SSW = SS.assign(w=1.0 + SS["Days"] % 3)


def _fit(formula: str, data: pd.DataFrame, **kw: Any) -> lmf.LmerMod:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.lmer(formula, data, **kw)


MODELS = ["fm1", "pen_ml", "weighted"]


@cache
def fitted_model(name: str) -> lmf.LmerMod:
    """The broom fixtures' models, each fitted once, on first use (not at import)."""
    if name == "fm1":
        return _fit("Reaction ~ Days + (Days | Subject)", SS)
    if name == "pen_ml":
        return _fit("diameter ~ 1 + (1 | plate) + (1 | sample)", lmf.datasets.load("Penicillin"),
                    REML=False)
    assert name == "weighted", name
    return _fit("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", SSW, weights="w")


# estimates move with θ, which agrees with lme4's to the optimizer's tolerance
TOL = 1e-5


def r_frame(model: str, name: str) -> pd.DataFrame:
    d = REF[model][name]
    cols = {c: (v if isinstance(v, list) else [v]) for c, v in d["columns"].items()}
    return pd.DataFrame(cols)[d["colnames"]]


def assert_same(ours: pd.DataFrame, theirs: pd.DataFrame, rtol: float = TOL,
                atol: float = 1e-8) -> None:
    assert list(ours.columns) == list(theirs.columns)
    assert len(ours) == len(theirs)
    for col in ours.columns:
        a, b = ours[col], theirs[col]
        if pd.api.types.is_numeric_dtype(b) and not pd.api.types.is_bool_dtype(b):
            np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float),
                                       rtol=rtol, atol=atol, err_msg=col)
        else:
            left = [None if pd.isna(x) else str(x) for x in a]
            right = [None if pd.isna(x) else str(x) for x in b]
            assert left == right, col


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("name", "kw"), [
    ("tidy", {}),
    ("tidy_fixed", {"effects": "fixed"}),
    ("tidy_wald", {"conf_int": True}),
    ("tidy_wald90", {"conf_int": True, "conf_level": 0.9}),
    ("tidy_vcov", {"effects": "ran_pars", "scales": "vcov"}),
    ("tidy_ran_vals", {"effects": "ran_vals", "conf_int": True}),
    ("tidy_ran_coefs", {"effects": "ran_coefs"}),
    ("tidy_all", {"effects": ["ran_vals", "fixed", "ran_pars"]}),
])
def test_tidy_matches_broom_mixed(model: str, name: str, kw: dict[str, Any]) -> None:
    assert_same(lmf.tidy(fitted_model(model), **kw), r_frame(model, name))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["fm1", "pen_ml"])
def test_tidy_profile_intervals(model: str) -> None:
    # profile intervals agree with lme4's to the profile's resolution (as test_inference_lme4)
    ours = lmf.tidy(fitted_model(model), conf_int=True, conf_method="profile")
    assert_same(ours, r_frame(model, "tidy_profile"), rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_tidy_profile_weighted_variance_parameters() -> None:
    # lme4 1.1-31's profile of the fixed effects of this weighted fit is non-monotonic (its own
    # warnings, "bad spline fit ... falling back to linear interpolation") and its intervals are
    # a twentieth as wide as the Wald ones (lme4's fixed-effect profile of a weighted fit is
    # wrong). Compare the variance parameters, which lme4 profiles cleanly, and check that the
    # fixed-effect intervals are close to the Wald intervals, as profile intervals of a
    # linear model's fixed effects are.
    ours = lmf.tidy(fitted_model("weighted"), conf_int=True, conf_method="profile")
    theirs = r_frame("weighted", "tidy_profile")
    ran = (theirs["effect"] == "ran_pars").to_numpy()
    assert_same(ours[ran], theirs[ran], rtol=1e-3, atol=1e-5)
    wald = r_frame("weighted", "tidy_wald")
    bounds = ["conf.low", "conf.high"]
    np.testing.assert_allclose(ours.loc[~ran, bounds].to_numpy(float),
                               wald.loc[~ran, bounds].to_numpy(float), rtol=2e-2)


@pytest.mark.parametrize("model", MODELS)
def test_glance_matches_broom_mixed(model: str) -> None:
    ours = lmf.glance(fitted_model(model))
    theirs = r_frame(model, "glance")
    assert_same(ours, theirs, rtol=1e-7)
    assert ours["nobs"].dtype == np.int64


@pytest.mark.parametrize("model", MODELS)
def test_augment_matches_broom_mixed(model: str) -> None:
    ours = lmf.augment(fitted_model(model))
    theirs = r_frame(model, "augment")
    # R's model frame names the weights column "(weights)"
    assert_same(ours.rename(columns={"w": "(weights)"}), theirs, rtol=1e-5, atol=1e-7)


def test_augment_hat_values_are_the_hat_matrix_diagonal() -> None:
    # the hat matrix of the penalised fit, built densely: H = W½ A (A'WA + P)⁻¹ A' W½ with
    # A = [ZΛ X] and P = diag(I_q, 0)
    m = fitted_model("weighted")
    Z = (lmf.getME(m, "Lambdat") @ lmf.getME(m, "Zt")).T.toarray()
    A = np.hstack([Z, lmf.getME(m, "X").to_numpy()])
    w = m.weights
    P = np.diag(np.r_[np.ones(Z.shape[1]), np.zeros(m.p)])
    Aw = A * np.sqrt(w)[:, None]
    H = Aw @ np.linalg.solve(Aw.T @ Aw + P, Aw.T)
    np.testing.assert_allclose(lmf.augment(m)[".hat"], np.diag(H), rtol=1e-9)


def test_augment_given_data_and_rows_dropped_for_na() -> None:
    data = SS.copy()
    data.loc[[3, 50], "Reaction"] = np.nan
    before = data.copy()
    m = _fit("Reaction ~ Days + (Days | Subject)", data)
    full = lmf.augment(m, data)
    pd.testing.assert_frame_equal(data, before)  # the caller's data untouched
    assert len(full) == 180 and full.loc[[3, 50], ".fitted"].isna().all()
    kept = lmf.augment(m)
    np.testing.assert_allclose(full[".fitted"].dropna(), kept[".fitted"])
    with pytest.raises(lmf.LmeFormulaError, match="rows"):
        lmf.augment(m, data.iloc[:10])


def test_tidy_options_and_errors() -> None:
    m = fitted_model("fm1")
    ex = lmf.tidy(m, effects="fixed", exponentiate=True, conf_int=True)
    plain = lmf.tidy(m, effects="fixed", conf_int=True)
    np.testing.assert_allclose(ex["estimate"], np.exp(plain["estimate"]))
    np.testing.assert_allclose(ex["conf.low"], np.exp(plain["conf.low"]))
    np.testing.assert_allclose(ex["std.error"], plain["std.error"] * ex["estimate"])
    named = lmf.tidy(m, effects="ran_pars", ran_prefix=("SD", "COR"))
    assert named["term"].tolist()[:2] == ["SD__(Intercept)", "COR__(Intercept).Days"]
    with pytest.raises(lmf.LmeFormulaError, match="unknown effect"):
        lmf.tidy(m, effects="random")
    with pytest.raises(lmf.LmeFormulaError, match="scale"):
        lmf.tidy(m, effects="ran_pars", scales="sd")
    with pytest.raises(lmf.LmeFormulaError, match="only Wald"):
        lmf.tidy(m, effects="ran_vals", conf_int=True, conf_method="profile")
    with pytest.raises(lmf.LmeFormulaError, match="conf_method"):
        lmf.tidy(m, conf_int=True, conf_method="bca")
    with pytest.warns(lmf.LmeFormulaWarning, match="CIs not available"):
        rc = lmf.tidy(m, effects="ran_coefs", conf_int=True)
    assert rc["conf.low"].isna().all()


@pytest.mark.slow
def test_tidy_boot_intervals_are_confint_boot() -> None:
    m = fitted_model("fm1")
    t = lmf.tidy(m, conf_int=True, conf_method="boot", nsim=20, rng=1)
    ci = lmf.confint(m, method="boot", nsim=20, rng=1)
    np.testing.assert_allclose(t[["conf.low", "conf.high"]].to_numpy(float),
                               ci.to_numpy(float)[[4, 5, 0, 1, 2, 3]])


def test_ddf_method_adds_df_and_p_values() -> None:
    # broom.mixed on an lmerTest fit: the table's df and Pr(>|t|) become df and p.value and the
    # Wald intervals use t quantiles with those df (lmf.coef_table is lmerTest's table)
    from scipy import stats

    m = fitted_model("fm1")
    table = lmf.coef_table(m, ddf="Satterthwaite")
    t = lmf.tidy(m, effects="fixed", conf_int=True, ddf_method="Satterthwaite")
    assert list(t.columns) == ["effect", "term", "estimate", "std.error", "statistic",
                               "df", "p.value", "conf.low", "conf.high"]
    np.testing.assert_array_equal(t["df"], table["df"])
    np.testing.assert_array_equal(t["p.value"], table["Pr(>|t|)"])
    q = stats.t.ppf(0.975, table["df"].to_numpy())
    np.testing.assert_allclose(t["conf.high"], t["estimate"] + q * t["std.error"])
    assert (t["p.value"] < 0.001).all()
    with pytest.warns(lmf.LmeFormulaWarning, match="ddf_method ignored"):
        lmf.tidy(m, effects="fixed", conf_int=True, conf_method="boot", nsim=3, rng=1,
                 ddf_method="Satterthwaite")


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_hat_values_by_the_blockwise_solve_agree(model: str) -> None:
    # the path for many random effects (CL solved by blocks of observations) against the
    # selected-inverse path the fixtures check
    from lmeformula.broom import _hat_values

    m = fitted_model(model)
    np.testing.assert_allclose(_hat_values(m, dense_limit=0, cells=50), _hat_values(m),
                               rtol=1e-10, atol=1e-13)
