"""Cells of notebook 09: checking a fit (ICC, R², residual plots, influence, DHARMa)."""

from __future__ import annotations

NAME = "09_checking_a_fit.ipynb"
MIN_FIGURES = 5

CELLS: list[tuple[str, str]] = [
    ("md", """\
# Checking a fit: ICC, R², residuals and influence

After `lmer` comes the question every analyst asks: *is this model any good?* R users reach
for `performance::icc` and `r2_nakagawa`, `plot(m)`, QQ plots of the conditional modes,
lme4's `hatvalues`, `cooks.distance` and `influence`, and DHARMa's simulated residuals.
lmeformula has all of them, with R's numbers (checked against performance 0.10.2, insight
0.19.0 and lme4 1.1-31 in `tests/test_diagnostics.py`).

We fit the `sleepstudy` model, decompose its variance, look at the pictures, then fit a model
that is wrong on purpose and watch the same pictures show it."""),
    ("code", """\
import warnings
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import lmeformula as lmf
import lmeformula.plots
from lmeformula import diagnostic_plots as dp

sleep = lmf.datasets.load("sleepstudy")
fm1 = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
fm1"""),
    ("md", """\
## How much of the variance is between subjects? ICC and R²

`performance` (through `insight::get_variance`) splits the variance of the response into

* **fixed**: the sample variance of the fixed-effects predictor $X\\hat\\beta$;
* **random**: for each random-effects term, the mean over the observations of
  $z_i^\\top \\Sigma_k z_i$, where $z_i$ holds the observation's values of the term's columns.
  With a random slope this is $\\overline{\\sigma_0^2 + 2\\sigma_{01}x + \\sigma_1^2 x^2}$;
* **residual**: $\\sigma^2$.

Then ICC (adjusted) = random / (random + residual), the unadjusted ICC adds the fixed part to
the denominator, and Nakagawa's marginal / conditional R² are fixed / total and
(fixed + random) / total."""),
    ("code", """\
v = lmf.diagnostics.get_variance(fm1)
print(v)
print(lmf.icc(fm1))
print(lmf.r2_nakagawa(fm1))"""),
    ("md", """\
The random part written out by hand, from `VarCorr`, is the same number:"""),
    ("code", """\
cov = fm1.VarCorr["Subject"].cov
days = sleep["Days"].to_numpy()
by_hand = np.mean(cov[0, 0] + 2 * cov[0, 1] * days + cov[1, 1] * days**2)
print(by_hand, v.var_random)"""),
    ("md", """\
### Quirks, matched and documented

* **By group.** `icc(m, by_group=True)` gives each term's *intercept* variance over
  random + residual. With random slopes the pieces don't add up (and a warning says so);
  the intercept variance depends on where $x=0$ is, so the "ICC" can even exceed 1.
* **`(x || g)`.** insight looks the terms up by the grouping factor's name, so of
  `(1 | Subject) + (0 + Days | Subject)` only the first counts. `all_terms=True` counts all.
* **Singular fits.** When a relative standard deviation θ is below `tolerance=1e-5`, ICC is
  NaN and the conditional R² too (the marginal one then leaves the random effects out).
  `tolerance=0` computes them anyway."""),
    ("code", """\
fm_dbl = lmf.lmer("Reaction ~ Days + (Days || Subject)", sleep)
print(lmf.icc(fm_dbl))                   # performance's number: the slope term left out
print(lmf.icc(fm_dbl, all_terms=True))   # every term counted
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    print(lmf.icc(fm1, by_group=True))
print([str(w.message)[:60] for w in caught])"""),
    ("code", """\
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    singular = lmf.lmer("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff2"))
    print(lmf.icc(singular))
    print(lmf.icc(singular, tolerance=0))"""),
    ("md", """\
## The usual pictures

`lmf.plots.diagnostics(m)` draws them in one figure; each panel is also a function of
`lmeformula.diagnostic_plots` that draws into an `Axes` of yours.

* residuals against fitted values, with a lowess smoother: a curve means a missing term;
* normal QQ of the residuals, and of each random-effects column's conditional modes;
* scale-location: a rising smoother means the variance grows with the mean;
* residuals by subject, one box per level;
* DHARMa's simulated residuals: uniform on (0, 1) under the model, whatever the family, with
  the Kolmogorov-Smirnov and dispersion tests' p-values;
* Cook's distance."""),
    ("code", """\
fig = lmf.plots.diagnostics(fm1)"""),
    ("md", """\
The panels look as they should: no trend against the fitted values, roughly normal
residuals apart from a few large ones (subject 332 has two), conditional modes on their line.

## A model that is wrong on purpose

Drop the random slope: every subject gets the population slope. Residuals of a subject whose
own slope is steeper run from negative (early days) to positive (late days), and the
residual-vs-fitted panels bend."""),
    ("code", """\
fm_wrong = lmf.lmer("Reaction ~ Days + (1 | Subject)", sleep)
fig = lmf.plots.diagnostics(fm_wrong, which=["resid_fitted", "resid_by_group",
                                             "sim_resid_fitted"])"""),
    ("md", """\
Per subject the pattern is plain: residuals against `Days` for a few subjects."""),
    ("code", """\
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
for ax, m, title in zip(axes, [fm1, fm_wrong], ["(Days | Subject)", "(1 | Subject)"]):
    r = m.residuals()
    for s in ["308", "309", "335", "337"]:
        rows = sleep["Subject"] == s
        ax.plot(sleep.loc[rows, "Days"], r[rows], "o-", ms=3, label=s)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title(title)
    ax.set_xlabel("Days")
axes[0].set_ylabel("residual")
axes[1].legend(fontsize=8);"""),
    ("md", """\
## Simulated residuals and a variance that grows

DHARMa's residual of an observation is the proportion of responses simulated from the fitted
model that fall below the observed one; under the model these are uniform. Here the data's
residual standard deviation grows with `x`, which the model doesn't know. The overall spread
is estimated right, so DHARMa's dispersion test (which compares the total variance of the
data around the fit with that of the simulations) has nothing to say; but the residuals are
a scale mixture, too many near the middle and too many in the tails, and the uniformity test
rejects loudly. The simulated residuals against the fitted values fan out, as does the
scale-location smoother."""),
    ("code", """\
rng = np.random.default_rng(21)
g = np.repeat(np.arange(40), 10)
x = rng.uniform(0, 3, size=g.size)
y = 1 + x + rng.normal(size=40)[g] + rng.normal(size=g.size) * np.exp(1.2 * x) / 4
het = pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g.astype(str))})
fm_het = lmf.lmer("y ~ x + (1 | g)", het)
sim = lmf.simulate_residuals(fm_het, n_sim=250, seed=123)
print(sim.test_uniformity())
print(sim.test_dispersion())
fig = lmf.plots.diagnostics(fm_het, which=["scale_location", "sim_qq_uniform",
                                           "sim_resid_fitted"], sim=sim)"""),
    ("md", """\
`simulate_residuals` uses DHARMa ≥ 0.5's default, simulations **conditional** on the fitted
random effects; `simulate_re="unconditional"` redraws them (lme4's `simulate` default, and
DHARMa's before 0.5). Conditional residuals of a linear mixed model are a little less spread
than the simulations (the fit has pulled the conditional modes towards the data), so their QQ
plot bends gently even for a correct model — look for shapes far stronger than that.

## Leverage and influence

`hatvalues` is the diagonal of the penalised least-squares hat matrix, `cooks_distance`
lme4's observation-level Cook's distance. `influence(m, group="Subject")` refits the model
without each subject, starting from the fit's θ (lme4's `influence.merMod`): `dfbeta()` is
the change in the fixed effects, `dfbeta("var.cov")` in the variance components."""),
    ("code", """\
h = lmf.hatvalues(fm1)
print("sum of leverages (effective number of parameters):", round(h.sum(), 2))
print(lmf.cooks_distance(fm1).nlargest(3))
infl = lmf.influence(fm1, group="Subject")
dfb = infl.dfbeta()
print(dfb.loc[dfb["Days"].abs().nlargest(3).index])
print(infl.cooks_distance().nlargest(3))"""),
    ("code", """\
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
dfb["Days"].plot.bar(ax=axes[0], color="C0")
axes[0].set_ylabel("change in the Days slope")
axes[0].set_title("Subjects left out, one at a time")
infl.dfbeta("var.cov")["v[Days]"].plot.bar(ax=axes[1], color="C1")
axes[1].set_ylabel("change in var(Days | Subject)")
fig.tight_layout()"""),
    ("md", """\
Leaving out subject 335 raises the slope by 0.8 ms/day and leaving out 308 lowers it by 0.7:
less than a tenth of the estimate (10.5 ms/day) and about half its standard error (1.5). No
single subject carries the result, although 335 (the one subject whose reaction time falls
over the days) alone holds up a good part of the slope variance."""),
]
