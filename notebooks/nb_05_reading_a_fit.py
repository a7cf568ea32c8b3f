"""Notebook 05: reading a fit — conditional modes, shrinkage, and a singular fit."""

from __future__ import annotations

from nbcommon import SETUP

NAME = "05_reading_a_fit.ipynb"
MIN_FIGURES = 3
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# Reading a fit: conditional modes, shrinkage, and a singular fit

**Data**: `sleepstudy` (18 subjects, reaction time over 10 days of sleep deprivation, every
subject observed on the same 10 days), an unbalanced subset of it, and `Dyestuff2` (6 batches of
a dye, 5 yields each, simulated to have no batch effect).

**This notebook**: the summary of `Reaction ~ Days + (Days | Subject)`; the conditional modes of
the random effects with their intervals (caterpillar plot); what shrinkage is and what decides
how much — one matrix for balanced data, the amount of data when it is unbalanced; and a fit on
the boundary (singular).
"""),
    ("code", SETUP),
    ("code", r"""
sleep = lmf.datasets.load("sleepstudy")
m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
print(m.summary())
"""),
    ("md", r"""
## Caterpillar plot

The conditional modes $b_s$ of each subject's intercept and slope deviations, with 95% intervals
from their conditional variances (`ranef(m, condVar=True)`, lme4's `dotplot`). Both panels list
the subjects in one order (by intercept), so a subject is one row across the panels: 308 has an
average intercept but the steepest slope; 335 the flattest slope.
"""),
    ("code", r"""
plots.caterpillar(m, "Subject", None);
"""),
    ("md", r"""
## Shrinkage

Each arrow starts at a subject's **own least-squares estimates** (intercept and slope fitted to
that subject alone, `lmList`) and ends at the **mixed model's** (`coef`: fixed effects plus the
subject's conditional modes). The arrows point towards the population estimate (+): the mixed
model shrinks each subject's deviation from the population. They are not all aimed straight at
it, because the shrinkage acts on intercept and slope jointly.

How much is shrunk is **not** a matter of which subject is least informative here: sleepstudy is
*balanced*, every subject observed on the same 10 days, so every subject's data are equally
informative and one 2 x 2 matrix

$$S = (X_s^\top X_s + \sigma^2\Sigma^{-1})^{-1} X_s^\top X_s$$

($X_s$ the 10 x 2 design of any subject, $\Sigma$ the estimated covariance of the random
effects) maps every subject's own deviation onto its conditional mode:
$b_s = S\,(\hat\beta_s - \hat\beta)$. Long arrows belong to subjects that start far from the
population, shrunk by the same map.
"""),
    ("code", r"""
plots.shrinkage(m, sleep, "Reaction ~ Days | Subject", "Subject",
                title="sleepstudy (balanced): own estimates → mixed model");
"""),
    ("code", r"""
ols = lmf.lmList("Reaction ~ Days | Subject", sleep).coef()
b = lmf.ranef(m)["Subject"].loc[ols.index].to_numpy()
Xs = np.column_stack([np.ones(10), np.arange(10.0)])
Sigma = lmf.VarCorr(m)["Subject"].cov
S = np.linalg.solve(Xs.T @ Xs + m.sigma**2 * np.linalg.inv(Sigma), Xs.T @ Xs)
assert np.allclose((ols.to_numpy() - m.fixef.to_numpy()) @ S.T, b, atol=1e-6)
print("one S reproduces all 18 conditional modes:\n", np.round(S, 4))
"""),
    ("md", r"""
## Shrinkage with unequal data

Now keep only days 0-2 for six subjects (the other twelve keep all ten). A slope from three days
is poorly determined, so the mixed model should trust those subjects' own slopes less. Each
subject now has its own matrix $S_s = (X_s^\top X_s + \sigma^2\Sigma^{-1})^{-1}X_s^\top X_s$;
its diagonal says what share of the subject's own intercept and slope deviations survives.
"""),
    ("code", r"""
