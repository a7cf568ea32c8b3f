"""``ns()`` and ``bs()`` (package splines), ``cut()``, ``C()`` and ``droplevels()`` in R-syntax
formulas, against R 4.2.2 and lme4 1.1-31 (fixtures from tools/R/make_fixtures_splines.R:
random data of three seeds, x with NA, factors with unused levels, an ordered factor).

Compared, by behaviour:

* the fixed-effects matrix X of lFormula (column names, values, rows kept) and R's warnings
  for each function's arguments (df, knots, degree, intercept, Boundary.knots; breaks,
  labels, right, include.lowest, dig.lab, ordered_result; C()'s contrast names, functions,
  ``how.many`` and ``base``);
* the same terms on new data beyond the training range, with the training data's knots
  (R's makepredictcall): ns continued linearly, bs by its polynomial pieces with R's
  warning; cut(x, k) recomputed on the new data, and so refused for its new levels, as R;
* the random-effects structures where these enter random terms (Zt, cnms, flist), and
  lme4's refusal of ``(1 | cut(x, 3))`` (its factorize makes x a factor first);
* lmer fits (at the optimizer's precision; at lme4's θ the estimates, criterion, fitted
  values, printed summary, lmerTest's anova) and predictions on new data, population and
  conditional; glmer fits (binomial, Poisson) and their predictions;
* R's errors and warnings for bad calls.

Numbers: jsonlite writes 15 significant digits, so a basis value near 1 is R's to about 5e-16
absolutely; the bases are compared at 1e-13 (R's and these recursions agree to the last
bits but for the order of a few BLAS sums).
"""

from __future__ import annotations

import json
import re
import warnings
from functools import cache
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES
from fit_accuracy import (
    accuracy,
    assert_same_optimum,
    assert_text_up_to_ties,
    assert_within,
    at_point,
)
from lmertest_fixtures import assert_table, ref_table
from sweep_cases import (
    as_list,
    close,
    close_glmm_estimates,
    frame_of,
    na_floats,
    printed_values,
)

import lmeformula as lmf
from lmeformula.ddf import HessianWarning
from lmeformula.errors import FormulaError, LmeFormulaError
from lmeformula.prediction import _fixed_matrix
from lmeformula.splines import bs_basis, ns_basis, quantile7, seq_length_out

SPLINES = FIXTURES / "splines"


@cache
def fixture(name: str) -> dict[str, Any]:
    return json.loads((SPLINES / f"{name}.json").read_text())  # type: ignore[no-any-return]


@cache
def data(seed: int) -> pd.DataFrame:
    bases = fixture("bases")
    return frame_of(bases["columns"][as_list(bases["seeds"]).index(seed)])


@cache
def newdata(seed: int) -> pd.DataFrame:
    bases = fixture("bases")
    return frame_of(bases["newdata"][as_list(bases["seeds"]).index(seed)])


def matrix(values: Any, ncol: int) -> np.ndarray:
    """A fixture's matrix (rows of values, None for NA) as floats."""
    rows = values if values and isinstance(values[0], list) else [as_list(values)]
    out = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
    return out.reshape(-1, ncol)


