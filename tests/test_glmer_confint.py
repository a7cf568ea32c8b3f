"""GLMM profiles, profile and bootstrap intervals, progress bars and predict(se_fit=True)
against lme4 (tests/fixtures/glmer_confint.json, tools/R/make_fixtures_glmer_confint.R).

Tolerances:
* ζ at lme4's own profile points: 1e-4 absolute. Both re-optimise the other parameters to the
  optimizers' tolerances (lme4 with its Nelder-Mead, here BOBYQA), which moves the deviance by
  ~1e-6 and ζ by less; the fits' optima themselves differ by that much.
* Profile intervals: 1e-4 relative. The ends are read off an interpolating spline of ζ through
  each implementation's own points, which lie where each one's previous ζ put them; the spline's
  interpolation error between points is what differs.
* predict(se_fit=True) at lme4's optimum: 1e-5 relative, as the glmer tests compare the
  conditional modes and predictions. The algebra is the same; the factorisation is at the final
  PIRLS step's weights, which each implementation reaches only to PIRLS's tolerance
  (tolPwrss = 1e-7 on the penalised deviance): ~5e-7 apart on cbpp, ~8e-6 on the Gamma model. lme4 1.1-31 (installed) has no se.fit: the fixture writes lme4 1.1-35's
  vcov_full algebra out from getME's L, RX, RZX and Lambdat, and the response scale as lme4
  1.1-38 (the delta method, GH #847).
* Bootstrap numbers are never compared with R's (another random stream): structure, seeds,
  n_jobs and coverage of the estimate are.
"""

from __future__ import annotations

import json
import sys
import warnings
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES
from glmer_cases import data_of, fit

import lmeformula as lmf
from lmeformula.errors import LmeFormulaError, LmeFormulaWarning
from lmeformula.glmmprofile import glmm_boot_statistic, glmm_responses, zeta_at_values
from lmeformula.inference import Profile, parameter_names

REF = json.loads((FIXTURES / "glmer_confint.json").read_text())
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
TICKS = "TICKS ~ YEAR + (1 | BROOD)"


def quiet_glmer(*args: Any, **kwargs: Any) -> lmf.GlmerMod:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.glmer(*args, **kwargs)  # type: ignore[no-any-return]


@cache
def model(name: str) -> lmf.GlmerMod:
    if name == "cbpp":
        return fit("cbpp")
    if name == "cbpp_nagq5":
        return fit("cbpp_nagq5")
    if name == "grouseticks":
        return quiet_glmer(TICKS, lmf.datasets.load("grouseticks"), "poisson")
    raise KeyError(name)


@cache
def at_lme4_optimum(name: str) -> lmf.GlmerMod:
    """The model evaluated at lme4's optimum (θ and β read off the ζ = 0 rows of lme4's
    profile), with no optimisation."""
    ref = REF[name]["profile"]
    names = REF[name]["confint"]["rownames"]  # lme4's order: .sig01, then the fixed effects
    pars = [ref[n]["value"][ref[n]["zeta"].index(0.0)] for n in names]
    k = sum(n.startswith(".sig") for n in names)
    formula = CBPP if name == "cbpp" else TICKS
    data = lmf.datasets.load("cbpp" if name == "cbpp" else "grouseticks")
    return quiet_glmer(formula, data, "binomial" if name == "cbpp" else "poisson",
                       control={"optimizer": (None, None)},
                       start={"theta": pars[:k], "fixef": pars[k:]})


def ci_frame(ref: dict[str, Any]) -> pd.DataFrame:
    rows = ref["rownames"]
    rows = [rows] if isinstance(rows, str) else rows  # jsonlite unboxes a single name
    return pd.DataFrame(ref["values"], index=rows, columns=ref["colnames"])


# ---- profiles -------------------------------------------------------------------------------

def _near_ends(values: list[float], zetas: list[float]) -> list[tuple[float, float]]:
    """lme4's points nearest ζ = -2 and ζ = +2 (where the 95% interval is read)."""
    out = []
    for target in (-2.0, 2.0):
        i = int(np.argmin(np.abs(np.asarray(zetas) - target)))
        out.append((values[i], zetas[i]))
    return out


# grouseticks' 403 rows make each re-optimisation several times dearer: the slow set
CASES = [pytest.param(name, par, marks=[pytest.mark.slow] if name == "grouseticks" else [])
         for name in ("cbpp", "grouseticks") for par in REF[name]["profile"]]


@pytest.mark.parametrize(("name", "par"), CASES)
def test_zeta_at_lme4s_points(name: str, par: str) -> None:
    ref = REF[name]["profile"][par]
    pts = _near_ends(ref["value"], ref["zeta"])
    ours = zeta_at_values(model(name), par, [v for v, _ in pts])
    np.testing.assert_allclose(ours, [z for _, z in pts], rtol=0, atol=1e-4)
    assert ours[0] < -1.5 and ours[1] > 1.5  # the points straddle the 95% cut-offs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cbpp", "cbpp_nagq5"])