short = ["308", "309", "335", "337", "350", "352"]
unbal = sleep[~sleep.Subject.isin(short) | (sleep.Days <= 2)].reset_index(drop=True)
mu = lmf.lmer("Reaction ~ Days + (Days | Subject)", unbal)
Sigma_u = lmf.VarCorr(mu)["Subject"].cov
rows = []
for s, d in unbal.groupby("Subject", observed=True):
    Xd = np.column_stack([np.ones(len(d)), d.Days.to_numpy()])
    Ss = np.linalg.solve(Xd.T @ Xd + mu.sigma**2 * np.linalg.inv(Sigma_u), Xd.T @ Xd)
    rows.append((str(s), len(d), Ss[0, 0], Ss[1, 1]))
kept = pd.DataFrame(rows, columns=["Subject", "days", "S[intercept]", "S[slope]"])
kept = kept.set_index("Subject")
# the conditional modes are each subject's own S_s applied to its own deviation
olsu = lmf.lmList("Reaction ~ Days | Subject", unbal).coef()
for s in olsu.index:
    d = unbal[unbal.Subject == s]
    Xd = np.column_stack([np.ones(len(d)), d.Days.to_numpy()])
    Ss = np.linalg.solve(Xd.T @ Xd + mu.sigma**2 * np.linalg.inv(Sigma_u), Xd.T @ Xd)
    own = olsu.loc[s].to_numpy() - mu.fixef.to_numpy()
    assert np.allclose(Ss @ own, lmf.ranef(mu)["Subject"].loc[s].to_numpy(), atol=1e-5)
print(kept.sort_values("days").round(3))
"""),
    ("code", r"""
fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), layout="constrained", sharex=True, sharey=True)
plots.shrinkage(m, sleep, "Reaction ~ Days | Subject", "Subject", ax=axes[0],
                title="all subjects 10 days: one S for all")
plots.shrinkage(mu, unbal, "Reaction ~ Days | Subject", "Subject", ax=axes[1],
                title="308, 309, 335, 337, 350, 352 only days 0-2");
"""),
    ("md", r"""
With three days a subject keeps almost none of its own slope deviation ($S_s$[slope] ≈ 0),
against about 55% for a subject with ten days in the same fit: the arrows of the six short
subjects (right) run nearly all the way to the population slope, far more than with all their
data (left), and their own three-day slopes scatter widely. *That* is "shrinkage is strongest for
the least informative subjects" — it needs unequal information to show. (The ten-day subjects
keep less of their slope too, 55% against 84% on the left, because the unbalanced fit estimates
a smaller slope variance: the flatter ellipse.)

## A singular fit: Dyestuff2

In Dyestuff2 the batch means vary *less* than the residual variance alone predicts for means of
5 yields, so the REML estimate of the batch variance is exactly 0: θ sits on its lower bound
and the fit is **singular**. The model then says the batches do not differ, and every
conditional mode is zero — complete shrinkage.
"""),
    ("code", r"""
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    d2 = lmf.lmer("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff2"))
print([str(w.message) for w in caught])
print(d2.theta, "  singular:", lmf.isSingular(d2))
print(lmf.ranef(d2)["Batch"].T)
"""),
    ("md", r"""
## Key points

* The caterpillar plot shows conditional modes with intervals; one level order across panels
  reads a level as a row.
* Shrinkage maps each group's own estimate onto the mixed model's:
  $b_s = S_s(\hat\beta_s - \hat\beta)$ with
  $S_s = (X_s^\top X_s + \sigma^2\Sigma^{-1})^{-1}X_s^\top X_s$.
  With balanced data $S_s$ is one matrix for all groups; with unequal data, groups with less
  information are shrunk more.
* A singular fit (θ on its bound, `isSingular`) shrinks completely along the degenerate
  direction: here all batch effects are 0.

## Exercises

1. Compute $S$ for the balanced fit at σ twice as large. Does the mixed model trust the subjects'
   own slopes more or less?
2. In the unbalanced fit, which subject's intercept is shrunk most? Relate it to the table.
3. Fit `Yield ~ 1 + (1 | Batch)` to `Dyestuff` (not `Dyestuff2`) and compare its θ and
   `ranef` with the singular fit.
"""),
]
