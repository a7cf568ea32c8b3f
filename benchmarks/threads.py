"""Where BLAS threads pay: the engine's dense Cholesky (and rank update) with 1 and with all
threads, by order, on this machine as it is and under load.

``python -m benchmarks.threads [--load] [--runs N] [--orders ...]``: times LAPACK ``dpotrf``
(scipy's OpenBLAS, as the engine calls it) and a G Gᵀ product (numpy's OpenBLAS) of each
order, alternating the thread counts in one process, medians. ``--load`` starts two
busy-looping processes beside the measurement (and ends them afterwards).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import scipy.linalg as la
from threadpoolctl import threadpool_limits

from .engines import BUSY_LOOP


def spd(n: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=(n, n // 2 + 1))
    return np.asfortranarray(a @ a.T + n * np.eye(n))


def time_once(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.threads")
    parser.add_argument("--orders", nargs="*", type=int,
                        default=[150, 300, 600, 1200, 2400, 4000])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--load", action="store_true", help="two busy loops beside")
    args = parser.parse_args()
    busy: list[subprocess.Popen] = []
    if args.load:
        # in sessions of their own (other programs: the scheduler's autogroups share the cores
        # between sessions first), past their start-up before anything is timed
        busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP],
                                 start_new_session=True) for _ in range(2)]
        time.sleep(0.5)
    try:
        cores = os.cpu_count() or 1
        rng = np.random.default_rng(0)
        print(f"| order | potrf 1 thread | potrf {cores} threads | GGᵀ (order x 4 order) "
              f"1 thread | GGᵀ {cores} threads |")
        print("|---:|---:|---:|---:|---:|")
        for n in args.orders:
            s = spd(n, rng)
            g = rng.normal(size=(n, 4 * n if n <= 1200 else 2 * n))
            res: dict[tuple[str, int], list[float]] = {}
            def potrf(s: np.ndarray = s) -> None:
                la.lapack.dpotrf(s.copy(order="F"), lower=1, clean=0, overwrite_a=1)

            def ggt(g: np.ndarray = g) -> None:
                g @ g.T

            for _ in range(args.runs):
                for k in (1, cores):
                    with threadpool_limits(limits=k, user_api="blas"):
                        res.setdefault(("potrf", k), []).append(time_once(potrf))
                        res.setdefault(("ggt", k), []).append(time_once(ggt))
            med = {key: float(np.median(v)) * 1e3 for key, v in res.items()}
            print(f"| {n} | {med[('potrf', 1)]:.2f} ms | {med[('potrf', cores)]:.2f} ms | "
                  f"{med[('ggt', 1)]:.2f} ms | {med[('ggt', cores)]:.2f} ms |", flush=True)
    finally:
        for p in busy:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
