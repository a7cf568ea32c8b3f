"""The dense engine's setup read off the factors, and its cached quadratic-form plans, give
exactly what the engine built from Zt gives (issue 12, small fits)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from thread_counts import blas_counts

import lmeformula as lmf
from lmeformula.pls import dense as dense_module
from lmeformula.pls import term_shapes
from lmeformula.pls.dense import DensePLSProblem, _gram_pattern


def _problems(formula: str, df: pd.DataFrame, weights: np.ndarray | None = None
              ) -> tuple[DensePLSProblem, DensePLSProblem, object]:
    pf = lmf.lFormula(formula, df)
    re = pf.reTrms
    shapes = term_shapes(re.terms)
    from_zt = DensePLSProblem(re.Zt, pf.X_values, pf.y, weights, shapes)
    dense_module._PLANS.clear()  # the second builds its own plan, not the first's
    from_factors = DensePLSProblem(re.make_zt, pf.X_values, pf.y, weights, shapes,
                                   re.level_factors(compact=True))
    return from_zt, from_factors, re


def _simulated(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 80))
    x = rng.normal(size=n)
    x[rng.random(n) < 0.3] = 0.0  # zeros in X_i: entries Zt does not store
    x[rng.random(n) < 0.05] = -0.0
    return pd.DataFrame({
        "y": rng.normal(size=n), "x": x, "z": rng.integers(0, 3, n).astype(float),
        "g": pd.Categorical(rng.integers(0, int(rng.integers(2, 7)), n).astype(str)),
        "h": pd.Categorical(rng.integers(0, int(rng.integers(2, 5)), n).astype(str)),
    })


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("formula", [
    "y ~ x + (x | g)",
    "y ~ x + (x | g) + (1 | h)",
    "y ~ 1 + (1 | g) + (0 + x | h)",
    "y ~ x + (x + z | g) + (z || h)",
])
def test_dense_engine_from_factors_is_the_engine_from_zt(seed: int, formula: str) -> None:
    df = _simulated(seed)
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, len(df)) if seed % 3 == 0 else None
    a, b, re = _problems(formula, df, weights)
    assert callable(b.Zt)  # Zt not built by the engine
    assert np.array_equal(a.M, b.M, equal_nan=True)
    assert np.array_equal(_gram_pattern(re.Zt), b._z_pattern())
    assert (a._quadratic is None) == (b._quadratic is None)
    if a._quadratic is not None and b._quadratic is not None:
        for u, v in zip(a._quadratic, b._quadratic, strict=True):
            assert np.array_equal(u, v)
    rng = np.random.default_rng(seed + 100)
    for _ in range(3):
        theta = np.abs(rng.normal(size=re.theta.shape[0])) + 0.05
        fa, fb = a.factor(theta), b.factor(theta)
        assert (fa.ldL2, fa.ldRX2, fa.pwrss) == (fb.ldL2, fb.ldRX2, fb.pwrss)
    b._zt()  # built on request: the model's own Zt
    assert (b.Zt != re.Zt).nnz == 0


def test_quadratic_plan_is_shared_and_read_only() -> None:
    df = lmf.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (Days | Subject)"
    dense_module._PLANS.clear()
    first = lmf.lmer(f, df, devFunOnly=True).problem
    second = lmf.lmer(f, df.assign(Reaction=df["Reaction"] * 2.0), devFunOnly=True).problem
    assert isinstance(first, DensePLSProblem) and isinstance(second, DensePLSProblem)
    assert len(dense_module._PLANS) == 1
    assert first._quadratic is not None and second._quadratic is not None
    assert first._quadratic[3] is second._quadratic[3]  # the same plan
    assert not first._quadratic[3].flags.writeable
    # the forms are each problem's own: computed afresh, a cold plan gives the same
    dense_module._PLANS.clear()
    cold = lmf.lmer(f, df.assign(Reaction=df["Reaction"] * 2.0), devFunOnly=True).problem
    assert cold._quadratic is not None
    assert np.array_equal(cold._quadratic[2], second._quadratic[2])
    assert not np.array_equal(first._quadratic[2], second._quadratic[2])


def test_small_lmer_fit_holds_one_thread_throughout_and_restores(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """lmer keeps the setup's one-thread scope for a small model's whole fit: every
    factorisation (the optimizer's, the derivatives' batch, mkMerMod's) runs on one thread,
    and the caller's setting is back afterwards."""
    from threadpoolctl import threadpool_limits

    seen: list[list[int]] = []
    factor, deviances = DensePLSProblem.factor, DensePLSProblem.deviances

    def recording_factor(self: DensePLSProblem, theta: np.ndarray) -> object:
        seen.append(blas_counts())
        return factor(self, theta)

    def recording_deviances(self: DensePLSProblem, thetas: np.ndarray, REML: bool) -> object:
        seen.append(blas_counts())
        return deviances(self, thetas, REML)

    monkeypatch.setattr(DensePLSProblem, "factor", recording_factor)
    monkeypatch.setattr(DensePLSProblem, "deviances", recording_deviances)
    df = lmf.datasets.load("sleepstudy")
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_counts()
        m = lmf.lmer("Reaction ~ Days + (Days | Subject)", df)
        assert blas_counts() == before
    assert m.optinfo.feval == 43
    # BOBYQA's and the derivatives' batch (mkMerMod's evaluation at the optimum reuses the
    # best factorisation)
    assert len(seen) == 43 + 1
    assert all(counts == [1] * len(before) for counts in seen)


def test_integer_columns_read_off_the_storage_are_column_values() -> None:
    from lmeformula.frame import _LazyColumns
    from lmeformula.transforms import column_value

    df = pd.DataFrame({"a": np.array([1, -5, 2**60 + 1, 7], dtype=np.int64),
                       "b": np.array([1, 2, 3, 250], dtype=np.uint8),
                       "c": pd.array([1, None, 3, 4], dtype="Int64")})
    columns = _LazyColumns(df)
    for key in ("a", "b"):
        value = columns.stored(key)
        assert isinstance(value, np.ndarray) and value.dtype == np.float64
        assert value.tobytes() == np.asarray(column_value(df[key])).tobytes()
    assert columns.stored("c") is None  # nullable integers: the Series path (NA handling)
    assert np.isnan(np.asarray(columns["c"], dtype=float)[1])


@pytest.mark.parametrize("seed", range(20))
def test_factor_from_codes_is_pandas_validated_factor(seed: int) -> None:
    from lmeformula.transforms import factor_from_codes

    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 30))
    levels = [f"{chr(97 + int(rng.integers(0, 26)))}:{i}" for i in range(k)]
    codes = rng.integers(-1, k, size=int(rng.integers(0, 60)))
    got = factor_from_codes(codes, levels)
    expected = pd.Categorical.from_codes(codes, categories=pd.Index(levels))
    assert got.dtype == expected.dtype and got.codes.dtype == expected.codes.dtype
    assert got.categories.dtype == expected.categories.dtype
    assert got.categories.equals(expected.categories) and not got.ordered
    assert np.array_equal(got.codes, expected.codes)


@pytest.mark.parametrize(("codes", "levels"), [
    ([0, 1], ["a", "a"]),  # repeated levels
    ([0, 2], ["a", "b"]),  # a code past the levels
    ([-2, 0], ["a", "b"]),
])
def test_factor_from_codes_refuses_what_pandas_refuses(codes: list[int],
                                                       levels: list[str]) -> None:
    from lmeformula.transforms import factor_from_codes

    with pytest.raises(ValueError):
        factor_from_codes(np.array(codes), levels)
