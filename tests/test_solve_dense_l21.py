"""The blocked engine's ``solve`` forms L21 densely (no sparse matrices per PIRLS step): it
must give bit for bit what the sparse L21 gives, for vector terms in block 2 and in block 1,
at new weights (a GLMM's PIRLS step) and at several θ."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lmeformula as lmf
from lmeformula.pls import PLSProblem, term_shapes

FORMULAS = [
    # first term id (scalar, 316 levels), a vector term in block 2 (VerbAgg's slow GLMM)
    "r2 ~ Anger + Gender + btype + (1 + Anger | item) + (1 | id)",
    # a vector first term (block 1 with 2 x 2 blocks) and a 3 x 3 term in block 2
    "r2 ~ Anger + (1 + Anger | id) + (1 + Anger + Gender | item)",
]


def _problem(formula: str, factors: bool) -> PLSProblem:
    df = lmf.datasets.load("VerbAgg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = lmf.glFormula(formula, df, family="binomial")
    re = pf.reTrms
    y = np.asarray(pf.y, dtype=float)
    return PLSProblem(re.Zt, pf.X_values, y, None, term_shapes(re.terms),
                      re.level_factors() if factors else None)


def _sparse_solve(problem: PLSProblem, f) -> tuple[np.ndarray, np.ndarray]:
    """``solve`` by the sparse L21 (the path for large L21)."""
    f.L21  # noqa: B018 - formed: solve then takes the sparse path
    assert f._L21 is not None
    return problem.solve(f)


@pytest.mark.parametrize("factors", [True, False], ids=["by-level", "sparse-products"])
@pytest.mark.parametrize("formula", FORMULAS)
def test_dense_l21_solve_bit_identical(formula: str, factors: bool) -> None:
    problem = _problem(formula, factors)
    rng = np.random.default_rng(7)
    ntheta = problem.terms[-1].theta_slice.stop
    for step in range(3):
        if step:  # PIRLS's working weights and response
            problem.reweight(rng.uniform(0.05, 0.25, problem.n), rng.normal(size=problem.n))
        theta = rng.uniform(0.2, 1.5, ntheta)
        if step == 2:
            theta[1] = 0.0  # a zero off the diagonal of a λ
        f = problem.factor(theta)
        dense = problem.block21_dense(f.theta, f.T1, f._A21)
        sparse = problem.block21(f.theta, f.T1, f._A21).toarray()
        assert np.array_equal(dense, sparse)
        beta, u = problem.solve(f)
        assert f._L21 is None  # the dense path was taken
        beta_s, u_s = _sparse_solve(problem, problem.factor(theta))
        assert np.array_equal(beta, beta_s)
        assert np.array_equal(u, u_s)
