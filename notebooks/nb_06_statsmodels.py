"""Notebook 06: lmeformula and statsmodels' MixedLM, side by side"""

from __future__ import annotations

from nbcommon import SETUP

NAME = "06_statsmodels.ipynb"
MIN_FIGURES = 0
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# lmeformula and statsmodels' MixedLM, side by side

`compare_statsmodels` fits one lme4 formula with both packages. The conventions differ:
statsmodels reports variances (`cov_re`, `vcomp`, `scale`), lme4 standard deviations,
correlations and σ.
"""),
    ("code", SETUP),
    ("code", r"""
sleep = lmf.datasets.load("sleepstudy")
table = lmf.compare_statsmodels("Reaction ~ Days + (Days | Subject)", sleep)
print(table)
result = table.attrs["statsmodels_result"]
print(result.cov_re)
print(lmf.lme4_to_statsmodels_params(table.attrs["lmeformula_model"])["cov_re"])
"""),
    ("md", r"""
Crossed random effects are expressed in MixedLM through a single group holding all rows, with
one variance component per factor:
"""),
    ("code", r"""
print(lmf.compare_statsmodels("diameter ~ 1 + (1 | plate) + (1 | sample)",
                              lmf.datasets.load("Penicillin")))
"""),
    ("md", r"""
## AIC under REML

Both report the REML log-likelihood for REML fits, with the same constants; AIC from a REML
likelihood is only comparable between models with the same fixed effects. lme4's `anova()`
refits by ML before comparing models, and so does `lmf.anova`.
"""),
    ("code", r"""
m = table.attrs["lmeformula_model"]
print(m.logLik(), result.llf, lmf.AIC(m), result.aic)
"""),
    ("md", r"""
## Predictions with and without random effects
"""),
    ("code", r"""
new = pd.DataFrame({"Days": [0, 5], "Subject": ["308", "308"]})
print(m.predict(new), m.predict(new, re_form="~0"))
print(result.predict(pd.DataFrame({"(Intercept)": [1, 1], "Days": [0, 5]})))
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
]
