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

import copy
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import DataMismatchWarning, FormulaicError

from ..checks import (
    check_finite_columns,
    check_finite_z,
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
    check_response,
    extra_columns,
    na_mask,
)
from ..modelmatrix import XAttrs
from ..reterms import ReTerm, ReTrms, _grouping_factor, re_trms_from_terms
from ..transforms import Value, as_factor, check_column_type, column_value, drop_unused_levels
from ..validate import check_allocation
from .parser import FormulaicFormula, plain_message

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
        text = plain_message(err)
        missing = re.search(r"NameError: (?:`([^`]+)` is not present|name '([^']+)' is not "
                            r"defined)", text)
        if missing:
            name = missing.group(1) or missing.group(2)
            raise VariableNotFoundError(
                f"object '{name}' not found: the formulaic syntax sees the data's columns, "
                "numpy (np) and formulaic's transforms only, not the caller's own functions "
                "or variables (by design: compute the column into the data first) "
                f"(formulaic: {text})") from None
        raise FormulaError(f"formulaic: {text}") from None
    except (ValueError, TypeError, KeyError, NameError) as err:
        raise FormulaError(f"formulaic: {type(err).__name__}: {plain_message(err)}") from None


def _required_columns(specs: Any, data: pd.DataFrame) -> list[str]:
    """The data's columns a formulaic spec or formula reads, in the data's order."""
    needed = {str(v) for v in specs.required_variables}
    return [c for c in data.columns if c in needed]


def _check_new_levels(spec: Any, newdata: pd.DataFrame) -> None:
    """Raise R's "factor f has new level(s) ..." for a categorical factor of ``spec`` whose
    values on ``newdata`` include a level not in the fit (the levels formulaic stored)."""
    for factor, (kind, state) in spec.encoder_state.items():
        if getattr(kind, "value", kind) != "categorical" or "categories" not in state:
            continue
        variables = [v for v in spec.factor_variables.get(_factor_key(spec, factor), ())
                     if v in newdata.columns]
        text = str(factor)
        # only a column or C(column, ...): an expression of a column has other levels
        if len(variables) != 1 or not (
                text == variables[0]
                or re.fullmatch(rf"C\({re.escape(variables[0])}\s*(,.*)?\)", text, re.S)):
            continue
        values = newdata[variables[0]]
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object)
        present = values[values.notna()]
        new = sorted({str(x) for x in present[~present.isin(list(state["categories"]))]})
        if new:
            raise LmeFormulaError(f"factor {text} has new level{'s' if len(new) > 1 else ''} "
                                  f"{', '.join(new)}")


def _check_numeric_columns(spec: Any, newdata: pd.DataFrame) -> None:
    """R's ``.checkMFClasses`` for formulaic's specs: a column the fit used as numbers must
    not be a factor or strings in new data (formulaic would dummy-code it). Booleans are
    numbers to formulaic (a logical column is fitted as 0/1), so they pass."""
    for factor, (kind, _state) in spec.encoder_state.items():
        name = str(factor)
        if getattr(kind, "value", kind) != "numerical" or name not in newdata.columns:
            continue
        dtype = newdata[name].dtype
        if isinstance(dtype, pd.CategoricalDtype) or _is_text(newdata[name]):
            supplied = "factor" if isinstance(dtype, pd.CategoricalDtype) else "character"
            raise LmeFormulaError(f'variable \'{name}\' was fitted with type "numeric" but type '
                                  f'"{supplied}" was supplied')


def _is_text(column: pd.Series) -> bool:
    dtype = column.dtype
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return True
    return bool(pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(
        column, skipna=True) in ("string", "mixed", "mixed-integer"))


