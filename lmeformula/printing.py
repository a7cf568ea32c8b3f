"""lme4's and lmerTest's printed layouts of a fitted model: ``print(fit)``,
``print(summary(fit))`` (lmerTest's with ``ddf``), R's ``printCoefmat`` and ``print.anova``,
lmerTest's ``print.ls_means``.

Presentation only: no numerics beyond formatting, built from :mod:`lmeformula.rformat`. The
structures below this layer print themselves (``ReTrms``, the ``lFormula`` result, ``VarCorr``);
the fitted model, its summary and anova tables reach these printers through the generic
:func:`lmeformula.generics.show`, for which this module registers them at the end.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from .anovatable import AnovaTable, LsMeansTable
from .ddf.step import StepResult
from .generics import show
from .mermod import LmerMod, Summary, format_varcorr
from .rformat import format_pval as _format_pval
from .rformat import print_char_matrix as _print_char_matrix
from .rformat import signif_stars as _stars

__all__ = ["format_anova", "format_coefmat", "format_ls_means", "format_merMod", "format_summary",
           "format_varcorr", "ls_means_notes"]


# ---- fitted models ---------------------------------------------------------------------------

def _call_lines(m: LmerMod, long: bool = True, expanded: bool = True) -> list[str]:
    """The Formula/Data/Weights/Offset/Control/Subset lines. ``expanded``: the formula with
    ``||`` expanded, as lmer stores it; glmer's call keeps the formula as written."""
    from .formula.ast import BinOp, cat_fill, deparse_lines
    from .formula.limits import recursion_room
    from .formula.parser import parse_formula

    parsed = m.lformula.parsed
    if parsed.lhs is not None:
        with recursion_room(len(parsed.text)):
            lhs, rhs = parsed.lhs, parsed.stored_rhs
            if not expanded:
                written = parse_formula(parsed.text)
                lhs, rhs = written[0] or parsed.lhs, written[1]
            formula_lines = deparse_lines(BinOp("~", lhs, rhs))
    else:
        formula_lines = [m.formula]
    lines = [cat_fill(["Formula:", *formula_lines]), f"   Data: {m.data_name}"]
    args = m.call_args
    # the weights and offset expressions as R deparses them in the call (``z/2`` for the
    # text ``z / 2``), as the subset's
    if "weights" in args:
        lines.append(f"Weights: {_deparse_argument(args['weights'])}")
    if "offset" in args:
        lines.append(f" Offset: {_deparse_argument(args['offset'])}")
    if long and "control" in args:
        # the control expression's deparsed lines, filled to 80 as R's cat(fill = TRUE)
        lines.append(cat_fill(["Control:", *args["control"].split("\n")]))
    if "subset" in args:
        lines.append(f" Subset: {_deparse_argument(args['subset'])}")
    return lines


def _deparse_argument(text: str) -> str:
    """The subset (weights, offset) expression as R deparses it in the call (``f3 != "lo"``
    for the text ``f3 != 'lo'``, spaces around most operators, none around ``/`` and ``^``);
    text that does not parse is shown as given."""
    from .errors import LmeFormulaError
    from .formula.ast import deparse
    from .formula.parser import parse_expression

    try:
        return deparse(parse_expression(text))
    except (LmeFormulaError, RecursionError):
        return text


def _method_title(m: LmerMod) -> str:
    kind = "REML" if m.is_REML else "maximum likelihood "
    return f"Linear mixed model fit by {kind} ['lmerMod']"


