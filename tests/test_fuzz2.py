"""lmer and lmerTest against lme4 1.1-31 and lmerTest 3.1-3 on a second differential fuzz
(fixtures from tools/R/make_fixtures_fuzz2.R): simulated unbalanced data with NA in several
columns; character, logical, integer-coded, ordered and unused-level factors as fixed effects
and grouping factors; ``(0 + f | g)``, ``(f || g)``, 3x3 covariances, ``site/plot`` with
labels repeated across sites, ``(1 | a:b)`` of character and logical columns; transforms of
the response and the predictors (``log(y + 5)``, ``sqrt(y + 10)``, ``poly``, ``scale``,
``log``, ``I``), offsets, weights, the ``contrasts=`` argument (sum, Helmert, SAS), ML fits,
``na.exclude`` and singular fits; factor levels with spaces, dashes and dots, ``fc/x``,
``(a + b + c)^2``, ``%in%``, an intercept-only fixed part, a numeric grouping variable with
non-integer values, an integer response, NA in the weights, ``subset=`` with ``offset=``;
rank-deficient fixed parts (an empty cell, a collinear covariate) and likelihood-ratio tests
between fits; an ordered factor's polynomial contrasts and a character-by-numeric interaction
in random terms, new data with NA in the grouping factors; 24 fixed effects; ``poly(x, z,
degree = 2)`` (R's ``polym``), orthogonal and raw; ``factor(x, levels, labels)``,
``ordered(x, levels)``, ``relevel()`` and ``interaction()`` as fixed effects and grouping
factors; ``ifelse()``; comparisons of NA in terms and in ``subset=``.

Compared: the fit at the optimizer's precision (tests/fit_accuracy.py); at lme4's θ, the
estimates, likelihoods, vcov, VarCorr (tidy and printed), ranef with conditional variances,
coef, fitted values and residuals of every type, predictions (population, partial
``re_form``, new data with new levels and NA), Wald intervals, lme4's printed summary, print
and anova; lmerTest's Satterthwaite and Kenward-Roger coefficient tables, anova of types
I-III, summaries, drop1, ls_means, difflsmeans and ranova.

What the fuzz found (fixed with these tests):

* ranova dropped the formula's ``offset()`` terms from the reduced models' refits (their
  log-likelihoods were another model's) and from the printed ``Model:`` line;
* ranova compared a model with the ``lm()`` fit of its fixed part on other rows when a
  grouping variable had NA: lmerTest refuses ("number of rows in use has changed");
* ls_means and difflsmeans counted a character column as a factor: lmerTest reads R's
  ``dataClasses``, where a string column is "character" (lme4 makes it a factor after
  ``model.frame``), so it is not a factor term there;
* the summaries' ``Offset:`` and ``Weights:`` lines showed the argument's text as given
  (``z / 2``), where R deparses it (``z/2``);
* ``poly(x, z, degree = 2)`` silently ignored ``z`` (a univariate polynomial of x): R's
  ``poly`` takes further vectors as variables of ``polym``;
* an anova table wider than 80 characters (lmerTest's drop1 of a long term label) was
  printed on one line, where R prints its columns in blocks;
* ``factor(x, levels = , labels = )`` silently ignored ``levels`` and ``labels`` (another
  baseline, other column names); ``relevel()``, ``interaction()`` and ``ifelse()`` were not
  supported;
* a comparison of NA (``I(x > 2)`` with x missing) was FALSE, where R's is NA and the row is
  dropped (``NA & FALSE`` is FALSE); a logical that is FALSE throughout was a one-level
  factor ("contrasts can be applied only to factors with 2 or more levels"), where R's
  model.matrix codes a logical by both levels (an all-zero column, dropped for rank).
"""

from __future__ import annotations