def test_profile_of_the_random_effect_sd(name: str) -> None:
    # one parameter profiled, as confint(parm=".sig01") asks lme4 to (Laplace and adaptive
    # quadrature: each profiles its own deviance)
    ref = REF[name]
    prof = lmf.profile(model(name), which=[".sig01"])
    assert list(prof.points) == [".sig01"]
    pts = prof.points[".sig01"]
    rpts = ref["profile"][".sig01"]
    assert len(pts) == len(rpts["value"])  # the same steps, so the same number of points
    np.testing.assert_allclose(pts["value"], np.sort(rpts["value"]), rtol=1e-4, atol=1e-6)
    order = np.argsort(rpts["value"])
    np.testing.assert_allclose(pts["zeta"], np.asarray(rpts["zeta"])[order], atol=1e-4)
    assert pts["value"].iloc[0] == 0.0  # the sd's profile runs down to its bound
    want = ci_frame(ref["confint"]).loc[[".sig01"]]
    got = lmf.confint(model(name), parm=".sig01")  # profiles .sig01 only
    assert list(got.columns) == ["2.5 %", "97.5 %"]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-4)


@pytest.mark.parametrize("name", ["cbpp", "cbpp_nagq5", "grouseticks"])
def test_intervals_from_lme4s_points(name: str) -> None:
    # the spline inversion on lme4's own points gives lme4's intervals (its backSpline), the
    # sd's lower end included
    points = {par: pd.DataFrame({"value": p["value"], "zeta": p["zeta"]}).drop_duplicates()
              .sort_values("value").reset_index(drop=True)
              for par, p in REF[name]["profile"].items()}
    lower = {par: 0.0 if par.startswith(".sig") else -np.inf for par in points}
    upper = {par: np.inf for par in points}
    want = ci_frame(REF[name]["confint"])
    got = Profile(points, lower, upper).confint().loc[want.index]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12)


# the whole profile of cbpp (about 100 re-optimisations); grouseticks' is tested through ζ at
# lme4's points and the intervals from them above: its whole profile costs minutes (PIRLS on
# 403 rows, ~25 ms per deviance evaluation today)
@pytest.mark.slow
@pytest.mark.parametrize("name", ["cbpp"])
def test_profile_intervals_match_lme4(name: str) -> None:
    m = model(name)
    prof = lmf.profile(m)
    want = ci_frame(REF[name]["confint"])
    got = prof.confint()
    # lme4's rows: .sig01, then the fixed effects; no .sigma for binomial and Poisson
    assert list(got.index) == list(want.index) == parameter_names(m)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-4)
    for par, rpts in REF[name]["profile"].items():
        assert abs(len(prof.points[par]) - len(rpts["value"])) <= 1, par
    if name == "cbpp":
        want90 = ci_frame(REF[name]["confint_90"])
        np.testing.assert_allclose(prof.confint(0.9).to_numpy(), want90.to_numpy(), rtol=1e-4)
        assert list(prof.confint(0.9).columns) == ["5 %", "95 %"]
        # confint(method="profile") is the same table
        table = lmf.confint(m, method="profile")
        np.testing.assert_allclose(table.to_numpy(), got.to_numpy(), rtol=1e-12)


@pytest.mark.slow
def test_profile_names_and_refusals() -> None:
    m = model("cbpp")
    new = lmf.profile(m, which=["sd_(Intercept)|herd"], oldNames=False)
    assert list(new.points) == ["sd_(Intercept)|herd"]
    assert REF["cbpp"]["newnames"][0] == "sd_(Intercept)|herd"
    with pytest.raises(LmeFormulaError, match="not among the parameters"):
        lmf.profile(m, which=[".sigma"])  # binomial: no scale
    # lme4's own message for families with a scale
    with pytest.raises(LmeFormulaError) as err:
        lmf.confint(fit("gamma_log"), method="profile")
    assert str(err.value) == REF["refusals"]["gamma"]
    # with nAGQ = 0 lme4 fails inside ("theta size mismatch"): the deviance has no beta
    assert REF["refusals"]["nagq0"] == "theta size mismatch"
    with pytest.raises(LmeFormulaError, match="nAGQ >= 1"):
        lmf.profile(fit("cbpp_nagq0"), which=[".sig01"])


@pytest.mark.slow
def test_profile_leaves_the_model_untouched() -> None:
    m = quiet_glmer(CBPP, lmf.datasets.load("cbpp"), "binomial")
    before = (m.fixef.copy(), m.ranef()["herd"].copy(), m.fitted().copy(), m.vcov().copy())
    zeta_at_values(m, "period2", [-1.5])
    lmf.profile(m, which=[".sig01"])
    pd.testing.assert_series_equal(m.fixef, before[0])
    pd.testing.assert_frame_equal(m.ranef()["herd"], before[1])
    pd.testing.assert_series_equal(m.fitted(), before[2])
    pd.testing.assert_frame_equal(m.vcov(), before[3])


