"""Block 2's sparse factor (lmeformula.pls.cholmod): where block 2 is a plain dense block,
large and sparse enough, an LMM's criterion comes from CHOLMOD's supernodal factor's pivots,
and the fitted model, its conditional variances and L-BFGS-B's gradient from that factor. It
must give the dense factor's numbers to rounding at every θ, scalar and vector terms alike,
keep lme4's optimizer path, and stay out of the way everywhere else (dense patterns are not
analysed, re-weighting, a missing cvxopt, a pivot that fails)."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
import lmeformula.pls.policy as pls_policy
from lmeformula.errors import ModelSizeError
from lmeformula.pls import cholmod, engine
from lmeformula.pls.cholmod import SparsePivots
from lmeformula.pls.plans import PatternAssembly, update_block2


def schools(nschool: int = 60, per_school: int = 11, nstudent: int = 3000, ratings: int = 4,
            seed: int = 3) -> pd.DataFrame:
    """Students rating teachers of their own school: the teachers' block is block diagonal
    by school (660 teachers, a factor that fills ~2 % of a dense triangle)."""
    rng = np.random.default_rng(seed)
    school = rng.integers(0, nschool, nstudent)
    student = np.repeat(np.arange(nstudent), ratings)
    teacher = school[student] * per_school + rng.integers(0, per_school, student.size)
    y = (rng.normal(size=nschool * per_school)[teacher] + rng.normal(size=nstudent)[student]
         + rng.normal(size=student.size))
    return pd.DataFrame({"y": y, "x": rng.normal(size=student.size),
                         "s": [f"s{i}" for i in student], "t": [f"t{i}" for i in teacher]})


SCHOOLS = "y ~ x + (1 | s) + (1 | t)"
INSTEVAL = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"


@pytest.fixture(scope="module")
def school_data() -> pd.DataFrame:
    return schools()


def devfuns(formula: str, df: pd.DataFrame, **kwargs: Any) -> tuple[Any, Any]:
    """The deviance function with the sparse factor allowed, and one with it disabled."""
    pf = lmf.lFormula(formula, df, **kwargs)
    sparse = lmf.mkLmerDevfun(pf)
    base = pls_policy.POLICY
    pls_policy.POLICY = dataclasses.replace(base, sparse_min_order=10**9)
    try:
        dense = lmf.mkLmerDevfun(pf)
    finally:
        pls_policy.POLICY = base
    return sparse, dense


def decided(dev: Any) -> Any:
    """The deviance function after its first evaluation (which decides whether block 2 takes
    the sparse factor)."""
    dev(dev.start)
    return dev


def thetas(start: np.ndarray, k: int = 4, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [start] + [start * rng.uniform(0.2, 3.0, start.size) for _ in range(k)]


@pytest.mark.parametrize(("formula", "data", "REML"),
                         [(SCHOOLS, "schools", True), (SCHOOLS, "schools", False),
                          ("y ~ 0 + (1 | s) + (1 | t)", "schools", True),
                          (INSTEVAL, "InstEval", True), (INSTEVAL, "InstEval", False)])
def test_sparse_criterion_is_the_dense_one(formula: str, data: str, REML: bool,
                                           school_data: pd.DataFrame) -> None:
    """REML and ML (ML reads X's pivots and the response's apart: X's rows must stay last),
    with and without fixed effects."""
    df = school_data if data == "schools" else lmf.datasets.load(data)
    sparse, dense = devfuns(formula, df, REML=REML)
    for th in thetas(np.asarray(sparse.start, dtype=float)):
        assert sparse(th) == pytest.approx(dense(th), rel=1e-12)
    state = sparse.problem._sparse
    assert isinstance(state, tuple)  # chosen: analysed at the first evaluation and kept
    assert 0 < state[1].fill <= pls_policy.POLICY.sparse_max_fill
    assert dense.problem._sparse is None
    # the criterion alone: no factorisation is kept for the sparse evaluations
    assert sparse.problem.deviance(thetas(sparse.start)[1], True)[1] is None


@pytest.mark.parametrize("formula", [SCHOOLS, "y ~ x + (1 | s) + (x | t)",
                                     "y ~ x + (1 | s) + (x || t)"])
def test_the_large_block_engine_takes_the_sparse_factor_too(
        monkeypatch: pytest.MonkeyPatch, school_data: pd.DataFrame, formula: str) -> None:
    """Block 2 compact (lmeformula.pls.large, forced here by a lower order): its pattern
    from the stored entries (closed under levels with a vector term) gives the same
    criterion as its dense factor."""
    from lmeformula.pls.large import LargeBlockPLSProblem

    monkeypatch.setattr(pls_policy, "POLICY",
                        dataclasses.replace(pls_policy.POLICY, compact_m22_order=600))
    sparse, dense = devfuns(formula, school_data)
    assert isinstance(sparse.problem, LargeBlockPLSProblem)
    for th in thetas(np.asarray(sparse.start, dtype=float)):
        assert sparse(th) == pytest.approx(dense(th), rel=1e-12)
    assert isinstance(sparse.problem._sparse, tuple)
    assert dense.problem._sparse is None


def test_the_fit_takes_lme4s_path_with_either_factor(school_data: pd.DataFrame) -> None:
    fits = {}
    base = pls_policy.POLICY
    for name, policy in (("sparse", base),
                         ("dense", dataclasses.replace(base, sparse_min_order=10**9))):
        pls_policy.POLICY = policy
        try:
            fits[name] = lmf.lmer(SCHOOLS, school_data)
        finally:
            pls_policy.POLICY = base
    sparse, dense = fits["sparse"], fits["dense"]
    # the two criteria differ in their last bits (another summation order, cvxopt's own
    # OpenBLAS kernels), on which BOBYQA's last steps can branch: the same path to within
    # a few evaluations (equal on this machine), the same optimum to its tolerance
    assert abs(sparse.optinfo.feval - dense.optinfo.feval) <= 0.15 * dense.optinfo.feval
    np.testing.assert_allclose(sparse.theta, dense.theta, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(sparse.fixef, dense.fixef, rtol=1e-8)
    assert float(lmf.REMLcrit(sparse)) == pytest.approx(float(lmf.REMLcrit(dense)), rel=1e-12)


def test_pattern_assembly_is_the_dense_assembly(school_data: pd.DataFrame) -> None:
    sparse, _ = devfuns(SCHOOLS, school_data)
    problem = decided(sparse).problem
    assembly, factor = problem._sparse
    for th in thetas(np.asarray(sparse.start, dtype=float)):
        _, t1 = problem.b11.factor(problem.terms[0].lower_factor(th))
        down = problem.b21.rank_update(t1)
        values = assembly.values(th, down)
        s = update_block2(problem.b22.plan, th, problem.M22, problem.b22.keys, down.copy(),
                          problem.b22.diagonal)
        np.testing.assert_allclose(values, s.ravel()[factor.flat], rtol=1e-14, atol=1e-14)
        # every entry of S's upper triangle outside the pattern is zero
        outside = np.ones(s.size, dtype=bool)
        outside[factor.flat] = False
        assert not np.triu(s).ravel()[outside].any()


def test_a_dense_pattern_is_not_analysed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Randomly crossed factors: block 2's pattern is nearly full, so CHOLMOD is not run (the
    analysis of a full pattern cost ~1 s where the dense evaluation costs ~25 ms)."""
    rng = np.random.default_rng(2)
    n = 80_000
    df = pd.DataFrame({"y": rng.normal(size=n), "a": rng.integers(0, 2000, n).astype(str),
                       "b": rng.integers(0, 650, n).astype(str)})
    called: list[int] = []
    monkeypatch.setattr(SparsePivots, "analyse",
                        classmethod(lambda cls, *a, **k: called.append(1)))
    dev = lmf.mkLmerDevfun(lmf.lFormula("y ~ 1 + (1 | a) + (1 | b)", df))
    assert dev.problem._sparse is engine._UNDECIDED
    decided(dev)
    assert dev.problem._sparse is None and not called


def nested(nschool: int = 300, nclass: int = 10, per_class: int = 6, seed: int = 5
           ) -> pd.DataFrame:
    """Pupils in classes in schools with a slope at both levels: block 2 is the schools'
    (x | school) term, block diagonal by school once the classes are eliminated."""
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(nschool), nclass * per_class)
    klass = np.repeat(np.arange(nschool * nclass), per_class)
    x = rng.normal(size=school.size)
    y = (rng.normal(size=nschool)[school] + rng.normal(size=nschool)[school] * x * 0.5
         + rng.normal(size=nschool * nclass)[klass] + x + rng.normal(size=school.size))
    return pd.DataFrame({"y": y, "x": x, "school": [f"h{i}" for i in school],
                         "class": [f"c{i % nclass}" for i in klass]})


