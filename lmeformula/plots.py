"""Figures for mixed models (matplotlib, an optional dependency: ``pip install lmeformula[plot]``).

* :func:`image` — a matrix's non-zeros, as ``Matrix::image`` draws them (Zt, Λ, Z'Z, L): a
  black pattern when every non-zero is the same, a one-colour scale for non-negative values,
  a two-sided one otherwise, structural zeros white; rows and columns labelled, term blocks
  marked (:func:`re_labels`, :func:`term_blocks` give them for a model);
* :func:`caterpillar` — conditional modes with intervals from their conditional variances,
  every panel in one level order (lme4's ``dotplot(ranef(m, condVar = TRUE))``);
* :func:`shrinkage` — per-group least-squares coefficients against the mixed model's;
* :func:`profile_zeta` — the profile ζ of parameters, the interval marked;
* :func:`criterion_contour` — the profiled criterion over two θ components, the 99% region
  inside the frame;
* :func:`group_lines` — per-group least-squares lines against the mixed model's lines.

Every function draws into ``ax`` (or ``axes``) when given and returns what it drew into.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from .errors import ArgumentError, RandomEffectsError
from .mpl import pyplot

if TYPE_CHECKING:
    from .mermod import LmerMod
    from .reterms import ReTrms

__all__ = [
    "caterpillar",
    "criterion_contour",
    "group_lines",
    "image",
    "profile_zeta",
    "re_labels",
    "shrinkage",
    "term_blocks",
]

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _axes(ax: Any = None, figsize: tuple[float, float] = (6, 4)) -> Any:
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _retrms(x: Any) -> ReTrms:
    """The ReTrms of a fitted model, of an lFormula result, or the ReTrms itself."""
    if hasattr(x, "lformula"):
        return x.lformula.reTrms
    if hasattr(x, "reTrms"):
        return x.reTrms
    return x


def re_labels(x: Any) -> list[str]:
    """A label for every random effect (row of Zt, column of Z, row and column of Λ):
    ``"level column"``, e.g. ``"309 Days"``, in lme4's order (term by term, level-major).

    Parameters
    ----------
    x
        A fitted model, an :func:`lmeformula.lFormula` result or its ``reTrms``.
    """
    out = []
    for term in _retrms(x).terms:
        cats = [str(c) for c in term.factor.categories]
        out += [f"{lev} {col}" for lev in cats for col in term.cnms]
    return out


def term_blocks(x: Any) -> list[tuple[str, int]]:
    """The random-effects terms as ``(name, size)`` blocks of Zt's rows (lme4's ``Gp``),
    for :func:`image`'s ``row_blocks`` / ``col_blocks``."""
    re = _retrms(x)
    gp = np.asarray(re.Gp)
    return [(term.key or term.name, int(gp[k + 1] - gp[k])) for k, term in enumerate(re.terms)]


def _truncated(name: str, lo: float, hi: float, n: int = 128) -> Any:
    from matplotlib.colors import ListedColormap

    plt = pyplot()
    return ListedColormap(plt.get_cmap(name)(np.linspace(lo, hi, n)))


def _two_sided() -> Any:
    """RdBu without its pale middle: a small value is still clearly blue or red, and only
    structural zeros (masked) are white."""
    from matplotlib.colors import ListedColormap

    plt = pyplot()
    base = plt.get_cmap("RdBu_r")
    colours = np.vstack([base(np.linspace(0.0, 0.36, 128)), base(np.linspace(0.64, 1.0, 128))])
    return ListedColormap(colours)


def _ticks(axis: Any, labels: Sequence[str] | None, n: int, fontsize: float,
           max_labels: int) -> None:
    if labels is None:
        return
    if len(labels) != n:
        raise ArgumentError(f"labels: {len(labels)} labels for {n} rows or columns")
    step = max(1, int(np.ceil(n / max_labels)))
    pos = np.arange(0, n, step)
    axis.set_ticks(pos, [str(labels[int(p)]) for p in pos], fontsize=fontsize)


