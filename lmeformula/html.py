"""HTML output for notebooks: the fitted model, its summary, VarCorr and anova tables as real
HTML tables (statsmodels' layout: a two-column header of model facts, then one table per
block). The text output (``str``) is unchanged; these back the objects' ``_repr_html_``.

Presentation only: every number comes from the model's accessors. The objects' ``_repr_html_``
reach these layouts through the generic :func:`lmeformula.generics.show_html`, for which this
module registers them at the end (imports run one way: the models do not import this module).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .allfit import AllFitSummary
from .anovatable import AnovaTable, LsMeansTable
from .generics import show_html
from .mermod import LmerMod, Summary, VarCorr
from .printing import ls_means_notes

__all__ = ["allfit_html", "anova_html", "coef_table_html", "frame_html", "ls_means_html",
           "model_html", "summary_html", "table_html", "varcorr_html"]

_STYLE = ("<style>table.lmeformula{border-collapse:collapse;margin-bottom:0.8em}"
          "table.lmeformula caption{font-weight:bold;text-align:left}"
          "table.lmeformula td,table.lmeformula th{padding:0.15em 0.7em;"
          "text-align:right}table.lmeformula th.row,table.lmeformula td.text"
          "{text-align:left}</style>")


def _cell(x: Any, digits: int) -> str:
    """A number with ``digits`` significant digits (integers as they are), or text."""
    if x is None:
        return ""
    if isinstance(x, bool | np.bool_):
        return str(bool(x))
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        v = float(x)
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "Inf" if v > 0 else "-Inf"
        return f"{v:.{digits}g}"
    return html.escape(str(x))


def table_html(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None,
               row_names: Sequence[str] | None = None, caption: str | None = None,
               digits: int = 5, css_class: str = "") -> str:
    """One ``<table>``: optional caption, header row and row names; numbers to ``digits``
    significant digits; NaN as an empty cell."""
    classes = f"lmeformula {css_class}".strip()
    parts = [f'<table class="{classes}">']
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    if header is not None:
        corner = "<th></th>" if row_names is not None else ""
        cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        parts.append(f"<thead><tr>{corner}{cells}</tr></thead>")
    parts.append("<tbody>")
    for i, row in enumerate(rows):
        name = (f'<th class="row">{html.escape(str(row_names[i]))}</th>'
                if row_names is not None else "")
        cells = "".join(
            f'<td class="text">{_cell(v, digits)}</td>' if isinstance(v, str)
            else f"<td>{_cell(v, digits)}</td>" for v in row)
        parts.append(f"<tr>{name}{cells}</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def frame_html(df: pd.DataFrame, caption: str | None = None, digits: int = 5,
               css_class: str = "") -> str:
    """A DataFrame as :func:`table_html` (row names from its index)."""
    rows = [list(r) for r in df.itertuples(index=False, name=None)]
    return table_html(rows, [str(c) for c in df.columns], [str(i) for i in df.index],
                      caption, digits, css_class)


def _facts_html(pairs: list[tuple[str, Any]], digits: int = 7) -> str:
    """statsmodels' header: facts in two columns of (label, value) pairs."""
    half = (len(pairs) + 1) // 2
    left, right = pairs[:half], pairs[half:]
    rows = []
    for i in range(half):
        row: list[Any] = [f"{left[i][0]}:", left[i][1]]
        row += [f"{right[i][0]}:", right[i][1]] if i < len(right) else ["", ""]
        rows.append(row)
    return table_html(rows, digits=digits, css_class="facts")


def _model_facts(m: LmerMod) -> list[tuple[str, Any]]:
    facts: list[tuple[str, Any]] = [
        ("Model", "Linear mixed model (lmerMod)"),
        ("Method", "REML" if m.is_REML else "ML"),
        ("Formula", m.formula),
        ("Data", m.data_name),
        ("No. observations", int(m.nobs)),
    ]
    for name, n in m.ngrps.items():
        facts.append((f"No. groups ({name})", int(n)))
    for key in ("weights", "offset", "subset"):
        if key in m.call_args:
            facts.append((key.capitalize(), m.call_args[key]))
    if m.is_REML:
        facts.append(("REML criterion", float(m.REMLcrit())))
    else:
        ll = m.logLik()
        facts += [("AIC", float(m.AIC())), ("BIC", float(m.BIC())),
                  ("logLik", float(ll.value)), ("deviance", float(m.deviance())),
                  ("df.resid", int(m.df_residual))]
    facts.append(("Residual Std. Dev.", float(m.sigma)))
    return facts


def varcorr_html(vc: VarCorr, digits: int = 5) -> str:
    """lme4's random-effects table: Groups, Name, Variance, Std.Dev. and correlations."""
    maxlen = max([len(t.names) for t in vc.terms] + [1])
    header = ["Groups", "Name", "Variance", "Std.Dev."]
    if maxlen > 1:
        header += ["Corr"] + [""] * (maxlen - 2)
    rows: list[list[Any]] = []
    for t in vc.terms:
        corr = t.correlation
        for i, name in enumerate(t.names):
            row: list[Any] = [t.group if i == 0 else "", name, float(t.cov[i, i]),
                              float(t.stddev[i])]
            if maxlen > 1:
                row += [float(corr[i, j]) if j < i else None for j in range(maxlen - 1)]
            rows.append(row)
    rows.append(["Residual", "", float(vc.sc**2), float(vc.sc)]
                + [None] * (maxlen - 1 if maxlen > 1 else 0))
    return table_html(rows, header, caption="Random effects", digits=digits,
                      css_class="varcorr")


