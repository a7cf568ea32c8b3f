"""Notebook 01: how lme4 builds Z from J_i, X_i and the Khatri-Rao product (the seed question)."""

from __future__ import annotations

from nbcommon import setup

NAME = "01_model_matrices_by_hand.ipynb"
MIN_FIGURES = 4
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# How lme4 builds Z: J_i, X_i and the Khatri-Rao product

**The question** (the project's seed file): Bates et al. (2015, *Fitting Linear Mixed-Effects
Models Using lme4*, §2.3, eqs. 6-7) build each random-effects term's block of the model matrix
$Z$ as

$$Z_i = \left(J_i^\top * X_i^\top\right)^\top ,$$

with $J_i$ the indicator matrix of the grouping factor, $X_i$ "the term's model matrix" and $*$
the Khatri-Rao product. A student reduced `sleepstudy` to three subjects (309, 330, 371) and
asked: what exactly are $J_i$ and $X_i$ here, what are the rules to create $X_i$, is it
Khatri-Rao or Kronecker, and why does lme4's $Z^\top$ not look like "the transposed"?

**Data**: `sleepstudy`, reaction times of 18 subjects over 10 days of sleep deprivation; here
the three subjects of the question, 30 observations.

**This notebook**: the model and the sizes of everything in it; $J_i$ and $X_i$ shown in full
and side by side with $Z^\top$; the rules for $X_i$ on four kinds of term; Khatri-Rao against
Kronecker; why lme4 stores $Z^\top$; and, after the fit, $b$, $Zb$ and each subject's line.
"""),
    ("code", setup("import pandas as pd", "import scipy.sparse as sp",
                   "from lmeformula import plots", "from lmeformula.reterms import khatri_rao")),
    ("md", r"""
## 1. The model first

A linear mixed model (lme4 paper, eqs. 2-3) is

$$y = X\beta + Zb + \varepsilon, \qquad \varepsilon \sim N(0, \sigma^2 I_n), \qquad
b \sim N(0, \sigma^2 \Lambda_\theta\Lambda_\theta^\top),$$

with $X$ ($n \times p$) the fixed-effects model matrix, $Z$ ($n \times q$) the random-effects
model matrix and $\Lambda_\theta$ ($q \times q$) the relative covariance factor (notebook 02).
$Z$ is made of one block per **random-effects term** $i = 1, \dots, k$ (here one term,
`(Days | Subject)`, so $k = 1$); each block has one row per **observation** $j = 1, \dots, n$.

So **$i$ counts terms and $j$ counts observations**. The question uses $i$ for subjects, which
mixes two things: subjects are the $\ell_i$ *levels* of term $i$'s grouping factor — the
columns of $J_i$ — not the terms.

| symbol | what | sleepstudy, 3 subjects |
|---|---|---|
| $n$ | observations (rows of $y$, $X$, $Z$, $J_i$, $X_i$) | 30 |
| $p$ | fixed-effects coefficients, columns of $X$ | 2 |
| $k$ | random-effects terms | 1 |
| $\ell_i$ | levels of term $i$'s grouping factor, columns of $J_i$ | 3 |
| $p_i$ | columns of $X_i$ (random effects per level) | 2 |
| $q = \sum_i \ell_i p_i$ | random effects, columns of $Z$, length of $b$ | 6 |
"""),
    ("code", r"""
sleep = lmf.datasets.load("sleepstudy")
sleep3 = sleep[sleep.Subject.isin(["309", "330", "371"])].reset_index(drop=True)
m3 = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep3)
sizes = {name: lmf.getME(m3, name) for name in ["n", "p", "k", "l_i", "p_i", "q"]}
print(sizes)
assert (sizes["n"], sizes["p"], sizes["k"], sizes["q"]) == (30, 2, 1, 6)
assert list(sizes["l_i"]) == [3] and list(sizes["p_i"]) == [2]
"""),
    ("md", r"""
## 2. The toy example of the paper: `gl(3, 2)`