def _factor_key(spec: Any, name: str) -> Any:
    """The spec's factor object whose expression is ``name`` (encoder_state keys are text)."""
    for f in spec.factor_variables:
        if str(f) == str(name):
            return f
    return name


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
        # a copy: formulaic updates a spec's encoder state in place when new data disagree
        # with it (a numeric column given as strings), which would change the fitted model
        spec = copy.deepcopy(getattr(self.specs, part))
        _check_numeric_columns(spec, newdata)
        # formulaic codes a level the fit never saw as missing (all-zero rows with
        # na_action="ignore", i.e. silently the reference level): refuse it, as R's
        # model.frame(xlev=) does, before materialising
        _check_new_levels(spec, newdata)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataMismatchWarning)
            mm = _materialize(spec, newdata, na_action="ignore")
        for w in caught:
            if not issubclass(w.category, DataMismatchWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                continue
            # missing values are the na mask's business; anything else is a level of a
            # factor expression (not a plain column) the fit never saw
            unseen = re.search(r"\{(.*)\}", str(w.message))
            if unseen and set(map(str.strip, unseen.group(1).split(","))) - {"nan", "None"}:
                raise LmeFormulaError(f"new factor levels in newdata (formulaic: {w.message})")
        na = np.zeros(len(newdata), dtype=bool)
        for name in _required_columns(spec, newdata):
            na |= na_mask(column_value(newdata[name]))
        values = mm.to_numpy(dtype=float)
        if values.size:
            na |= np.isnan(values).any(axis=1)
        return mm, na

    def fixed_matrix(self, newdata: pd.DataFrame, with_offset: bool = True
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """X for new data (the fit's columns), the offset (the fit's ``offset=`` column read
        from ``newdata`` when ``with_offset``, else zero), and the rows with missing values."""
        newdata = as_pandas(newdata, "newdata")
        mm, na = self._matrix("rhs", newdata)
        X = mm.reindex(columns=self.x_columns).to_numpy(dtype=float)
        offset = np.zeros(len(newdata))
        if self.offset is not None and with_offset:
            if not isinstance(self.offset, str):
                raise LmeFormulaError("the model's offset= was an array: give the offset for "
                                      "newdata as a column name when fitting")
            if self.offset not in newdata.columns:
                raise VariableNotFoundError(f"object '{self.offset}' not found: newdata has "
                                            f"no column '{self.offset}' (the model's offset=)")
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
    X_attrs: XAttrs
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


def _drop_unused_categories(view: pd.DataFrame) -> pd.DataFrame:
    """``view`` with the unused categories of its categorical columns dropped (a new frame
    when any is; the caller's data are never modified)."""
    unused = [c for c in view.columns if isinstance(view[c].dtype, pd.CategoricalDtype)
              and view[c].cat.categories.size > view[c].nunique(dropna=True)]
    if not unused:
        return view
    return view.assign(**{c: view[c].cat.remove_unused_categories() for c in unused})


def _check_columns(structure: Any, view: pd.DataFrame) -> None:
    """What formulaic would fail on deep inside, or materialise without bound, refused first:
    a column of a type no formula can use (the R syntax's message, naming it), and a term
    whose dummy columns (levels of its categorical variables multiplied, for every row)
    would not fit in memory (formulaic builds them dense)."""
    levels: dict[str, int] = {}

    def width(name: str, coded: bool) -> int:
        if name not in levels:
            column = view[name]
            dtype = column.dtype
            if isinstance(dtype, pd.CategoricalDtype):
                levels[name] = max(len(dtype.categories), 1)
            elif pd.api.types.is_bool_dtype(dtype):
                levels[name] = 2
            elif coded or not pd.api.types.is_numeric_dtype(dtype):
                levels[name] = max(int(column.nunique(dropna=True)), 1)
            else:
                levels[name] = 1
        return levels[name]

    for part in _parts(structure):
        for term in part:
            elements = float(view.shape[0])
            for factor in term.factors:
                names = [str(v) for v in getattr(factor, "required_variables", ())
                         if str(v) in view.columns]
                for name in names:
                    check_column_type(view[name])
                coded = str(factor).lstrip().startswith("C(")
                elements *= max((width(name, coded) for name in names), default=1)
            check_allocation(elements, f"the model matrix columns of term {term}")


def _check_distinct_columns(mms: Any) -> None:
    """formulaic keys a part's columns by name: a data column named like a column formulaic
    generates (``Intercept``) makes two columns of one name, of which it keeps one, and the
    part silently loses a column. Refuse that."""
    parts = getattr(mms, "_structure", None)
    for mm in (parts.values() if isinstance(parts, Mapping) else [mms]):
        spec = getattr(mm, "model_spec", None)
        if spec is None:
            continue
        indices = [j for ix in spec.term_indices.values() for j in ix]
        if len(indices) != mm.shape[1] or (indices and max(indices) >= mm.shape[1]):
            terms = ", ".join(map(str, spec.term_indices))
            raise FormulaError(
                f"formulaic made two columns of one name for the terms {terms} (its columns: "
                f"{', '.join(map(str, mm.columns))}): a data column named like one formulaic "
                "generates, such as 'Intercept', must be renamed")


def _parts(structure: Any) -> list[Any]:
    """The simple formulas of a structured formulaic formula."""
    parts = getattr(structure, "_structure", None)
    return list(parts.values()) if isinstance(parts, Mapping) else [structure]


def formulaic_frame(
    parsed: FormulaicFormula,
    data: Any,
    *,
    subset: Any = None,
    weights: Any = None,
    na_action: str = "omit",
    offset: Any = None,
    response: Callable[[ModelFrame], np.ndarray] | None = None,
) -> tuple[ModelFrame, Any, np.ndarray | None]:
    """The model frame of a formulaic-syntax formula and every part materialised on its rows.

    Rows are those in ``subset`` with no missing grouping value, weight or offset (checked
    here), and no missing value in any materialised part (formulaic drops those from all parts
    at once); ``na_action="fail"`` raises if any row was dropped.

    ``response`` (glmer's: :func:`lmeformula.glmodular.glmer_response`) turns the frame's
    response into y instead of lmer's numeric check; with it, a response that is a plain
    column of the data enters the frame as that column (a factor or logical as such, not
    formulaic's dummy columns), as in R's model frame.

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
    extras = extra_columns(weights, offset, data)
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
    # na_action="fail" is checked below, with R's message, from the rows formulaic dropped.
    # formulaic takes a categorical's levels from its dtype, unused ones included; R's model
    # frame drops unused levels (after the subset and the missing rows), so materialise on
    # the used levels only, once more if formulaic's own missing rows left a level unused
    structure = parsed.structure()
    view = _drop_unused_categories(view)
    _check_columns(structure, view)
    mms = _materialize(structure, view, na_action="drop")
    kept = mms.rhs.index.to_numpy()
    if kept.shape[0] < view.shape[0]:
        trimmed = _drop_unused_categories(view.iloc[kept])
        if any(trimmed[c].dtype != view[c].dtype for c in view.columns):
            view = trimmed.set_axis(pd.RangeIndex(kept.shape[0]), axis=0)
            mms = _materialize(structure, view, na_action="drop")
            kept = kept[mms.rhs.index.to_numpy()]
    _check_distinct_columns(mms)
    rows = pre[kept]
    if rows.shape[0] == 0:
        raise ModelFrameError("0 (non-NA) cases")
    omitted_mask = in_subset.copy()
    omitted_mask[rows] = False
    omitted = np.flatnonzero(omitted_mask)
    if omitted.size and na_action == "fail":
        raise ModelFrameError("missing values in object")
    if omitted.size and na_action == "pass":
        # formulaic drops a row missing in any part, and the rows missing a grouping value,
        # weight or offset were set aside above; R's na.pass keeps them all, and lme4 then
        # stops on the NA: stop too rather than fit the rows that are left
        at = ", ".join(str(data.index[i]) for i in omitted[:5])
        more = ", ..." if omitted.size > 5 else ""
        raise ModelFrameError(f"NA in the model's variables (rows {at}{more}) with "
                              "na_action='pass': lme4 stops on NA in X, Z or y; use "
                              "na_action='omit' or 'exclude'")

    # the model frame: the response as materialised, the data's columns used (grouping
    # factors included) on the rows kept, and (weights) / (offset)
    variables: dict[str, Value] = {}
    response_col: str | None = None
    if parsed.response is not None:
        lhs = mms.lhs
        plain = str(parsed.response).strip()
        if response is not None and plain in data.columns:
            # glmer: a factor / logical response column as R's frame holds it
            value = _take(column_value(data[plain]), rows)
            if isinstance(value, np.ndarray) and value.dtype.kind == "O":
                value = as_factor(value, plain)
            variables[plain] = value
            response_name = plain
        elif lhs.shape[1] != 1:
            # in formulaic, '/' is nesting (a/b = a + a:b) even on the left side
            written = parsed.text.split("~", 1)[0].strip()
            hint = (f"; a ratio is written {{{written}}} in formulaic syntax ('/' nests)"
                    if "/" in written and not written.startswith(("{", "I(")) else "")
            raise ModelFrameError("response must be numeric (one column; formulaic made "
                                  f"{lhs.shape[1]}: {', '.join(map(str, lhs.columns))}){hint}")
        else:
            response_name = str(lhs.columns[0])
            variables[response_name] = lhs.iloc[:, 0].to_numpy(dtype=float)
        response_col = response_name
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
        response=response_col,
        weights=kept_extras.get("(weights)"),
        offset=kept_extras.get("(offset)"),
        na_action=(NAAction(na_action, omitted, [data.index[i] for i in omitted])
                   if omitted.size else None),
        kept_rows=None if np.array_equal(rows, np.arange(n)) else rows,
        nrow_data=n,
        extras=kept_extras,
    )
    y = None
    if response_col is not None:
        y = (check_response if response is None else response)(frame)
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
    response: Callable[[ModelFrame], np.ndarray] | None = None,
    allow_n: bool = False,
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
    response
        The response step (default lmer's numeric check; glmer passes
        :func:`lmeformula.glmodular.glmer_response`), see :func:`formulaic_frame`.
    allow_n
        glmer's identifiability checks (lme4's ``allow.n = TRUE``).

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
                                    na_action=na_action, offset=offset, response=response)

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
    nre = {t.key: t.nl * t.nc for t in re.terms}  # rows of each Zt_i, what checkZdims reads
    wmsgs = (check_nlevels(re.flist, frame.nrow, control, allow_n=allow_n)
             + check_zdims(nre, frame.nrow, control, allow_n=allow_n))
    check_finite_z({t.name: t.X for t in re.terms})  # Zt's values, without building Zt
    wmsgs += check_zrank(re.make_zt, frame.nrow, control, q=re.q)

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
    X_attrs = XAttrs(assign=[assign_of[j] for j in kept], contrasts={},
                     msgScaleX=[scale_msg] if scale_msg else [],
                     msgRankdrop=rank_msg or None,
                     col_dropped={names[j]: j + 1 for j in range(len(names))
                                  if j not in set(kept)} if rank_msg else None)
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
