"""glmer against lme4 1.1-31, a second differential round (fixtures from
tools/R/make_fixtures_glmer_fuzz2.R): simulated data and models the other glmer fixtures do
not cover -- unbalanced groups of 1-6 rows crossed with sites, correlated slopes on cbind
with cloglog, proportions with weights under probit, a factor response whose first level is
"yes", logical and I() responses with NA rows (na.exclude), nAGQ = 0 with several terms,
quadrature with offsets, an observation-level random effect, Poisson sqrt with || terms, 14
fixed effects, rank deficiency, a badly scaled predictor (lme4's convergence warnings),
Gamma and inverse Gaussian with vector, nested and crossed terms, singular fits, separation,
single-optimizer controls, poly/scale/log in the fixed part with new data, subset, two
models of a random generator of designs; and likelihood-ratio tests between nested fits.

Everything here agrees with lme4 at the tolerances of tests/test_sweep_glmer.py, except
where the fit does not determine what is compared (each listed below with its reason).
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from typing import Any

import numpy as np
import pytest
from cases import FIXTURES
from fit_accuracy import at_point
from sweep_cases import (
    as_list,
    close,
    close_coef,
    close_glmm_estimates,
    close_glmm_new_levels,
    close_ranef,
    frame_of,
)
from test_sweep_glmer import _NUMBER, assert_printed_close, same_up_to_last_digit

import lmeformula as lmf

FUZZ2 = FIXTURES / "glmer_fuzz2"
NAMES = sorted(p.stem for p in FUZZ2.glob("*.json"))


@cache
def fixture(name: str) -> dict[str, Any]:
    return json.loads((FUZZ2 / f"{name}.json").read_text())  # type: ignore[no-any-return]


FITTED = [n for n in NAMES if not fixture(n)["error"]]
REFUSED = [n for n in NAMES if fixture(n)["error"]]

# Standard errors come from deriv12's finite-difference Hessian: second differences of step
# h = 1e-4 of the deviance (~260 here), so each ulp (5.7e-14) by which the deviance at a
# step point differs (summation order, PIRLS stopping at its tolerance) moves a Hessian
# entry by 5.7e-14 / h² = 5.7e-6; lme4's entries are quantised at that size (1.2929496765,
# 44.8883476257) and ours differ from them by a few such units (1.2929263 against
# 1.2929497 in e_cbind_poly_newdata), so the standard errors by up to ~2e-5 relative at
# the same (θ, β) (agreeing to 1e-10). These fits print a standard error (or a p-value
# through it) differently in its 6th digit: e_cbind_poly_newdata 1.25605 against 1.25603
# (1.2560478 and 1.2560308), a_binary_agq_offset p = 0.178141 against 0.178142 (0.17814147
# and 0.17814153, across the edge 0.1781415). Their fixed-effects tables are compared
# with the standard errors, z values and p-values to 5e-5 relative (the noise above
# with a margin of 2.5); every other character exactly (FIXEF_SE_NOISE).
FIXEF_SE_NOISE = {"a_binary_agq_offset", "e_cbind_poly_newdata"}
# A singular fit whose θ for `site` is 3.19e-5 (the boundary is 0): the fit determines it
# to the optimizer's tolerance (atol 2e-6 below), and VarCorr's 5 printed digits show that
# last digit (3.1943e-05 here, 3.1944e-05 in lme4); summary's 4 digits agree.
VARCORR_LAST_DIGIT = {"e_logical_expr_response_na_exclude"}
# Quasi-complete separation: every `trt == "high"` row is a success (a failure in
# d_bin_separation_low), so β_trthigh runs off to ±inf and the deviance is flat in it (it
# changes by ~1e-14 between lme4's 36.67 and our 34.40, where the optimizers' paths - 529
# and 506 evaluations - stop); θ ends on its bound 0 or within ~1e-7 of it as the last bits
# decide (check.boundary moves θ onto the bound when the deviance there is lower than the
# optimizer's value, by 1e-14 or so either way). Neither is determined by the fit: compared
# at lme4's (θ, β) (fit_accuracy.at_point), where the criterion and everything computed from
# the point follow the same arithmetic (there the variance of β_trthigh, from RX since the
# finite-difference Hessian is not positive definite, rests on working weights of ~1e-16 and
# agrees with lme4's to 1e-14 only since dμ/dη is lme4's dlogis: test_glmer_families.py's
# test_lme4_family_functions); the fit itself by what it determines
# (test_separation_fit_itself).
SEPARATION = {"d_bin_separation", "d_bin_separation_low"}
# nAGQ = 0 fits with a variance at its bound (two from a random generator of designs): the
# first stage is lme4's bobyqa (minqa's BOBYQA, lmeformula.bobyqa), which lands on θ = 0
# exactly here, as lme4's does (NLopt's BOBYQA, with 2n + 1 interpolation points, stopped
# within 1e-8 of it); test_boundary_fit_itself. The other components agree to the
# optimizer's tolerance, the paths' last steps being decided by the criteria's last bits. In
# a_logical_nagq0_crossed that moves a printed digit: θ_1 differs by 1.1e-8 relative and
# β_siteeast = 0.0035384997 here, 0.0035385017 in lme4, either side of the edge at which
# print() shows 0.003538 or 0.003539; so it is compared at lme4's θ (PRINT_EDGE).
NAGQ0_BOUNDARY = {"a_logical_nagq0_crossed", "f_random_1022_poi", "f_random_1031_bin_binary"}
PRINT_EDGE = {"a_logical_nagq0_crossed"}
# A criterion with jumps: the inverse Gaussian's Laplace deviance includes the family's aic,
# which takes the dispersion from the deviance residuals; PIRLS converges slowly here (a
# ratio of ~1/3 a step) along a valley where the penalised deviance is flat but the split
# between residual deviance and ‖u‖² is not, so where it stops (its tolerance 1e-7 on the
# penalised deviance) moves the aic: the criterion jumps by ~5e-3 when a parameter changes by
# 1e-4 (lme4's deriv12 gradient is 26.8 in every component, ours 26.1: both the jump over the
# step). Both criteria agree to 1e-15 at given parameters, jumps included
# (test_jumpy_criterion_at_given_parameters), and both fits end at -2 logLik 340.2797546
# (test_jumpy_fit_ends_where_lme4s_ends), failing lme4's gradient check; θ differs
# by 7e-5 (the second stage's Nelder-Mead stops on this rough surface where round-off
# decides), so the rest is compared at lme4's (θ, β).
JUMPY = {"c_invgauss_log_nested"}
# lme4 stops short: at nAGQ = 0 (probit, (x | g) + (1 | k)) its bobyqa stops at -2 logLik
# 160.6067 with θ_1 = θ_4 = 0, where a lower deviance, 160.3942, lies at θ = [0.074, -0.531,
# 1.3e-7, 0] (found by NLopt's BOBYQA, which this package used before). Ours, minqa's
# BOBYQA, stops there too, at the same deviance to 1e-12 (test_stops_where_lme4_stops). The
# stop is in a flat valley: lme4 ends after 54 or after 60 evaluations by the R session (its
# deviance function's value at one of the first points differs by an ulp between sessions,
# and the paths part), at θ_2, θ_3 = 0.49387, 0.13723 or 0.49401, 0.13670 (the fixture's), the
# deviance the same to 1e-15; ours takes 55 and ends at the former. Compared at the
# fixture's θ.
LME4_STOPS_SHORT = {"f_random_1049_bin_binary"}
AT_LME4 = SEPARATION | PRINT_EDGE | JUMPY | LME4_STOPS_SHORT
COMPARED = FITTED
# the quick loop (pytest -m "not slow") runs every comparison on these, one of each kind
# (quadrature with cbind and probit, an observation-level effect with an offset, a factor
# response under na.exclude, separation at lme4's point, poly() with new data, Gamma with
# quadrature); CI on all
QUICK = {"a_cbind_probit_agq", "b_poi_olre_offset", "a_factor_resp_first_level_na_exclude",
         "d_bin_separation", "e_cbind_poly_newdata", "c_gamma_log_agq"}


def cases(names: list[str]) -> list[Any]:
    """``names`` as parameters, those outside QUICK marked slow."""
    return [pytest.param(n, marks=() if n in QUICK else pytest.mark.slow) for n in names]


@cache
def fit_and_warnings(name: str) -> tuple[Any, tuple[str, ...]]:
    """The fixture's call, as the R script made it, and the warnings it raised."""
    fx = fixture(name)
    kw: dict[str, Any] = dict(fx["py"]) if isinstance(fx["py"], dict) else {}
    args = fx["args"] if isinstance(fx["args"], dict) else {}
    if "nAGQ" in args:
        kw["nAGQ"] = args["nAGQ"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        m = lmf.glmer(fx["formula"], frame_of(fx["columns"]), family=family_of(name),
                      data_name=fx["data_name"], **kw)
    return m, tuple(str(w.message) for w in seen)


def family_of(name: str) -> lmf.Family:
    fx = fixture(name)
    return getattr(lmf, fx["family"].replace(".", "_"))(link=fx["link"])  # type: ignore[no-any-return]


def fit(name: str) -> Any:
    return fit_and_warnings(name)[0]


@cache
def model(name: str) -> Any:
    """The fit, or for AT_LME4 the fit moved to lme4's θ (and β, where the fit's last stage
    optimised it: nAGQ > 0)."""
    m = fit(name)
    if name not in AT_LME4:
        return m
    fx = fixture(name)
    return at_point(m, as_list(fx["theta"]), as_list(fx["beta"]) if m.nAGQ > 0 else None)


def quiet(f: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``f`` with the warnings lme4 gives on the way too (vcov's fallback to RX)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kwargs)


@pytest.mark.parametrize("name", cases(COMPARED))
def test_estimates_and_likelihood(name: str) -> None:
    m, fx = model(name), fixture(name)
    close_glmm_estimates(m, fx, theta_atol=2e-6)
    close(m.weights, fx["weights"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", cases(COMPARED))
def test_vcov_fitted_residuals_predict(name: str) -> None:
    m, fx = model(name), fixture(name)
    p = len(as_list(fx["beta"]))
    ref = np.array(fx["vcov"], dtype=float).reshape(p, p)
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    # (the finite-difference Hessian's noise, as in test_sweep_glmer)
    assert np.max(np.abs(quiet(m.vcov).to_numpy() - ref) / scale) < 2e-3
    close(m.fitted(), fx["fitted"], rtol=1e-5, atol=1e-7)
    for kind in ("deviance", "pearson", "response", "working"):
        close(m.residuals(type=kind), fx[f"resid_{kind}"], rtol=1e-4, atol=1e-6)
    close(m.predict(), fx["predict_link"], rtol=1e-5, atol=1e-6)
    close(m.predict(type="response"), fx["predict_response"], rtol=1e-5, atol=1e-7)
    close(m.predict(re_form="~0"), fx["predict_population"], rtol=1e-5, atol=1e-6)
    close(m.predict(re_form="~0", type="response"), fx["predict_population_response"],
          rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", cases(COMPARED))
def test_ranef_condvar_varcorr(name: str) -> None:
    m, fx = model(name), fixture(name)
    re_ = close_ranef(m, fx["ranef"], rtol=1e-4, atol=1e-6)
    for grp, ref in fx["ranef"].items():
        pv = re_[grp].attrs["postVar"]
        if isinstance(ref["postVar"], dict):  # one array per term of the factor (x || g)
            for k, term in enumerate(ref["postVar"].values()):
                close(np.transpose(pv[k], (1, 2, 0)).ravel(), np.ravel(term), rtol=1e-4,
                      atol=1e-8)
        else:
            close(np.transpose(pv, (1, 2, 0)).ravel(order="F"), ref["postVar"], rtol=1e-4,
                  atol=1e-8)
    vc = m.VarCorr.as_data_frame()
    assert list(vc["grp"]) == as_list(fx["varcorr"]["grp"])
    assert [None if v != v else v for v in vc["var1"]] == as_list(fx["varcorr"]["var1"])
    close(vc["sdcor"].to_numpy(dtype=float), fx["varcorr"]["sdcor"], rtol=1e-4, atol=1e-6)
    if name in VARCORR_LAST_DIGIT:
        same_up_to_last_digit(str(m.VarCorr), fx["varcorr_text"])
    else:
        assert str(m.VarCorr) == fx["varcorr_text"]


@pytest.mark.parametrize("name", cases(COMPARED))
def test_printed_output(name: str) -> None:
    m, fx = model(name), fixture(name)
    ours, ours_print = quiet(lambda: (str(m.summary()), str(m)))
    assert ours_print == fx["print"]
    if name in FIXEF_SE_NOISE:
        same_but_standard_errors(ours, fx["summary"], rtol=5e-5)
    else:
        assert ours == fx["summary"]


def same_but_standard_errors(ours: str, theirs: str, rtol: float) -> None:
    """The summaries line for line, character for character, except the rows of the fixed
    effects table: the same name, estimate and significance stars, the standard error, z
    value and p-value within ``rtol`` relative or one unit of their last printed digit."""
    a, b = ours.splitlines(), theirs.splitlines()
    assert len(a) == len(b)
    start = b.index("Fixed effects:") + 2
    end = next(k for k in range(start, len(b)) if not b[k] or b[k].startswith("---"))
    for k, (la, lb) in enumerate(zip(a, b, strict=True)):
        if not start <= k < end or la == lb:
            assert la == lb
            continue
        ta, tb = la.split(), lb.split()
        assert len(ta) == len(tb), (la, lb)
        stars = 0 if _NUMBER.match(tb[-1]) or tb[-1].startswith("<") else 1
        assert ta[len(ta) - stars:] == tb[len(tb) - stars:], (la, lb)
        ta, tb = ta[:len(ta) - stars], tb[:len(tb) - stars]
        assert ta[:-3] == tb[:-3], (la, lb)  # the name and the estimate
        for x, y in zip(ta[-3:], tb[-3:], strict=True):  # SE, z, p
            assert_printed_close(x, y, rtol, (la, lb))


@pytest.mark.parametrize("name", cases(COMPARED))
def test_coef(name: str) -> None:
    m, fx = model(name), fixture(name)
    close_coef(m, fx["coef"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", cases(COMPARED))
def test_confint_wald(name: str) -> None:
    m, fx = model(name), fixture(name)
    ci = quiet(lmf.confint, m, method="Wald")
    ref = fx["confint_wald"]
    assert list(ci.index) == as_list(ref["rownames"])
    assert list(ci.columns) == as_list(ref["colnames"])
    vals = [[np.nan if v is None else v for v in row] for row in ref["values"]]
    close(ci.to_numpy(), vals, rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("name", cases([n for n in COMPARED if n not in AT_LME4]))
def test_warnings_and_messages(name: str) -> None:
    # lme4's warnings and messages (the singular-fit message, the convergence checks',
    # the rank-deficiency message, whose text here also names the columns dropped)
    _, seen = fit_and_warnings(name)
    theirs = {w.removeprefix("message: ") for w in as_list(fixture(name)["warnings"] or [])}
    rank = "fixed-effect model matrix is rank deficient so dropping 1 column / coefficient"
    ours = {rank if w.startswith(rank) else w for w in seen}
    assert ours == theirs


def test_rank_deficient_names_the_dropped_column() -> None:
    _, seen = fit_and_warnings("b_poi_rank_deficient")
    assert "fixed-effect model matrix is rank deficient so dropping 1 column / coefficient " \
        "(x2)" in seen
    assert "x2" not in list(fit("b_poi_rank_deficient").fixef.index)


@pytest.mark.parametrize("name", cases([n for n in COMPARED if "newdata" in fixture(n)]))
def test_predict_newdata(name: str) -> None:
    # with the random effects (new levels and NA rows allowed) and without (re.form = NA),
    # on the link and the response scales; offsets and poly()/scale()/log() terms of the
    # formula evaluated on the new rows as lme4 does
    m, fx = model(name), fixture(name)
    nd = frame_of(fx["newdata"])
    close_glmm_new_levels(m, fx, nd)
    close(m.predict(newdata=nd, re_form="~0"), fx["predict_newdata_population"], rtol=1e-5,
          atol=1e-7)
    close(m.predict(newdata=nd, re_form="~0", type="response"),
          fx["predict_newdata_population_response"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", cases([n for n in COMPARED if "anova" in fixture(n)]))
def test_anova_against_reduced_fit(name: str) -> None:
    fx = fixture(name)
    an = fx["anova"]
    kw: dict[str, Any] = dict(fx["py"]) if isinstance(fx["py"], dict) else {}
    if isinstance(fx["args"], dict) and "nAGQ" in fx["args"]:
        kw["nAGQ"] = fx["args"]["nAGQ"]
    m0 = quiet(lmf.glmer, an["reduced"], frame_of(fx["columns"]), family=family_of(name),
               data_name="d", **kw)
    close(m0.logLik().value, an["reduced_logLik"], rtol=1e-9, atol=0)
    tab = lmf.anova(m0=m0, m1=fit(name))
    assert str(tab) == an["text"]
    assert list(tab.index) == as_list(an["rownames"])
    for col, ref in an["values"].items():
        close(tab[col].to_numpy(dtype=float), ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", REFUSED)
def test_refusals_with_lme4s_message(name: str) -> None:
    with pytest.raises(lmf.errors.LmeFormulaError) as err:
        fit(name)
    assert str(err.value) == fixture(name)["error"]


# --- the cases the fit does not determine ---------------------------------------------------

@pytest.mark.parametrize("name", sorted(SEPARATION))
def test_separation_fit_itself(name: str) -> None:
    """What the separated fit determines agrees with lme4: the criterion, θ (at its bound to
    within 2e-7), every coefficient but the separated one, the fitted probabilities and
    lme4's messages."""
    m, fx = fit(name), fixture(name)
    close(m.logLik().value, fx["logLik"], rtol=1e-12, atol=0)
    close(m.theta, fx["theta"], rtol=0, atol=2e-7)
    names = list(m.fixef.index)
    keep = [k for k, nm in enumerate(names) if nm != "trthigh"]
    close(m.fixef.to_numpy()[keep], np.asarray(fx["beta"])[keep], rtol=1e-6, atol=0)
    sign = np.sign(fx["beta"][names.index("trthigh")])
    assert m.fixef["trthigh"] * sign > 30 and fx["beta"][names.index("trthigh")] * sign > 30
    close(m.fitted(), fx["fitted"], rtol=1e-6, atol=1e-9)
    # the singular-fit message (isSingular's tolerance 1e-4 on θ, at 0 in lme4 or 4e-8 here)
    _, seen = fit_and_warnings(name)
    assert set(seen) == {w.removeprefix("message: ") for w in as_list(fx["warnings"])}
    assert m.isSingular()


@pytest.mark.parametrize("name", sorted(NAGQ0_BOUNDARY))
def test_boundary_fit_itself(name: str) -> None:
    """The nAGQ = 0 fits whose θ lme4 puts on a bound exactly (NAGQ0_BOUNDARY): ours is on
    it (exactly, on this machine, as lme4's), the other components lme4's to the
    optimizer's tolerance, with the same deviance to 1e-12 relative, singular, with lme4's
    message; the criterion at lme4's θ is lme4's."""
    m, fx = fit(name), fixture(name)
    theta = np.asarray(as_list(fx["theta"]), dtype=float)
    ours = m.theta.to_numpy()
    # θ to the optimizer's tolerance: its final trust-region radius, rhoend = 2e-7 here.
    # With the criterion's last bits perturbed (4e-16 relative, as another BLAS kernel
    # perturbs them) the bound component ended at 0 in 19 of 24 runs and at 1.6e-8 to
    # 4.2e-8 in the others; lme4's too would end off 0 under other round-off
    close(ours, theta, rtol=1e-6, atol=2e-7)
    devfun = lmf.glmer(fx["formula"], frame_of(fx["columns"]), family=family_of(name),
                       nAGQ=0, devFunOnly=True)
    at_lme4 = devfun(theta)
    assert devfun(ours) == pytest.approx(at_lme4, rel=1e-12)
    assert m.optinfo.fval == pytest.approx(at_lme4, rel=1e-12)
    close(m.logLik().value, fx["logLik"], rtol=1e-12, atol=0)
    assert m.isSingular() and fx["isSingular"]
    _, seen = fit_and_warnings(name)
    assert set(seen) == {w.removeprefix("message: ") for w in as_list(fx["warnings"])}


def test_stops_where_lme4_stops() -> None:
    """f_random_1049_bin_binary (LME4_STOPS_SHORT): our first stage (minqa's BOBYQA) stops
    where lme4's does, short of the minimum: the same -2 logLik to 1e-12, θ_1 = θ_4 = 0
    exactly, θ_2 and θ_3 in the flat valley between lme4's two stops; our deviance
    function at lme4's θ gives lme4's -2 logLik, and 0.21 below lies a lower point."""
    name = "f_random_1049_bin_binary"
    m, fx = fit(name), fixture(name)
    theta = m.theta.to_numpy()
    assert theta[0] == 0 and theta[3] == 0
    # (ours: 55 evaluations, at lme4's 54-evaluation stop; with the criterion's last bits
    # perturbed, 4e-16 relative, 54 to 59 evaluations, at either of lme4's stops)
    assert 0.4938 < theta[1] < 0.4941 and 0.1366 < theta[2] < 0.1373
    assert 54 <= m.optinfo.feval <= 60
    assert -2 * m.logLik().value == pytest.approx(-2 * fx["logLik"], rel=1e-12)
    devfun = lmf.glmer(fx["formula"], frame_of(fx["columns"]), family=family_of(name),
                       nAGQ=0, devFunOnly=True)
    at_lme4 = devfun(np.asarray(as_list(fx["theta"]), dtype=float))
    assert at_lme4 == pytest.approx(-2 * fx["logLik"], rel=1e-12)
    assert at_lme4 - devfun(np.array([0.074, -0.531, 1.3e-7, 0.0])) > 0.2
    assert m.isSingular() and fx["isSingular"]


def test_jumpy_criterion_at_given_parameters() -> None:
    """c_invgauss_log_nested (JUMPY): both deviance functions, the first stage's from the
    start and the second stage's from lme4's first-stage end, agree with lme4's to 1e-12
    relative at given parameters, on both sides of a jump (see JUMPY)."""
    fx = fixture("c_invgauss_log_nested")
    cr = fx["criteria"]
    d, fam = frame_of(fx["columns"]), family_of("c_invgauss_log_nested")
    f0 = lmf.glmer(fx["formula"], d, family=fam, nAGQ=0, devFunOnly=True)
    for point, value in zip(cr["devfun0"]["points"], cr["devfun0"]["values"], strict=True):
        assert f0(np.asarray(point)) == pytest.approx(value, rel=1e-12)
    f0(np.asarray(cr["stage1_theta"]))  # lme4's first stage ends here: lp0 from this point
    f0.update(1)
    values = [f0(np.asarray(p)) for p in cr["devfun1"]["points"]]
    assert values == pytest.approx(cr["devfun1"]["values"], rel=1e-12)
    # the jump: +1e-4 in θ_1 costs 5.4e-3 (where -1e-4 costs 3e-7)
    assert values[1] - values[0] > 5e-3 and abs(values[2] - values[0]) < 1e-6
    # lme4's point evaluated on lme4's path is lme4's -2 logLik
    assert values[0] == pytest.approx(-2 * fx["logLik"], rel=1e-12)


@pytest.mark.slow  # (a fit of 0.3 s)
def test_jumpy_fit_ends_where_lme4s_ends() -> None:
    """The same -2 logLik as lme4's (3.6e-12 relative here; up to 4.7e-9 with the criterion's
    last bits perturbed by 4e-16: where the second stage's Nelder-Mead stops on this rough
    surface is decided by round-off), failing lme4's gradient check as lme4's fit does."""
    m, seen = fit_and_warnings("c_invgauss_log_nested")
    fx = fixture("c_invgauss_log_nested")
    assert any(w.startswith("Model failed to converge with max|grad| = 0.03") for w in seen)
    assert as_list(fx["warnings"])[0].startswith("Model failed to converge with max|grad|")
    # the gradients are the jump over deriv12's step: ~26 in every component, in both
    np.testing.assert_allclose(m.optinfo.derivs.gradient, fx["criteria"]["gradient"],
                               rtol=0.05)
    assert m.logLik().value == pytest.approx(fx["logLik"], rel=1e-8)
