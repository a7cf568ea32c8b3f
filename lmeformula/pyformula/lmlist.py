"""``lmList(..., syntax="formulaic")``: ``y ~ x | g`` read by formulaic, whose multi-part
``|`` splits the model from the grouping factor, and materialised by formulaic."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
from formulaic import SimpleFormula
from formulaic.errors import FormulaicError
from formulaic.parser.types import OrderedSet

from ..errors import FormulaError
from ..formula.ast import BinOp, Name, Node
from ..reterms import _grouping_factor
from ..transforms import drop_unused_levels
from .design import formulaic_frame, lme4_names
from .parser import PARSER, FormulaicBar, FormulaicFormula

__all__ = ["formulaic_lmlist_design"]


def _group(terms: OrderedSet, formula: str) -> Node:
    grouping = [t for t in terms if str(t) != "1"]
    if len(grouping) != 1 or not all(f.eval_method.value == "lookup" for f in grouping[0].factors):
        raise FormulaError(f"lmList needs a formula 'y ~ x | g' with g column names joined by "
                           f"':', got {formula!r}")
    names: list[Node] = [Name(f.expr) for f in grouping[0].factors]
    return functools.reduce(lambda a, b: BinOp(":", a, b), names)


def formulaic_lmlist_design(formula: str, data: Any, na_action: str = "omit"
                            ) -> tuple[np.ndarray, np.ndarray, list[str], pd.Categorical]:
    """The response, model matrix (values and names) and grouping factor of ``y ~ x | g``.

    formulaic evaluates the formula's Python expressions: use trusted formulas only.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, not {type(formula).__name__}")
    try:
        structured = PARSER.get_terms(formula)
    except (FormulaicError, SyntaxError) as err:
        raise FormulaError(f"formulaic cannot parse {formula!r}: {err}") from None
    rhs = structured.rhs if structured._has_structure and "rhs" in structured._structure else None
    if not isinstance(rhs, tuple) or len(rhs) != 2 or "lhs" not in structured._structure:
        raise FormulaError(f"lmList needs a formula 'y ~ x | g', got {formula!r}")
    group = _group(rhs[1], formula)
    intercept = [t for t in rhs[1] if str(t) == "1"]
    parsed = FormulaicFormula(formula, SimpleFormula(list(structured.lhs)),
                              SimpleFormula(list(rhs[0])),
                              (FormulaicBar("1 | g", SimpleFormula(intercept), group),))
    frame, mms, y = formulaic_frame(parsed, data, na_action=na_action)
    assert y is not None
    factor = drop_unused_levels(_grouping_factor(group, frame))
    return y, mms.rhs.to_numpy(dtype=float), lme4_names(mms.rhs.columns), factor
