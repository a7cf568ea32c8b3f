"""Write the teaching notebooks (``python notebooks/build.py``).

The notebooks are kept as source here so that they are reviewed as code; the .ipynb files
are generated without outputs and executed top to bottom by the test suite
(tests/test_notebooks.py), so they never rot.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = """\
import numpy as np
import pandas as pd
import scipy.sparse as sp
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import lmeformula as lmf
from lmeformula import plots
from lmeformula.reterms import khatri_rao"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["01_model_matrices_by_hand.ipynb"] = [
    ("md", """\
# How lme4 builds Z: J_i, X_i and the Khatri-Rao product

A user asked how lme4's random-effects model matrix Z is built for `sleepstudy` (the question
is in the project's seed file). Bates et al. (2015, *Fitting Linear Mixed-Effects Models Using
lme4*, eqs. 6-7) write each term's block as

$$Z_i = \\left(J_i^\\top * X_i^\\top\\right)^\\top$$

where $J_i$ is the indicator matrix of the grouping factor, $X_i$ the term's own model matrix,
and $*$ the **Khatri-Rao** (column-wise Kronecker) product. This notebook builds each piece by
hand and checks it against what `lFormula` produces."""),
    ("code", SETUP),
    ("md", """\
## The toy example of the paper: `gl(3, 2)`

Six observations in three groups of two. $J_i$ (6 x 3) has a single 1 per row, in the column
of the observation's group. $X_i$ (6 x 2) is the term's model matrix: an intercept and a
covariate taking the values -1, 1."""),
    ("code", """\
f = pd.Categorical(["1", "1", "2", "2", "3", "3"])
J = sp.csc_matrix((np.ones(6), (np.arange(6), f.codes)), shape=(6, 3))
X = np.column_stack([np.ones(6), np.tile([-1.0, 1.0], 3)])
print(lmf.format_sparse(J, [f"[{i + 1},]" for i in range(6)], ["1", "2", "3"]))
print(X)"""),
    ("md", """\
The Khatri-Rao product of $J_i^\\top$ (3 x 6) and $X_i^\\top$ (2 x 6) is taken **column by
column**: column $j$ of the result is the Kronecker product of column $j$ of $J_i^\\top$ with
column $j$ of $X_i^\\top$. Since column $j$ of $J_i^\\top$ is the unit vector of observation
$j$'s group, the result holds $X_i$'s row $j$ in the two rows belonging to that group and zeros
elsewhere. That is exactly "observation $j$'s covariates, in the slot of its group"."""),
    ("code", """\
Zt = khatri_rao(J.T, X.T)          # (3*2) x 6
print(lmf.format_sparse(Zt, ["1", "1", "2", "2", "3", "3"]))
Z = Zt.T
print(Z.toarray())"""),
    ("md", """\
### Khatri-Rao, not Kronecker

The full Kronecker product $J_i^\\top \\otimes X_i^\\top$ would be (3·2) x (6·6) = 6 x 36: it
pairs *every* observation's indicator with *every* observation's covariates. The Khatri-Rao
product keeps only the matching pairs, the 6 diagonal blocks of that Kronecker product:"""),
    ("code", """\
K = sp.kron(J.T, X.T).toarray()          # 6 x 36
diag_blocks = K[:, [j * 6 + j for j in range(6)]]
print(K.shape, np.array_equal(diag_blocks, Zt.toarray()))"""),
    ("md", """\
## sleepstudy, three subjects

The question restricts `sleepstudy` to subjects 309, 330 and 371 (10 days each). For the term
`(Days | Subject)`: $J_i$ is 30 x 3 (subject indicators), $X_i$ is 30 x 2 (an intercept and
`Days` — the model matrix of the bar's left-hand side, `~ Days`), and
$Z_i^\\top = J_i^\\top * X_i^\\top$ is 6 x 30."""),
    ("code", """\
sleep = lmf.datasets.load("sleepstudy")
sleep3 = sleep[sleep.Subject.isin(["309", "330", "371"])].reset_index(drop=True)
pf = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleep3)
term = pf.reTrms.terms[0]
print("J_i:", term.J.shape, " X_i:", term.X.shape)
print(pf.reTrms.Xi["Days | Subject"].head(12))"""),
    ("code", """\
Zt_by_hand = khatri_rao(term.J.T, term.X.T)
labels = [lev for lev in ["309", "330", "371"] for _ in range(2)]
print(lmf.format_sparse(Zt_by_hand, labels, width=100))
assert (Zt_by_hand != pf.reTrms.Ztlist["Days | Subject"]).nnz == 0
print("identical to lFormula(...).reTrms.Ztlist['Days | Subject']")"""),
    ("md", """\
The rows come in pairs per subject — intercept, then `Days` — because the product is
level-major: row $(\\ell - 1) n_c + c$ belongs to level $\\ell$, column $c$ of $X_i$. The
day-0 entries of the `Days` rows are zeros, and lme4 (with Matrix ≥ 1.5) does not store them,
so they print as `.`.

The answer to the original question: **$X_i$ is simply the model matrix of the term's
left-hand side** (`model.matrix(~ Days, data)`), and $Z_i = (J_i^\\top * X_i^\\top)^\\top$ is
its transpose-free form: $Z_i$ is 30 x 6. For all 18 subjects the same construction gives a
36 x 180 $Z^\\top$:"""),
    ("code", """\
pf18 = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleep)
print(pf18.reTrms.Zt.shape)
print(lmf.format_sparse(pf18.reTrms.Zt[:6], [s for s in ["308", "309", "310"] for _ in "ab"]))
plots.image(pf18.reTrms.Zt, title="Zt, sleepstudy (Days | Subject)");"""),
    ("md", """\
## The fit of the three-subject model

`b = Λu` holds the conditional modes (the "BLUPs") in the same level-major order as the rows
of $Z^\\top$: (intercept, slope) for 309, then 330, then 371. Adding the fixed effects gives each
subject's own intercept and slope."""),
    ("code", """\
m3 = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep3)
b = lmf.getME(m3, "b")
print(np.round(b, 4))
per_subject = b.reshape(3, 2) + m3.fixef.to_numpy()
print(pd.DataFrame(per_subject, index=["309", "330", "371"],
                   columns=["intercept", "slope"]).round(4))
print(lmf.coef(m3)["Subject"].round(4))"""),
    ("code", """\
Zb = lmf.getME(m3, "Z") @ b
fitted = lmf.getME(m3, "X").to_numpy() @ m3.beta + Zb
assert np.allclose(fitted, lmf.fitted(m3))
print(np.round(Zb[:10], 3))"""),
    ("md", """\
Each subject's least-squares line (dashed) against the mixed model's line (solid): the
mixed model pulls each subject towards the population line (black), more so for subjects
whose own data say less."""),
    ("code", """\
plots.group_lines(m3, sleep3, "Days", "Reaction", "Subject");"""),
]

