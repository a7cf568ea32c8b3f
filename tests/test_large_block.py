"""The compact block 2 (lmeformula.pls.large): the terms after the first (scalar or vector),
M22 without its zeros, one dense array per θ. Forced on small designs by lowering the
policy's order; it must compute the blocked engine's criterion bit for bit, its solutions and
inverses to rounding, and keep no second factor in the deviance function."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
import lmeformula.pls.policy as pls_policy
from lmeformula.errors import FittingError, ModelSizeError
from lmeformula.modular import LmerDevfun
from lmeformula.pls import ScalarTerm, VectorTerm, engine, factory
from lmeformula.pls.large import CompactDiagonalBlock, LargeBlockPLSProblem, large_block
from lmeformula.pls.memory import check_dense_memory, dense_bytes
from lmeformula.pls.terms import term_shapes


def crossed(n: int = 6000, nsubj: int = 600, nitem: int = 150, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subj = rng.integers(0, nsubj, n)
    item = rng.integers(0, nitem, n)
    grp = rng.integers(0, 23, n)
    x = rng.normal(size=n)
    y = (1 + 0.5 * x + rng.normal(size=nsubj)[subj] + rng.normal(scale=0.3, size=nsubj)[subj] * x
         + rng.normal(scale=0.7, size=nitem)[item] + rng.normal(scale=0.4, size=23)[grp]
         + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "subj": [f"s{i}" for i in subj],
                         "item": [f"i{i}" for i in item], "grp": [f"g{i}" for i in grp]})


def problems(monkeypatch: pytest.MonkeyPatch, formula: str, df: pd.DataFrame,
             **policy: float) -> tuple[engine.PLSProblem, LargeBlockPLSProblem]:
    pf = lmf.lFormula(formula, df)
    re = pf.reTrms
    shapes = term_shapes(re.terms)
    base = pls_policy.POLICY
    out = []
    for order in (10**9, 1):
        monkeypatch.setattr(pls_policy, "POLICY",
                            dataclasses.replace(base, compact_m22_order=order, **policy))
        out.append(factory.make_problem(re.make_zt, pf.X_values, pf.y, None, shapes,
                                       re.level_factors()))
    monkeypatch.setattr(pls_policy, "POLICY", base)
    plain, compact = out
    assert type(plain) is engine.PLSProblem and isinstance(compact, LargeBlockPLSProblem)
    return plain, compact


def thetas(k: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    out = [np.ones(k), np.abs(rng.normal(size=k)) + 0.05, np.abs(rng.normal(size=k)) * 3]
    boundary = np.ones(k)
    boundary[-1] = 0.0
    return [*out, boundary]


CASES = [
    ("y ~ x + (1 | subj) + (1 | item)", {}),  # pairs downdate
    ("y ~ x + (1 | subj) + (1 | item)", {"dense_g_fill": 0.0}),  # a dense G
    ("y ~ x + (1 | subj) + (1 | item)", {"max_pairs": 0}),  # per-group Gram matrices
    ("y ~ x + (1 | subj) + (1 | item)", {"max_pairs": 0, "max_group_grams": 0}),  # products
    ("y ~ x + (1 | subj) + (1 | item) + (1 | grp)", {}),  # two terms in block 2
    ("y ~ x + (x | subj) + (1 | item) + (1 | grp)", {}),  # a vector first term
    ("y ~ x + (1 | subj) + (x | item)", {}),  # a vector term in block 2
    ("y ~ x + (1 | subj) + (x | item)", {"max_pairs": 0}),
    ("y ~ x + (x | subj) + (x | item) + (1 | grp)", {"dense_g_fill": 0.0}),
    ("y ~ x + (1 | subj) + (1 | grp) + (x | item)", {}),
]


@pytest.mark.parametrize(("formula", "policy"), CASES)
def test_compact_block_two_gives_the_blocked_criterion_bit_for_bit(
        monkeypatch: pytest.MonkeyPatch, formula: str, policy: dict[str, float]) -> None:
    plain, compact = problems(monkeypatch, formula, crossed(), **policy)
    assert type(compact.b21) is type(plain.b21)
    k = sum(t.theta_slice.stop - t.theta_slice.start for t in plain.terms)
    for th in thetas(k):
        for reml in (True, False):
            d_plain, f_plain = plain.deviance(th, reml)
            d_compact, f_compact = compact.deviance(th, reml)
            assert d_compact == d_plain
            assert (f_compact.ldL2, f_compact.ldRX2, f_compact.pwrss) == (
                f_plain.ldL2, f_plain.ldRX2, f_plain.pwrss)
        beta_p, u_p = plain.solve(f_plain)
        beta_c, u_c = compact.solve(f_compact)
        np.testing.assert_allclose(beta_c, beta_p, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(u_c, u_p, rtol=1e-10, atol=1e-12)
        for a, b in zip(compact.rzx_rx(f_compact), plain.rzx_rx(f_plain), strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(compact.inverse_diagonal_blocks(f_compact, chunk=37),
                    plain.inverse_diagonal_blocks(f_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | subj) + (1 | item) + (1 | grp)",
                                     "y ~ x + (1 | subj) + (x | item) + (1 | grp)"])
def test_compact_block_two_reweights_as_the_blocked_engine(
        monkeypatch: pytest.MonkeyPatch, formula: str) -> None:
    plain, compact = problems(monkeypatch, formula, crossed(n=3000, nsubj=300, nitem=80))
    rng = np.random.default_rng(3)
    w = rng.uniform(0.2, 2.0, plain.n)
    y = rng.normal(size=plain.n)
    plain.reweight(w, y)
    compact.reweight(w, y)
    k = sum(t.theta_slice.stop - t.theta_slice.start for t in plain.terms)
    for th in thetas(k):
        assert compact.deviance(th, False)[0] == plain.deviance(th, False)[0]


def test_a_large_block_two_with_level_codes_gets_the_compact_block(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pls_policy, "POLICY",
                        dataclasses.replace(pls_policy.POLICY, compact_m22_order=100))
    scalar = [ScalarTerm(500, 0), ScalarTerm(90, 1), ScalarTerm(20, 2)]
    assert large_block(scalar, 2, True)
    assert large_block([ScalarTerm(500, 0), VectorTerm(50, 2, 1)], 2, True)  # order 103
    assert not large_block(scalar, 2, False)  # no level codes: M22 by sparse products
    assert not large_block([ScalarTerm(500, 0), ScalarTerm(20, 1)], 2, True)  # order 23
    assert not large_block([ScalarTerm(500, 0)], 2, True)  # no block 2
    df = crossed(n=3000, nsubj=300, nitem=120)
    vector_second = lmf.lmer("y ~ x + (1 | subj) + (x | item)", df, devFunOnly=True)
    assert isinstance(vector_second, LmerDevfun)
    assert isinstance(vector_second.problem, LargeBlockPLSProblem)  # order 243


def plain_and_compact_fits(monkeypatch: pytest.MonkeyPatch) -> tuple[lmf.LmerMod, lmf.LmerMod]:
    """One crossed design fitted by the default engine and forced through the large-block
    one (the policy's order for it lowered to 1)."""
    df = crossed(n=4000, nsubj=400, nitem=100)
    formula = "y ~ x + (1 | subj) + (1 | item)"
    plain = lmf.lmer(formula, df)
    monkeypatch.setattr(pls_policy, "POLICY",
                        dataclasses.replace(pls_policy.POLICY, compact_m22_order=1))
    compact = lmf.lmer(formula, df)
    assert isinstance(compact.devfun.problem, LargeBlockPLSProblem)
    return plain, compact


def test_the_deviance_function_keeps_one_factor_and_the_fit_is_unchanged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    plain, compact = plain_and_compact_fits(monkeypatch)
    assert compact.devfun._best is None  # no factor besides the current one
    np.testing.assert_array_equal(compact.optinfo.par, plain.optinfo.par)
    assert compact.optinfo.feval == plain.optinfo.feval
    np.testing.assert_allclose(compact._beta, plain._beta, rtol=1e-10)


def test_an_exact_fit_gets_a_zero_residual_not_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    df = crossed(n=2000, nsubj=200, nitem=60)
    df["y"] = df["x"]  # y is a column of X: Σ r² is round-off at every θ
    plain, compact = problems(monkeypatch, "y ~ x + (1 | subj) + (1 | item)", df)
    yy = float(df["y"] @ df["y"])
    for th in thetas(2):
        f_plain, f_compact = plain.factor(th), compact.factor(th)
        assert f_compact.pwrss <= 1e-12 * yy
        assert f_compact.ldL2 == f_plain.ldL2 and f_compact.ldRX2 == f_plain.ldRX2
    # the last pivot made negative (round-off of the other sign): LAPACK stops there
    assemble = CompactDiagonalBlock.assemble

    def below_zero(self: CompactDiagonalBlock, theta: np.ndarray, down: np.ndarray,
                   out: np.ndarray | None = None) -> np.ndarray:
        s = assemble(self, theta, down, out)
        s[-1, -1] -= 1e-6 * yy
        return s

    monkeypatch.setattr(CompactDiagonalBlock, "assemble", below_zero)
    f_compact = compact.factor(thetas(2)[1])
    f_plain = plain.factor(thetas(2)[1])
    assert f_compact.pwrss == 0.0
    assert f_compact.ldL2 == f_plain.ldL2 and f_compact.ldRX2 == f_plain.ldRX2


def test_a_failed_pivot_before_the_last_is_lme4s_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, compact = problems(monkeypatch, "y ~ x + (1 | subj) + (1 | item)",
                              crossed(n=2000, nsubj=200, nitem=60))
    assemble = CompactDiagonalBlock.assemble

    def indefinite(self: CompactDiagonalBlock, theta: np.ndarray, down: np.ndarray,
                   out: np.ndarray | None = None) -> np.ndarray:
        s = assemble(self, theta, down, out)
        s[5, 5] = -1.0
        return s

    monkeypatch.setattr(CompactDiagonalBlock, "assemble", indefinite)
    with pytest.raises(FittingError, match="Downdated VtV is not positive definite"):
        compact.factor(np.ones(2))


def test_the_memory_check_counts_one_dense_array_for_the_compact_block() -> None:
    terms = [ScalarTerm(10**5, 0), ScalarTerm(30_000, 1)]
    order = 30_000 + 2 + 1
    check_dense_memory(terms, 2, available=dense_bytes(order, 1.0), copies=1.0)
    with pytest.raises(ModelSizeError, match=r"30,003 x 30,003 .*7\.2 GB each"):
        check_dense_memory(terms, 2, available=dense_bytes(order, 1.0), names=["a", "b"])


def test_the_block_array_is_reused_only_once_its_factor_is_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, compact = problems(monkeypatch, "y ~ x + (1 | subj) + (1 | item)",
                          crossed(n=2000, nsubj=200, nitem=60))
    first = compact.factor(np.ones(2))
    kept = np.array(first.L22)
    second = compact.factor(np.array([0.3, 2.0]))  # the first is alive: a new array
    assert not np.shares_memory(first.L22, second.L22)
    np.testing.assert_array_equal(first.L22, kept)
    address = second.L22.__array_interface__["data"][0]
    del second
    third = compact.factor(np.array([0.5, 0.5]))  # the second is gone: its array reused
    assert third.L22.__array_interface__["data"][0] == address
    np.testing.assert_array_equal(first.L22, kept)
    fresh = problems(monkeypatch, "y ~ x + (1 | subj) + (1 | item)",
                     crossed(n=2000, nsubj=200, nitem=60))[1].factor(np.array([0.5, 0.5]))
    assert (third.ldL2, third.ldRX2, third.pwrss) == (fresh.ldL2, fresh.ldRX2, fresh.pwrss)


def five_point(fn: object, theta: np.ndarray, h: float = 1e-3) -> np.ndarray:
    out = np.empty_like(theta)
    for i in range(theta.shape[0]):
        e = np.zeros_like(theta)
        e[i] = h * max(abs(theta[i]), 0.1)
        out[i] = (-fn(theta + 2 * e) + 8 * fn(theta + e) - 8 * fn(theta - e)  # type: ignore[operator]
                  + fn(theta - 2 * e)) / (12 * e[i])
    return out


def lower_and_diagonal(f: engine.Factorization) -> np.ndarray:
    """What is read of block 2's factor: its lower triangle with the diagonal."""
    return np.tril(f.L22)


@pytest.mark.parametrize("own", [True, False], ids=["own gradient", "blocked gradient"])
@pytest.mark.parametrize(("formula", "policy"), CASES)
def test_compact_gradient_is_the_blocked_engines_and_the_criterions_slope(
        monkeypatch: pytest.MonkeyPatch, formula: str, policy: dict[str, float],
        own: bool) -> None:
    """Both of the compact engine's gradients: its own (block 2's inverse in place, above
    ``max_inverse_order``) and, up to that order, the blocked engine's code on its factor
    (with S⁻¹ made in the factor's own array)."""
    plain, compact = problems(monkeypatch, formula, crossed(n=3000, nsubj=300, nitem=80),
                              **policy)
    assert compact.has_gradient
    monkeypatch.setattr(pls_policy, "POLICY", dataclasses.replace(
        pls_policy.POLICY, max_inverse_order=0 if own else 10**9))
    k = sum(t.theta_slice.stop - t.theta_slice.start for t in plain.terms)
    for th in thetas(k)[:3]:  # the boundary: λ singular, checked below
        for reml in (True, False):
            f = compact.factor(th)
            kept = lower_and_diagonal(f)
            beta, u = compact.solve(f)
            g = compact.gradient(f, reml)
            # the factor is read as before: lower triangle, diagonal and solutions unchanged
            np.testing.assert_array_equal(lower_and_diagonal(f), kept)
            beta2, u2 = compact.solve(f)
            np.testing.assert_array_equal(beta2, beta)
            np.testing.assert_array_equal(u2, u)
            numeric = five_point(lambda t, r=reml: compact.deviance(t, r)[0], th)
            scale = max(np.abs(numeric).max(), 1.0)
            np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-6 * scale)
            if plain.has_gradient:  # the sparse-products downdate has none
                expected = plain.gradient(plain.factor(th), reml)
                np.testing.assert_allclose(g, expected, rtol=1e-9,
                                           atol=1e-11 * max(np.abs(expected).max(), 1.0))
                if not own and compact.b21.has_gradient:
                    # the blocked engine's code on the same factor, but S⁻¹ made in the
                    # factor's own array (dtrtri and dlauum on its upper triangle) where the
                    # blocked engine takes dpotri of a copy's lower triangle: the same inverse
                    # but for rounding (a few ulps: 8.9e-16 relative seen here)
                    np.testing.assert_allclose(g, expected, rtol=1e-13,
                                               atol=1e-14 * max(np.abs(expected).max(), 1.0))
    with pytest.raises(np.linalg.LinAlgError):
        compact.gradient(compact.factor(thetas(k)[3]), True)


