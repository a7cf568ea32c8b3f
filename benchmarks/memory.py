"""Where a fit's memory goes: ``python -m benchmarks.memory MODEL [--top N]``.

Fits one benchmark model with lmeformula under :mod:`tracemalloc` (numpy's arrays, and so
scipy's sparse matrices, are traced) and reports, for each stage of the pipeline (the model
frame, the random-effects structures, X, the engine's cross-products, the downdate's plan,
the optimizer, the fitted model), the traced memory on entry, the peak while it ran and what
it left allocated, in MB; then the input frame's size and the fit's high-water mark (VmHWM,
reset before the fit) without tracing. ``--top N`` also lists, at the end of each stage,
the N largest allocation sites still alive.

The stages are found by wrapping the pipeline's functions in this process only (nothing in
the package is changed). Tracing slows the fit several-fold: use it to find the peak, and
``python -m benchmarks`` to measure it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pandas as pd

from .models import MODELS, data_file
from .rss import reset_peak, status_mb

MB = 2**20


class StageTracer:
    """Traced memory per wrapped function call: at entry, peak during, left at exit."""

    def __init__(self, top: int = 0) -> None:
        self.top = top
        self.rows: list[tuple[int, str, float, float, float, list[str]]] = []
        self._stack: list[list[Any]] = []
        self._slots: list[tuple[int, str, float, float, float, list[str]] | None] = []
        self._between = 0.0  # the peak outside every stage (read when the next one opens)

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        """Replace ``owner.attr`` by a wrapper that records the call as stage ``label``."""
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._enter(label)
            try:
                return fn(*args, **kwargs)
            finally:
                self._exit()

        setattr(owner, attr, wrapper)

    def _now(self) -> tuple[float, float]:
        """Memory now and the peak since the last reset, in MB (traced by tracemalloc)."""
        current, peak = tracemalloc.get_traced_memory()
        return current / MB, peak / MB

    def _reset(self) -> None:
        tracemalloc.reset_peak()

    def _sites(self) -> list[str]:
        if not self.top:
            return []
        stats = tracemalloc.take_snapshot().statistics("lineno")[: self.top]
        return [f"{s.size / MB:8.1f} MB  {s.traceback[0].filename.split('site-packages/')[-1]}"
                f":{s.traceback[0].lineno}" for s in stats]

    def _enter(self, label: str) -> None:
        current, peak = self._now()
        if self._stack:  # the parent's peak so far, before the counter is reset
            self._stack[-1][2] = max(self._stack[-1][2], peak)
        else:  # the glue between top-level stages
            self._between = max(self._between, peak)
        self._reset()
        self._stack.append([label, current, current, len(self._slots)])
        self._slots.append(None)

    def _exit(self) -> None:
        current, peak = self._now()
        label, entry, stage_peak, slot = self._stack.pop()
        stage_peak = max(stage_peak, peak)
        self._slots[slot] = (len(self._stack), label, entry, stage_peak, current, self._sites())
        if self._stack:
            self._stack[-1][2] = max(self._stack[-1][2], stage_peak)
        self._reset()

    def highest(self) -> float:
        """The highest peak recorded: of any stage, or between top-level stages."""
        return max([self._between, *(row[3] for row in self._slots if row is not None)])

    def report(self) -> str:
        lines = [f"{'stage':44s} {'entry':>8s} {'peak':>8s} {'+peak':>8s} {'exit':>8s}"]
        for row in self._slots:
            if row is None:
                continue
            depth, label, entry, peak, exit_ = row[:5]
            lines.append(f"{'  ' * depth + label:44s} {entry:8.1f} {peak:8.1f} "
                         f"{peak - entry:8.1f} {exit_:8.1f}")
            lines += [f"{'  ' * depth}    {site}" for site in row[5]]
        return "\n".join(lines)


class RssTracer(StageTracer):
    """The resident set size per stage instead of traced memory: RSS at entry and exit and
    the high-water mark while the stage ran (VmHWM, reset at each stage's entry and exit; a
    parent's peak is the highest of its own stretches and its children's), in MB above the
    RSS before the fit. What tracemalloc does not see shows here (glibc's kept blocks, pages
    of a large ``np.zeros`` or ``np.empty`` never written, BLAS buffers, C++ temporaries)."""

    def __init__(self, base: float) -> None:
        super().__init__(0)
        self.base = base

    def _now(self) -> tuple[float, float]:
        rss, hwm = status_mb("VmRSS"), status_mb("VmHWM")
        assert rss is not None and hwm is not None
        return rss - self.base, hwm - self.base

    def _reset(self) -> None:
        reset_peak(collect=False)


def trace_stages(tracer: StageTracer) -> None:
    """Wrap the pipeline's stages (in this process only)."""
    from importlib import import_module

    # by import_module: the package's ``lmer`` (the function) hides its module's name
    lmer = import_module("lmeformula.lmer")
    mermod = import_module("lmeformula.mermod")
    modular = import_module("lmeformula.modular")
    blocks = import_module("lmeformula.pls.blocks")
    downdate = import_module("lmeformula.pls.downdate")
    engine = import_module("lmeformula.pls.engine")
    factory = import_module("lmeformula.pls.factory")
    large = import_module("lmeformula.pls.large")
    reterms = import_module("lmeformula.reterms")

    stages: list[tuple[Any, str, str]] = [
        (lmer, "lformula_of", "lFormula"),
        (modular, "call_frame", "model frame"),
        (modular, "check_response", "response y"),
        (modular, "mk_re_trms", "reTrms (factors, X_i, Zt)"),
        (reterms, "_stacked_zt", "Zt"),
        (modular, "check_zrank", "check_zrank"),
        (modular, "model_matrix", "model matrix X"),
        (modular, "rank_drop_columns", "rank check of X"),
        (modular, "check_scale_x", "scale check of X"),
        (lmer, "mkLmerDevfun", "mkLmerDevfun"),
        (reterms.ReTrms, "level_factors", "level codes and X_i"),
        (factory, "make_problem", "engine (make_problem)"),
        (engine.PLSProblem, "_cross_products", "cross-products A11, G, M22"),
        (engine.PLSProblem, "_make_blocks", "blocks and downdate plan"),
        (large.LargeBlockPLSProblem, "_cross_products", "compact cross-products"),
        (large.LargeBlockPLSProblem, "_make_blocks", "compact blocks and downdate plan"),
        (blocks, "_downdate_pattern", "pairs / keys"),
        (downdate, "_group_grams", "per-group Gram matrices"),
        (downdate, "_narrow_pairs_from_columns", "C held narrow"),
        (modular, "lme4_start", "start (lme4)"),
        (lmer, "optimizeLmer", "optimizer"),
        (lmer, "mkMerMod", "mkMerMod"),
        (mermod.LmerMod, "__post_init__", "fitted model (solve, mu)"),
    ]
    for owner, attr, label in stages:
        tracer.wrap(owner, attr, label)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("model", choices=[m.name for m in MODELS])
    parser.add_argument("--top", type=int, default=0,
                        help="list the N largest live allocation sites after each stage")
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir())
                                                   / "lmeformula-bench-data"))
    parser.add_argument("--no-trace", action="store_true",
                        help="only the fit's high-water mark, without tracemalloc")
    parser.add_argument("--optimizer", default=None,
                        help="lmer's optimizer (e.g. L-BFGS-B); lme4's default when omitted")
    parser.add_argument("--rss", action="store_true",
                        help="the fit's stages by resident set size (VmHWM per stage) instead "
                             "of tracemalloc")
    args = parser.parse_args()
    model = next(m for m in MODELS if m.name == args.model)
    directory = Path(args.data_dir)
    directory.mkdir(exist_ok=True)
    data = data_file(model, directory)

    import lmeformula as lmf

    kw: dict[str, Any] = {} if args.optimizer is None else {
        "control": {"optimizer": args.optimizer}}
    df = pd.read_csv(data) if data.endswith(".csv") else lmf.datasets.load(data)
    frame_mb = float(df.memory_usage(deep=True).sum()) / MB
    # imports and first-call costs (the model may not be identifiable on so few rows)
    with contextlib.suppress(ValueError):
        lmf.lmer(model.formula, df.iloc[:2000], **kw)
    rss_tracer = None
    if args.rss:  # the measured fit itself, by stage (reading /proc allocates nothing)
        gc.collect()
        base = status_mb("VmRSS")
        assert base is not None
        rss_tracer = RssTracer(base)
        trace_stages(rss_tracer)
    before = status_mb("VmRSS") if reset_peak() else None
    t0 = time.perf_counter()
    m = lmf.lmer(model.formula, df, **kw)
    elapsed = time.perf_counter() - t0
    hwm = status_mb("VmHWM")
    if rss_tracer is not None and hwm is not None:  # VmHWM was reset at each stage
        hwm = max(hwm, rss_tracer.base + rss_tracer.highest())
    print(f"{model.name}: {model.formula}, {len(df):,} rows; fit {elapsed:.1f} s, "
          f"{m.optinfo.feval} evaluations, REML criterion {m.REMLcrit():.10g}")
    print(f"input frame {frame_mb:.1f} MB; RSS before the fit {before:.0f} MB, "
          f"fit peak (VmHWM) {hwm:.0f} MB, growth {hwm - before:.0f} MB "
          f"= {(hwm - before) / frame_mb:.2f}x the frame" if before is not None and hwm
          else f"input frame {frame_mb:.1f} MB")
    if args.no_trace:
        return
    if rss_tracer is not None:
        print("\nresident set size by stage (MB above the RSS before the fit):")
        print(rss_tracer.report())
        return
    del m
    tracer = StageTracer(args.top)
    trace_stages(tracer)
    gc.collect()
    tracemalloc.start()
    m = lmf.lmer(model.formula, df, **kw)
    after = tracemalloc.get_traced_memory()[0] / MB
    tracemalloc.stop()
    print("\ntraced memory (MB; numpy and Python objects, not the frame loaded before):")
    print(tracer.report())
    print(f"held by the fitted model after the fit: {after:.1f} MB")
    _ = m


if __name__ == "__main__":
    main()
