"""lmerTest's ``ranova``: likelihood-ratio tests of the random-effects terms.

Each random-effects term ``(lhs | g)`` is either removed (when its left-hand side has no terms
to drop, as ``(1 | g)``) or reduced, one droppable term of its left-hand side at a time
(``(Days | Subject)`` -> ``(1 | Subject)``, labelled ``"Days in (Days | Subject)"``). Each
reduced model is refitted with the same REML setting (by ``lm`` when no random effects are
left) and compared with the full model by its (REML or ML) log-likelihood.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..anovatable import AnovaTable
from ..errors import ArgumentError, LmeFormulaError
from ..formula.ast import deparse
from ..formula.parser import parse_formula
from ..formula.terms import terms
from ..frame import model_frame
from ..mermod import LmerMod
from ..validate import check_flag

__all__ = ["Reduction", "ranova", "ranova_reductions"]


@dataclass(frozen=True)
class Reduction:
    """One reduced model of ``ranova``: its row label, its formula (R's ``update`` of the
    full formula, simplified as ``terms`` orders it) and its fit (None where no random
    effects are left: lmerTest fits it by ``lm``)."""

    label: str
    formula: str
    fit: LmerMod | None


def _split_bar(text: str) -> tuple[str, str]:
    lhs, rhs = text.split("|", 1)
    return lhs.strip(), rhs.strip()


def _drop_scope(lhs: str) -> tuple[list[str], list[str], bool]:
    """R's ``drop.scope(~lhs)``: terms of the left-hand side no other term contains; also
    all its term labels and whether it has an intercept."""
    _, rhs = parse_formula(f"~{lhs}")
    t = terms(rhs)
    labels = t.term_labels
    sets = [set(term) for term in t.terms]
    scope = [lab for i, lab in enumerate(labels)
             if not any(j != i and sets[i] <= sets[j] for j in range(len(sets)))]
    return scope, labels, t.intercept


def _reduced_lhs(labels: list[str], intercept: bool, drop: str) -> str:
    """``update(~lhs, ~ . - drop)`` deparsed without the tilde."""
    kept = [lab for lab in labels if lab != drop]
    if not kept:
        return "1" if intercept else "-1"
    text = " + ".join(kept)
    return text if intercept else f"{text} - 1"


def _full_formula(m: LmerMod, bars: list[str]) -> str:
    """R's ``update(formula, . ~ fixed + (bar) + ...)``: the terms by degree (a bar counts as
    one), as R's ``terms(simplify = TRUE)`` orders them, the ``offset()`` terms after them."""
    fixed = m.lformula.parsed.fixed
    items = [(len(term), lab) for term, lab in zip(fixed.terms, fixed.term_labels, strict=True)]
    items += [(1, f"({b})") for b in bars]
    order = sorted(range(len(items)), key=lambda i: items[i][0])
    rhs = " + ".join([items[i][1] for i in order] + [deparse(o) for o in fixed.offsets])
    if not fixed.intercept:
        rhs = f"{rhs} - 1" if rhs else "-1"
    lhs = m.lformula.parsed.lhs
    return f"{deparse(lhs)} ~ {rhs}" if lhs is not None else f"~{rhs}"


def _lm_loglik(m: LmerMod, REML: bool) -> tuple[float, int]:
    """R's ``logLik(lm(...), REML = REML)`` for the fixed part of ``m``: (value, df)."""
    X = m.lformula.X_values
    y = m.lformula.y
    assert y is not None
    if m.lformula.offset is not None:
        y = y - m.lformula.offset
    w = np.asarray(m.weights, dtype=float)
    sw = np.sqrt(w)
    q, r = np.linalg.qr(sw[:, None] * X) if X.shape[1] else (np.zeros((len(y), 0)),
                                                            np.zeros((0, 0)))
    res = sw * y - q @ (q.T @ (sw * y))
    p = X.shape[1]
    n = len(y) - (p if REML else 0)
    val = 0.5 * (float(np.sum(np.log(w))) - n * (math.log(2 * math.pi) + 1 - math.log(n)
                                                  + math.log(float(res @ res))))
    if REML and p:
        val -= float(np.sum(np.log(np.abs(np.diag(r)))))
    return val, p + 1


def _check_rows(nobs: int, m: LmerMod) -> None:
    """lmerTest refuses a reduced model fitted to other rows than the model's."""
    if nobs != m.nobs:
        raise LmeFormulaError("number of rows in use has changed: remove missing values?")