NOTEBOOKS["02_theta_to_lambda.ipynb"] = [
    ("md", """\
# From θ to Λ: Lind, theta, lower and the covariance of the random effects

lme4 parameterises the covariance of the random effects by a *relative covariance factor*
Λ(θ): $\\operatorname{Var}(b) = \\sigma^2 \\Lambda\\Lambda^\\top$. For a term with $n_c$
columns, θ holds the lower triangle of one $n_c \\times n_c$ block $\\lambda$, column by column,
and Λ repeats $\\lambda$ once per level."""),
    ("code", SETUP),
    ("code", """\
sleep = lmf.datasets.load("sleepstudy")
pf = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleep)
re = pf.reTrms
print("theta:", re.theta, " lower:", re.lower)
print("Lind (0-based):", re.Lind[:9], "...")
print(lmf.format_sparse(re.Lambdat[:6, :6]))"""),
    ("md", """\
`Lind` maps every stored value of `Lambdat` (in compressed-column order) to a position of θ,
so that `Lambdat.data = theta[Lind]` rebuilds Λ' for any θ. Diagonal elements are bounded
below by 0 (`lower`), off-diagonal ones are free."""),
    ("code", """\
m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
theta = m.theta.to_numpy()
Lt = re.Lambdat.copy()
Lt.data = theta[re.Lind]
lam = Lt.T.toarray()[:2, :2]          # one subject's block of Λ
print(np.round(lam, 6))
cov = m.sigma**2 * lam @ lam.T
print(np.round(cov, 4))
print(m.VarCorr)
print(np.allclose(cov, m.VarCorr["Subject"].cov))"""),
    ("md", """\
`VarCorr` reports the standard deviations and correlation of that covariance matrix:"""),
    ("code", """\
print(lmf.VarCorr(m).as_data_frame())"""),
]

