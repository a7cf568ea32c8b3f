"""Figures for mixed models (matplotlib, an optional dependency: ``pip install lmeformula[plot]``).

* :func:`image` — a sparse matrix's pattern, as ``Matrix::image`` draws it (Zt, Λ, Z'Z, L);
* :func:`caterpillar` — conditional modes with intervals from their conditional variances;
* :func:`shrinkage` — per-group least-squares coefficients against the mixed model's;
* :func:`profile_zeta` — the profile ζ of parameters, with the interval cut-offs;
* :func:`criterion_contour` — the profiled criterion over two θ components;
* :func:`group_lines` — per-group least-squares lines against the mixed model's lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

if TYPE_CHECKING:
    from .mermod import LmerMod

__all__ = [
    "caterpillar",
    "criterion_contour",
    "group_lines",
    "image",
    "profile_zeta",
    "shrinkage",
]


def _axes(ax: Any = None, figsize: tuple[float, float] = (6, 4)) -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("lmeformula.plots needs matplotlib: pip install 'lmeformula[plot]'"
                          ) from err
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def image(matrix: sp.spmatrix | np.ndarray, ax: Any = None, title: str | None = None,
          cmap: str = "RdBu_r") -> Any:
    """Draw a matrix's non-zeros (white = structural zero), values coloured around 0."""
    ax = _axes(ax)
    dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix, dtype=float)
    shown = np.ma.masked_where(dense == 0, dense)
    lim = np.abs(dense).max() or 1.0
    ax.imshow(shown, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest", aspect="auto")
    nnz = int((dense != 0).sum())
    ax.set_title(title or f"{dense.shape[0]} x {dense.shape[1]}, {nnz} non-zeros")
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    return ax


def caterpillar(m: LmerMod, group: str | None = None, column: int = 0, level: float = 0.95,
                ax: Any = None) -> Any:
    """Conditional modes of one column of a grouping factor's random effects, sorted, with
    ± z·sd intervals from the conditional variances (lme4's ``dotplot(ranef(m))``)."""
    ranef = m.ranef(condVar=True)
    group = group or next(iter(ranef))
    df = ranef[group]
    post = df.attrs["postVar"]
    post = post[0] if isinstance(post, list) else post
    sd = np.sqrt(post[:, column, column])
    values = df.iloc[:, column].to_numpy()
    order = np.argsort(values)
    z = stats.norm.ppf(0.5 + level / 2)
    ax = _axes(ax, (5, max(3, 0.18 * len(values))))
    pos = np.arange(len(values))
    ax.errorbar(values[order], pos, xerr=z * sd[order], fmt="o", ms=3, capsize=0)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(pos)
    ax.set_yticklabels(np.asarray(df.index)[order], fontsize=7)
    ax.set_xlabel(f"{df.columns[column]} | {group}")
    return ax


def shrinkage(m: LmerMod, data: pd.DataFrame, ols_formula: str, group: str,
              columns: tuple[int, int] = (0, 1), ax: Any = None) -> Any:
    """Per-group least-squares coefficients (``lmList``) against the mixed model's
    (``coef``), with arrows showing the shrinkage and the estimated covariance ellipse of the
    random effects (68% contour) centred at the fixed effects."""
    from .lmlist import lmList

    ols = lmList(ols_formula, data).coef()
    mixed = m.coef[group]
    cx, cy = ols.columns[columns[0]], ols.columns[columns[1]]
    ax = _axes(ax, (5.5, 5))
    ax.scatter(ols[cx], ols[cy], s=18, label="within-group least squares")
    ax.scatter(mixed[cx], mixed[cy], s=18, marker="s", label="mixed model")
    for lev in ols.index:
        ax.annotate("", xy=(mixed.loc[lev, cx], mixed.loc[lev, cy]),
                    xytext=(ols.loc[lev, cx], ols.loc[lev, cy]),
                    arrowprops={"arrowstyle": "->", "color": "grey", "lw": 0.6})
    vc = next(t for t in m.VarCorr.terms if t.group == group or t.group.startswith(group))
    cov = vc.cov[np.ix_(columns, columns)]
    w, v = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(t), np.sin(t)])
    ell = v @ (np.sqrt(np.clip(w, 0, None))[:, None] * circle)
    fe = m.fixef
    ax.plot(fe[cx] + ell[0], fe[cy] + ell[1], color="k", lw=0.8, label="random-effects sd")
    ax.set_xlabel(cx)
    ax.set_ylabel(cy)
    ax.legend(fontsize=8)
    return ax


