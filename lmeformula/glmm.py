"""The public names of the GLMM pipeline (glmer, glFormula, families, glmerControl), gathered
for ``lmeformula/__init__.py``."""

from .families import Family, Gamma, binomial, gaussian, inverse_gaussian, poisson
from .glmer import glmer, optimizeGlmer
from .glmercontrol import GlmerControl, glmerControl
from .glmermod import GlmerMod
from .glmodular import GlFormula, glFormula
from .pirls import GlmerDevfun, mkGlmerDevfun

__all__ = ["Family", "Gamma", "GlFormula", "GlmerControl", "GlmerDevfun", "GlmerMod",
           "binomial", "gaussian", "glFormula", "glmer", "glmerControl", "inverse_gaussian",
           "mkGlmerDevfun", "optimizeGlmer", "poisson"]