NOTEBOOKS["03_sparsity.ipynb"] = [
    ("md", """\
# Sparsity: Zt, Λ, Z'Z and the Cholesky factor L

The penalised least-squares step factors $\\Lambda^\\top Z^\\top Z \\Lambda + I = LL^\\top$. Where
$Z^\\top Z$ has zeros, $L$ may not: *fill-in*. Nested designs produce none; crossed ones do."""),
    ("code", SETUP),
    ("code", """\
def panel(m, name):
    Zt = lmf.getME(m, "Zt")
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    plots.image(Zt, axes[0], f"{name}: Zt")
    plots.image(lmf.getME(m, "Lambda"), axes[1], "Λ")
    plots.image(Zt @ Zt.T, axes[2], "Z'Z")
    L = lmf.getME(m, "L")
    plots.image(L, axes[3], f"L ({L.nnz} non-zeros)")
    fig.tight_layout()
    return L

pastes = lmf.lmer("strength ~ 1 + (1 | batch/cask)", lmf.datasets.load("Pastes"))
L_nested = panel(pastes, "Pastes (nested)")"""),
    ("md", """\
In Pastes each cask belongs to one batch: the `cask:batch` block of $Z^\\top Z$ is diagonal
and each cask touches only its own batch, so $L$ has exactly the pattern of the lower
triangle of $Z^\\top Z$ — no fill-in."""),
    ("code", """\
pen = lmf.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", lmf.datasets.load("Penicillin"))
L_crossed = panel(pen, "Penicillin (crossed)")
ZtZ = (lmf.getME(pen, "Zt") @ lmf.getME(pen, "Zt").T)
print("non-zeros in the lower triangle of Z'Z:", sp.tril(ZtZ).nnz, " in L:", L_crossed.nnz)"""),
    ("md", """\
In Penicillin every plate meets every sample. The sample block (6 x 6) of $Z^\\top Z$ is
diagonal, but after eliminating the 24 plates it becomes full: each pair of samples is
connected through the plates they share. That is the fill-in, and it is why lmeformula's
engine factors the first (largest) term's block level by level and keeps the rest dense."""),
]

NOTEBOOKS["04_pls_and_profiles.ipynb"] = [
    ("md", """\
# Penalised least squares and the profiled criterion

For fixed θ, $\\beta$ and the spherical random effects $u$ ($b = \\Lambda u$) minimise the
penalised residual sum of squares
$$r^2(\\theta) = \\min_{\\beta, u} \\|y - X\\beta - Z\\Lambda u\\|^2 + \\|u\\|^2 .$$
With $A = \\Lambda^\\top Z^\\top$, $L = \\operatorname{chol}(AA^\\top + I)$,
$R_{ZX} = L^{-1}AX$, $R_X = \\operatorname{chol}(X^\\top X - R_{ZX}^\\top R_{ZX})$, the REML
criterion is
$$d_R(\\theta) = \\log|L|^2 + \\log|R_X|^2 + (n-p)\\left(1 + \\log\\frac{2\\pi r^2}{n-p}\\right).$$"""),
    ("code", SETUP),
    ("code", """\
sleep = lmf.datasets.load("sleepstudy")
m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
theta = m.theta.to_numpy()
X = lmf.getME(m, "X").to_numpy(); y = lmf.getME(m, "y")
Lt = lmf.getME(m, "Lambdat").toarray(); Zt = lmf.getME(m, "Zt").toarray()
A = Lt @ Zt
L = np.linalg.cholesky(A @ A.T + np.eye(A.shape[0]))
cu = np.linalg.solve(L, A @ y)
RZX = np.linalg.solve(L, A @ X)
RX = np.linalg.cholesky(X.T @ X - RZX.T @ RZX).T
beta = np.linalg.solve(RX, np.linalg.solve(RX.T, X.T @ y - RZX.T @ cu))
u = np.linalg.solve(L.T, cu - RZX @ beta)
r2 = np.sum((y - X @ beta - A.T @ u) ** 2) + u @ u
n, p = X.shape
dR = (2 * np.log(np.diag(L)).sum() + 2 * np.log(np.diag(RX)).sum()
      + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p))))
print(beta, m.beta)
print(dR, m.REMLcrit())"""),
    ("md", """\
## A one-dimensional profile: Dyestuff

With one variance component, the REML criterion is a function of a single θ. Its minimum is
the estimate; the profile ζ (signed square root of the increase in deviance) gives the
likelihood interval."""),
    ("code", """\
dye = lmf.lmer("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff"))
grid = np.linspace(0.01, 3, 200)
crit = [dye.devfun(np.array([t])) for t in grid]
dye.devfun(dye.theta.to_numpy())
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(grid, crit)
ax.axvline(dye.theta.iloc[0], color="grey", ls="--")
ax.set_xlabel("θ (Batch)"); ax.set_ylabel("REML criterion")
prof = lmf.profile(dye)
print(prof.confint())
plots.profile_zeta(prof);"""),
    ("md", """\
## A two-dimensional view: `(Days || Subject)`

With independent intercept and slope there are two θ's; the contours show the criterion's
increase over the optimum at the χ²₂ levels of 50% ... 99% joint regions."""),
    ("code", """\
m2 = lmf.lmer("Reaction ~ Days + (Days || Subject)", sleep)
plots.criterion_contour(m2, 0, 1, span=2.0, points=31);"""),
]

