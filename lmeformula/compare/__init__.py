"""Bridges to other packages (statsmodels' MixedLM)."""

from .statsmodels import (
    StatsmodelsSpec,
    StatsmodelsUnsupported,
    compare_statsmodels,
    lme4_to_statsmodels_params,
    statsmodels_spec,
    statsmodels_to_theta,
    to_statsmodels,
)

__all__ = [
    "StatsmodelsSpec", "StatsmodelsUnsupported", "compare_statsmodels",
    "lme4_to_statsmodels_params", "statsmodels_spec", "statsmodels_to_theta", "to_statsmodels",
]
