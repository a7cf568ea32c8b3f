"""Bad input and faults (issue 18): every reproducer ends in the package's error naming the
column, term or argument (lme4's message where lme4 has one, from tests/fixtures/bad_input.json
made by tools/R/make_fixtures_bad_input.R), never in a silently wrong model, a raw exception or
an exhausted machine."""

from __future__ import annotations

import gzip
import json
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
from lmeformula.cli import main as cli_main

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "bad_input.json").read_text())
R_MESSAGES: dict[str, str] = FIXTURES["messages"]
F = "Reaction ~ Days + (1 | Subject)"


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return lmf.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def model(df: pd.DataFrame) -> lmf.LmerMod:
    return lmf.lmer(F, df)


def _with(df: pd.DataFrame, column: str, row: int, value: Any) -> pd.DataFrame:
    out = df.copy()
    out.iloc[row, out.columns.get_loc(column)] = value
    return out


def _raises(cls: type[Exception], pattern: str, fn: Callable[[], Any]) -> None:
    before = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(cls, match=pattern):
            fn()
    assert time.perf_counter() - before < 20  # no exhausted machine


# ---- silently wrong answers ---------------------------------------------------------------

@pytest.mark.parametrize(("formula", "column"), [
    ("Reaction ~ log(Days) + (1 | Subject)", "log(Days)"),
    ("Reaction ~ I(1/Days) + (1 | Subject)", "I(1/Days)"),
    ("Reaction ~ log(Days + 1, base = Days) + (1 | Subject)", "log(Days + 1, base = Days)"),
])
def test_infinite_transformed_predictor_stops(df: pd.DataFrame, formula: str, column: str) -> None:
    _raises(lmf.ModelFrameError, re.escape("NA/NaN/Inf in 'x'") + ".*" + re.escape(column),
            lambda: lmf.lmer(formula, df))


def test_infinite_predictor_value_stops(df: pd.DataFrame) -> None:
    data = _with(df, "Days", 0, np.inf)
    before = data.copy()
    _raises(lmf.ModelFrameError, "NA/NaN/Inf in 'x'.*'Days'", lambda: lmf.lmer(F, data))
    _raises(lmf.ModelFrameError, "NA/NaN/Inf in 'x'.*'Days'", lambda: lmf.lFormula(F, data))
    pd.testing.assert_frame_equal(data, before)


def test_overflowing_predictor_stops(df: pd.DataFrame) -> None:
    # 1e308 is finite but X'X is not: was fitted as an intercept-only model
    _raises(lmf.ModelFrameError, "'Days' is too large",
            lambda: lmf.lmer(F, _with(df, "Days", 0, 1e308)))


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_infinite_random_effects_covariate_stops(df: pd.DataFrame, syntax: str) -> None:
    # lme4 lets Inf into Z and stops at its first evaluation ("objective in x0 returns NA"):
    # refused before the fit in both syntaxes, naming the term; NaN keeps lme4's message
    _raises(lmf.FormulaError, r"Inf in Z .*\(Days \| Subject\) has infinite values",
            lambda: lmf.lmer("Reaction ~ 1 + (Days | Subject)", _with(df, "Days", 3, -np.inf),
                             syntax=syntax))
    nan_in_z = _with(df, "Days", 3, np.nan)
    if syntax == "R":
        _raises(lmf.FormulaError, "NA in Z",
                lambda: lmf.lmer("Reaction ~ 1 + (Days | Subject)", nan_in_z, na_action="pass"))
    else:  # formulaic drops rows with NA itself: with na_action="pass" that is refused
        _raises(lmf.ModelFrameError,
                r"NA in the model's variables \(rows 4\) with na_action='pass'",
                lambda: lmf.lmer("Reaction ~ 1 + (Days | Subject)", nan_in_z,
                                 na_action="pass", syntax=syntax))


@pytest.mark.parametrize("what", ["weights", "offset"])
def test_infinite_weight_or_offset_stops(df: pd.DataFrame, what: str) -> None:
    values = np.ones(len(df))
    values[0] = np.inf
    _raises(lmf.ModelFrameError, re.escape(f"NA/NaN/Inf in '{what}'"),
            lambda: lmf.lmer(F, df, **{what: values}))
    data = df.assign(v=values)
    _raises(lmf.ModelFrameError, re.escape(f"NA/NaN/Inf in '{what}'"),
            lambda: lmf.lmer(F, data, **{what: "v"}))


def test_nan_weight_is_missing_as_in_r(df: pd.DataFrame) -> None:
    w = np.ones(len(df))
    w[0] = np.nan
    assert lmf.lmer(F, df, weights=w).nobs == len(df) - 1  # R: 179


def test_offset_of_a_factor_stops(df: pd.DataFrame) -> None:
    _raises(lmf.ModelFrameError, re.escape(R_MESSAGES["offset_factor_arg"]) + ".*offset\\(Subject\\)",
            lambda: lmf.lmer("Reaction ~ Days + offset(Subject) + (1 | Subject)", df))


@pytest.mark.parametrize("offset", ["Subject", np.array(["a"] * 180, dtype=object),
                                    pd.Categorical(["a"] * 180)])
def test_non_numeric_offset_argument_stops(df: pd.DataFrame, offset: Any) -> None:
    _raises(lmf.ModelFrameError, re.escape(R_MESSAGES["offset_factor_arg"]),
            lambda: lmf.lmer(F, df, offset=offset))


def test_non_numeric_weights_stop(df: pd.DataFrame) -> None:
    _raises(lmf.ModelFrameError, "'weights' must be a numeric vector",
            lambda: lmf.lmer(F, df, weights="Subject"))


@pytest.mark.parametrize("degree", ["0", "-2", "0.5"])
def test_poly_degree_below_one(df: pd.DataFrame, degree: str) -> None:
    _raises(lmf.FormulaError, re.escape(R_MESSAGES["poly_zero"]) + ".*poly",
            lambda: lmf.lmer(f"Reaction ~ poly(Days, {degree}) + (1 | Subject)", df))


@pytest.mark.parametrize("degree", ["1e10", "1e300", "10"])
def test_poly_degree_too_large_is_refused_before_allocating(df: pd.DataFrame, degree: str) -> None:
    _raises(lmf.FormulaError, re.escape(R_MESSAGES["poly_big"]),
            lambda: lmf.lmer(f"Reaction ~ poly(Days, {degree}) + (1 | Subject)", df))


