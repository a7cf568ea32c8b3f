"""Design shapes outside the benchmark list (issue 12): lmeformula's fit time against glmm's
and lme4's on simulated designs of moderate size (10^4 to 10^5 rows).

``python -m benchmarks.shapes [--runs 3] [--only NAME,...] [--no-r] [--out FILE]``

Each design is simulated once (seeded) and written to a CSV that lme4 reads too. In this
process lmeformula and glmm (fit only, ``satterthwaite=False``) are warmed up once and then
timed in turn, A B A B ..., so that the machine's drift (it is shared) falls on both alike;
each time is the median of the runs, as CPU seconds of this process (every thread's, BLAS's
included: the figure that load does not inflate) and wall seconds. lme4 runs in one Rscript
per design (``benchmarks/shapes_lme4.R``, ``LC_ALL=C``), timing ``lmer`` alone the same way.
The criterion (REML criterion, or deviance for ``REML=False``) of each engine is compared
with lmeformula's."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261202


@dataclass(frozen=True)
class Shape:
    """One simulated design: a name, an lme4 formula and the data's generator."""

    name: str
    formula: str
    make: Callable[[np.random.Generator], pd.DataFrame]
    REML: bool = True
    weights: str | None = None
    note: str = field(default="")


def _labels(prefix: str, codes: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, codes.astype(str))


def _nested(rng: np.random.Generator) -> pd.DataFrame:
    # 200 schools, 10,000 classes of 5 pupils: many small nested groups
    ncls, per = 10_000, 5
    cls = np.repeat(np.arange(ncls), per)
    school = cls % 200
    x = rng.normal(size=cls.size)
    y = (1 + 0.5 * x + rng.normal(size=200)[school] + rng.normal(scale=0.6, size=ncls)[cls]
         + rng.normal(size=cls.size))
    return pd.DataFrame({"y": y, "x": x, "school": _labels("s", school),
                         "class": _labels("c", cls // 200)})  # labels repeat across schools


def _tiny(rng: np.random.Generator) -> pd.DataFrame:
    # 50,000 groups of 2 rows
    g = np.repeat(np.arange(50_000), 2)
    x = rng.normal(size=g.size)
    y = 1 + 0.5 * x + rng.normal(size=50_000)[g] + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": _labels("g", g)})


def _slopes(ngroups: int, n: int, k: int) -> Callable[[np.random.Generator], pd.DataFrame]:
    def make(rng: np.random.Generator) -> pd.DataFrame:
        g = rng.integers(0, ngroups, n)
        xs = rng.normal(size=(n, k))
        b = rng.normal(scale=0.5, size=(ngroups, k + 1))
        y = 1 + b[g, 0] + (xs * (0.3 + b[g, 1:])).sum(axis=1) + rng.normal(size=n)
        d = {"y": y, "g": _labels("g", g)}
        d.update({f"x{j + 1}": xs[:, j] for j in range(k)})
        return pd.DataFrame(d)
    return make


def _crossed(levels: tuple[int, ...], n: int, slope: bool = False
             ) -> Callable[[np.random.Generator], pd.DataFrame]:
    names = "abcd"

    def make(rng: np.random.Generator) -> pd.DataFrame:
        x = rng.normal(size=n)
        y = 1 + 0.5 * x + rng.normal(size=n)
        d: dict[str, Any] = {"x": x}
        for name, nl in zip(names[:len(levels)], levels, strict=True):
            codes = rng.integers(0, nl, n)
            y += rng.normal(scale=0.7, size=nl)[codes]
            if slope and name == "a":
                y += rng.normal(scale=0.4, size=nl)[codes] * x
            d[name] = _labels(name, codes)
        return pd.DataFrame({"y": y, **d})
    return make


def _wide_x(rng: np.random.Generator) -> pd.DataFrame:
    # p = 100 fixed-effects columns, one random intercept of 200 levels
    n, p = 20_000, 100
    g = rng.integers(0, 200, n)
    X = rng.normal(size=(n, p))
    y = X @ rng.normal(scale=0.1, size=p) + rng.normal(size=200)[g] + rng.normal(size=n)
    d = {"y": y, "g": _labels("g", g)}
    d.update({f"x{j + 1}": X[:, j] for j in range(p)})
    return pd.DataFrame(d)


def _factor_slope(rng: np.random.Generator) -> pd.DataFrame:
    # a 4-level factor's vector (0 + f | g) over 1,000 groups
    n = 40_000
    g = rng.integers(0, 1_000, n)
    f = rng.integers(0, 4, n)
    b = rng.normal(size=(1_000, 4))
    y = 1 + 0.3 * f + b[g, f] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "f": _labels("f", f), "g": _labels("g", g)})


def _weighted(rng: np.random.Generator) -> pd.DataFrame:
    d = _slopes(500, 50_000, 1)(rng).rename(columns={"x1": "x"})
    d["w"] = rng.uniform(0.5, 2.0, len(d))
    return d


def _unbalanced(rng: np.random.Generator) -> pd.DataFrame:
    # 5 groups of 10,000 rows and 5,000 groups of 2 rows
    g = np.concatenate([np.repeat(np.arange(5), 10_000), 5 + np.repeat(np.arange(5_000), 2)])
    x = rng.normal(size=g.size)
    b = rng.normal(scale=0.6, size=(5_005, 2))
    y = 1 + b[g, 0] + (0.5 + b[g, 1]) * x + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": _labels("g", g)})


def _interaction(rng: np.random.Generator) -> pd.DataFrame:
    n = 50_000
    a, b = rng.integers(0, 100, n), rng.integers(0, 50, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=(100, 50))[a, b] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "a": _labels("a", a), "b": _labels("b", b)})


