"""lme4's ``drop1.merMod``: single term deletions by refitting, what lmerTest's
``drop1(model, ddf = "lme4")`` hands on to (``NextMethod()``).

Each term of the scope (by default the marginal fixed-effects terms, R's ``drop.scope``) is
dropped in turn with ``update(object, ~ . - term)``, and every model, the full one in the
``<none>`` row included, is summarised by lme4's ``extractAIC.merMod``: the number of
parameters and ``-2 logLik + k npar`` of ``refitML(fit)`` (a REML fit is refitted by
maximum likelihood, starting from its REML θ, so the AICs and likelihood-ratio statistics
are ML ones whatever the fit's criterion). The ``npar`` column is the number of parameters
dropped; ``test = "Chisq"`` adds the likelihood-ratio statistic and its χ² p-value (none
where no parameter was dropped).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..anovatable import AnovaTable
from ..errors import ArgumentError, LmeFormulaError
from ..formula.ast import BinOp, deparse_lines
from ..lformula import parse_lmer_formula
from ..lmer import refitML, update, update_formula
from ..mermod import LmerMod
from ..rformat import format_numbers
from ..validate import check_number, match_arg

__all__ = ["DROP1_TESTS", "drop1_lme4"]

# drop1.merMod's match.arg(test) choices ("F" is in its body, never reachable)
DROP1_TESTS = ("none", "Chisq", "user")

SumFun = Callable[..., Mapping[str, float]]


def _scope_labels(m: LmerMod, scope: str | Sequence[str] | None) -> list[str]:
    """drop1.merMod's scope: ``drop.scope`` by default; a formula (a string with ``~``):
    the fixed-effects term labels of the model's formula updated by it; else the labels
    given, which must all be term labels of the model (marginal or not)."""
    labels = m.lformula.parsed.fixed.term_labels
    if scope is None:
        return list(m.lformula.parsed.fixed.drop_scope)
    if isinstance(scope, str) and "~" in scope:
        chosen = parse_lmer_formula(update_formula(m.formula, scope)).fixed.term_labels
    elif isinstance(scope, str):
        chosen = [scope]
    else:
        chosen = list(scope)
        if not all(isinstance(t, str) for t in chosen):
            raise ArgumentError("'scope' must be a formula (a string with '~') or term "
                                "labels (strings)")
    if not all(t in labels for t in chosen):
        raise LmeFormulaError("scope is not a subset of term labels")
    return chosen


def _extract_aic(fit: LmerMod, k: float) -> tuple[float, float]:
    """lme4's ``extractAIC.merMod``: (edf, -2 logLik + k edf) of ``refitML(fit)``."""
    ll = refitML(fit).logLik()
    return float(ll.df), -2.0 * ll.value + k * ll.df


def _heading(m: LmerMod, scale: float) -> list[str]:
    """``c("Single term deletions", "\\nModel:", deparse(formula(object)))`` and the scale
    line when ``scale > 0``; R's deparse splits a long formula at 60 characters."""
    parsed = m.lformula.parsed
    if parsed.lhs is not None:
        formula_lines = deparse_lines(BinOp("~", parsed.lhs, parsed.stored_rhs))
    else:
        formula_lines = [m.formula]
    head = ["Single term deletions", "\nModel:", *formula_lines]
    if scale > 0:
        # paste("\nscale: ", format(scale), "\n")
        head.append(f"\nscale:  {format_numbers([scale], 7)[0]} \n")
    return head


