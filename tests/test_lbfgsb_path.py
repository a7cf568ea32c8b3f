"""The L-BFGS-B path's own work: the gradient's random effects without L21, one factorisation
per θ, the optimizer's scaled θ (z = 4θ) and its first step (issue 12, InstEval's fit time).

The gradient itself is checked against finite differences in test_gradient.py; here, the
pieces this path changed."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cases import CASE_IDS, as_float_array, load_case
from test_engine import engines
from test_gradient import crossed_data

import lmeformula as lmf
from lmeformula import optimize
from lmeformula.pls.blocks import PairsBlock
from lmeformula.pls.engine import PLSProblem
from lmeformula.pls.terms import term_shapes

FIT_CASES = [c for c in CASE_IDS if "fit" in load_case(c) and c != "insteval"]


@pytest.mark.parametrize("case_id", FIT_CASES)
def test_gradient_modes_equal_the_solution(case_id: str) -> None:
    """The gradient's u (one triangular solve on the whole factor, G' by a sparse product)
    is the u of :meth:`PLSProblem.solve` (which forms L21) up to rounding."""
    case, blocked, _ = engines(case_id)
    theta = as_float_array(case["fit"]["theta"]) * 1.1 + 0.05
    f = blocked.factor(theta)
    _, u = blocked.solve(f)
    modes = blocked._spherical_modes(f)
    np.testing.assert_allclose(modes, u, rtol=1e-9, atol=1e-11 * max(np.abs(u).max(), 1.0))


def test_gradient_modes_with_a_vector_first_term() -> None:
    """A vector first term: T1's blocks are 2 x 2 (rhs1_l = T1_l' z_l)."""
    dev = lmf.lmer("y ~ x + (x | subj) + (1 | item)", crossed_data(), devFunOnly=True)
    problem = dev.problem
    assert isinstance(problem, PLSProblem) and problem.terms[0].nc == 2
    f = problem.factor(np.array([0.9, 0.1, 0.4, 0.6]))
    np.testing.assert_allclose(problem._spherical_modes(f), problem.solve(f)[1], rtol=1e-9,
                               atol=1e-12)


def test_gradient_modes_of_an_exact_fit_take_the_solution() -> None:
    """pwrss = 0 (y in the span of X and Z): no division by the factor's last pivot."""
    rng = np.random.default_rng(3)
    g = rng.integers(0, 30, 300)
    h = rng.integers(0, 12, 300)
    df = pd.DataFrame({"y": np.full(300, 2.0), "g": g.astype(str), "h": h.astype(str)})
    pf = lmf.lFormula("y ~ 1 + (1 | g) + (1 | h)", df)
    problem = PLSProblem(pf.reTrms.Zt, pf.X.to_numpy(), pf.y, pf.weights,
                         term_shapes(pf.reTrms.terms))
    f = problem.factor(np.array([0.5, 0.5]))
    assert f.L22[-1, -1] == 0.0
    np.testing.assert_array_equal(problem._spherical_modes(f), problem.solve(f)[1])


def _counting(problem: PLSProblem) -> list[bytes]:
    """Record every θ the engine factors (wraps the instance's ``factor``)."""
    seen: list[bytes] = []
    factor = problem.factor

    def counted(theta: np.ndarray):  # type: ignore[no-untyped-def]
        seen.append(np.asarray(theta, float).tobytes())
        return factor(theta)

    problem.factor = counted  # type: ignore[method-assign]
    return seen


def test_one_factorisation_per_theta_and_the_optimum_a_lookup() -> None:
    """With the analytic gradient, each θ the optimizer visits is factored once (the
    criterion's factor is reused by the gradient), and the fit's last evaluation at the optimum
    (mkMerMod) factors nothing: θ = z / 4 is exact, so it is the point already evaluated."""
    df = crossed_data()
    formula = "y ~ x + (x | subj) + (1 | item)"
    pf = lmf.lFormula(formula, df)
    dev = lmf.mkLmerDevfun(pf)
    assert isinstance(dev.problem, PLSProblem) and dev.has_gradient
    seen = _counting(dev.problem)
    opt = lmf.optimizeLmer(dev, {"optimizer": "L-BFGS-B"})
    assert len(seen) == len(set(seen))  # no θ factored twice
    assert np.all(opt.par[dev.lower == 0] > 0)  # inside: no gradient taken 1e-7 inside
    before = len(seen)
    model = lmf.mkMerMod(dev, opt, pf)
    assert len(seen) == before
    # the model holds the factor the optimizer evaluated last: its criterion is the
    # optimizer's bit for bit. REMLcrit recomputes pwrss from the residuals (wrss + ussq,
    # as lme4's devcomp does), another sum: equal to rounding (one ulp apart under
    # OpenBLAS's Nehalem kernels)
    assert dev.problem.criterion(model._factor, True) == opt.fval
    assert model.REMLcrit() == pytest.approx(opt.fval, rel=1e-13, abs=0)