def test_raw_poly_degree_too_large(df: pd.DataFrame) -> None:
    _raises(lmf.FormulaError, "'degree' .* too large",
            lambda: lmf.lmer("Reaction ~ poly(Days, 1e10, raw = TRUE) + (1 | Subject)", df))


@pytest.mark.parametrize("value", ["no", "TRUE", None, np.nan, 2, [True], object()])
def test_reml_must_be_logical(df: pd.DataFrame, value: Any) -> None:
    _raises(lmf.ArgumentError, "REML.*" + re.escape(R_MESSAGES["reml_no"]),
            lambda: lmf.lmer(F, df, REML=value))
    _raises(lmf.ArgumentError, "REML", lambda: lmf.lFormula(F, df, REML=value))


def test_argument_error_is_value_and_type_error() -> None:
    assert issubclass(lmf.ArgumentError, ValueError)
    assert issubclass(lmf.ArgumentError, TypeError)
    assert issubclass(lmf.ArgumentError, lmf.LmeFormulaError)


def test_reml_accepts_numpy_and_integer_flags(df: pd.DataFrame) -> None:
    assert not lmf.lmer(F, df, REML=np.False_).is_REML
    assert lmf.lmer(F, df, REML=1).is_REML


@pytest.mark.parametrize(("call", "argument"), [
    (lambda m: lmf.simulate(m, nsim=-1), "nsim"),
    (lambda m: lmf.simulate(m, nsim=0), "nsim"),
    (lambda m: lmf.simulate(m, nsim=1.5), "nsim"),
    (lambda m: lmf.simulate(m, nsim="3"), "nsim"),
    (lambda m: lmf.simulate(m, use_u="yes"), "use_u"),
    (lambda m: lmf.confint(m, level=2, method="Wald"), "level"),
    (lambda m: lmf.confint(m, level=0, method="Wald"), "level"),
    (lambda m: lmf.confint(m, level=np.nan, method="Wald"), "level"),
    (lambda m: lmf.confint(m, method="boot", nsim=-5), "nsim"),
    (lambda m: lmf.bootstrap(m, nsim=0), "nsim"),
    (lambda m: lmf.profile(m, alphamax=1.5), "alphamax"),
    (lambda m: lmf.ranef(m, condVar="no"), "condVar"),
    (lambda m: lmf.residuals(m, scaled="yes"), "scaled"),
    (lambda m: lmf.isSingular(m, tol=-1), "tol"),
    (lambda m: lmf.deviance(m, REML="no"), "REML"),
    (lambda m: lmf.logLik(m, REML="no"), "REML"),
    (lambda m: lmf.predict(m, allow_new_levels="no"), "allow_new_levels"),
    (lambda m: lmf.anova(m, m, refit="no"), "refit"),
])
def test_arguments_are_validated(model: lmf.LmerMod, call: Callable[[lmf.LmerMod], Any],
                                 argument: str) -> None:
    _raises(lmf.ArgumentError, argument, lambda: call(model))


def test_simulate_size_is_checked_before_allocating(model: lmf.LmerMod) -> None:
    _raises(lmf.ArgumentError, r"simulate\(nsim=1000000000\) would need",
            lambda: lmf.simulate(model, nsim=1e9))
    assert lmf.simulate(model, nsim=2.0, rng=1).shape == (180, 2)


def test_object_dtype_numbers_are_numeric(df: pd.DataFrame) -> None:
    data = df.assign(Days=df["Days"].astype(object))
    with pytest.warns(lmf.ColumnTypeWarning, match="'Days'"):
        m = lmf.lmer(F, data)
    assert list(m.fixef.index) == ["(Intercept)", "Days"]
    np.testing.assert_allclose(m.fixef.to_numpy(), lmf.lmer(F, df).fixef.to_numpy())
    assert data["Days"].dtype == object  # the caller's data is not modified


def test_object_dtype_strings_stay_factors(df: pd.DataFrame) -> None:
    data = df.assign(grp=np.where(df["Days"] > 4, "late", "early").astype(object))
    with warnings.catch_warnings():
        warnings.simplefilter("error", lmf.ColumnTypeWarning)
        m = lmf.lmer("Reaction ~ grp + (1 | Subject)", data)
    assert "grplate" in m.fixef.index


# ---- raw exceptions -----------------------------------------------------------------------

def test_non_ascii_names(df: pd.DataFrame) -> None:
    data = df.rename(columns={"Days": "café"})
    m = lmf.lmer("Reaction ~ café + (1 | Subject)", data)
    assert list(m.fixef.index) == ["(Intercept)", "café"]
    _raises(lmf.VariableNotFoundError, "object 'café' not found",
            lambda: lmf.lmer("Reaction ~ café + (1 | Subject)", df))
    _raises(lmf.FormulaError, "unexpected character", lambda: lmf.lmer("Reaction ~ ٣ + (1|Subject)", df))


@pytest.mark.parametrize("fn", ["poly", "log", "factor", "scale", "exp", "I"])
def test_function_without_argument(df: pd.DataFrame, fn: str) -> None:
    _raises(lmf.FormulaError, re.escape(f'argument "x" is missing, with no default in {fn}()'),
            lambda: lmf.lmer(f"Reaction ~ {fn}() + (1 | Subject)", df))


def test_round_with_huge_digits_is_identity_as_in_r(df: pd.DataFrame) -> None:
    m = lmf.lmer("Reaction ~ round(Days, 1e300) + (1 | Subject)", df)
    np.testing.assert_allclose(m.fixef.to_numpy(), lmf.lmer(F, df).fixef.to_numpy())
    _raises(lmf.FormulaError, "'digits' must be a single finite number",
            lambda: lmf.lmer("Reaction ~ round(Days, Days) + (1 | Subject)", df))


def test_multiindex_and_duplicated_columns(df: pd.DataFrame) -> None:
    multi = df.copy()
    multi.columns = pd.MultiIndex.from_tuples([(c, "x") for c in df.columns])
    _raises(lmf.ModelFrameError, "MultiIndex", lambda: lmf.lmer(F, multi))
    dup = pd.concat([df, df[["Days"]]], axis=1)
    _raises(lmf.ModelFrameError, "2 columns named 'Days'", lambda: lmf.lmer(F, dup))