def coef_table_html(coefs: pd.DataFrame, caption: str = "Fixed effects",
                    digits: int = 5) -> str:
    """A coefficient table (Estimate, Std. Error, t value, ...) with row names."""
    return frame_html(coefs, caption, digits, "coefficients")


def _messages_html(m: LmerMod) -> str:
    opt = m.optinfo
    msgs = list(opt.lme4_messages) + list(opt.warnings)
    attrs = m.lformula.X_attrs
    msgs += [x for x in [attrs.get("msgRankdrop"), *attrs.get("msgScaleX", [])] if x]
    if not msgs:
        return ""
    items = "".join(f"<li>{html.escape(x)}</li>" for x in msgs)
    return f'<ul class="lmeformula messages">{items}</ul>'


def model_html(m: LmerMod) -> str:
    """The fitted model: header facts, random effects, fixed effects, messages."""
    parts = [_STYLE, '<div class="lmeformula">', _facts_html(_model_facts(m)),
             varcorr_html(m.VarCorr)]
    coefs = m.summary().coefficients
    if len(coefs):
        parts.append(coef_table_html(coefs))
    parts += [_messages_html(m), "</div>"]
    return "".join(parts)


def summary_html(s: Summary) -> str:
    """The summary: the model's tables plus scaled residuals and the fixed effects'
    correlations."""
    m = s.model
    res = m.residuals(type="pearson", scaled=True).dropna().to_numpy()
    quart = np.quantile(res, [0, 0.25, 0.5, 0.75, 1.0]) if res.size else np.full(5, np.nan)
    parts = [_STYLE, '<div class="lmeformula">', _facts_html(_model_facts(m)),
             table_html([list(quart)], ["Min", "1Q", "Median", "3Q", "Max"],
                        caption="Scaled residuals", digits=4, css_class="residuals"),
             varcorr_html(m.VarCorr)]
    coefs = s.coefficients
    if len(coefs):
        parts.append(coef_table_html(coefs))
        v = m.vcov().to_numpy()
        if 1 < v.shape[0] <= 12:
            sd = np.sqrt(np.diag(v))
            corr = v / np.outer(sd, sd)
            names = list(coefs.index)
            rows = [[float(corr[i, j]) if j < i else None for j in range(len(names) - 1)]
                    for i in range(1, len(names))]
            parts.append(table_html(rows, names[:-1], names[1:],
                                    caption="Correlation of fixed effects", digits=3,
                                    css_class="correlation"))
    parts += [_messages_html(m), "</div>"]
    return "".join(parts)


def anova_html(a: AnovaTable, digits: int = 5) -> str:
    """An anova table with its heading lines above it."""
    head = "".join(f"<div>{html.escape(line)}</div>" for line in a.heading)
    table = frame_html(a.table, None, digits, "anova")
    return f'{_STYLE}<div class="lmeformula">{head}{table}</div>'


def ls_means_html(t: LsMeansTable, digits: int = 5) -> str:
    """lmerTest's least-squares means table (``ls_means``, ``difflsmeans``): its heading, the
    table, and the confidence level and df method below it, as ``print.ls_means`` has
    them."""
    head = "".join(f"<div>{html.escape(line)}</div>" for line in t.heading if line)
    table = frame_html(t.table, None, digits, "lsmeans")
    tail = "".join(f"<div>{html.escape(line)}</div>" for line in ls_means_notes(t) if line)
    return f'{_STYLE}<div class="lmeformula">{head}{table}{tail}</div>'


def allfit_html(s: AllFitSummary) -> str:
    """lme4's ``summary(allFit(m))``: one table per component, one row per optimizer."""
    status = pd.DataFrame({"OK": pd.Series(s.which_OK),
                           "messages": pd.Series({k: "; ".join(v) for k, v in s.msgs.items()})})
    per_fit = pd.DataFrame({"logLik": s.llik, "evaluations": s.feval, "seconds": s.times})
    parts = [_STYLE, '<div class="lmeformula">',
             frame_html(status, "Optimizers", css_class="allfit"),
             frame_html(per_fit, "Log-likelihood, evaluations, time", digits=10,
                        css_class="allfit"),
             frame_html(s.fixef, "Fixed effects", digits=7, css_class="allfit"),
             frame_html(s.sdcor, "Standard deviations and correlations", digits=7,
                        css_class="allfit"),
             frame_html(s.theta, "θ", digits=7, css_class="allfit"), "</div>"]
    return "".join(parts)


show_html.register(LmerMod, model_html)
show_html.register(Summary, summary_html)
show_html.register(VarCorr, varcorr_html)
show_html.register(AnovaTable, anova_html)
show_html.register(LsMeansTable, ls_means_html)
show_html.register(AllFitSummary, allfit_html)