def drop1_lme4(m: LmerMod, scope: str | Sequence[str] | None = None, scale: float = 0.0,
               test: str = "none", k: float = 2.0, trace: bool | int = False,
               sum_fun: SumFun | None = None) -> AnovaTable:
    """lme4's ``drop1`` of a fitted model: refit without each term and compare AICs.

    Parameters
    ----------
    m
        A fitted model, lmer's or glmer's (its call and data are needed for the refits:
        models from :func:`lmeformula.lmer` and :func:`lmeformula.glmer` keep them).
    scope
        The terms to drop: None for the marginal fixed-effects terms (R's ``drop.scope``);
        term labels (any of the model's fixed-effects terms, marginal or not, as lme4
        allows); or a formula as a string (``"~ Days"``): the fixed-effects terms of the
        model's formula updated by it.
    scale
        Only printed (a ``scale:`` line in the heading) when positive: lme4's
        ``extractAIC`` ignores it.
    test
        ``"none"``, ``"Chisq"`` (likelihood-ratio statistics and p-values) or ``"user"``
        (with ``sum_fun``); abbreviations as R's ``match.arg``.
    k
        The penalty per parameter (2: AIC; ``log(n)``: BIC).
    trace
        Above 1, print ``trying -term`` before each refit, as R does.
    sum_fun
        With ``test="user"`` (and only then): called as ``sum_fun(m, scale=, k=)`` for the
        ``<none>`` row and ``sum_fun(m, fit, scale=, k=)`` for each refit ``fit``; each
        call returns the row as a mapping of column names to numbers (the first call's
        names are the columns).

    Returns
    -------
    AnovaTable
        Rows ``<none>`` and the dropped terms; columns ``npar`` (parameters dropped) and
        ``AIC``, and ``LRT`` and ``Pr(Chi)`` with ``test="Chisq"``; R's heading.

    Raises
    ------
    LmeFormulaError
        R's messages: a scope that is not among the term labels; ``sum_fun`` without
        ``test="user"`` or the reverse; a refit using another number of rows (NA in a
        dropped term's variables). Also for a model fitted with ``syntax="formulaic"``,
        whose formula has no ``.`` for update().
    """
    if not isinstance(m, LmerMod):
        raise ArgumentError(f"expected a fitted mixed model, not {type(m).__name__}")
    test = match_arg(test, DROP1_TESTS, "test")
    if (test == "user") != (sum_fun is not None):
        raise LmeFormulaError("'sumFun' must be specified if (and only if) test==\"user\"")
    k_checked, scale_checked = check_number(k, "k"), check_number(scale, "scale")
    assert k_checked is not None and scale_checked is not None  # (None is not allowed)
    k, scale = k_checked, scale_checked
    if m.call.data is None:
        raise LmeFormulaError("drop1(ddf = \"lme4\") refits the model and needs its data: "
                              "fit it with lmer(formula, data)")
    if m.call.syntax != "R":
        raise LmeFormulaError("drop1(ddf = \"lme4\") refits with update(m, \"~ . - term\"), "
                              "which needs a model fitted with syntax=\"R\" (this one was "
                              f"fitted with syntax={m.call.syntax!r})")
    chosen = _scope_labels(m, scope)

    def summarise(*fits: LmerMod) -> list[float]:
        if sum_fun is None:
            return list(_extract_aic(fits[-1], k))
        # by position, as R's ans[i, ] <- sumFun(...): the names are the first row's
        values = list(sum_fun(*fits, scale=scale, k=k).values())
        if len(values) != len(columns):
            raise LmeFormulaError(f"sum_fun returned {len(values)} values for a refit where "
                                  f"the <none> row had {len(columns)} ({', '.join(columns)})")
        return [float(v) for v in values]

    columns = ["df", "AIC"]
    if sum_fun is not None:
        first = sum_fun(m, scale=scale, k=k)
        columns = [str(c) for c in first]
        rows = [[float(first[c]) for c in first]]
    else:
        rows = [summarise(m)]
    n0 = m.nobs
    for term in chosen:
        if int(trace) > 1:
            print(f"trying -{term}")
        fit = update(m, f"~ . - {term}")
        rows.append(summarise(m, fit))
        if fit.nobs != n0:
            raise LmeFormulaError("number of rows in use has changed: remove missing values?")
    ans = np.asarray(rows, dtype=float)
    # a one-row matrix's column loses its names in R: the <none> row is then called "1"
    index = ["<none>", *chosen] if chosen else ["1"]
    if test == "user":
        table = pd.DataFrame(ans, index=index, columns=columns)
    else:
        dfs = ans[0, 0] - ans[:, 0]
        dfs[0] = math.nan
        table = pd.DataFrame({"npar": dfs, "AIC": ans[:, 1]}, index=index)
        if test == "Chisq":
            dev = ans[:, 1] - k * ans[:, 0]
            dev = dev - dev[0]
            dev[0] = math.nan
            # lme4's safe_pchisq: no p-value where no parameter was dropped (df <= 0)
            pval = [float(stats.chi2.sf(d, f)) if not math.isnan(d) and f > 0 else math.nan
                    for d, f in zip(dev, dfs, strict=True)]
            table["LRT"] = dev
            table["Pr(Chi)"] = pval
    return AnovaTable(table, _heading(m, scale), "drop1")