@pytest.mark.parametrize("formula", ["y ~ x + (1 | s) + (x | t)", "y ~ x + (x | s) + (x | t)",
                                     "nested"])
@pytest.mark.parametrize("REML", [True, False])
def test_vector_terms_in_block_two_take_the_sparse_factor(
        formula: str, REML: bool, school_data: pd.DataFrame) -> None:
    """Λ₂ mixes a level's entries: the pattern is closed under levels and each pair of
    levels assembled as λ_aᵀ(M22 - D)λ_b."""
    df, formula = ((nested(), "y ~ x + (x | school/class)") if formula == "nested"
                   else (school_data, formula))
    sparse, dense = devfuns(formula, df, REML=REML)
    assert sparse.problem.m >= pls_policy.POLICY.sparse_min_order
    assert sparse.problem._block2_plan.vector_blocks
    for th in thetas(np.asarray(sparse.start, dtype=float)):
        assert sparse(th) == pytest.approx(dense(th), rel=1e-12)
    assert isinstance(sparse.problem._sparse, tuple)


@pytest.mark.parametrize("failure", ["pivots", "no_cvxopt"])
def test_the_dense_factor_answers_when_the_sparse_one_cannot(
        failure: str, monkeypatch: pytest.MonkeyPatch, school_data: pd.DataFrame) -> None:
    sparse, dense = devfuns(SCHOOLS, school_data)
    if failure == "no_cvxopt":
        monkeypatch.setattr(cholmod, "cholmod_module", lambda: None)
    else:  # a pivot that is not positive: CHOLMOD refuses, the dense factor diagnoses
        decided(sparse)
        monkeypatch.setattr(SparsePivots, "pivots", lambda self, values: None)
    for th in thetas(np.asarray(sparse.start, dtype=float))[1:]:
        value, f = sparse.problem.deviance(th, True)
        assert value == dense(th) and f is not None
    assert (sparse.problem._sparse is None) == (failure == "no_cvxopt")


