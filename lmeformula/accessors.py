"""lme4's accessor functions: ``fixef(m)``, ``ranef(m, condVar=True)``, ``VarCorr(m)``, ...

Each calls the fitted model's property or method of the same name, so ``lmf.fixef(m)`` and
``m.fixef`` are the same thing, as are ``lmf.ranef(m)`` and ``m.ranef()``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .errors import ArgumentError
from .mermod import LmerMod, LogLik, Summary
from .mermod import VarCorr as _VarCorr
from .mermod import getME as _getME
from .validate import model_functions

__all__ = [
    "AIC",
    "BIC",
    "REMLcrit",
    "VarCorr",
    "coef",
    "deviance",
    "df_residual",
    "fitted",
    "fixef",
    "getME",
    "isREML",
    "isSingular",
    "logLik",
    "ngrps",
    "nobs",
    "npar",
    "predict",
    "ranef",
    "residuals",
    "sigma",
    "simulate",
    "summary",
    "vcov",
]


def fixef(m: LmerMod) -> pd.Series:
    """Fixed effects, named by X's columns."""
    return m.fixef


def ranef(m: LmerMod, condVar: bool = True) -> dict[str, pd.DataFrame]:
    """Conditional modes per grouping factor (``attrs["postVar"]`` with ``condVar``)."""
    return m.ranef(condVar=condVar)


def coef(m: LmerMod) -> dict[str, pd.DataFrame]:
    """Fixed effects plus conditional modes, per grouping factor."""
    return m.coef


def VarCorr(m: LmerMod) -> _VarCorr:
    """Variances and correlations of the random effects."""
    return m.VarCorr


def sigma(m: LmerMod) -> float:
    """Residual standard deviation."""
    return m.sigma


def REMLcrit(m: LmerMod) -> float:
    """The REML criterion at the fitted θ."""
    return m.REMLcrit()


def deviance(m: LmerMod, REML: bool | None = None) -> float:
    """lme4's deviance (warns for REML fits when ``REML`` is not given)."""
    return m.deviance(REML=REML)


def logLik(m: LmerMod, REML: bool | None = None) -> LogLik:
    """Log-likelihood with its degrees of freedom."""
    return m.logLik(REML=REML)


def AIC(m: LmerMod) -> float:
    """Akaike's information criterion."""
    return m.AIC()


def BIC(m: LmerMod) -> float:
    """Schwarz's Bayesian information criterion."""
    return m.BIC()


def vcov(m: LmerMod, adjust: str | None = None) -> pd.DataFrame:
    """Covariance matrix of the fixed effects; ``adjust="Kenward-Roger"`` gives pbkrtest's
    ``vcovAdj`` (an ML fit is refitted by REML first, as pbkrtest does)."""
    if adjust is None:
        return m.vcov()
    if adjust not in ("Kenward-Roger", "KR"):
        raise ArgumentError(f"adjust must be None or 'Kenward-Roger', not {adjust!r}")
    from .ddf import vcov_adjusted

    v = m.vcov()
    return pd.DataFrame(vcov_adjusted(m).vcov, index=v.index, columns=v.columns)


def nobs(m: LmerMod) -> int:
    """Number of observations."""
    return m.nobs


def ngrps(m: LmerMod) -> pd.Series:
    """Number of levels of each grouping factor."""
    return m.ngrps


def df_residual(m: LmerMod) -> int:
    """Residual degrees of freedom."""
    return m.df_residual


def fitted(m: LmerMod) -> pd.Series:
    """Fitted values."""
    return m.fitted()


def residuals(m: LmerMod, type: str | None = None, scaled: bool = False) -> pd.Series:
    """Residuals of the given type (``response``, ``working``, ``pearson``, ``deviance``);
    the default is the model's (lme4: ``response`` for lmer, ``deviance`` for glmer)."""
    if type is None:
        return m.residuals(scaled=scaled)
    return m.residuals(type=type, scaled=scaled)


def isSingular(m: LmerMod, tol: float = 1e-4) -> bool:
    """Whether the fit is on the boundary of the parameter space."""
    return m.isSingular(tol=tol)


def getME(m: LmerMod, name: str) -> Any:
    """Extract a component by lme4's name (``"Zt"``, ``"Lambdat"``, ``"theta"``, ...)."""
    own = getattr(type(m), "getME", None)
    if own is not None and own is not LmerMod.getME:  # a model class with its own names
        return m.getME(name)
    return _getME(m, name)


def predict(m: LmerMod, newdata: pd.DataFrame | None = None, re_form: Any = None,
            allow_new_levels: bool = False, se_fit: bool = False, type: str | None = None,
            *, apply_offset_arg: bool = False) -> Any:
    """Predictions, with all, some or none of the random effects, on the data or new data
    (``type="link"`` or ``"response"`` for a GLMM; ``apply_offset_arg``: see
    :func:`lmeformula.prediction.predict`)."""
    if type is not None:
        return m.predict(newdata, re_form, allow_new_levels, se_fit, type=type,  # type: ignore[call-arg]
                         apply_offset_arg=apply_offset_arg)
    return m.predict(newdata, re_form, allow_new_levels, se_fit,
                     apply_offset_arg=apply_offset_arg)


def simulate(m: LmerMod, nsim: int = 1, rng: Any = None, use_u: bool = False,
             re_form: Any = float("nan"), newdata: pd.DataFrame | None = None,
             allow_new_levels: bool = False) -> pd.DataFrame:
    """Responses simulated from the fitted model (columns sim_1 ... sim_nsim); a level of
    ``newdata`` the fit never saw is an error unless ``allow_new_levels``, as in lme4."""
    return m.simulate(nsim, rng, use_u, re_form, newdata, allow_new_levels)


def summary(m: LmerMod, ddf: str | None = None) -> Summary:
    """lme4's summary object; ``print()`` it for lme4's layout. With ``ddf``
    (``"Satterthwaite"``, ``"Kenward-Roger"``) lmerTest's, with df and p-values."""
    return m.summary(ddf=ddf)


def isREML(m: LmerMod) -> bool:
    """Whether the model was fitted by REML."""
    return m.is_REML


def npar(m: LmerMod) -> int:
    """Number of parameters: fixed effects, θ and σ."""
    return m.npar()



model_functions(globals(), __all__)
