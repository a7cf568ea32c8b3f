"""Each large model's time per evaluation next to its floor.

``python -m benchmarks.floors [--models ...] [--runs N]``: for each model, the blocked engine's
evaluation at θ = its start (median of ``runs``, inside the thread policy's scope, as a fit runs
it) against the floor issue 12 sets: one dense Cholesky of the block the engine factors per θ
(order m: the second term's levels and later, X and y) plus one rank update of that size
(a dense syrk of an m x q₁ panel, q₁ the first term's columns), both timed here, now, with the
same threads, so the GFLOP/s are this machine's at this moment. ``eval / floor`` near 1 means
the evaluation costs what the two dense kernels cost; below 1, the engine's downdate is cheaper
than a dense rank update (G sparse); above, the time goes elsewhere.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.linalg import blas, lapack

import lmeformula as lmf
from lmeformula.modular import LmerDevfun
from lmeformula.pls.threads import engine_threads

from .models import MODELS, data_file

LARGE = ["insteval", "insteval_large", "dense_crossed_1e6", "crossed_1e4x1e3",
         "crossed_1e5x2e3"]


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls, in seconds."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def floor_kernels(m: int, k: int, runs: int) -> tuple[float, float]:
    """Times of one dense Cholesky of order m and one syrk of an m x k panel."""
    rng = np.random.default_rng(1)
    panel = np.asfortranarray(rng.random((m, k)))
    square = rng.random((m, m))
    spd = np.asfortranarray(square @ square.T + m * np.eye(m))

    def cholesky() -> None:
        lapack.dpotrf(spd, lower=1, clean=0, overwrite_a=0)

    def syrk() -> None:
        blas.dsyrk(1.0, panel, trans=0, lower=0)

    return median_time(cholesky, runs), median_time(syrk, runs)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floors")
    parser.add_argument("--models", nargs="*", default=LARGE)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import tempfile
    from pathlib import Path

    import pandas as pd

    tmp = Path(tempfile.mkdtemp(prefix="lmeformula-floors-"))
    print("| model | m | q₁ | Cholesky (m) | syrk (m x q₁) | floor | evaluation | eval / floor |"
          " GFLOP/s Cholesky, syrk |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in MODELS:
        if model.name not in args.models:
            continue
        data = data_file(model, tmp)
        df = pd.read_csv(data) if data.endswith(".csv") else lmf.datasets.load(data)
        dev = lmf.lmer(model.formula, df, devFunOnly=True)
        assert isinstance(dev, LmerDevfun)
        problem = dev.problem
        m = int(problem.dense_order)
        q1 = int(getattr(problem, "q1", 0))
        theta = np.asarray(dev.start, float)
        with engine_threads(problem):
            dev(theta)  # first evaluation: any lazy setup
            def evaluate(dev: Any = dev, theta: np.ndarray = theta) -> None:
                dev(theta * (1 + 1e-9 * np.random.rand()))

            evaluation = median_time(evaluate, args.runs)
            chol, syrk = floor_kernels(m, q1, args.runs) if q1 else (0.0, 0.0)
        floor = chol + syrk
        gf_chol = m**3 / 3 / chol / 1e9 if chol else float("nan")
        gf_syrk = m * m * q1 / syrk / 1e9 if syrk else float("nan")
        print(f"| {model.name} | {m:,} | {q1:,} | {chol * 1e3:.1f} ms | {syrk * 1e3:.1f} ms | "
              f"{floor * 1e3:.1f} ms | {evaluation * 1e3:.1f} ms | "
              f"{evaluation / floor if floor else float('nan'):.2f} | "
              f"{gf_chol:.0f}, {gf_syrk:.0f} |", flush=True)


if __name__ == "__main__":
    main()
