"""Any data frame as input: polars (eager and lazy), pyarrow Tables and dicts of arrays give
exactly the fit of the same data as a pandas DataFrame; level order, nullable types and the
caller's data are respected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
from lmeformula.dataframe import as_pandas
from lmeformula.errors import ModelFrameError

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return lmf.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def fm1(sleep: pd.DataFrame) -> lmf.LmerMod:
    return lmf.lmer(FORMULA, sleep)


def _kinds(df: pd.DataFrame) -> dict[str, object]:
    return {
        "polars": pl.from_pandas(df),
        "polars_lazy": pl.from_pandas(df).lazy(),
        "pyarrow": pa.Table.from_pandas(df, preserve_index=False),
        "dict": {k: df[k].to_numpy() for k in df.columns},
    }


@pytest.mark.parametrize("kind", ["polars", "polars_lazy", "pyarrow", "dict"])
def test_every_frame_gives_the_pandas_fit_exactly(kind: str, sleep: pd.DataFrame,
                                                   fm1: lmf.LmerMod) -> None:
    data = _kinds(sleep)[kind]
    m = lmf.lmer(FORMULA, data)
    assert m.REMLcrit() == fm1.REMLcrit()
    np.testing.assert_array_equal(m.theta, fm1.theta)
    np.testing.assert_array_equal(m.beta, fm1.beta)
    assert m.sigma == fm1.sigma
    pf, pf0 = m.lformula, fm1.lformula
    assert (pf.reTrms.Zt != pf0.reTrms.Zt).nnz == 0
    assert list(pf.reTrms.flist["Subject"].categories) == list(
        pf0.reTrms.flist["Subject"].categories)
    assert pf.X_names == pf0.X_names
    assert isinstance(pf.fr, pd.DataFrame)  # the model frame is pandas, documented
    # predictions on new rows given in the same kind of frame
    new = _kinds(sleep.iloc[:7].reset_index(drop=True))[kind]
    np.testing.assert_array_equal(m.predict(new).to_numpy(),
                                  fm1.predict(sleep.iloc[:7]).to_numpy())


def test_lformula_structures_from_polars(sleep: pd.DataFrame) -> None:
    a = lmf.lFormula(FORMULA, sleep)
    b = lmf.lFormula(FORMULA, pl.from_pandas(sleep))
    for name in ("theta", "lower", "Gp", "Lind"):
        np.testing.assert_array_equal(getattr(a.reTrms, name), getattr(b.reTrms, name))
    assert a.reTrms.cnms == b.reTrms.cnms
    assert (a.reTrms.Lambdat != b.reTrms.Lambdat).nnz == 0
    np.testing.assert_array_equal(a.X_values, b.X_values)


def test_enum_and_dictionary_level_order_is_kept() -> None:
    rng = np.random.default_rng(1)
    g = rng.choice(["c", "a", "b", "d"], size=80)
    h = rng.choice(["c", "a", "b", "d"], size=80)
    x = rng.normal(size=80)
    y = x + rng.normal(size=80) + (g == "c")
    order = ["d", "c", "b", "a"]
    frames = {
        "pandas": pd.DataFrame({"y": y, "x": x,
                                "g": pd.Categorical(g, categories=order),
                                "f": pd.Categorical(h, categories=order)}),
        "polars": pl.DataFrame({"y": y, "x": x, "g": pl.Series(g, dtype=pl.Enum(order)),
                                "f": pl.Series(h, dtype=pl.Enum(order))}),
        "pyarrow": pa.table({"y": y, "x": x,
                             "g": pa.DictionaryArray.from_arrays(
                                 pa.array([order.index(v) for v in g], pa.int8()), order),
                             "f": pa.DictionaryArray.from_arrays(
                                 pa.array([order.index(v) for v in h], pa.int8()), order)}),
    }
    fits = {k: lmf.lmer("y ~ x + f + (1 | g)", v) for k, v in frames.items()}
    for k, m in fits.items():
        assert list(m.lformula.reTrms.flist["g"].categories) == order, k
        assert m.lformula.X_names == ["(Intercept)", "x", "fc", "fb", "fa"], k
        assert m.REMLcrit() == fits["pandas"].REMLcrit()


def test_strings_become_factors_in_r_order() -> None:
    # C-locale order: upper case before lower case, as R sorts under LC_ALL=C
    g = np.array(["b", "B", "a", "A"] * 10)
    rng = np.random.default_rng(2)
    y = rng.normal(size=40)
    for data in (pl.DataFrame({"y": y, "g": g}), pa.table({"y": y, "g": g}),
                 {"y": y, "g": list(g)}):
        pf = lmf.lFormula("y ~ 1 + (1 | g)", data)
        assert list(pf.reTrms.flist["g"].categories) == ["A", "B", "a", "b"]


def test_nullable_columns_drop_the_same_rows_as_pandas(sleep: pd.DataFrame) -> None:
    days = sleep["Days"].to_numpy().astype(float)
    days[[3, 50, 100]] = np.nan
    ref = sleep.assign(Days=days)
    m0 = lmf.lmer(FORMULA, ref)
    # polars: an Int64 column with nulls, a string grouping factor with a null
    subject = sleep["Subject"].astype(str).to_numpy().astype(object)
    subject[7] = None
    ref2 = ref.assign(Subject=subject)
    m1 = lmf.lmer(FORMULA, ref2)
    data = pl.DataFrame({"Reaction": sleep["Reaction"].to_numpy(),
                         "Days": pl.Series([None if np.isnan(d) else int(d) for d in days],
                                           dtype=pl.Int64),
                         "Subject": pl.Series(list(subject), dtype=pl.String)})
    m2 = lmf.lmer(FORMULA, data)
    assert m2.nobs == m1.nobs == 176 and m0.nobs == 177
    assert m2.REMLcrit() == pytest.approx(m1.REMLcrit(), rel=1e-12)
    np.testing.assert_array_equal(m2.lformula.frame.na_action.omitted, [3, 7, 50, 100])


def test_nullable_boolean_becomes_an_r_factor() -> None:
    rng = np.random.default_rng(3)
    n = 60
    flag = [bool(v) for v in rng.integers(0, 2, n)]
    flag[5] = None  # type: ignore[call-overload]
    g = np.repeat(list("abcdef"), 10)
    y = rng.normal(size=n)
    pf = lmf.lFormula("y ~ flag + (1 | g)", pl.DataFrame({"y": y, "flag": flag, "g": g}))
    assert pf.X_names == ["(Intercept)", "flagTRUE"]
    assert pf.frame.nrow == n - 1
    pf2 = lmf.lFormula("y ~ flag + (1 | g)",
                       pd.DataFrame({"y": y, "flag": pd.array(flag, dtype="boolean"), "g": g}))
    np.testing.assert_array_equal(pf.X_values, pf2.X_values)


def test_callers_data_is_not_modified(sleep: pd.DataFrame) -> None:
    data = pl.from_pandas(sleep)
    before = data.clone()
    lmf.lmer(FORMULA, data).predict(data)
    assert data.equals(before)
    d = {k: sleep[k].to_numpy().copy() for k in sleep.columns}
    copies = {k: v.copy() for k, v in d.items()}
    lmf.lmer(FORMULA, d)
    for k in d:
        np.testing.assert_array_equal(d[k], copies[k])


def test_pandas_input_is_not_copied(sleep: pd.DataFrame) -> None:
    assert as_pandas(sleep) is sleep


@pytest.mark.slow
def test_lmlist_update_simulate_and_statsmodels_take_polars(sleep: pd.DataFrame,
                                                            fm1: lmf.LmerMod) -> None:
    data = pl.from_pandas(sleep)
    a = lmf.lmList("Reaction ~ Days | Subject", sleep).coef()
    b = lmf.lmList("Reaction ~ Days | Subject", data).coef()
    pd.testing.assert_frame_equal(a, b)
    m = lmf.lmer(FORMULA, data)
    up = lmf.update(m, REML=False)
    assert up.deviance() == pytest.approx(lmf.update(fm1, REML=False).deviance(), rel=1e-12)
    up2 = lmf.update(fm1, data=data.lazy(), REML=False)
    assert up2.deviance() == pytest.approx(up.deviance(), rel=1e-12)
    sim = m.simulate(2, rng=1, newdata=data.head(5))
    assert sim.shape == (5, 2)
    table = lmf.compare_statsmodels("Reaction ~ Days + (1 | Subject)", data)
    assert table.loc["(Intercept)", "abs_diff"] < 1e-3


def test_bad_inputs_are_package_errors() -> None:
    with pytest.raises(TypeError, match="data must be a data frame"):
        lmf.lFormula("y ~ 1 + (1 | g)", [[1, 2], [3, 4]])
    with pytest.raises(ModelFrameError, match="differing number of rows"):
        lmf.lFormula("y ~ 1 + (1 | g)", {"y": [1.0, 2.0, 3.0], "g": ["a", "b"]})
    with pytest.raises(ModelFrameError, match="one-dimensional"):
        lmf.lFormula("y ~ 1 + (1 | g)", {"y": np.zeros((3, 2)), "g": ["a", "b", "c"]})
    m = lmf.lmer(FORMULA, lmf.datasets.load("sleepstudy"))
    with pytest.raises(TypeError, match="newdata must be a data frame"):
        m.predict(42)


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_pandas_nullable_and_arrow_dtypes(sleep: pd.DataFrame, syntax: str) -> None:
    missing = np.arange(180) % 13 == 0
    ref = lmf.lmer(FORMULA, sleep.assign(Days=np.where(missing, np.nan, sleep.Days)),
                   syntax=syntax)
    days = pd.array([None if m else int(v) for m, v in zip(missing, sleep.Days, strict=True)],
                    dtype="Int64")
    subject = sleep.Subject.astype(str).to_numpy()
    for data in (sleep.assign(Days=days),
                 sleep.assign(Days=days.astype("Float64")),
                 sleep.assign(Days=pd.array(days, dtype=pd.ArrowDtype(pa.int64()))),
                 sleep.assign(Days=days, Subject=pd.array(subject, dtype="string")),
                 sleep.assign(Days=days,
                              Subject=pd.array(subject, dtype=pd.ArrowDtype(pa.string())))):
        m = lmf.lmer(FORMULA, data, syntax=syntax)
        assert m.nobs == 166
        assert m.REMLcrit() == pytest.approx(ref.REMLcrit(), rel=1e-12)


@pytest.mark.slow
def test_glmer_takes_polars_pyarrow_and_dicts_as_pandas() -> None:
    # glmer converts any data frame once, as lmer does. A polars Categorical has no level
    # order, so its levels sort as strings do (as R sorts character data); Arrow dictionaries
    # and pandas Categoricals keep theirs
    cbpp = lmf.datasets.load("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    ref = lmf.glmer(formula, cbpp, family="binomial")
    ref_str = lmf.glmer(formula, cbpp.assign(herd=cbpp["herd"].astype(str)), family="binomial")
    cases = [(pl.from_pandas(cbpp), ref_str), (pa.Table.from_pandas(cbpp), ref),
             ({c: cbpp[c].array for c in cbpp.columns}, ref)]
    for data, expected in cases:
        m = lmf.glmer(formula, data, family="binomial")
        assert list(m.ranef()["herd"].index) == list(expected.ranef()["herd"].index)
        np.testing.assert_allclose(m.fixef.to_numpy(), expected.fixef.to_numpy(), rtol=1e-10)
        np.testing.assert_allclose(m.theta, expected.theta, rtol=1e-10)


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_pandas_arrow_dictionary_column_is_a_factor(sleep: pd.DataFrame, fm1: lmf.LmerMod,
                                                    syntax: str) -> None:
    # a pandas column of ArrowDtype(dictionary) (what pd.read_parquet(dtype_backend="pyarrow")
    # gives) was refused as a type no formula can use; it is a factor, as a pyarrow Table's
    # dictionary column is, its dictionary's order kept
    levels = sorted(map(str, sleep["Subject"].cat.categories), reverse=True)
    arr = pa.DictionaryArray.from_arrays(
        pa.array([levels.index(s) for s in sleep["Subject"].astype(str)], pa.int32()),
        pa.array(levels))
    data = sleep.assign(Subject=pd.Series(pd.arrays.ArrowExtensionArray(arr), index=sleep.index))
    before = data.copy(deep=True)
    m = lmf.lmer(FORMULA, data, syntax=syntax)
    assert m.REMLcrit() == pytest.approx(fm1.REMLcrit(), rel=1e-12)
    assert list(m.ranef()["Subject"].index) == levels
    pd.testing.assert_frame_equal(data, before, check_exact=True)
    # an ordered dictionary is an ordered factor (contr.poly in the R syntax)
    small = pa.DictionaryArray.from_arrays(pa.array(np.arange(180) % 3, pa.int8()),
                                           pa.array(["lo", "mid", "hi"]), ordered=True)
    ordered = sleep.assign(f=pd.Series(pd.arrays.ArrowExtensionArray(small), index=sleep.index))
    pf = lmf.lFormula("Reaction ~ f + (1 | Subject)", ordered)
    assert pf.X_names == ["(Intercept)", "f.L", "f.Q"]


def test_polars_nested_and_temporal_columns_are_package_errors(sleep: pd.DataFrame) -> None:
    # a polars List or Struct column became a factor of its printed values (R syntax: an
    # identifiability error about something else; formulaic: "unhashable type")
    base = pl.from_pandas(sleep)
    for syntax in ("R", "formulaic"):
        for data, kind in ((base.with_columns(pl.concat_list([pl.col("Days")]).alias("Days")),
                            "ndarray"),
                           (base.with_columns(pl.struct(["Days"]).alias("Days")), "dict")):
            with pytest.raises(lmf.FormulaError, match=rf"invalid type \({kind}\) .* 'Days'"):
                lmf.lmer(FORMULA, data, syntax=syntax)
        dated = base.with_columns(pl.col("Days").cast(pl.Date))
        with pytest.raises(lmf.FormulaError, match="column 'Days' has type datetime64"):
            lmf.lmer(FORMULA, dated, syntax=syntax)