def test_a_gradient_method_keeps_the_dense_factor(monkeypatch: pytest.MonkeyPatch,
                                                  school_data: pd.DataFrame) -> None:
    """L-BFGS-B on a block 2 below the sparse gradient's least order (660 teachers): the
    dense factor at each of its points for the gradient, the criterion taken from it too
    (made once), and block 2 never analysed."""
    assert lmf.lFormula(SCHOOLS, school_data).reTrms.Zt.shape[0] - 3000 + 3 < \
        pls_policy.POLICY.sparse_gradient_min_order
    called: list[int] = []
    monkeypatch.setattr(SparsePivots, "analyse",
                        classmethod(lambda cls, *a, **k: called.append(1)))
    m = lmf.lmer(SCHOOLS, school_data, control=lmf.lmerControl(optimizer="L-BFGS-B"))
    assert m.optinfo.feval > 2 and not called


def test_a_model_with_the_sparse_factor_pickles(school_data: pd.DataFrame) -> None:
    """CHOLMOD's factor cannot be pickled: a copy analyses block 2 again when it evaluates
    (a bootstrap's spawned workers get the model this way)."""
    import copy
    import pickle

    m = lmf.lmer(SCHOOLS, school_data)
    problem = m.devfun.problem
    assert isinstance(problem._sparse, tuple)
    for twin in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        devfun = twin.devfun
        assert devfun.problem._sparse is engine._UNDECIDED
        theta = np.asarray(m.theta) * 1.05
        assert devfun(theta) == m.devfun(theta)
        assert isinstance(devfun.problem._sparse, tuple)
        assert lmf.REMLcrit(twin) == lmf.REMLcrit(m)