def test_predict_on_no_rows(model: lmf.LmerMod, df: pd.DataFrame) -> None:
    _raises(lmf.ModelFrameError, "newdata has no rows", lambda: lmf.predict(model, newdata=df.iloc[:0]))


def test_unknown_nlopt_algorithm(df: pd.DataFrame) -> None:
    _raises(lmf.LmeFormulaError, "incorrect algorithm supplied.*NLOPT_XX",
            lambda: lmf.lmer(F, df, control={"optCtrl": {"algorithm": "NLOPT_XX"}}))
    _raises(lmf.LmeFormulaError, "incorrect algorithm supplied.*'opt'",
            lambda: lmf.lmer(F, df, control={"optCtrl": {"algorithm": "opt"}}))


def test_unused_optctrl_options_warn(df: pd.DataFrame) -> None:
    with pytest.warns(lmf.LmeFormulaWarning, match="some options were not used.*'foo'"):
        lmf.lmer(F, df, control={"optCtrl": {"foo": 1}})


def test_nesting_deeper_than_r_allows(df: pd.DataFrame) -> None:
    deep = "Reaction ~ " + "(" * 600 + "Days" + ")" * 600 + " + (1 | Subject)"
    _raises(lmf.FormulaError, "contextstack overflow.*50", lambda: lmf.lmer(deep, df))
    calls = "Reaction ~ " + "log(" * 51 + "Days" + ")" * 51 + " + (1 | Subject)"
    _raises(lmf.FormulaError, "contextstack overflow", lambda: lmf.lFormula(calls, df))
    ok = "Reaction ~ " + "(" * 49 + "Days" + ")" * 49 + " + (1 | Subject)"
    assert lmf.lFormula(ok, df).X_names == ["(Intercept)", "Days"]


@pytest.mark.slow
def test_many_terms(df: pd.DataFrame) -> None:
    formula = ("Reaction ~ " + " + ".join(f"I(Days + {i})" for i in range(700))
               + " + (1 | Subject)")
    m = lmf.lmer(formula, df, control={"check.rankX": "silent.drop.cols"})
    assert m.fixef.index[1] == "I(Days + 0)"
    assert "Formula:" in str(m.summary())
    too_long = "y ~ " + " + ".join(f"x{i}" for i in range(30_000))
    _raises(lmf.FormulaError, "formula too long", lambda: lmf.lFormula(too_long, df))
    # formulaic parsed and materialised 400,000 tokens for 20 s before answering
    repeated = "Reaction ~ " + " + ".join(["Days"] * 30_000) + " + (1 | Subject)"
    before = time.perf_counter()
    _raises(lmf.FormulaError, "formula too long",
            lambda: lmf.lFormula(repeated, df, syntax="formulaic"))
    assert time.perf_counter() - before < 10


def test_power_is_capped_at_the_number_of_terms(df: pd.DataFrame) -> None:
    data = df.assign(a=df["Days"] % 3, b=df["Days"] % 4)
    pf = lmf.lFormula("Reaction ~ (Days + a + b)^1e9 + (1 | Subject)", data)
    assert pf.X_names[-1] == "Days:a:b"
    assert pf.X_names == lmf.lFormula("Reaction ~ Days * a * b + (1 | Subject)", data).X_names
    _raises(lmf.FormulaError, "invalid power", lambda: lmf.lFormula(
        "Reaction ~ (Days + a)^1e400 + (1 | Subject)", data))


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    bad_gz = tmp_path / "bad.csv.gz"
    bad_gz.write_bytes(b"not gzip at all")
    binary_gz = tmp_path / "binary.gz"
    binary_gz.write_bytes(gzip.compress(bytes(range(256)) * 4))
    cases = [
        ["fit", F, "--data", str(tmp_path)],
        ["fit", F, "--data", str(bad_gz)],
        ["fit", F, "--data", str(binary_gz)],
        ["fit", "Reaction ~ " + "(" * 80 + "Days" + ")" * 80 + " + (1|Subject)", "--data",
         "sleepstudy"],
        ["fit", "Reaction ~ poly(Days, 0) + (1|Subject)", "--data", "sleepstudy"],
        ["lformula", "Reaction ~ café + (1|Subject)", "--data", "sleepstudy"],
    ]
    for argv in cases:
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("Error: ") and "\n" not in err, err


# ---- lme4 parity --------------------------------------------------------------------------

def test_factor_codes_as_in_r(df: pd.DataFrame) -> None:
    m = lmf.lmer("Reaction ~ as.numeric(Subject) + (1 | Subject)", df)
    # R: fixef 280.958714, 1.847282
    np.testing.assert_allclose(m.fixef.to_numpy(), [280.958714, 1.847282], rtol=1e-6)
    for fn in ("as.integer", "unclass", "as.double"):
        pf = lmf.lFormula(f"Reaction ~ {fn}(Subject) + (1 | Subject)", df)
        codes = np.asarray(df["Subject"].cat.codes) + 1.0
        np.testing.assert_array_equal(pf.X_values[:, 1], codes)
    pf = lmf.lFormula("Reaction ~ as.character(Subject) + (1 | Subject)", df)
    assert pf.X_names[1] == "as.character(Subject)309"


def test_subset_with_levels_indexing_and_sequences(df: pd.DataFrame) -> None:
    m = lmf.lmer(F, df, subset="Subject %in% levels(Subject)[1:4]")
    assert m.nobs == 40  # R: 40
    m2 = lmf.lmer(F, df, subset="Days %in% c(0:3)")
    assert m2.nobs == 72
    m3 = lmf.lmer(F, df, subset="nlevels(Subject) == 18 & Days > 1")
    assert m3.nobs == 144
    assert lmf.lmer(F, df, subset="Subject %in% levels(Subject)[-1]").nobs == 170


