"""Engines timed by the benchmark. Each runs in a fresh subprocess so that peak memory (max
RSS) is the engine's own; times are medians of several runs after one warm-up fit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from .models import Model

ROOT = Path(__file__).resolve().parent.parent

_LMEFORMULA = textwrap.dedent("""
    import json, resource, statistics, sys, time, warnings
    import lmeformula as lmf
    name, data, formula, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    df = lmf.datasets.load(data)
    warnings.simplefilter("ignore")
    lmf.lmer(formula, df)  # warm up
    def timed(f):
        t0 = time.perf_counter(); out = f(); return time.perf_counter() - t0, out
    fits = [timed(lambda: lmf.lmer(formula, df)) for _ in range(runs)]
    lfs = [timed(lambda: lmf.lFormula(formula, df))[0] for _ in range(runs)]
    m = fits[-1][1]
    dev = m.devfun
    t0 = time.perf_counter()
    for _ in range(10):
        dev(m.theta.to_numpy())
    per_eval = (time.perf_counter() - t0) / 10
    crit = m.REMLcrit() if m.is_REML else m.deviance()
    print(json.dumps({"engine": "lmeformula", "version": lmf.__version__, "model": name,
                      "fit_s": statistics.median(t for t, _ in fits),
                      "lformula_s": statistics.median(lfs), "per_eval_s": per_eval,
                      "feval": m.optinfo.feval, "devfun_calls": dev.evaluations,
                      "criterion": crit, "theta": m.theta.tolist(), "beta": m.beta.tolist(),
                      "sigma": m.sigma,
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def run_lmeformula(model: Model, runs: int) -> dict:
    """Time lmeformula on one model."""
    out = subprocess.run([sys.executable, "-c", _LMEFORMULA, model.name, model.data,
                          model.formula, str(runs)], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_lme4(model: Model, runs: int) -> dict | None:
    """Time lme4 through Rscript; None when R is not installed."""
    if shutil.which("Rscript") is None:
        return None
    out = subprocess.run(["/usr/bin/time", "-f", "%M", "Rscript",
                          str(ROOT / "benchmarks" / "lme4_bench.R"), model.name, model.data,
                          model.formula, str(runs)], capture_output=True, text=True,
                         cwd=ROOT, check=True, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["max_rss_mb"] = int(out.stderr.strip().splitlines()[-1]) / 1024
    return result