def _blocks(ax: Any, blocks: Sequence[tuple[str, int]] | None, n: int, which: str,
            fontsize: float) -> None:
    if not blocks:
        return
    sizes = [int(s) for _, s in blocks]
    if sum(sizes) != n:
        raise ArgumentError(f"blocks: the blocks cover {sum(sizes)} of {n} rows or columns")
    edges = np.cumsum([0, *sizes])
    centres = (edges[:-1] + edges[1:] - 1) / 2
    names = [str(name) for name, _ in blocks]
    line = ax.axhline if which == "rows" else ax.axvline
    for e in edges[1:-1]:
        line(e - 0.5, color="0.35", lw=1.0, ls="-")
    if which == "rows":
        sec = ax.secondary_yaxis("right")
        sec.set_yticks(centres, names, fontsize=fontsize, rotation=-90, va="center")
    else:
        sec = ax.secondary_xaxis("top")
        sec.set_xticks(centres, names, fontsize=fontsize)
    sec.tick_params(length=0)


def image(matrix: sp.spmatrix | np.ndarray, ax: Any = None, title: str | None = None,
          cmap: Any = None, *, values: bool | None = None,
          row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
          row_blocks: Sequence[tuple[str, int]] | None = None,
          col_blocks: Sequence[tuple[str, int]] | None = None,
          xlabel: str = "column", ylabel: str = "row", colorbar: bool | None = None,
          annotate: bool = False, fontsize: float = 7, max_labels: int = 40) -> Any:
    """Draw a matrix's non-zeros; structural zeros are white.

    Parameters
    ----------
    matrix
        Sparse or dense matrix.
    ax
        Axes to draw into (a new figure when omitted).
    title
        Title; by default the shape and number of non-zeros.
    cmap
        Colour map for the values (overrides the choice below).
    values
        ``False`` draws the pattern only, every non-zero black. ``None`` (default): the
        pattern when all non-zeros are equal (J, an intercept term's Zt), otherwise the values
        — on a one-colour scale from 0 when none is negative, on a blue-red scale around 0
        otherwise, the smallest non-zero still clearly coloured.
    row_labels, col_labels
        A label per row / column (at most ``max_labels`` are printed, evenly spaced).
    row_blocks, col_blocks
        ``(name, size)`` blocks (e.g. :func:`term_blocks`): boundaries drawn, names on the
        right / top.
    xlabel, ylabel
        What the columns and rows are.
    colorbar
        Draw a colour bar; by default when values are shown.
    annotate
        Write each non-zero's value in its cell (for small matrices).
    """
    ax = _axes(ax)
    raw: Any = matrix
    dense = np.atleast_2d(np.asarray(raw.toarray() if hasattr(raw, "toarray") else raw,
                                     dtype=np.float64))
    nonzero = dense[dense != 0]
    nnz = int(nonzero.size)
    if values is None:
        values = nnz > 0 and not np.all(nonzero == nonzero[0])
    shown = np.ma.masked_where(dense == 0, dense)
    if not values:
        from matplotlib.colors import ListedColormap

        im = ax.imshow(np.ma.masked_where(dense == 0, np.ones_like(dense)),
                       cmap=ListedColormap(["black"]), vmin=0, vmax=1,
                       interpolation="nearest", aspect="auto")
    elif nnz and nonzero.min() >= 0:
        im = ax.imshow(shown, cmap=cmap or _truncated("Blues", 0.42, 1.0), vmin=0,
                       vmax=float(nonzero.max()), interpolation="nearest", aspect="auto")
    else:
        lim = float(np.abs(nonzero).max()) if nnz else 1.0
        im = ax.imshow(shown, cmap=cmap or _two_sided(), vmin=-lim, vmax=lim,
                       interpolation="nearest", aspect="auto")
    if colorbar if colorbar is not None else bool(values):
        ax.figure.colorbar(im, ax=ax, shrink=0.85, pad=0.02 if not row_blocks else 0.08)
    if annotate:
        for r, c in zip(*np.nonzero(dense), strict=True):
            rgba = im.cmap(im.norm(dense[r, c] if values else 1.0))
            dark = 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2] < 0.5
            ax.text(c, r, f"{dense[r, c]:.4g}", ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else "black")
    _ticks(ax.yaxis, row_labels, dense.shape[0], fontsize, max_labels)
    _ticks(ax.xaxis, col_labels, dense.shape[1], fontsize, max_labels)
    _blocks(ax, row_blocks, dense.shape[0], "rows", fontsize + 1)
    _blocks(ax, col_blocks, dense.shape[1], "cols", fontsize + 1)
    ax.set_title(title or f"{dense.shape[0]} x {dense.shape[1]}, {nnz} non-zeros",
                 fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def caterpillar(m: LmerMod, group: str | None = None, column: int | None = 0,
                level: float = 0.95, ax: Any = None, *,
                order: Sequence[str] | None = None) -> Any:
    """Conditional modes of a grouping factor's random effects with ± z·sd intervals from
    their conditional variances (lme4's ``dotplot(ranef(m, condVar = TRUE))``).

    Parameters
    ----------
    m
        Fitted model.
    group
        Grouping factor (the first by default).
    column
        Which random effect of the factor; ``None`` draws every one side by side, sharing one
        level order (sorted by the first column, as lme4's dotplot), and returns the axes.
    level
        Coverage of the intervals.
    ax
        Axes (one, or one per column when ``column`` is None).
    order
        Level order, bottom to top (default: increasing conditional mode of the first column
        drawn).
    """
    plt = pyplot()
    ranef = m.ranef(condVar=True)
    group = group or next(iter(ranef))
    _check_group(group, list(ranef))
    df = ranef[group]
    post = df.attrs["postVar"]
    post = post[0] if isinstance(post, list) else post
    columns = list(range(df.shape[1])) if column is None else [column]
    levels = np.asarray([str(i) for i in df.index])
    if order is None:
        idx = np.argsort(df.iloc[:, columns[0]].to_numpy(), kind="stable")
    else:
        where = {lev: k for k, lev in enumerate(levels)}
        idx = np.array([where[str(lev)] for lev in order])
    z = stats.norm.ppf(0.5 + level / 2)
    n = len(idx)
    if ax is None:
        _, axs = plt.subplots(1, len(columns), sharey=True, squeeze=False, layout="constrained",
                              figsize=(3.6 * len(columns) + 0.6, max(2.6, 0.2 * n + 1.0)))
        axs = list(axs[0])
    else:
        axs = list(ax) if column is None else [ax]
    pos = np.arange(n)
    for a, c in zip(axs, columns, strict=True):
        vals = df.iloc[:, c].to_numpy()[idx]
        sd = np.sqrt(post[:, c, c])[idx]
        a.errorbar(vals, pos, xerr=z * sd, fmt="o", ms=3.5, capsize=0, lw=1.2,
                   color="C0", ecolor="C0")
        a.axvline(0, color="0.4", lw=0.8)
        a.set_yticks(pos, levels[idx], fontsize=8 if n <= 40 else 6)
        a.set_ylim(-0.7, n - 0.3)
        a.grid(axis="y", color="0.92", lw=0.6)
        a.set_axisbelow(True)
        a.set_title(f"{df.columns[c]}", fontsize=10)
        a.set_xlabel(f"conditional mode, {level:.0%} interval")
    axs[0].set_ylabel(group)
    return axs if column is None else axs[0]


def shrinkage(m: LmerMod, data: pd.DataFrame, ols_formula: str, group: str,
              columns: tuple[int, int] = (0, 1), ax: Any = None, *,
              annotate: bool | None = None, title: str | None = None) -> Any:
    """Per-group least-squares coefficients (``lmList``) against the mixed model's
    (``coef``): an arrow from each group's own estimate to the mixed model's, the population
    estimate (fixed effects), and the estimated random-effects covariance as an ellipse
    around it: one standard deviation along each principal axis (Mahalanobis distance 1).

    ``annotate`` writes each group's level next to its own estimate (default: 30 groups or
    fewer).
    """
    from .lmlist import lmList

    _check_group(group, list(m.coef))
    ols = lmList(ols_formula, data).coef()
    mixed = m.coef[group]
    cx, cy = ols.columns[columns[0]], ols.columns[columns[1]]
    ax = _axes(ax, (5.8, 5.2))
    ax.scatter(ols[cx], ols[cy], s=22, color="C0", label="own least squares (lmList)",
               zorder=3)
    ax.scatter(mixed.loc[ols.index, cx], mixed.loc[ols.index, cy], s=22, marker="s",
               color="C1", label="mixed model (coef)", zorder=3)
    for lev in ols.index:
        ax.annotate("", xy=(mixed.loc[lev, cx], mixed.loc[lev, cy]),
                    xytext=(ols.loc[lev, cx], ols.loc[lev, cy]),
                    arrowprops={"arrowstyle": "->", "color": "0.45", "lw": 0.8,
                                "shrinkA": 3, "shrinkB": 3})
    if annotate if annotate is not None else len(ols) <= 30:
        for lev in ols.index:
            ax.annotate(str(lev), (ols.loc[lev, cx], ols.loc[lev, cy]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points", color="0.3")
    cov = _group_covariance(m, group, [cx, cy])
    w, v = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, 200)
    circle = np.stack([np.cos(t), np.sin(t)])
    ell = v @ (np.sqrt(np.clip(w, 0, None))[:, None] * circle)
    fe = m.fixef
    ax.plot(fe[cx] + ell[0], fe[cy] + ell[1], color="k", lw=0.8,
            label="random-effects covariance (1 sd)")
    ax.plot(fe[cx], fe[cy], "k+", ms=12, mew=1.5, label="population (fixef)")
    ax.set_xlabel(cx)
    ax.set_ylabel(cy)
    ax.set_title(title or f"{group}: own estimates → mixed model", fontsize=10)
    ax.legend(fontsize=7)
    return ax


def _check_group(group: str, groups: list[str]) -> None:
    if group not in groups:
        raise RandomEffectsError(f"no grouping factor {group!r} in the model (its grouping "
                                 f"factors: {', '.join(map(repr, groups))})")


def _group_covariance(m: LmerMod, group: str, names: list[str]) -> np.ndarray:
    """The covariance of grouping factor ``group``'s random effects on the coefficients
    ``names``: every term of that factor contributes its block (``(x || g)`` gives several,
    ``(1 | g)`` none for the slope); a coefficient with no random effect has variance 0."""
    cov = np.zeros((len(names), len(names)))
    terms = m.lformula.reTrms.terms
    for re_term, vc in zip(terms, m.VarCorr.terms, strict=True):
        if re_term.group_name != group:
            continue
        at = [(i, vc.names.index(n)) for i, n in enumerate(names) if n in vc.names]
        for i, a in at:
            for j, b in at:
                cov[i, j] += vc.cov[a, b]
    return cov


def profile_zeta(profile: Any, which: list[str] | None = None, level: float = 0.95,
                 axes: Any = None, *, wald: bool = False) -> Any:
    """ζ against each parameter of a :func:`lmeformula.profile` (lme4's ``xyplot`` of a
    profile): the points, the ±qnorm cut-offs, and the profile interval where ζ crosses them
    (shaded, bounds dotted).

    With ``wald=True`` each panel also shows the straight line a quadratic log-likelihood
    would give: the tangent of ζ at the estimate (slope from the two profile points either
    side of ζ = 0), whose crossings of the cut-offs are the Wald interval.
    """
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    names = which or list(profile.points)
    if axes is None:
        _, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.2), sharey=True,
                               squeeze=False, layout="constrained")
        axes = axes[0]
    cut = stats.norm.ppf(0.5 + level / 2)
    ci = profile.confint(level)
    for k, (ax, name) in enumerate(zip(axes, names, strict=False)):
        pts = profile.points[name]
        x, zeta = pts["value"].to_numpy(), pts["zeta"].to_numpy()
        ax.plot(x, zeta, "o-", ms=3, lw=1.2, color="C0", label="profile ζ")
        lo, hi = ci.loc[name]
        ax.axvspan(lo, hi, color="C0", alpha=0.1, lw=0)
        for b in (lo, hi):
            if np.isfinite(b):
                ax.axvline(b, color="C0", lw=0.8, ls=":")
        for c in (-cut, cut):
            ax.axhline(c, color="0.5", lw=0.7, ls="--")
        ax.axhline(0, color="0.6", lw=0.6)
        if wald:
            k0 = int(np.searchsorted(zeta, 0.0))
            if 0 < k0 < len(zeta):
                slope = (zeta[k0] - zeta[k0 - 1]) / (x[k0] - x[k0 - 1])
                est = x[k0 - 1] - zeta[k0 - 1] / slope
                # drawn over the profile's ζ range only, so it does not rescale the panel
                ends = np.clip(est + np.array([zeta.min(), zeta.max()]) / slope,
                               x.min(), x.max())
                ax.plot(ends, slope * (ends - est), color="C3", lw=1, ls="-.",
                        label="Wald (tangent at the estimate)")
                if k == 0:
                    ax.legend(fontsize=7, loc="upper left")
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_xlabel(name)
        ax.set_title(f"{level:.0%}: [{lo:.4g}, {hi:.4g}]", fontsize=9)
        if k == 0:
            ax.set_ylabel("ζ (signed √ deviance change)")
    return axes


