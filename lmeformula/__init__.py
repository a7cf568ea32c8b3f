"""lmeformula: lme4's ``lFormula`` and ``lmer`` in Python.

>>> import lmeformula as lmf
>>> df = lmf.datasets.load("sleepstudy")
>>> pf = lmf.lFormula("Reaction ~ Days + (Days | Subject)", df)
>>> pf.reTrms.cnms
[['(Intercept)', 'Days']]
"""

from . import datasets
from .accessors import (
    AIC,
    BIC,
    REMLcrit,
    VarCorr,
    coef,
    deviance,
    df_residual,
    fitted,
    fixef,
    getME,
    isREML,
    isSingular,
    logLik,
    ngrps,
    nobs,
    npar,
    predict,
    ranef,
    residuals,
    sigma,
    simulate,
    summary,
    vcov,
)
from .allfit import AllFit, allFit
from .broom import augment, glance, tidy
from .compare import (
    compare_statsmodels,
    lme4_to_statsmodels_params,
    statsmodels_to_theta,
    to_statsmodels,
)
from .control import LmerControl, lmerControl
from .ddf import (
    StepResult,
    coef_table,
    contest,
    difflsmeans,
    drop1,
    get_model,
    ls_means,
    ranova,
    step,
)
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .formula import findbars, nobars, subbars
from .formula.bars import expand_double_verts
from .glmm import *  # noqa: F403
from .glmm import __all__ as _glmm_all
from .inference import anova, bootstrap, confint, profile
from .lmer import lmer, mkMerMod, optimizeLmer, refit, refitML, update
from .lmlist import lmList
from .mermod import LmerMod
from .modular import LFormula, LmerDevfun, lFormula, mkLmerDevfun
from .rformat import format_sparse

__version__ = "0.1.0"

__all__ = [
    "datasets", "lFormula", "LFormula", "lmer", "LmerMod", "mkLmerDevfun",
    "AIC", "BIC", "REMLcrit", "VarCorr", "coef", "deviance", "df_residual", "fitted", "fixef",
    "getME", "isREML", "isSingular", "logLik", "nobs", "npar", "ngrps", "predict", "ranef",
    "residuals", "sigma", "simulate", "summary", "vcov",
    "LmerDevfun", "optimizeLmer", "mkMerMod", "refitML", "refit", "update", "anova",
    "confint", "profile", "bootstrap", "lmList", "to_statsmodels", "compare_statsmodels",
    "lme4_to_statsmodels_params", "statsmodels_to_theta", "LmerControl", "lmerControl",
    "findbars", "nobars", "subbars", "expand_double_verts", "format_sparse", "__version__",
    *_errors_all,
    "tidy", "glance", "augment", "allFit", "AllFit",
    "coef_table", "contest", "ranova", "ls_means", "difflsmeans", "drop1",
    "step", "get_model", "StepResult",
    *_glmm_all,
]
from .diagnostics import cooks_distance, hatvalues, icc, influence, r2_nakagawa, simulate_residuals

__all__ += ["cooks_distance", "hatvalues", "icc", "influence", "r2_nakagawa", "simulate_residuals"]
# the records a fitted model hands back (m.call, getME(m, "devcomp"), m.optinfo), for type hints
from .call import ModelCall  # noqa: E402
from .devcomp import DevComp  # noqa: E402
from .optimize import Derivs, Lme4Conv, OptResult  # noqa: E402

__all__ += ["Derivs", "DevComp", "Lme4Conv", "ModelCall", "OptResult"]
# the presentation layer registers the printed and HTML layouts (see lmeformula.generics)
from . import glmerprint, html, printing  # noqa: E402, F401
