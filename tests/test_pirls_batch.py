"""deriv12's points evaluated together (lmeformula.pirls_batch) against one by one.

The batch must give each point's deviance bit for bit (so that glmer's Hessian, vcov and
convergence checks do not depend on it), count the evaluations as the one-point calls do,
and decline (None) wherever it can not vouch for that, leaving the points to the one-point
evaluation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
from lmeformula.optimize import deriv12
from lmeformula.pirls_batch import laplace_batch

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def _fit(formula: str, data: pd.DataFrame, family: object, **kw: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.glmer(formula, data, family, **kw)  # type: ignore[arg-type]


def _proportions(seed: int = 5, n: int = 300) -> pd.DataFrame:
    """A binomial response with totals, some rows all successes and some none (both sides
    of the deviance residuals' index sets), and a prior weight column."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 25, n)
    x = rng.normal(size=n)
    size = rng.integers(1, 9, n)
    p = 1.0 / (1.0 + np.exp(-(0.3 + 0.8 * x + rng.normal(scale=0.9, size=25)[g])))
    k = rng.binomial(size, p)
    return pd.DataFrame({"k": k, "f": size - k, "x": x, "g": [f"g{v}" for v in g],
                         "wt": rng.uniform(0.5, 2.0, n)})


@pytest.mark.parametrize("scale", [1e-4, 1e-2, 0.3])
def test_cbpp_points_bit_for_bit(scale: float) -> None:
    m = _fit(CBPP, lmf.datasets.load("cbpp"), "binomial")
    dev = m.getME("devfun")  # type: ignore[attr-defined]
    par = np.asarray(m.optinfo.par)  # type: ignore[attr-defined]
    rng = np.random.default_rng(11)
    points = par + rng.standard_normal((25, par.size)) * scale
    points[:, 0] = np.abs(points[:, 0])
    before = dev.evaluations
    batch = laplace_batch(dev, points)
    assert batch is not None
    assert dev.evaluations - before == 25
    one_by_one = np.array([dev(p) for p in points])
    assert np.array_equal(batch, one_by_one)


@pytest.mark.parametrize("weights", [None, "wt"])
def test_other_binomial_data_bit_for_bit(weights: str | None) -> None:
    data = _proportions()
    m = _fit("cbind(k, f) ~ x + (1 | g)", data, "binomial", weights=weights)
    dev = m.getME("devfun")  # type: ignore[attr-defined]
    par = np.asarray(m.optinfo.par)  # type: ignore[attr-defined]
    rng = np.random.default_rng(2)
    points = par + rng.standard_normal((12, par.size)) * 0.05
    batch = laplace_batch(dev, points)
    assert batch is not None
    assert np.array_equal(batch, np.array([dev(p) for p in points]))


@pytest.mark.parametrize("formula", [
    "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",  # a chain of 3
    "TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)",
    "TICKS ~ cHEIGHT + (1 | LOCATION)",
])
def test_poisson_chains_bit_for_bit(formula: str) -> None:
    m = _fit(formula, lmf.datasets.load("grouseticks"), "poisson")
    dev = m.getME("devfun")  # type: ignore[attr-defined]
    par = np.asarray(m.optinfo.par)  # type: ignore[attr-defined]
    rng = np.random.default_rng(7)
    k = dev.ntheta
    for scale in (1e-4, 0.2):
        points = par + rng.standard_normal((10, par.size)) * scale
        points[:, :k] = np.abs(points[:, :k])
        before = dev.evaluations
        batch = laplace_batch(dev, points)
        assert batch is not None
        assert dev.evaluations - before == 10
        assert np.array_equal(batch, np.array([dev(p) for p in points]))


def test_deriv12_through_the_batch_is_the_one_by_one() -> None:
    m = _fit(CBPP, lmf.datasets.load("cbpp"), "binomial")
    dev = m.getME("devfun")  # type: ignore[attr-defined]
    par = np.asarray(m.optinfo.par)  # type: ignore[attr-defined]
    fx = float(dev(par))

    def one_by_one(p: np.ndarray) -> float:
        return float(dev(p))

    a = deriv12(dev, par, fx=fx)
    b = deriv12(one_by_one, par, fx=fx)
    assert np.array_equal(a.gradient, b.gradient)
    assert np.array_equal(a.Hessian, b.Hessian)


@pytest.mark.parametrize("case", ["probit", "sqrt link", "nAGQ0", "crossed terms", "binary"])
def test_declines_where_it_does_not_apply(case: str) -> None:
    cbpp = lmf.datasets.load("cbpp")
    if case == "probit":
        m = _fit(CBPP, cbpp, lmf.binomial(link="probit"))
    elif case == "sqrt link":
        m = _fit("incidence ~ period + (1 | herd)", cbpp, lmf.poisson(link="sqrt"))
    elif case == "nAGQ0":
        m = _fit(CBPP, cbpp, "binomial", nAGQ=0)
    elif case == "crossed terms":
        data = _proportions()
        data["h"] = [f"h{i % 7}" for i in range(len(data))]
        m = _fit("cbind(k, f) ~ x + (1 | g) + (1 | h)", data, "binomial")
    else:
        data = _proportions()
        data["y"] = (data["k"] > data["f"]).astype(float)
        m = _fit("y ~ x + (1 | g)", data, "binomial")
    dev = m.getME("devfun")  # type: ignore[attr-defined]
    par = np.asarray(m.optinfo.par)  # type: ignore[attr-defined]
    points = np.tile(par, (4, 1))
    before = dev.evaluations
    assert laplace_batch(dev, points) is None
    assert dev.evaluations == before
    # and the devfun's batch falls back to the one-point evaluations
    assert np.array_equal(dev.batch(points), np.array([dev(p) for p in points]))


def test_declines_where_a_step_would_be_halved(monkeypatch: pytest.MonkeyPatch) -> None:
    """A penalised deviance that rises (step halving reads the previous evaluation's u):
    the batch gives up and counts nothing."""
    m = _fit(CBPP, lmf.datasets.load("cbpp"), "binomial")
    dev = m.getME("devfun")  # type: ignore[attr-defined]
    par = np.asarray(m.optinfo.par)  # type: ignore[attr-defined]
    from lmeformula import pirls_batch

    real = pirls_batch._sum
    calls = {"n": 0}

    def rising(a: np.ndarray, axis: int = 0) -> np.ndarray:
        out = real(a, axis=axis)
        calls["n"] += 1
        return out + 1e3 * calls["n"] if axis == 1 else out

    monkeypatch.setattr(pirls_batch, "_sum", rising)
    before = dev.evaluations
    assert laplace_batch(dev, np.tile(par, (3, 1))) is None
    assert dev.evaluations == before
