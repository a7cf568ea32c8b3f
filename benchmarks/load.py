"""Fits under load, paired: ``python -m benchmarks.load [--models ...] [--engines ...]``.

How much a fit slows beside two busy-looping processes on this machine's cores, measured so
that engines and conditions are compared under the same background (the machine is shared):

* one fresh process per model fits every engine in it, in turn;
* each busy loop runs in a session of its own, as two other programs would: Linux's
  scheduler (with autogroups, as here and on most desktop distributions) shares the cores
  between sessions first, so a single-threaded fit beside them gets about 2/3 of a core
  (``--same-session`` puts them in the fit's session, as worker processes of one program
  are: the fit then gets about a third of what the session gets);
* the two busy loops are started once, run for half a second (their interpreter's start-up
  is over before anything is timed) and are then stopped and continued (SIGSTOP/SIGCONT):
  quiet and loaded blocks alternate, in the order quiet-load then load-quiet, ``--rounds``
  times, and the engines take turns inside each block;
* each engine fits back to back for ``--block`` seconds in a block (at least twice), and the
  block's time per fit is its wall time over its fits: a mean, not a median, because a fit
  shorter than the scheduler's time slice (glmm's Pastes, 1 ms) mostly runs uninterrupted and
  pays for the load in the few fits that are preempted, which a median would drop;
* the slowdown is the median over rounds of loaded block / quiet block of the same round;
  the CPU time per fit is reported too (a single-threaded fit's wall time grows with the
  load, its CPU time only if it wastes work: spinning BLAS threads, cache misses);
* the 1-minute load average and the kernel's count of runnable threads (``/proc/loadavg``)
  are recorded before every block: the background the numbers were taken against.

Writes ``benchmarks/results/<out>.md`` and ``<out>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from .engines import BUSY_LOOP
from .models import MODELS, data_file

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = ["pastes", "verbagg", "insteval", "crossed_1e3"]
DEFAULT_ENGINES = ["lmeformula", "lmeformula-1thread", "glmm"]


def _runnable() -> int:
    with open("/proc/loadavg") as fh:
        return int(fh.read().split()[3].split("/")[0])


def _free_cores() -> int | None:
    """What lmeformula's thread policy reads at the start of a fit (None before it did)."""
    try:
        from lmeformula.pls.threads import THREAD_POLICY, free_cores
    except ImportError:
        return None
    return free_cores(THREAD_POLICY.samples, THREAD_POLICY.sample_interval)


def _fitters(name: str, data: str, engines: list[str]) -> dict[str, Callable[[], Any]]:
    """A no-argument fit per engine, the data converted beforehand (not timed)."""
    import pandas as pd

    import lmeformula as lmf

    model = next(m for m in MODELS if m.name == name)
    df = pd.read_csv(data) if data.endswith(".csv") else lmf.datasets.load(data)
    formula = model.formula
    peer_df, peer_formula = df, formula
    if formula.startswith("as.numeric"):  # peers without R expressions in formulas
        peer_df = df.assign(resp=(df["r2"] == "Y").astype(float))
        peer_formula = "resp ~" + formula.split("~", 1)[1]
    fits: dict[str, Callable[[], Any]] = {}
    for engine in engines:
        if engine.startswith("lmeformula"):
            threads = {"lmeformula": None, "lmeformula-1thread": 1,
                       "lmeformula-2threads": 2}[engine]
            control = None if threads is None else {"threads": threads}
            fits[engine] = partial(lmf.lmer, formula, df, control=control)
        elif engine == "glmm":
            import glmm  # type: ignore[import-untyped]

            strings = peer_df.copy()
            for col in strings.columns:
                if (isinstance(strings[col].dtype, pd.CategoricalDtype)
                        or strings[col].dtype == object):
                    strings[col] = strings[col].astype(str)
            fits[engine] = partial(glmm.fit, strings, peer_formula, satterthwaite=False)
        elif engine == "mixedlm":
            import mixedlm

            fits[engine] = partial(mixedlm.lmer, peer_formula, peer_df)
        else:
            raise SystemExit(f"unknown engine {engine!r}")
    return fits


