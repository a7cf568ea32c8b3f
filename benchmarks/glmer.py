"""glmer against lme4 (through Rscript), glmm and mixedlm on GLMMs.

``python -m benchmarks.glmer [--runs N] [--no-r] [--large]``: cbpp, grouseticks, VerbAgg and
(with ``--large``) a 10^5-row crossed binomial and VerbAgg with a random slope; fit times
(the minimum of N runs, every engine in the same run, so that the ratios are comparable on a
shared machine), the
log-likelihood each engine reaches (lme4's ``feval``: its second stage's; lmeformula's
``evaluations``: all of its deviance evaluations, both stages and the derivatives), and
lmeformula's cost per PIRLS iteration (fit time / PIRLS steps, and one u-only step, the
second stage's, timed alone: re-weight, factor and solve). Two lmeformula engines: the
default (lme4's path) and ``lmeformula-lbfgsb``, ``glmerControl(optimizer="L-BFGS-B")`` (the
Laplace deviance minimised with its analytic gradient). Writes benchmarks/results/glmer.md
with the date and the load average.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import lmeformula as lmf

RESULTS = Path(__file__).parent / "results"


def crossed_binomial(n: int, seed: int = 2026) -> pd.DataFrame:
    """y ~ x + (1 | subj) + (1 | item) with 1,000 subjects and 200 items, binary y."""
    rng = np.random.default_rng(seed)
    subj = rng.integers(0, 1000, n)
    item = rng.integers(0, 200, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.6 * x + rng.normal(scale=0.8, size=1000)[subj] + \
        rng.normal(scale=0.5, size=200)[item]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "subj": [f"s{i}" for i in subj],
                         "item": [f"i{i}" for i in item]})


def models(large: bool) -> list[tuple[str, str, str, Any]]:
    out: list[tuple[str, str, str, Any]] = [
        ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial",
         "cbpp"),
        ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
         "poisson", "grouseticks"),
        ("VerbAgg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial",
         "VerbAgg"),
    ]
    if large:
        out.append(("crossed binomial 1e5", "y ~ x + (1 | subj) + (1 | item)", "binomial",
                    crossed_binomial(100_000)))
        # a vector term: PIRLS steps through the blocked engine (a frame, not a name, so it
        # gets --large-runs rounds)
        out.append(("VerbAgg (1 + Anger | item)",
                    "r2 ~ Anger + Gender + btype + situ + (1 + Anger | item) + (1 | id)",
                    "binomial", lmf.datasets.load("VerbAgg")))
    return out


def _data(spec: Any) -> pd.DataFrame:
    return lmf.datasets.load(spec) if isinstance(spec, str) else spec


def time_lmeformula(formula: str, family: str, data: pd.DataFrame, runs: int,
                    optimizer: str | None = None) -> dict[str, Any]:
    times, cpu, m = [], [], None
    control = None if optimizer is None else {"optimizer": optimizer}
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = lmf.glmer(formula, data, family, control=control)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert m is not None
    dev = m.getME("devfun")
    # one PIRLS step alone (the second stage's, β fixed): the scalar kernel's step where the
    # model has one, else the engine's re-weight, factor and solve; BLAS on one thread, as
    # in the fit
    from lmeformula.pls.threads import blas_threads

    w, z = dev.resp.working()
    theta = m.theta.to_numpy()
    kernel = getattr(dev, "_kernels", {}).get(True)
    problem = dev.uonly

    def one_step() -> None:
        if kernel is not None:
            kernel.step(theta, w, z)
        else:
            problem.reweight(w, z)
            problem.solve(problem.factor(theta))

    with blas_threads(1):
        reps = 20
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                one_step()
            best = min(best, (time.perf_counter() - t0) / reps)
    step = best
    fit_s = float(np.min(times))
    engine = "lmeformula" if optimizer is None else "lmeformula-lbfgsb"
    return {"engine": engine, "fit_s": fit_s, "cpu_s": float(np.min(cpu)),
            "logLik": m.logLik().value,
            "evaluations": dev.evaluations, "pirls_steps": dev.pirls_iterations,
            "per_step_ms": 1e3 * fit_s / max(dev.pirls_iterations, 1),
            "step_alone_ms": 1e3 * step}


def _timed_fits(engine: str, fit_once: Callable[[], Any], runs: int) -> dict[str, Any]:
    """A peer's fastest of ``runs`` fits (wall and CPU time) and its last fit under "fit", or
    the error it raised (reported in the table, not stopping the benchmark)."""
    times, cpu, fit = [], [], None
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fit = fit_once()
            except Exception as e:  # report, do not stop the benchmark
                return {"engine": engine, "error": f"{type(e).__name__}: {e}"[:80]}
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"engine": engine, "fit_s": float(np.min(times)), "cpu_s": float(np.min(cpu)),
            "fit": fit}


def time_glmm(formula: str, family: str, data: pd.DataFrame, runs: int) -> dict[str, Any]:
    try:
        import glmm  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        return {"engine": "glmm", "error": "not installed"}
    if formula.startswith("cbind("):
        data = data.assign(prop=data["incidence"] / data["size"])
        formula = "prop ~ " + formula.split("~", 1)[1]
        kw: dict[str, Any] = {"weights": data["size"].to_numpy(float)}
    else:
        kw = {}
    cols = {c: (data[c].to_numpy(float) if pd.api.types.is_numeric_dtype(data[c].dtype)
                and not pd.api.types.is_bool_dtype(data[c].dtype)
                else data[c].astype(str).to_numpy()) for c in data.columns}
    if family == "binomial" and not np.issubdtype(np.asarray(cols.get("r2", [0])).dtype,
                                                  np.number):
        cols["r2"] = (data["r2"].astype(str) == "Y").to_numpy(float)
    timed = _timed_fits("glmm", lambda: glmm.fit(cols, formula, family=family, **kw), runs)
    fit = timed.pop("fit", None)
    if fit is None:
        return timed
    ll = getattr(fit, "loglik", None) or getattr(fit, "log_likelihood", None)
    if ll is None:
        ll = -0.5 * float(fit.objective) if hasattr(fit, "objective") else float("nan")
    return {**timed, "logLik": float(ll)}


def time_mixedlm(formula: str, family: str, data: pd.DataFrame, runs: int) -> dict[str, Any]:
    """mixedlm 1.3's glmer (lme4's algorithm in Python and Rust): cbind as proportions with the
    trials as weights, a factor response as 0/1 (it takes neither)."""
    try:
        import mixedlm
    except ImportError:
        return {"engine": "mixedlm", "error": "not installed"}
    kw: dict[str, Any] = {}
    if formula.startswith("cbind("):
        data = data.assign(prop=data["incidence"] / data["size"])
        formula = "prop ~ " + formula.split("~", 1)[1]
        kw["weights"] = data["size"].to_numpy(float)
    response = formula.split("~", 1)[0].strip()
    if not pd.api.types.is_numeric_dtype(data[response].dtype):
        levels = pd.Categorical(data[response]).categories
        data = data.assign(**{response: (data[response] != levels[0]).to_numpy(float)})
    fam = {"binomial": mixedlm.families.Binomial, "poisson": mixedlm.families.Poisson}[family]()
    timed = _timed_fits("mixedlm", lambda: mixedlm.glmer(formula, data, family=fam, **kw), runs)
    fit = timed.pop("fit", None)
    if fit is None:
        return timed
    ll = fit.logLik()
    return {**timed, "logLik": float(getattr(ll, "value", ll))}


def time_lme4(name: str, formula: str, family: str, data: Any, runs: int,
              tmp: Path) -> dict[str, Any]:
    if isinstance(data, str):
        source = data
    else:
        source = str(tmp / "data.csv")
        data.to_csv(source, index=False)
    script = Path(__file__).parent / "glmer_bench.R"
    out = subprocess.run(["Rscript", str(script), name, source, formula, family, str(runs)],
                         capture_output=True, text=True, env={"LC_ALL": "C", "PATH":
                                                              "/usr/bin:/bin"}, check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if not line:
        return {"engine": "lme4", "error": out.stderr.strip()[-200:]}
    result: dict[str, Any] = json.loads(line[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--large-runs", type=int, default=1,
                        help="runs for the 10^5-row model (lme4 takes minutes on it)")
    parser.add_argument("--no-r", action="store_true")
    parser.add_argument("--large", action="store_true")
    args = parser.parse_args()
    rows = []
    loads = [os.getloadavg()[0]]
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory() as tmp:
        for name, formula, family, spec in models(args.large):
            data = _data(spec)
            runs = args.runs if isinstance(spec, str) else args.large_runs
            # the engines take turns, one fit each per round, so that a change of the
            # machine's load during the run touches them alike; each keeps its fastest fit
            best: dict[str, dict[str, Any]] = {}
            for _ in range(runs):
                round_ = [time_lmeformula(formula, family, data, 1),
                          time_lmeformula(formula, family, data, 1, "L-BFGS-B"),
                          time_glmm(formula, family, data, 1),
                          time_mixedlm(formula, family, data, 1)]
                if not args.no_r:
                    round_.append(time_lme4(name, formula, family, spec, 1, Path(tmp)))
                for r in round_:
                    old = best.get(r["engine"])
                    if old is None or r.get("fit_s", np.inf) < old.get("fit_s", np.inf):
                        best[r["engine"]] = r
            results = list(best.values())
            by_engine = best
            for ours in (best["lmeformula"], best["lmeformula-lbfgsb"]):
                for other in ("lme4", "glmm", "mixedlm"):
                    for key, tag in (("fit_s", ""), ("cpu_s", "_cpu")):
                        ref = by_engine.get(other, {}).get(key)
                        if ref:
                            ours[f"vs_{other}{tag}"] = ours[key] / ref
            for r in results:
                rows.append({"model": name, **r})
                print(json.dumps({"model": name, **r}), flush=True)
            loads.append(os.getloadavg()[0])
    header = (f"Run {started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores; 1-minute load "
              f"average {min(loads):.1f}-{max(loads):.1f} during the run (the machine is "
              "shared: compare the ratios, measured in the same run). fit_s: the fastest of "
              f"{args.runs} rounds ({args.large_runs} for the 10^5-row model) in which the "
              "engines fit in turn; cpu_s: the process's CPU time for that fit (less "
              "sensitive to the other jobs than the elapsed fit_s); vs_*: lmeformula's time "
              "over the other engine's. per_step_ms: lmeformula's fit time over its PIRLS "
              "steps; step_alone_ms: one u-only PIRLS step timed alone.")
    write_table(rows, header)


def write_table(rows: list[dict[str, Any]], header: str) -> None:
    """benchmarks/results/glmer.md from the rows (one per engine and model)."""
    table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    cols = [c for c in ("model", "engine", "fit_s", "cpu_s", "vs_lme4", "vs_glmm",
                        "vs_mixedlm", "vs_lme4_cpu", "vs_glmm_cpu", "vs_mixedlm_cpu", "logLik",
                        "feval", "evaluations",
                        "pirls_steps", "per_step_ms", "step_alone_ms", "error") if c in table]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table[cols].iterrows():
        cells = ["" if pd.isna(v) else (f"{v:.12g}" if k == "logLik" else f"{v:.4g}"
                                        if isinstance(v, float) else str(v).replace("|", "\\|"))
                 for k, v in r.items()]
        lines.append("| " + " | ".join(cells) + " |")
    (RESULTS / "glmer.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
