"""BLAS threads during a fit: the engine's policy or control's "threads", and the caller's
settings back afterwards."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import lmeformula as lmf
from lmeformula.errors import LmeFormulaError
from lmeformula.lmer import optimizeLmer
from lmeformula.pls.threads import THREAD_POLICY, ThreadPolicy, blas_threads, engine_threads


def blas_counts() -> list[int]:
    return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]


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
    policy = ThreadPolicy(parallel_order=1000, idle_parallel_order=500)
    assert policy.threads(999, idle=False) == 1 and policy.threads(1000, idle=False) is None
    # an idle machine gives the caller's threads to moderately large blocks, a busy one not
    assert policy.threads(500, idle=True) is None and policy.threads(499, idle=True) == 1
    assert policy.threads(700, idle=False) == 1
    assert THREAD_POLICY.threads(40) == 1  # small blocks too (OpenBLAS threads some kernels)
    assert THREAD_POLICY.threads(600, idle=True) == 1
    before = blas_counts()
    with blas_threads(None):
        assert blas_counts() == before
    with blas_threads(1):
        assert blas_counts() == [1] * len(before)
    assert blas_counts() == before


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


def test_machine_is_idle_reads_the_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmeformula.pls.threads as threads

    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.2, 0.0, 0.0))
    assert threads.machine_is_idle()
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    assert not threads.machine_is_idle()
    assert ThreadPolicy().threads(1159) == 1  # InstEval's block on a busy machine

    def no_load() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(threads.os, "getloadavg", no_load)
    assert not threads.machine_is_idle()


def test_setup_threads_follow_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    # building the structures: one thread on a busy machine, the caller's on an idle one,
    # control's "threads" whatever the load; the caller's setting back afterwards
    import lmeformula.pls.threads as threads

    with threadpool_limits(limits=2, user_api="blas"):
        monkeypatch.setattr(threads, "machine_is_idle", lambda: False)
        with threads.setup_threads():
            assert blas_counts() == [1] * len(blas_counts())
        with threads.setup_threads(2):
            assert blas_counts() == [2] * len(blas_counts())
        monkeypatch.setattr(threads, "machine_is_idle", lambda: True)
        with threads.setup_threads():
            assert blas_counts() == [2] * len(blas_counts())
        assert blas_counts() == [2] * len(blas_counts())