def child(name: str, data: str, engines: list[str], rounds: int, block_s: float,
          same_session: bool = False) -> None:
    """Time every engine on one model, quiet and loaded blocks alternating (one JSON line)."""
    warnings.simplefilter("ignore")
    fits = _fitters(name, data, engines)
    for fit in fits.values():  # imports and first-call costs
        fit()
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP],
                             start_new_session=not same_session) for _ in range(2)]
    blocks: list[dict[str, Any]] = []
    try:
        time.sleep(0.5)  # past the busy loops' start-up
        for p in busy:
            p.send_signal(signal.SIGSTOP)
        for r in range(rounds):
            for cond in (("quiet", "load") if r % 2 == 0 else ("load", "quiet")):
                for p in busy:
                    p.send_signal(signal.SIGCONT if cond == "load" else signal.SIGSTOP)
                time.sleep(0.2)  # the scheduler sees the new state
                order = engines[r % len(engines):] + engines[:r % len(engines)]
                for engine in order:
                    loadavg, runnable = os.getloadavg()[0], _runnable()
                    free = _free_cores()
                    walls: list[float] = []
                    cpus: list[float] = []
                    start = time.perf_counter()
                    while len(walls) < 2 or time.perf_counter() - start < block_s:
                        t0, c0 = time.perf_counter(), time.process_time()
                        fits[engine]()
                        walls.append(time.perf_counter() - t0)
                        cpus.append(time.process_time() - c0)
                    blocks.append({"round": r, "cond": cond, "engine": engine,
                                   "per_fit": (time.perf_counter() - start) / len(walls),
                                   "median": statistics.median(walls),
                                   "cpu": sum(cpus) / len(cpus), "fits": len(walls),
                                   "loadavg": loadavg, "runnable": runnable,
                                   "free_cores": free})
    finally:
        for p in busy:
            p.kill()
            p.wait()
    print(json.dumps({"model": name, "blocks": blocks}))


def summarise(blocks: list[dict[str, Any]], engine: str) -> dict[str, float]:
    """Medians over rounds of one engine's blocks, and its paired slowdown."""
    mine = [b for b in blocks if b["engine"] == engine]
    by = {(b["round"], b["cond"]): b for b in mine}
    rounds = sorted({b["round"] for b in mine})
    out: dict[str, float] = {}
    for cond in ("quiet", "load"):
        these = [b for b in mine if b["cond"] == cond]
        out[f"{cond}_s"] = statistics.median(b["per_fit"] for b in these)
        out[f"{cond}_cpu_s"] = statistics.median(b["cpu"] for b in these)
        out[f"{cond}_fits"] = sum(b["fits"] for b in these)
        # the background: this block's other runnable threads (the fit's own thread and,
        # loaded, the two busy loops not counted)
        out[f"{cond}_background"] = statistics.median(
            b["runnable"] - 1 - (2 if cond == "load" else 0) for b in these)
    out["slowdown"] = statistics.median(by[(r, "load")]["per_fit"] / by[(r, "quiet")]["per_fit"]
                                        for r in rounds)
    out["cpu_ratio"] = statistics.median(by[(r, "load")]["cpu"] / by[(r, "quiet")]["cpu"]
                                         for r in rounds)
    out["round_slowdowns"] = [by[(r, "load")]["per_fit"] / by[(r, "quiet")]["per_fit"]
                              for r in rounds]  # type: ignore[assignment]
    return out


def relative_slowdown(mine: dict[str, Any], ref: dict[str, Any]) -> float:
    """Median over rounds of this engine's slowdown over the reference's in the same round
    (both fitted in the same blocks: the same background)."""
    return statistics.median(a / b for a, b in zip(mine["round_slowdowns"],
                                                    ref["round_slowdowns"], strict=True))