Six observations in three groups of two. $J_i$ (6 x 3) has a single 1 per row, in the column of
the observation's group; $X_i$ (6 x 2) is an intercept and a covariate taking the values -1, 1.
The Khatri-Rao product of $J_i^\top$ (3 x 6) and $X_i^\top$ (2 x 6) is taken **column by
column**: column $j$ of the result is the Kronecker product of column $j$ of $J_i^\top$ with
column $j$ of $X_i^\top$. Column $j$ of $J_i^\top$ is the unit vector of observation $j$'s group,
so the result holds $X_i$'s row $j$ in the two rows of that group and zeros elsewhere:
"observation $j$'s covariates, in the slots of its group".
"""),
    ("code", r"""
f = pd.Categorical(["1", "1", "2", "2", "3", "3"])
J = sp.csc_matrix((np.ones(6), (np.arange(6), f.codes)), shape=(6, 3))
X = np.column_stack([np.ones(6), np.tile([-1.0, 1.0], 3)])
Zt = khatri_rao(J.T, X.T)                     # (3*2) x 6 = Z_i transposed
print(lmf.format_sparse(Zt, ["1", "1", "2", "2", "3", "3"]))
"""),
    ("md", r"""
## 3. $J_i$ and $X_i$ for the three subjects

For `(Days | Subject)` on the 30 observations: $J_i$ is 30 x 3 (which subject each observation
belongs to), $X_i$ is 30 x 2 (an intercept and `Days`, one row per observation). Here they are in
full, next to the data they come from:
"""),
    ("code", r"""
pf = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleep3)
term = pf.reTrms.terms[0]
J3, X3 = term.J, term.X
full = pd.concat([sleep3[["Subject", "Days"]].astype({"Days": int}),
                  pd.DataFrame(J3.toarray().astype(int),
                               columns=[f"J:{s}" for s in ["309", "330", "371"]]),
                  pd.DataFrame(X3, columns=[f"X_i:{c}" for c in term.cnms])], axis=1)
full.index = pd.RangeIndex(1, 31, name="j")
print(full.to_string())
"""),
    ("md", r"""