def _clustered(rng: np.random.Generator, nschool: int = 300, nstudent: int = 40_000,
               slope: bool = False) -> pd.DataFrame:
    """Students rating 5 teachers of their own school: the teachers' block after the students
    are eliminated is block diagonal by school (block 2's sparse factor, pls/cholmod.py);
    with ``slope``, each teacher's effect of x varies too (a vector term in block 2)."""
    per_school, k = 10, 5
    school = rng.integers(0, nschool, nstudent)
    student = np.repeat(np.arange(nstudent), k)
    teacher = school[student] * per_school + rng.integers(0, per_school, student.size)
    x = rng.normal(size=student.size)
    y = (rng.normal(size=nschool * per_school)[teacher] + rng.normal(size=nstudent)[student]
         + rng.normal(size=student.size))
    if slope:
        y += 0.5 * x + rng.normal(scale=0.4, size=nschool * per_school)[teacher] * x
    return pd.DataFrame({"y": y, "x": x, "s": _labels("s", student), "t": _labels("t", teacher)})


SHAPES = [
    Shape("nested_small_classes", "y ~ x + (1 | school/class)", _nested,
          note="200 schools, 10^4 classes of 5"),
    Shape("tiny_groups", "y ~ x + (1 | g)", _tiny, note="5*10^4 groups of 2 rows"),
    Shape("wide_slope_vector", "y ~ x1 + x2 + x3 + (x1 + x2 + x3 | g)",
          _slopes(500, 40_000, 3), note="q = 4 per group, 500 groups"),
    Shape("uncorrelated", "y ~ x1 + (x1 || g)", _slopes(1_000, 50_000, 1),
          note="1,000 groups"),
    Shape("diag_plus_crossed", "y ~ x + (x || a) + (1 | b)",
          _crossed((1_000, 200), 50_000, slope=True), note="1,000 x 200 levels"),
    Shape("three_crossed", "y ~ x + (1 | a) + (1 | b) + (1 | c)",
          _crossed((500, 200, 50), 50_000), note="500 x 200 x 50 levels"),
    Shape("wide_fixed_p100", "y ~ " + " + ".join(f"x{j + 1}" for j in range(100)) + " + (1 | g)",
          _wide_x, note="p = 101, 200 groups, 2*10^4 rows"),
    Shape("vector_second_term", "y ~ x + (1 | b) + (x | a)",
          _crossed((3_000, 100), 60_000, slope=True), note="(x | a) with 3,000 levels second"),
    Shape("factor_slope", "y ~ f + (0 + f | g)", _factor_slope,
          note="4-level factor's vector, 1,000 groups"),
    Shape("interaction_grouping", "y ~ x + (1 | a:b)", _interaction,
          note="5,000 cells of 100 x 50"),
    Shape("weighted", "y ~ x + (x | g)", _weighted, weights="w", note="500 groups, 5*10^4"),
    Shape("unbalanced", "y ~ x + (x | g)", _unbalanced,
          note="5 groups of 10^4 rows + 5,000 of 2"),
    Shape("ml_crossed", "y ~ x + (x | a) + (1 | b)",
          _crossed((500, 100), 50_000, slope=True), REML=False, note="REML=False"),
    Shape("large_crossed_scalar", "y ~ x + (1 | a) + (1 | b)",
          _crossed((5_000, 2_000), 100_000), note="5,000 x 2,000 levels, 10^5 rows"),
    Shape("clustered_crossed", "y ~ x + (1 | s) + (1 | t)", _clustered,
          note="4*10^4 students x 3,000 teachers in 300 schools, 2*10^5 rows"),
    Shape("clustered_large", "y ~ x + (1 | s) + (1 | t)",
          lambda rng: _clustered(rng, nschool=2_000, nstudent=200_000),
          note="2*10^5 students x 20,000 teachers in 2,000 schools, 10^6 rows"),
    Shape("clustered_slope", "y ~ x + (1 | s) + (x | t)",
          lambda rng: _clustered(rng, slope=True),
          note="clustered_crossed with a slope on the teachers (block 2 of order 6,003)"),
    Shape("clustered_large_slope", "y ~ x + (1 | s) + (x | t)",
          lambda rng: _clustered(rng, nschool=2_000, nstudent=200_000, slope=True),
          note="clustered_large with a slope on the teachers (block 2 of order 40,003)"),
    Shape("crossed_slope_second", "y ~ x + (1 | b) + (x | a)",
          _crossed((1_000, 10_000), 100_000, slope=True),
          note="10^3 x 10^4 crossed levels, (x | a) dense in block 2 (order 2,003)"),
]


