"""Engines timed by the benchmark. Each model runs in a fresh subprocess per engine, so that
peak memory (max RSS) is that engine's own and a time cap can stop it; times are medians of
several runs after one warm-up fit (single runs for the large models, warmed up on a
2,000-row slice).

Memory: besides the process's max RSS (interpreter, imports, data loading and all), the child
records the input frame's size (``df.memory_usage(deep=True)``), its RSS just before a fit and
the fit's own peak (on Linux the high-water mark VmHWM, reset before the fit through
``/proc/self/clear_refs``; elsewhere ``ru_maxrss``, the process's peak so far); of several
runs, the one with the largest growth over its pre-fit RSS is reported."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from .models import Model

ROOT = Path(__file__).resolve().parent.parent

_COMMON = textwrap.dedent("""
    import json, statistics, sys, time, warnings
    import numpy as np, pandas as pd
    warnings.simplefilter("ignore")
    name, data, formula, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    import lmeformula as lmf
    df = pd.read_csv(data) if data.endswith(".csv") else lmf.datasets.load(data)
    f = formula
    if formula.startswith("as.numeric"):  # peers without R expressions in formulas
        df = df.assign(resp=(df["r2"] == "Y").astype(float))
        f = "resp ~" + formula.split("~", 1)[1]
    def as_strings(d):
        d = d.copy()
        for c in d.columns:
            if isinstance(d[c].dtype, pd.CategoricalDtype) or d[c].dtype == object:
                d[c] = d[c].astype(str)
        return d
    def report(**kw):
        kw["model"] = name
        kw.update(globals().get("load_extra", {}))  # --load's paired blocks
        kw.update(memory)
        print(json.dumps(kw))
    # the fit's own peak: benchmarks/rss.py (the child runs from the repository root)
    from benchmarks.rss import peak_after_fit, reset_peak, status_mb
    def rss_before_fit():
        reset_peak()
        return status_mb("VmRSS")
    memory = {}
""")

# Each engine defines prepare(df) (data conversion, not timed) and fit(obj, df).
_TIMING = textwrap.dedent("""
    # warm up once (imports, first-call costs): on the full data when several runs are
    # timed, on the first 2,000 rows when a single run is (where the model may not be
    # identifiable on so few rows: the warm-up only has to run the code)
    warm = df if runs > 1 else df.iloc[:2000]
    try:
        fit(prepare(warm), warm)
    except Exception:
        pass
    obj = prepare(df)
    frame_mb = float(df.memory_usage(deep=True).sum()) / 2**20  # the input frame, as loaded
    ts = []
    for _ in range(runs):
        m = None  # the previous run's model is not part of this run's peak
        before = rss_before_fit()
        t0 = time.perf_counter(); m = fit(obj, df); ts.append(time.perf_counter() - t0)
        peak, how = peak_after_fit()
        growth = peak - before if before is not None else None
        if not memory or (growth or 0.0) > (memory["fit_growth_mb"] or 0.0):
            memory = {"frame_mb": frame_mb, "rss_before_mb": before, "fit_peak_mb": peak,
                      "fit_growth_mb": growth, "peak_measure": how}
    fit_s = statistics.median(ts)
""")

# a busy-looping process that ends when the one that started it does: it runs in a session of
# its own, which killing the engine's process group at the time cap would not reach. It
# checks its parent while it runs, and asks Linux for a SIGKILL when the parent dies, which
# also ends it while it is stopped (SIGSTOP between loaded blocks: a loop stopped when the
# cap killed its engine was left behind otherwise). Its output goes nowhere: a stray loop
# holding the engine's stdout kept the benchmark waiting for the pipe to close.
BUSY_LOOP = ("import ctypes, os\np = os.getppid()\n"
             "try:\n    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL\n"
             "except (AttributeError, OSError):\n    pass\n"
             "while os.getppid() == p:\n"
             "    for _ in range(100_000): pass")

# --load: the same fit beside two busy-looping processes, paired with quiet blocks in this
# process (see benchmarks/load.py for why each piece is there): the busy loops start once, in
# sessions of their own (other programs), run half a second, then are stopped and continued so
# that quiet and loaded blocks alternate; a block fits back to back for half a second (at least
# once) and counts its wall time per fit; the slowdown is the median of loaded / quiet blocks
# of the same round
_LOAD = textwrap.dedent("""
    import signal, subprocess
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True) for _ in range(2)]
    blocks = {"quiet": [], "load": []}
    try:
        time.sleep(0.5)
        for p in busy:
            p.send_signal(signal.SIGSTOP)
        for r in range(5 if runs >= 5 else 3):
            for cond in (("quiet", "load") if r % 2 == 0 else ("load", "quiet")):
                for p in busy:
                    p.send_signal(signal.SIGCONT if cond == "load" else signal.SIGSTOP)
                time.sleep(0.2)
                n, t0 = 0, time.perf_counter()
                while n < 1 or time.perf_counter() - t0 < 0.5:
                    fit(obj, df); n += 1
                blocks[cond].append((time.perf_counter() - t0) / n)
    finally:
        for p in busy:
            p.kill(); p.wait()
    load_extra = {"fit_load_s": statistics.median(blocks["load"]),
                  "fit_quiet_block_s": statistics.median(blocks["quiet"]),
                  "load_slowdown": statistics.median(
                      b / a for a, b in zip(blocks["quiet"], blocks["load"]))}