def test_the_optimizer_works_on_a_scaled_theta(monkeypatch: pytest.MonkeyPatch) -> None:
    """scipy sees z = 4θ and the gradient in z (g / 4), and the stopping rule on the
    projected gradient is the same in θ (gtol / 4)."""
    zs = optimize._LBFGSB_THETA_SCALE
    assert zs == 4.0
    calls: list[tuple[np.ndarray, dict]] = []
    real = optimize._minimize

    def spy(fun, x0, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((np.array(x0), dict(kwargs["options"])))
        value, grad = fun(x0)
        theta = x0 / zs
        assert value == dev(theta)
        np.testing.assert_array_equal(grad, dev.gradient(theta) / zs)
        return real(fun, x0, **kwargs)

    monkeypatch.setattr(optimize, "_minimize", spy)
    df = crossed_data()
    dev = lmf.lmer("y ~ x + (x | subj) + (1 | item)", df, devFunOnly=True)
    opt = lmf.optimizeLmer(dev, {"optimizer": "L-BFGS-B"})
    x0, options = calls[0]
    np.testing.assert_array_equal(x0, zs * np.asarray(dev.start, float))
    assert options["gtol"] == 1e-7 * max(abs(dev(dev.start)), 1.0) / zs
    assert opt.fval == dev(opt.par)


@pytest.mark.slow
def test_insteval_first_step_stays_off_the_bound() -> None:
    """InstEval with L-BFGS-B: the first trial point was θ = 0 (the identity model's whole
    gradient step, every θ clipped to its bound), then three evaluations backtracked: 15
    evaluations. With z = 4θ: 13, no θ on the bound, and lme4's optimum."""
    df = lmf.datasets.load("InstEval")
    pf = lmf.lFormula("y ~ service + (1 | s) + (1 | d) + (1 | dept:service)", df)
    dev = lmf.mkLmerDevfun(pf)
    seen = _counting(dev.problem)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = lmf.optimizeLmer(dev, {"optimizer": "L-BFGS-B"})
    thetas = [np.frombuffer(t) for t in seen]
    assert all(np.all(t > 0) for t in thetas)
    assert len(thetas) == len(set(seen)) <= 13
    ref = load_case("insteval")["fit"]
    assert abs(opt.fval - ref["REMLcrit"]) < 1e-6


def _whole_vector_quadratic(problem: PLSProblem, v: np.ndarray, inv_f: np.ndarray,
                            theta: np.ndarray, s: int) -> np.ndarray:
    """The first term's sums over the pairs as they were made before the chunks: K̃ and
    C's product over every key, the keys inside taken by a mask, summed at once."""
    b21 = problem.b21
    assert isinstance(b21, PairsBlock)
    rows, cols = np.divmod(b21.keys.astype(np.int64), problem.m)
    inside = (rows < s) & (cols < s)
    i, j = rows[inside], cols[inside]
    dr = problem._block2_scales(theta)[:s]
    k = inv_f.ravel(order="F")[i * s + j] * dr[i] * dr[j]
    k[i != j] *= 2.0
    nc = v.shape[1]
    vg = v[b21.group_level]
    out = np.zeros((nc, nc))
    for a in range(nc):
        for b in range(a, nc):
            bmat = vg[:, :, a, None] * vg[:, None, :, b]
            bmat = 0.5 * (bmat + np.swapaxes(bmat, 1, 2))
            down = (b21.pairs @ bmat.reshape(-1))[inside] * k
            out[a, b] = out[b, a] = float(np.sum(down))
    return out


def _check_chunked_quadratic(monkeypatch: pytest.MonkeyPatch, problem: PLSProblem,
                             theta: np.ndarray) -> None:
    """The first term's part of the gradient, its keys weighed a chunk at a time, is the
    whole-vector sum bit for bit, whatever the chunk; K̃ read flat off dpotri's
    Fortran-order S⁻¹ equals K̃ read by (j, i)."""
    import scipy.linalg as la

    import lmeformula.pls.blocks as pls_blocks

    f = problem.factor(theta)
    s = problem._lam_r_size + problem.p
    inv_f, _ = la.lapack.dpotri(f.L22[:s, :s], lower=1)
    assert inv_f.flags.f_contiguous
    l11inv = np.linalg.inv(f.L11)
    v = problem.terms[0].lower_factor(theta) @ (np.swapaxes(l11inv, 1, 2) @ l11inv)
    flat = problem._first_term_quadratic(v, inv_f, theta, s)
    by_index = problem._first_term_quadratic(v, np.ascontiguousarray(inv_f), theta, s)
    assert flat.tobytes() == by_index.tobytes()
    assert flat.tobytes() == _whole_vector_quadratic(problem, v, inv_f, theta, s).tobytes()
    monkeypatch.setattr(pls_blocks, "WEIGHT_CHUNK", 7)  # many chunks: the same sums
    assert problem._first_term_quadratic(v, inv_f, theta, s).tobytes() == flat.tobytes()


@pytest.mark.parametrize("case_id", ["grouseticks_log", "insteval3000_ordered", "probe_08"])
def test_gradient_weighs_keys_by_chunks_and_reads_flat(monkeypatch: pytest.MonkeyPatch,
                                                       case_id: str) -> None:
    """Only the count of keys inside is kept, per size (REML's, ML's); the sums are the
    whole-vector ones (:func:`_check_chunked_quadratic`)."""
    case, blocked, _ = engines(case_id)
    assert isinstance(blocked.b21, PairsBlock)  # the gradient sums over the pairs
    theta = as_float_array(case["fit"]["theta"]) * 1.1 + 0.05
    f = blocked.factor(theta)
    first = blocked.gradient(f, True)
    assert blocked.gradient(f, True).tobytes() == first.tobytes()
    blocked.gradient(f, False)
    s = blocked._lam_r_size + blocked.p
    assert set(blocked._inside_counts) == {s, blocked._lam_r_size}
    _check_chunked_quadratic(monkeypatch, blocked, theta)


def test_vector_first_term_weighs_keys_by_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A vector first term: its three sums weigh each chunk of keys once, and equal the
    whole-vector sums bit for bit."""
    rng = np.random.default_rng(3)
    n = 4000
    subj, item = rng.integers(0, 300, n), rng.integers(0, 40, n)
    x = rng.normal(size=n)
    y = x + rng.normal(size=300)[subj] + rng.normal(size=300)[subj] * x + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x": x, "subj": subj.astype(str), "item": item.astype(str)})
    from dataclasses import replace

    import lmeformula.pls.policy as pls_policy

    # G stored sparse with its pairs listed (a G this small is otherwise stored dense)
    monkeypatch.setattr(pls_policy, "POLICY", replace(pls_policy.POLICY, dense_g_work=0,
                                                      dense_g_fill=1.0))
    dev = lmf.lmer("y ~ x + (x | subj) + (1 | item)", df, devFunOnly=True)
    problem = dev.problem  # type: ignore[union-attr]
    assert isinstance(problem.b21, PairsBlock) and problem.terms[0].nc == 2
    from lmeformula.pls import engine as pls_engine

    spans: list[tuple[int, int]] = []
    weigh = pls_engine._KeyWeights.__call__

    def counted(self: Any, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        spans.append((lo, hi))
        return weigh(self, lo, hi)

    monkeypatch.setattr(pls_engine._KeyWeights, "__call__", counted)
    _check_chunked_quadratic(monkeypatch, problem, np.array([0.8, 0.1, 0.5, 0.9]))
    # each of the three calls weighed each chunk once for its three sums (nc = 2): two
    # calls in chunks of 2¹⁶ keys, one in chunks of 7
    nkeys = problem.b21.keys.shape[0]
    assert len(spans) == 2 * -(-nkeys // 2**16) + -(-nkeys // 7)


@pytest.mark.slow
def test_insteval_large_keeps_the_lower_optimum() -> None:
    """The singular model with ``(0 + service | dept)``: L-BFGS-B on θ (b06bed1) and on 4θ
    stop at 237657.0945 (dept:service's θ at or near 0); on 2θ it stopped on another face of
    the boundary (the first θ of service | dept at 0), 0.21 higher. lme4's BOBYQA stops 1.5
    higher than either (PROFILING.md)."""
    df = lmf.datasets.load("InstEval")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.lmer("y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"
                     " + (0 + service | dept)", df, control={"optimizer": "L-BFGS-B"})
    assert m.REMLcrit() < 237657.0945 + 1e-6


class _Quadratic:
    """(θ - 0.1)² per coordinate, with its analytic gradient (the scaled path)."""

    has_gradient = True

    def __call__(self, theta: np.ndarray) -> float:
        return float(np.sum((theta - 0.1) ** 2))

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        return 2.0 * (theta - 0.1)


def test_the_scaled_theta_keeps_a_finite_lower_bound() -> None:
    """A lower bound other than 0 and -inf (a user's, through optimize_lmer) bounds θ, not
    z = 4θ: the optimum sits on it."""
    lower = np.array([0.5, -np.inf])
    par, fval, _, _, _ = optimize._lbfgsb(_Quadratic(), np.array([1.0, 1.0]), lower, {})
    np.testing.assert_allclose(par, [0.5, 0.1], atol=1e-8)
    assert par[0] >= 0.5
    assert fval == pytest.approx(0.16, abs=1e-10)


def test_a_users_gtol_is_in_theta(monkeypatch: pytest.MonkeyPatch) -> None:
    """optCtrl's gtol bounds the projected gradient in θ, as before the scaled path: the
    optimizer on z = 4θ, whose gradient is a quarter of θ's, is given a quarter of it."""
    seen: list[dict[str, object]] = []
    real = optimize._minimize

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(dict(kwargs["options"]))  # type: ignore[call-overload]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(optimize, "_minimize", spy)
    optimize._lbfgsb(_Quadratic(), np.array([1.0, 1.0]), np.zeros(2), {"gtol": 1e-3})
    assert seen and all(o["gtol"] == 1e-3 / 4 for o in seen)
