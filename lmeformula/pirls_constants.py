"""PIRLS's numerical constants, defined once for :mod:`lmeformula.pirls` and
:mod:`lmeformula.pirls_batch` (which cannot import pirls: pirls imports it), and for the
PIRLS that :mod:`lmeformula.laplace_grad` runs from a predicted mode.

lme4's clamps of μ at ``EPS`` decide which arithmetic an evaluation takes (for the logit,
:func:`lmeformula.families.logistic_parts` says whether they act); the batched evaluation
must take exactly the one-point evaluation's, so both read these.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DBL_MAX", "EPS", "MAX_STEP_HALVINGS"]

# machine epsilon: lme4's floor of μ for the log link, of dμ/dη and of μ(1 - μ), and its
# clamp of a logistic μ to [ε, 1 - ε]
EPS = float(np.finfo(float).eps)
# the penalised deviance before PIRLS's first step (lme4's oldpdev = DBL_MAX)
DBL_MAX = float(np.finfo(float).max)
# lme4's limit on PIRLS's step halvings while the penalised deviance rises
MAX_STEP_HALVINGS = 20
