"""lmerTest's and pbkrtest's inference for linear mixed models: t- and F-tests with
Satterthwaite's or Kenward-Roger's denominator degrees of freedom, anova of types I-III,
tests of custom contrasts, least-squares means, likelihood-ratio tests of the random
effects and the backward elimination of terms (``step``).

>>> import lmeformula as lmf
>>> m = lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"))
>>> tab = lmf.anova(m, type=3, ddf="Satterthwaite")
>>> round(float(tab.loc["Days", "DenDF"]), 2)
17.0
"""

from .kenward_roger import KRAdjusted, vcov_adjusted
from .ranova import ranova
from .satterthwaite import HessianWarning, VarparInfo, varpar_info
from .step import InvalidKeepWarning, LinearModelFit, StepResult, get_model, step
from .tables import (
    KRFallbackWarning,
    MissingCellsWarning,
    RankDeficientContrastWarning,
    anova_lmertest,
    coef_table,
    contest,
    contest1D,
    contestMD,
    difflsmeans,
    drop1,
    ls_means,
)

__all__ = [
    "HessianWarning",
    "InvalidKeepWarning",
    "KRAdjusted",
    "KRFallbackWarning",
    "LinearModelFit",
    "MissingCellsWarning",
    "RankDeficientContrastWarning",
    "StepResult",
    "VarparInfo",
    "anova_lmertest",
    "coef_table",
    "contest",
    "contest1D",
    "contestMD",
    "difflsmeans",
    "drop1",
    "get_model",
    "ls_means",
    "ranova",
    "step",
    "varpar_info",
    "vcov_adjusted",
]
