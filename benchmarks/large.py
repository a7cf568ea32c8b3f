"""The issue-12 large crossed design, ``y ~ x + (1 | subj) + (1 | item)`` with 10⁵ subjects x
3·10⁴ items and 10⁶ rows (:func:`benchmarks.models.crossed`), outside the default benchmark
list: one fit takes about an hour on the 2-core benchmark machine.

Usage::

    python -m benchmarks.large --eval [--size N,NSUBJ,NITEM] [--compact]  # setup + one evaluation
    python -m benchmarks.large --fit [--size ...]              # the whole lmer fit
    python -m benchmarks.large --data DIR                      # the CSVs tools/R reads

``--eval`` times the deviance function's construction (lFormula + mkLmerDevfun) and one
evaluation at lme4's start θ, split into its steps (block 1, the rank update, the assembly of
block 2, its ``dpotrf``, the rest), then the criterion at the θ of
``tools/R/bench_large_crossed.R`` (for the comparison with lme4's devfun), then at the last
of them the analytic gradient, condVar's inverse blocks and getME("L"); ``--fit`` runs
``lmer`` (lme4's optimizer path) and records wall and CPU time, evaluations and the optimum.
Each prints JSON lines with the process's peak resident memory so far (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.models import Model, crossed

FORMULA = "y ~ x + (1 | subj) + (1 | item)"
FULL = (1_000_000, 100_000, 30_000)
SCALED = [(100_000, 10_000, 3_000), (200_000, 20_000, 6_000), (300_000, 30_000, 9_000)]
MODEL = Model("crossed_1e5x3e4", "crossed:1000000:100000:30000", FORMULA, runs=1)
THETAS = [(0.5, 0.3), (1.0, 1.0), (0.2, 1.5), (1.3, 0.05)]


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _emit(**row: Any) -> None:
    row["peak_rss_gb"] = round(_peak_gb(), 3)
    print(json.dumps(row), flush=True)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def evaluate(size: tuple[int, int, int]) -> None:
    """Setup and one evaluation, step by step, then the criterion at fixed θ."""
    from lmeformula import lFormula, mkLmerDevfun
    from lmeformula.pls.threads import engine_threads

    df = crossed(*size)
    t0 = time.perf_counter()
    pf = lFormula(FORMULA, df)
    t1 = time.perf_counter()
    devfun = mkLmerDevfun(pf)
    t2 = time.perf_counter()
    problem: Any = devfun.problem
    _emit(step="setup", size=size, lformula_s=t1 - t0, devfun_s=t2 - t1,
          engine=type(problem).__name__, m=int(problem.m),
          downdate=type(problem.b21).__name__)
    theta = np.asarray(devfun.start, dtype=float)
    with engine_threads(problem) as _:
        # the steps of one factorisation (LargeBlockPLSProblem.factor), timed one by one
        from lmeformula.pls.large import LargeBlockPLSProblem

        if isinstance(problem, LargeBlockPLSProblem):
            marks = [(time.perf_counter(), _cpu())]
            _, t1_ = problem.b11.factor(problem.terms[0].lower_factor(theta))
            marks.append((time.perf_counter(), _cpu()))
            down = problem.b21.rank_update(t1_)
            marks.append((time.perf_counter(), _cpu()))
            s = problem._compact.assemble(theta, down)
            marks.append((time.perf_counter(), _cpu()))
            l22, info = problem._compact.factor(s)
            marks.append((time.perf_counter(), _cpu()))
            del s, l22
            m = problem.m
            names = ["block1", "rank_update", "assemble", "potrf"]
            pairs = list(zip(names, marks, marks[1:], strict=False))
            steps = {f"{k}_s": b[0] - a[0] for k, a, b in pairs}
            steps |= {f"{k}_cpu_s": b[1] - a[1] for k, a, b in pairs}
            potrf_cpu = steps["potrf_cpu_s"]
            _emit(step="eval_steps", info=info, flops=m**3 / 3,
                  potrf_gflops_wall=m**3 / 3 / steps["potrf_s"] / 1e9,
                  potrf_gflops_per_cpu_s=m**3 / 3 / potrf_cpu / 1e9 if potrf_cpu else None,
                  **steps)
        c0, e0 = _cpu(), time.perf_counter()
        value = devfun(theta)
        e1 = time.perf_counter()
        _emit(step="eval", theta=theta.tolist(), criterion=value, s=e1 - e0,
              cpu_s=_cpu() - c0)
        for th in THETAS:
            c0, e0 = _cpu(), time.perf_counter()
            value = devfun(np.array(th))  # the block's array reused from here on
            _emit(step="criterion", theta=list(th), criterion=value,
                  s=time.perf_counter() - e0, cpu_s=_cpu() - c0)
        # what a user does after the fit, at the last θ: the analytic gradient (L-BFGS-B's
        # per-evaluation extra), condVar's inverse blocks, getME("L")
        f = devfun.last
        for name, step in [("gradient", lambda: problem.gradient(f, devfun.REML)),
                           ("inverse_diagonal_blocks",
                            lambda: problem.inverse_diagonal_blocks(f)),
                           ("sparse_L", lambda: problem.sparse_L(f))]:
            c0, e0 = _cpu(), time.perf_counter()
            result = step()
            _emit(step=name, s=time.perf_counter() - e0, cpu_s=_cpu() - c0,
                  nnz=int(result.nnz) if name == "sparse_L" else None)
            del result


def fit(size: tuple[int, int, int]) -> None:
    """lmer's whole fit (lme4's optimizer path)."""
    from lmeformula import lmer

    df = crossed(*size)
    c0, t0 = _cpu(), time.perf_counter()
    m = lmer(FORMULA, df, progress=True)  # one line per evaluation on stderr
    wall = time.perf_counter() - t0
    dev = m.devfun
    _emit(step="fit", size=size, wall_s=wall, cpu_s=_cpu() - c0,
          evaluations=int(m.optinfo.feval), devfun_calls=int(dev.evaluations),
          criterion=float(dev.problem.criterion(m._factor, dev.REML)),
          theta=np.asarray(m.optinfo.par).tolist(), beta=np.asarray(m._beta).tolist(),
          optimizer=str(getattr(m.optinfo, "optimizer", "")))


def write_data(directory: Path) -> None:
    """The CSVs of the scaled and full designs, for tools/R/bench_large_crossed.R."""
    directory.mkdir(parents=True, exist_ok=True)
    for n, ns, ni in [*SCALED, FULL]:
        path = directory / f"crossed_{n}_{ns}_{ni}.csv"
        if not path.exists():
            crossed(n, ns, ni).to_csv(path, index=False)
        print(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval", action="store_true", help="setup and one evaluation")
    ap.add_argument("--fit", action="store_true", help="the whole lmer fit")
    ap.add_argument("--data", type=Path, help="write the designs' CSVs here")
    ap.add_argument("--size", default=",".join(map(str, FULL)),
                    help="rows,subjects,items (default the full design)")
    ap.add_argument("--compact", action="store_true",
                    help="the large-block engine below its order (3·10³ items: the blocked "
                         "engine by default)")
    args = ap.parse_args()
    if args.compact:
        import dataclasses

        import lmeformula.pls.policy as pls_policy

        pls_policy.POLICY = dataclasses.replace(pls_policy.POLICY, compact_m22_order=1)
    n, ns, ni = (int(v) for v in args.size.split(","))
    if args.data is not None:
        write_data(args.data)
    if args.eval:
        evaluate((n, ns, ni))
    if args.fit:
        fit((n, ns, ni))


if __name__ == "__main__":
    main()
