"""The shortcuts taken for small fits give what the longer ways gave (issue 12, small models)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from thread_counts import blas_counts

import lmeformula as lmf
from lmeformula.pls.dense import _gram_pattern
from lmeformula.transforms import factor_from_codes


def _sparse_pattern(Zt: sp.csc_matrix) -> np.ndarray:
    """The pattern of Zt Zt' by a sparse product of Zt's pattern (the former way)."""
    ones = sp.csr_matrix(Zt, copy=True)
    ones.data = np.ones_like(ones.data)
    return (ones @ ones.T).toarray() > 0


@pytest.mark.parametrize("seed", range(40))
def test_gram_pattern_matches_sparse_product(seed: int) -> None:
    rng = np.random.default_rng(seed)
    q, n = int(rng.integers(1, 25)), int(rng.integers(1, 50))
    Zt = sp.random(q, n, density=float(rng.uniform(0.02, 0.6)), format="csc",
                   random_state=int(rng.integers(2**31)))
    if Zt.nnz:
        Zt.data[int(rng.integers(Zt.nnz))] = 0.0  # an explicit zero still counts
    # the row indices within a column in any order
    indices = Zt.indices.copy()
    for j in range(n):
        lo, hi = Zt.indptr[j], Zt.indptr[j + 1]
        indices[lo:hi] = rng.permutation(indices[lo:hi])
    shuffled = sp.csc_matrix((Zt.data, indices, Zt.indptr), shape=Zt.shape)
    expected = _sparse_pattern(Zt)
    assert np.array_equal(_gram_pattern(Zt), expected)
    assert np.array_equal(_gram_pattern(shuffled), expected)


def test_gram_pattern_of_a_model() -> None:
    df = lmf.datasets.load("sleepstudy")
    Zt = lmf.lFormula("Reaction ~ Days + (Days | Subject)", df).reTrms.Zt
    pattern = _gram_pattern(Zt)
    assert np.array_equal(pattern, _sparse_pattern(Zt))
    # 18 subjects' 2 x 2 blocks, nothing between subjects
    assert pattern.sum() == 18 * 4


@pytest.mark.parametrize("levels", [["b", "a:c", "NA"], ["x"], [], ["1", "2"]])
def test_factor_from_codes_keeps_pandas_index(levels: list[str]) -> None:
    codes = np.arange(len(levels)) if levels else np.zeros(0, dtype=np.int64)
    f = factor_from_codes(codes, levels)
    expected = pd.Categorical.from_codes(codes, categories=pd.Index(levels))
    assert f.categories.dtype == expected.categories.dtype
    assert f.categories.equals(expected.categories)
    assert np.array_equal(f.codes, expected.codes)


def test_factor_from_codes_refuses_repeated_levels() -> None:
    with pytest.raises(ValueError):
        factor_from_codes(np.array([0, 1]), ["a", "a"])


@pytest.mark.parametrize(("data", "formula", "kwargs"), [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", {}),
    ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", {"REML": False}),
    ("sleepstudy", "Reaction ~ Days + (1 | Subject)", {"offset": "Days"}),
])
def test_lazy_model_quantities_match_their_definitions(data: str, formula: str,
                                                       kwargs: dict) -> None:
    """b, μ and the sums of squares, formed on first use, are the model's own."""
    df = lmf.datasets.load(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.lmer(formula, df, **kwargs)
    pf = m.lformula
    lam = m.getME("Lambda").toarray()
    b = lam @ m.u
    np.testing.assert_allclose(m.b, b, rtol=1e-12, atol=1e-12)
    mu = pf.X_values @ m.beta + m.getME("Z").toarray() @ b
    if pf.offset is not None:
        mu = mu + pf.offset
    np.testing.assert_allclose(lmf.fitted(m), mu, rtol=1e-12)
    pwrss = float(np.sum((pf.y - mu) ** 2) + m.u @ m.u)
    assert m.pwrss == pytest.approx(pwrss, rel=1e-12)
    # the criterion from the fitted model's pieces is the optimizer's at the optimum
    crit = m.REMLcrit() if m.is_REML else lmf.deviance(m)
    assert crit == pytest.approx(m.optinfo.fval, rel=1e-12)


def test_small_setups_run_on_one_thread_without_reading_the_load(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Below ThreadPolicy.serial_rows rows the setup takes one BLAS thread and never reads
    the machine's load; from there on it follows the load (capped by the caller's)."""
    from threadpoolctl import threadpool_limits

    import lmeformula.pls.threads as threads

    reads: list[int] = []

    def free(*args: object, **kwargs: object) -> int:
        reads.append(1)
        return 2

    monkeypatch.setattr(threads, "free_cores", free)
    small = threads.THREAD_POLICY.serial_rows - 1
    with threadpool_limits(limits=2, user_api="blas"):
        with threads.setup_threads(rows=small):
            assert blas_counts() == [1] * len(blas_counts())
        assert not reads
        with threads.setup_threads(rows=small + 1):
            assert blas_counts() == [2] * len(blas_counts())
        assert reads == [1]
        with threads.setup_threads(2, rows=small):  # control's "threads" whatever the size
            assert blas_counts() == [2] * len(blas_counts())
        assert blas_counts() == [2] * len(blas_counts())


def test_frame_reads_float_and_categorical_columns_as_the_series_path_does() -> None:
    """The model frame's direct read of a column's storage gives what column_value of the
    Series gives, as a copy; other column types (and duplicated names) take the Series path."""
    from lmeformula.frame import _LazyColumns
    from lmeformula.transforms import column_value

    df = pd.DataFrame({
        "f": np.array([1.5, np.nan, -0.0, 2.0]),
        "g": pd.Categorical(["b", "a", None, "b"], categories=["b", "a", "c"]),
        "i": [1, 2, 3, 4],
        "s": ["x", "y", "z", "x"],
        "F": pd.array([1.0, None, 2.0, 3.0], dtype="Float64"),
        "h": np.array([1, 2, 3, 4], dtype=np.float32),
    })
    before = df.copy()
    columns = _LazyColumns(df)
    for key in ("f", "g", "i"):  # numpy integers: read as the floats column_value makes
        direct = columns.stored(key)
        expected = column_value(df[key])
        assert type(direct) is type(expected)
        if isinstance(direct, pd.Categorical):
            assert direct.equals(expected)
            assert list(direct.categories) == list(expected.categories)
            direct[0] = "a"  # a copy: the caller's data is never modified
        else:
            np.testing.assert_array_equal(direct, expected)
            assert not np.shares_memory(direct, df[key].to_numpy())
            direct[0] = 99.0
    pd.testing.assert_frame_equal(df, before)
    for key in ("s", "F", "h"):
        assert columns.stored(key) is None
        assert type(columns[key]) is type(column_value(df[key]))
    dup = pd.DataFrame([[1.0, 2.0]], columns=["a", "a"])
    assert _LazyColumns(dup).stored("a") is None
    with pytest.raises(lmf.errors.ModelFrameError, match="columns named 'a'"):
        _LazyColumns(dup)["a"]


def test_fixed_effects_checks_keep_their_messages() -> None:
    """check_finite_columns: non-finite values, then overflowing squares, each named."""
    from lmeformula.checks import check_finite_columns, independent_columns

    check_finite_columns(np.zeros((3, 0)), [])
    check_finite_columns(np.ones((3, 2)), ["a", "b"])
    with pytest.raises(lmf.errors.ModelFrameError, match=r"NA/NaN/Inf in 'x'.*'b'"):
        check_finite_columns(np.array([[1.0, np.nan], [2.0, 1.0]]), ["a", "b"])
    with pytest.raises(lmf.errors.ModelFrameError, match=r"NA/NaN/Inf in 'x'.*'a'"):
        check_finite_columns(np.array([[np.inf, 1e300], [2.0, 1e300]]), ["a", "b"])
    with pytest.raises(lmf.errors.ModelFrameError, match="column 'b' is too large"):
        check_finite_columns(np.array([[1.0, 1e300], [2.0, 1.0]]), ["a", "b"])
    x = np.column_stack([np.ones(5), np.arange(5.0), 2 * np.arange(5.0) + 1, np.zeros(5)])
    assert independent_columns(x) == [0, 1]
