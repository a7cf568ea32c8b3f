"""lmerTest's ``step`` (backward elimination of random- then fixed-effects terms) against R:
the reduced tables, the printed text, the model found, and the arguments' behaviour and
errors (fixtures from tools/R/make_fixtures_step.R).

The tables come from a chain of optimised fits, each refit's optimum determined to the
optimizer's precision (tests/fit_accuracy.py): a log-likelihood within E/2 of R's, an AIC
within E (E: ``excess_bound`` of the fit whose criterion it is, from the criterion's Hessian
at its optimum), a likelihood-ratio statistic within the sum of its two models' E, its
p-value within the χ² density times that; the F-tests' columns within 1e-6 relative plus
``accuracy``, their largest first-order change over the region the model's optimum is
determined to (1e-4 to 4e-3 relative for these models). Our refits take lme4's path: the
tables agree with R's to 2e-7. The fixture also has R's chain of models (their formulas and
θ): each of ours is the same model at the same optimum, and its F-tests computed at lme4's
θ agree with R's rows to 1e-6 (they differ there only by the methods' numerics). A least
squares fit (the ``lm`` refit when no random effects are left) is exact up to rounding.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES
from fit_accuracy import (
    Optimum,
    accuracy,
    assert_same_optimum,
    assert_within,
    at_point,
    criterion_hessian,
    excess_bound,
)
from scipy import stats
from sweep_cases import frame_of

import lmeformula as lmf
from lmeformula.ddf import InvalidKeepWarning, LinearModelFit, StepResult
from lmeformula.ddf.ranova import ranova_reductions
from lmeformula.errors import ArgumentError, LmeFormulaError

REF: dict[str, Any] = json.loads((FIXTURES / "step.json").read_text())
CASES: dict[str, Any] = REF["cases"]
# the relative rounding of two computations of the same number (a least-squares fit by
# another factorisation, a log-likelihood's sums in another order)
ROUNDING = 1e-10
# the brief's tolerance for numbers of optimised fits, on top of their accuracy
RTOL_FIT = 1e-6
EXACT = ("Eliminated", "npar", "Df", "NumDF")


def as_list(x: Any) -> list[Any]:
    """jsonlite writes vectors of length one as scalars."""
    return x if isinstance(x, list) else [x]


def floats(x: Any) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in as_list(x)], dtype=float)


def data(name: str) -> pd.DataFrame:
    if name in REF["data"]:
        return frame_of(REF["data"][name])
    return lmf.datasets.load(name)


def step_args(name: str) -> dict[str, Any]:
    args = CASES[name]["args"]
    return dict(args) if isinstance(args, dict) else {}


@cache
def fitted(name: str) -> lmf.LmerMod:
    case = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the singular fits of sim_to_lm
        return lmf.lmer(case["formula"], data(case["data"]), REML=case["REML"])


@cache
def stepped(name: str) -> tuple[StepResult, tuple[str, ...]]:
    """step's result and the messages of its package warnings (not the refits' singular-fit
    warnings, which R gives as messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = lmf.step(fitted(name), **step_args(name))
    return s, tuple(str(w.message) for w in caught if w.category is InvalidKeepWarning)


def assert_frame_shape(ours: pd.DataFrame, ref: dict[str, Any]) -> None:
    assert list(ours.index) == as_list(ref["rownames"] or [])
    assert list(ours.columns) == as_list(ref["colnames"])
    for col in EXACT:
        if col in ours.columns:
            np.testing.assert_array_equal(ours[col].to_numpy(float), floats(ref["columns"][col]))


# ---- the accuracy of each row: the model it was computed on ----------------------------

@cache
def excess(name: str, index: int) -> float:
    """E of the chain's model ``index`` (``StepResult.models``): 0 for a least-squares fit."""
    return _excess(stepped(name)[0].models[index])


