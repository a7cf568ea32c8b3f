"""Inference timings: sleepstudy profile intervals and a 1000-replicate parametric bootstrap,
lmeformula against lme4; Satterthwaite's tables on InstEval against lmerTest
(``python -m benchmarks.inference``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import lmeformula as lmf

R_SCRIPT = r"""
suppressMessages(library(lme4))
fm1 <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
t0 <- proc.time()[["elapsed"]]; ci <- suppressMessages(confint(fm1)); t1 <- proc.time()[["elapsed"]]
set.seed(1)
t2 <- proc.time()[["elapsed"]]
b <- suppressMessages(suppressWarnings(bootMer(fm1, function(x) fixef(x), nsim = 1000)))
t3 <- proc.time()[["elapsed"]]
cat(sprintf('{"profile_s": %f, "boot1000_s": %f}\n', t1 - t0, t3 - t2))
"""


INSTEVAL_FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"
R_DDF_SCRIPT = r"""
suppressMessages({library(lme4); library(lmerTest)})
t0 <- proc.time()[["elapsed"]]
m <- lme4::lmer(y ~ service + (1 | s) + (1 | d) + (1 | dept:service), InstEval)
t1 <- proc.time()[["elapsed"]]
mt <- suppressMessages(as_lmerModLmerTest(m))
co <- summary(mt)$coefficients
a <- anova(mt, type = 3)
t2 <- proc.time()[["elapsed"]]
cat(sprintf('{"fit_s": %f, "ddf_s": %f}\n', t1 - t0, t2 - t1))
"""


def ddf_timings() -> tuple[dict[str, float], dict[str, float] | None]:
    """Satterthwaite's coefficient table and type III anova on InstEval's 3-term model, and
    the fit's own time; lmerTest's for the same (its Hessian, Jacobian and both tables)."""
    d = lmf.datasets.load("InstEval")
    t0 = time.perf_counter()
    m = lmf.lmer(INSTEVAL_FORMULA, d)
    t1 = time.perf_counter()
    lmf.coef_table(m, ddf="Satterthwaite")
    lmf.anova(m, type=3, ddf="Satterthwaite")
    t2 = time.perf_counter()
    ours = {"fit_s": t1 - t0, "ddf_s": t2 - t1}
    theirs = None
    if shutil.which("Rscript"):
        out = subprocess.run(["Rscript", "-e", R_DDF_SCRIPT], capture_output=True, text=True,
                             env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}, check=True)
        theirs = json.loads(out.stdout.strip().splitlines()[-1])
    return ours, theirs


def main() -> None:
    warnings.simplefilter("ignore")
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"))
    t0 = time.perf_counter()
    lmf.confint(m)
    t1 = time.perf_counter()
    lmf.bootstrap(m, nsim=1000, rng=1, FUN=lambda x: x.beta)
    t2 = time.perf_counter()
    ours = {"profile_s": t1 - t0, "boot1000_s": t2 - t1}
    theirs = None
    if shutil.which("Rscript"):
        out = subprocess.run(["Rscript", "-e", R_SCRIPT], capture_output=True, text=True,
                             env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}, check=True)
        theirs = json.loads(out.stdout.strip().splitlines()[-1])
    lines = ["| task | lmeformula | lme4 1.1-31 | lme4 / lmeformula |", "|---|---:|---:|---:|"]
    for key, label in (("profile_s", "sleepstudy `confint(fm1)` (profile)"),
                       ("boot1000_s", "sleepstudy parametric bootstrap, 1000 refits")):
        r = "" if theirs is None else f"{theirs[key]:.2f} s"
        ratio = "" if theirs is None else f"{theirs[key] / ours[key]:.1f}"
        lines.append(f"| {label} | {ours[key]:.2f} s | {r} | {ratio} |")
    ddf_ours, ddf_r = ddf_timings()
    formula = INSTEVAL_FORMULA.replace("|", "\\|")  # a bar would end the table's cell
    lines += ["", f"| InstEval `{formula}` | lmeformula | lme4 1.1-31 + lmerTest 3.1-3 |",
              "|---|---:|---:|"]
    for key, label in (("fit_s", "fit"), ("ddf_s", "Satterthwaite coefficient table + type III "
                                                   "anova")):
        r = "" if ddf_r is None else f"{ddf_r[key]:.2f} s"
        lines.append(f"| {label} | {ddf_ours[key]:.2f} s | {r} |")
    share = ddf_ours["ddf_s"] / ddf_ours["fit_s"]
    r_share = "" if ddf_r is None else f"{ddf_r['ddf_s'] / ddf_r['fit_s']:.0%}"
    lines.append(f"| tables / fit | {share:.0%} | {r_share} |")
    text = "\n".join(lines) + "\n"
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "inference.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
