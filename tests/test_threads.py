"""BLAS threads during a fit: the engine's policy or control's "threads", and the caller's
settings back afterwards."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from thread_counts import blas_counts
from threadpoolctl import threadpool_info, threadpool_limits

import lmeformula as lmf
from lmeformula.errors import LmeFormulaError
from lmeformula.lmer import optimizeLmer
from lmeformula.pls.threads import THREAD_POLICY, ThreadPolicy, blas_threads, engine_threads


def fit_recording(control: dict[str, Any] | None) -> tuple[list[list[int]], lmf.LmerMod]:
    """Fit sleepstudy, recording the BLAS thread counts at every factorisation."""
    df = lmf.datasets.load("sleepstudy")
    pf = lmf.lFormula("Reaction ~ Days + (Days | Subject)", df, control=control)
    dev = lmf.mkLmerDevfun(pf)
    seen: list[list[int]] = []
    factor = dev.problem.factor

    def recording(theta: np.ndarray) -> Any:
        seen.append(blas_counts())
        return factor(theta)

    dev.problem.factor = recording  # type: ignore[method-assign]
    opt = optimizeLmer(dev, control)
    model = lmf.mkMerMod(dev, opt, pf)
    return seen, model


@pytest.mark.slow
def test_small_models_run_single_threaded_and_restore() -> None:
    # sleepstudy's dense block has order 39: one thread (OpenBLAS threads some small
    # kernels, which collapses on a busy machine), the caller's setting back afterwards
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_counts()
        seen, _ = fit_recording(None)
        assert seen and all(counts == [1] * len(before) for counts in seen)
        assert blas_counts() == before


def test_the_policy_runs_mid_sized_blocks_single_threaded_and_restores() -> None:
    class Problem:
        dense_order = 600

    before = blas_counts()
    with engine_threads(Problem()):
        assert blas_counts() == [1] * len(before)
    assert blas_counts() == before


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2])
def test_control_threads_is_used_during_the_fit_and_the_callers_setting_kept(k: int) -> None:
    with threadpool_limits(limits=3, user_api="blas"):  # the caller's own global setting
        seen, model = fit_recording({"threads": k})
        assert all(counts == [k] * len(counts) for counts in seen)
        assert blas_counts() == [3] * len(blas_counts())
    ref = lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"))
    np.testing.assert_allclose(model.theta, ref.theta, rtol=1e-7)


def test_lmer_accepts_threads_and_rejects_nonsense() -> None:
    df = lmf.datasets.load("sleepstudy")
    before = blas_counts()
    m = lmf.lmer("Reaction ~ Days + (1 | Subject)", df, control={"threads": 1})
    assert blas_counts() == before
    assert m.optinfo.feval > 0
    for bad in (0, -2, 1.5, "two", True):
        with pytest.raises(LmeFormulaError, match="threads"):
            lmf.lmer("Reaction ~ Days + (1 | Subject)", df, control={"threads": bad})


def test_policy_threshold_and_scope() -> None:
    policy = ThreadPolicy(parallel_order=1000)
    # below the parallel order one thread whatever the load; from it on, the free cores
    assert policy.threads(999, free=2) == 1 and policy.threads(40, free=8) == 1
    assert policy.threads(1000, free=2) == 2 and policy.threads(5000, free=7) == 7
    assert policy.threads(1000, free=1) == 1 and policy.threads(1000, free=0) == 1
    assert THREAD_POLICY.threads(40) == 1  # small blocks too (OpenBLAS threads some kernels)
    assert THREAD_POLICY.threads(600, free=2) == 1
    before = blas_counts()
    with blas_threads(None):
        assert blas_counts() == before
    with blas_threads(1):
        assert blas_counts() == [1] * len(before)
    assert blas_counts() == before


def test_the_policy_never_raises_the_callers_setting() -> None:
    # the policy's count is capped by the caller's (at_most); control's "threads" is not
    with threadpool_limits(limits=1, user_api="blas"):
        with blas_threads(2, at_most=True):
            assert blas_counts() == [1] * len(blas_counts())
        with blas_threads(2):
            assert blas_counts() == [2] * len(blas_counts())
        assert blas_counts() == [1] * len(blas_counts())
    with threadpool_limits(limits=2, user_api="blas"):
        with blas_threads(1, at_most=True):
            assert blas_counts() == [1] * len(blas_counts())
        assert blas_counts() == [2] * len(blas_counts())


def test_blas_threads_calls_openblas_directly_where_it_can() -> None:
    # on Linux the loaded OpenBLAS libraries are found without threadpoolctl's scan; the
    # counts it reports agree with what the direct calls set
    import sys

    from lmeformula.pls.threads import _openblas_libraries

    libs = _openblas_libraries()
    if sys.platform.startswith("linux") and any(
            d["internal_api"] == "openblas" for d in threadpool_info()):
        assert libs is not None and len(libs) == len(blas_counts())
    with threadpool_limits(limits=2, user_api="blas"):
        with blas_threads(1):
            assert blas_counts() == [1] * len(blas_counts())
            with blas_threads(1):  # nested: already there, nothing to change or restore
                assert blas_counts() == [1] * len(blas_counts())
            assert blas_counts() == [1] * len(blas_counts())
        assert blas_counts() == [2] * len(blas_counts())


def test_free_cores_from_the_runnable_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # the kernel's instantaneous count of runnable threads, this one included, less our own
    import lmeformula.pls.threads as threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "own_running_threads", lambda names=None: 1)
    assert threads.free_cores(runnable=lambda: 1) == 2  # only this thread: both cores free
    assert threads.free_cores(runnable=lambda: 2) == 1  # one other task: one core
    assert threads.free_cores(runnable=lambda: 3) == 1  # two busy loops beside: one thread
    assert threads.free_cores(runnable=lambda: 15) == 1
    # our own spinning BLAS workers are not other work
    monkeypatch.setattr(threads, "own_running_threads", lambda names=None: 2)
    assert threads.free_cores(runnable=lambda: 2) == 2
    # several readings: the busiest counts (a task running half the time shows in some)
    readings = iter([1, 3, 1])
    assert threads.free_cores(samples=3, runnable=lambda: next(readings)) == 1
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "own_running_threads", lambda names=None: 1)
    assert threads.free_cores(runnable=lambda: 4) == 5
    assert ThreadPolicy().threads(1159, free=threads.free_cores(runnable=lambda: 4)) == 5


def test_free_cores_without_an_instantaneous_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # no /proc/loadavg: the 1-minute load average stands for it; no load average: busy
    import lmeformula.pls.threads as threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.2, 0.0, 0.0))
    assert threads.free_cores(runnable=lambda: None) == 2
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    assert threads.free_cores(runnable=lambda: None) == 1

    def no_load() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(threads.os, "getloadavg", no_load)
    assert threads.free_cores(runnable=lambda: None) == 1


def test_runnable_tasks_reads_the_kernels_count() -> None:
    import sys

    from lmeformula.pls.threads import own_running_threads, runnable_tasks

    count = runnable_tasks()
    if sys.platform.startswith("linux"):
        assert count is not None and count >= 1  # this thread is running
    assert own_running_threads() >= 1


def test_engine_threads_follow_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    # a large block: one thread while the cores are busy, the caller's two when they are free;
    # control's "threads" whatever the load; the caller's setting back afterwards
    import lmeformula.pls.threads as threads

    class Problem:
        dense_order = 1159  # InstEval's block

    with threadpool_limits(limits=2, user_api="blas"):
        monkeypatch.setattr(threads, "free_cores", lambda *a, **k: 1)
        with threads.engine_threads(Problem()):
            assert blas_counts() == [1] * len(blas_counts())
        with threads.engine_threads(Problem(), 2):
            assert blas_counts() == [2] * len(blas_counts())
        monkeypatch.setattr(threads, "free_cores", lambda *a, **k: 2)
        with threads.engine_threads(Problem()):
            assert blas_counts() == [2] * len(blas_counts())
        monkeypatch.setattr(threads, "free_cores", lambda *a, **k: 4)  # capped by the caller's
        with threads.engine_threads(Problem()):
            assert blas_counts() == [2] * len(blas_counts())
        assert blas_counts() == [2] * len(blas_counts())


def test_setup_threads_follow_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    # building the structures: one thread on a busy machine, the caller's on an idle one,
    # control's "threads" whatever the load; the caller's setting back afterwards
    import lmeformula.pls.threads as threads

    with threadpool_limits(limits=2, user_api="blas"):
        monkeypatch.setattr(threads, "free_cores", lambda *a, **k: 1)
        with threads.setup_threads():
            assert blas_counts() == [1] * len(blas_counts())
        with threads.setup_threads(2):
            assert blas_counts() == [2] * len(blas_counts())
        monkeypatch.setattr(threads, "free_cores", lambda *a, **k: 2)
        with threads.setup_threads():
            assert blas_counts() == [2] * len(blas_counts())
        assert blas_counts() == [2] * len(blas_counts())


# OpenBLAS's threaded syrk (inside dpotrf too) overflows the wheels' 32 MB buffer once a
# thread's panel is wider than ~10,900 columns (this machine's kernels: dpotrf crashed from
# order 15,600 with two threads). The engine takes one thread there, whatever is asked.

def test_wide_panels_get_one_thread() -> None:
    policy = ThreadPolicy()
    assert policy.max_thread_panel == 8192
    assert policy.safe_threads(11_500, 2) == 2
    assert policy.safe_threads(11_600, 2) == 1  # 11,600 / √2 = 8,202 columns a panel
    assert policy.safe_threads(15_600, 2) == 1
    assert policy.safe_threads(15_600, 4) == 4  # 7,800 columns a panel
    assert policy.safe_threads(20_000, 4) == 1
    assert policy.safe_threads(10**6, 1) == 1
    assert policy.threads(20_003, free=2) == 1
    assert policy.threads(11_000, free=2) == 2
    assert policy.always_safe_order == 11_585


def test_scopes_at_large_orders_take_one_thread_and_restore() -> None:
    class Problem:
        dense_order = 20_003

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_counts()
        assert before and all(c == 2 for c in before)
        with engine_threads(Problem(), requested=2):  # control={"threads": 2} too
            assert blas_counts() == [1] * len(before)
        assert blas_counts() == before
        with engine_threads(Problem()):
            assert blas_counts() == [1] * len(before)
        with blas_threads(None, order=20_003):
            assert blas_counts() == [1] * len(before)
        with blas_threads(None, order=11_000):  # two threads pack 7,778 columns: kept
            assert blas_counts() == before
        assert blas_counts() == before


def test_engine_methods_cap_threads_after_the_fit_scope() -> None:
    # a fitted model's solutions and conditional variances are computed outside the fit's
    # scope, under the caller's setting: the engine's methods cap it themselves
    from lmeformula.pls.threads import level3_safe

    class Engine:
        def __init__(self, order: int) -> None:
            self.dense_order = order

        @level3_safe
        def counts(self, tag: str) -> tuple[str, list[int]]:
            return tag, blas_counts()

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_counts()
        assert Engine(20_003).counts("x") == ("x", [1] * len(before))
        assert Engine(1_159).counts(tag="y") == ("y", before)
        assert blas_counts() == before


def test_dense_products_of_the_observations_order_are_capped(monkeypatch: pytest.MonkeyPatch,
                                                             ) -> None:
    """hatvalues(fullHatMatrix=True) forms n x n products (n up to 20,000) and Kenward-Roger
    factors (q + p)-square matrices (q up to 12,000): both under the order's cap (a
    threaded syrk of order 19,500 with depth 1,000 segfaulted here)."""
    from lmeformula import diagnostics
    from lmeformula.ddf import kenward_roger
    from lmeformula.pls import threads as threads_module

    orders: list[int] = []

    class Recording(threads_module.blas_threads):
        def __init__(self, threads: int | None, at_most: bool = False, order: int = 0) -> None:
            orders.append(order)
            super().__init__(threads, at_most, order)

    monkeypatch.setattr(diagnostics, "blas_threads", Recording)
    monkeypatch.setattr(kenward_roger, "blas_threads", Recording)
    df = lmf.datasets.load("sleepstudy")
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", df)
    hat = diagnostics.hatvalues(m, fullHatMatrix=True)
    assert hat.shape == (180, 180) and orders == [180]
    kenward_roger.vcov_adjusted(m)
    assert orders == [180, 36 + 2]


@pytest.mark.slow
def test_profile_factors_under_the_engines_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """profile's optimizations factor hundreds of times after the fit: one thread for a
    small block whatever the caller's setting, the caller's setting back afterwards."""
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"),
                 REML=False)
    seen: list[list[int]] = []
    problem = m.devfun.problem
    factor = problem.factor

    def recording(theta: np.ndarray) -> Any:
        seen.append(blas_counts())
        return factor(theta)

    monkeypatch.setattr(problem, "factor", recording)
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_counts()
        lmf.profile(m, which=[".sig01"])
        assert blas_counts() == before
    assert len(seen) > 20 and all(c == [1] * len(before) for c in seen)