# ---- bootstrap --------------------------------------------------------------------------------

@pytest.mark.slow
def test_boot_intervals_structure_seed_and_jobs() -> None:
    m = model("cbpp")
    a = lmf.confint(m, method="boot", nsim=4, rng=11)
    assert list(a.index) == REF["boot_rownames"]["cbpp"] == parameter_names(m)
    assert list(a.columns) == ["2.5 %", "97.5 %"]
    assert np.isfinite(a.to_numpy()).all() and (a.iloc[:, 0] <= a.iloc[:, 1]).all()
    b = lmf.confint(m, method="boot", nsim=4, rng=11, n_jobs=2)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    c = lmf.confint(m, method="boot", nsim=4, rng=12)
    assert not np.array_equal(a.to_numpy(), c.to_numpy())


@pytest.mark.slow
def test_boot_statistic_is_lme4s() -> None:
    # binomial: sd on theta's scale and no sigma; Gamma: theta (not theta * sigma), sigma
    m = model("cbpp")
    np.testing.assert_allclose(glmm_boot_statistic(m),
                               np.concatenate([m.theta, m.beta]), rtol=1e-15)
    g = fit("gamma_log")
    np.testing.assert_allclose(glmm_boot_statistic(g),
                               np.concatenate([g.theta, [g.sigma], g.beta]), rtol=1e-15)
    boots = lmf.bootstrap(g, nsim=2, rng=3)
    assert list(boots.columns) == REF["boot_rownames"]["gamma"] == [".sig01", ".sigma",
                                                                    "(Intercept)", "x"]
    np.testing.assert_array_equal(boots.attrs["t0"].to_numpy(), glmm_boot_statistic(g))


@pytest.mark.slow
def test_bootstrap_refits_a_cbind_response_to_its_draws() -> None:
    # lme4's simulate draws (successes, failures) for a cbind response and bootMer refits to
    # them; simulate here gives proportions, turned back into the two columns for refit
    m = model("cbpp")
    ys = glmm_responses(m, m.simulate(2, rng=5).to_numpy())
    assert ys.shape == (m.n, 2, 2)
    totals = np.asarray(m.lformula.y).sum(axis=1)
    np.testing.assert_allclose(ys.sum(axis=1), np.column_stack([totals, totals]))
    np.testing.assert_allclose(ys, np.round(ys), atol=1e-9)  # whole numbers of successes
    a, b = lmf.refit(m, ys[..., 0]), lmf.refit(m, np.round(ys[..., 0]))
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-10)
    assert not np.allclose(a.fixef, m.fixef, rtol=1e-3)  # a new response, a new fit
    # responses without a second column are left as drawn
    g = fit("gamma_log")
    sims = g.simulate(2, rng=5).to_numpy()
    assert glmm_responses(g, sims) is sims


@pytest.mark.slow
def test_boot_intervals_bracket_the_estimates() -> None:
    m = model("cbpp")
    ci = lmf.confint(m, method="boot", nsim=60, rng=2026, n_jobs=2)
    est = glmm_boot_statistic(m)
    assert ((ci.iloc[:, 0] < est) & (est < ci.iloc[:, 1])).all()
    # and roughly as wide as the profile intervals (within a factor 2 for the fixed effects)
    prof = ci_frame(REF["cbpp"]["confint"])
    width = (ci.iloc[:, 1] - ci.iloc[:, 0]).to_numpy()[1:]
    pwidth = (prof.iloc[:, 1] - prof.iloc[:, 0]).to_numpy()[1:]
    assert np.all(width > pwidth / 2) and np.all(width < pwidth * 2)


# ---- progress --------------------------------------------------------------------------------

@pytest.fixture
def plain_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # the plain counter: exact text
    monkeypatch.setitem(sys.modules, "tqdm", None)


def test_glmer_progress_counts_both_stages_and_changes_nothing(
        plain_counter: None, capsys: pytest.CaptureFixture[str]) -> None:
    cbpp = lmf.datasets.load("cbpp")
    plain = quiet_glmer(CBPP, cbpp, "binomial")
    assert capsys.readouterr().err == ""  # off by default
    shown = quiet_glmer(CBPP, cbpp, "binomial", progress=True)
    err = capsys.readouterr().err
    evaluations = shown._glmer_devfun.evaluations
    assert err.rstrip().endswith(f"glmer evaluations: {evaluations}")
    # both stages: more evaluations than the second stage's optimizer made
    assert evaluations > shown.optinfo.feval
    np.testing.assert_array_equal(shown.optinfo.par, plain.optinfo.par)
    assert shown.optinfo.fval == plain.optinfo.fval
    assert plain._glmer_devfun.evaluations == evaluations


