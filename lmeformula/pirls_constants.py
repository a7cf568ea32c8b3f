"""PIRLS's numerical constants, defined once for :mod:`lmeformula.pirls` and
:mod:`lmeformula.pirls_batch` (which cannot import pirls: pirls imports it), and for the
PIRLS that :mod:`lmeformula.laplace_grad` runs from a predicted mode.

lme4's clamps of μ at ``EPS`` and the bounds inside which they are known not to act decide
which arithmetic an evaluation takes; the batched evaluation must take exactly the one-point
evaluation's, so both read these.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DBL_MAX", "EPS", "INNER", "MAX_STEP_HALVINGS"]

# machine epsilon: lme4's floor of μ for the log link, of dμ/dη and of μ(1 - μ), and its
# clamp of a logistic μ at 1 - ε
EPS = float(np.finfo(float).eps)
# logistic tails plogis(-|η|) >= 4ε need neither lme4's clamp of μ nor its floors of dμ/dη
# and μ(1 - μ) at ε (pirls_batch.logistic_parts)
INNER = 4.0 * EPS
# the penalised deviance before PIRLS's first step (lme4's oldpdev = DBL_MAX)
DBL_MAX = float(np.finfo(float).max)
# lme4's limit on PIRLS's step halvings while the penalised deviance rises
MAX_STEP_HALVINGS = 20