def _theta_label(m: LmerMod, k: int) -> str:
    """θ_k named for what it is: σ_k/σ for a scalar term (or the first column of a vector
    term), an element of the relative covariance factor λ otherwise."""
    re = _retrms(m)
    names = list(m.theta.index)
    start = 0
    sub = str(k + 1).translate(_SUBSCRIPTS)
    for term in re.terms:
        length = term.theta_length
        if start <= k < start + length:
            for c in range(term.nc):
                for r in range(c, term.nc):
                    if term.theta_index(r, c) == k - start:
                        if r == c == 0:
                            return f"θ{sub} = σ{sub}/σ   ({names[k]})"
                        return f"θ{sub} = λ[{r + 1},{c + 1}] of {term.name}   ({names[k]})"
        start += length
    return f"θ{sub} ({names[k]})"  # pragma: no cover - every θ belongs to a term


def criterion_contour(m: LmerMod, i: int = 0, j: int = 1, span: float | None = None,
                      points: int = 41, ax: Any = None,
                      probs: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.99)) -> Any:
    """The profiled criterion (REML or ML, as the fit) over θ_i and θ_j, the other θ's held at
    the estimate; contours at the χ²₂ quantiles ``probs`` of the criterion's increase over
    the optimum.

    By default the ranges grow until the outermost contour lies inside the frame (or meets
    the bound θ = 0); ``span`` fixes them instead (θ/span to θ·span for a bounded θ, θ ± span
    otherwise).
    """
    theta = m.theta.to_numpy()
    lower = np.asarray(m.lformula.reTrms.lower, dtype=float)
    base = m.devfun(theta)

    def grid(lo: np.ndarray, hi: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray]:
        gi, gj = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
        dev = np.empty((n, n))
        for a, vi in enumerate(gi):
            for b, vj in enumerate(gj):
                th = theta.copy()
                th[i], th[j] = vi, vj
                dev[b, a] = m.devfun(th) - base
        return gi, gj, dev

    levels = stats.chi2.ppf(np.asarray(probs), 2)
    est = theta[[i, j]]
    bound = lower[[i, j]]
    if span is not None:
        lo = np.where(bound == 0, np.maximum(bound, est / span), est - span)
        hi = np.where(bound == 0, est * span, est + span)
    else:
        half = np.where(np.abs(est) > 1e-8, 0.5 * np.abs(est), 0.1)
        lo, hi = np.maximum(est - half, bound), est + half
        for _ in range(8):  # widen each side whose edge is still inside the outer contour
            gi, gj, dev = grid(lo, hi, 13)
            edges = {"lo0": dev[:, 0], "hi0": dev[:, -1], "lo1": dev[0, :], "hi1": dev[-1, :]}
            grown = False
            for key, edge in edges.items():
                d = int(key[-1])
                inside = np.nanmin(edge) < levels[-1]
                if key.startswith("lo") and inside and lo[d] > bound[d]:
                    lo[d] = max(bound[d], lo[d] - 0.6 * (est[d] - lo[d]))
                    grown = True
                if key.startswith("hi") and inside:
                    hi[d] = hi[d] + 0.6 * (hi[d] - est[d])
                    grown = True
            if not grown:
                break
    gi, gj, dev = grid(lo, hi, points)
    m.devfun(theta)  # leave the deviance function at the estimate
    ax = _axes(ax, (5.4, 4.8))
    if span is None:
        # Frame the outer region: its bounding box on the fine grid, a cell and 8% wider.
        inside = dev <= levels[-1]
        cols, rows = np.flatnonzero(inside.any(axis=0)), np.flatnonzero(inside.any(axis=1))
        if cols.size and rows.size:
            for g, idx, setlim, d in ((gi, cols, ax.set_xlim, 0), (gj, rows, ax.set_ylim, 1)):
                a, b = g[max(idx[0] - 1, 0)], g[min(idx[-1] + 1, len(g) - 1)]
                pad = 0.08 * (b - a)
                setlim(max(a - pad, bound[d]) if a - pad < bound[d] <= a else a - pad, b + pad)
    cs = ax.contour(gi, gj, dev, levels=levels, cmap="viridis_r")
    ax.clabel(cs, fmt={lv: f"{p:.0%}" for lv, p in zip(levels, probs, strict=True)},
              fontsize=7)
    ax.plot(theta[i], theta[j], "k+", ms=10, mew=1.5)
    ax.set_xlabel(_theta_label(m, i))
    ax.set_ylabel(_theta_label(m, j))
    crit = "REML criterion" if m.is_REML else "deviance"
    ax.set_title(f"{crit} − its minimum: joint {', '.join(f'{p:.0%}' for p in probs)} regions",
                 fontsize=9)
    return ax