def test_control_choices_are_partially_matched(df: pd.DataFrame) -> None:
    ctrl = lmf.lmerControl(**{"check.rankX": "stop", "check.scaleX": "ign"})
    assert ctrl.check_rankX == "stop.deficient" and ctrl.check_scaleX == "ignore"
    data = df.assign(D2=df["Days"] * 2)
    _raises(lmf.RankDeficiencyError, "",
            lambda: lmf.lFormula("Reaction ~ Days + D2 + (1 | Subject)", data,
                                 control={"check.rankX": "stop"}))
    _raises(lmf.ArgumentError, "check.rankX: " + re.escape(R_MESSAGES["rankx_bad"]),
            lambda: lmf.lmerControl(**{"check.rankX": "xyz"}))
    _raises(lmf.ArgumentError, "check.nobs.vs.rankZ",  # ambiguous: warningSmall / warning
            lambda: lmf.lmerControl(**{"check.nobs.vs.rankZ": "warn"}))
    _raises(lmf.LmeFormulaError, "unknown lmerControl option", lambda: lmf.lmerControl(foo=1))


def test_invalid_grouping_factor_message(df: pd.DataFrame) -> None:
    _raises(lmf.RandomEffectsError, re.escape(R_MESSAGES["grouping_star"]),
            lambda: lmf.lmer("Reaction ~ Days + (1 | Subject * Days)", df))


def test_negative_weights_message(df: pd.DataFrame) -> None:
    _raises(lmf.ModelFrameError, re.escape("all(weights >= 0) is not TRUE"),
            lambda: lmf.lmer(F, df, weights=-np.ones(len(df))))


def test_na_pass_is_accepted(df: pd.DataFrame) -> None:
    m = lmf.lmer(F, df, na_action="pass")
    assert m.nobs == len(df)
    assert lmf.lmer(F, df, na_action="na.omit").nobs == len(df)
    data = _with(df, "Reaction", 0, np.nan)
    _raises(lmf.ModelFrameError, re.escape(R_MESSAGES["na_y"]),
            lambda: lmf.lmer(F, data, na_action="pass"))
    _raises(lmf.ModelFrameError, "NA/NaN/Inf in 'x'",
            lambda: lmf.lmer(F, _with(df, "Days", 0, np.nan), na_action="pass"))
    subj = df.assign(Subject=df["Subject"].astype(object))
    subj.iloc[0, subj.columns.get_loc("Subject")] = None
    _raises(lmf.RandomEffectsError, "Invalid grouping factor specification, Subject",
            lambda: lmf.lmer(F, subj, na_action="pass"))


@pytest.mark.slow
def test_profile_intervals_stay_in_range() -> None:
    data = pd.DataFrame(FIXTURES["orthodont"])
    data["Sex"] = pd.Categorical(data["Sex"], categories=["Male", "Female"])
    data["Subject"] = pd.Categorical(data["Subject"])
    m = lmf.lmer("distance ~ age * Sex + (age | Subject)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = lmf.confint(m)
    ref = FIXTURES["orthodont_confint"]
    assert list(ci.index) == ref["rows"]
    assert ci.loc[".sig03"].iloc[0] == 0.0  # lme4: 0; the spline extrapolated to -0.24
    assert ci.loc[".sig02"].iloc[0] == -1.0
    np.testing.assert_allclose(ci.iloc[1:, 0], ref["lower"][1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["upper"], rtol=1e-4, atol=1e-5)


def test_refit_ml_warning_exported() -> None:
    assert lmf.RefitMLWarning is lmf.errors.RefitMLWarning
    assert "RefitMLWarning" in lmf.__all__
    assert issubclass(lmf.RefitMLWarning, lmf.LmeFormulaWarning)


@pytest.mark.parametrize(("call", "pattern"), [
    (lambda df, m: lmf.lmer(F, df, start="abc"), "start must be numeric"),
    (lambda df, m: lmf.lmer(F, df, contrasts=5), "contrasts must be a dict"),
    (lambda df, m: lmf.lmer(F, df, control=5), "control must be"),
    (lambda df, m: lmf.lmer(F, df, control={"optCtrl": {"maxeval": "a"}}), "maxeval"),
    (lambda df, m: lmf.lmer(F, df, control={"optCtrl": {"xtol_abs": -1}}), "xtol_abs"),
    (lambda df, m: lmf.predict(m, re_form=5), "re_form"),
    (lambda df, m: lmf.predict(m, newdata=5), "newdata must be a data frame"),
    (lambda df, m: lmf.confint(m, parm=["nosuch"], method="Wald"), "parm: 'nosuch'"),
    (lambda df, m: lmf.anova(m, 5), "MODEL2 is not a fitted model"),
    (lambda df, m: lmf.refit(m, [1, 2]), "newresp must have 180 values"),
    (lambda df, m: lmf.refit(m, ["a"] * 180), "newresp must be numeric"),
    (lambda df, m: lmf.lmList("Reaction ~ Days | Subject", df, pool="x"), "pool"),
    (lambda df, m: lmf.lmer(F, df, progress="no"), "progress"),
])
def test_more_arguments_are_package_errors(df: pd.DataFrame, model: lmf.LmerMod,
                                           call: Callable[..., Any], pattern: str) -> None:
    _raises(lmf.ArgumentError, pattern, lambda: call(df, model))


@pytest.mark.slow
def test_model_matrix_size_is_checked_before_allocating() -> None:
    # a factor with one level per row in the fixed part: n x n dense columns
    n = 60_000
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"y": rng.normal(size=n), "a": np.arange(n).astype(str),
                         "g": rng.integers(0, 50, n).astype(str)})
    from lmeformula import validate
    limit = validate._memory_bytes() / 4
    if n * (n - 1) * 8 <= limit:  # pragma: no cover - a machine with > 115 GB of memory
        pytest.skip("this machine could build the matrix")
    _raises(lmf.ArgumentError, "model matrix columns of term a would need",
            lambda: lmf.lFormula("y ~ a + (1 | g)", data))
    # formulaic materialised the dummy columns itself: a MemoryError from pandas, or minutes
    # of swapping on a machine with just enough memory; and a C() of a numeric column
    unchanged = _frozen(data)
    _raises(lmf.ArgumentError, "model matrix columns of term a would need",
            lambda: lmf.lFormula("y ~ a + (1 | g)", data, syntax="formulaic"))
    _raises(lmf.ArgumentError, r"model matrix columns of term C\(i\) would need",
            lambda: lmf.lFormula("y ~ C(i) + (1 | g)", data.assign(i=np.arange(n)),
                                 syntax="formulaic"))
    _raises(lmf.ArgumentError, "model matrix columns of term x would need",
            lambda: lmf.lFormula("y ~ (x | g) + (1 | g)", data.assign(x=data["a"]),
                                 syntax="formulaic"))
    unchanged()


