"""The formulaic front end's model frame and matrices: formulaic materialises, lme4 assembles.

:func:`formulaic_model` takes a :class:`~lmeformula.pyformula.parser.FormulaicFormula` and data
to what :func:`lmeformula.lFormula` needs: the rows kept, the response, the fixed-effects matrix
and one model matrix per random-effects term, all materialised *together* by formulaic's pandas
materializer (one structured formula, so a row missing in any part is dropped from all), then the
grouping factors and :func:`lmeformula.reterms.re_trms_from_terms`, the same reTrms builder as the
R syntax. The materialised columns keep formulaic's names (``np.log(Days + 1)``,
``bs(Days, df=4)[1]``, ``C(f, contr.sum)[S.a]``, ``f[T.b]``) except the intercept, which takes
lme4's name ``(Intercept)`` (printing, starting values and the statsmodels bridge look for it).

The formulaic :class:`~formulaic.ModelSpecs` is kept in :class:`FormulaicDesign`: predictions,
simulations and refits on new data reuse it (spline knots, centring means, factor levels), as the
R syntax reuses its stored ``poly`` / ``scale`` parameters.

Security: formulaic evaluates the Python expressions written in the formula (``np.log(x)``,
``{x**2}``, any call). Only use ``syntax="formulaic"`` with formulas you trust; the R syntax
never evaluates Python.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError

from ..checks import (
    check_finite_columns,
    check_nlevels,
    check_scale_x,
    check_zdims,
    check_zrank,
    rank_drop_columns,
)
from ..control import LmerControl
from ..dataframe import as_pandas
from ..errors import (
    FormulaError,
    LmeFormulaError,
    ModelFrameError,
    RandomEffectsError,
    VariableNotFoundError,
)
from ..formula.ast import Node
from ..formula.bars import grouping_variables
from ..frame import (
    NA_ACTIONS,
    ModelFrame,
    NAAction,
    _LazyColumns,
    _subset_mask,
    _take,
    _vector_argument,
    check_response,
    na_mask,
)
from ..reterms import ReTerm, ReTrms, _grouping_factor, re_trms_from_terms
from ..transforms import Value, as_factor, column_value, drop_unused_levels
from .parser import FormulaicFormula

__all__ = ["FormulaicDesign", "FormulaicModel", "formulaic_model", "lme4_names"]

INTERCEPT = "(Intercept)"


def lme4_names(columns: Any) -> list[str]:
    """formulaic's column names with the intercept named as lme4 names it."""
    return [INTERCEPT if c == "Intercept" else str(c) for c in columns]


def _materialize(spec: Any, data: pd.DataFrame, **kwargs: Any) -> Any:
    """Run formulaic, turning its errors into the package's (formulaic's message kept)."""
    try:
        if isinstance(spec, Formula):
            return model_matrix(spec, data, context={}, **kwargs)
        return spec.get_model_matrix(data, context={}, **kwargs)
    except FormulaicError as err:
        text = str(err)
        missing = re.search(r"NameError: (?:`([^`]+)` is not present|name '([^']+)' is not "
                            r"defined)", text)
        if missing:
            name = missing.group(1) or missing.group(2)
            raise VariableNotFoundError(f"object '{name}' not found (formulaic: {text})"
                                        ) from None
        raise FormulaError(f"formulaic: {text}") from None
    except (ValueError, TypeError, KeyError, NameError) as err:
        raise FormulaError(f"formulaic: {type(err).__name__}: {err}") from None


def _required_columns(specs: Any, data: pd.DataFrame) -> list[str]:
    """The data's columns a formulaic spec or formula reads, in the data's order."""
    needed = {str(v) for v in specs.required_variables}
    return [c for c in data.columns if c in needed]