def _excess(fit: lmf.LmerMod | LinearModelFit | None) -> float:
    if fit is None or isinstance(fit, LinearModelFit):
        return 0.0
    theta = np.asarray(fit.theta, dtype=float)
    return excess_bound(criterion_hessian(fit, theta), theta)


@cache
def kept_reductions(name: str) -> dict[str, float]:
    """E of the reduced models of the last ranova (the rows not eliminated)."""
    s = stepped(name)[0]
    last = len(s.random) - 1 - int((s.random["Eliminated"] == 0).sum())
    model = s.models[last]
    if isinstance(model, LinearModelFit):
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reductions = ranova_reductions(model)[1]
    return {r.label: _excess(r.fit) for r in reductions}


def random_bounds(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Each row's E and the E of the model it was compared with."""
    s = stepped(name)[0]
    elim = s.random["Eliminated"].to_numpy(float)
    kept = kept_reductions(name)
    n_elim = int(np.nansum(elim > 0))
    own, full = [], []
    for label, e in zip(s.random.index, elim, strict=True):
        if math.isnan(e):
            own.append(excess(name, 0))
            full.append(0.0)
        elif e > 0:
            own.append(excess(name, int(e)))
            full.append(excess(name, int(e) - 1))
        else:
            own.append(kept[label])
            full.append(excess(name, n_elim))
    return np.array(own), np.array(full)


F_COLUMNS = ["Sum Sq", "Mean Sq", "DenDF", "F value", "Pr(>F)"]


@cache
def drop1_accuracy(name: str, index: int) -> pd.DataFrame:
    """The accuracy of the drop1 table of the chain's model ``index``: its F columns'
    largest first-order change over the region its optimum is determined to."""
    s = stepped(name)[0]
    model = s.models[index]
    assert isinstance(model, lmf.LmerMod)
    ddf = step_args(name).get("ddf", "Satterthwaite")
    terms = list(lmf.drop1(model, ddf=ddf).index)
    theta = np.asarray(model.theta, dtype=float)
    h = criterion_hessian(model, theta)
    optimum = Optimum(h, excess_bound(h, theta))

    def value(m: lmf.LmerMod) -> np.ndarray:
        return lmf.drop1(m, ddf=ddf)[F_COLUMNS].to_numpy(dtype=float)

    acc = accuracy(model, theta, optimum, value).reshape(len(terms), len(F_COLUMNS))
    return pd.DataFrame(acc, index=terms, columns=F_COLUMNS)


# ---- the tables ---------------------------------------------------------------------------

def within(ours: Any, theirs: Any, rtol: float, bound: Callable[[], Any]) -> None:
    """``assert_within(ours, theirs, rtol, bound())``, the bound (its models' Hessians and
    refits) computed only when the values are not within ``rtol`` alone: the same
    assertion, at a fraction of the cost where our refits agree with R's to rounding."""
    try:
        assert_within(ours, theirs, rtol, 0.0)
    except AssertionError:
        assert_within(ours, theirs, rtol, bound())


@pytest.mark.parametrize("name", list(CASES))
def test_random_table(name: str) -> None:
    s = stepped(name)[0]
    ref = CASES[name]["random"]
    assert_frame_shape(s.random, ref)
    cols = ref["columns"]
    # (an LRT of 0 in R where two fits of the same likelihood agree to the last bit:
    # sim_to_lm's lmer fit at θ = 0 and its lm refit; ours differ by 6e-14): the rounding
    # of a difference of log-likelihoods is relative to them
    rounding = 1e-12 * cols_scale(cols)
    bounds = cache(lambda: random_bounds(name))
    within(s.random["logLik"], floats(cols["logLik"]), ROUNDING, lambda: bounds()[0] / 2)
    within(s.random["AIC"], floats(cols["AIC"]), ROUNDING, lambda: bounds()[0])
    lrt, pr = floats(cols["LRT"]), floats(cols["Pr(>Chisq)"])
    ours_lrt = s.random["LRT"].to_numpy(float)
    ours_p = s.random["Pr(>Chisq)"].to_numpy(float)
    assert math.isnan(ours_lrt[0]) and math.isnan(ours_p[0])
    within(ours_lrt[1:], lrt[1:], ROUNDING, lambda: sum(bounds())[1:] + rounding)
    df = floats(cols["Df"])
    for i in range(1, len(lrt)):
        if abs(ours_p[i] - pr[i]) <= ROUNDING * pr[i]:
            continue
        # the χ² density times the LRT's bound (its largest value over the interval: at an
        # end or at the mode, df - 2)
        d = float(sum(bounds())[i]) + rounding
        grid = [max(lrt[i] - d, 0.0), lrt[i] + d] + (
            [df[i] - 2] if lrt[i] - d < df[i] - 2 < lrt[i] + d else [])
        density = max(float(stats.chi2.pdf(g, df[i])) for g in grid if g > 0)
        assert abs(ours_p[i] - pr[i]) <= density * d + ROUNDING * pr[i], \
            (ours_p[i], pr[i], density * d)


def cols_scale(cols: dict[str, Any]) -> float:
    """The largest log-likelihood of a table: the scale of its rounding."""
    return float(np.nanmax(np.abs(floats(cols["logLik"]))))


@pytest.mark.parametrize("name", list(CASES))
def test_fixed_table(name: str) -> None:
    s = stepped(name)[0]
    ref = CASES[name]["fixed"]
    assert_frame_shape(s.fixed, ref)
    elim = s.fixed["Eliminated"].to_numpy(float)
    first = len(s.models) - 1 - int((elim > 0).sum())  # the model the fixed reduction starts at
    for i, (term, e) in enumerate(zip(s.fixed.index, elim, strict=True)):
        index = first + int(e) - 1 if e > 0 else len(s.models) - 1
        model = s.models[index]
        for col in s.fixed.columns:
            if col in EXACT:
                continue
            ours = s.fixed[col].iloc[i]
            theirs = floats(ref["columns"][col])[i]
            if isinstance(model, LinearModelFit):
                assert_within(ours, theirs, ROUNDING, 0.0)
            else:
                within(ours, theirs, RTOL_FIT,
                       lambda: drop1_accuracy(name, index).loc[term, col])  # noqa: B023


@pytest.mark.parametrize("name", list(CASES))
def test_chain_of_models_is_r_s(name: str) -> None:
    # each model of the elimination is R's: the same formula, at lme4's optimum
    s = stepped(name)[0]
    chain = CASES[name]["chain"]
    assert [m.formula for m in s.models] == [c["formula"] for c in chain]
    for model, ref in zip(s.models, chain, strict=True):
        assert isinstance(model, LinearModelFit) == (ref["class"] == "lm")
        if isinstance(model, lmf.LmerMod):
            assert_same_optimum(model, as_list(ref["theta"]), None)


@pytest.mark.parametrize("name", list(CASES))
def test_fixed_table_at_lme4_optimum(name: str) -> None:
    # each row's F-test computed on its model at lme4's θ: R's to 1e-6 relative
    s = stepped(name)[0]
    ref = CASES[name]["fixed"]
    chain = CASES[name]["chain"]
    ddf = step_args(name).get("ddf", "Satterthwaite")
    elim = s.fixed["Eliminated"].to_numpy(float)
    first = len(s.models) - 1 - int((elim > 0).sum())
    at_lme4: dict[int, pd.DataFrame] = {}
    for i, (term, e) in enumerate(zip(s.fixed.index, elim, strict=True)):
        index = first + int(e) - 1 if e > 0 else len(s.models) - 1
        model = s.models[index]
        if isinstance(model, LinearModelFit):
            continue  # (no optimum: test_fixed_table compares it to rounding)
        if index not in at_lme4:
            at_lme4[index] = lmf.drop1(at_point(model, as_list(chain[index]["theta"])),
                                       ddf=ddf).table
        ours = at_lme4[index].loc[term, F_COLUMNS].to_numpy(float)
        theirs = np.array([floats(ref["columns"][c])[i] for c in F_COLUMNS])
        assert_within(ours, theirs, RTOL_FIT, 0.0)


@pytest.mark.parametrize("name", list(CASES))
def test_final_drop1(name: str) -> None:
    # lmerTest keeps the last drop1 table (attr(, "drop1")): the rows not eliminated
    s = stepped(name)[0]
    ref = CASES[name]["drop1"]
    assert list(s.drop1.index) == as_list(ref["rownames"] or [])
    assert list(s.drop1.columns) == as_list(ref["colnames"])
    assert s.drop1.heading == as_list(ref["heading"])
    kept = s.fixed[s.fixed["Eliminated"] == 0].drop(columns="Eliminated")
    pd.testing.assert_frame_equal(kept, s.drop1.table, check_index_type=len(kept) > 0)


# ---- the model found ----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
def test_model_found(name: str) -> None:
    s = stepped(name)[0]
    final = CASES[name]["final"]
    model = lmf.get_model(s)
    assert model is s.model is s.get_model() is s.models[-1]
    assert model.formula == final["formula"]
    coef = pd.Series(final["coef"], dtype=float)
    if final["class"] == "lm":
        assert isinstance(model, LinearModelFit)
        assert list(model.coef.index) == list(coef.index)
        assert_within(model.coef, coef, ROUNDING, 1e-12)
        assert model.logLik() == pytest.approx(final["logLik"], rel=ROUNDING)
        return
    assert isinstance(model, lmf.LmerMod)
    theta = as_list(final["theta"])
    optimum = assert_same_optimum(model, theta, None)
    acc = accuracy(model, theta, optimum, lambda mm: mm.fixef.to_numpy())
    assert list(model.fixef.index) == list(coef.index)
    assert_within(model.fixef, coef, RTOL_FIT, 1e-9 + acc)
    assert_within(model.logLik().value, final["logLik"], ROUNDING, optimum.excess / 2)


@pytest.mark.parametrize("name", list(CASES))
def test_printed_as_lmertest(name: str) -> None:
    text = str(stepped(name)[0])
    ref = CASES[name]["text"]
    if name != "sim_to_lm":
        assert text == ref
        return
    # R's LRT of (1 | g) is 0: its lmer fit (at θ = 0, singular) and the lm refit give the
    # same REML log-likelihood to the last bit; ours differ by 3e-14 (two computations of
    # one number), which prints as 5.6843e-14 and widens the LRT column. The random table's
    # lines differ there; every line after it is R's
    ours, theirs = text.splitlines(), ref.splitlines()
    start = theirs.index("Backward reduced fixed-effect table:")
    assert ours.index("Backward reduced fixed-effect table:") == start
    assert ours[:2] == theirs[:2]
    assert ours[start - 1 :] == theirs[start - 1 :]
    assert abs(stepped(name)[0].random["LRT"].iloc[1]) < 1e-12


def test_html_is_the_printed_text() -> None:
    s = stepped("sleepstudy")[0]
    assert "Model found:" in s._repr_html_()
    assert repr(s) == str(s)


# ---- behaviour ------------------------------------------------------------------------------

def test_vector_term_is_reduced_to_its_intercept() -> None:
    # ranova's reduce.terms: (x | g) loses x before (1 | g) is tested on its own
    s = stepped("sim_vector")[0]
    assert list(s.random.index) == ["<none>", "x in (x | g)", "(1 | g)"]
    assert [m.formula for m in s.models] == ["y ~ x + (x | g)", "y ~ x + (1 | g)"]


def test_every_fixed_term_can_go() -> None:
    s = stepped("sim_intercept_only")[0]
    assert list(s.fixed["Eliminated"]) == [1, 2, 3, 4]
    assert s.model.formula == "y0 ~ (1 | g)"
    assert isinstance(s.model, lmf.LmerMod)
    assert list(s.model.fixef.index) == ["(Intercept)"]
    assert len(s.drop1) == 0


def test_keep_is_never_eliminated() -> None:
    kept = stepped("sim_vector_fixed_kept")[0]
    # z's p-value (0.33) is above alpha_fixed: without keep it goes (sim_vector_fixed)
    assert list(kept.fixed.index) == ["z", "x:f"]
    assert (kept.fixed["Eliminated"] == 0).all()
    assert kept.fixed.loc["z", "Pr(>F)"] > 0.05
    assert stepped("sim_vector_fixed")[0].fixed.loc["z", "Eliminated"] == 3


@pytest.mark.slow
def test_keep_a_term_that_others_contain() -> None:
    # Product:Information is not tested until the terms containing it are gone, then kept
    s = stepped("ham_keep")[0]
    assert s.fixed.loc["Product:Information", "Eliminated"] == 0
    assert s.fixed.loc["Product:Information", "Pr(>F)"] > 0.05
    assert stepped("ham")[0].fixed.loc["Product:Information", "Eliminated"] == 5


@pytest.mark.slow
def test_keep_names_that_are_not_terms_are_ignored_with_a_warning() -> None:
    s, caught = stepped("ham_keep_invalid")
    assert caught == tuple(as_list(CASES["ham_keep_invalid"]["warnings"]))
    assert s.fixed.loc["Gender", "Eliminated"] == 0


def test_invalid_keep_warning() -> None:
    with pytest.warns(InvalidKeepWarning) as caught:
        s = lmf.step(fitted("sleepstudy"), keep=["Days", "Nonsense"])
    assert [str(w.message) for w in caught] == [
        "Invalid 'keep' ignored: Nonsense.\nValid terms are: Days."]
    assert s.fixed.loc["Days", "Eliminated"] == 0


def test_no_reduction_tabulates_and_keeps_the_model() -> None:
    m = fitted("sim_vector_fixed")
    s = lmf.step(m, reduce_random=False, reduce_fixed=False)
    assert s.model is m and s.models == [m]
    assert math.isnan(s.random["Eliminated"].iloc[0])
    assert (s.random["Eliminated"].iloc[1:] == 0).all()
    assert (s.fixed["Eliminated"] == 0).all()
    # their p-values are far above the alphas: only the flags keep the terms
    assert s.random.loc["x in (x | g)", "Pr(>Chisq)"] > 0.5
    assert s.fixed.loc["x:f", "Pr(>F)"] > 0.5


def test_alphas_change_what_goes() -> None:
    # x:f (p = 0.14) goes at the default alpha_fixed (0.05) and stays at 0.2
    assert stepped("sim_intercept_only")[0].fixed.loc["x:f", "Eliminated"] == 2
    assert stepped("sim_random_fixed_only")[0].fixed.loc["x:f", "Eliminated"] == 0
    # x in (x | g) (p = 0.73) stays at alpha_random = 0.8
    s = lmf.step(fitted("sim_vector"), alpha_random=0.8)
    assert (s.random["Eliminated"].iloc[1:] == 0).all()


@pytest.mark.slow
def test_alpha_random_eliminates_a_scalar_term() -> None:
    # (1 | Consumer), p = 0.083, goes at alpha_random = 0.05 and stays at 0.1
    s = stepped("ham_alpha")[0]
    assert s.random.loc["(1 | Consumer)", "Eliminated"] == 1
    assert stepped("ham")[0].random.loc["(1 | Consumer)", "Eliminated"] == 0
    # Product:Information, p = 0.103, stays at alpha_fixed = 0.2
    assert s.fixed.loc["Product:Information", "Eliminated"] == 0


def test_no_random_effects_left_gives_a_linear_model() -> None:
    s = stepped("sim_to_lm")[0]
    assert isinstance(s.models[1], LinearModelFit)
    assert s.models[1].formula == "y1 ~ x + f + z + x:f"
    assert s.fixed.heading == ["Backward reduced fixed-effect table:"]
    assert list(s.fixed.columns) == ["Eliminated", "Df", "Sum of Sq", "RSS", "AIC", "F value",
                                     "Pr(>F)"]
    # the lm's REML log-likelihood is the singular lmer fit's (θ = 0), the <none> row's
    assert s.models[1].logLik(REML=True) == pytest.approx(s.random["logLik"].iloc[0],
                                                          rel=ROUNDING)


def test_kenward_roger_heading() -> None:
    s = lmf.step(fitted("sleepstudy"), ddf="Kenward-Roger")
    assert s.fixed.heading == ["Backward reduced fixed-effect table:",
                               "Degrees of freedom method: Kenward-Roger ", ""]
    assert s.random.heading == ["Backward reduced random-effect table:", ""]


# ---- errors -------------------------------------------------------------------------------

def r_message(key: str) -> str:
    return str(REF["errors"][key])


def test_ddf_must_be_satterthwaite_or_kenward_roger() -> None:
    m = fitted("sleepstudy")
    # R's match.arg message (the package quotes the choices as R does in a UTF-8 locale)
    prefix = r_message("ddf_lme4").split(" should be one of")[0]
    for ddf in ("lme4", "KR"):
        with pytest.raises(LmeFormulaError, match=re.escape(prefix + " should be one of")):
            lmf.step(m, ddf=ddf)
    assert str(lmf.step(m, ddf="Kenward")) == str(lmf.step(m, ddf="Kenward-Roger"))


def test_keep_must_be_term_labels() -> None:
    with pytest.raises(ArgumentError, match=re.escape(r_message("keep_numeric"))):
        lmf.step(fitted("sleepstudy"), keep=1)
    with pytest.raises(ArgumentError, match=re.escape(r_message("keep_numeric"))):
        lmf.step(fitted("sleepstudy"), keep=["Days", 2])
    # any collection of labels will do, as any character vector in R
    s = lmf.step(fitted("sim_vector_fixed"), keep=np.array(["z"]))
    assert s.fixed.loc["z", "Eliminated"] == 0


def test_kenward_roger_needs_a_reml_fit() -> None:
    with pytest.raises(LmeFormulaError, match=re.escape(r_message("kr_ml"))):
        lmf.step(fitted("ham_ml"), ddf="Kenward-Roger")


def test_refit_on_other_rows_is_refused() -> None:
    # z is missing in two rows: without z the model would use 96 rows, not 94
    m = lmf.lmer("y0 ~ x * f + z + (1 | g)", data("sim_na"))
    with pytest.raises(LmeFormulaError, match=re.escape(r_message("rows_changed"))):
        lmf.step(m)


def test_bad_arguments() -> None:
    m = fitted("sleepstudy")
    with pytest.raises(ArgumentError, match="lmer-fit"):
        lmf.step("not a model")  # type: ignore[arg-type]
    for alpha in (-0.1, 1.5, math.nan, "0.1", True):
        with pytest.raises(ArgumentError, match="alpha_random"):
            lmf.step(m, alpha_random=alpha)  # type: ignore[arg-type]
        with pytest.raises(ArgumentError, match="alpha_fixed"):
            lmf.step(m, alpha_fixed=alpha)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="reduce_random"):
        lmf.step(m, reduce_random="no")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="reduce_fixed"):
        lmf.step(m, reduce_fixed=None)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="step"):
        lmf.get_model(m)  # type: ignore[arg-type]


def test_formulaic_syntax_is_refused() -> None:
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"),
                 syntax="formulaic")
    with pytest.raises(LmeFormulaError, match="syntax=\"R\""):
        lmf.step(m)


def test_glmer_fit_is_refused() -> None:
    cbpp = lmf.datasets.load("cbpp")
    g = lmf.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                  family="binomial")
    with pytest.raises(ArgumentError, match="lmer-fit"):
        lmf.step(g)  # type: ignore[arg-type]
