"""The shortcuts taken for small fits give what the longer ways gave (issue 12, small models)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

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
    from threadpoolctl import threadpool_info, threadpool_limits

    import lmeformula.pls.threads as threads

    def counts() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    reads: list[int] = []

    def free(*args: object, **kwargs: object) -> int:
        reads.append(1)
        return 2

    monkeypatch.setattr(threads, "free_cores", free)
    small = threads.THREAD_POLICY.serial_rows - 1
    with threadpool_limits(limits=2, user_api="blas"):
        with threads.setup_threads(rows=small):
            assert counts() == [1] * len(counts())
        assert not reads
        with threads.setup_threads(rows=small + 1):
            assert counts() == [2] * len(counts())
        assert reads == [1]
        with threads.setup_threads(2, rows=small):  # control's "threads" whatever the size
            assert counts() == [2] * len(counts())
        assert counts() == [2] * len(counts())