def recorded(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        value = fn(*args, **kwargs)
    return value, [str(w.message) for w in seen]


def same_warnings(ours: list[str], theirs: list[str]) -> None:
    """R's warnings and messages (lme4's "message: ..." without the prefix); the package's
    rank-deficiency warning names the dropped columns after lme4's text."""
    theirs_ = {w.removeprefix("message: ") for w in theirs}
    ours_ = {re.sub(r"(so dropping \d+ columns? / coefficients?) \(.*\)$", r"\1", w)
             for w in ours}
    assert ours_ == theirs_


BASES = fixture("bases")["cases"]


def _id(case: dict[str, Any]) -> str:
    return f"{case['seed']}-{case.get('rhs') or case.get('formula')}"


# --- the fixed-effects matrix -----------------------------------------------------------------

@pytest.mark.parametrize("case", BASES, ids=_id)
def test_fixed_matrix_columns_values_and_warnings(case: dict[str, Any]) -> None:
    pf, seen = recorded(lmf.lFormula, f"y ~ {case['rhs']} + (1 | g)", data(case["seed"]))
    names = as_list(case["colnames"])
    assert list(pf.X.columns) == names
    np.testing.assert_allclose(pf.X.to_numpy(), matrix(case["X"], len(names)), rtol=1e-13,
                               atol=1e-13)
    assert [int(i) + 1 for i in pf.frame.rows] == as_list(case["rows"])
    same_warnings(seen, as_list(case["warnings"]))


@pytest.mark.parametrize("case", BASES, ids=_id)
def test_terms_on_new_data_use_the_training_knots(case: dict[str, Any]) -> None:
    """predict's X on new data: x from -1.5 to 25 around a training range of [0.5, 9.5],
    and NA."""
    pf = recorded(lmf.lFormula, f"y ~ {case['rhs']} + (1 | g)", data(case["seed"]))[0]
    nd = newdata(case["seed"])
    if case.get("new_error"):
        with pytest.raises(LmeFormulaError) as err:
            _fixed_matrix(SimpleNamespace(lformula=pf), nd)
        assert same_levels_message(str(err.value), case["new_error"])
        return
    (X, _, na), seen = recorded(_fixed_matrix, SimpleNamespace(lformula=pf), nd)
    expected = matrix(case["newX"], pf.X.shape[1])
    # rows with a missing value are predicted NA whatever X holds there (R's model.matrix
    # has NA in them under na.pass; the package flags them)
    assert np.array_equal(na, np.isnan(expected).any(axis=1))
    np.testing.assert_allclose(X[~na], expected[~na], rtol=1e-12, atol=1e-13)
    # lme4's predict evaluates its model frame on new data in suppressWarnings: neither bs()
    # beyond its boundary knots (R's "some 'x' values beyond boundary knots may cause
    # ill-conditioned bases", recorded where the R script built the frame itself) nor
    # model.frame's "contrasts dropped from factor C(f, sum)" warn there
    assert seen == []


def same_levels_message(ours: str, theirs: str) -> bool:
    """R's "factor cut(x, 3) has new levels (-1.51,3.33], (3.33,8.17], (8.17,13]": the new
    data's intervals, in their order."""
    return ours == theirs


# --- random-effects terms ---------------------------------------------------------------------

@pytest.mark.parametrize("case", fixture("structures")["cases"], ids=_id)
def test_random_terms(case: dict[str, Any]) -> None:
    formula = f"y ~ {case['rhs']}"
    d = data(case["seed"])
    control = lmf.lmerControl(check_nobs_vs_nRE="ignore")
    if case["error"]:
        # lme4 evaluates a grouping expression in the frame with the variables it names made
        # factors (factorize): cut(x, 3) of a factor, and droplevels(fu) where the frame
        # holds droplevels(fu) but no fu, fail there
        with pytest.raises(LmeFormulaError) as err:
            lmf.lFormula(formula, d, control=control)
        inner = re.search(r"Error in [^:]*: (.*)\n", case["error"])
        assert inner is not None
        assert str(err.value).startswith("couldn't evaluate grouping factor")
        assert inner.group(1).strip() in str(err.value)
        return
    pf, seen = recorded(lmf.lFormula, formula, d, control=control)
    same_warnings(seen, as_list(case["warnings"]))
    rt = pf.reTrms
    assert [list(c) for c in rt.cnms] == [as_list(c) for c in case["cnms"].values()]
    assert {k: [str(c) for c in v.categories] for k, v in rt.flist.items()} == {
        k: as_list(v) for k, v in case["flist_levels"].items()}
    zt = rt.Zt.toarray()
    np.testing.assert_allclose(zt, matrix(case["Zt"], zt.shape[1]), rtol=1e-13, atol=1e-13)
    close(rt.theta, case["theta"], rtol=0, atol=0)


# --- lmer fits and predictions ----------------------------------------------------------------

FITS = fixture("fits")["cases"]


@cache
def fit(seed: int, formula: str) -> tuple[lmf.LmerMod, list[str]]:
    return recorded(lmf.lmer, formula, data(seed), data_name="d")  # type: ignore[no-any-return]


def fit_case(case: dict[str, Any]) -> lmf.LmerMod:
    return fit(case["seed"], case["formula"])[0]


@pytest.mark.parametrize("case", FITS, ids=_id)
def test_fit(case: dict[str, Any]) -> None:
    m, seen = fit(case["seed"], case["formula"])
    same_warnings(seen, as_list(case["warnings"]))
    assert list(m.fixef.index) == as_list(case["fixef_names"])
    assert list(lmf.getME(m, "X").columns) == as_list(case["X_colnames"])
    assert [list(c) for c in lmf.getME(m, "cnms")] == [as_list(c) for c in case["cnms"].values()]
    assert m.isSingular() == case["isSingular"]
    theta = as_list(case["theta"])
    optimum = assert_same_optimum(m, theta, case["crit"])
    acc = accuracy(m, theta, optimum, lambda mm: mm.fixef.to_numpy())
    assert_within(m.fixef, as_list(case["beta"]), rtol=1e-6, atol=1e-7 + acc)


@pytest.mark.parametrize("case", FITS, ids=_id)
def test_fit_at_lme4s_theta(case: dict[str, Any]) -> None:
    m = at_point(fit_case(case), as_list(case["theta"]))
    close(m.fixef, case["beta"], rtol=1e-8, atol=1e-10)
    close(m.sigma, case["sigma"], rtol=1e-8, atol=0)
    close(m.REMLcrit(), case["crit"], rtol=1e-10, atol=0)
    close(m.fitted(), case["fitted"], rtol=1e-7, atol=1e-9)
    values = printed_values(case, na_floats(case["resid_scaled"]), case["crit"])
    assert_text_up_to_ties(str(m.summary()), case["summary"], values)
    assert_text_up_to_ties(str(m), case["print"], values)


@pytest.mark.parametrize("case", FITS, ids=_id)
def test_lmertest_anova(case: dict[str, Any]) -> None:
    """lmerTest's Satterthwaite anova of types I-III: spline terms of several columns, and
    type III's hypotheses mapped onto C()'s contrasts."""
    m = at_point(fit_case(case), as_list(case["theta"]))
    for type_ in (1, 2, 3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HessianWarning)
            ours = lmf.anova(m, type=type_, ddf="Satterthwaite")
        assert_table(ours, ref_table(case[f"anova{type_}"]))


@pytest.mark.parametrize("case", FITS, ids=_id)
def test_predictions_on_new_data(case: dict[str, Any]) -> None:
    """New data beyond the training range (the training knots), with NA in x (NA
    predictions), conditional and population predictions; R's warnings (bs beyond its
    boundary knots) and errors (cut(x, 3)'s breaks recomputed on the new data)."""
    m = at_point(fit_case(case), as_list(case["theta"]))
    nd = newdata(case["seed"])
    for what, kwargs in (("newdata", {}), ("population", {"re_form": np.nan})):
        if case.get(f"predict_{what}_error"):
            with pytest.raises(LmeFormulaError) as err:
                m.predict(newdata=nd, **kwargs)
            assert same_levels_message(str(err.value), case[f"predict_{what}_error"])
            continue
        pred, seen = recorded(m.predict, newdata=nd, **kwargs)
        close(pred, case[f"predict_{what}"], rtol=1e-7, atol=1e-9)
        assert sorted(set(seen)) == sorted(set(as_list(case[f"predict_{what}_warnings"])))


@pytest.mark.parametrize("case", fixture("glmer_fits")["cases"], ids=_id)
def test_glmer_fits_and_predictions(case: dict[str, Any]) -> None:
    """glmer (binomial, Poisson) with ns(), bs() and C(), cut(): estimates, likelihoods and
    structures, and predictions on new data beyond the training range (link and response
    scales, conditional and population)."""
    fitted, seen = recorded(lmf.glmer, case["formula"], data(case["seed"]),
                            family=case["family"])
    same_warnings(seen, as_list(case["warnings"]))
    # the same optimum: the log-likelihoods agree to 1e-9 relative (seed 47's Poisson fit
    # with bs() and C() is flat there: ours stops 7e-11 below lme4's log-likelihood with β
    # 3e-5 from lme4's, both within their optimizers' tolerances); the rest is compared at
    # lme4's (θ, β), where everything computed from the point agrees to rounding
    close(fitted.logLik().value, case["logLik"], rtol=1e-9, atol=0)
    m = at_point(fitted, as_list(case["theta"]), as_list(case["beta"]))
    close_glmm_estimates(m, case, theta_atol=0)
    nd = newdata(case["seed"])
    close(m.predict(newdata=nd), case["predict_newdata"], rtol=1e-5, atol=1e-7)
    close(m.predict(newdata=nd, type="response"), case["predict_newdata_response"],
          rtol=1e-5, atol=1e-7)
    close(m.predict(newdata=nd, re_form=np.nan, type="response"), case["predict_population"],
          rtol=1e-5, atol=1e-7)


# --- bad calls --------------------------------------------------------------------------------

# R's own message is an accident of its internals here: ns() of a factor reaches splineDesign
# with knots that are NA ("missing value where TRUE/FALSE needed"); the package names the
# problem instead
_OWN_MESSAGE = {"ns(f)": "ns() needs a numeric 'x'", "bs(f, df = 3)": "bs() needs a numeric 'x'"}


@pytest.mark.parametrize("case", fixture("errors")["cases"], ids=lambda c: c["rhs"])
def test_bad_calls(case: dict[str, Any]) -> None:
    d = data(fixture("bases")["seeds"][0])
    formula = f"y ~ {case['rhs']} + (1 | g)"
    if case["error"]:
        with pytest.raises(FormulaError) as err:
            lmf.lFormula(formula, d)
        assert _OWN_MESSAGE.get(case["rhs"], case["error"]) in str(err.value)
        return
    pf, seen = recorded(lmf.lFormula, formula, d)
    same_warnings(seen, as_list(case["warnings"]))
    assert list(pf.X.columns) == as_list(case["colnames"])


# --- the numerics on their own ----------------------------------------------------------------

def test_seq_and_quantile_as_r_computes_them() -> None:
    # seq.int(0, 1, length.out = 4): the upper half counted down from 1, so 1 - 1/3
    probs = seq_length_out(0.0, 1.0, 4)
    assert probs[2] == 1 - 1 / 3 and probs[1] == 1 / 3
    # type 7: (1 - h) x[lo] + h x[hi]; equal order statistics are taken as they are
    assert quantile7(np.array([3.0, 1.0, 2.0, 10.0]), np.array([0.5]))[0] == 2.5
    assert quantile7(np.array([1.0, 1.0, 1.0]), np.array([0.3]))[0] == 1.0


def test_ns_is_linear_and_bs_polynomial_beyond_the_boundary() -> None:
    x = np.linspace(0, 10, 41)
    ns = ns_basis(x, df=4)
    far = np.array([-3.0, -2.0, -1.0, 11.0, 12.0, 13.0])
    out = ns_basis(far, knots=ns.knots, boundary=ns.boundary_knots).values
    # second differences of equally spaced points vanish on each side: linear
    assert np.allclose(np.diff(out[:3], 2, axis=0), 0, atol=1e-12)
    assert np.allclose(np.diff(out[3:], 2, axis=0), 0, atol=1e-12)
    bs = bs_basis(x, df=5)
    beyond = bs_basis(far, knots=bs.knots, degree=3, boundary=bs.boundary_knots)
    assert beyond.warnings == (
        "some 'x' values beyond boundary knots may cause ill-conditioned bases",)
    inside = bs_basis(x[1:-1], knots=bs.knots, degree=3, boundary=bs.boundary_knots)
    assert inside.warnings == ()
    np.testing.assert_allclose(inside.values, bs.values[1:-1], rtol=0, atol=1e-15)
