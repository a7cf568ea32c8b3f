"""``problem.reweight(w, y)``: new case weights and response on a problem built once (a GLMM's
PIRLS step), against problems built from scratch, for every engine and fixture."""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest
from cases import CASE_IDS, as_float_array, case_data, case_kwargs, dense_g_crossed, load_case

import lmeformula as lmf
from lmeformula.errors import ModelFrameError
from lmeformula.pls import (
    DensePLSProblem,
    PLSProblem,
    ScalarTerm,
    VectorTerm,
    make_problem,
    term_shapes,
)
from lmeformula.pls.blocks import DenseBlock

FIT_CASES = [c for c in CASE_IDS if "fit" in load_case(c) and c not in ("insteval",)]
ENGINES = ["dense", "blocked", "blocked-sparse"]


@cache
def model_parts(case_id: str) -> tuple[dict, tuple, list]:
    """(case, (Zt, X, y, prior weights, shapes), factors) of a fixture model (shared: the
    engines copy what they keep, and re-weighting never writes into its arguments)."""
    case = load_case(case_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = lmf.lFormula(case["formula"], case_data(case), **case_kwargs(case))
    shapes = term_shapes(pf.reTrms.terms)
    y = pf.y - pf.offset if pf.offset is not None else pf.y
    factors = pf.reTrms.level_factors()
    return case, (pf.reTrms.Zt, pf.X_values, y, pf.weights, shapes), factors


def build(engine: str, args: tuple, factors: list) -> PLSProblem | DensePLSProblem:
    if engine == "dense":
        return DensePLSProblem(*args)
    return PLSProblem(*args, factors if engine == "blocked" else None)


def numbers(problem: PLSProblem | DensePLSProblem, theta: np.ndarray) -> np.ndarray:
    """ldL2, ldRX2, pwrss, then β and u at θ."""
    f = problem.factor(theta)
    beta, u = problem.solve(f)
    return np.concatenate([[f.ldL2, f.ldRX2, f.pwrss], beta, u])


def assert_same_numbers(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a[:3], b[:3], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a[3:], b[3:], rtol=1e-8, atol=1e-8 * max(1.0, np.abs(b).max()))


def probes(case: dict) -> list[np.ndarray]:
    return [as_float_array(p["theta"]) for p in case["fit"]["dev_at"]]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case_id", FIT_CASES)
def test_reweight_with_the_prior_weights_reproduces_the_criterion(case_id: str,
                                                                   engine: str) -> None:
    case, args, factors = model_parts(case_id)
    problem = build(engine, args, factors)
    reml = case["fit"]["REML"] and problem.p > 0
    before = [problem.criterion(problem.factor(t), reml) for t in probes(case)]
    w = np.ones(problem.n) if args[3] is None else args[3]
    problem.reweight(w, args[2])
    after = [problem.criterion(problem.factor(t), reml) for t in probes(case)]
    np.testing.assert_allclose(after, before, rtol=1e-10)
    expected = [p["value"] for p in case["fit"]["dev_at"]]
    np.testing.assert_allclose(after, expected, rtol=1e-10)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case_id", FIT_CASES)
def test_reweight_equals_a_problem_built_with_those_weights(case_id: str, engine: str) -> None:
    """Twice in a row (the first re-weighting may re-plan; the second refreshes values)."""
    case, args, factors = model_parts(case_id)
    problem = build(engine, args, factors)
    rng = np.random.default_rng(len(case_id))
    y0 = args[2]
    for _ in range(2):
        w = rng.uniform(0.05, 3.0, problem.n)
        y = y0 + rng.normal(scale=np.std(y0) + 1.0, size=problem.n)
        problem.reweight(w, y)
        fresh = build(engine, (args[0], args[1], y, w, args[4]), factors)
        assert problem.ldW == pytest.approx(fresh.ldW, rel=1e-12)
        for theta in probes(case):
            assert_same_numbers(numbers(problem, theta), numbers(fresh, theta))
            for reml in (True, False):
                assert problem.criterion(problem.factor(theta), reml) == pytest.approx(
                    fresh.criterion(fresh.factor(theta), reml), rel=1e-10)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case_id", ["penicillin", "sleepstudy_slope", "verbagg", "pastes"])
def test_reweight_with_zero_weights(case_id: str, engine: str) -> None:
    """Zero weights (observations dropped from the sums) and a response that is zero over
    whole levels before: the structure does not depend on either."""
    case, args, factors = model_parts(case_id)
    problem = build(engine, args, factors)
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 2.0, problem.n)
    w[rng.random(problem.n) < 0.2] = 0.0
    y = rng.normal(size=problem.n) + 5.0
    problem.reweight(w, y)
    with np.errstate(divide="ignore"):
        fresh = build(engine, (args[0], args[1], y, w, args[4]), factors)
    assert problem.ldW == fresh.ldW == -np.inf
    for theta in probes(case):
        assert_same_numbers(numbers(problem, theta), numbers(fresh, theta))


