"""Notebook 06: lmeformula and statsmodels' MixedLM, side by side."""

from __future__ import annotations

from nbcommon import setup

NAME = "06_statsmodels.ipynb"
MIN_FIGURES = 1
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# lmeformula and statsmodels' MixedLM, side by side

**Data**: `sleepstudy` (`Reaction ~ Days + (Days | Subject)`) and `Penicillin` (crossed plates
and samples).

**This notebook**: `compare_statsmodels` fits one lme4 formula with both packages and lines the
estimates up. The conventions differ: statsmodels reports variances (`cov_re`, `vcomp`,
`scale`), lme4 standard deviations, correlations and σ. We look at crossed factors in MixedLM,
why statsmodels' AIC is `nan` for a REML fit, why its `predict` gives the population line only,
and what MixedLM cannot express.
"""),
    ("code", setup("import pandas as pd")),
    ("code", r"""
pd.set_option("display.width", 110)
sleep = lmf.datasets.load("sleepstudy")
table = lmf.compare_statsmodels("Reaction ~ Days + (Days | Subject)", sleep)
print(table)
result = table.attrs["statsmodels_result"]
m = table.attrs["lmeformula_model"]
print(result.cov_re)
print(lmf.lme4_to_statsmodels_params(m)["cov_re"])
"""),
    ("md", r"""
The two optimisers stop at slightly different points, so the variance parameters agree to
their tolerances (relative differences ~1e-6), the fixed effects and the log-likelihood much
more closely.

Crossed random effects are expressed in MixedLM through a single group holding all rows, with
one variance component per factor:
"""),
    ("code", r"""
print(lmf.compare_statsmodels("diameter ~ 1 + (1 | plate) + (1 | sample)",
                              lmf.datasets.load("Penicillin")))
"""),
    ("md", r"""
## AIC under REML: `nan` in statsmodels

Both packages report the same REML log-likelihood. lme4 computes AIC $= -2\log L + 2k$ from it
anyway; statsmodels returns `nan` for `aic` and `bic` of a REML fit, on purpose: the REML
likelihood is that of the residuals after the fixed effects are projected out, so it changes
with the fixed-effects design, and REML AICs of models with different fixed effects are not
comparable. lme4's `anova()` (and `lmf.anova`) refits by ML before comparing models; to get
statsmodels' AIC, fit with `reml=False`.
"""),
    ("code", r"""
print("logLik:", float(m.logLik()), result.llf)
print("AIC   :", lmf.AIC(m), result.aic)
ml = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep, REML=False)
result_ml = lmf.to_statsmodels("Reaction ~ Days + (Days | Subject)", sleep).fit(reml=False)
print("ML AIC:", lmf.AIC(ml), result_ml.aic)
"""),
    ("md", r"""
## Predictions with and without random effects

lmeformula's `predict` follows lme4: by default it includes the random effects of each row's
group (`re_form=None`); `re_form="~0"` gives the population prediction $X\beta$. statsmodels'
`MixedLMResults.predict(exog)` takes a fixed-effects design only and returns **only the fixed
part**, $X\beta$ — the population line for every subject. To predict for a known subject, add its
conditional modes from `result.random_effects` yourself:
"""),
    ("code", r"""
new = pd.DataFrame({"Days": [0.0, 5.0, 9.0], "Subject": ["308"] * 3})
with_re = m.predict(new)
fixed_only = m.predict(new, re_form="~0")
sm_fixed = result.predict(pd.DataFrame({"(Intercept)": 1.0, "Days": new.Days}))
re308 = result.random_effects["308"]
sm_with_re = sm_fixed + re308["(Intercept)"] + re308["Days"] * new.Days
print(pd.DataFrame({"lmeformula": np.asarray(with_re),
                    "statsmodels + its BLUPs": np.asarray(sm_with_re),
                    "lmeformula re_form='~0'": np.asarray(fixed_only),
                    "statsmodels predict": np.asarray(sm_fixed)},
                   index=pd.Index(new.Days, name="Days")).round(3))
assert np.allclose(sm_fixed, fixed_only, rtol=1e-6)
assert np.allclose(sm_with_re, with_re, rtol=1e-5)
"""),
    ("code", r"""
d308 = sleep[sleep.Subject == "308"]
grid = pd.DataFrame({"Days": np.linspace(0, 9, 10), "Subject": "308"})
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
ax.scatter(d308.Days, d308.Reaction, color="C0", s=14, label="subject 308")
ax.plot(grid.Days, m.predict(grid), color="C0", lw=2, label="lmeformula predict (with its b)")
ax.plot(grid.Days, result.predict(pd.DataFrame({"(Intercept)": 1.0, "Days": grid.Days})),
        color="k", ls="--", lw=1.5, label="statsmodels predict (fixed part only)")
ax.set_xlabel("Days")
ax.set_ylabel("Reaction")
ax.set_title("Subject 308: prediction with and without its random effects")
ax.legend(fontsize=8);
"""),
    ("md", r"""
What MixedLM cannot express gets a clear error naming the term:
"""),
    ("code", r"""
from lmeformula.compare import StatsmodelsUnsupported
try:
    lmf.to_statsmodels("Reaction ~ Days + (Days | Subject) + (1 | Days)", sleep)
except StatsmodelsUnsupported as err:
    print(err)
"""),
    ("md", r"""
## Key points

* The same model, two parameterisations: lme4's SDs/correlations/σ against statsmodels'
  variances (`cov_re`, `vcomp`, `scale`); `lme4_to_statsmodels_params` converts.
* Crossed factors: one group of all rows, a variance component per factor.
* statsmodels' AIC/BIC are `nan` under REML on purpose; compare models by ML.
* statsmodels' `predict` is the fixed part only; add `random_effects` for a known group.

## Exercises

1. Compare `result.fittedvalues` with `lmf.fitted(m)`: fixed part only, or with the random
   effects?
2. Fit `Reaction ~ Days + (Days || Subject)` with both packages. How does MixedLM express the
   zero correlation?
3. Use `lmf.anova` on `(Days | Subject)` against `(Days || Subject)` and reproduce its χ² from
   the two statsmodels ML fits.
"""),
]
