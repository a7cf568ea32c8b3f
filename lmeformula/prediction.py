"""Predictions and simulation from a fitted model (lme4's ``predict.merMod``, ``simulate``).

New data go through the fit's own recipe: the same variable expressions, the fit's factor
levels and contrasts, the parameters of data-dependent transforms (``poly``, ``scale``) stored
when the model frame was built, the rank-dropped columns removed, and ``offset()`` terms
re-evaluated. Random-effects terms use the fitted conditional modes; levels not seen in the fit
are an error unless ``allow_new_levels``, in which case their random effects are zero.

The functions read a fitted model through :class:`FittedModel`, a small typed protocol of what
they need (the ``lFormula`` result, β, b, θ, σ, the prior weights, ``vcov``), which
:class:`lmeformula.mermod.LmerMod` and :class:`lmeformula.glmermod.GlmerMod` satisfy. This module
imports neither: it sits below the fitted model in the pipeline, and the model's ``predict``,
``simulate``, ``fitted`` and ``residuals`` call down into it (:func:`naresid` pads values back
to the data's rows under ``na_action="exclude"``).
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .dataframe import as_pandas
from .errors import (
    ArgumentError,
    FormulaError,
    LmeFormulaError,
    LmeFormulaWarning,
    ModelFrameError,
    RandomEffectsError,
    VariableNotFoundError,
    caller_stacklevel,
)
from .formula.ast import BinOp, Name, Node, Paren, deparse
from .formula.bars import findbars, interaction_parts
from .formula.parser import parse_expression
from .formula.terms import Terms, terms
from .frame import _LazyColumns, na_mask, r_argument
from .modelmatrix import model_matrix
from .transforms import (
    DroppedContrastsFactor,
    Value,
    as_factor,
    column_value,
    evaluate,
    logical_factor,
)
from .validate import as_generator, check_allocation, check_count, check_flag

if TYPE_CHECKING:
    from .frame import ModelFrame
    from .lformula import LFormula
    from .reterms import ReTerm

__all__ = ["FittedModel", "naresid", "predict", "select_terms", "simulate"]


class FittedModel(Protocol):
    """What prediction and simulation read from a fitted model (LmerMod and GlmerMod have it).

    Attributes
    ----------
    lformula
        The ``lFormula`` (or ``glFormula``) result the model was fitted from: the frame's recipe
        for new data, X, the random-effects structures, the call's offset and contrasts.
    beta
        The fixed effects, unnamed.
    b
        The conditional modes of the random effects, ``Λu``, in Zt's row order.
    theta
        The covariance parameters θ.
    sigma
        The residual standard deviation.
    weights
        The prior weights (ones when none were given).
    """

    @property
    def lformula(self) -> LFormula: ...

    @property
    def beta(self) -> np.ndarray: ...

    @property
    def b(self) -> np.ndarray: ...

    @property
    def theta(self) -> pd.Series: ...

    @property
    def sigma(self) -> float: ...

    @property
    def weights(self) -> np.ndarray: ...

    def vcov(self) -> pd.DataFrame:
        """The covariance of the fixed effects."""
        ...


class FactoredModel(FittedModel, Protocol):
    """A fitted GLMM as its predictions' standard errors read it: the final PIRLS step's
    factor, by lme4's names (``getME(m, "L")``, ``RX``, ``RZX``)."""

    def getME(self, name: str) -> Any:
        """lme4's ``getME``."""
        ...

    def RX(self) -> np.ndarray:
        """The fixed effects' Cholesky factor."""
        ...

    def RZX(self) -> np.ndarray:
        """The cross term of the factor."""
        ...


def _dims(m: FittedModel) -> tuple[int, int, int]:
    """(n, p, q): observations, fixed effects, random effects."""
    n, p = m.lformula.X_values.shape
    return n, p, m.lformula.reTrms.q


def lambdat_at(m: FittedModel) -> sp.csc_matrix:
    """Λ' at the model's θ (lme4's ``getME(m, "Lambdat")``)."""
    re = m.lformula.reTrms
    lambdat = re.Lambdat.copy()
    lambdat.data = np.asarray(m.theta, dtype=float)[re.Lind]
    return lambdat


def naresid(lformula: LFormula, values: np.ndarray, name: str) -> pd.Series:
    """R's ``naresid``/``napredict``: values of the rows used, as a Series with the data's
    index; under ``na_action="exclude"`` padded with NaN at the rows NA handling removed."""
    frame = lformula.frame
    idx = lformula.fr.index
    series = pd.Series(values, index=idx, name=name)
    na = frame.na_action
    if na is not None and na.kind == "exclude":
        full = pd.Series(np.nan, index=_full_index(frame, idx), name=name)
        full.loc[idx] = values
        return full
    return series


def _full_index(frame: ModelFrame, kept: pd.Index) -> pd.Index:
    """The data's index: the kept rows' labels and the removed rows', in the data's order."""
    assert frame.na_action is not None
    labels = list(kept)
    omitted = frame.na_action.labels
    positions = list(frame.rows) + list(frame.na_action.omitted)
    order = np.argsort(positions, kind="stable")
    both = labels + list(omitted)
    return pd.Index([both[i] for i in order])