import json
import re
import warnings
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import FIXTURES
from fit_accuracy import (
    assert_same_lmm_fit,
    assert_text_up_to_ties,
    assert_within,
    at_point,
)
from lmertest_fixtures import assert_same_text, assert_table, ref_table
from sweep_cases import (
    as_list,
    close,
    close_coef,
    close_ranef,
    frame_of,
    na_floats,
    printed_values,
    r_call_kwargs,
)

import lmeformula as lmf
from lmeformula.ddf import HessianWarning, MissingCellsWarning

FUZZ2 = FIXTURES / "fuzz2"
NAMES = sorted(p.stem for p in FUZZ2.glob("*.json"))


@cache
def fixture(name: str) -> dict[str, Any]:
    return json.loads((FUZZ2 / f"{name}.json").read_text())  # type: ignore[no-any-return]


def data_of(columns: list[dict[str, Any]]) -> pd.DataFrame:
    """sweep_cases.frame_of, with R's integer columns as int64 (as a user's data holds them)
    where they have no NA."""
    d = frame_of(columns)
    for col in columns:
        if col["type"] == "integer" and None not in as_list(col["values"]):
            d[col["name"]] = d[col["name"]].astype(np.int64)
    return d


def kwargs_of(name: str) -> dict[str, Any]:
    """lmer's arguments from the R call's."""
    return r_call_kwargs(fixture(name)["args"])


@cache
def fit_and_warnings(name: str) -> tuple[lmf.LmerMod, tuple[str, ...]]:
    fx = fixture(name)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        m = lmf.lmer(fx["formula"], data_of(fx["columns"]), data_name="d", **kwargs_of(name))
    return m, tuple(str(w.message) for w in seen)


def fit(name: str) -> lmf.LmerMod:
    return fit_and_warnings(name)[0]


@cache
def at_lme4(name: str) -> lmf.LmerMod:
    """The fit at lme4's θ: everything computed from θ agrees with R's there to rounding,
    whatever path either optimizer took (fit_accuracy.at_point)."""
    return at_point(fit(name), as_list(fixture(name)["theta"]))


def quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """lmerTest's methods on fits whose Hessian is not positive definite (they warn, as
    lmerTest warns when it fits; lme4's warnings are compared on the fit), and ranova's
    singular refits (lme4's message for them in R)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HessianWarning)
        warnings.simplefilter("ignore", lmf.SingularFitWarning)
        warnings.simplefilter("ignore", MissingCellsWarning)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_warnings_and_messages(name: str) -> None:
    theirs = {w.removeprefix("message: ") for w in as_list(fixture(name)["warnings"] or [])}
    # the package's rank-deficiency warning names the columns it drops after lme4's message:
    # "... so dropping 1 column / coefficient (x2)"
    ours = {re.sub(r"(so dropping \d+ columns? / coefficients?) \(.*\)$", r"\1", w)
            for w in fit_and_warnings(name)[1]}
    assert ours == theirs


@pytest.mark.parametrize("name", NAMES)
def test_fit_and_structures(name: str) -> None:
    m, fx = fit(name), fixture(name)
    theta = as_list(fx["theta"])
    assert_same_lmm_fit(m, theta, fx["crit"], as_list(fx["beta"]), fx["sigma"])
    assert list(m.fixef.index) == as_list(fx["fixef_names"])
    assert list(lmf.getME(m, "X").columns) == as_list(fx["X_colnames"])
    assert m.nobs == fx["nobs"]
    assert dict(lmf.ngrps(m)) == fx["ngrps"]
    assert m.isSingular() == fx["isSingular"]
    assert m.logLik().df == fx["df"]
    assert [list(c) for c in lmf.getME(m, "cnms")] == [as_list(c) for c in fx["cnms"].values()]
    flist = lmf.getME(m, "flist")
    assert {k: [str(c) for c in v.categories] for k, v in flist.items()} == {
        k: as_list(v) for k, v in fx["flist_levels"].items()}
    assert list(lmf.getME(m, "Zt").shape) == fx["Zt_dim"]


@pytest.mark.parametrize("name", NAMES)
def test_accessors_at_lme4s_theta(name: str) -> None:
    m, fx = at_lme4(name), fixture(name)
    close(m.fixef, fx["beta"], rtol=1e-8, atol=1e-10)
    close(m.sigma, fx["sigma"], rtol=1e-8, atol=0)
    crit = m.REMLcrit() if fx["REML"] else m.deviance()
    close([crit, m.logLik().value, m.AIC(), m.BIC()],
          [fx["crit"], fx["logLik"], fx["AIC"], fx["BIC"]], rtol=1e-10, atol=0)
    close(m.vcov().to_numpy(), fx["vcov"], rtol=1e-5, atol=1e-9)
    close(m.fitted(), fx["fitted"], rtol=1e-7, atol=1e-9)
    for kind in ("response", "pearson", "working"):
        close(m.residuals(type=kind), fx[f"resid_{kind}"], rtol=1e-6, atol=1e-8)
    close(m.residuals(scaled=True), fx["resid_scaled"], rtol=1e-6, atol=1e-8)
    close(m.predict(re_form="~0"), fx["predict_population"], rtol=1e-7, atol=1e-9)
    close(m.predict(re_form=np.nan), fx["predict_population"], rtol=1e-7, atol=1e-9)
    if fx.get("re_form_first") and "subset" not in fx["args"]:
        # (lme4's predict with a partial re.form and no new data predicts every row of the
        # data, those the subset left out too: 260 values for a fit to 198 rows; the package
        # predicts the fit's rows, as for re_form=None and NA)
        close(m.predict(re_form=fx["re_form_first"]), fx["predict_re_first"], rtol=1e-6,
              atol=1e-8)
    re_ = close_ranef(m, fx["ranef"], rtol=1e-5, atol=1e-8)
    for grp, ref in fx["ranef"].items():
        pv = re_[grp].attrs["postVar"]
        if isinstance(ref["postVar"], dict):  # several terms on the factor: one array each
            for k, term in enumerate(ref["postVar"].values()):
                close(np.transpose(pv[k], (1, 2, 0)).ravel(), np.ravel(term), rtol=1e-5,
                      atol=1e-9)
        else:
            close(np.transpose(pv, (1, 2, 0)).ravel(order="F"), ref["postVar"], rtol=1e-5,
                  atol=1e-9)
    close_coef(m, fx["coef"], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_varcorr_and_wald_intervals(name: str) -> None:
    m, fx = at_lme4(name), fixture(name)
    vc, ref = m.VarCorr.as_data_frame(), fx["varcorr"]
    for col in ("grp", "var1", "var2"):
        assert [None if pd.isna(v) else v for v in vc[col]] == as_list(ref[col]), col
    close(vc["vcov"], ref["vcov"], rtol=1e-6, atol=1e-8)
    close(vc["sdcor"], ref["sdcor"], rtol=1e-6, atol=1e-8)
    values = np.r_[as_list(ref["sdcor"]), as_list(ref["vcov"])]
    assert_text_up_to_ties(str(m.VarCorr), fx["varcorr_text"], values)
    assert_text_up_to_ties(m.VarCorr.format(comp=("Variance", "Std.Dev.")),
                           fx["varcorr_text_var"], values)
    ci, ref_ci = lmf.confint(m, method="Wald"), fx["confint_wald"]
    assert list(ci.index) == as_list(ref_ci["rownames"])
    assert list(ci.columns) == as_list(ref_ci["colnames"])
    close(ci.to_numpy(), ref_ci["values"], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_lme4_printed_output(name: str) -> None:
    m, fx = at_lme4(name), fixture(name)
    values = printed_values(fx, na_floats(fx["resid_scaled"]), fx["crit"])
    assert_text_up_to_ties(str(m.summary()), fx["summary_lme4"], values)
    assert_text_up_to_ties(str(m), fx["print_lme4"], values)
    assert str(lmf.anova(m)) == fx["anova_lme4"]


@pytest.mark.parametrize("name", NAMES)
def test_lmertest_tables(name: str) -> None:
    m, fx = at_lme4(name), fixture(name)
    assert_table(quiet(lmf.coef_table, m), ref_table(fx["coef_sat"]))
    # the printed summary: its numbers at lmerTest's tolerances (the Satterthwaite df come
    # from numerical derivatives: 6.7868 and R's 6.7867 where lme4's fit has a degenerate
    # Hessian, factor_double_bar)
    assert_same_text(str(quiet(m.summary, ddf="Satterthwaite")).splitlines(),
                     fx["summary_sat"].splitlines())
    methods = [("sat", "Satterthwaite")] + ([("kr", "Kenward-Roger")] if fx["REML"] else [])
    for key, ddf in methods:
        if key == "kr":
            assert_table(lmf.coef_table(m, ddf=ddf), ref_table(fx["coef_kr"]))
            assert_same_text(str(m.summary(ddf=ddf)).splitlines(),
                             fx["summary_kr"].splitlines())
        for type_ in (1, 2, 3):
            ref = fx[f"anova{type_}_{key}"]
            tab = quiet(lmf.anova, m, type=type_, ddf=ddf)
            assert_table(tab, ref_table(ref))
            assert_same_text(str(tab).splitlines(), ref["text"].splitlines())


@pytest.mark.parametrize("name", NAMES)
def test_lmertest_drop1(name: str) -> None:
    m, ref = at_lme4(name), fixture(name)["drop1"]
    tab = quiet(lmf.drop1, m)
    assert_table(tab, ref_table(ref))
    assert_same_text(str(tab).splitlines(), ref["text"].splitlines())


@pytest.mark.parametrize("name", NAMES)
def test_ls_means(name: str) -> None:
    m, fx = at_lme4(name), fixture(name)
    ref = fx["ls_means"]
    if "error" in ref:
        # lmerTest's grid holds the model frame's factors and numeric variables; a term of a
        # variable the frame holds only transformed (scale(x), poly(x, z), factor(fi)) or of a
        # logical is evaluated where R finds no such variable: "object 'x' not found" (and
        # factor(fi): "contrasts can be applied only to factors with 2 or more levels"). The
        # package evaluates such terms at the grid's means and leaves numeric terms out
        return
    tab = quiet(lmf.ls_means, m)
    assert_table(tab, ref_table(ref))
    assert_same_text(str(tab).splitlines(), ref["text"].splitlines())
    assert_table(quiet(lmf.difflsmeans, m), ref_table(fx["difflsmeans"]))


def test_character_column_is_not_a_factor_term_for_ls_means() -> None:
    """lmerTest reads the model frame's dataClasses, where a string column is "character"
    (lme4 turns it into a factor after model.frame): ls_means leaves it out, and a model
    whose only factor-like variable is a string has an empty table."""
    assert "fc" in {c["name"] for c in fixture("char_ordered_na")["columns"]
                    if c["type"] == "character"}
    tab = lmf.ls_means(at_lme4("char_ordered_na"))
    assert set(tab.attrs["term"]) == {"fo"}
    assert len(lmf.ls_means(at_lme4("factor_slope_3x3"))) == 0
    # the same column as a factor is a factor term
    fx = fixture("factor_slope_3x3")
    d = data_of(fx["columns"])
    d["fc"] = pd.Categorical(d["fc"])
    m = at_point(lmf.lmer(fx["formula"], d), as_list(fx["theta"]), derivs=False)
    assert list(lmf.ls_means(m).index) == ["fcctl", "fctrtA", "fctrtB"]


RANOVA = [n for n in NAMES if "error" not in fixture(n)["ranova"]]


@pytest.mark.parametrize("name", RANOVA)
def test_ranova(name: str) -> None:
    m, fx = at_lme4(name), fixture(name)
    ref = fx["ranova"]
    tab = quiet(lmf.ranova, m)
    theirs = ref_table(ref)
    # the LRT is a difference of two log-likelihoods, each held to assert_table's 1e-6
    # relative: where a dropped variance is 0 at the optimum, both are rounding (1.1e-13
    # and R's 4.5e-13), which a relative tolerance cannot compare
    scale = 2e-6 * float(np.abs(theirs["logLik"]).max())
    ok = ~np.isnan(theirs["LRT"].to_numpy(dtype=float))
    assert_within(tab["LRT"].to_numpy(dtype=float)[ok], theirs["LRT"].to_numpy(dtype=float)[ok],
                  rtol=1e-3, atol=scale)
    keep = [c for c in theirs.columns if c != "LRT"]
    assert_table(tab, theirs[keep])
    # printed at lmerTest's tolerances: a term whose variance is 0 at the optimum has an LRT
    # of 0 up to the optimizers' precision, where the p-value (1 - 0.8·sqrt(LRT) for Df 1)
    # is as loose as the LRT's square root: 0.99981 and R's 1.00000 (LRT 5e-8 and 2e-11)
    assert_same_text(str(tab).splitlines(), ref["text"].splitlines())


def test_ranova_keeps_the_formulas_offset() -> None:
    m, fx = at_lme4("offset_weights_ml"), fixture("offset_weights_ml")
    tab = lmf.ranova(m)
    assert tab.heading[-1] == "y ~ x + fl + (x | g) + offset(log(tt))"
    # the reduced model (1 | g) with its offset: lmerTest's -478.26 (-450.76 without it)
    close(tab["logLik"], ref_table(fx["ranova"])["logLik"], rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", [n for n in NAMES if "error" in fixture(n)["ranova"]])
def test_ranova_refuses_a_reduced_model_on_other_rows(name: str) -> None:
    """NA in a grouping variable only: the lm() fit without random effects keeps those rows,
    and lmerTest stops rather than compare fits to different data."""
    assert fixture(name)["ranova"]["error"] == \
        "number of rows in use has changed: remove missing values?"
    with pytest.raises(lmf.LmeFormulaError, match="number of rows in use has changed"):
        lmf.ranova(fit(name))


@pytest.mark.parametrize("name", [n for n in NAMES if "newdata" in fixture(n)])
def test_predict_newdata(name: str) -> None:
    m, fx = at_lme4(name), fixture(name)
    nd = data_of(fx["newdata"])
    close(m.predict(newdata=nd, allow_new_levels=True), fx["predict_newdata"], rtol=1e-6,
          atol=1e-8)
    close(m.predict(newdata=nd, re_form="~0"), fx["predict_newdata_population"], rtol=1e-6,
          atol=1e-8)
    if fx.get("predict_newdata_re_first"):
        close(m.predict(newdata=nd, re_form=fx["re_form_first"], allow_new_levels=True),
              fx["predict_newdata_re_first"], rtol=1e-6, atol=1e-8)


@cache
def comparison(name: str) -> dict[str, Any]:
    return json.loads((FUZZ2 / "anova" / f"{name}.json").read_text())  # type: ignore[no-any-return]


def test_likelihood_ratio_tests_refit_by_ml() -> None:
    fx = comparison("nested_three")
    d = data_of(fx["columns"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fits = [lmf.lmer(f, d, data_name="d") for f in fx["formulas"]]
        tab = lmf.anova(*fits)
    # (lme4's "failed to find model names" is R's: deparsing do.call's arguments)
    assert {str(w.message) for w in seen} == {w.removeprefix("message: ")
                                              for w in fx["warnings"]
                                              if not w.startswith("failed to find")}
    # each model refitted here by ML: the criteria agree with lme4's to the optimizer's
    # precision (fit_accuracy.excess_bound: 1e-7 plus the xtol side's, well under 1e-5 for
    # these fits), the χ² as differences of two of them
    ref = ref_table(fx["table"])
    assert list(tab.index) == list(ref.index) and list(tab.columns) == list(ref.columns)
    for col in ("npar", "Df"):
        close(tab[col], ref[col].tolist(), rtol=0, atol=0)
    for col in ("AIC", "BIC", "logLik", "deviance", "Chisq"):
        close(tab[col], ref[col].tolist(), rtol=0, atol=2e-5)
    close(tab["Pr(>Chisq)"], ref["Pr(>Chisq)"].tolist(), rtol=1e-4, atol=0)
    assert_same_text(str(tab).splitlines(), fx["text"].splitlines())


def test_likelihood_ratio_tests_refuse_fits_to_different_rows() -> None:
    fx = comparison("different_rows")
    d = data_of(fx["columns"])
    fits = [lmf.lmer(f, d) for f in fx["formulas"]]
    with pytest.raises(lmf.LmeFormulaError, match=re.escape(fx["error"])):
        lmf.anova(*fits)


def test_poly_of_several_arguments_is_polym() -> None:
    d = data_of(fixture("polym_raw")["columns"])
    # R: one argument of length one after x is the degree, others are further variables
    pf = lmf.lFormula("y ~ poly(x, 2) + (1 | g)", d)
    assert list(pf.X.columns) == ["(Intercept)", "poly(x, 2)1", "poly(x, 2)2"]
    # poly(x, 2, 3) is polym(x, 2, 3): R's "arguments must have the same length"
    with pytest.raises(lmf.FormulaError, match="arguments must have the same length"):
        lmf.lFormula("y ~ poly(x, 2, 3) + (1 | g)", d)


@pytest.mark.parametrize(("formula", "message"), [
    ("y ~ relevel(fo, ref = 'med') + (1 | g)", "'relevel' only for unordered factors"),
    ("y ~ relevel(fc, ref = 'ctl') + (1 | g)", r"'relevel' only for \(unordered\) factors"),
    ("y ~ relevel(factor(fc), ref = 'zz') + (1 | g)", "'ref' must be an existing level"),
    ("y ~ relevel(factor(fc), ref = 4) + (1 | g)", "ref = 4 must be in 1L:3"),
    ("y ~ factor(fi, labels = c('a', 'b')) + (1 | g)", "invalid 'labels'; length 2 should be 1 "
                                                       "or 3"),
])
def test_factor_functions_refuse_as_r(formula: str, message: str) -> None:
    d = data_of(fixture("relevel_ordered_levels")["columns"])
    with pytest.raises(lmf.FormulaError, match=message):
        lmf.lFormula(formula, d)


def test_interaction_levels_and_factor_labels() -> None:
    d = data_of(fixture("relevel_ordered_levels")["columns"])
    pf = lmf.lFormula("y ~ interaction(fc, fl, lex.order = TRUE) + factor(fi, labels = 'L') "
                      "+ (1 | g)", d)
    # lex.order: the first factor's levels vary slowest; one label: numbered L1, L2, L3
    assert [c.split(")")[-1] for c in pf.X.columns[1:]] == [
        "ctl.TRUE", "trtA.FALSE", "trtA.TRUE", "trtB.FALSE", "trtB.TRUE", "L2", "L3"]


def test_logical_column_with_na_has_both_levels() -> None:
    """R's model.matrix codes a logical by FALSE and TRUE whatever occurs: a column with NA
    whose values are all TRUE gives an all-ones flTRUE column (dropped for rank with an
    intercept), not a one-level factor."""
    d = data_of(fixture("na_comparisons")["columns"])
    d["flag"] = pd.array([None if i % 7 == 0 else True for i in range(len(d))], dtype="boolean")
    with pytest.warns(lmf.RankDeficiencyWarning, match=r"\(flagTRUE\)"):
        pf = lmf.lFormula("y ~ flag + (1 | g)", d)
    assert list(pf.X.columns) == ["(Intercept)"]
    assert pf.X.shape[0] < len(d) - len(d) // 7