def profile_zeta(profile: Any, which: list[str] | None = None, level: float = 0.95,
                 axes: Any = None) -> Any:
    """ζ against each parameter of a :func:`lmeformula.profile` (lme4's ``xyplot`` of a
    profile), with the ±qnorm cut-offs of the interval."""
    import matplotlib.pyplot as plt

    names = which or list(profile.points)
    if axes is None:
        _, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
        axes = axes[0]
    cut = stats.norm.ppf(0.5 + level / 2)
    for ax, name in zip(axes, names, strict=False):
        pts = profile.points[name]
        ax.plot(pts["value"], pts["zeta"], "o-", ms=3)
        for c in (-cut, cut):
            ax.axhline(c, color="grey", lw=0.6, ls="--")
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xlabel(name)
        ax.set_ylabel("ζ")
    return axes


def criterion_contour(m: LmerMod, i: int = 0, j: int = 1, span: float = 2.0,
                      points: int = 41, ax: Any = None) -> Any:
    """The profiled criterion (REML or ML, as the fit) over θ_i and θ_j, the others held at
    the estimate; levels are the criterion's increase over the optimum."""
    theta = m.theta.to_numpy()
    names = list(m.theta.index)
    lower = m.lformula.reTrms.lower
    lo_i = max(lower[i], theta[i] / span) if lower[i] == 0 else theta[i] - span
    lo_j = max(lower[j], theta[j] / span) if lower[j] == 0 else theta[j] - span
    gi = np.linspace(lo_i, theta[i] * span if lower[i] == 0 else theta[i] + span, points)
    gj = np.linspace(lo_j, theta[j] * span if lower[j] == 0 else theta[j] + span, points)
    dev = np.empty((points, points))
    base = m.devfun(theta)
    for a, vi in enumerate(gi):
        for b, vj in enumerate(gj):
            th = theta.copy()
            th[i], th[j] = vi, vj
            dev[b, a] = m.devfun(th) - base
    m.devfun(theta)  # leave the deviance function at the estimate
    ax = _axes(ax, (5, 4.5))
    levels = stats.chi2.ppf([0.5, 0.8, 0.9, 0.95, 0.99], 2)
    cs = ax.contour(gi, gj, dev, levels=levels)
    ax.clabel(cs, fmt={lv: f"{p:.0%}" for lv, p in zip(levels, [0.5, 0.8, 0.9, 0.95, 0.99],
                                                          strict=True)}, fontsize=7)
    ax.plot(theta[i], theta[j], "k+", ms=10)
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    return ax


def group_lines(m: LmerMod, data: pd.DataFrame, x: str, y: str, group: str,
                ax: Any = None) -> Any:
    """For each group: its data, its own least-squares line (dashed) and the mixed model's
    line from ``coef(m)`` (solid) — the picture of shrinkage towards the population line."""
    ax = _axes(ax)
    coefs = m.coef[group]
    xs = np.linspace(data[x].min(), data[x].max(), 20)
    colors = iter(__import__("matplotlib").rcParams["axes.prop_cycle"].by_key()["color"] * 20)
    for lev, sub in data.groupby(group, observed=True):
        c = next(colors)
        ax.scatter(sub[x], sub[y], s=10, color=c)
        slope, intercept = np.polyfit(sub[x], sub[y], 1)
        ax.plot(xs, intercept + slope * xs, ls="--", color=c, lw=1)
        row = coefs.loc[str(lev)]
        ax.plot(xs, row["(Intercept)"] + row[x] * xs, color=c, lw=1.6, label=str(lev))
    fe = m.fixef
    ax.plot(xs, fe["(Intercept)"] + fe[x] * xs, color="k", lw=2.2, label="population")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(fontsize=7, ncol=2)
    return ax

from .diagnostic_plots import diagnostics as diagnostics  # noqa: E402  (see diagnostic_plots)
