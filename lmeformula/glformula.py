"""glFormula's result (:class:`GlFormula`) and glmer's response step.

Below both front ends that build a GLMM's structures, :mod:`lmeformula.glmodular` (R syntax)
and :mod:`lmeformula.glmodular_formulaic`, as :mod:`lmeformula.lformula` is for lFormula.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import ModelFrameError
from .families import Family
from .frame import ModelFrame
from .lformula import LFormula
from .transforms import MatrixValue

__all__ = ["GlFormula", "glmer_response"]


@dataclass
class GlFormula(LFormula):
    """The result of :func:`glFormula`: :class:`lmeformula.modular.LFormula`'s fields and the
    family. ``y`` is the response as the frame holds it: a vector (0/1 for a factor or
    logical response) or, for ``cbind(s, f)``, an (n, 2) array."""

    family: Family = field(default=None, repr=False)  # type: ignore[assignment]


def _character_column(data: pd.DataFrame | None, name: str) -> bool:
    """Whether ``name`` is a column of strings (R's character vector: the frame makes a
    factor of it for the fixed effects, but a response stays character in R)."""
    if data is None or name not in data.columns:
        return False
    col = data[name]
    if not isinstance(col, pd.Series) or isinstance(col.dtype, pd.CategoricalDtype):
        return False
    if pd.api.types.is_string_dtype(col.dtype) and not pd.api.types.is_object_dtype(col.dtype):
        return True
    return bool(pd.api.types.is_object_dtype(col.dtype)
                and pd.api.types.infer_dtype(col, skipna=True) == "string")


def glmer_response(family: Family, data: pd.DataFrame | None = None) -> Any:
    """The response step of glFormula for ``family`` (lme4's ``mkRespMod`` type checks);
    ``data``: the caller's data, to tell a column of strings from a factor."""

    def response(frame: ModelFrame) -> np.ndarray:
        if frame.response is None:
            raise ModelFrameError("the formula has no response (left-hand side)")
        y = frame.variables[frame.response]
        binom = family.family == "binomial"
        if isinstance(y, MatrixValue):
            if (not binom and y.values.shape[1] > 1) or y.values.shape[1] > 2:
                raise ModelFrameError(
                    "can't handle matrix-valued responses: consider using refit()")
            arr = np.asarray(y.values, dtype=float)
            if arr.shape[1] == 1:
                arr = arr[:, 0]
        elif isinstance(y, pd.Categorical):
            if not binom:
                raise ModelFrameError("response must be numeric")
            if _character_column(data, frame.response or ""):
                # R's binomial initialize takes factors, not character vectors
                raise ModelFrameError("response must be numeric or factor")
            # R's binomial initialize: y <- y != levels(y)[1]
            arr = (np.asarray(y.codes) != 0).astype(float)
        else:
            arr = np.asarray(y)
            if arr.dtype.kind == "b":
                arr = arr.astype(float)
            if arr.dtype.kind not in "iuf":
                raise ModelFrameError("response must be numeric or factor" if binom
                                      else "response must be numeric")
            arr = arr.astype(float)
        if not np.isfinite(arr).all():
            raise ModelFrameError("NA/NaN/Inf in 'y'")
        return arr

    return response
