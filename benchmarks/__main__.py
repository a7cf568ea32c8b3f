"""Run the benchmarks: ``python -m benchmarks [--models sleepstudy insteval] [--runs N]``.

Writes benchmarks/results/latest.md and latest.csv: median times, peak memory, evaluations,
criterion, and the ratio of each engine's time to lmeformula's, measured in the same run.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
from datetime import date
from pathlib import Path

from .engines import run_lme4, run_lmeformula
from .models import MODELS

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--models", nargs="*", default=[m.name for m in MODELS])
    parser.add_argument("--runs", type=int, default=None, help="timed runs per model")
    parser.add_argument("--no-lme4", action="store_true", help="skip lme4 even if R exists")
    args = parser.parse_args()
    rows = []
    for model in MODELS:
        if model.name not in args.models:
            continue
        runs = args.runs or model.runs
        ours = run_lmeformula(model, runs)
        rows.append(ours)
        print(f"{model.name:12s} lmeformula {ours['fit_s'] * 1e3:9.1f} ms", flush=True)
        if not args.no_lme4:
            theirs = run_lme4(model, max(1, min(runs, 5)))
            if theirs is None:
                print("  lme4: Rscript not found, skipped")
                continue
            theirs["ratio_to_lmeformula"] = theirs["fit_s"] / ours["fit_s"]
            theirs["criterion_diff"] = ours["criterion"] - theirs["criterion"]
            rows.append(theirs)
            print(f"{'':12s} lme4       {theirs['fit_s'] * 1e3:9.1f} ms "
                  f"(lmeformula is {theirs['ratio_to_lmeformula']:.1f}x faster)", flush=True)
    write_results(rows)


def write_results(rows: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    fields = ["model", "engine", "version", "fit_s", "lformula_s", "per_eval_s", "feval",
              "devfun_calls", "criterion", "criterion_diff", "ratio_to_lmeformula",
              "max_rss_mb"]
    with (RESULTS / "latest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    cores = os.cpu_count()
    machine = f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"
    lines = [f"# Benchmark results ({date.today()}; {machine})", "",
             "Median wall time of a full fit (formula and data in, fitted model out).", "",
             "| model | engine | fit (ms) | lFormula (ms) | per θ (ms) | evaluations | "
             "peak RSS (MB) | lme4 / lmeformula | criterion diff |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        per_eval = f"{r['per_eval_s'] * 1e3:.2f}" if "per_eval_s" in r else ""
        ratio = f"{r['ratio_to_lmeformula']:.1f}" if "ratio_to_lmeformula" in r else ""
        diff = f"{r['criterion_diff']:.1e}" if "criterion_diff" in r else ""
        lines.append(f"| {r['model']} | {r['engine']} {r['version']} | {r['fit_s'] * 1e3:.1f} | "
                     f"{r['lformula_s'] * 1e3:.1f} | {per_eval} | {r['feval']} | "
                     f"{r['max_rss_mb']:.0f} | {ratio} | {diff} |")
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")
    print((RESULTS / "latest.md").read_text())


if __name__ == "__main__":
    main()
