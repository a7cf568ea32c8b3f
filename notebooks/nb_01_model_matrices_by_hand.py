"""Notebook 01: How lme4 builds Z: J_i, X_i and the Khatri-Rao product"""

from __future__ import annotations

from nbcommon import SETUP

NAME = "01_model_matrices_by_hand.ipynb"
MIN_FIGURES = 2
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# How lme4 builds Z: J_i, X_i and the Khatri-Rao product

A user asked how lme4's random-effects model matrix Z is built for `sleepstudy` (the question
is in the project's seed file). Bates et al. (2015, *Fitting Linear Mixed-Effects Models Using
lme4*, eqs. 6-7) write each term's block as

$$Z_i = \left(J_i^\top * X_i^\top\right)^\top$$

where $J_i$ is the indicator matrix of the grouping factor, $X_i$ the term's own model matrix,
and $*$ the **Khatri-Rao** (column-wise Kronecker) product. This notebook builds each piece by
hand and checks it against what `lFormula` produces.
"""),
    ("code", SETUP),
    ("md", r"""
## The toy example of the paper: `gl(3, 2)`

Six observations in three groups of two. $J_i$ (6 x 3) has a single 1 per row, in the column
of the observation's group. $X_i$ (6 x 2) is the term's model matrix: an intercept and a
covariate taking the values -1, 1.
"""),
    ("code", r"""
f = pd.Categorical(["1", "1", "2", "2", "3", "3"])
from lmeformula.reterms import khatri_rao

J = sp.csc_matrix((np.ones(6), (np.arange(6), f.codes)), shape=(6, 3))
X = np.column_stack([np.ones(6), np.tile([-1.0, 1.0], 3)])
print(lmf.format_sparse(J, [f"[{i + 1},]" for i in range(6)], ["1", "2", "3"]))
print(X)
"""),
    ("md", r"""
The Khatri-Rao product of $J_i^\top$ (3 x 6) and $X_i^\top$ (2 x 6) is taken **column by
column**: column $j$ of the result is the Kronecker product of column $j$ of $J_i^\top$ with
column $j$ of $X_i^\top$. Since column $j$ of $J_i^\top$ is the unit vector of observation
$j$'s group, the result holds $X_i$'s row $j$ in the two rows belonging to that group and zeros
elsewhere. That is exactly "observation $j$'s covariates, in the slot of its group".
"""),
    ("code", r"""
Zt = khatri_rao(J.T, X.T)          # (3*2) x 6
print(lmf.format_sparse(Zt, ["1", "1", "2", "2", "3", "3"]))
Z = Zt.T
print(Z.toarray())
"""),
    ("md", r"""
### Khatri-Rao, not Kronecker

The full Kronecker product $J_i^\top \otimes X_i^\top$ would be (3·2) x (6·6) = 6 x 36: it
pairs *every* observation's indicator with *every* observation's covariates. The Khatri-Rao
product keeps only the matching pairs, the 6 diagonal blocks of that Kronecker product:
"""),
    ("code", r"""
K = sp.kron(J.T, X.T).toarray()          # 6 x 36
diag_blocks = K[:, [j * 6 + j for j in range(6)]]
print(K.shape, np.array_equal(diag_blocks, Zt.toarray()))
"""),
    ("md", r"""
## sleepstudy, three subjects

The question restricts `sleepstudy` to subjects 309, 330 and 371 (10 days each). For the term
`(Days | Subject)`: $J_i$ is 30 x 3 (subject indicators), $X_i$ is 30 x 2 (an intercept and
`Days` — the model matrix of the bar's left-hand side, `~ Days`), and
$Z_i^\top = J_i^\top * X_i^\top$ is 6 x 30.
"""),
    ("code", r"""
sleep = lmf.datasets.load("sleepstudy")
sleep3 = sleep[sleep.Subject.isin(["309", "330", "371"])].reset_index(drop=True)
pf = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleep3)
term = pf.reTrms.terms[0]
print("J_i:", term.J.shape, " X_i:", term.X.shape)
print(pf.reTrms.Xi["Days | Subject"].head(12))
"""),
    ("code", r"""
Zt_by_hand = khatri_rao(term.J.T, term.X.T)
labels = [lev for lev in ["309", "330", "371"] for _ in range(2)]
print(lmf.format_sparse(Zt_by_hand, labels, width=100))
assert (Zt_by_hand != pf.reTrms.Ztlist["Days | Subject"]).nnz == 0
print("identical to lFormula(...).reTrms.Ztlist['Days | Subject']")
"""),
    ("md", r"""
The rows come in pairs per subject — intercept, then `Days` — because the product is
level-major: row $(\ell - 1) n_c + c$ belongs to level $\ell$, column $c$ of $X_i$. The
day-0 entries of the `Days` rows are zeros, and lme4 (with Matrix ≥ 1.5) does not store them,
so they print as `.`.

The answer to the original question: **$X_i$ is simply the model matrix of the term's
left-hand side** (`model.matrix(~ Days, data)`), and $Z_i = (J_i^\top * X_i^\top)^\top$ is
its transpose-free form: $Z_i$ is 30 x 6. For all 18 subjects the same construction gives a
36 x 180 $Z^\top$:
"""),
    ("code", r"""
pf18 = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleep)
print(pf18.reTrms.Zt.shape)
print(lmf.format_sparse(pf18.reTrms.Zt[:6], [s for s in ["308", "309", "310"] for _ in "ab"]))
plots.image(pf18.reTrms.Zt, title="Zt, sleepstudy (Days | Subject)");
"""),
    ("md", r"""
## The fit of the three-subject model

`b = Λu` holds the conditional modes (the "BLUPs") in the same level-major order as the rows
of $Z^\top$: (intercept, slope) for 309, then 330, then 371. Adding the fixed effects gives each
subject's own intercept and slope.
"""),
    ("code", r"""
m3 = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep3)
b = lmf.getME(m3, "b")
print(np.round(b, 4))
per_subject = b.reshape(3, 2) + m3.fixef.to_numpy()
print(pd.DataFrame(per_subject, index=["309", "330", "371"],
                   columns=["intercept", "slope"]).round(4))
print(lmf.coef(m3)["Subject"].round(4))
"""),
    ("code", r"""
Zb = lmf.getME(m3, "Z") @ b
fitted = lmf.getME(m3, "X").to_numpy() @ m3.beta + Zb
assert np.allclose(fitted, lmf.fitted(m3))
print(np.round(Zb[:10], 3))
"""),
    ("md", r"""
Each subject's least-squares line (dashed) against the mixed model's line (solid): the
mixed model pulls each subject towards the population line (black), more so for subjects
whose own data say less.
"""),
    ("code", r"""
plots.group_lines(m3, sleep3, "Days", "Reaction", "Subject");
"""),
]