@pytest.mark.slow
def test_non_ascii_names_without_asserts() -> None:
    # the tokenizer used bare asserts: under python -O they vanished and a later line failed
    import os
    import subprocess
    import sys

    code = ("import lmeformula as lmf\n"
            "df = lmf.datasets.load('sleepstudy').rename(columns={'Days': 'café'})\n"
            "print(list(lmf.lFormula('Reaction ~ café + (1 | Subject)', df).X_names))\n"
            "try:\n    lmf.lFormula('Reaction ~ \\u0663 + (1 | Subject)', df)\n"
            "except lmf.FormulaError as e:\n    print('FormulaError')\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["['(Intercept)', 'café']", "FormulaError"]


def test_nan_in_z_wins_over_inf_as_in_lme4() -> None:
    """lme4 checks anyNA over the whole of Zt before anything else: NaN in a later term gives
    "NA in Z" even when an earlier term has Inf."""
    rng = np.random.default_rng(2)
    d = pd.DataFrame({"y": rng.normal(size=60), "x": rng.normal(size=60),
                      "z": rng.normal(size=60), "g": np.repeat(list("abcdef"), 10),
                      "h": np.tile(list("uvwxyz"), 10)})
    d.loc[3, "x"] = np.inf
    d.loc[5, "z"] = np.nan
    for syntax in ("R", "formulaic"):
        _raises(lmf.FormulaError if syntax == "R" else lmf.ModelFrameError,
                "NA in Z" if syntax == "R" else "NA in the model's variables",
                lambda syntax=syntax: lmf.lmer("y ~ 1 + (0 + x | g) + (0 + z | h)", d,
                                               na_action="pass", syntax=syntax))


@pytest.mark.parametrize("where", ["only row of a level", "grouping factor", "weights"])
def test_formulaic_pass_never_drops_rows(where: str) -> None:
    """With na_action="pass" a row with NA stops the fit in formulaic syntax too, wherever the
    NA is: formulaic drops such rows itself, and the grouping values, weights and offsets are
    checked before it; none may be left out silently (R's na.pass keeps them, and lme4 stops)."""
    rng = np.random.default_rng(6)
    n = 60
    d = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                      "f": pd.Categorical(["u", "v"] * 29 + ["w", "u"]),
                      "g": np.repeat(list("abcdef"), 10), "w": rng.uniform(1, 2, n)})
    weights = None
    if where == "only row of a level":
        d.loc[58, "x"] = np.nan  # the one row of level "w"
    elif where == "grouping factor":
        d["g"] = d["g"].astype(object)
        d.loc[7, "g"] = None
    else:
        d.loc[7, "w"] = np.nan
        weights = "w"
    _raises(lmf.ModelFrameError, "with na_action='pass'",
            lambda: lmf.lmer("y ~ x + f + (1 | g)", d, na_action="pass", syntax="formulaic",
                             weights=weights))


# ---- awkward inputs a new user tries (session 13) ------------------------------------------

def _frozen(data: pd.DataFrame) -> Callable[[], None]:
    """A check that ``data`` is as it was (values, dtypes and categories)."""
    before = data.copy(deep=True)
    return lambda: pd.testing.assert_frame_equal(data, before, check_exact=True)


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_complex_column_is_refused(df: pd.DataFrame, syntax: str) -> None:
    # numpy's cast to float dropped the imaginary part with only its ComplexWarning
    data = df.assign(Days=df["Days"].astype(complex))
    unchanged = _frozen(data)
    _raises(lmf.FormulaError, "column 'Days': " + re.escape(R_MESSAGES["complex_column"]),
            lambda: lmf.lmer(F, data, syntax=syntax))
    unchanged()


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
@pytest.mark.parametrize(("values", "kind"), [
    ([[1, 2]] * 180, "list"),
    ([{"a": 1}] * 180, "dict"),
    ([np.zeros(2)] * 180, "ndarray"),
])
def test_columns_of_containers_are_refused(df: pd.DataFrame, syntax: str, values: list[Any],
                                            kind: str) -> None:
    # a polars List or Struct column arrives as objects: they became one factor level per
    # printed value (R: "invalid type (list) for variable 'Days'")
    column = pd.Series(values, dtype=object)
    data = df.assign(Days=column)
    _raises(lmf.FormulaError, rf"invalid type \({kind}\) for variable 'Days'",
            lambda: lmf.lmer(F, data, syntax=syntax))


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_date_columns_are_refused_in_both_syntaxes(df: pd.DataFrame, syntax: str) -> None:
    # formulaic failed inside numpy ("ufunc 'multiply' cannot use operands ...")
    data = df.assign(Days=pd.Timestamp("2020-01-01") + pd.to_timedelta(df["Days"], "D"))
    _raises(lmf.FormulaError, "column 'Days' has type datetime64",
            lambda: lmf.lmer(F, data, syntax=syntax))
    dates = df.assign(Days=[pd.Timestamp("2020-01-01").date()] * 180)  # objects: datetime.date
    _raises(lmf.FormulaError, r"invalid type \(date\) for variable 'Days'",
            lambda: lmf.lmer(F, dates, syntax=syntax))