def _lmertest_title(m: LmerMod, ddf: str) -> list[str]:
    """lmerTest's title through lme4's ``.prt.methTit``: too long for one line of 80, the
    title is wrapped at 78 and ``[lmerModLmerTest]`` follows as R's ``cat(fill = TRUE)``
    places it."""
    kind = "REML" if m.is_REML else "maximum likelihood "
    name = {"Satterthwaite": "Satterthwaite's", "Kenward-Roger": "Kenward-Roger's"}[ddf]
    title = f"Linear mixed model fit by {kind}. t-tests use {name} method"
    cls = "lmerModLmerTest"
    if len(title) + 5 + len(cls) <= 80:
        return [f"{title} ['{cls}']"]
    wrapped = textwrap.wrap(title, width=78, subsequent_indent="  ", break_long_words=False,
                            break_on_hyphens=False)
    items = [*wrapped, " [", cls, "]"]
    lines, cur = [], ""
    for item in items:
        if cur and len(cur) + len(item) > 80:
            lines.append(cur)
            cur = ""
        cur += item
    return [*lines, cur]


def _groups_line(m: LmerMod) -> str:
    groups = "; ".join(f"{k}, {v}" for k, v in m.ngrps.items())
    return f"Number of obs: {m.n}, groups:  {groups}"


def _aic_table(m: LmerMod, digits: int) -> list[str]:
    from .rformat import format_numbers, print_named

    ll = m.logLik()
    vals = [round(m.AIC(), digits), round(m.BIC(), digits), round(ll.value, digits),
            round(m.deviance(), digits)]
    formatted = format_numbers([*vals, float(m.df_residual)])
    formatted[-1] = format_numbers([float(m.df_residual)])[0]
    return print_named(formatted, ["AIC", "BIC", "logLik", "deviance", "df.resid"]).split("\n")


def _r_cat_number(x: float) -> str:
    from .rformat import format_numbers

    return format_numbers([x], 7)[0].strip()


def _conv_lines(m: LmerMod, summary: bool) -> list[str]:
    opt = m.optinfo
    msgs = opt.lme4_messages
    if opt.conv == 0 and not msgs and not opt.warnings:
        return []
    status = "(OK)" if opt.conv == 0 else f"({opt.message})"
    line = f"optimizer ({opt.optimizer}) convergence code: {opt.conv} {status}"
    if summary:
        return [f"{line} ; {len(opt.warnings)} optimizer warnings; {len(msgs)} lme4 warnings "]
    return [line, *msgs, *opt.warnings, ""]


def _fit_messages(m: LmerMod) -> list[str]:
    attrs = m.lformula.X_attrs
    return [x for x in [attrs.get("msgRankdrop"), *attrs.get("msgScaleX", [])] if x]


def format_merMod(m: LmerMod) -> str:
    """lme4's ``print(fit)``."""

    lines = [_method_title(m), *_call_lines(m, long=False)]
    if m.is_REML:
        lines.append(f"REML criterion at convergence: {_r_cat_number(round(m.REMLcrit(), 4))}")
    else:
        lines += _aic_table(m, 4)
    lines.append("Random effects:")
    lines.append(format_varcorr(m.VarCorr, digits=4, comp=("Std.Dev.",)))
    lines.append(_groups_line(m))
    lines += _print_tail(m)
    return "\n".join(lines)