def _seconds(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def write(results: list[dict[str, Any]], engines: list[str], out: str, args: str,
          started: str, loadavgs: list[float]) -> Path:
    """The markdown table of a run (and its raw blocks as JSON)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{out}.json").write_text(json.dumps(
        {"results": results, "engines": engines, "args": args, "started": started,
         "loadavgs": loadavgs}, indent=1) + "\n")
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Linux, "
               f"Python {platform.python_version()}")
    lines = [f"# Fits under load, paired ({started}; {machine})", "",
             f"`python -m benchmarks.load {args}`. Each model in one fresh process, every "
             "engine in it; two busy-looping processes started once and stopped/continued so "
             "that quiet and loaded blocks alternate (quiet-load, load-quiet, ...), the "
             "engines taking turns inside each block, each fitting back to back for the "
             "block's length. `quiet` and `loaded` are the medians over rounds of a block's "
             "wall time per fit (its total over its fits); `slowdown` the median over rounds "
             "of loaded / quiet in the same round, and `slowdown / glmm's` the median over "
             "rounds of that over glmm's slowdown in the same round; `CPU` the process's "
             "CPU time per fit (threads included), quiet and loaded. `background` is the "
             "number of other runnable threads on the machine before the block (the "
             "kernel's count, less this fit's thread and the busy loops), median over "
             "blocks: the other work this machine was doing (it is shared). "
             f"1-minute load average during the run: {min(loadavgs):.1f}-{max(loadavgs):.1f}.",
             "",
             "| model | engine | fits | quiet | loaded | slowdown | slowdown / glmm's | "
             "CPU quiet | CPU loaded | / glmm quiet | / glmm loaded | "
             "background quiet, loaded |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        if "error" in res:
            lines.append(f"| {res['model']} | {res['error']} | | | | | | | | | | |")
            continue
        summary = {e: summarise(res["blocks"], e) for e in engines
                   if any(b["engine"] == e for b in res["blocks"])}
        ref = summary.get("glmm")
        for engine, s in summary.items():
            vs_q = f"{s['quiet_s'] / ref['quiet_s']:.2f}" if ref else ""
            vs_l = f"{s['load_s'] / ref['load_s']:.2f}" if ref else ""
            rel = f"{relative_slowdown(s, ref):.2f}" if ref else ""
            lines.append(
                f"| {res['model']} | {engine} | {s['quiet_fits']:.0f} + {s['load_fits']:.0f} | "
                f"{_seconds(s['quiet_s'])} | {_seconds(s['load_s'])} | "
                f"{s['slowdown']:.2f}x | {rel} | {_seconds(s['quiet_cpu_s'])} | "
                f"{_seconds(s['load_cpu_s'])} | {vs_q} | {vs_l} | "
                f"{s['quiet_background']:.0f}, {s['load_background']:.0f} |")
    path = RESULTS / f"{out}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load")
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--engines", nargs="*", default=DEFAULT_ENGINES)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--block", type=float, default=1.0, help="seconds per block")
    parser.add_argument("--cap", type=float, default=900.0, help="time cap per model, s")
    parser.add_argument("--out", default="load_latest")
    parser.add_argument("--same-session", action="store_true",
                        help="the busy loops in the fit's session (one scheduling group)")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite <out>.md from <out>.json")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.engines, args.rounds, args.block,
              args.same_session)
        return
    if args.render:
        saved = json.loads((RESULTS / f"{args.out}.json").read_text())
        print(write(saved["results"], saved["engines"], args.out, saved["args"],
                    saved["started"], saved["loadavgs"]).read_text())
        return
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    tmp = Path(tempfile.mkdtemp(prefix="lmeformula-load-"))
    results: list[dict[str, Any]] = []
    loadavgs = [os.getloadavg()[0]]
    for model in MODELS:
        if model.name not in args.models:
            continue
        data = data_file(model, tmp)
        cmd = [sys.executable, "-m", "benchmarks.load", "--child", model.name, data,
               "--rounds", str(args.rounds), "--block", str(args.block),
               "--engines", *args.engines, *(["--same-session"] if args.same_session else [])]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                 timeout=args.cap)
        except subprocess.TimeoutExpired:
            results.append({"model": model.name, "error": f"time cap {args.cap:.0f} s hit"})
            continue
        if out.returncode != 0:
            err = (out.stderr.strip().splitlines() or ["failed"])[-1]
            results.append({"model": model.name, "error": f"error: {err[:120]}"})
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(res)
        loadavgs += [b["loadavg"] for b in res["blocks"]]
        print(f"{model.name}: done", flush=True)
    argv = " ".join(sys.argv[1:])
    path = write(results, args.engines, args.out, argv, started, [*loadavgs, os.getloadavg()[0]])
    print(path.read_text())


if __name__ == "__main__":
    main()
