"""The two engines (blocked sparse, dense for small systems) agree with each other and with
lme4's deviance function, on every fixture model."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from cases import CASE_IDS, as_float_array, case_data, case_kwargs, dense_g_crossed, load_case

import lmeformula as lmf
from lmeformula.pls import DensePLSProblem, PLSProblem, ScalarTerm, term_shapes
from lmeformula.pls import engine as pls_engine
from lmeformula.pls import policy as pls_policy
from lmeformula.pls.blocks import DenseBlock

FIT_CASES = [c for c in CASE_IDS if "fit" in load_case(c) and c not in ("insteval",)]


def engines(case_id: str) -> tuple[dict, PLSProblem, DensePLSProblem]:
    case = load_case(case_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = lmf.lFormula(case["formula"], case_data(case), **case_kwargs(case))
    shapes = term_shapes(pf.reTrms.terms)
    y = pf.y - pf.offset if pf.offset is not None else pf.y
    args = (pf.reTrms.Zt, pf.X.to_numpy(), y, pf.weights, shapes)
    return case, PLSProblem(*args), DensePLSProblem(*args)


def factors_of(case_id: str) -> tuple[PLSProblem, PLSProblem]:
    """The blocked engine with cross-products by sparse products and by counting."""
    case = load_case(case_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = lmf.lFormula(case["formula"], case_data(case), **case_kwargs(case))
        dev = lmf.mkLmerDevfun(pf)
    sparse = PLSProblem(pf.reTrms.Zt, pf.X_values, dev.problem.y, pf.weights,
                        dev.problem.terms)
    factors = [(np.asarray(t.factor.codes), t.X) for t in pf.reTrms.terms]
    counted = PLSProblem(pf.reTrms.Zt, pf.X_values, dev.problem.y, pf.weights,
                         dev.problem.terms, factors)
    return sparse, counted


@pytest.mark.parametrize("case_id", FIT_CASES)
def test_blocked_and_dense_engines_agree(case_id: str) -> None:
    case, blocked, dense = engines(case_id)
    reml = case["fit"]["REML"] and blocked.p > 0
    for probe in case["fit"]["dev_at"]:
        theta = as_float_array(probe["theta"])
        fb, fd = blocked.factor(theta), dense.factor(theta)
        assert blocked.criterion(fb, reml) == pytest.approx(probe["value"], rel=1e-10)
        assert dense.criterion(fd, reml) == pytest.approx(probe["value"], rel=1e-10)
        for a, b in zip(blocked.solve(fb), dense.solve(fd), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8 * max(1, np.abs(b).max(
                initial=0)))
        for a, b in zip(blocked.rzx_rx(fb), dense.rzx_rx(fd), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10 * np.abs(b).max(initial=1))
        lb, ld = blocked.sparse_L(fb).toarray(), dense.sparse_L(fd).toarray()
        np.testing.assert_allclose(lb @ lb.T, ld @ ld.T, rtol=1e-8, atol=1e-8)
        for a, b in zip(blocked.inverse_diagonal_blocks(fb),
                        dense.inverse_diagonal_blocks(fd), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12)


def test_dense_downdate_path_on_a_crossed_design() -> None:
    """Large crossed designs make G dense; the BLAS downdate must agree with the others."""
    df, _ = dense_g_crossed()
    pf = lmf.lFormula("y ~ x + (x | g1) + (1 | g2)", df)
    shapes = term_shapes(pf.reTrms.terms)
    args = (pf.reTrms.Zt, pf.X.to_numpy(), pf.y, None, shapes)
    blocked, dense = PLSProblem(*args), DensePLSProblem(*args)
    assert isinstance(blocked.b21, DenseBlock)
    for theta in ([1.0, 0.0, 1.0, 1.0], [0.3, -0.2, 0.5, 0.8]):
        fb, fd = blocked.factor(np.array(theta)), dense.factor(np.array(theta))
        assert blocked.criterion(fb, True) == pytest.approx(dense.criterion(fd, True),
                                                            rel=1e-12)
        np.testing.assert_allclose(blocked.solve(fb)[0], dense.solve(fd)[0], rtol=1e-10)


def test_both_engines_report_lme4s_error_for_a_singular_x() -> None:
    from lmeformula.errors import FittingError

    df = lmf.datasets.load("sleepstudy").assign(D2=lambda d: 2 * d.Days)
    pf = lmf.lFormula("Reaction ~ Days + D2 + (1 | Subject)", df,
                      control={"check.rankX": "ignore"})
    args = (pf.reTrms.Zt, pf.X.to_numpy(), pf.y, None, [ScalarTerm(18)])
    for engine in (PLSProblem(*args), DensePLSProblem(*args)):
        with pytest.raises(FittingError, match="Downdated VtV is not positive definite"):
            engine.factor(np.array([1.0]))


@pytest.mark.parametrize("case_id", FIT_CASES)
def test_cross_products_by_counting_equal_sparse_products(case_id: str) -> None:
    sparse, counted = factors_of(case_id)
    scale = max(np.abs(sparse.M22).max(), 1.0)
    np.testing.assert_allclose(counted.A11, sparse.A11, rtol=1e-13, atol=1e-13 * scale)
    np.testing.assert_allclose(counted.G.toarray(), sparse.G.toarray(), rtol=1e-13,
                               atol=1e-13 * scale)
    np.testing.assert_allclose(counted.M22, sparse.M22, rtol=1e-13, atol=1e-13 * scale)
    np.testing.assert_array_equal(counted.b21.keys, sparse.b21.keys)


def test_batched_criteria_equal_single_evaluations() -> None:
    """deriv12's batch (one Cholesky call for all points) against one θ at a time."""
    df = lmf.datasets.load("sleepstudy")
    dev = lmf.lmer("Reaction ~ Days + (Days | Subject)", df, devFunOnly=True)
    thetas = np.array([[1.0, 0.1, 0.5], [0.9, -0.2, 0.3], [0.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
    batch = dev.batch(thetas)
    single = np.array([dev(t) for t in thetas])
    np.testing.assert_allclose(batch, single, rtol=1e-12)


@pytest.mark.parametrize("case_id", FIT_CASES)
def test_dense_engine_quadratic_form_equals_products_by_term(
        case_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """T'MT as a precomputed quadratic form in θ (small models) and by products with each
    term's λ (the dense engine's path when the form would be large): the same criterion,
    one θ at a time and in batches."""
    case, _, quadratic = engines(case_id)
    monkeypatch.setattr(pls_policy, "POLICY", replace(pls_policy.POLICY, max_quadratic=0))
    _, _, by_term = engines(case_id)
    assert by_term._quadratic is None
    if quadratic.m <= pls_engine.DENSE_LIMIT:  # so do all fixtures the dense engine fits
        assert quadratic._quadratic is not None
    reml = case["fit"]["REML"] and quadratic.p > 0
    thetas = np.array([as_float_array(probe["theta"]) for probe in case["fit"]["dev_at"]])
    single = np.array([by_term.criterion(by_term.factor(t), reml) for t in thetas])
    expected = np.array([quadratic.criterion(quadratic.factor(t), reml) for t in thetas])
    np.testing.assert_allclose(single, expected, rtol=1e-12)
    np.testing.assert_allclose(by_term.deviances(thetas, reml), expected, rtol=1e-12)
    np.testing.assert_allclose(quadratic.deviances(thetas, reml), expected, rtol=1e-12)


@pytest.mark.parametrize("pwrss", [2.5, 1e-300, 0.0])
@pytest.mark.parametrize("reml", [True, False])
def test_scalar_criterion_equals_array_criterion(pwrss: float, reml: bool) -> None:
    """The per-evaluation (math) formula of the criterion and the batched (numpy) one agree,
    including an exact fit (pwrss = 0: -inf, as numpy gives)."""
    from lmeformula.pls.engine import profiled_criteria, profiled_criterion

    args = (3.25, 0.75, pwrss, 180, 2, 0.5, reml)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning for the exact fit's -inf
        expected = float(profiled_criteria(*args))
        assert profiled_criterion(*args) == pytest.approx(expected, rel=1e-15)
    assert np.isneginf(expected) == (pwrss == 0.0)


@pytest.mark.parametrize("engine", ["dense", "blocked"])
def test_factorisation_keeps_the_theta_it_was_computed_at(engine: str) -> None:
    """NLopt passes θ as a view of a buffer it overwrites later: a factorisation (kept as the
    best so far, and reused at the optimum) must hold its own copy."""
    _, blocked, dense = engines("sleepstudy_slope")
    problem = dense if engine == "dense" else blocked
    theta = np.array([1.0, 0.1, 0.5])
    value, f = problem.deviance(theta, True)
    theta[:] = 0.25
    np.testing.assert_array_equal(f.theta, [1.0, 0.1, 0.5])
    assert problem.criterion(problem.factor(f.theta), True) == value


def test_fit_reuses_the_best_factorisation_at_the_optimum() -> None:
    """lme4 evaluates once more at the optimum; that is a lookup of the best factorisation,
    which is the one at the returned θ."""
    df = lmf.datasets.load("sleepstudy")
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", df)
    np.testing.assert_array_equal(m._factor.theta, m.optinfo.par)
    fresh = m.devfun.problem.factor(m.optinfo.par)
    assert (m._factor.ldL2, m._factor.ldRX2, m._factor.pwrss) == (
        fresh.ldL2, fresh.ldRX2, fresh.pwrss)
    assert m.devfun.problem.criterion(fresh, True) == m.optinfo.fval