NOTEBOOKS["05_reading_a_fit.ipynb"] = [
    ("md", """\
# Reading a fit: conditional modes, shrinkage, and a singular fit"""),
    ("code", SETUP),
    ("code", """\
sleep = lmf.datasets.load("sleepstudy")
m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
print(m.summary())"""),
    ("md", """\
## Caterpillar plot

The conditional modes of each subject's intercept and slope deviations, with 95% intervals
from their conditional variances (`ranef(m, condVar=True)`)."""),
    ("code", """\
fig, axes = plt.subplots(1, 2, figsize=(9, 5))
plots.caterpillar(m, "Subject", 0, ax=axes[0])
plots.caterpillar(m, "Subject", 1, ax=axes[1])
fig.tight_layout()"""),
    ("md", """\
## Shrinkage

Each subject's own least-squares estimates (circles) against the mixed model's (squares): the
arrows point towards the population values, shortest for the subjects with the most
informative data. The ellipse is the estimated random-effects covariance (one standard
deviation)."""),
    ("code", """\
plots.shrinkage(m, sleep, "Reaction ~ Days | Subject", "Subject");"""),
    ("md", """\
## A singular fit: Dyestuff2

In Dyestuff2 the between-batch variability is smaller than what the residual variance alone
predicts for batch means, so the REML estimate of the batch variance is exactly 0: θ sits on
its lower bound and the fit is *singular*. The model then says the batches do not differ;
the conditional modes are all zero."""),
    ("code", """\
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    d2 = lmf.lmer("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff2"))
print([str(w.message) for w in caught])
print(d2.theta, lmf.isSingular(d2))
print(lmf.ranef(d2)["Batch"].T)"""),
]

NOTEBOOKS["06_statsmodels.ipynb"] = [
    ("md", """\
# lmeformula and statsmodels' MixedLM, side by side

`compare_statsmodels` fits one lme4 formula with both packages. The conventions differ:
statsmodels reports variances (`cov_re`, `vcomp`, `scale`), lme4 standard deviations,
correlations and σ."""),
    ("code", SETUP),
    ("code", """\
sleep = lmf.datasets.load("sleepstudy")
table = lmf.compare_statsmodels("Reaction ~ Days + (Days | Subject)", sleep)
print(table)
result = table.attrs["statsmodels_result"]
print(result.cov_re)
print(lmf.lme4_to_statsmodels_params(table.attrs["lmeformula_model"])["cov_re"])"""),
    ("md", """\
Crossed random effects are expressed in MixedLM through a single group holding all rows, with
one variance component per factor:"""),
    ("code", """\
print(lmf.compare_statsmodels("diameter ~ 1 + (1 | plate) + (1 | sample)",
                              lmf.datasets.load("Penicillin")))"""),
    ("md", """\
## AIC under REML

Both report the REML log-likelihood for REML fits, with the same constants; AIC from a REML
likelihood is only comparable between models with the same fixed effects. lme4's `anova()`
refits by ML before comparing models, and so does `lmf.anova`."""),
    ("code", """\
m = table.attrs["lmeformula_model"]
print(m.logLik(), result.llf, lmf.AIC(m), result.aic)"""),
    ("md", """\
## Predictions with and without random effects"""),
    ("code", """\
new = pd.DataFrame({"Days": [0, 5], "Subject": ["308", "308"]})
print(m.predict(new), m.predict(new, re_form="~0"))
print(result.predict(pd.DataFrame({"(Intercept)": [1, 1], "Days": [0, 5]})))"""),
    ("md", """\
What MixedLM cannot express gets a clear error naming the term:"""),
    ("code", """\
from lmeformula.compare import StatsmodelsUnsupported
try:
    lmf.to_statsmodels("Reaction ~ Days + (Days | Subject) + (1 | Days)", sleep)
except StatsmodelsUnsupported as err:
    print(err)"""),
]


def build() -> list[Path]:
    paths = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook()
        nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                    for kind, src in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        path = HERE / name
        nbformat.write(nb, path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in build():
        print(p)
