"""lmerTest's ``step``: backward elimination of the random-effects terms, then of the
fixed-effects terms, of a linear mixed model.

1. **Random effects** (lmerTest's ``reduce_random``): ``ranova`` of the model, with vector
   terms reduced one droppable term of their left-hand side at a time (``(Days | Subject)``
   -> ``(1 | Subject)``, as ``ranova(reduce.terms = TRUE)``). While some likelihood-ratio
   p-value exceeds ``alpha_random``, the reduction with the largest p-value is made, the
   model refitted, and ``ranova`` run again on it. When the last random-effects term goes,
   the model is fitted by least squares (lmerTest's ``lm`` refit) and the elimination stops.
2. **Fixed effects** (lmerTest's ``reduce_fixed``): ``drop1``'s F-tests (Satterthwaite's
   or Kenward-Roger's denominator degrees of freedom; a linear model's ``drop1(test =
   "F")``) of the marginal terms, those no other term contains. While the largest p-value
   of the terms not in ``keep`` exceeds ``alpha_fixed``, that term is removed (R's
   ``update(model, ~ . - term)``) and ``drop1`` run again.

The tables list the eliminated rows in the order of elimination (``Eliminated`` 1, 2, ...)
and then the rows of the last ``ranova`` / ``drop1`` (``Eliminated`` 0); the random table
starts with the ``<none>`` row of the first model (``Eliminated`` NA).

>>> import lmeformula as lmf
>>> m = lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"))
>>> s = lmf.step(m)
>>> lmf.get_model(s).formula
'Reaction ~ Days + (Days | Subject)'
>>> list(s.random["Eliminated"].fillna(-1))
[-1.0, 0.0]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..anovatable import AnovaTable
from ..errors import ArgumentError, LmeFormulaError, LmeFormulaWarning
from ..generics import show, show_html
from ..glmermod import GlmerMod
from ..lformula import parse_lmer_formula
from ..lmer import update, update_formula
from ..mermod import LmerMod, match_ddf
from ..validate import check_flag, check_number
from .ranova import ranova_reductions
from .tables import drop1

__all__ = ["InvalidKeepWarning", "LinearModelFit", "StepResult", "get_model", "step"]

STEP_DDF = ("Satterthwaite", "Kenward-Roger")
ROWS_CHANGED = "number of rows in use has changed: remove missing values?"


class InvalidKeepWarning(LmeFormulaWarning):
    """``keep`` names terms that are not fixed-effects terms of the model: they are ignored."""


@dataclass
class LinearModelFit:
    """A least-squares fit of the fixed part of a model, what lmerTest's ``step`` refits by
    ``lm`` when every random-effects term has been eliminated.

    Attributes
    ----------
    formula
        The formula, as R's ``update`` leaves it (``y ~ x + f``).
    X
        The model matrix (columns named as R names them); its ``attrs["assign"]`` is R's
        ``assign``.
    y
        The response (an offset already subtracted).
    weights
        The prior weights (ones when none were given).
    """

    formula: str
    X: pd.DataFrame
    y: np.ndarray
    weights: np.ndarray
    _fit: tuple[np.ndarray, float, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._fit = _least_squares(self.X.to_numpy(dtype=float), self.y, self.weights)

    @property
    def coef(self) -> pd.Series:
        """The coefficients (R's ``coef(lm)``)."""
        return pd.Series(self._fit[0], index=list(self.X.columns), dtype=float)

    @property
    def rank(self) -> int:
        return self._fit[2]

    @property
    def deviance(self) -> float:
        """The (weighted) residual sum of squares."""
        return self._fit[1]

    @property
    def nobs(self) -> int:
        return len(self.y)

    @property
    def df_residual(self) -> int:
        return self.nobs - self.rank

    @property
    def term_labels(self) -> list[str]:
        return parse_lmer_formula(self.formula).fixed.term_labels

    def logLik(self, REML: bool = False) -> float:
        """R's ``logLik.lm``: the (REML) log-likelihood."""
        w = self.weights
        n = self.nobs - (self.rank if REML else 0)
        val = 0.5 * (float(np.sum(np.log(w))) - n * (math.log(2 * math.pi) + 1 - math.log(n)
                                                      + math.log(self.deviance)))
        if REML and self.rank:
            sw = np.sqrt(w)
            r = np.linalg.qr(sw[:, None] * self.X.to_numpy(dtype=float), mode="r")
            val -= float(np.sum(np.log(np.abs(np.diag(r)[: self.rank]))))
        return val

    def __str__(self) -> str:
        return f"Linear model (lm): {self.formula}\n\nCoefficients:\n{self.coef.to_string()}"


def _least_squares(X: np.ndarray, y: np.ndarray, w: np.ndarray
                   ) -> tuple[np.ndarray, float, int]:
    """Weighted least squares: coefficients, residual sum of squares and rank."""
    sw = np.sqrt(w)
    Xw, yw = sw[:, None] * X, sw * y
    if X.shape[1] == 0:
        return np.zeros(0), float(yw @ yw), 0
    beta, _, rank, _ = np.linalg.lstsq(Xw, yw, rcond=None)
    res = yw - Xw @ beta
    return beta, float(res @ res), int(rank)


def _lm_of(m: LmerMod, formula: str) -> LinearModelFit:
    """lmerTest's ``lm`` refit of ``m``'s fixed part (``ranova`` checked it uses the
    model's rows): the model's X and response."""
    pf = m.lformula
    y = np.asarray(pf.y, dtype=float)
    if pf.offset is not None:
        y = y - pf.offset
    X = pd.DataFrame(pf.X_values, columns=list(pf.X_names))
    X.attrs["assign"] = list(pf.X_attrs["assign"])
    return LinearModelFit(formula, X, y, np.asarray(m.weights, dtype=float))


def _drop_lm_term(fit: LinearModelFit, term: str) -> LinearModelFit:
    """``update(fit, ~ . - term)`` of a linear model: the formula updated and the term's
    columns of X dropped. A marginal term's removal leaves the other terms' columns as R's
    ``model.matrix`` codes them (a term's coding depends on its margins only)."""
    k = fit.term_labels.index(term) + 1
    assign = fit.X.attrs["assign"]
    keep = [j for j, a in enumerate(assign) if a != k]
    X = fit.X.iloc[:, keep].copy()
    X.attrs["assign"] = [a - (a > k) for a in (assign[j] for j in keep)]
    return LinearModelFit(update_formula(fit.formula, f"~ . - ({term})"), X, fit.y,
                          fit.weights)


def drop1_lm(fit: LinearModelFit) -> AnovaTable:
    """R's ``drop1(lm, test = "F")`` of the marginal terms, without its ``<none>`` row:
    ``Df``, ``Sum of Sq``, ``RSS``, ``AIC`` (``n log(RSS/n) + 2 edf``), ``F value``,
    ``Pr(>F)``."""
    scope = parse_lmer_formula(fit.formula).fixed.drop_scope
    X = fit.X.to_numpy(dtype=float)
    assign = fit.X.attrs["assign"]
    labels = fit.term_labels
    n, rss0, rank0, rdf = fit.nobs, fit.deviance, fit.rank, fit.df_residual
    rows = []
    for term in scope:
        k = labels.index(term) + 1
        cols = [j for j, a in enumerate(assign) if a != k]
        _, rss, rank = _least_squares(X[:, cols], fit.y, fit.weights)
        df = rank0 - rank
        ss = rss - rss0
        F = (ss / df) / (rss0 / rdf) if df >= 1e-4 else math.nan
        p = float(stats.f.sf(F, df, rdf)) if not math.isnan(F) else math.nan
        rows.append({"Df": float(df), "Sum of Sq": ss, "RSS": rss,
                     "AIC": n * math.log(rss / n) + 2 * rank, "F value": F, "Pr(>F)": p})
    table = pd.DataFrame(rows, index=scope,
                         columns=["Df", "Sum of Sq", "RSS", "AIC", "F value", "Pr(>F)"],
                         dtype=float)
    return AnovaTable(table, ["Single term deletions", "\nModel:", fit.formula], "lm")


@dataclass
class StepResult:
    """lmerTest's ``step_list``: the backward-reduced tables and the model found.

    Attributes
    ----------
    random
        The random-effect table: ``Eliminated`` (NA for ``<none>``, then 1, 2, ... in the
        order of elimination, 0 for the terms kept), ``npar``, ``logLik``, ``AIC``, ``LRT``,
        ``Df``, ``Pr(>Chisq)``.
    fixed
        The fixed-effect table: ``Eliminated`` and ``drop1``'s columns (``Sum Sq``,
        ``Mean Sq``, ``NumDF``, ``DenDF``, ``F value``, ``Pr(>F)``; a linear model's ``Df``,
        ``Sum of Sq``, ``RSS``, ``AIC``, ``F value``, ``Pr(>F)``).
    model
        The final model (:func:`get_model`): an :class:`~lmeformula.LmerMod`, or a
        :class:`LinearModelFit` when every random-effects term was eliminated.
    drop1
        The final model's ``drop1`` table (lmerTest's ``attr(, "drop1")``).
    models
        Every model of the elimination in order: the model given, then one per elimination
        (random, then fixed); the last is ``model``.
    """

    random: AnovaTable
    fixed: AnovaTable
    drop1: AnovaTable
    models: list[LmerMod | LinearModelFit]

    @property
    def model(self) -> LmerMod | LinearModelFit:
        return self.models[-1]

    def get_model(self) -> LmerMod | LinearModelFit:
        """The final model (lmerTest's ``get_model``)."""
        return self.model

    def __str__(self) -> str:
        return show(self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return show_html(self)


def _check_keep(keep: Any) -> list[str]:
    if keep is None:
        return []
    if isinstance(keep, str):
        return [keep]
    if isinstance(keep, Iterable) and not isinstance(keep, (bytes, Mapping)):
        labels = list(keep)
        if all(isinstance(k, str) for k in labels):
            return labels
    raise ArgumentError("is.character(keep) is not TRUE")


def _largest_above(pvals: np.ndarray, alpha: float) -> int | None:
    """R's ``which.max(pvals)`` (the first largest, NA left out) when some p-value (not NA)
    exceeds alpha, else None."""
    p = np.asarray(pvals, dtype=float)
    if not (~np.isnan(p) & (p > alpha)).any():
        return None
    return int(np.nanargmax(p))


def _eliminated(table: pd.DataFrame, values: Sequence[float]) -> pd.DataFrame:
    out = table.copy()
    out.insert(0, "Eliminated", np.asarray(values, dtype=float))
    return out


def _reduce_random(model: LmerMod, alpha: float
                   ) -> tuple[pd.DataFrame, list[LmerMod | LinearModelFit]]:
    table, reductions = ranova_reductions(model)
    rows = [table.table.iloc[[0]]]
    left = True  # whether the last model has random effects (rows of its ranova to add)
    models: list[LmerMod | LinearModelFit] = [model]
    fit: LmerMod = model
    while True:
        k = _largest_above(table["Pr(>Chisq)"].to_numpy()[1:], alpha)
        if k is None:
            break
        rows.append(table.table.iloc[[k + 1]])
        chosen = reductions[k]
        if chosen.fit is None:  # no random effects left: lmerTest's lm refit, no more tests
            models.append(_lm_of(fit, chosen.formula))
            left = False
            break
        fit = chosen.fit
        models.append(fit)
        table, reductions = ranova_reductions(fit)
    reduced = pd.concat(rows)
    kept = table.table.iloc[1:] if left else table.table.iloc[:0]
    out = pd.concat([_eliminated(reduced, [math.nan, *range(1, len(reduced))]),
                     _eliminated(kept, [0.0] * len(kept))])
    return out, models


def _drop1_of(fit: LmerMod | LinearModelFit, ddf: str) -> AnovaTable:
    return drop1_lm(fit) if isinstance(fit, LinearModelFit) else drop1(fit, ddf=ddf)


def _reduce_fixed(model: LmerMod | LinearModelFit, ddf: str, alpha: float, keep: list[str]
                  ) -> tuple[pd.DataFrame, AnovaTable, list[LmerMod | LinearModelFit]]:
    labels = (model.term_labels if isinstance(model, LinearModelFit)
              else model.lformula.parsed.fixed.term_labels)
    invalid = [k for k in keep if k not in labels]
    if invalid:
        warnings.warn(f"Invalid 'keep' ignored: {' '.join(invalid)}.\n"
                      f"Valid terms are: {' '.join(labels)}.", InvalidKeepWarning,
                      stacklevel=3)
    aov = _drop1_of(model, ddf)
    rows = []
    models: list[LmerMod | LinearModelFit] = []
    fit = model
    while True:
        consider = [t for t in aov.index if t not in keep]
        k = _largest_above(aov["Pr(>F)"].loc[consider].to_numpy(), alpha)
        if k is None:
            break
        remove = consider[k]
        rows.append(aov.table.loc[[remove]])
        if isinstance(fit, LinearModelFit):
            fit = _drop_lm_term(fit, remove)
        else:
            nobs = fit.nobs
            fit = update(fit, formula=f"~ . - ({remove})")
            if fit.nobs != nobs:
                raise LmeFormulaError(ROWS_CHANGED)
        models.append(fit)
        aov = _drop1_of(fit, ddf)
    reduced = pd.concat(rows) if rows else aov.table.iloc[:0]
    out = pd.concat([_eliminated(reduced, range(1, len(reduced) + 1)),
                     _eliminated(aov.table, [0.0] * len(aov))])
    return out, aov, models


def step(model: LmerMod, ddf: str = "Satterthwaite", alpha_random: float = 0.1,
         alpha_fixed: float = 0.05, reduce_fixed: bool = True, reduce_random: bool = True,
         keep: str | Sequence[str] | None = None) -> StepResult:
    """Backward elimination of random- and fixed-effects terms (lmerTest's ``step``).

    Random-effects terms go first, by ``ranova``'s likelihood-ratio tests (vector terms
    reduced a column at a time, ``(Days | Subject)`` -> ``(1 | Subject)``), the term with
    the largest p-value above ``alpha_random`` at each step; then fixed-effects terms, by
    ``drop1``'s F-tests of the marginal terms, the largest p-value above ``alpha_fixed`` at
    each step. Each elimination refits the model (``update``).

    Parameters
    ----------
    model
        An lmer fit (in R syntax, with its data: the refits need them).
    ddf
        ``"Satterthwaite"`` or ``"Kenward-Roger"`` (a unique prefix will do): the F-tests'
        denominator degrees of freedom.
    alpha_random, alpha_fixed
        The p-values above which a term is eliminated (numbers in [0, 1]).
    reduce_random, reduce_fixed
        False: the tests are made and tabulated, nothing is eliminated (lmerTest sets the
        alpha to 1).
    keep
        Fixed-effects term labels never eliminated (names that are not terms of the model
        are ignored with a warning, as lmerTest does). A term that others contain is not
        tested anyway until they are gone.

    Returns
    -------
    StepResult
        ``random`` and ``fixed`` tables, the final model (``get_model(result)``); printed
        as lmerTest prints it.

    Raises
    ------
    ArgumentError
        For a model that is not an lmer fit, or bad arguments.
    LmeFormulaError
        lmerTest's errors: a ``ddf`` that is neither method, Kenward-Roger's method for an
        ML fit, a refit on other rows.
    """
    if isinstance(model, GlmerMod) or not isinstance(model, LmerMod):
        raise ArgumentError("'model' should be an lmer-fit (a linear mixed model from lmer)")
    if model.call.syntax != "R":
        # (ranova's reduced formulas and drop1's F-tests read R's terms of the formula)
        raise LmeFormulaError(
            "step() removes terms of an R-syntax formula (R's update() and drop1's tests); "
            "this model was fitted with syntax=\"formulaic\": refit it with syntax=\"R\"")
    method = match_ddf(ddf, STEP_DDF)
    a_random = check_number(alpha_random, "alpha_random", lower=0, upper=1)
    a_fixed = check_number(alpha_fixed, "alpha_fixed", lower=0, upper=1)
    assert a_random is not None and a_fixed is not None
    if not check_flag(reduce_random, "reduce_random"):
        a_random = 1.0
    if not check_flag(reduce_fixed, "reduce_fixed"):
        a_fixed = 1.0
    keep_terms = _check_keep(keep)
    random_table, random_models = _reduce_random(model, a_random)
    final = random_models[-1]
    fixed_table, last_drop1, fixed_models = _reduce_fixed(final, method, a_fixed, keep_terms)
    random = AnovaTable(random_table, ["Backward reduced random-effect table:", ""], "step")
    heading = ["Backward reduced fixed-effect table:"]
    if not isinstance(final, LinearModelFit):
        heading += [f"Degrees of freedom method: {method} ", ""]
    fixed = AnovaTable(fixed_table, heading, "step")
    return StepResult(random, fixed, last_drop1, [*random_models, *fixed_models])


def get_model(x: StepResult) -> LmerMod | LinearModelFit:
    """The model ``step`` found (lmerTest's ``get_model``)."""
    if not isinstance(x, StepResult):
        raise ArgumentError(f"get_model() takes the result of step(), not "
                            f"{type(x).__name__}")
    return x.model