def test_a_pattern_that_fills_in_is_refused_before_any_numeric_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Randomly crossed levels with a sparse pattern (~30 % of a triangle) whose factor
    fills in nearly completely: the symbolic analysis' column counts refuse it, and CHOLMOD
    never factors it (on the large engine that had cost a dense factor's time and 2.5 times
    its memory)."""
    rng = np.random.default_rng(0)
    a = np.repeat(np.arange(3000), 8)
    df = pd.DataFrame({"y": rng.normal(size=a.size), "a": a.astype(str),
                       "b": rng.integers(0, 700, a.size).astype(str)})
    mods = cholmod.cholmod_module()
    assert mods is not None
    numeric, symbolic = mods[1].numeric, mods[1].symbolic
    calls: list[str] = []

    def counted(name: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return fn(*args, **kwargs)
        return call

    monkeypatch.setattr(mods[1], "numeric", counted("numeric", numeric))
    monkeypatch.setattr(mods[1], "symbolic", counted("symbolic", symbolic))
    dev = decided(lmf.mkLmerDevfun(lmf.lFormula("y ~ 1 + (1 | a) + (1 | b)", df)))
    assert dev.problem.m >= pls_policy.POLICY.sparse_min_order
    assert dev.problem._sparse is None
    assert calls == ["symbolic"]  # analysed (the pattern passed), refused by its fill


def test_cvxopts_global_options_are_neither_relied_on_nor_changed(
        school_data: pd.DataFrame) -> None:
    """cvxopt's CHOLMOD options are process-wide: another user's (a simplicial factor,
    CHOLMOD's own orderings) must not break the fit, and are left as they were."""
    mods = cholmod.cholmod_module()
    assert mods is not None
    options = mods[1].options
    theirs = {"supernodal": 0, "nmethods": 0}
    before = dict(options)
    options.update(theirs)
    try:
        sparse, dense = devfuns(SCHOOLS, school_data)
        for th in thetas(np.asarray(sparse.start, dtype=float)):
            assert sparse(th) == pytest.approx(dense(th), rel=1e-12)
        assert isinstance(sparse.problem._sparse, tuple)
        assert dict(options) == {**before, **theirs}
    finally:
        options.clear()
        options.update(before)


def test_x_and_y_not_last_in_the_analysis_refuse_it(monkeypatch: pytest.MonkeyPatch,
                                                    school_data: pd.DataFrame) -> None:
    """The last pivots must be RX's and the response's: a permutation that moved their rows
    (another CHOLMOD's orderings) is refused, and the dense factor answers."""
    structure = cholmod._symbolic_structure

    def moved(factor: Any, m: int) -> Any:
        perm, counts = structure(factor, m)
        return np.roll(perm, 1), counts

    monkeypatch.setattr(cholmod, "_symbolic_structure", moved)
    sparse, dense = devfuns(SCHOOLS, school_data)
    assert decided(sparse).problem._sparse is None
    assert sparse(sparse.start * 1.3) == dense(sparse.start * 1.3)


def test_weights_take_the_sparse_factor(school_data: pd.DataFrame) -> None:
    weighted = school_data.assign(w=np.random.default_rng(3).uniform(0.2, 3, len(school_data)))
    sparse, dense = devfuns(SCHOOLS, weighted, weights="w")
    for th in thetas(np.asarray(sparse.start, dtype=float)):
        assert sparse(th) == pytest.approx(dense(th), rel=1e-12)
    assert isinstance(sparse.problem._sparse, tuple)


@pytest.mark.parametrize("formula", [SCHOOLS, "y ~ x + (1 | s) + (x | t)"])
def test_reweighting_the_large_engine_keeps_its_sparse_analysis(
        monkeypatch: pytest.MonkeyPatch, school_data: pd.DataFrame, formula: str) -> None:
    """The compact M22's entries are structural (zeros kept), so S's pattern does not change
    with the weights (a zero weight included): a GLMM's PIRLS step refactors numerically on
    the same analysis, with the dense factor's numbers."""
    monkeypatch.setattr(pls_policy, "POLICY",
                        dataclasses.replace(pls_policy.POLICY, compact_m22_order=600))
    sparse, dense = devfuns(formula, school_data)
    analysis = decided(sparse).problem._sparse
    assert isinstance(analysis, tuple)
    rng = np.random.default_rng(1)
    n = len(school_data)
    for _ in range(2):
        y = school_data["y"].to_numpy() + 0.5 * rng.normal(size=n)
        w = rng.uniform(0.1, 3.0, n)
        w[:40] = 0.0
        for dev in (sparse, dense):
            dev.problem.reweight(w, y)
        kept = sparse.problem._sparse
        assert isinstance(kept, tuple) and kept[1] is analysis[1]
        for th in thetas(np.asarray(sparse.start, dtype=float), k=2):
            for reml in (True, False):
                assert sparse.problem.deviance(th, reml)[0] == pytest.approx(
                    dense.problem.deviance(th, reml)[0], rel=1e-12)
            f = sparse.problem.factor(th)
            assert f.sparse22 is not None
            for a, b in zip(sparse.problem.solve(f),
                            dense.problem.solve(dense.problem.factor(th)), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_a_glmm_takes_the_sparse_factor_in_the_large_engine(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """PIRLS factors without evaluating the criterion: its first factorisation decides,
    every step refactors on the one analysis, and the model keeps the sparse factor; the
    fit is the dense factor's to the PIRLS and optimizer tolerances."""
    df = schools(nstudent=1200, ratings=3)
    rng = np.random.default_rng(4)
    df["yb"] = (rng.uniform(size=len(df)) < 1 / (1 + np.exp(-df["y"]))).astype(float)
    base = pls_policy.POLICY
    fits = {}
    for name, extra in (("sparse", {}), ("dense", {"sparse_min_order": 10**9})):
        # the compact engine from order 600, and PIRLS on the engine (not the scalar kernel)
        monkeypatch.setattr(pls_policy, "POLICY", dataclasses.replace(
            base, compact_m22_order=600, kernel_max_rest_order=0, **extra))
        fits[name] = lmf.glmer("yb ~ x + (1 | s) + (1 | t)", df, family="binomial")
    sparse, dense = fits["sparse"], fits["dense"]
    assert isinstance(sparse._problem._sparse, tuple) and sparse._factor.sparse22 is not None
    assert dense._factor.sparse22 is None
    assert sparse.optinfo.feval == dense.optinfo.feval
    np.testing.assert_allclose(np.asarray(sparse.theta), np.asarray(dense.theta), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(sparse.fixef), np.asarray(dense.fixef), rtol=1e-6,
                               atol=1e-8)
    # the Laplace criterion at the two optima to rounding (2.5e-14 relative seen); the sum of
    # deviance residuals alone is not stationary there, so θ's 1e-8 differences (the
    # optimizer's tolerance) move it at first order (6e-9 relative seen)
    assert sparse.optinfo.fval == pytest.approx(dense.optinfo.fval, rel=1e-12)
    assert float(sparse.deviance()) == pytest.approx(float(dense.deviance()), rel=1e-7)
    np.testing.assert_allclose(sparse.RX(), dense.RX(), rtol=1e-7)
    assert sparse._factor._dense is None  # RX from the sparse factor
    # from lme4's finite-difference Hessian over (θ, β): its steps' errors, ~1e-6 of the
    # diagonal, show in the small covariance (4e-11 absolute seen)
    np.testing.assert_allclose(np.asarray(sparse.vcov()), np.asarray(dense.vcov()), rtol=1e-5,
                               atol=1e-6 * float(np.diag(dense.vcov()).max()))
    for a, b in zip(sparse.ranef(condVar=True).values(), dense.ranef(condVar=True).values(),
                    strict=True):
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.filterwarnings("ignore::lmeformula.errors.SingularFitWarning")  # no slopes
def test_a_dense_block_too_large_for_memory_is_refused_only_where_needed(
        monkeypatch: pytest.MonkeyPatch, school_data: pd.DataFrame) -> None:
    """On the compact engine the dense block's memory check waits until the dense block is
    needed: the sparse factor fits the model without it (the same fit), and what only the
    dense factor gives (getME("L")) or a design whose sparse factor fills in is refused
    then, before the dense block is allocated, saying why."""
    import lmeformula.pls.large as large
    import lmeformula.pls.memory as memory

    base = dataclasses.replace(pls_policy.POLICY, compact_m22_order=600)
    monkeypatch.setattr(pls_policy, "POLICY", base)
    formula = "y ~ x + (1 | s) + (x | t)"
    plain = lmf.lmer(formula, school_data)
    order = 2 * 660 + 3
    # room for the data and the sparse factor, not for one dense block (3.4 MB)
    monkeypatch.setattr(memory, "available_memory", lambda: 8 * order * order - 1)
    monkeypatch.setattr(large, "available_memory", lambda: 8 * order * order - 1)
    small = lmf.lmer(formula, school_data)
    assert small.devfun.problem._dense_refusal is not None
    assert small._factor.sparse22 is not None
    assert float(lmf.REMLcrit(small)) == float(lmf.REMLcrit(plain))
    np.testing.assert_array_equal(np.asarray(small.theta), np.asarray(plain.theta))
    small.ranef(condVar=True)  # from the selected inverse: no dense block
    with pytest.raises(ModelSizeError, match=r"1,323 x 1,323 .*asks for the dense one"):
        small.getME("L")
    # a design whose sparse factor is refused: the dense block, refused at the first
    # evaluation
    monkeypatch.setattr(pls_policy, "POLICY", dataclasses.replace(base, sparse_max_fill=0.0))
    with pytest.raises(ModelSizeError, match=r"1,323 x 1,323 .*does not serve this design"):
        lmf.lmer(formula, school_data)
    # a sparse factor too large as well
    monkeypatch.setattr(pls_policy, "POLICY", base)
    monkeypatch.setattr(large, "available_memory", lambda: 1000)
    with pytest.raises(ModelSizeError, match=r"sparse factor.* entries .*too many as well"):
        lmf.lmer(formula, school_data)


def test_reweighting_returns_to_the_dense_factor(school_data: pd.DataFrame) -> None:
    sparse, _ = devfuns(SCHOOLS, school_data)
    assert isinstance(decided(sparse).problem._sparse, tuple)
    n = len(school_data)
    sparse.problem.reweight(np.full(n, 2.0), school_data["y"].to_numpy())
    assert sparse.problem._sparse is None


def test_assembly_refuses_nothing_it_was_not_given(school_data: pd.DataFrame) -> None:
    """The assembly's slots: every downdate key and the random effects' diagonal lie in the
    pattern (``of`` finds each by binary search)."""
    sparse, _ = devfuns(SCHOOLS, school_data)
    assembly, factor = decided(sparse).problem._sparse
    assert isinstance(assembly, PatternAssembly)
    flat = factor.flat
    np.testing.assert_array_equal(flat[assembly.key_slots], sparse.problem.b22.keys)
    m = sparse.problem.m
    np.testing.assert_array_equal(flat[assembly.inflate],
                                  np.arange(assembly.plan.qr) * (m + 1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_cvxopts_sequential_openblas_is_left_out_of_the_thread_scopes() -> None:
    """cvxopt's bundled OpenBLAS has no threads (CHOLMOD runs on one core, loaded or not):
    the thread scopes set numpy's and scipy's only."""
    import ctypes
    from pathlib import Path

    from lmeformula.pls import threads

    assert cholmod.cholmod_module() is not None
    maps = Path("/proc/self/maps").read_text().splitlines()
    paths = sorted({line.split()[-1] for line in maps
                    if "openblas" in line.rsplit("/", 1)[-1].lower()})
    if not any("cvxopt" in path for path in paths):
        pytest.skip("this cvxopt links a system BLAS, not a bundled OpenBLAS")
    sequential = [threads._sequential(ctypes.CDLL(path)) for path in paths]
    assert [("cvxopt" in path) for path in paths] == sequential
    threads._openblas_libraries.cache_clear()
    found = threads._openblas_libraries()
    assert found is not None and len(found) == sequential.count(False)


# -- the fitted model keeps block 2's sparse factor -----------------------------------------
# Its solutions and RX come from CHOLMOD's factor; what is defined by the dense factor's
# order (getME("L"), RZX, conditional variances) from a dense factor made when asked for.

def fitted_pair(df: pd.DataFrame, formula: str = SCHOOLS, **policy: Any) -> tuple[Any, Any]:
    """The model fitted with the sparse factor, and the same model at the same θ built with
    the dense factor."""
    base = pls_policy.POLICY
    pls_policy.POLICY = dataclasses.replace(base, **policy)
    try:
        pf = lmf.lFormula(formula, df)
        sparse = lmf.mkLmerDevfun(pf)
        opt = lmf.optimizeLmer(sparse)
        model = lmf.mkMerMod(sparse, opt, pf)
        pls_policy.POLICY = dataclasses.replace(pls_policy.POLICY, sparse_min_order=10**9)
        dense = lmf.mkLmerDevfun(pf)
        twin = lmf.mkMerMod(dense, opt, pf)
    finally:
        pls_policy.POLICY = base
    return model, twin


@pytest.mark.filterwarnings("ignore::lmeformula.errors.SingularFitWarning")  # no slopes
@pytest.mark.parametrize(("engine_kind", "formula"),
                         [("blocked", SCHOOLS), ("large", SCHOOLS),
                          ("blocked", "y ~ x + (x | s) + (1 | t)"),
                          ("large", "y ~ 1 + (x || s) + (1 | t)"),
                          ("blocked", "y ~ x + (1 | s) + (x | t)"),
                          ("large", "y ~ x + (1 | s) + (x | t)")])
def test_the_fitted_model_is_the_dense_one(engine_kind: str, formula: str,
                                           school_data: pd.DataFrame) -> None:
    from lmeformula.pls.large import LargeBlockPLSProblem

    model, twin = fitted_pair(school_data, formula,
                             compact_m22_order=600 if engine_kind == "large"
                             else pls_policy.POLICY.compact_m22_order)
    assert isinstance(model.devfun.problem, LargeBlockPLSProblem) == (engine_kind == "large")
    assert model._factor.sparse22 is not None and model._factor.L22.size == 0
    assert twin._factor.sparse22 is None
    assert model._factor._dense is None  # nothing dense made to build the model ...
    for name in ("fixef", "sigma"):
        np.testing.assert_allclose(np.asarray(getattr(model, name)),
                                   np.asarray(getattr(twin, name)), rtol=1e-12)
    np.testing.assert_allclose(model.getME("u"), twin.getME("u"), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(model.getME("b"), twin.getME("b"), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(model.RX(), twin.RX(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(model.vcov()), np.asarray(twin.vcov()), rtol=1e-11)
    assert float(lmf.REMLcrit(model)) == pytest.approx(float(lmf.REMLcrit(twin)), rel=1e-13)
    np.testing.assert_allclose(model.fitted(), twin.fitted(), rtol=1e-11)
    # conditional variances from the selected inverse of the sparse factor
    for a, b in zip(model.ranef(condVar=True).values(), twin.ranef(condVar=True).values(),
                    strict=True):
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-10, atol=1e-13)
        for va, vb in zip(*(v if isinstance(v, list) else [v]
                            for v in (a.attrs["postVar"], b.attrs["postVar"])), strict=True):
            np.testing.assert_allclose(va, vb, rtol=1e-10, atol=1e-15)
    assert model._factor._dense is None  # ... nor to summarise it
    # RZX in the order of getME("L"), both from the dense factor at the model's θ
    np.testing.assert_allclose(model.getME("RZX"), twin.getME("RZX"), rtol=1e-10, atol=1e-12)
    ell, ell_twin = model.getME("L"), twin.getME("L")
    assert ell.nnz == ell_twin.nnz  # the same pattern, the same values to rounding
    assert abs(ell - ell_twin).max() <= 1e-13 * abs(ell_twin).max()


def test_conditional_variances_fall_back_to_the_dense_factor(
        monkeypatch: pytest.MonkeyPatch, school_data: pd.DataFrame) -> None:
    """Too many pairs for the sparse route: the dense factor, the same numbers."""
    model, twin = fitted_pair(school_data)
    sparse_way = model.devfun.problem.inverse_diagonal_blocks(model._factor)
    monkeypatch.setattr(pls_policy, "POLICY",
                        dataclasses.replace(pls_policy.POLICY, max_inverse_pairs=10))
    dense_way = model.devfun.problem.inverse_diagonal_blocks(model._factor)
    assert model._factor._dense is not None
    for a, b, c in zip(sparse_way, dense_way,
                       twin.devfun.problem.inverse_diagonal_blocks(twin._factor), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)
        np.testing.assert_allclose(b, c, rtol=1e-12)


def test_the_criterion_is_right_after_a_model_read_the_factor(school_data: pd.DataFrame) -> None:
    """Reading CHOLMOD's L out turns a supernodal factor into a simplicial one in place, whose
    ``diag`` is LDLᵀ's D: the fitted model's factor has an analysis of its own, and the
    deviance function's pivots stay right afterwards."""
    sparse, dense = devfuns(SCHOOLS, school_data)
    decided(sparse)
    for th in thetas(np.asarray(sparse.start, dtype=float)):
        f = sparse.problem.factor(th)
        assert f.sparse22 is not None
        assert sparse.problem.criterion(f, True) == pytest.approx(dense(th), rel=1e-13)
        assert sparse(th * 1.1) == pytest.approx(dense(th * 1.1), rel=1e-13)


def test_the_sparse_solution_is_the_dense_one_at_any_theta(school_data: pd.DataFrame) -> None:
    sparse, dense = devfuns("y ~ x + (1 | s) + (1 | t)", school_data, REML=False)
    decided(sparse)
    for th in thetas(np.asarray(sparse.start, dtype=float)):
        f, g = sparse.problem.factor(th), dense.problem.factor(th)
        beta, u = sparse.problem.solve(f)
        beta_d, u_d = dense.problem.solve(g)
        np.testing.assert_allclose(beta, beta_d, rtol=1e-11)
        np.testing.assert_allclose(u, u_d, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(sparse.problem.rx(f), dense.problem.rzx_rx(g)[1],
                                   rtol=1e-12)
        assert f.pwrss == pytest.approx(g.pwrss, rel=1e-12)


def test_a_fitted_model_with_the_sparse_factor_pickles(school_data: pd.DataFrame) -> None:
    import pickle

    model, _ = fitted_pair(school_data)
    copy = pickle.loads(pickle.dumps(model))
    assert copy._factor.sparse22 is not None
    np.testing.assert_array_equal(copy.RX(), model.RX())
    np.testing.assert_array_equal(copy.getME("u"), model.getME("u"))
    assert copy.summary().__str__() == model.summary().__str__()



# -- the analytic gradient from the sparse factor (L-BFGS-B on large sparse designs) -------

@pytest.mark.parametrize("REML", [True, False])
@pytest.mark.parametrize("formula", [SCHOOLS, "y ~ x + (x | s) + (1 | t)",
                                     "y ~ x + (1 | s) + (x | t)"])
@pytest.mark.parametrize("engine_kind", ["blocked", "large"])
def test_the_sparse_gradient_is_the_dense_one(engine_kind: str, formula: str, REML: bool,
                                              monkeypatch: pytest.MonkeyPatch,
                                              school_data: pd.DataFrame) -> None:
    policy = dataclasses.replace(pls_policy.POLICY, sparse_gradient_min_order=0)
    if engine_kind == "large":
        policy = dataclasses.replace(policy, compact_m22_order=600)
    monkeypatch.setattr(pls_policy, "POLICY", policy)
    sparse, dense = devfuns(formula, school_data, REML=REML)
    monkeypatch.setattr(pls_policy, "POLICY", policy)  # devfuns put the original back
    sparse.keep_factors()
    for th in thetas(np.asarray(sparse.start, dtype=float), k=3):
        assert sparse(th) == pytest.approx(dense(th), rel=1e-13)
        assert sparse.last is not None and sparse.last.sparse22 is not None  # made once
        np.testing.assert_allclose(sparse.gradient(th), dense.gradient(th), rtol=1e-11,
                                   atol=1e-11 * np.abs(dense.gradient(th)).max())
        assert sparse.last._dense is None  # no dense factor behind it


def test_lbfgsb_fits_on_the_sparse_factor(monkeypatch: pytest.MonkeyPatch,
                                          school_data: pd.DataFrame) -> None:
    bobyqa = lmf.lmer(SCHOOLS, school_data)
    monkeypatch.setattr(pls_policy, "POLICY", dataclasses.replace(
        pls_policy.POLICY, sparse_gradient_min_order=0))
    m = lmf.lmer(SCHOOLS, school_data, control=lmf.lmerControl(optimizer="L-BFGS-B"))
    assert isinstance(m.devfun.problem._sparse, tuple)
    assert m.optinfo.feval < 30
    # the same optimum (L-BFGS-B's own tolerance), no worse than BOBYQA's
    assert float(lmf.REMLcrit(m)) <= float(lmf.REMLcrit(bobyqa)) + 1e-7
    np.testing.assert_allclose(m.theta, bobyqa.theta, rtol=1e-4)


def test_a_sparse_gradient_that_does_not_pay_is_dense(monkeypatch: pytest.MonkeyPatch,
                                                      school_data: pd.DataFrame) -> None:
    monkeypatch.setattr(pls_policy, "POLICY", dataclasses.replace(
        pls_policy.POLICY, sparse_gradient_min_order=0, sparse_gradient_work=0.0))
    dev = lmf.mkLmerDevfun(lmf.lFormula(SCHOOLS, school_data))
    dev.keep_factors()
    dev(dev.start)  # the first evaluation analyses, then finds the selected inverse too dear
    assert dev.problem._sparse is None
    decided_sparse = lmf.mkLmerDevfun(lmf.lFormula(SCHOOLS, school_data))
    decided(decided_sparse)
    assert isinstance(decided_sparse.problem._sparse, tuple)
    decided_sparse.keep_factors()  # decided before: given back to the dense factor
    assert decided_sparse.problem._sparse is None


def test_closing_a_pattern_under_levels_is_the_brute_force_closure() -> None:
    """Every entry between two levels that meet, on or above the diagonal, ascending; a
    pattern closed already is returned as it is; None above the limit."""
    from lmeformula.pls.engine import closed_under_levels

    rng = np.random.default_rng(0)

    def brute(flat: np.ndarray, unit: np.ndarray, m: int) -> np.ndarray:
        r, c = np.divmod(flat, m)
        met = set(zip(unit[r].tolist(), unit[c].tolist(), strict=True))
        return np.array([i * m + j for i in range(m) for j in range(i, m)
                         if (unit[i], unit[j]) in met], dtype=np.int64)

    for trial in range(300):
        sizes = rng.integers(1, 4, rng.integers(1, 10))
        unit = np.repeat(np.arange(sizes.size), sizes)
        m = unit.size
        upper = np.array([i * m + j for i in range(m) for j in range(i, m)])
        flat = np.sort(rng.choice(upper, size=rng.integers(0, upper.size + 1), replace=False))
        expected = brute(flat, unit, m)
        got = closed_under_levels(flat, unit, m, np.inf)
        assert got is not None
        np.testing.assert_array_equal(got, expected)
        assert closed_under_levels(expected, unit, m, np.inf) is expected  # closed: as is
        if trial % 10 == 0 and expected.size > flat.size:
            assert closed_under_levels(flat, unit, m, limit=0.5 * flat.size - 1) is None
