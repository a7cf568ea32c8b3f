"""lme4's anova table type, lme4's table of a single model's fixed effects, and lmerTest's
table of least-squares means.

Below both :mod:`lmeformula.inference` (likelihood-ratio tables) and :mod:`lmeformula.ddf`
(lmerTest's F tables and least-squares means), which return an :class:`AnovaTable` or an
:class:`LsMeansTable`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from .generics import show, show_html

if TYPE_CHECKING:
    from .mermod import LmerMod

__all__ = ["AnovaTable", "LsMeansTable", "anova_single"]


class _RTable(pd.DataFrame):
    """A DataFrame printed as R prints its table: R's heading above it, the printer reached
    through :func:`lmeformula.generics.show` (text) and :func:`~lmeformula.generics.show_html`
    (notebooks), registered by :mod:`lmeformula.printing` and :mod:`lmeformula.html`. Derived
    frames (selections, arithmetic) are plain DataFrames.

    Attributes
    ----------
    heading
        The lines R prints above the table.
    """

    _metadata: ClassVar[list[str]] = ["heading"]

    def __init__(self, table: object = None, heading: list[str] | None = None,
                 **kwargs: object) -> None:
        super().__init__(table, **kwargs)  # type: ignore[call-arg]
        self.heading = list(heading or [])

    @property
    def _constructor(self):  # type: ignore[no-untyped-def]
        return pd.DataFrame

    @property
    def table(self) -> pd.DataFrame:
        """The table as a plain DataFrame."""
        return pd.DataFrame(self)

    def __str__(self) -> str:
        return show(self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return show_html(self)


class AnovaTable(_RTable):
    """An anova table: a DataFrame (columns and index as R's) with R's heading, printed as R
    prints it (``print.anova``). Derived frames (selections, arithmetic) are plain DataFrames.

    Attributes
    ----------
    heading
        The lines R prints above the table.
    kind
        ``"lrt"`` (models compared), ``"single"`` (lme4's table of one model),
        ``"lmertest"`` (lmerTest's F-tests), ``"ranova"`` (lmerTest's random-effects
        tests) or ``"drop1"`` (lme4's single term deletions by refitting).
    """

    _metadata: ClassVar[list[str]] = ["heading", "kind"]

    def __init__(self, table: object = None, heading: list[str] | None = None,
                 kind: str = "lrt", **kwargs: object) -> None:
        super().__init__(table, heading, **kwargs)
        self.kind = kind


class LsMeansTable(_RTable):
    """lmerTest's ``ls_means`` / ``difflsmeans`` table: a DataFrame (``Estimate``,
    ``Std. Error``, ``df``, ``t value``, ``lower``, ``upper``, ``Pr(>|t|)``, one row per
    level or pair of levels) printed as lmerTest's ``print.ls_means``: the heading, the
    table through R's ``printCoefmat`` and the confidence level and df method below it.
    Derived frames (selections, arithmetic) are plain DataFrames.

    The confidence level and the df method are ``attrs["confidence_level"]`` and
    ``attrs["ddf"]`` (with ``attrs["term"]``, each row's term, and ``attrs["hypotheses"]``,
    the contrast matrices), as lmerTest keeps them in the object's attributes.

    Attributes
    ----------
    heading
        The lines printed above the table.
    """


def anova_single(m: LmerMod) -> AnovaTable:
    """lme4's ``anova`` of one model: the sequential sums of squares of its fixed-effects
    terms (from RX β) with their F values over σ²."""
    rx = m.RX()
    effects = rx @ m.beta
    assign = np.array(m.lformula.X_attrs["assign"])
    labels = m.lformula.parsed.fixed.term_labels
    rows, names = [], []
    s2 = m.sigma**2
    for k in sorted(set(assign.tolist()) - {0}):
        cols = assign == k
        ss = float((effects[cols] ** 2).sum())
        npar = int(cols.sum())
        rows.append({"npar": npar, "Sum Sq": ss, "Mean Sq": ss / npar,
                     "F value": ss / npar / s2})
        names.append(labels[k - 1])
    table = pd.DataFrame(rows, index=names, columns=["npar", "Sum Sq", "Mean Sq", "F value"])
    return AnovaTable(table, ["Analysis of Variance Table"], "single")