def test_contrasts_checked_as_model_matrix_does() -> None:
    data = lmf.datasets.load("sleepstudy")
    data = data.assign(f=pd.Categorical((data["Days"] % 3).astype(int).astype(str)))
    unchanged = _frozen(data)
    formula = "Reaction ~ f + (1 | Subject)"
    # were silently ignored
    _raises(lmf.FormulaError, re.escape(R_MESSAGES["contrasts_nonfactor"]) + r".*'Days'",
            lambda: lmf.lmer(F, data, contrasts={"Days": "contr.sum"}))
    with pytest.warns(lmf.LmeFormulaWarning, match=re.escape(R_MESSAGES["contrasts_absent"])):
        m = lmf.lmer(formula, data, contrasts={"Nope": "contr.sum"})
    assert list(m.fixef.index) == ["(Intercept)", "f1", "f2"]
    # a raw numpy matmul error
    _raises(lmf.FormulaError, re.escape(R_MESSAGES["contrasts_rows"]) + r".*2 rows, 3 levels",
            lambda: lmf.lmer(formula, data, contrasts={"f": np.eye(2)}))
    _raises(lmf.FormulaError, re.escape(R_MESSAGES["contrasts_unknown"]),
            lambda: lmf.lmer(formula, data, contrasts={"f": "contr.foo"}))
    _raises(lmf.FormulaError, "numeric contrasts or contrast name expected",
            lambda: lmf.lmer(formula, data, contrasts={"f": 3}))
    # a grouping factor is a variable of lme4's model frame: its contrast is accepted
    m = lmf.lmer(formula, data, contrasts={"f": "contr.sum", "Subject": "contr.sum"})
    assert list(m.fixef.index) == ["(Intercept)", "f1", "f2"]
    unchanged()


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_predict_with_a_numeric_variable_as_text(df: pd.DataFrame, syntax: str) -> None:
    m = lmf.lmer(F, df, syntax=syntax)
    # formulaic fits a logical column as 0/1 numbers: predicting from it is no mismatch
    late = df.assign(late=df["Days"] > 4)
    fit = lmf.lmer("Reaction ~ late + (1 | Subject)", late, syntax=syntax)
    np.testing.assert_allclose(fit.predict(late.iloc[:3]).to_numpy(),
                               fit.fitted()[:3], rtol=1e-12)
    new = df.iloc[:5].copy()
    expected = m.predict(new).to_numpy()
    as_text = new.assign(Days=new["Days"].astype(str))
    unchanged = _frozen(as_text)
    # R syntax: a raw "'Days' is not in list"; formulaic: its own error, after which the
    # fitted model's ModelSpec had been changed and every later predict failed
    _raises(lmf.LmeFormulaError, re.escape(R_MESSAGES["newdata_class"]),
            lambda: m.predict(as_text))
    cases: list[tuple[Any, str]] = [(pd.Categorical(new.Days), "factor")]
    if syntax == "R":  # logicals were a raw "'Days' is not in list"; formulaic: 0/1 numbers
        cases.append(([True, False, True, True, False], "logical"))
    for values, supplied in cases:
        _raises(lmf.LmeFormulaError, re.escape(R_MESSAGES["newdata_class"].replace(
            '"character"', f'"{supplied}"')), lambda values=values: m.predict(
                new.assign(Days=values)))
    np.testing.assert_array_equal(m.predict(new).to_numpy(), expected)
    unchanged()


def test_simulate_refuses_new_levels_unless_allowed(model: lmf.LmerMod, df: pd.DataFrame
                                                    ) -> None:
    new = df.iloc[:5].assign(Subject=pd.Categorical(["999"] * 5))
    _raises(lmf.RandomEffectsError, re.escape(R_MESSAGES["simulate_new_levels"]),
            lambda: lmf.simulate(model, newdata=new))
    sim = lmf.simulate(model, newdata=new, allow_new_levels=True, rng=1)
    assert sim.shape == (5, 1) and np.isfinite(sim.to_numpy()).all()


@pytest.mark.parametrize("rng", ["abc", -1, 1.5])
def test_simulate_seed_is_checked(model: lmf.LmerMod, rng: Any) -> None:
    _raises(lmf.ArgumentError, "rng: " + re.escape(R_MESSAGES["seed"]),
            lambda: lmf.simulate(model, rng=rng))


@pytest.mark.parametrize(("start", "key"), [
    ([np.nan], "start_na"), ([np.inf], "start_inf"), ({"foo": 1.0}, "start_components"),
])
def test_start_is_checked_before_the_optimizer(df: pd.DataFrame, start: Any, key: str) -> None:
    # a NaN start reached nlopt: its invalid_argument, then a heap corruption at exit
    _raises(lmf.ArgumentError, re.escape(R_MESSAGES[key]), lambda: lmf.lmer(F, df, start=start))


def test_glmer_start_names_and_values() -> None:
    cbpp = lmf.datasets.load("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    _raises(lmf.ArgumentError, re.escape(R_MESSAGES["glmer_start_components"]),
            lambda: lmf.glmer(formula, cbpp, family="binomial", start={"foo": 1.0}))
    _raises(lmf.ArgumentError, re.escape(R_MESSAGES["start_na"]),
            lambda: lmf.glmer(formula, cbpp, family="binomial", start={"theta": [np.nan]}))
    _raises(lmf.ArgumentError, "start must be numeric",
            lambda: lmf.glmer(formula, cbpp, family="binomial", start={"theta": "x"}))


def test_convergence_check_options_are_checked() -> None:
    # check.conv.grad=5 failed inside the convergence check, after the fit
    _raises(lmf.ArgumentError, r"check.conv\* option check.conv.grad must be a list",
            lambda: lmf.lmerControl(check_conv_grad=5))
    assert R_MESSAGES["conv_option"].startswith("check.conv* option")
    _raises(lmf.ArgumentError, re.escape(R_MESSAGES["conv_tol"]).replace("'tol'", r"\$tol"),
            lambda: lmf.lmerControl(check_conv_grad=("warning", -1)))
    _raises(lmf.ArgumentError, "has no 'action' string",
            lambda: lmf.lmerControl(check_conv_hess=(1, 2)))
    _raises(lmf.ArgumentError, "'arg' should be one of",
            lambda: lmf.lmerControl(check_conv_grad={"action": "loud", "tol": 1e-3}))
    assert lmf.lmerControl(check_conv_grad=["stop", 0.1]).check_conv_grad == ("stop", 0.1)


