"""lme4's printed output of a glmerMod: ``print(m)`` and ``print(summary(m))``.

Registered at the end for the generic :func:`lmeformula.generics.show`, which ``GlmerMod`` and
``GlmerSummary`` call (imports run one way: glmermod does not import this module).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .generics import show
from .glmermod import GlmerMod, GlmerSummary
from .printing import (
    _call_lines,
    _groups_line,
    _print_tail,
    _summary_tail,
    format_varcorr,
)

__all__ = ["format_glmer", "format_glmer_summary", "method_title_lines"]

_WIDTH = 80


def _strwrap(text: str, width: int, exdent: int) -> list[str]:
    """R's ``strwrap``: greedy, lines shorter than ``width``, later lines indented."""
    lines: list[str] = []
    cur = ""
    for word in text.split():
        indent = 0 if not lines else exdent
        if cur and indent + len(cur) + 1 + len(word) >= width:
            lines.append(" " * indent + cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    if cur:
        lines.append(" " * (exdent if lines else 0) + cur)
    return lines


def method_title_lines(m: Any) -> list[str]:
    """lme4's ``.prt.methTit`` for a glmerMod: wrapped as R's ``strwrap`` + ``cat(fill=)``."""
    nagq = m.nAGQ
    how = ("(Laplace Approximation)" if nagq == 1 else
           f"(Adaptive Gauss-Hermite Quadrature, nAGQ = {nagq})")
    title = f"Generalized linear mixed model fit by maximum likelihood {how}"
    cls = "glmerMod"
    if len(title) + 5 + len(cls) <= _WIDTH:
        return [f"{title} ['{cls}']"]
    items = [*_strwrap(title, _WIDTH - 2, 2), " [", cls, "]"]
    out: list[str] = []
    cur = ""
    for item in items:
        if cur and len(cur) + len(item) > _WIDTH:
            out.append(cur)
            cur = ""
        cur += item
    out.append(cur)
    return out


def _family_line(m: Any) -> str:
    fam = m.family
    return f" Family: {fam.family}  ( {fam.link.name} )"


def _aic_table(m: Any, digits: int) -> list[str]:
    from .rformat import format_numbers, print_named

    ll = m.logLik()
    vals = [round(m.AIC(), digits), round(m.BIC(), digits), round(ll.value, digits),
            round(-2.0 * ll.value, digits)]
    formatted = format_numbers([*vals, float(m.df_residual)])
    formatted[-1] = format_numbers([float(m.df_residual)])[0]
    return print_named(formatted, ["AIC", "BIC", "logLik", "deviance", "df.resid"]).split("\n")


def _varcorr_lines(m: Any, digits: int, comp: tuple[str, ...]) -> str:
    return format_varcorr(m.VarCorr, digits=digits, comp=comp)


def format_glmer(m: Any) -> str:
    """lme4's ``print(fit)`` of a glmerMod."""

    lines = [*method_title_lines(m), _family_line(m), *_call_lines(m, long=False, expanded=False)]
    lines += _aic_table(m, 4)
    lines.append("Random effects:")
    lines.append(_varcorr_lines(m, 4, ("Std.Dev.",)))
    lines.append(_groups_line(m))
    lines += _print_tail(m)
    return "\n".join(lines)


def format_glmer_summary(m: Any, digits: int = 4) -> str:
    """lme4's ``print(summary(fit))`` of a glmerMod."""
    from .rformat import format_numbers, print_named, zapsmall

    lines = [*method_title_lines(m), _family_line(m), *_call_lines(m, expanded=False), ""]
    lines += _aic_table(m, 1)
    lines.append("")
    res = m.residuals(type="pearson", scaled=True).dropna().to_numpy()
    q = zapsmall(np.quantile(res, [0, 0.25, 0.5, 0.75, 1.0]), digits + 1)
    lines.append("Scaled residuals: ")
    lines.append(print_named(format_numbers(list(q), digits), ["Min", "1Q", "Median", "3Q", "Max"]))
    lines.append("")
    lines.append("Random effects:")
    lines.append(_varcorr_lines(m, digits, ("Variance", "Std.Dev.")))
    lines.append(_groups_line(m))
    return "\n".join(lines + _summary_tail(m, m.summary().coefficients, digits))


def _show_summary(s: GlmerSummary) -> str:
    return format_glmer_summary(s.model)


show.register(GlmerMod, format_glmer)
show.register(GlmerSummary, _show_summary)
