"""The package's exceptions and warnings.

Every error raised for bad input is a subclass of ``ValueError`` or ``TypeError`` so that callers
can catch it the usual way; the messages are lme4's where lme4 has one.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "ColumnTypeWarning",
    "ConvergenceWarning",
    "DeprecatedUsageWarning",
    "FittingError",
    "FormulaError",
    "IdentifiabilityError",
    "IdentifiabilityWarning",
    "LmeFormulaError",
    "LmeFormulaWarning",
    "ModelFrameError",
    "ModelSizeError",
    "NaNsProducedWarning",
    "RandomEffectsError",
    "RankDeficiencyError",
    "RankDeficiencyWarning",
    "RefitMLWarning",
    "ScaleWarning",
    "SingularFitWarning",
    "VariableNotFoundError",
]


class LmeFormulaError(ValueError):
    """Base class of the package's errors about input values."""


class FormulaError(LmeFormulaError):
    """The formula cannot be parsed or is not a model formula lme4 accepts."""


class VariableNotFoundError(FormulaError, KeyError):
    """A variable named in the formula is not a column of the data."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelFrameError(LmeFormulaError):
    """The model frame cannot be built (no rows left, bad weights, non-numeric response, ...)."""


class RandomEffectsError(LmeFormulaError):
    """A random-effects term is malformed or cannot be evaluated."""


class IdentifiabilityError(LmeFormulaError):
    """One of lme4's identifiability checks failed with action ``"stop"``."""


class RankDeficiencyError(LmeFormulaError):
    """The fixed-effects model matrix is rank deficient and ``check.rankX='stop.deficient'``."""


class FittingError(LmeFormulaError):
    """The penalised least-squares problem failed (for example, downdated VtV not p.d.)."""


class ArgumentError(LmeFormulaError, TypeError):
    """An argument of a public function has the wrong type or is out of its range
    (``REML="no"``, ``nsim=-1``, ``level=2``); both a ValueError and a TypeError."""


class ModelSizeError(LmeFormulaError):
    """The model's dense blocks would not fit in memory (raised before they are allocated)."""


class LmeFormulaWarning(UserWarning):
    """Base class of the package's warnings."""


class IdentifiabilityWarning(LmeFormulaWarning):
    """An identifiability check with action ``"warning"`` failed."""


class RankDeficiencyWarning(LmeFormulaWarning):
    """Columns of the fixed-effects model matrix were dropped."""


class ScaleWarning(LmeFormulaWarning):
    """Predictor variables are on very different scales."""


class ConvergenceWarning(LmeFormulaWarning):
    """lme4's post-fit convergence checks (gradient, Hessian, optimizer code)."""


class SingularFitWarning(LmeFormulaWarning):
    """The fit is singular (some variance components are on the boundary)."""


class DeprecatedUsageWarning(LmeFormulaWarning, FutureWarning):
    """A call lme4 deprecates, such as ``deviance()`` of a REML fit."""


class RefitMLWarning(LmeFormulaWarning):
    """lme4's message when anova() refits REML fits by ML."""


class ColumnTypeWarning(LmeFormulaWarning):
    """A data column was converted (numbers stored with object dtype became numeric)."""


class NaNsProducedWarning(LmeFormulaWarning):
    """R's "NaNs produced": a function in the formula (``log``, ``sqrt``, ...) gave NaN for a
    value that is not missing; the model frame drops those rows as missing, as R's does."""


def caller_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` (called by the function that calls this) that
    points the warning at the first caller outside this package: the user's line, however
    many of the package's functions lie between (``lmf.predict`` -> the model's ``predict``
    -> ...)."""
    import os
    import sys
    from types import FrameType

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame: FrameType | None = sys._getframe(1)  # the function that warns: stacklevel 1
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back
        level += 1
    return level