def data_path(shape: Shape, directory: Path) -> Path:
    """The design's CSV, written once."""
    path = directory / f"shape_{shape.name}.csv"
    if not path.exists():
        shape.make(np.random.default_rng(SEED + len(shape.name))).to_csv(path, index=False)
    return path


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - w0, out


def time_python(shape: Shape, df: pd.DataFrame, runs: int, slow_s: float = 20.0,
                glmm_too: bool = True) -> dict[str, Any]:
    """lmeformula and glmm on one design, paired: warm-up each, then A B A B ...; an engine
    whose warm-up takes more than ``slow_s`` wall seconds is reported by that one fit."""
    import lmeformula as lmf

    w = df[shape.weights].to_numpy() if shape.weights else None

    def fit_lmf() -> Any:
        return lmf.lmer(shape.formula, df, REML=shape.REML, weights=w)

    engines: dict[str, Callable[[], Any]] = {"lmeformula": fit_lmf}
    out: dict[str, Any] = {}
    times: dict[str, list[tuple[float, float]]] = {"lmeformula": []}
    models: dict[str, Any] = {}
    try:
        if not glmm_too:
            raise ImportError
        import glmm  # type: ignore[import-untyped]
        gdf = df.copy()
        for c in gdf.columns:
            if gdf[c].dtype == object or str(gdf[c].dtype).startswith("str"):
                gdf[c] = gdf[c].astype(str)
        gw = w

        def fit_glmm() -> Any:
            return glmm.fit(gdf, shape.formula, satterthwaite=False, reml=shape.REML,
                            weights=gw)
        engines["glmm"] = fit_glmm
        times["glmm"] = []
    except ImportError:
        out["glmm_status"] = "not installed" if glmm_too else "not run (--no-glmm)"
    for name, fn in list(engines.items()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cpu, wall, models[name] = _timed(fn)
        except Exception as e:  # glmm refuses some formulas: say so
            out[f"{name}_status"] = f"{type(e).__name__}: {str(e)[:90]}"
            del engines[name]
            continue
        if wall > slow_s:  # a fit this slow is timed once: its warm-up is the figure
            times[name] = [(cpu, wall)] * runs
            out[f"{name}_status"] = f"warm-up only ({wall:.0f} s wall)"
            del engines[name]
    for _ in range(runs):
        for name, fn in engines.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cpu, wall, models[name] = _timed(fn)
            times[name].append((cpu, wall))
    for name in models:
        out[f"{name}_cpu"] = statistics.median(t[0] for t in times[name])
        out[f"{name}_wall"] = statistics.median(t[1] for t in times[name])
    if "lmeformula" in models:
        m = models["lmeformula"]
        out["lmeformula_crit"] = m.REMLcrit() if shape.REML else m.deviance()
        out["lmeformula_feval"] = int(m.optinfo.feval)
    if "glmm" in models:
        out["glmm_crit"] = -2 * float(models["glmm"].loglik)
        out["glmm_feval"] = int(models["glmm"].n_eval)
    return out


def time_lme4(shape: Shape, path: Path, runs: int, cap_s: float) -> dict[str, Any]:
    """lme4's lmer on one design through Rscript (one process, a warm-up, then ``runs``)."""
    if shutil.which("Rscript") is None:
        return {"lme4_status": "Rscript not installed"}
    cmd = ["Rscript", str(ROOT / "benchmarks" / "shapes_lme4.R"), str(path), shape.formula,
           str(runs), "TRUE" if shape.REML else "FALSE", shape.weights or ""]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=cap_s,
                             env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin")})
    except subprocess.TimeoutExpired:
        return {"lme4_status": f"time cap {cap_s:.0f} s hit"}
    if res.returncode != 0:
        return {"lme4_status": "error: " + (res.stderr.strip().splitlines() or ["?"])[-1][:90]}
    r = json.loads(res.stdout.strip().splitlines()[-1])
    return {"lme4_cpu": r["cpu_s"], "lme4_wall": r["wall_s"], "lme4_crit": r["criterion"],
            "lme4_feval": r["feval"]}


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (CPU seconds; ratios lmeformula / peer)."""
    head = ("| design | rows | lmf CPU s | lmf wall s | evals | glmm CPU s | lmf/glmm CPU | "
            "lme4 CPU s | lmf/lme4 CPU | evals glmm/lme4 | Δcrit glmm | Δcrit lme4 |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        lc, gc, rc = r.get("lmeformula_cpu"), r.get("glmm_cpu"), r.get("lme4_cpu")
        crit = r.get("lmeformula_crit")

        def delta(key: str, r: dict[str, Any] = r, crit: Any = crit) -> str:
            v = r.get(key)
            return "—" if v is None or crit is None else f"{v - crit:+.1e}"
        lines.append(
            f"| {r['name']} | {r['rows']:,} | {_fmt(lc)} | {_fmt(r.get('lmeformula_wall'))} | "
            f"{r.get('lmeformula_feval', '—')} | "
            f"{_fmt(gc) if gc is not None else r.get('glmm_status', '—')[:40]} | "
            f"{_fmt(lc / gc if lc and gc else None)} | "
            f"{_fmt(rc) if rc is not None else r.get('lme4_status', '—')} | "
            f"{_fmt(lc / rc if lc and rc else None)} | "
            f"{r.get('glmm_feval', '—')}/{r.get('lme4_feval', '—')} | "
            f"{delta('glmm_crit')} | {delta('lme4_crit')} |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="")
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--no-glmm", action="store_true")
    ap.add_argument("--cap", type=float, default=120.0, help="lme4's time cap per design (s)")
    ap.add_argument("--data-dir", default="/tmp/lmeformula-shapes")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    directory = Path(a.data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    wanted = set(filter(None, a.only.split(",")))
    rows = []
    for shape in SHAPES:
        if wanted and shape.name not in wanted:
            continue
        path = data_path(shape, directory)
        df = pd.read_csv(path)
        row: dict[str, Any] = {"name": shape.name, "formula": shape.formula, "rows": len(df),
                               "note": shape.note, "load_before": os.getloadavg()[0]}
        row.update(time_python(shape, df, a.runs, glmm_too=not a.no_glmm))
        if not a.no_r:
            row.update(time_lme4(shape, path, a.runs, a.cap))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(table(rows))
    if a.out:
        Path(a.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
        Path(a.out).write_text(table(rows))


if __name__ == "__main__":
    main()