def _print_tail(m: LmerMod) -> list[str]:
    """The end of lme4's ``print`` of a fit (lmerMod and glmerMod alike): the fixed effects
    as a named vector 80 characters wide, then the fit's warnings and convergence lines."""
    from .rformat import format_numbers

    lines: list[str] = []
    fe = m.fixef
    if len(fe):
        lines.append("Fixed Effects:")
        vals = format_numbers(fe.to_numpy().tolist(), 4)
        names = list(fe.index)
        w = max(max(len(v) for v in vals), max(len(n) for n in names))
        per_line = max(1, 80 // (w + 2))
        for s in range(0, len(vals), per_line):
            lines.append("".join(n.rjust(w) + "  " for n in names[s : s + per_line]))
            lines.append("".join(v.rjust(w) + "  " for v in vals[s : s + per_line]))
    else:
        lines.append("No fixed effect coefficients")
    msgs = _fit_messages(m)
    if msgs:
        lines += ["fit warnings:", *msgs]
    return lines + _conv_lines(m, summary=True)


def _correlation_block(m: LmerMod) -> list[str]:
    from .rformat import abbreviate_all, format_numbers

    v = m.vcov().to_numpy()
    p = v.shape[0]
    if p < 2:
        return []
    sd = np.sqrt(np.diag(v))
    corr = v / np.outer(sd, sd)
    names = list(m.fixef.index)
    # lme4's abbreviate(rn, minlength = 11) and (rn, minlength = 6), each of the whole vector
    rns = abbreviate_all(names, 11)
    cns = abbreviate_all(names, 6)
    cells = np.array(format_numbers(np.round(corr.T.ravel(), 3), 7, nsmall=3),
                     dtype=object).reshape(p, p).T
    rows = [[cells[i, j] if i > j else "" for j in range(p - 1)] for i in range(1, p)]
    return ["", "Correlation of Fixed Effects:",
            *_print_char_matrix(cns[:-1], rows, rns[1:], right=False, width=80)]


def format_summary(m: LmerMod, digits: int = 4, ddf: str | None = None) -> str:
    """lme4's ``print(summary(fit))``; with ``ddf`` (``"Satterthwaite"``, ``"Kenward-Roger"``)
    lmerTest's: its title and the coefficients with df, p-values and stars."""
    from .rformat import format_numbers, print_named, zapsmall

    title = _lmertest_title(m, ddf) if ddf else [_method_title(m)]
    # lmerTest's lmer stores the call as written (res@call <- orig_call), so its summary's
    # Formula line keeps (x || g) where lme4's shows the expanded formula
    lines = [*title, *_call_lines(m, expanded=not ddf), ""]
    if m.is_REML:
        lines.append(f"REML criterion at convergence: {_r_cat_number(round(m.REMLcrit(), 1))}")
    else:
        lines += _aic_table(m, 1)
    lines.append("")
    res = m.residuals(type="pearson", scaled=True).dropna().to_numpy()
    q = np.quantile(res, [0, 0.25, 0.5, 0.75, 1.0])
    q = zapsmall(q, digits + 1)
    lines.append("Scaled residuals: ")
    lines.append(print_named(format_numbers(q.tolist(), digits),
                             ["Min", "1Q", "Median", "3Q", "Max"]))
    lines.append("")
    lines.append("Random effects:")
    lines.append(format_varcorr(m.VarCorr, digits=digits, comp=("Variance", "Std.Dev.")))
    lines.append(_groups_line(m))
    if len(m.fixef) and ddf:
        from .ddf import coef_table

        coefs = coef_table(m, ddf=ddf)  # lmerTest's table: df and p-values
    else:
        coefs = m.summary().coefficients
    return "\n".join(lines + _summary_tail(m, coefs, digits))


def _summary_tail(m: LmerMod, coefs: pd.DataFrame, digits: int) -> list[str]:
    """The end of lme4's ``print(summary(fit))`` (lmerMod and glmerMod alike): the coefficient
    block and correlations, then fit warnings and convergence lines."""
    lines: list[str] = []
    if len(m.fixef):
        lines += ["", "Fixed effects:", *format_coefmat(coefs, digits)]
        # lme4.summary.cor.max is 12; above it lme4 prints nothing here (only a message on
        # stderr pointing to vcov(), which m.vcov() gives)
        if len(m.fixef) <= 12:
            lines += _correlation_block(m)
    msgs = _fit_messages(m)
    if msgs:
        lines += ["fit warnings:", *msgs]
    return lines + _conv_lines(m, summary=False)


def format_coefmat(table: pd.DataFrame, digits: int = 4, cs_ind: list[int] | None = None,
                   tst_ind: list[int] | None = None, zap_ind: tuple[int, ...] = (),
                   has_p: bool | None = None, signif_stars: bool = True,
                   na_print: str = "NA") -> list[str]:
    """R's ``printCoefmat``: coefficient-like columns (``cs_ind``) formatted together, test
    statistics (``tst_ind``) rounded to ``dig.tst``, p-values by ``format.pval``, significance
    stars and their legend. Defaults as R's: the last column is a p-value when its name starts
    with ``Pr(``; the one before it the statistic; the rest coefficients."""
    from .rformat import format_numbers

    cols = list(table.columns)
    nc = len(cols)
    if has_p is None:
        has_p = nc >= 4 and str(cols[-1])[:3] in ("Pr(", "p-v")
    k = nc - int(has_p) - (1 if tst_ind is None else len(tst_ind))
    cs = list(range(k)) if cs_ind is None else list(cs_ind)
    tst = [k] if tst_ind is None else list(tst_ind)
    xm = table.to_numpy(dtype=float).copy()
    n = xm.shape[0]
    na = np.isnan(xm)
    cells = [["" for _ in range(nc)] for _ in range(n)]
    dig_tst = max(1, min(5, digits - 1))

    def put(col_idx: list[int], values: np.ndarray, dig: int) -> None:
        ok = [(i, j) for j_pos, j in enumerate(col_idx) for i in range(n)
              if not np.isnan(values[i, j_pos])]
        texts = format_numbers([values[i, col_idx.index(j)] for i, j in ok], dig) if ok else []
        for (i, j), t in zip(ok, texts, strict=True):
            cells[i][j] = t

    for j in zap_ind:
        from .rformat import zapsmall

        col = xm[:, j]
        if (~np.isnan(col)).any():
            xm[:, j] = zapsmall(col, digits)
    if cs:
        coef_se = xm[:, cs]
        acs = np.abs(coef_se[np.isfinite(coef_se)])
        if acs.size:
            nz = acs[acs != 0]
            digmin = 1 + (np.floor(np.log10([nz.min(), nz.max()])) if nz.size
                          else np.array([0.0]))
            put(cs, np.round(coef_se, int(max(1, *(digits - digmin)))), digits)
    if tst:
        put(tst, np.round(xm[:, tst], dig_tst), digits)
    other = [j for j in range(nc) if j not in cs and j not in tst and not (has_p and j == nc - 1)]
    for j in other:
        put([j], xm[:, [j]], digits)
    # a non-zero value shown as 0 gets digits - 1 significant digits instead
    for i in range(n):
        for j in range(nc - int(has_p)):
            if j in tst or na[i, j] or not cells[i][j]:
                continue
            if (xm[i, j] == 0) != (float(cells[i][j]) == 0):
                cells[i][j] = format_numbers([xm[i, j]], max(1, digits - 1))[0]
    for i in range(n):
        for j in range(nc):
            if na[i, j]:
                cells[i][j] = na_print
    legend: list[str] = []
    header = [str(c) for c in cols]
    if has_p:
        pv = xm[:, -1]
        okp = [i for i in range(n) if not np.isnan(pv[i])]
        if okp:
            for i, t in zip(okp, _format_pval([pv[i] for i in okp], dig_tst), strict=True):
                cells[i][-1] = t
            if signif_stars and any(pv[i] < 0.1 for i in okp):
                stars = [_stars(p) if not np.isnan(p) else "" for p in pv]
                width = max(len(s) for s in stars)
                header.append("")
                for r, st in zip(cells, stars, strict=True):
                    r.append(st.ljust(width))
                legend = ["---",
                          "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
    # R right-justifies the formatted strings column by column
    return _print_char_matrix(header, cells, [str(i) for i in table.index], right=True,
                              width=80) + legend


def format_anova(anova_table: AnovaTable, digits: int = 5) -> str:
    """R's ``print.anova`` (through ``printCoefmat``), heading included."""
    from .rformat import format_numbers, zapsmall

    table = anova_table.table
    cols = list(table.columns)
    has_p = cols[-1].startswith("Pr(")
    test_cols = [c for c in cols if c in ("Chisq", "F value")]
    dig_tst = max(1, min(5, digits - 1))
    cells: dict[str, list[str]] = {}
    for c in cols:
        x = table[c].to_numpy(dtype=float)
        na = np.isnan(x)
        if has_p and c == cols[-1]:
            ok = [i for i in range(len(x)) if not na[i]]
            pvals = _format_pval([x[i] for i in ok], dig_tst)
            col = [""] * len(x)
            for i, s in zip(ok, pvals, strict=True):
                col[i] = s
            cells[c] = col
            continue
        if c in test_cols:
            vals = np.round(x, dig_tst)
        elif c.endswith("Df"):
            vals = x
        else:
            vals = zapsmall(x, digits) if (~na).any() else x
        finite = [i for i in range(len(x)) if not na[i]]
        formatted = format_numbers([vals[i] for i in finite], digits) if finite else []
        col = [""] * len(x)
        for i, s in zip(finite, formatted, strict=True):
            col[i] = s
        cells[c] = col
    header = list(cols)
    rows = [[cells[c][i] for c in cols] for i in range(len(table))]
    legend = []
    if has_p:
        stars = [_stars(p) for p in table[cols[-1]].to_numpy(dtype=float)]
        if any(s.strip() for s in stars):
            width = max(len(s) for s in stars)
            header.append("")
            for r, s in zip(rows, stars, strict=True):
                r.append(s.ljust(width))
            legend = ["---", "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
    lines = list(anova_table.heading)
    # wider than 80 characters (a long term label), R prints the columns in blocks
    lines += _print_char_matrix(header, rows, [str(i) for i in table.index], right=True,
                                width=80)
    return "\n".join(lines + legend)


def format_ls_means(table: LsMeansTable, digits: int = 5) -> str:
    """lmerTest's ``print.ls_means`` (of ``ls_means`` and ``difflsmeans``): the heading, the
    table through R's ``printCoefmat`` (Estimate, Std. Error, lower and upper formatted
    together, the df rounded to one decimal, the t value to ``digits - 1`` decimals, p-values
    by ``format.pval``, stars), then the confidence level (``format(100 * level,
    digits = 2)``) and the df method, each line only when the table has that attribute."""
    tab = table.table.copy()
    if len(tab):
        # R's round(x[, "df"], 1): df values are not at decimal ties (they come from a
        # Satterthwaite or Kenward-Roger formula), so numpy's rounding gives the same
        tab["df"] = tab["df"].round(1)
    lines = [*table.heading,
             *format_coefmat(tab, digits, cs_ind=[0, 1, 4, 5], tst_ind=[3], has_p=True)]
    level, method = ls_means_notes(table)
    if level is not None:
        lines += ["", f"  {level}"]
    if method is not None:
        # cat("  Degrees of freedom method:", ddf, "\n") leaves a space before the newline
        lines.append(f"  {method} ")
    return "\n".join(lines)


def ls_means_notes(table: LsMeansTable) -> tuple[str | None, str | None]:
    """The lines ``print.ls_means`` writes below the table, without their indentation: the
    confidence level (``format(100 * level, digits = 2)``) and the df method, each None when
    the table lacks that attribute (the text and the HTML layouts both)."""
    from .rformat import format_numbers

    level = table.attrs.get("confidence_level")
    ddf = table.attrs.get("ddf")
    return (None if level is None
            else f"Confidence level: {format_numbers([100 * level], 2)[0].strip()}%",
            None if ddf is None else f"Degrees of freedom method: {ddf}")


def format_step(s: StepResult) -> str:
    """lmerTest's ``print.step_list``: the random-effect table, the fixed-effect table and
    the final model's formula (``deparse2(formula(model))``)."""
    return (f"{format_anova(s.random)}\n\n{format_anova(s.fixed)}\n\nModel found:\n"
            f"{s.model.formula}")


# ---- the printed layouts of the generic function show (lmeformula.generics) ---------------

def _show_summary(s: Summary) -> str:
    return format_summary(s.model, ddf=s.ddf)


show.register(LmerMod, format_merMod)
show.register(Summary, _show_summary)
show.register(AnovaTable, format_anova)
show.register(LsMeansTable, format_ls_means)
show.register(StepResult, format_step)
