"""The cost of ``problem.reweight(w, y)`` (a GLMM's PIRLS step) against one evaluation.

``python -m benchmarks.reweight [--runs N]``: for InstEval and crossed designs, times in one
process, alternating the steps, medians: building the problem (``make_problem``), the first
re-weighting (which may turn the downdate's plan into one whose values follow G's), later
re-weightings, and one factorisation at θ = 1.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import lmeformula as lmf
from lmeformula.pls import make_problem
from lmeformula.pls.threads import engine_threads

from .models import synthetic


def dense_crossed(n: int, nsubj: int, nitem: int, seed: int = 12) -> pd.DataFrame:
    """``y ~ x + (x | subj) + (1 | item)`` data where every subject meets most items."""
    rng = np.random.default_rng(seed)
    subj = rng.integers(0, nsubj, n)
    item = rng.integers(0, nitem, n)
    x = rng.normal(size=n)
    y = (1 + 0.5 * x + rng.normal(size=nsubj)[subj] + 0.3 * rng.normal(size=nsubj)[subj] * x
         + rng.normal(size=nitem)[item] + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "subj": subj.astype(str), "item": item.astype(str)})


def designs(large: bool) -> list[tuple[str, str, Callable[[], pd.DataFrame]]]:
    out: list[tuple[str, str, Callable[[], pd.DataFrame]]] = [
        ("insteval", "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
         lambda: lmf.datasets.load("InstEval")),
        ("crossed_1e5 (200 x 100)", "y ~ x + (x | subj) + (1 | item)",
         lambda: synthetic(100_000)),
    ]
    if large:
        out.append(("dense crossed 1e6 (2,000 x 500)", "y ~ x + (x | subj) + (1 | item)",
                    lambda: dense_crossed(1_000_000, 2000, 500)))
    return out


def measure(formula: str, df: pd.DataFrame, runs: int) -> dict[str, float]:
    pf = lmf.lFormula(formula, df)
    dev = lmf.mkLmerDevfun(pf)
    problem: Any = dev.problem  # the blocked engine's own attributes, beyond PLSEngine
    zt, x, y, terms = problem.Zt, problem.X, problem.y, problem.terms
    factors = problem.factors
    theta = np.ones(len(dev.start)) * 0.5
    rng = np.random.default_rng(1)
    ws = [rng.uniform(0.1, 0.25, problem.n) for _ in range(runs + 1)]
    with engine_threads(problem):  # the fit's thread policy
        return _timed(zt, x, y, terms, factors, theta, ws)


def _timed(zt: object, x: np.ndarray, y: np.ndarray, terms: list, factors: list | None,
           theta: np.ndarray, ws: list[np.ndarray]) -> dict[str, float]:
    t0 = time.perf_counter()
    fresh = make_problem(zt, x, y, None, terms, factors)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    fresh.reweight(ws[0], y)
    first = time.perf_counter() - t0
    later, evals = [], []
    for w in ws[1:]:  # alternating: a re-weighting, then an evaluation
        t0 = time.perf_counter()
        fresh.reweight(w, y)
        later.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fresh.factor(theta)
        evals.append(time.perf_counter() - t0)
    return {"build": build, "first": first, "reweight": float(np.median(later)),
            "evaluation": float(np.median(evals))}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reweight")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--large", action="store_true",
                        help="also the dense crossed design with 10^6 rows")
    args = parser.parse_args()
    print("| design | make_problem | first reweight | reweight | evaluation | "
          "reweight / evaluation |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, formula, load in designs(args.large):
        r = measure(formula, load(), args.runs)
        print(f"| {name} | {r['build'] * 1e3:.0f} ms | {r['first'] * 1e3:.0f} ms | "
              f"{r['reweight'] * 1e3:.1f} ms | {r['evaluation'] * 1e3:.1f} ms | "
              f"{r['reweight'] / r['evaluation']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
