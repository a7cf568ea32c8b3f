"""Notebook 05: Reading a fit: conditional modes, shrinkage, and a singular fit"""

from __future__ import annotations

from nbcommon import SETUP

NAME = "05_reading_a_fit.ipynb"
MIN_FIGURES = 2
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# Reading a fit: conditional modes, shrinkage, and a singular fit
"""),
    ("code", SETUP),
    ("code", r"""
sleep = lmf.datasets.load("sleepstudy")
m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
print(m.summary())
"""),
    ("md", r"""
## Caterpillar plot

The conditional modes of each subject's intercept and slope deviations, with 95% intervals
from their conditional variances (`ranef(m, condVar=True)`).
"""),
    ("code", r"""
fig, axes = plt.subplots(1, 2, figsize=(9, 5))
plots.caterpillar(m, "Subject", 0, ax=axes[0])
plots.caterpillar(m, "Subject", 1, ax=axes[1])
fig.tight_layout()
"""),
    ("md", r"""
## Shrinkage

Each subject's own least-squares estimates (circles) against the mixed model's (squares): the
arrows point towards the population values, shortest for the subjects with the most
informative data. The ellipse is the estimated random-effects covariance (one standard
deviation).
"""),
    ("code", r"""
plots.shrinkage(m, sleep, "Reaction ~ Days | Subject", "Subject");
"""),
    ("md", r"""
## A singular fit: Dyestuff2

In Dyestuff2 the between-batch variability is smaller than what the residual variance alone
predicts for batch means, so the REML estimate of the batch variance is exactly 0: θ sits on
its lower bound and the fit is *singular*. The model then says the batches do not differ;
the conditional modes are all zero.
"""),
    ("code", r"""
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    d2 = lmf.lmer("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff2"))
print([str(w.message) for w in caught])
print(d2.theta, lmf.isSingular(d2))
print(lmf.ranef(d2)["Batch"].T)
"""),
]