""").replace("BUSY_LOOP", repr(BUSY_LOOP))

def _lmeformula_script(engine: str, lmer_args: str = "") -> tuple[str, str]:
    """lmeformula's script, with extra arguments to ``lmer`` (``control=...``)."""
    return (f"""
def prepare(d): return d
def fit(d, _): return lmf.lmer(formula, d{lmer_args})
""", f"""
vc = m.VarCorr.as_data_frame(order="lower.tri")
report(engine="{engine}", version=lmf.__version__, fit_s=fit_s, feval=m.optinfo.feval,
       criterion=m.REMLcrit(), beta=m.beta.tolist(), sdcor=vc["sdcor"].tolist())
""")


SCRIPTS = {
    "lmeformula": _lmeformula_script("lmeformula"),
    "lmeformula-lbfgsb": _lmeformula_script(
        "lmeformula-lbfgsb", ', control={"optimizer": "L-BFGS-B"}'),
    "glmm": ("""
import glmm
from importlib.metadata import version
def prepare(d): return as_strings(d)
def fit(d, _): return glmm.fit(d, f, satterthwaite=False)  # fit only, as the others
""", """
report(engine="glmm", version=version("glmm"), fit_s=fit_s, feval=int(m.n_eval),
       criterion=-2 * float(m.loglik), beta=[float(b) for b in m.beta])
"""),
    "mixedlm": ("""
import mixedlm
from importlib.metadata import version
def prepare(d): return d
def fit(d, _): return mixedlm.lmer(f, d)
""", """
report(engine="mixedlm", version=version("mixedlm"), fit_s=fit_s,
       feval=int(m.function_evals), criterion=float(m.REMLcrit()),
       beta=[float(v) for v in m.fixef().values()])
"""),
    "lme-python": ("""
import polars as pl
import lme_python
from importlib.metadata import version
def prepare(d):
    d = as_strings(d)
    return pl.DataFrame({c: (d[c].tolist() if d[c].dtype == object else d[c].to_numpy())
                         for c in d.columns})
def fit(d, _): return lme_python.lmer(f, d)
""", """
report(engine="lme-python", version=version("lme-python"), fit_s=fit_s,
       feval=int(m.iterations), criterion=float(m.reml_criterion),
       beta=[float(b) for b in m.coefficients])
"""),
    "statsmodels": ("""
import statsmodels
from lmeformula.compare import to_statsmodels
def prepare(d): return to_statsmodels(formula, d)  # MixedLM from lme4's design, not timed
def fit(model, _): return model.fit(reml=True)
""", """
report(engine="statsmodels", version=statsmodels.__version__, fit_s=fit_s,
       feval=None, criterion=-2 * float(m.llf), beta=[float(b) for b in m.fe_params])
"""),
}


def _run(cmd: list[str], cap_s: float, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess | None:
    """Run a command in its own process group; on the time cap kill the whole group (the
    engine runs under /usr/bin/time, and killing only that would orphan it)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=cap_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_python_engine(engine: str, model: Model, data: str, runs: int, cap_s: float,
                      load: bool = False) -> dict:
    """Time one Python engine on one model in a subprocess, within ``cap_s`` seconds (and,
    with ``load``, paired quiet and loaded blocks after the timed runs)."""
    setup, result = SCRIPTS[engine]
    code = (_COMMON + textwrap.dedent(setup) + _TIMING + (_LOAD if load else "")
            + textwrap.dedent(result))
    # /usr/bin/time reports the child's own peak RSS: a child forked from this (large)
    # process would inherit its high-water mark
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-c", code, model.name, data,
           model.formula, str(runs)]
    out = _run(cmd, cap_s)
    if out is None:
        return {"engine": engine, "model": model.name, "status": f"time cap {cap_s:.0f} s hit"}
    if out.returncode != 0:
        # the last stderr line is /usr/bin/time's RSS; the error is the line before it
        lines = [ln for ln in out.stderr.strip().splitlines()
                 if not ln.strip().isdigit() and not ln.startswith("Command exited")]
        last = (lines or ["failed"])[-1]
        return {"engine": engine, "model": model.name, "status": f"error: {last[:120]}"}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["max_rss_mb"] = int(out.stderr.strip().splitlines()[-1]) / 1024
    result["status"] = "ok"
    return result


def run_lme4(model: Model, data: str, runs: int, cap_s: float) -> dict:
    """Time lme4 through Rscript (skipped with a note when R is not installed)."""
    if shutil.which("Rscript") is None:
        return {"engine": "lme4", "model": model.name, "status": "Rscript not installed"}
    cmd = ["/usr/bin/time", "-f", "%M", "Rscript", str(ROOT / "benchmarks" / "lme4_bench.R"),
           model.name, data, model.formula, str(runs)]
    out = _run(cmd, cap_s, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    if out is None:
        return {"engine": "lme4", "model": model.name, "status": f"time cap {cap_s:.0f} s hit"}
    if out.returncode != 0:
        return {"engine": "lme4", "model": model.name, "status": "error"}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["max_rss_mb"] = int(out.stderr.strip().splitlines()[-1]) / 1024
    result["status"] = "ok"
    return result


def available(engine: str) -> bool:
    """Whether a Python engine's package is installed."""
    import importlib.util

    module = {"lmeformula": "lmeformula", "lmeformula-lbfgsb": "lmeformula", "glmm": "glmm",
              "mixedlm": "mixedlm",
              "lme-python": "lme_python", "statsmodels": "statsmodels"}[engine]
    return importlib.util.find_spec(module) is not None