@pytest.mark.slow
def test_reweight_from_a_response_that_was_zero_over_levels() -> None:
    """A binary response that is 0 for whole levels (y'WZ zero there), re-weighted with a
    working response that is not: the entries must be in the pattern."""
    case, args, factors = model_parts("verbagg")
    zt, x, _, _, shapes = args
    codes = factors[0][0]
    y0 = (codes % 3 == 0).astype(float)  # zero on two levels of three of the first term
    for engine in ENGINES:
        problem = build(engine, (zt, x, y0, None, shapes), factors)
        y1 = np.linspace(-1.0, 2.0, problem.n)
        w1 = np.linspace(0.2, 0.25, problem.n)
        problem.reweight(w1, y1)
        fresh = build(engine, (zt, x, y1, w1, shapes), factors)
        for theta in probes(case):
            assert_same_numbers(numbers(problem, theta), numbers(fresh, theta))


@pytest.mark.parametrize("engine", ENGINES)
def test_factorisations_made_before_a_reweight_keep_their_numbers(engine: str) -> None:
    case, args, factors = model_parts("penicillin")
    problem = build(engine, args, factors)
    theta = probes(case)[0]
    f = problem.factor(theta)
    fresh = build(engine, args, factors)
    expected = fresh.solve(fresh.factor(theta))
    problem.reweight(np.full(problem.n, 2.0), args[2] * 3.0)
    for a, b in zip(problem.solve(f), expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_reweight_without_fixed_effects(engine: str) -> None:
    """lme4's second PIRLS stage: X with no columns, response z - Xβ."""
    case, args, factors = model_parts("sleepstudy_slope")
    zt, x, y, _, shapes = args
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    x0 = np.zeros((x.shape[0], 0))
    problem = build(engine, (zt, x0, y, None, shapes), factors)
    w = np.linspace(0.5, 1.5, problem.n)
    z = y - x @ beta
    problem.reweight(w, z)
    fresh = build(engine, (zt, x0, z, w, shapes), factors)
    for theta in probes(case):
        assert_same_numbers(numbers(problem, theta), numbers(fresh, theta))


def test_reweight_on_the_dense_downdate_path() -> None:
    """A crossed design whose G is dense (the BLAS downdate)."""
    df, rng = dense_g_crossed()
    n = len(df)
    pf = lmf.lFormula("y ~ x + (x | g1) + (1 | g2)", df)
    factors = pf.reTrms.level_factors()
    shapes = [VectorTerm(40, 2, 0), ScalarTerm(25, 3)]
    problem = PLSProblem(pf.reTrms.Zt, pf.X_values, pf.y, None, shapes, factors)
    assert isinstance(problem.b21, DenseBlock)
    w = rng.uniform(0.1, 2.0, n)
    y = rng.normal(size=n)
    problem.reweight(w, y)
    fresh = PLSProblem(problem.Zt, problem.X, y, w, problem.terms, problem.factors)
    for theta in ([1.0, 0.0, 1.0, 1.0], [0.3, -0.2, 0.5, 0.8]):
        assert_same_numbers(numbers(problem, np.array(theta)), numbers(fresh, np.array(theta)))


@pytest.mark.slow
def test_make_problem_result_reweights() -> None:
    case, args, factors = model_parts("verbagg")
    problem = make_problem(*args, factors)
    assert isinstance(problem, PLSProblem)
    w = np.full(problem.n, 0.25)
    problem.reweight(w, args[2])
    fresh = make_problem(args[0], args[1], args[2], w, args[4], factors)
    for theta in probes(case):
        assert_same_numbers(numbers(problem, theta), numbers(fresh, theta))


@pytest.mark.parametrize("engine", ENGINES)
def test_reweight_rejects_bad_input(engine: str) -> None:
    _, args, factors = model_parts("dyestuff")
    problem = build(engine, args, factors)
    n = problem.n
    with pytest.raises(ModelFrameError, match="length"):
        problem.reweight(np.ones(n - 1), args[2])
    with pytest.raises(ModelFrameError, match="non-negative"):
        problem.reweight(np.r_[-1.0, np.ones(n - 1)], args[2])
    with pytest.raises(ModelFrameError, match="finite"):
        problem.reweight(np.ones(n), np.r_[np.nan, args[2][1:]])