The same two matrices as pictures, with the result $Z_i^\top = J_i^\top * X_i^\top$ (6 x 30)
on the right: its rows are (subject, term) pairs, its columns the 30 observations. Observation
$j$'s column of $Z^\top$ takes $X_i$'s row $j$ (right of the thin line: the subject's rows) and
puts it in the two rows of the one subject that $J_i$'s row $j$ points to.
"""),
    ("code", r"""
Zt3 = khatri_rao(J3.T, X3.T)
subjects = [("309", 10), ("330", 10), ("371", 10)]
obs = [str(j + 1) for j in range(30)]
fig = plt.figure(figsize=(13, 5.6), layout="constrained")
gs = fig.add_gridspec(1, 3, width_ratios=[1.4, 1.2, 7])
ax_j, ax_x, ax_z = (fig.add_subplot(g) for g in gs)
plots.image(J3, ax_j, "$J_i$ (30 x 3)", row_labels=obs, row_blocks=subjects,
            col_labels=["309", "330", "371"], xlabel="subject (level)",
            ylabel="observation j", annotate=True)
plots.image(X3, ax_x, "$X_i$ (30 x 2)", row_labels=obs, row_blocks=subjects,
            col_labels=term.cnms, xlabel="column of $X_i$", ylabel="observation j",
            annotate=True, colorbar=False)
plots.image(Zt3, ax_z, r"$Z_i^\top = J_i^\top * X_i^\top$ (6 x 30)",
            row_labels=plots.re_labels(pf), col_labels=obs, col_blocks=subjects,
            xlabel="observation j", ylabel="random effect (subject, term)",
            annotate=True, colorbar=False);
"""),
    ("code", r"""
print(lmf.format_sparse(Zt3, [s for s in ["309", "330", "371"] for _ in range(2)], width=100))
assert (Zt3 != pf.reTrms.Ztlist["Days | Subject"]).nnz == 0
print("identical to lFormula(...).reTrms.Ztlist['Days | Subject']")
"""),
    ("md", r"""
This is the 6 x 30 matrix printed in the question, and it is the *transposed* one:
$Z_i = (J_i^\top * X_i^\top)^\top$ is 30 x 6, so $J_i^\top * X_i^\top$ itself **is**
$Z_i^\top$, which is what lme4 keeps (`Zt`, `Ztlist`; section 6 says why). The day-0 entries of
the `Days` rows are zeros; lme4 (with Matrix ≥ 1.5) does not store them, so they print as `.`
(the question's printout, made with an older Matrix, shows them as stored `0`s).

## 4. The rules to create $X_i$

The rule the original answer left unclear:

* **$X_i$ is the model matrix of the bar's left-hand side**: for `(Days | Subject)`,
  `model.matrix(~ Days, data)`; for `(1 | Subject)`, a column of ones; for `(0 + Days | Subject)`,
  `Days` alone; for a factor, its contrasts.
* It has **one row per observation, all $n = 30$ of them** — not one row per day (10). The
  question's 2 x 10 $X^\top$ holds one subject's days; it cannot be Khatri-Rao multiplied with the
  3 x 30 $J_i^\top$, since the product pairs column $j$ with column $j$ and needs both factors
  to have the same $n$ columns.
* It is **not the fixed-effects $X$** in general: here both happen to be `~ Days`, but in
  `Reaction ~ Days + (1 | Subject)` $X$ has two columns and $X_i$ one.
* lme4 returns the $X_i$ as `getME(m, "mmList")`.

Four terms on the same three subjects (with a made-up factor `half`: days 0-4 "early",
5-9 "late", to have a factor that varies within subjects):
"""),
    ("code", r"""
import warnings

from lmeformula.errors import SingularFitWarning

sleep3["half"] = pd.Categorical(np.where(sleep3.Days < 5, "early", "late"))
formulas = {"(1 | Subject)": "Reaction ~ Days + (1 | Subject)",
            "(0 + Days | Subject)": "Reaction ~ Days + (0 + Days | Subject)",
            "(Days || Subject)": "Reaction ~ Days + (Days || Subject)",
            "(half | Subject)": "Reaction ~ Days + (half | Subject)"}
fits = {}
for label, formula in formulas.items():
    with warnings.catch_warnings():
        # three subjects cannot support every variance: some of these fits are singular
        # (θ on its bound), which does not change X_i or Z_i
        warnings.simplefilter("ignore", SingularFitWarning)
        fits[label] = m = lmf.lmer(formula, sleep3)
    mm = lmf.getME(m, "mmList")                 # lme4's X_i, one per term
    re = m.lformula.reTrms
    for t in re.terms:
        # X_i is the term's own model matrix, one row per observation, and equals mmList
        assert t.X.shape[0] == 30 and np.array_equal(t.X, mm[t.key].to_numpy())
        # and Z_i' = J_i' * X_i'
        assert (khatri_rao(t.J.T, t.X.T) != re.Ztlist[t.key]).nnz == 0
    print(f"{label:22s} terms: {list(mm)}   X_i columns: {[list(x.columns) for x in mm.values()]}"
          f"   singular: {lmf.isSingular(m)}")

t1 = fits["(1 | Subject)"].lformula.reTrms.terms[0]
assert (t1.J != t1.Zt.T).nnz == 0               # (1 | g): Z_i = J_i
print("(1 | Subject): Z_i = J_i;  X is", lmf.getME(fits["(1 | Subject)"], "X").shape,
      "but X_i is", t1.X.shape)
print(lmf.getME(fits["(half | Subject)"], "mmList")["half | Subject"].iloc[[0, 4, 5, 9]])
"""),
    ("code", r"""
fig, axes = plt.subplots(2, 2, figsize=(12, 6.4), layout="constrained")
for ax, (label, m) in zip(axes.ravel(), fits.items()):
    plots.image(lmf.getME(m, "Zt"), ax, f"Zt of {label}", row_labels=plots.re_labels(m),
                row_blocks=plots.term_blocks(m) if len(m.lformula.reTrms.terms) > 1 else None,
                xlabel="observation j", ylabel="", colorbar=False)
"""),
    ("md", r"""
* `(1 | Subject)`: $X_i$ is a column of ones, so $Z_i = J_i$: 3 rows.
* `(0 + Days | Subject)`: $X_i$ is `Days` alone: 3 rows, each a subject's days.
* `(Days || Subject)` is shorthand for `(1 | Subject) + (0 + Days | Subject)`: **two terms**
  ($k = 2$), two $X_i$, two blocks of $Z^\top$ stacked — all intercepts, then all slopes, where
  `(Days | Subject)` interleaves them subject by subject.
* `(half | Subject)`: $X_i$ is `model.matrix(~ half)`, an intercept and the indicator of "late"
  (treatment contrasts), so each subject has an "early" level and a "late − early" difference.

## 5. Khatri-Rao, not Kronecker

The Khatri-Rao product works row by row of $Z_i$ (column by column of $Z_i^\top$): **row $j$ of
$Z_i$ is the Kronecker product of row $j$ of $J_i$ with row $j$ of $X_i$**,
$Z_i[j, :] = J_i[j, :] \otimes X_i[j, :]$. Checked in one line:
"""),
    ("code", r"""
Jd, Xd, Zd = J3.toarray(), X3, Zt3.T.toarray()
assert all(np.array_equal(Zd[j], np.kron(Jd[j], Xd[j])) for j in range(30))
"""),
    ("md", r"""
The full Kronecker product $J_i^\top \otimes X_i^\top$ pairs *every* observation's indicator with
*every* observation's covariates: it is (3·2) x (30·30) = **6 x 900**. The Khatri-Rao product
keeps the 30 columns that pair observation $j$ with itself — **the columns $(j, j)$**, column
$30(j-1) + j$ — and drops the 870 others:
"""),
    ("code", r"""
K = sp.kron(J3.T, X3.T).toarray()
jj = [30 * j + j for j in range(30)]            # 0-based position of the column (j, j)
print("Kronecker:", K.shape, "  Khatri-Rao:", Zt3.shape)
assert np.array_equal(K[:, jj], Zt3.toarray())
"""),
    ("md", r"""
## 6. Why lme4 stores $Z^\top$

Every column of $Z^\top$ is one observation, and it holds exactly $\sum_i p_i$ structural
non-zeros (here 2: the observation's intercept and `Days` in its subject's rows; day 0 stores
one, its zero dropped). A matrix with a few non-zeros per column is what **compressed-column
storage** (CSC: per column, the row indices and values) holds compactly, and $Z^\top$ is
*built* column by column, one observation at a time. It is also what the fit uses: the
Cholesky factor $L$ of $\Lambda^\top Z^\top Z \Lambda + I$ is updated for each new θ straight from
$\Lambda^\top Z^\top$ (CHOLMOD's update from a CSC matrix $A$ of $AA^\top + I$), never from $Z$.
So "it is not the transposed" is settled: lme4 prints $Z^\top$ because it stores $Z^\top$.
"""),
    ("code", r"""
Ztc = sp.csc_matrix(pf.reTrms.Zt)
print("non-zeros per column (observation):", np.diff(Ztc.indptr))
print("first three columns — indptr:", Ztc.indptr[:4], " row indices:", Ztc.indices[:5],
      " values:", Ztc.data[:5])
"""),
    ("md", r"""
The same construction for all 18 subjects gives a 36 x 180 $Z^\top$, 18 copies of the
pattern above along the diagonal:
"""),
    ("code", r"""
pf18 = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleep)
plots.image(pf18.reTrms.Zt, title="Zt, sleepstudy, (Days | Subject): 36 x 180",
            row_labels=plots.re_labels(pf18), xlabel="observation j (10 per subject)",
            ylabel="random effect (subject, term)", fontsize=6, max_labels=36)
plt.gcf().set_size_inches(9, 5.5);
"""),
    ("md", r"""
## 7. After the fit: $b$, $Zb$, and each subject's line

lme4 does not estimate $b$ directly. It writes $b = \Lambda_\theta u$ with **spherical** random
effects $u \sim N(0, \sigma^2 I_q)$, solves a penalised least-squares problem for $u$ and $\beta$
at each θ (notebook 04) and reports the conditional modes $b = \Lambda_\theta u$ (notebook 02 builds
$\Lambda_\theta$ from θ). $b$ is in $Z^\top$'s row order: (intercept, slope) of 309, then 330,
then 371.
"""),
    ("code", r"""
b = lmf.getME(m3, "b")
u = lmf.getME(m3, "u")
assert np.allclose(lmf.getME(m3, "Lambda") @ u, b)      # b = Λu
answer = np.array([-44.1573839, -2.4118590, 32.8633489, -0.3998801, 11.2940350, 2.8117392])
print(pd.DataFrame({"b (lmeformula)": b, "b (the answer, lme4)": answer, "difference": b - answer},
                   index=plots.re_labels(m3)).round(7))
"""),
    ("md", r"""
The numbers agree with the answer's to about 1e-4. The last digits differ because both are
optimiser results: lme4's BOBYQA and lmeformula's optimiser stop when θ no longer improves the
REML criterion by more than their tolerance, at slightly different θ. The criterion is flat at its
minimum: moving θ by 1e-5 changes it by about 1e-8, far below what either optimiser resolves,
while $b$ moves in its 4th-5th significant digit. Shown by solving the penalised least squares
(notebook 04) at the estimate and at θ moved by 1e-5:
"""),
    ("code", r"""
def pls(model, theta):
    # REML criterion and b at a given θ (dense PLS, notebook 04 explains the steps)
    X, y = lmf.getME(model, "X").to_numpy(), lmf.getME(model, "y")
    Zt = lmf.getME(model, "Zt").toarray()
    Lt = model.lformula.reTrms.Lambdat.copy()
    Lt.data = theta[model.lformula.reTrms.Lind]
    A = Lt.toarray() @ Zt
    L = np.linalg.cholesky(A @ A.T + np.eye(len(A)))
    cu, RZX = np.linalg.solve(L, A @ y), np.linalg.solve(L, A @ X)
    RX = np.linalg.cholesky(X.T @ X - RZX.T @ RZX).T
    beta = np.linalg.solve(RX, np.linalg.solve(RX.T, X.T @ y - RZX.T @ cu))
    u = np.linalg.solve(L.T, cu - RZX @ beta)
    r2 = np.sum((y - X @ beta - A.T @ u) ** 2) + u @ u
    n, p = X.shape
    crit = (2 * np.log(np.diag(L)).sum() + 2 * np.log(np.diag(RX)).sum()
            + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p))))
    return crit, Lt.T.toarray() @ u