def _is_na_form(re_form: Any) -> bool:
    if re_form is None:
        return False
    if isinstance(re_form, float) and math.isnan(re_form):
        return True
    return isinstance(re_form, str) and re_form.replace(" ", "") in ("~0", "NA")


def select_terms(m: FittedModel, re_form: Any) -> list[int]:
    """Indices (in lme4's term order) of the random-effects terms ``re_form`` asks for."""
    re = m.lformula.reTrms
    if re_form is None:
        return list(range(len(re.terms)))
    if _is_na_form(re_form):
        return []
    if not isinstance(re_form, str):
        raise ArgumentError("re_form must be None, NaN, '~0' or a formula string like '~(1|g)'")
    node = parse_expression(re_form)
    wanted = [deparse(b) for b in findbars(node.operand if hasattr(node, "operand") else node)]
    names = [t.name for t in re.terms]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise RandomEffectsError(
            f"random-effects terms in re_form are not in the model: {', '.join(missing)}")
    return [names.index(w) for w in wanted]


def _recode(value: Value, trained: Value, name: str, *, for_grouping: bool = False) -> Value:
    """Code a new-data value with the fit's factor levels (R's ``xlev``)."""
    if isinstance(trained, np.ndarray) and trained.dtype.kind == "b":
        # a logical variable is a factor of both levels FALSE/TRUE to model.matrix (whichever
        # occur): new data with one of the two values keep them
        trained = logical_factor(trained)
    if isinstance(trained, pd.Categorical):
        labels = _labels(value, name)
        categories = list(map(str, trained.categories))
        lookup = {c: i for i, c in enumerate(categories)}
        codes = np.array([-1 if lab is None else lookup.get(lab, -2) for lab in labels])
        unseen = {lab for lab, c in zip(labels, codes, strict=True)
                  if c == -2 and lab is not None}
        new = [lab for lab in _level_order(value, name) if lab in unseen] if unseen else []
        if new and not for_grouping:
            raise LmeFormulaError(f"factor {name} has new level{'s' if len(new) > 1 else ''} "
                                  f"{', '.join(new)}")
        codes = np.where(codes == -2, -1, codes)
        # a C() factor whose contrasts the fit's frame dropped keeps the default contrasts
        # (lme4's predict passes X's contrasts attribute to model.matrix)
        if isinstance(trained, DroppedContrastsFactor):
            return DroppedContrastsFactor.from_codes(codes, categories=pd.Index(categories),
                                                     ordered=trained.ordered)
        return pd.Categorical.from_codes(codes, categories=pd.Index(categories),
                                         ordered=trained.ordered)
    return value


def _level_order(value: Value, name: str) -> list[str]:
    """The new data's levels in the order R's model.frame lists new ones: a factor's own
    (cut(x, 3) on new data: its intervals left to right), numbers sorted as numbers,
    strings in code-point order (R's as.factor under LC_ALL=C)."""
    if isinstance(value, pd.Categorical):
        return [str(c) for c in value.categories]
    arr = np.asarray(value)
    if arr.dtype.kind in "iuf":
        return [str(c) for c in as_factor(arr, name).categories]
    return sorted({lab for lab in _labels(value, name) if lab is not None})


def _check_numeric_kept(value: Value, trained: Value | None, name: str) -> None:
    """R's ``.checkMFClasses``: a variable fitted as numeric must not be a factor or strings
    in new data (lme4 itself fails later, with "non-conformable arguments")."""
    if (isinstance(trained, np.ndarray) and trained.dtype.kind in "iuf"
            and (isinstance(value, pd.Categorical)
                 or (isinstance(value, np.ndarray) and value.dtype.kind in "OUSb"))):
        supplied = ("factor" if isinstance(value, pd.Categorical)
                    else "logical" if value.dtype.kind == "b" else "character")
        raise LmeFormulaError(f'variable \'{name}\' was fitted with type "numeric" but type '
                              f'"{supplied}" was supplied')


def _labels(value: Value, name: str) -> list[str | None]:
    if isinstance(value, pd.Categorical):
        return [None if pd.isna(v) else str(v) for v in value.astype(object)]
    arr = np.asarray(value)
    if arr.dtype.kind == "b":
        return ["TRUE" if v else "FALSE" for v in arr]
    if arr.dtype.kind in "iuf":
        f = as_factor(arr, name)
        return [None if pd.isna(v) else str(v) for v in f.astype(object)]
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            for v in arr]