@dataclass
class FormulaicDesign:
    """What new data need to go through a formulaic fit's recipe.

    Attributes
    ----------
    specs
        formulaic's structured ModelSpecs: ``rhs`` (fixed part), ``lhs`` (response, when
        there is one), ``re_0``, ``re_1``, ... (the bars' left sides, formula order).
    parsed
        The parsed formula.
    x_columns
        formulaic's names of the fixed-effects columns kept (after the rank check).
    offset
        The ``offset=`` argument as given (a column name is looked up in new data).
    """

    specs: Any
    parsed: FormulaicFormula
    x_columns: list[str]
    offset: Any = None
    _order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)

    def _matrix(self, part: str, newdata: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        spec = getattr(self.specs, part)
        mm = _materialize(spec, newdata, na_action="ignore")
        na = np.zeros(len(newdata), dtype=bool)
        for name in _required_columns(spec, newdata):
            na |= na_mask(column_value(newdata[name]))
        values = mm.to_numpy(dtype=float)
        if values.size:
            na |= np.isnan(values).any(axis=1)
        return mm, na

    def fixed_matrix(self, newdata: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """X for new data (the fit's columns), the offset, and the rows with missing values."""
        newdata = as_pandas(newdata, "newdata")
        mm, na = self._matrix("rhs", newdata)
        X = mm.reindex(columns=self.x_columns).to_numpy(dtype=float)
        offset = np.zeros(len(newdata))
        if self.offset is not None:
            if not isinstance(self.offset, str):
                raise LmeFormulaError("the model's offset= was an array: give the offset for "
                                      "newdata as a column name when fitting")
            offset += np.asarray(newdata[self.offset], dtype=float)
        return X, offset, na

    def term_design(self, i: int, newdata: pd.DataFrame) -> tuple[Node, np.ndarray, np.ndarray]:
        """For random-effects term i (lme4's order): its grouping expression, its model matrix
        on new data, and the rows with missing values there."""
        k = int(self._order[i])
        mm, na = self._matrix(f"re_{k}", newdata)
        return self.parsed.bars[k].group, mm.to_numpy(dtype=float), na


@dataclass
class FormulaicModel:
    """The pieces :func:`lmeformula.lFormula` assembles, from the formulaic syntax."""

    frame: ModelFrame
    y: np.ndarray | None
    X_values: np.ndarray
    X_names: list[str]
    X_attrs: dict[str, Any]
    reTrms: ReTrms
    wmsgs: list[str]
    design: FormulaicDesign


def _group_columns(parsed: FormulaicFormula) -> list[str]:
    names: list[str] = []
    for bar in parsed.bars:
        for v in grouping_variables(bar.group):
            if v.id not in names:
                names.append(v.id)
    return names


def formulaic_frame(
    parsed: FormulaicFormula,
    data: Any,
    *,
    subset: Any = None,
    weights: Any = None,
    na_action: str = "omit",
    offset: Any = None,
) -> tuple[ModelFrame, Any, np.ndarray | None]:
    """The model frame of a formulaic-syntax formula and every part materialised on its rows.

    Rows are those in ``subset`` with no missing grouping value, weight or offset (checked
    here), and no missing value in any materialised part (formulaic drops those from all parts
    at once); ``na_action="fail"`` raises if any row was dropped.

    Returns
    -------
    frame
        The :class:`lmeformula.frame.ModelFrame`: the response as materialised, the data's
        columns used, ``(weights)`` and ``(offset)``, on the rows kept.
    matrices
        formulaic's structured ModelMatrices (``lhs``, ``rhs``, ``re_0``...; ``.model_spec``).
    y
        The numeric response, or None for a one-sided formula.
    """
    if na_action not in NA_ACTIONS:
        raise ModelFrameError(f"na_action must be one of {NA_ACTIONS}, not {na_action!r}")
    data = as_pandas(data)
    n = len(data)

    # rows: the subset, then missing grouping values, weights and offsets; formulaic drops
    # the rows missing in the materialised parts below (all parts at once)
    extras: dict[str, np.ndarray] = {}
    if weights is not None:
        extras["(weights)"] = _vector_argument(weights, data, "weights")
    if offset is not None:
        extras["(offset)"] = _vector_argument(offset, data, "offset")
    in_subset = np.ones(n, dtype=bool)
    if subset is not None:
        in_subset = _subset_mask(subset, _LazyColumns(data), n)
    na = np.zeros(n, dtype=bool)
    groups: dict[str, Value] = {}
    for name in _group_columns(parsed):
        if name not in data.columns:
            raise VariableNotFoundError(f"object '{name}' not found")
        groups[name] = column_value(data[name])
        na |= na_mask(groups[name])
    for v in extras.values():
        na |= np.isnan(v)
    pre = np.flatnonzero(in_subset & ~na)
    view = data if pre.shape[0] == n else data.iloc[pre]
    # positions as index: formulaic's output index then says which rows it kept
    view = view.set_axis(pd.RangeIndex(view.shape[0]), axis=0)
    # na_action="fail" is checked below, with R's message, from the rows formulaic dropped
    mms = _materialize(parsed.structure(), view, na_action="drop")
    rows = pre[mms.rhs.index.to_numpy()]
    if rows.shape[0] == 0:
        raise ModelFrameError("0 (non-NA) cases")
    omitted_mask = in_subset.copy()
    omitted_mask[rows] = False
    if omitted_mask.any() and na_action == "fail":
        raise ModelFrameError("missing values in object")
    omitted = np.flatnonzero(omitted_mask)

    # the model frame: the response as materialised, the data's columns used (grouping
    # factors included) on the rows kept, and (weights) / (offset)
    variables: dict[str, Value] = {}
    response = None
    if parsed.response is not None:
        lhs = mms.lhs
        if lhs.shape[1] != 1:
            raise ModelFrameError("response must be numeric (one column; formulaic made "
                                  f"{lhs.shape[1]}: {', '.join(map(str, lhs.columns))})")
        response = str(lhs.columns[0])
        variables[response] = lhs.iloc[:, 0].to_numpy(dtype=float)
    for name in _required_columns(mms.model_spec, data) + list(groups):
        if name in variables:
            continue
        value = groups[name] if name in groups else column_value(data[name])
        value = _take(value, rows)
        if isinstance(value, np.ndarray) and value.dtype.kind == "O":
            value = as_factor(value, name)
        variables[name] = value
    kept_extras = {k: v[rows] for k, v in extras.items()}
    if "(weights)" in kept_extras and (kept_extras["(weights)"] < 0).any():
        raise ModelFrameError("negative weights not allowed")
    frame = ModelFrame(
        index=data.index if rows.shape[0] == n else data.index[rows],
        variables=variables,
        response=response,
        weights=kept_extras.get("(weights)"),
        offset=kept_extras.get("(offset)"),
        na_action=(NAAction(na_action, omitted, [data.index[i] for i in omitted])
                   if omitted.size else None),
        rows=rows,
        nrow_data=n,
        extras=kept_extras,
    )
    y = check_response(frame) if response is not None else None
    return frame, mms, y


def formulaic_model(
    parsed: FormulaicFormula,
    data: Any,
    control: LmerControl,
    *,
    subset: Any = None,
    weights: Any = None,
    na_action: str = "omit",
    offset: Any = None,
    contrasts: Mapping[str, Any] | None = None,
) -> FormulaicModel:
    """Materialise a formulaic-syntax mixed-model formula on data (see the module docstring).

    Parameters
    ----------
    parsed
        From :func:`lmeformula.pyformula.parse_formulaic`.
    data
        Any data frame :func:`lmeformula.dataframe.as_pandas` accepts; never modified.
    control
        The checks' settings.
    subset, weights, na_action, offset
        As for :func:`lmeformula.lFormula`.
    contrasts
        Not used by this syntax (contrasts are written in the formula, ``C(f, contr.sum)``).

    Returns
    -------
    FormulaicModel
    """
    if contrasts:
        raise FormulaError("contrasts= belongs to syntax='R'; in formulaic syntax write the "
                           "coding in the formula, C(f, contr.sum)")
    if not parsed.bars:
        raise FormulaError("No random effects terms specified in formula")
    frame, mms, y = formulaic_frame(parsed, data, subset=subset, weights=weights,
                                    na_action=na_action, offset=offset)

    # random effects: formulaic's matrices, lme4's grouping factors and assembly
    built = []
    for k, bar in enumerate(parsed.bars):
        factor = _grouping_factor(bar.group, frame)
        if np.all(np.asarray(factor.codes) < 0):
            raise RandomEffectsError(f"Invalid grouping factor specification, {bar.group_name}")
        xi = mms[f"re_{k}"]
        if xi.shape[1] == 0:
            raise RandomEffectsError(f"random-effects term has no columns: ({bar.name})")
        built.append(ReTerm(bar.name, bar.group_name, drop_unused_levels(factor),
                            xi.to_numpy(dtype=float), lme4_names(xi.columns)))
    re = re_trms_from_terms(built)
    wmsgs = check_nlevels(re, frame.nrow, control) + check_zdims(re, frame.nrow, control)
    if np.isnan(re.Zt.data).any():
        raise FormulaError("NA in Z (random-effects model matrix): please use "
                           "\"na.action='na.omit'\" or \"na.action='na.exclude'\"")
    wmsgs += check_zrank(re, frame.nrow, control)

    # fixed effects: formulaic's matrix, lme4's rank and scale checks
    X = mms.rhs
    raw_names = [str(c) for c in X.columns]
    names = lme4_names(raw_names)
    values = X.to_numpy(dtype=float)
    check_finite_columns(values, names)
    kept, rank_msg = rank_drop_columns(values, names, control)
    xvals = values[:, kept]
    scale_msg = check_scale_x(xvals, control)
    assign_of = _assign(mms.model_spec.rhs, raw_names)
    X_attrs: dict[str, Any] = {"assign": [assign_of[j] for j in kept], "contrasts": {},
                               "msgScaleX": [scale_msg] if scale_msg else []}
    if rank_msg:
        X_attrs["msgRankdrop"] = rank_msg
        X_attrs["col.dropped"] = {names[j]: j + 1 for j in range(len(names))
                                  if j not in set(kept)}
    design = FormulaicDesign(mms.model_spec, parsed, [raw_names[j] for j in kept], offset,
                             np.asarray(re.ord, dtype=np.int64))
    return FormulaicModel(frame, y, xvals, [names[j] for j in kept], X_attrs, re, wmsgs, design)


def _assign(spec: Any, columns: list[str]) -> list[int]:
    """R's ``assign``: 0 for the intercept, k for the columns of the k-th other term."""
    assign = [0] * len(columns)
    k = 0
    for term, indices in spec.term_indices.items():
        if str(term) == "1":
            continue
        k += 1
        for j in indices:
            assign[j] = k
    return assign
