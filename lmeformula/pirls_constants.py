"""PIRLS's numerical constants, defined once for :mod:`lmeformula.pirls` and
:mod:`lmeformula.pirls_batch` (which cannot import pirls: pirls imports it), and for the
PIRLS that :mod:`lmeformula.laplace_grad` runs from a predicted mode.

lme4's clamps of μ at ``EPS`` and the bounds inside which they are known not to act decide
which arithmetic an evaluation takes; the batched evaluation must take exactly the one-point
evaluation's, so both read these.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DBL_MAX", "EPS", "INNER", "INNER_VAR", "MAX_STEP_HALVINGS"]

# machine epsilon: lme4's floor of μ for the log link and of μ(1 - μ), and its clamp of a
# logistic μ to [ε, 1 - ε]
EPS = float(np.finfo(float).eps)
# logistic values in [4ε, 1 - 4ε] need neither lme4's clamps nor its floor of μ(1 - μ) at ε
INNER = 4.0 * EPS
# a logistic p whose p (1 - p), as update_mu forms it, exceeds this is inside [4ε, 1 - 4ε]
# (fl(fl(1 - p) p) is at most p and at most fl(1 - p), which is 1 - p exactly for p >= 1/2)
INNER_VAR = 1e-14
# the penalised deviance before PIRLS's first step (lme4's oldpdev = DBL_MAX)
DBL_MAX = float(np.finfo(float).max)
# lme4's limit on PIRLS's step halvings while the penalised deviance rises
MAX_STEP_HALVINGS = 20