def _new_variables(m: FittedModel, newdata: pd.DataFrame, nodes: list[Node]
                   ) -> dict[str, Value]:
    """Evaluate variable expressions on new data with the fit's transforms and levels.

    As R's ``predvars`` (``makepredictcall``), only a variable's own call keeps the training
    data's parameters (``scale(x)``, ``poly(x, 2)``, ``ns(x, 3)``); a data-dependent call
    inside another is evaluated afresh on the new data (``ns(scale(x), 3)``,
    ``log(scale(x))``: R keeps the inner expression as written)."""
    frame = m.lformula.frame
    columns = _LazyColumns(newdata)
    out: dict[str, Value] = {}
    for node in nodes:
        key = deparse(node)
        if key in out:
            continue
        state = {key: copy.deepcopy(frame.state[key])} if key in frame.state else {}
        value = evaluate(node, columns, len(newdata), state)
        trained = frame.variables.get(key)
        _check_numeric_kept(value, trained, key)
        if isinstance(value, np.ndarray) and value.dtype.kind == "O":
            value = (logical_factor(value)
                     if pd.api.types.infer_dtype(value, skipna=True) == "boolean"
                     else as_factor(value, key))
        out[key] = _recode(value, trained, key) if trained is not None else value
    return out


def _fixed_matrix(m: FittedModel, newdata: pd.DataFrame, apply_offset_arg: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X for new data (the fit's columns), the offset, and rows with missing values.

    The offset is the formula's ``offset()`` terms evaluated in ``newdata``. The fit's
    ``offset=`` argument is added only with ``apply_offset_arg``: lme4 1.1-31's
    ``predict.merMod`` drops it on new data (lme4 issue 447, still open), and the default
    matches lme4, with a warning naming the option."""
    pf = m.lformula
    design = getattr(pf, "design", None)
    arg = pf.call.get("offset") if design is None else design.offset
    if arg is not None and not apply_offset_arg:
        warnings.warn("the model's offset= argument is not applied to newdata, as lme4 "
                      "1.1-31 leaves it out of predictions and simulations there; "
                      "predict(..., apply_offset_arg=True) applies it, and offset(...) "
                      "written in an R formula always is", LmeFormulaWarning,
                      stacklevel=caller_stacklevel())
    if design is not None:  # syntax="formulaic": formulaic's ModelSpec on the new data
        return design.fixed_matrix(newdata, with_offset=apply_offset_arg)
    fixed: Terms = pf.parsed.fixed
    nodes = [fixed.variables[i] for t in fixed.terms for i in t] + list(fixed.offsets)
    values = _new_variables(m, newdata, nodes)
    n = len(newdata)
    na = np.zeros(n, dtype=bool)
    for v in values.values():
        na |= na_mask(v)
    mm = model_matrix(fixed, values, n, pf.call.get("contrasts"))
    cols = [mm.columns.index(c) for c in pf.X.columns]
    offset = np.zeros(n)
    for node in fixed.offsets:
        offset += np.asarray(values[deparse(node)], dtype=float)
    if arg is not None and apply_offset_arg:
        if not isinstance(arg, str):
            raise LmeFormulaError("the model's offset= was an array: give the offset for "
                                  "newdata as a column name when fitting")
        if arg in newdata.columns:
            offset += np.asarray(newdata[arg], dtype=float)
        else:  # an R expression of the columns (offset = "log(t)"), evaluated in newdata
            try:
                value = r_argument(arg, newdata, "offset", nan_warning=False)
            except ModelFrameError as err:
                raise VariableNotFoundError(f"{err}: newdata has no column '{arg}' and it "
                                            "cannot be evaluated there (the model's "
                                            "offset=)") from None
            offset += np.asarray(value, dtype=float)
    return mm.values[:, cols], offset, na


def _group_codes(term: ReTerm, group: Node, newdata: pd.DataFrame, allow_new_levels: bool
                 ) -> np.ndarray:
    """Codes of new data in a term's grouping factor: -1 for new levels (when allowed)."""
    labels = _group_labels(group, newdata)
    if any(lab is None for lab in labels) and not allow_new_levels:
        raise RandomEffectsError("NAs are not allowed in prediction data for grouping "
                                 "variables unless allow.new.levels is TRUE")
    lookup = {c: i for i, c in enumerate(map(str, term.factor.categories))}
    codes = np.array([-1 if lab is None else lookup.get(lab, -2) for lab in labels])
    if (codes == -2).any() and not allow_new_levels:
        new = list(dict.fromkeys(lab for lab, c in zip(labels, codes, strict=True)
                                 if c == -2 and lab is not None))
        raise RandomEffectsError(_new_levels_message(new))
    return np.where(codes < 0, -1, codes)


def _new_levels_message(new: list[str]) -> str:
    """lme4's ``levelfun`` message: a list longer than 60 characters is cut at 60 and its
    last (partial) item replaced by ``...``."""
    text = ", ".join(new)
    if len(text) > 60:  # R: gsub(",[^,]*$", ", ...", substr(text, 1, 60))
        text = text[:60]
        if "," in text:
            text = text[: text.rindex(",")] + ", ..."
    return f"new levels detected in newdata: {text}"


def _r_level_order(m: FittedModel, group: Node, new: list[str], newdata: pd.DataFrame
                   ) -> list[str]:
    """New levels of a grouping factor in the order of lme4's ``levels(factor(x))`` on the
    new data: a factor's (or a character column's) new levels come after the fit's in order
    of appearance (R's ``xlev``), so those of an interaction ``a:b`` follow a's levels, then
    b's; a numeric grouping variable's are sorted as numbers."""
    parts = interaction_parts(group)
    if len(parts) < 2:
        trained = m.lformula.frame.variables.get(deparse(parts[0]))
        if isinstance(trained, np.ndarray) and trained.dtype.kind in "iuf":
            # lmer turns only character columns into factors in its frame (factorize), so
            # a numeric grouping variable has no xlev: factor() of the new values sorts
            # them as numbers
            try:
                return sorted(new, key=float)
            except ValueError:
                return new
        return new
    keys: list[dict[str, int]] = []
    for part in parts:
        trained = m.lformula.frame.variables.get(deparse(part))
        if not isinstance(trained, pd.Categorical):
            return new
        levels = list(dict.fromkeys([*map(str, trained.categories),
                                     *(lab for lab in _group_labels(part, newdata)
                                       if lab is not None)]))
        keys.append({lab: k for k, lab in enumerate(levels)})
    # each new label is the parts' labels joined by ":" (a level may itself contain ":")
    columns = [_group_labels(part, newdata) for part in parts]
    split = {":".join(row): row for row in zip(*columns, strict=True) if None not in row}
    if any(lab not in split for lab in new):
        return new
    return sorted(new, key=lambda lab: tuple(k[v] for k, v in zip(keys, split[lab],
                                                                   strict=True)))


def _check_new_levels(m: FittedModel, newdata: pd.DataFrame, which: list[int],
                      formula_order: bool) -> None:
    """lme4's checks of new data's grouping factors, in lme4's order, so that its error names
    the same levels: ``mkNewReTrms`` builds the terms on the new data, sorted by decreasing
    numbers of levels there (``rev(order(nl))``, only when not already in that order) from
    the formula's order (``re.form``'s, or the model's when ``re_form`` is None), refuses
    missing grouping values, then reports the new levels of the first factor that has some.
    """
    if getattr(m.lformula, "design", None) is not None:  # formulaic: checked term by term
        return
    re = m.lformula.reTrms
    bars = {deparse(b): b for b in m.lformula.parsed.bars}
    names = list(bars)
    if any(re.terms[i].name not in bars for i in which):
        return
    if formula_order:
        which = sorted(which, key=lambda i: names.index(re.terms[i].name))
    _check_groups(m, newdata, [(re.terms[i], bars[re.terms[i].name].right) for i in which])


def _check_groups(m: FittedModel, newdata: pd.DataFrame, groups: list[tuple[ReTerm, Node]]
                  ) -> None:
    """:func:`_check_new_levels` for (a fitted term on the factor, grouping expression)
    pairs in the formula's order."""
    entries = [(deparse(group), term, group, _group_labels(group, newdata))
               for term, group in groups]
    nl = [len({lab for lab in e[3] if lab is not None}) for e in entries]
    if any(b > a for a, b in itertools.pairwise(nl)):
        ascending = sorted(range(len(nl)), key=lambda k: nl[k])
        entries = [entries[k] for k in reversed(ascending)]
    if any(lab is None for e in entries for lab in e[3]):
        raise RandomEffectsError("NAs are not allowed in prediction data for grouping "
                                 "variables unless allow.new.levels is TRUE")
    seen: set[str] = set()
    for name, term, group, labels in entries:
        if name in seen:
            continue
        seen.add(name)
        known = set(map(str, term.factor.categories))
        new = [lab for lab in dict.fromkeys(labels) if lab is not None and lab not in known]
        if new:
            raise RandomEffectsError(_new_levels_message(_r_level_order(m, group, new,
                                                                        newdata)))


def _reform_bars(m: FittedModel, re_form: Any) -> list[BinOp] | None:
    """``re_form``'s bars when they are not all terms of the model (None otherwise): lme4
    matches ``re.form`` by grouping factor and column names, so ``~(1 | g)`` of a model with
    ``(x | g)`` takes the intercepts of g's conditional modes, and ``~(x || g)`` or
    ``~(x | g)`` of ``(1 | g) + (0 + x | g)`` all of them."""
    if not isinstance(re_form, str) or _is_na_form(re_form):
        return None
    node = parse_expression(re_form)
    bars = findbars(node.operand if hasattr(node, "operand") else node)
    names = {t.name for t in m.lformula.reTrms.terms}
    if all(deparse(b) in names for b in bars):
        return None
    return list(bars)


def _bar_variables(bar: BinOp) -> list[str]:
    lhs = terms(bar.left)
    return [deparse(lhs.variables[k]) for t in lhs.terms for k in t] + \
        [deparse(p) for p in interaction_parts(bar.right)]


def _random_part_by_columns(m: FittedModel, newdata: pd.DataFrame | None, bars: list[BinOp],
                            n: int, allow_new_levels: bool) -> tuple[np.ndarray, np.ndarray]:
    """The random part of lme4's prediction for a ``re.form`` whose terms are not the
    model's (``mkNewReTrms``'s ``get_re``): for each of its bars, the columns of the bar's
    model matrix on the data times the conditional modes of the same names on its grouping
    factor (zero for levels the fit never saw, when allowed)."""
    pf = m.lformula
    re = pf.reTrms
    factors = list(re.flist)
    # lme4 evaluates re.form on the model's random-effects frame: its variables only
    known = {v for b in pf.parsed.bars for v in _bar_variables(b)}
    b = m.b
    total = np.zeros(n)
    na = np.zeros(n, dtype=bool)
    plan = []
    for bar in bars:
        name = deparse(bar.right)
        if name not in factors:
            raise RandomEffectsError("grouping factors specified in re.form that were not "
                                     "present in original model")
        if any(v not in known for v in _bar_variables(bar)):
            raise RandomEffectsError("model frame and formula mismatch in model.matrix(): "
                                     f"re.form's {deparse(bar)} uses variables that are not "
                                     "in the model's random-effects terms")
        on_factor = [i for i, a in enumerate(re.assign) if factors[a] == name]
        columns = {c: (i, k) for i in on_factor for k, c in enumerate(re.terms[i].cnms)}
        plan.append((bar, on_factor, columns))
    if newdata is not None and not allow_new_levels:
        _check_groups(m, newdata, [(re.terms[on[0]], bar.right) for bar, on, _ in plan])
    for bar, on_factor, columns in plan:
        lhs = terms(bar.left)
        nodes = [lhs.variables[k] for t in lhs.terms for k in t]
        if newdata is None:
            values = {deparse(nd): pf.frame.variables[deparse(nd)] for nd in nodes}
            codes = np.asarray(re.flist[deparse(bar.right)].codes)
        else:
            values = _new_variables(m, newdata, nodes)
            codes = _group_codes(re.terms[on_factor[0]], bar.right, newdata, allow_new_levels)
            for v in values.values():
                na |= na_mask(v)
        mm = model_matrix(lhs, values, n)
        missing = [c for c in mm.columns if c not in columns]
        if missing:
            raise RandomEffectsError("random effects specified in re.form that were not "
                                     f"present in original model {', '.join(missing)}")
        ok = codes >= 0
        xi = np.asarray(mm.values, dtype=float)
        for j, c in enumerate(mm.columns):
            i, k = columns[c]
            term = re.terms[i]
            modes = b[re.Gp[i] : re.Gp[i + 1]].reshape(term.nl, term.nc)
            total[ok] += xi[ok, j] * modes[codes[ok], k]
    return total, na


def _group_labels(group: Node, newdata: pd.DataFrame) -> list[str | None]:
    if isinstance(group, Paren):
        return _group_labels(group.expr, newdata)
    if isinstance(group, Name):
        if group.id not in newdata.columns:
            raise LmeFormulaError(f"object '{group.id}' not found in newdata")
        # the column as the fit read it (numbers labelled as R prints them: 308.0 is level
        # "308", as in R; logicals FALSE/TRUE)
        return _labels(column_value(newdata[group.id]), group.id)
    if isinstance(group, BinOp) and group.op == ":":
        left = _group_labels(group.left, newdata)
        right = _group_labels(group.right, newdata)
        return [None if a is None or b is None else f"{a}:{b}"
                for a, b in zip(left, right, strict=True)]
    # an expression of the data's columns (factor(k)), evaluated in newdata as the fit
    # evaluated it in the model frame (reterms._grouping_factor)
    try:
        value = evaluate(group, _LazyColumns(newdata), len(newdata))
    except (FormulaError, TypeError) as err:
        raise RandomEffectsError(f"cannot evaluate grouping factor {deparse(group)} in "
                                 f"newdata: {err}") from None
    return _labels(value, deparse(group))


def _term_design(m: FittedModel, newdata: pd.DataFrame, i: int, allow_new_levels: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For term i on new data: level codes (-1 where none), X_i, and rows with missing X_i."""
    term = m.lformula.reTrms.terms[i]
    design = getattr(m.lformula, "design", None)
    if design is not None:  # syntax="formulaic": the bar's ModelSpec on the new data
        group, xi, na = design.term_design(i, newdata)
        return _group_codes(term, group, newdata, allow_new_levels), xi, na
    bar = next(b for b in m.lformula.parsed.bars if deparse(b) == term.name)
    codes = _group_codes(term, bar.right, newdata, allow_new_levels)
    lhs = terms(bar.left)
    values = _new_variables(m, newdata, [lhs.variables[k] for t in lhs.terms for k in t])
    na = np.zeros(len(newdata), dtype=bool)
    for v in values.values():
        na |= na_mask(v)
    return codes, model_matrix(lhs, values, len(newdata)).values, na


def _random_part(m: FittedModel, newdata: pd.DataFrame, which: list[int], allow_new_levels: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    re = m.lformula.reTrms
    n = len(newdata)
    total = np.zeros(n)
    na = np.zeros(n, dtype=bool)
    b = m.b
    for i in which:
        term = re.terms[i]
        codes, xi, na_i = _term_design(m, newdata, i, allow_new_levels)
        na |= na_i
        modes = b[re.Gp[i] : re.Gp[i + 1]].reshape(term.nl, term.nc)
        ok = codes >= 0
        total[ok] += np.einsum("ij,ij->i", xi[ok], modes[codes[ok]])
    return total, na


def predict(m: FittedModel, newdata: pd.DataFrame | None = None, re_form: Any = None,
            allow_new_levels: bool = False, se_fit: bool = False, *,
            apply_offset_arg: bool = False) -> pd.Series | pd.DataFrame:
    """lme4's ``predict``: with all random effects (``re_form=None``), none (``"~0"`` or NaN),
    or those of a formula (``"~(1|Subject)"``).

    Parameters
    ----------
    m
        The fitted model.
    newdata
        New data; None predicts for the fitted data.
    re_form
        Which random-effects terms to include. As in lme4, a formula's bars are matched by
        grouping factor and column names: ``"~(1 | g)"`` of a model with ``(x | g)`` adds
        the intercepts' conditional modes only (``se_fit`` needs the model's own terms).
    allow_new_levels
        Give population-level random effects (zero) to levels not seen in the fit and to
        missing grouping values, instead of an error.
    se_fit
        Also return standard errors, conditional on θ (for ``re_form=None`` the joint
        uncertainty of β and the conditional modes, as lme4 1.1-35's ``se.fit``).
    apply_offset_arg
        With ``newdata``, add the fit's ``offset=`` argument evaluated there. lme4 1.1-31
        leaves it out (its issue 447), and so does the default, with a warning; the
        formula's ``offset()`` terms are always evaluated in ``newdata``.

    Returns
    -------
    pandas.Series, or a DataFrame with columns ``fit`` and ``se_fit``.
    """
    check_flag(allow_new_levels, "allow_new_levels")
    check_flag(se_fit, "se_fit")
    check_flag(apply_offset_arg, "apply_offset_arg")
    bars = None if getattr(m.lformula, "design", None) is not None else \
        _reform_bars(m, re_form)
    if bars is not None:
        if se_fit:
            raise LmeFormulaError("se_fit needs re_form to name the model's own terms (or be "
                                  "None or NaN)")
        return _predict_by_columns(m, newdata, bars, allow_new_levels, apply_offset_arg)
    which = select_terms(m, re_form)
    if newdata is None:
        pf = m.lformula
        X = pf.X_values
        offset = np.zeros(X.shape[0]) if pf.offset is None else pf.offset
        eta = X @ m.beta + offset
        re = pf.reTrms
        b = m.b
        for i in which:
            eta += re.Ztlist[re.terms[i].key].T @ b[re.Gp[i] : re.Gp[i + 1]]
        fit = naresid(pf, eta, "fit")
        if not se_fit:
            return fit
        se = _se_fit(m, X, which, None)
        return pd.DataFrame({"fit": fit, "se_fit": naresid(pf, se, "se_fit")})
    newdata = as_pandas(newdata, "newdata")
    if len(newdata) == 0:
        raise ModelFrameError("newdata has no rows: nothing to predict")
    X, offset, na = _fixed_matrix(m, newdata, apply_offset_arg)
    eta = X @ m.beta + offset
    if not allow_new_levels:
        _check_new_levels(m, newdata, which, formula_order=re_form is None)
    rand, na_re = _random_part(m, newdata, which, allow_new_levels)
    eta = eta + rand
    eta[na | na_re] = np.nan
    fit = pd.Series(eta, index=newdata.index, name="fit")
    if not se_fit:
        return fit
    se = _se_fit(m, X, which, newdata, allow_new_levels)
    se[na | na_re] = np.nan
    return pd.DataFrame({"fit": fit, "se_fit": se}, index=newdata.index)


def _predict_by_columns(m: FittedModel, newdata: pd.DataFrame | None, bars: list[BinOp],
                        allow_new_levels: bool, apply_offset_arg: bool) -> pd.Series:
    """:func:`predict` with a ``re_form`` whose terms are not the model's (see
    :func:`_reform_bars`)."""
    pf = m.lformula
    if newdata is None:
        X = pf.X_values
        offset = np.zeros(X.shape[0]) if pf.offset is None else pf.offset
        rand, _ = _random_part_by_columns(m, None, bars, X.shape[0], allow_new_levels)
        return naresid(pf, X @ m.beta + offset + rand, "fit")
    newdata = as_pandas(newdata, "newdata")
    if len(newdata) == 0:
        raise ModelFrameError("newdata has no rows: nothing to predict")
    X, offset, na = _fixed_matrix(m, newdata, apply_offset_arg)
    rand, na_re = _random_part_by_columns(m, newdata, bars, len(newdata), allow_new_levels)
    eta = X @ m.beta + offset + rand
    eta[na | na_re] = np.nan
    return pd.Series(eta, index=newdata.index, name="fit")


def _se_fit(m: FittedModel, X: np.ndarray, which: list[int], newdata: pd.DataFrame | None,
            allow_new_levels: bool = False) -> np.ndarray:
    if getattr(m, "is_glmm", False):
        return _se_fit_glmm(cast(FactoredModel, m), X, which, newdata, allow_new_levels)
    vcov = m.vcov().to_numpy()
    if not which:
        return np.sqrt(np.einsum("ij,jk,ik->i", X, vcov, X))
    # joint covariance of (β, b) given θ: σ² [Λ 0; 0 I] C⁻¹ [Λ' 0; 0 I], C the PLS matrix
    re = m.lformula.reTrms
    n, p, q = _dims(m)
    if q + p > 5000:
        raise LmeFormulaError("se_fit with random effects needs q + p <= 5000")
    check_allocation(float(n if newdata is None else len(newdata)) * (q + p),
                     "se_fit's design with random effects (rows x (q + p))")
    lam = lambdat_at(m).T.toarray()
    zt = re.Zt
    w = m.weights
    ztwz = (zt @ sp.diags(w) @ zt.T).toarray()  # q x q; no n x q dense matrix
    a = lam.T @ ztwz @ lam + np.eye(q)
    xw = m.lformula.X_values * w[:, None]
    bmat = lam.T @ np.asarray(zt @ xw)
    c = np.block([[a, bmat], [bmat.T, m.lformula.X_values.T @ xw]])
    cinv = np.linalg.inv(c)
    scale = np.block([[lam, np.zeros((q, p))], [np.zeros((p, q)), np.eye(p)]])
    joint = m.sigma**2 * scale @ cinv @ scale.T
    if newdata is None:
        zsel = np.zeros((n, q))
        for i in which:
            zsel[:, re.Gp[i] : re.Gp[i + 1]] = re.Ztlist[re.terms[i].key].T.toarray()
    else:
        zsel = _new_z(m, newdata, which, allow_new_levels)
    design = np.hstack([zsel, X])
    return np.sqrt(np.einsum("ij,jk,ik->i", design, joint, design))


def _se_fit_glmm(m: FactoredModel, X: np.ndarray, which: list[int], newdata: pd.DataFrame | None,
                 allow_new_levels: bool) -> np.ndarray:
    """Link-scale standard errors of a GLMM's predictions, as lme4's ``vcov_full``: the joint
    covariance of (b, β) given θ from the final PIRLS step's factor (L, RZX, RX), scaled by
    σ² (1 for the binomial and Poisson families). For a design row d = [z x],

        se² = σ² (‖L⁻¹Λ'z'‖² + ‖RX⁻ᵀ(x' - RZX' L⁻¹Λ'z')‖²),

    computed for all rows at once without forming the (q+p)² covariance. With no random
    effects selected (``re_form=NA``) the fixed-effects block is σ²(RX'RX)⁻¹, the RX-based
    covariance, not ``vcov``'s finite-difference Hessian (as lme4)."""
    from scipy.sparse.linalg import spsolve_triangular

    re = m.lformula.reTrms
    n, p, q = _dims(m)
    xt = np.asarray(X, float).T
    if which:
        if q + p > 5000:
            raise LmeFormulaError("se_fit with random effects needs q + p <= 5000")
        check_allocation(float(n if newdata is None else len(newdata)) * q,
                         "se_fit's design with random effects (rows x q)")
        if newdata is None:
            ztsel = np.zeros((q, n))
            for i in which:
                ztsel[re.Gp[i] : re.Gp[i + 1]] = re.Ztlist[re.terms[i].key].toarray()
        else:
            ztsel = _new_z(m, newdata, which, allow_new_levels).T
        lower = sp.csr_matrix(m.getME("L"))
        a = spsolve_triangular(lower, np.asarray(lambdat_at(m) @ ztsel), lower=True)
        xt = xt - m.RZX().T @ a
        ssq = (a * a).sum(axis=0)
    else:
        ssq = np.zeros(xt.shape[1])
    if p:
        bpart = np.linalg.solve(m.RX().T, xt)
        ssq = ssq + (bpart * bpart).sum(axis=0)
    return np.asarray(m.sigma * np.sqrt(ssq))


def _new_z(m: FittedModel, newdata: pd.DataFrame, which: list[int], allow_new_levels: bool
           ) -> np.ndarray:
    """Dense Z of new data for the chosen terms (columns in the fit's order)."""
    re = m.lformula.reTrms
    check_allocation(float(len(newdata)) * _dims(m)[2], "the random-effects model matrix of "
                     "newdata (rows x random effects)")
    z = np.zeros((len(newdata), _dims(m)[2]))
    for i in which:
        term = re.terms[i]
        codes, xi, _ = _term_design(m, newdata, i, allow_new_levels)
        for j in np.flatnonzero(codes >= 0):
            start = re.Gp[i] + codes[j] * term.nc
            z[j, start : start + term.nc] = xi[j]
    return z


def simulate(m: FittedModel, nsim: int = 1, rng: np.random.Generator | int | None = None,
             use_u: bool = False, re_form: Any = np.nan, newdata: pd.DataFrame | None = None,
             allow_new_levels: bool = False) -> pd.DataFrame:
    """lme4's ``simulate``: responses drawn from the fitted model.

    The mean conditions on the random-effects terms of ``re_form`` (none by default) or on all
    of them with ``use_u=True``; the other terms are redrawn from N(0, σ²ΛΛ'), and residuals
    from N(0, σ²) (prior weights are ignored, as in lme4). A level of ``newdata`` the fit
    never saw is an error unless ``allow_new_levels`` (lme4's ``allow.new.levels``), as in
    lme4; allowed, it gets no conditional mode and a fresh draw where its term is redrawn.

    Returns
    -------
    DataFrame with columns ``sim_1`` ... ``sim_<nsim>``.
    """
    nsim = check_count(nsim, "nsim")
    gen = as_generator(rng)
    means = SimulationMeans.of(m, nsim, use_u, re_form, newdata, allow_new_levels)
    out = {}
    sigma = m.sigma
    for k in range(nsim):
        sim = means.eta + sigma * gen.standard_normal(means.eta.shape[0])
        random = means.redrawn(gen)
        if random is not None:
            sim = sim + sigma * random
        out[f"sim_{k + 1}"] = sim
    return means.frame(out)


@dataclass(frozen=True)
class SimulationMeans:
    """What lme4's ``simulate`` draws around, on the data or on ``newdata``: the linear
    predictor conditional on the terms of ``re_form`` (all with ``use_u``), and the terms it
    redraws (lmer's and glmer's simulate share it)."""

    m: Any
    eta: np.ndarray
    redraw: list[int]
    zt: Any
    lambdat: sp.csc_matrix
    newdata: pd.DataFrame | None

    @classmethod
    def of(cls, m: FittedModel, nsim: int, use_u: bool, re_form: Any,
           newdata: pd.DataFrame | None, allow_new_levels: bool) -> SimulationMeans:
        """The means of ``nsim`` simulations (arguments checked as lme4 checks them: a level
        of ``newdata`` the fit never saw is an error unless ``allow_new_levels``)."""
        check_flag(use_u, "use_u")
        allow_new_levels = bool(check_flag(allow_new_levels, "allow_new_levels"))
        nfit = _dims(m)[0]
        rows = nfit if newdata is None else len(newdata)
        check_allocation(float(nsim) * rows, f"simulate(nsim={nsim})")
        if newdata is not None:
            newdata = as_pandas(newdata, "newdata")
        conditioned = select_terms(m, None if use_u else re_form)
        eta = np.asarray(predict(m, newdata=newdata, re_form=None if use_u else re_form,
                                 allow_new_levels=True), dtype=float)
        if newdata is None:
            eta = eta[fitted_positions(m.lformula, eta.shape[0])]
        re = m.lformula.reTrms
        redraw = [i for i in range(len(re.terms)) if i not in conditioned]
        every = list(range(len(re.terms)))
        zt = re.Zt if newdata is None else _new_z(m, newdata, every, allow_new_levels).T
        return cls(m, eta, redraw, zt, lambdat_at(m), newdata)

    def redrawn(self, gen: np.random.Generator) -> np.ndarray | None:
        """Z Λ u with u of the redrawn terms from N(0, 1) (the others 0), or None when no term
        is redrawn (on the scale of the model's Λ: lmer multiplies it by σ)."""
        if not self.redraw:
            return None
        re = self.m.lformula.reTrms
        u = draw_terms(np.zeros(_dims(self.m)[2]), re.Gp, self.redraw, gen)
        return np.asarray(self.zt.T @ (self.lambdat.T @ u)).ravel()

    def frame(self, columns: dict[str, np.ndarray]) -> pd.DataFrame:
        """The simulations as lme4 returns them: on the data, the rows ``na.exclude`` removed
        padded with NA (as fitted() is); on new data, by its rows."""
        if self.newdata is None:
            return pd.DataFrame({k: naresid(self.m.lformula, v, k) for k, v in columns.items()})
        return pd.DataFrame(columns, index=self.newdata.index)


def draw_terms(u: np.ndarray, gp: Any, terms: Iterable[int],
               gen: np.random.Generator) -> np.ndarray:
    """``u`` with the spherical random effects of ``terms`` (their positions ``gp[i]:gp[i +
    1]``) drawn anew from N(0, 1), term by term in that order (simulate's draws)."""
    for i in terms:
        u[gp[i] : gp[i + 1]] = gen.standard_normal(gp[i + 1] - gp[i])
    return u


def fitted_positions(lformula: LFormula, length: int) -> np.ndarray:
    """Where the fitted rows sit in a vector of ``length``: all of it, or, for a vector
    padded as ``na_action="exclude"`` pads (the fitted rows and those NA handling removed,
    in the data's order), a mask of the fitted rows."""
    frame = lformula.frame
    na = frame.na_action
    if na is None or na.kind != "exclude" or length == frame.nrow:
        return np.arange(length)
    positions = np.sort(np.concatenate([frame.rows, np.asarray(na.omitted)]))
    if positions.shape[0] != length:
        return np.arange(length)
    return np.flatnonzero(np.isin(positions, frame.rows))