theta = m3.theta.to_numpy()
crit0, b0 = pls(m3, theta)
assert np.isclose(crit0, m3.REMLcrit()) and np.allclose(b0, b)
crit1, b1 = pls(m3, theta + 1e-5)
print(f"criterion change {crit1 - crit0:.2e},  largest change in b {np.abs(b1 - b0).max():.2e}")
"""),
    ("md", r"""
$Zb$ adds each observation's random effects: for observation $j$ of subject $s$,
$(Zb)_j = b_{s,0} + b_{s,1}\,\text{Days}_j$ — the subject's intercept deviation plus its slope
deviation times the day. Then $X\beta + Zb$ are the fitted values:
"""),
    ("code", r"""
Z = lmf.getME(m3, "Z")
Zb = Z @ b
bs = b.reshape(3, 2)                                     # rows: 309, 330, 371
s = np.asarray(pf.reTrms.flist["Subject"].codes)         # subject of each observation
assert np.allclose(Zb, bs[s, 0] + bs[s, 1] * sleep3.Days.to_numpy())
assert np.allclose(lmf.getME(m3, "X").to_numpy() @ m3.beta + Zb, lmf.fitted(m3))
print(np.round(Zb[:10], 3))
"""),
    ("md", r"""
Adding the fixed effects to each subject's $b$ gives the subject's own intercept and slope
(`coef`); the answer's 205.3016, 282.3223, 260.7530 and 2.407141, 4.419120, 7.630739 again to
about 1e-4:
"""),
    ("code", r"""