def test_lbfgsb_fits_through_the_compact_engine_as_through_the_blocked_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    df = crossed(n=4000, nsubj=400, nitem=100)
    formula = "y ~ x + (1 | subj) + (1 | item)"
    control = {"optimizer": "L-BFGS-B"}
    plain = lmf.lmer(formula, df, control=control)
    assert type(plain.devfun.problem) is engine.PLSProblem and plain.devfun.has_gradient
    monkeypatch.setattr(pls_policy, "POLICY",
                        dataclasses.replace(pls_policy.POLICY, compact_m22_order=1))
    compact = lmf.lmer(formula, df, control=control)
    assert isinstance(compact.devfun.problem, LargeBlockPLSProblem)
    assert compact.devfun.has_gradient and compact.optinfo.optimizer == "L-BFGS-B"
    np.testing.assert_allclose(compact.optinfo.par, plain.optinfo.par, rtol=1e-6)
    assert compact.REMLcrit() == pytest.approx(plain.REMLcrit(), rel=1e-12, abs=1e-9)
    # the gradient is zero at the optimum (θ inside the bounds)
    g = compact.devfun.gradient(np.asarray(compact.optinfo.par))
    assert np.abs(g).max() < 1e-4 * abs(compact.REMLcrit())


@pytest.mark.parametrize(("formula", "policy"), CASES[:1] + CASES[4:])
def test_compact_sparse_L_is_the_blocked_engines_entry_for_entry(
        monkeypatch: pytest.MonkeyPatch, formula: str, policy: dict[str, float]) -> None:
    plain, compact = problems(monkeypatch, formula, crossed(n=3000, nsubj=300, nitem=80),
                              **policy)
    k = sum(t.theta_slice.stop - t.theta_slice.start for t in plain.terms)
    for th in thetas(k):  # the boundary makes an item block of exact zeros
        f = compact.factor(th)
        kept = lower_and_diagonal(f)
        ours, theirs = compact.sparse_L(f), plain.sparse_L(plain.factor(th))
        assert ours.format == "csc" and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours.indptr, theirs.indptr)
        np.testing.assert_array_equal(ours.indices, theirs.indices)
        np.testing.assert_array_equal(ours.data, theirs.data)
        np.testing.assert_array_equal(lower_and_diagonal(f), kept)
    # L L' is the system's random-effects block (a check independent of the other engine)
    f = compact.factor(np.ones(k))
    lam = compact.sparse_L(f).toarray()
    inv_blocks = compact.inverse_diagonal_blocks(f, chunk=29)
    inv = np.linalg.inv(lam @ lam.T)
    pos = 0
    for t, blocks in zip(compact.terms, inv_blocks, strict=True):  # each level's nc x nc
        expected = np.stack([inv[i : i + t.nc, i : i + t.nc]
                             for i in range(pos, pos + t.size, t.nc)])
        np.testing.assert_allclose(blocks, expected, rtol=1e-10, atol=1e-14)
        pos += t.size


def test_compact_sparse_L_is_refused_when_it_would_not_fit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import lmeformula.pls.large as large

    _, compact = problems(monkeypatch, "y ~ x + (1 | subj) + (1 | item)",
                          crossed(n=2000, nsubj=200, nitem=60))
    f = compact.factor(np.ones(2))
    monkeypatch.setattr(large, "available_memory", lambda: 10_000)
    with pytest.raises(ModelSizeError, match=r"getME\('L'\).* 260 x 260 .*nonzeros"):
        compact.sparse_L(f)


def test_condvar_and_getME_L_through_the_compact_engine(
        monkeypatch: pytest.MonkeyPatch) -> None:
    plain, compact = plain_and_compact_fits(monkeypatch)
    lp, lc = lmf.getME(plain, "L"), lmf.getME(compact, "L")
    assert (lp != lc).nnz == 0
    for a, b in zip(compact.devfun.problem.inverse_diagonal_blocks(compact._factor),
                    plain.devfun.problem.inverse_diagonal_blocks(plain._factor), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
