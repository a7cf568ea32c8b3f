"""Run the benchmarks: ``python -m benchmarks [--models ...] [--engines ...] [--quick]``.

Every model is fitted by every engine that can express it, each in its own subprocess, in one
run, so ratios are measured under the same conditions. Writes benchmarks/results/latest.md,
latest.csv and scaling.png (time against rows for the synthetic crossed series).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

from .engines import available, run_lme4, run_python_engine
from .models import MODELS, Model, data_file

RESULTS = Path(__file__).resolve().parent / "results"
ENGINES = ["lmeformula", "lmeformula-lbfgsb", "lme4", "glmm", "mixedlm", "lme-python",
           "statsmodels"]


def expressible_by_statsmodels(model: Model, data: str) -> str | None:
    """None when MixedLM can express the model, else the reason."""
    import pandas as pd

    import lmeformula as lmf
    from lmeformula.compare import StatsmodelsUnsupported, statsmodels_spec

    df = pd.read_csv(data) if data.endswith(".csv") else lmf.datasets.load(data)
    try:
        statsmodels_spec(lmf.lFormula(model.formula, df))
    except StatsmodelsUnsupported as err:
        return f"not expressible: {str(err).split(':')[0]}"
    return None


def max_rel_diff(row: dict, ref: dict | None) -> float | None:
    if ref is None or row is ref or "beta" not in row or "beta" not in ref:
        return None
    def as_list(v: object) -> list:
        return list(v) if isinstance(v, list) else [v]

    ours = as_list(row["beta"]) + as_list(row.get("sdcor", []))
    theirs = as_list(ref["beta"]) + as_list(ref.get("sdcor", []))[: len(as_list(
        row.get("sdcor", [])))]
    a, b = np.asarray(ours, float), np.asarray(theirs[: len(ours)], float)
    scale = np.maximum(np.abs(b), 1e-8)
    return float(np.max(np.abs(a - b) / scale))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--models", nargs="*", default=[m.name for m in MODELS])
    parser.add_argument("--engines", nargs="*", default=ENGINES)
    parser.add_argument("--cap", type=float, default=120.0, help="time cap per engine, s")
    parser.add_argument("--quick", action="store_true", help="one run per model")
    parser.add_argument("--out", default="latest", help="name of the result files")
    parser.add_argument("--load", action="store_true",
                        help="also time each Python engine beside two busy-looping processes")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite <out>.md from <out>.csv")
    args = parser.parse_args()
    if args.render:
        write_results(read_results(args.out), args.out)
        return
    rows: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="lmeformula-bench-"))
    for model in MODELS:
        if model.name not in args.models:
            continue
        data = data_file(model, tmp)
        runs = 1 if args.quick else model.runs
        per_model: list[dict] = []
        for engine in args.engines:
            if engine == "lme4":
                res = run_lme4(model, data, runs, args.cap)
            elif not available(engine):
                res = {"engine": engine, "model": model.name, "status": "not installed"}
            elif engine == "statsmodels" and (why := expressible_by_statsmodels(model, data)):
                res = {"engine": engine, "model": model.name, "status": why}
            else:
                res = run_python_engine(engine, model, data, runs, args.cap, load=args.load)
            res["rows"] = model.rows
            per_model.append(res)
            shown = (f"{res['fit_s'] * 1e3:10.1f} ms" if res.get("status") == "ok"
                     else f"  {res['status']}")
            print(f"{model.name:16s} {engine:12s}{shown}", flush=True)
        ref = next((r for r in per_model if r["engine"] == "lme4" and r["status"] == "ok"),
                   next(r for r in per_model if r["engine"] == "lmeformula"))
        ours = next(r for r in per_model if r["engine"] == "lmeformula")
        for r in per_model:
            if r.get("status") == "ok" and ref.get("status") == "ok":
                r["max_rel_diff"] = max_rel_diff(r, ref)
                r["reference"] = ref["engine"]
                r["time_vs_lmeformula"] = (r["fit_s"] / ours["fit_s"]
                                           if ours.get("status") == "ok" else None)
                r["criterion_diff"] = r["criterion"] - ref["criterion"]
        rows += per_model
        write_results(rows, args.out, quiet=True)  # what is done survives a later failure
    write_results(rows, args.out)
    plot_scaling(rows, args.out)


def read_results(name: str) -> list[dict]:
    """Rows of a results CSV, numbers as numbers."""
    rows = []
    with (RESULTS / f"{name}.csv").open() as fh:
        for row in csv.DictReader(fh):
            out: dict = {}
            for k, v in row.items():
                if v == "":
                    out[k] = None
                else:
                    try:
                        out[k] = float(v) if k not in ("model", "engine", "version", "status",
                                                       "reference") else v
                    except ValueError:
                        out[k] = v
            if out.get("feval") is not None:
                out["feval"] = int(out["feval"])
            rows.append(out)
    return rows


def _number(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def write_results(rows: list[dict], name: str = "latest", quiet: bool = False) -> None:
    RESULTS.mkdir(exist_ok=True)
    fields = ["model", "engine", "version", "status", "rows", "fit_s", "feval", "max_rss_mb",
              "frame_mb", "rss_before_mb", "fit_peak_mb", "fit_growth_mb", "criterion",
              "criterion_diff", "max_rel_diff", "reference", "time_vs_lmeformula",
              "fit_load_s", "fit_quiet_block_s", "load_slowdown"]
    with (RESULTS / f"{name}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Linux, "
               f"Python {platform.python_version()}")
    lines = [f"# Benchmark results ({date.today()}; {machine})", "",
             "Median wall time of a full fit (formula and data in, fitted model out), each "
             "engine in its own process. `time / lmeformula` > 1 means lmeformula is faster. "
             "`max rel. diff` compares fixed effects (and, for lme4, standard deviations and "
             "correlations) with the reference engine (lme4 when R is installed). statsmodels "
             "is timed on `MixedLM.fit()` of the design lmeformula's bridge builds. "
             "`lmeformula-lbfgsb` is lmeformula with `control={\"optimizer\": \"L-BFGS-B\"}`: "
             "the analytic gradient with L-BFGS-B instead of lme4's BOBYQA (each of its "
             "evaluations also computes the gradient).", "",
             "`under load` is the same fit beside two busy-looping processes (`--load`, "
             "each in a session of its own), with its slowdown: in the engine's process, "
             "after the timed runs, quiet and loaded half-second blocks of back-to-back fits "
             "alternate (the busy loops warmed up, then stopped and continued), wall time "
             "per fit (the mean over a block: a fit shorter than a time slice pays for the "
             "load in the few fits that are preempted), medians, loaded against quiet "
             "blocks; the slowdown is the median of loaded / quiet blocks of the same round "
             "(`python -m benchmarks.load` compares engines in one process). The machine "
             "was shared with other jobs while measuring: compare engines within a "
             "row group, not across runs.", "",
             "Memory: `peak RSS` is the whole process's (interpreter, imports, data loading); "
             "`fit peak` is the high-water mark during the fit alone (VmHWM, reset just "
             "before it) and `fit growth` that peak minus the RSS just before the fit, each "
             "also as a multiple of the input frame (`df.memory_usage(deep=True)`, "
             "`frame`).", "",
             "| model | engine | fit | evaluations | per evaluation | peak RSS (MB) | "
             "frame (MB) | fit peak (MB, x frame) | fit growth (MB, x frame) | "
             "time / lmeformula | under load | REML criterion − reference | max rel. diff |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        engine = f"{r['engine']} {r.get('version') or ''}".strip()
        if r.get("status") != "ok":
            lines.append(f"| {r['model']} | {engine} | {r['status']} | | | | | | | | | | |")
            continue
        fit = _seconds(r["fit_s"])
        diff = r.get("max_rel_diff")
        per_eval = _seconds(r["fit_s"] / r["feval"]) if r.get("feval") else ""
        # results before the paired blocks have no load_slowdown: loaded / quiet run
        slowdown = r.get("load_slowdown") or (r["fit_load_s"] / r["fit_s"]
                                              if r.get("fit_load_s") else None)
        quiet_block = (f" against {_seconds(r['fit_quiet_block_s'])}"
                       if r.get("fit_quiet_block_s") else "")
        load = (f"{_seconds(r['fit_load_s'])}{quiet_block} ({slowdown:.2f}x)"
                if slowdown else "")
        lines.append(
            f"| {r['model']} | {engine} | {fit} | {r.get('feval') or ''} | {per_eval} | "
            f"{r['max_rss_mb']:.0f} | {_number(r.get('frame_mb'), '.0f')} | "
            f"{_of_frame(r.get('fit_peak_mb'), r.get('frame_mb'))} | "
            f"{_of_frame(r.get('fit_growth_mb'), r.get('frame_mb'))} | "
            f"{_number(r.get('time_vs_lmeformula'), '.2f')} | "
            f"{load} | {_number(r.get('criterion_diff'), '.2e')} | "
            f"{'' if diff is None else f'{diff:.1e}'} |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    if not quiet:
        print((RESULTS / f"{name}.md").read_text())


def _of_frame(mb: float | None, frame_mb: float | None) -> str:
    """Megabytes and their multiple of the input frame: ``"310 (8.9x)"``."""
    if mb is None:
        return ""
    return f"{mb:.0f} ({mb / frame_mb:.1f}x)" if frame_mb else f"{mb:.0f}"


def _seconds(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def plot_scaling(rows: list[dict], name: str = "latest") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no figure")
        return
    series: dict[str, list[tuple[int, float]]] = {}
    scaling = {m.name for m in MODELS if m.data.startswith("synthetic:")}
    for r in rows:
        if r.get("rows") and r.get("status") == "ok" and r["model"] in scaling:
            series.setdefault(r["engine"], []).append((r["rows"], r["fit_s"]))
    if not series:
        return
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for engine, pts in sorted(series.items()):
        pts.sort()
        ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker="o", label=engine)
    ax.set_xlabel("rows")
    ax.set_ylabel("fit time (s)")
    ax.set_title("y ~ x + (x | subj) + (1 | item): 200 subjects, 100 items")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / ("scaling.png" if name == "latest" else f"{name}_scaling.png"),
                dpi=120)


if __name__ == "__main__":
    main()