@pytest.mark.parametrize(("call", "pattern"), [
    (lambda m: lmf.confint(m, parm=1.5, method="Wald"), "parm must be"),
    (lambda m: lmf.vcov(m, adjust="foo"), "adjust must be"),
    (lambda m: lmf.contest(m, "x"), "L must be a numeric"),
    (lambda m: lmf.update(m, foo=1), re.escape(R_MESSAGES["update_unused"])),
    (lambda m: lmf.fixef("m"), r"fixef\(\) needs a fitted model"),
    (lambda m: lmf.ngrps(5), r"ngrps\(\) needs a fitted model"),
])
def test_post_fit_arguments_are_package_errors(model: lmf.LmerMod, call: Callable[..., Any],
                                               pattern: str) -> None:
    _raises(lmf.ArgumentError, pattern, lambda: call(model))


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_constant_response_is_an_error(df: pd.DataFrame, syntax: str) -> None:
    # lme4: REML criterion -Inf, σ = 0 and convergence warnings; here the engine's log(0)
    # RuntimeWarnings and a finite criterion made of rounding errors
    data = df.assign(Reaction=250.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(lmf.ModelFrameError, match="the response is constant"):
            lmf.lmer(F, data, syntax=syntax)
    # without an intercept the response is not in X's span: that model is fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmf.ConvergenceWarning)
        assert lmf.lmer("Reaction ~ 0 + Days + (1 | Subject)", data).fixef.shape == (1,)


def test_glmer_simulate_arguments() -> None:
    cbpp = lmf.datasets.load("cbpp")
    m = lmf.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                  family="binomial")
    # newdata was silently ignored (the fitted rows simulated), nsim and rng unchecked; the
    # new rows' binomial totals are not known
    _raises(lmf.ArgumentError, "simulate\\(newdata=\\) of a binomial fit with totals",
            lambda: m.simulate(newdata=cbpp.iloc[:5]))
    _raises(lmf.ArgumentError, "nsim", lambda: m.simulate(nsim=0))
    _raises(lmf.ArgumentError, "rng: " + re.escape(R_MESSAGES["seed"]),
            lambda: m.simulate(rng="abc"))
    _raises(lmf.RandomEffectsError, "not in the model", lambda: m.simulate(re_form="~(1|foo)"))
    # a re_form naming the model's term conditions on it (it drew new effects, as re_form=NA)
    conditioned = m.simulate(3, rng=4, re_form="~(1|herd)")
    pd.testing.assert_frame_equal(conditioned, m.simulate(3, rng=4, use_u=True))
    pd.testing.assert_frame_equal(m.simulate(3, rng=4, re_form="~0"), m.simulate(3, rng=4))
    assert not conditioned.equals(m.simulate(3, rng=4))


