"""lme4's ``lmList``: one ordinary least-squares fit per level of a grouping factor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .checks import independent_columns
from .errors import FormulaError
from .formula.ast import BinOp
from .formula.parser import parse_formula
from .formula.terms import terms
from .frame import check_response, model_frame
from .modelmatrix import model_matrix
from .reterms import _grouping_factor
from .transforms import drop_unused_levels
from .validate import check_flag

__all__ = ["LmList", "lmList"]


@dataclass
class LmList:
    """Per-group least-squares fits.

    Attributes
    ----------
    coefficients
        One row per group level, one column per coefficient (NaN where a group's design is
        rank deficient, as ``lm`` gives NA).
    rss, df
        Residual sum of squares and residual degrees of freedom per group.
    pool
        Whether :meth:`sigma` pools the residual variance over groups.
    """

    coefficients: pd.DataFrame
    rss: pd.Series
    df: pd.Series
    pool: bool = True

    def coef(self) -> pd.DataFrame:
        """The coefficients (R's ``coef(lmList)``)."""
        return self.coefficients

    def pooled_sd(self) -> float:
        """sqrt(sum of RSS / sum of residual df) over the groups (R's ``pooledSD``)."""
        return float(np.sqrt(self.rss.sum() / self.df.sum()))

    @property
    def sigma(self) -> float:
        """Residual standard error (pooled when ``pool``)."""
        return self.pooled_sd()


def lmList(formula: str, data: pd.DataFrame, pool: bool = True, na_action: str = "omit",
           syntax: str = "R") -> LmList:
    """Fit ``y ~ x`` separately in each group of ``formula = "y ~ x | g"``.

    Parameters
    ----------
    formula
        ``response ~ terms | group``.
    data
        The data (never modified).
    pool
        Pool the residual variance across groups for the reported σ.
    na_action
        NA handling for the model frame.
    syntax
        ``"R"`` (default) or ``"formulaic"`` (formulaic's multi-part ``y ~ x | g``; it
        evaluates the formula's Python expressions: use trusted formulas only).
    """
    check_flag(pool, "pool")
    if syntax != "R":
        from .pyformula import check_syntax
        from .pyformula.lmlist import formulaic_lmlist_design

        check_syntax(syntax)
        y, x_all, columns, group = formulaic_lmlist_design(formula, data, na_action)
    else:
        lhs, rhs = parse_formula(formula)
        if not (isinstance(rhs, BinOp) and rhs.op == "|"):
            raise FormulaError(f"lmList needs a formula 'y ~ x | g', got {formula!r}")
        frame = model_frame(lhs, rhs, data, na_action=na_action)
        y = check_response(frame)
        t = terms(rhs.left, lhs)
        mm = model_matrix(t, frame.variables, frame.nrow)
        x_all, columns = mm.values, mm.columns
        group = drop_unused_levels(_grouping_factor(rhs.right, frame))
    codes = np.asarray(group.codes)
    coefs, rss, dfs = [], [], []
    for level in range(len(group.categories)):
        rows = codes == level
        x, yy = x_all[rows], y[rows]
        beta = np.full(x.shape[1], np.nan)
        keep = independent_columns(x)
        if keep:
            sol, *_ = np.linalg.lstsq(x[:, keep], yy, rcond=None)
            beta[keep] = sol
            resid = yy - x[:, keep] @ sol
            rss.append(float(resid @ resid))
        else:
            rss.append(float(yy @ yy))
        dfs.append(int(rows.sum()) - len(keep))
        coefs.append(beta)
    index = [str(c) for c in group.categories]
    return LmList(pd.DataFrame(coefs, index=index, columns=columns),
                  pd.Series(rss, index=index), pd.Series(dfs, index=index), pool)