def ranova(m: LmerMod, reduce_terms: bool = True) -> AnovaTable:
    """Likelihood-ratio tests for the random-effects terms (lmerTest's ``ranova``).

    Parameters
    ----------
    m
        A fitted model (its data is needed for the refits: models from :func:`lmer` keep it).
    reduce_terms
        Reduce vector-valued terms (``(Days | Subject)`` -> ``(1 | Subject)``) instead of
        removing them whole.

    Returns
    -------
    AnovaTable
        Rows ``<none>`` and one per reduced model, lmerTest's labels (``"Days in (Days |
        Subject)"``, ``"(1 | Worker)"``); columns ``npar``, ``logLik``, ``AIC``, ``LRT``,
        ``Df``, ``Pr(>Chisq)``.
    """
    return ranova_reductions(m, reduce_terms)[0]


def ranova_reductions(m: LmerMod, reduce_terms: bool = True
                      ) -> tuple[AnovaTable, list[Reduction]]:
    """:func:`ranova`'s table and its reduced models (lmerTest keeps their formulas in the
    table's ``"formulae"`` attribute; ``step`` continues from the one it eliminates)."""
    if not isinstance(m, LmerMod):
        raise ArgumentError("'model' should be an lmer-fit")
    reduce_terms = bool(check_flag(reduce_terms, "reduce_terms"))
    data = getattr(m, "_data", None)
    if data is None:
        raise LmeFormulaError("ranova() refits the model and needs its data: fit it with "
                              "lmer(formula, data)")
    from ..lmer import update, update_formula

    bars = [deparse(b) for b in m.lformula.parsed.bars]
    reml = m.is_REML
    fixed = m.lformula.parsed.fixed
    # lmerTest's nobars(rhs): the offset() terms of the formula are kept in the refits
    fixed_labels = [*fixed.term_labels, *(deparse(o) for o in fixed.offsets)]
    fixed_rhs = " + ".join(fixed_labels) or "1"
    if not fixed.intercept:
        fixed_rhs = f"{fixed_rhs} - 1" if fixed_labels else "-1"
    lhs = m.lformula.parsed.lhs
    lhs_text = deparse(lhs) if lhs is not None else ""

    new_forms: list[tuple[str, list[str]]] = []  # (label, the bars of the reduced model)
    for k, bar in enumerate(bars):
        others = bars[:k] + bars[k + 1 :]
        lhs_bar, group = _split_bar(bar)
        scope, labels, intercept = _drop_scope(lhs_bar)
        if not reduce_terms or not labels or not scope:
            new_forms.append((f"({bar})", others))
            continue
        for drop in scope:
            new_lhs = "1" if set(labels) == {drop} else _reduced_lhs(labels, intercept, drop)
            new_forms.append((f"{drop} in ({bar})", [*others, f"{new_lhs} | {group}"]))

    ll = m.logLik()
    rows = [(ll.value, ll.df)]
    reductions = []
    for label, new_bars in new_forms:
        if new_bars:
            formula = f"{lhs_text} ~ {fixed_rhs} + " + " + ".join(f"({b})" for b in new_bars)
            fit: Any = update(m, formula=formula, data=data)
            _check_rows(fit.nobs, m)
            lli = fit.logLik(REML=reml)
            rows.append((lli.value, lli.df))
            reductions.append(Reduction(label, fit.formula, fit))
        else:
            reductions.append(Reduction(label, update_formula(f"{lhs_text} ~ {fixed_rhs}",
                                                              ". ~ ."), None))
            # lmerTest's lm() refit uses the rows whose fixed-part variables are all there:
            # more than the model's where only a grouping variable is missing
            call = m.call
            frame = model_frame(lhs, parse_formula(f"~{fixed_rhs}")[1], data,
                                weights=call.weights, offset=call.offset, subset=call.subset,
                                na_action=call.na_action)
            _check_rows(len(frame.index), m)
            rows.append(_lm_loglik(m, reml))
    ll0, df0 = rows[0]
    table = pd.DataFrame({
        "npar": [float(d) for _, d in rows],
        "logLik": [v for v, _ in rows],
        "AIC": [-2 * v + 2 * d for v, d in rows],
        "LRT": [math.nan] + [2 * (ll0 - v) for v, _ in rows[1:]],
        "Df": [math.nan] + [float(df0 - d) for _, d in rows[1:]],
    }, index=["<none>", *[label for label, _ in new_forms]])
    pv = [math.nan]
    for lrt, df in zip(table["LRT"].to_numpy()[1:], table["Df"].to_numpy()[1:], strict=True):
        pv.append(float(stats.chi2.sf(lrt, df)) if df > 0 else math.nan)
    table["Pr(>Chisq)"] = pv
    heading = ["ANOVA-like table for random-effects: Single term deletions", "", "Model:",
               _full_formula(m, bars)]
    return AnovaTable(table, heading, "ranova"), reductions