def test_glmer_arguments_are_package_errors() -> None:
    cbpp = lmf.datasets.load("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    # each was a raw ValueError from int() / float() / numpy
    _raises(lmf.ArgumentError, "nAGQ must be a number",
            lambda: lmf.glmer(formula, cbpp, family="binomial", nAGQ="x"))
    _raises(lmf.ArgumentError, "tolPwrss must be a number",
            lambda: lmf.glmerControl(tolPwrss="x"))
    _raises(lmf.ArgumentError, "tolPwrss must be > 0", lambda: lmf.glmerControl(tolPwrss=-1))
    _raises(lmf.ArgumentError, "compDev", lambda: lmf.glmerControl(compDev="yes"))
    m = lmf.glmer(formula, cbpp, family="binomial")
    _raises(lmf.ArgumentError, "response must be numeric or factor", lambda: lmf.refit(m, "x"))


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_response_on_the_right_is_dropped_with_r_warning(df: pd.DataFrame, syntax: str) -> None:
    # formulaic kept it: an exact fit, log(0) RuntimeWarnings and a criterion of rounding
    # errors; the R syntax dropped it without R's warning
    with pytest.warns(lmf.LmeFormulaWarning, match="the response appeared on the right-hand "
                      "side and was dropped"):
        m = lmf.lmer("Reaction ~ Reaction + Days + (1 | Subject)", df, syntax=syntax)
    ref = lmf.lmer("Reaction ~ Days + (1 | Subject)", df, syntax=syntax)
    assert list(m.fixef.index) == list(ref.fixef.index)
    assert m.REMLcrit() == ref.REMLcrit()
    with warnings.catch_warnings():
        warnings.simplefilter("error", lmf.LmeFormulaWarning)
        lmf.lmer("Reaction ~ Days + (1 | Subject)", df, syntax=syntax)  # no false alarm


def test_column_named_like_formulaic_intercept(df: pd.DataFrame) -> None:
    # formulaic keys columns by name: a data column 'Intercept' and the intercept made one
    # column, and X silently lost the other (then a raw IndexError)
    data = df.rename(columns={"Days": "Intercept"})
    for formula in ("Reaction ~ Intercept + (1 | Subject)",
                    "Reaction ~ 1 + (Intercept | Subject)"):
        _raises(lmf.FormulaError, "two columns of one name .* 'Intercept', must be renamed",
                lambda formula=formula: lmf.lmer(formula, data, syntax="formulaic"))
    # the R syntax has no such clash
    assert list(lmf.lmer("Reaction ~ Intercept + (1 | Subject)", data).fixef.index) == [
        "(Intercept)", "Intercept"]


def test_bar_inside_the_grouping_factor(df: pd.DataFrame) -> None:
    # lme4: "Invalid grouping factor specification, (1 | Subject)"; it was "grouping factors
    # must have > 1 sampled level"
    _raises(lmf.RandomEffectsError, r"Invalid grouping factor specification, \(?1 \| Subject",
            lambda: lmf.lmer("Reaction ~ Days + (1 | (1 | Subject))", df))


def test_optimizer_workspace_is_checked_before_allocating() -> None:
    # (f | g) with a 300-level f: θ has 45,150 parameters; NLopt's BOBYQA would allocate
    # about 122 GB without checking (a segmentation fault under a memory limit, the machine's
    # memory exhausted without one); glmer spent a minute in its setup before getting there
    rng = np.random.default_rng(1)
    n = 20_000
    data = pd.DataFrame({"y": rng.poisson(2.0, n).astype(float),
                         "f": rng.integers(0, 300, n).astype(str),
                         "g": rng.integers(0, 20, n).astype(str)})
    from lmeformula import validate
    if validate._memory_bytes() / 4 >= 122e9:  # pragma: no cover - a machine with > 490 GB
        pytest.skip("this machine could hold the optimizer's workspace")
    pattern = r"the optimizer \(LN_BOBYQA\) for 45150 parameters would need"
    _raises(lmf.ArgumentError, pattern, lambda: lmf.lmer("y ~ 1 + (f | g)", data))
    _raises(lmf.ArgumentError, pattern.replace("LN_BOBYQA", "Nelder_Mead"),
            lambda: lmf.lmer("y ~ 1 + (f | g)", data,
                             control=lmf.lmerControl(optimizer="Nelder_Mead")))
    # glmer's first stage: lme4's bobyqa (minqa's, npt = n + 2: about 228 GB as Python floats)
    _raises(lmf.ArgumentError, pattern.replace("LN_BOBYQA", "bobyqa"),
            lambda: lmf.glmer("y ~ 1 + (f | g)", data, family="poisson"))


@pytest.fixture(scope="module")
def factor_model(df: pd.DataFrame) -> lmf.LmerMod:
    data = df.assign(f=pd.Categorical((df["Days"] % 3).astype(int).astype(str)))
    return lmf.lmer("Reaction ~ Days + f + (1 | Subject)", data)


@pytest.mark.parametrize(("call", "pattern"), [
    # raw TypeError / ValueError before
    (lambda m: lmf.difflsmeans(m, which=5), "'which' must be term names"),
    (lambda m: lmf.coef_table(m, ddf=5), "'ddf' must be a string"),
    (lambda m: lmf.contest(m, [0, 1, 0, 0], rhs="x"), "rhs must be numeric"),
    (lambda m: lmf.bootstrap(m, nsim=2, FUN=5), "FUN must be a function"),
    (lambda m: lmf.r2_nakagawa(5), r"needs a fitted model \(from lmer or glmer\), not int"),
    (lambda m: lmf.hatvalues("m"), r"hatvalues\(\) needs a fitted model"),
    (lambda m: lmf.tidy(None), r"tidy\(\) needs a fitted model"),
    (lambda m: lmf.contest("m", [1.0]), "expected a fitted linear mixed model"),
    (lambda m: lmf.ranova(3), "'model' should be an lmer-fit"),
    # a truthy string was taken as True
    (lambda m: lmf.contest(m, [0, 1, 0, 0], joint="no"), "joint"),
    (lambda m: lmf.ranova(m, reduce_terms="no"), "reduce_terms"),
    (lambda m: lmf.icc(m, by_group="no"), "by_group"),
])
def test_more_post_fit_arguments(factor_model: lmf.LmerMod, call: Callable[..., Any],
                                 pattern: str) -> None:
    _raises(lmf.ArgumentError, pattern, lambda: call(factor_model))


def test_post_fit_conveniences(factor_model: lmf.LmerMod, model: lmf.LmerMod,
                               df: pd.DataFrame) -> None:
    pl = pytest.importorskip("polars")
    # augment took pandas only, where the fitting functions take any data frame
    data = df.assign(f=pd.Categorical((df["Days"] % 3).astype(int).astype(str)))
    aug = lmf.augment(factor_model, pl.from_pandas(data))
    pd.testing.assert_frame_equal(aug, lmf.augment(factor_model, data).reset_index(drop=True),
                                  check_index_type=False)
    # a single name is one name: allFit(optimizers="bobyqa") was once split into the letters
    # b, o, b, y, q, a (bobyqa is an optimizer now; lme4's nlminbwrap has no counterpart)
    _raises(lmf.LmeFormulaError, r"unknown optimizer\(s\) 'nlminbwrap' for allFit",
            lambda: lmf.allFit(model, optimizers="nlminbwrap"))
    assert list(lmf.allFit(model, optimizers="bobyqa").summary().which_OK) == ["bobyqa"]
    # lme4's get.which warns when which= selects nothing (it was silent)
    with pytest.warns(lmf.LmeFormulaWarning, match="Nothing selected by 'which="):
        assert lmf.profile(model, which="nosuch").points == {}


def test_numeric_grouping_values_in_newdata_as_r_labels_them(model: lmf.LmerMod,
                                                           df: pd.DataFrame) -> None:
    # a float column 308.0 is R's level "308" (as.character); it was "new level 308.0"
    new = df.iloc[:3]
    expected = model.predict(new.assign(Subject=pd.Categorical(
        ["308", "308", "309"], categories=df["Subject"].cat.categories))).to_numpy()
    assert expected[2] != expected[1]
    for subject in ([308, 308, 309], [308.0, 308.0, 309.0], ["308", "308", "309"],
                    pd.array([308, 308, 309], dtype="Int64")):
        np.testing.assert_array_equal(model.predict(new.assign(Subject=subject)).to_numpy(),
                                      expected)
    _raises(lmf.RandomEffectsError, "new levels detected in newdata: 308.5",
            lambda: model.predict(new.assign(Subject=[308.0, 308.5, 309.0])))


def test_anova_of_models_fitted_to_other_observations(model: lmf.LmerMod,
                                                      df: pd.DataFrame) -> None:
    # lme4 compares the calls' data expressions; the responses of the same size differed
    # here and a likelihood-ratio table of unrelated fits came out
    doubled = lmf.lmer("Reaction ~ Days + (Days | Subject)", df.assign(Reaction=2 * df.Reaction))
    other_rows = lmf.lmer("Reaction ~ Days + (1 | Subject)",
                          pd.concat([df.iloc[10:], df.iloc[:10].assign(Reaction=300.0)]))
    for other in (doubled, other_rows):
        _raises(lmf.LmeFormulaError, re.escape(R_MESSAGES["anova_data"]) + ": the responses",
                lambda other=other: lmf.anova(model, other))
    # the same observations given another way compare: another frame kind, rows reordered,
    # a column added for the larger model
    pl = pytest.importorskip("polars")
    for data in (pl.from_pandas(df), df.sample(frac=1.0, random_state=1),
                 df.assign(x=np.arange(180.0))):
        formula = "Reaction ~ Days + x + (1 | Subject)" if "x" in data.columns \
            else "Reaction ~ Days + (Days | Subject)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lmf.RefitMLWarning)
            assert lmf.anova(model, lmf.lmer(formula, data)).shape[0] == 2


def test_variable_not_found_names_the_near_column(df: pd.DataFrame) -> None:
    # a column "Days " (a trailing space) or "my days" written as Days / my.days: R's message,
    # then the column meant
    _raises(lmf.VariableNotFoundError, r"object 'Days' not found \(the data have 'Days '; .*"
            "backticks", lambda: lmf.lmer(F, df.rename(columns={"Days": "Days "})))
    _raises(lmf.VariableNotFoundError, r"object 'my.days' not found \(the data have 'my days'",
            lambda: lmf.lmer("Reaction ~ my.days + (1 | Subject)",
                             df.rename(columns={"Days": "my days"})))
    _raises(lmf.VariableNotFoundError, r"object 'days' not found \(the data have 'Days'\)$",
            lambda: lmf.lmer("Reaction ~ days + (1 | Subject)", df))
    _raises(lmf.VariableNotFoundError, r"^object 'Foo' not found$",
            lambda: lmf.lmer("Reaction ~ Foo + (1 | Subject)", df))