def group_lines(m: LmerMod, data: pd.DataFrame, x: str, y: str, group: str,
                ax: Any = None, *, title: str | None = None) -> Any:
    """For each group: its data, its own least-squares line (dashed) and the mixed model's
    line from ``coef(m)`` (solid), with the population line from the fixed effects (black) —
    the picture of shrinkage towards the population line."""
    from matplotlib.lines import Line2D

    ax = _axes(ax, (6.4, 4.4))
    coefs = m.coef[group]
    lo, hi = float(data[x].min()), float(data[x].max())
    xs = np.linspace(lo, hi, 20)
    palette = __import__("matplotlib").rcParams["axes.prop_cycle"].by_key()["color"]
    groups = list(data.groupby(group, observed=True))
    for k, (lev, sub) in enumerate(groups):
        c = palette[k % len(palette)]
        ax.scatter(sub[x], sub[y], s=12, color=c, alpha=0.8)
        slope, intercept = np.polyfit(sub[x], sub[y], 1)
        ax.plot(xs, intercept + slope * xs, ls="--", color=c, lw=1.1)
        row = coefs.loc[str(lev)]
        yend = row["(Intercept)"] + row[x] * hi
        ax.plot(xs, row["(Intercept)"] + row[x] * xs, color=c, lw=1.8)
        if len(groups) <= 20:
            ax.annotate(str(lev), (hi, yend), xytext=(4, 0), textcoords="offset points",
                        color=c, fontsize=8, va="center")
    fe = m.fixef
    ax.plot(xs, fe["(Intercept)"] + fe[x] * xs, color="k", lw=2.4)
    ax.set_xlim(lo - 0.02 * (hi - lo), hi + 0.1 * (hi - lo))
    handles = [Line2D([], [], color="0.4", ls="--", lw=1.1, label="own least-squares line"),
               Line2D([], [], color="0.4", lw=1.8, label="mixed model (coef)"),
               Line2D([], [], color="k", lw=2.4, label="population (fixef)")]
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or f"{y} by {x}, one line per {group}: own fit dashed, mixed model "
                 "solid", fontsize=10)
    return ax

from .diagnostic_plots import diagnostics as diagnostics  # noqa: E402  (see diagnostic_plots)