@pytest.mark.slow
def test_glmm_profile_and_boot_progress(plain_counter: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    m = model("cbpp")
    lmf.confint(m, parm=".sig01", method="profile", progress=True)
    assert capsys.readouterr().err.rstrip().endswith("profile: 1/1")
    lmf.confint(m, method="boot", nsim=2, rng=1, progress=True)
    assert capsys.readouterr().err.rstrip().endswith("bootstrap: 2/2")


# ---- predict(se_fit=True) --------------------------------------------------------------------

SE_CASES = [("cbpp", "link", None), ("cbpp", "response", None), ("cbpp", "link", "~0"),
            ("cbpp", "response", "~0"), ("grouseticks", "link", None),
            ("grouseticks", "response", "~0"), ("gamma_log", "link", None),
            ("gamma_log", "response", None)]


@pytest.mark.parametrize(("name", "type", "re_form"), SE_CASES)
def test_se_fit_matches_lme4s_algebra(name: str, type: str, re_form: str | None) -> None:
    m = fit("gamma_log", at_lme4=True) if name == "gamma_log" else at_lme4_optimum(name)
    ref = (REF["gamma_se_fit"] if name == "gamma_log" else REF[name]["se_fit"])
    want = ref[type + ("_population" if re_form else "")]
    assert ref["perm_identity"]  # lme4's vcov_full leaves out L's permutation: none here
    with pytest.warns(LmeFormulaWarning, match="se.fit computation uses an approximation"):
        got = lmf.predict(m, se_fit=True, type=type, re_form=re_form)
    assert list(got.columns) == ["fit", "se_fit"]
    np.testing.assert_allclose(got["fit"], want["fit"], rtol=1e-5)
    np.testing.assert_allclose(got["se_fit"], want["se_fit"], rtol=1e-5)


def test_se_fit_on_new_data() -> None:
    m = at_lme4_optimum("cbpp")
    cbpp = lmf.datasets.load("cbpp")
    new = pd.DataFrame({
        "period": pd.Categorical(["1", "3", "4"], categories=cbpp["period"].cat.categories),
        "herd": pd.Categorical(["2", "5", "15"], categories=cbpp["herd"].cat.categories)})
    ref = REF["cbpp"]["se_fit_newdata"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmeFormulaWarning)
        for type in ("link", "response"):
            for re_form, key in ((None, type), ("~0", type + "_population")):
                got = m.predict(new, re_form=re_form, se_fit=True, type=type)
                np.testing.assert_allclose(got["fit"], ref[key]["fit"], rtol=1e-5)
                np.testing.assert_allclose(got["se_fit"], ref[key]["se_fit"], rtol=1e-5)
        # a new level gets the population-level uncertainty (its random effect is zero)
        newlevel = new.assign(herd=pd.Categorical(["2", "99", "15"]))
        got = m.predict(newlevel, se_fit=True, allow_new_levels=True)
        pop = m.predict(new, re_form="~0", se_fit=True)["se_fit"]
        full = m.predict(new, se_fit=True)["se_fit"]
    assert got["se_fit"].iloc[1] == pytest.approx(pop.iloc[1], rel=1e-12)
    assert got["se_fit"].iloc[0] == pytest.approx(full.iloc[0], rel=1e-12)
    assert pop.iloc[1] < full.iloc[1]  # the conditional mode adds uncertainty


def test_se_fit_without_it_and_bad_flags() -> None:
    m = model("cbpp")
    plain = m.predict(type="response")
    assert isinstance(plain, pd.Series)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning without se_fit
        m.predict()
    with pytest.raises(LmeFormulaError):
        m.predict(se_fit="yes")  # type: ignore[arg-type]
    # the proportions' data: the same fit as cbind gives the same standard errors
    prop = fit("cbpp_prop")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmeFormulaWarning)
        a = m.predict(se_fit=True)
        b = prop.predict(se_fit=True)
    np.testing.assert_allclose(a["se_fit"], b["se_fit"], rtol=1e-4)
    assert data_of("cbpp_prop").shape[0] == len(b)


def test_glmer_gaussian_shortcut_passes_progress_to_lmer(
        plain_counter: None, capsys: pytest.CaptureFixture[str]) -> None:
    sleep = lmf.datasets.load("sleepstudy")
    with pytest.warns(lmf.errors.DeprecatedUsageWarning):
        m = lmf.glmer("Reaction ~ Days + (Days | Subject)", sleep, "gaussian", progress=True)
    assert isinstance(m, lmf.LmerMod) and not isinstance(m, lmf.GlmerMod)
    assert capsys.readouterr().err.rstrip().endswith(f"lmer evaluations: {m.optinfo.feval}")
