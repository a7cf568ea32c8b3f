"""Notebook 08: the formulaic syntax and polars input (cells for notebooks/build.py)."""

from __future__ import annotations

NAME = "08_formulaic_and_polars.ipynb"

CELLS: list[tuple[str, str]] = [
    ("md", """\
# 08 — Python formulas (formulaic) and polars input

lmeformula reads R's formula syntax by default, exactly as lme4 does. `syntax="formulaic"` is a
second front end: formulaic's own parser, extended with lme4's bars inside parentheses, and
formulaic's materializer for the fixed part and each bar's left side, so that Python transforms
(`np.log(x)`, `{x**2}`, `center(x)`, `bs(x, df=4)`, `C(f, contr.sum)`) can be used. Downstream,
the random-effects structures, the deviance function and the optimizer are the same code.

**Security:** formulaic evaluates the Python expressions in the formula. Use this syntax with
formulas you trust; the R syntax never evaluates Python."""),
    ("code", """\
import numpy as np
import pandas as pd
import polars as pl
import matplotlib.pyplot as plt
import lmeformula as lmf

sleep = lmf.datasets.load("sleepstudy")
sleep.head()"""),
    ("md", """\
## The same model in both syntaxes

`Reaction ~ Days + (Days | Subject)` means the same in R and in formulaic. The structures are
identical and so is the fit."""),
    ("code", """\
r = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
f = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep, syntax="formulaic")
a, b = r.lformula.reTrms, f.lformula.reTrms
print("Zt equal:", (a.Zt != b.Zt).nnz == 0, "| Lind equal:", np.array_equal(a.Lind, b.Lind),
      "| cnms:", a.cnms, b.cnms)
pd.DataFrame({"R syntax": [r.REMLcrit(), *r.theta, r.sigma],
              "formulaic syntax": [f.REMLcrit(), *f.theta, f.sigma]},
             index=["REML criterion", *r.theta.index, "sigma"])"""),
    ("md", """\
Where the syntaxes differ, they differ visibly. In R, `I(Days^2)` squares; inside a Python
expression `^` is XOR, so the formulaic syntax refuses it and says what to write instead. The two
spellings of the same model have the same ML deviance:"""),
    ("code", """\
try:
    lmf.lmer("Reaction ~ I(Days^2) + (Days | Subject)", sleep, syntax="formulaic")
except lmf.FormulaError as err:
    print("FormulaError:", err)

r2 = lmf.lmer("Reaction ~ log(Days + 1) + I(Days^2) + scale(Days, scale = FALSE)"
              " + (Days | Subject)", sleep, REML=False)
f2 = lmf.lmer("Reaction ~ np.log(Days + 1) + {Days**2} + center(Days) + (Days | Subject)",
              sleep, REML=False, syntax="formulaic")
print(r2.deviance(), f2.deviance())
pd.DataFrame({"R names": r2.fixef.index, "formulaic names": f2.fixef.index,
              "estimate": f2.fixef.to_numpy()})"""),
    ("md", """\
## A spline, and predictions on new data

formulaic's ModelSpec is kept with the fit: predictions on new rows reuse the spline's knots
(as the R syntax reuses `poly` and `scale` parameters). Here the population curve and two
subjects' curves on a fine grid of days."""),
    ("code", """\
spline = lmf.lmer("Reaction ~ bs(Days, df=4) + (Days | Subject)", sleep, syntax="formulaic")
print(spline.fixef)
grid = pd.DataFrame({"Days": np.repeat(np.linspace(0, 9, 46), 2),
                     "Subject": np.tile(["308", "335"], 46)})
grid["population"] = spline.predict(grid, re_form="~0").to_numpy()
grid["subject"] = spline.predict(grid).to_numpy()

fig, ax = plt.subplots(figsize=(6, 3.5))
for subject, rows in grid.groupby("Subject"):
    obs = sleep[sleep.Subject == subject]
    ax.plot(obs.Days, obs.Reaction, "o", ms=4, label=f"subject {subject}")
    ax.plot(rows.Days, rows.subject, "-")
ax.plot(grid.Days, grid.population, "k--", label="population")
ax.set_xlabel("Days"); ax.set_ylabel("Reaction (ms)"); ax.legend(); plt.show()"""),
    ("md", """\
## Polars (and pyarrow, and dicts) as input

Any data frame narwhals understands is accepted, in both syntaxes: it is converted to pandas once,
where the model frame is built, keeping categorical/Enum level order. The fit is the pandas fit,
number for number."""),
    ("code", """\
pl_sleep = pl.from_pandas(sleep)
fits = {"pandas": spline,
        "polars": lmf.lmer("Reaction ~ bs(Days, df=4) + (Days | Subject)", pl_sleep,
                           syntax="formulaic"),
        "polars lazy": lmf.lmer("Reaction ~ bs(Days, df=4) + (Days | Subject)", pl_sleep.lazy(),
                                syntax="formulaic"),
        "dict": lmf.lmer("Reaction ~ bs(Days, df=4) + (Days | Subject)",
                         {c: sleep[c].to_numpy() for c in sleep.columns}, syntax="formulaic")}
pd.DataFrame({k: [m.REMLcrit(), *m.theta] for k, m in fits.items()},
             index=["REML criterion", *spline.theta.index])"""),
    ("code", """\
new = pl.DataFrame({"Days": [1.5, 4.5, 8.5], "Subject": ["309", "309", "309"]})
spline.predict(new)"""),
    ("md", """\
## The statsmodels bridge from the same formulaic formula

`to_statsmodels` and `compare_statsmodels` build statsmodels' `MixedLM` from lmeformula's own
matrices, so the formulaic syntax (and polars input) carries over."""),
    ("code", """\
table = lmf.compare_statsmodels("Reaction ~ np.log(Days + 1) + (1 | Subject)", pl_sleep,
                                syntax="formulaic")
table"""),
]