per_subject = pd.DataFrame(bs + m3.fixef.to_numpy(), index=["309", "330", "371"],
                           columns=["(Intercept)", "Days"])
assert np.allclose(per_subject, lmf.coef(m3)["Subject"])
print(per_subject.round(4))
"""),
    ("md", r"""
Each subject's own least-squares line (dashed) against the mixed model's line (solid) and the
population line (black, the fixed effects):
"""),
    ("code", r"""
plots.group_lines(m3, sleep3, "Days", "Reaction", "Subject");
"""),
    ("md", r"""
The mixed model pulls each subject's line towards the population line. How much is *not*
decided by how far the subject is: the three subjects have the same ten days, so their data are
equally informative, and one 2 x 2 matrix $S = (X_s^\top X_s + \sigma^2\Sigma^{-1})^{-1}X_s^\top
X_s$ ($X_s$ one subject's 10 x 2 design, $\Sigma$ the estimated covariance of the random effects)
maps *every* subject's own deviation from the population onto its mixed-model deviation. A far
subject moves further, by the same map. (Notebook 05 shows this for all 18 subjects and what
happens when subjects have unequal data.)
"""),
    ("code", r"""
ols = lmf.lmList("Reaction ~ Days | Subject", sleep3).coef().loc[["309", "330", "371"]]
Xs = np.column_stack([np.ones(10), np.arange(10.0)])
Sigma = lmf.VarCorr(m3)["Subject"].cov
S = np.linalg.solve(Xs.T @ Xs + m3.sigma**2 * np.linalg.inv(Sigma), Xs.T @ Xs)
beta = m3.fixef.to_numpy()
assert np.allclose((ols.to_numpy() - beta) @ S.T, bs)
print(np.round(S, 4))
"""),
    ("md", r"""
## Key points

* $y = X\beta + Zb + \varepsilon$; $Z$ has one block $Z_i$ per random-effects **term** $i$, one
  row per **observation** $j$; subjects are the levels of the term's grouping factor.
* $J_i$ ($n \times \ell_i$) says which level each observation belongs to; $X_i$
  ($n \times p_i$) is the model matrix of the bar's left-hand side, one row per observation
  (`getME(m, "mmList")`).
* $Z_i^\top = J_i^\top * X_i^\top$ (Khatri-Rao): row $j$ of $Z_i$ is $J_i[j,:] \otimes X_i[j,:]$,
  the columns $(j, j)$ of the 6 x 900 Kronecker product.
* lme4 stores $Z^\top$ (compressed columns, $\sum p_i$ non-zeros each) because it builds and
  uses $\Lambda^\top Z^\top$.
* $b = \Lambda_\theta u$; $(Zb)_j = b_{s,0} + b_{s,1}\text{Days}_j$.

## Exercises

1. Build $J_i$, $X_i$ and $Z_i^\top$ for `(Days | Subject)` on subjects 308 and 309 only, by hand
   with `np.kron` row by row, and compare with `lFormula(...).reTrms.Zt`.
2. For `(0 + half | Subject)` (no intercept), write down $X_i$'s columns before running it. How
   does the parameterisation differ from `(half | Subject)`, and does $Z\,b$ change?
3. Fit `Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)` on the three subjects. Is $Z^\top$
   the same as for `(Days || Subject)`? Is it the same as for `(Days | Subject)` up to a row
   permutation?
"""),
]
