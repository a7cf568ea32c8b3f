"""Figures for checking a fit (matplotlib, an optional dependency).

:func:`diagnostics` draws the usual panel in one call; each panel is also a function of its
own that draws into a given matplotlib ``Axes``:

* :func:`resid_fitted` — Pearson residuals against fitted values, with a lowess smoother
  (lme4's ``plot(m)``);
* :func:`qq_residuals` — normal QQ plot of the scaled residuals;
* :func:`scale_location` — √|scaled residual| against fitted values, with a smoother;
* :func:`qq_ranef` — normal QQ plot of one term column's conditional modes;
* :func:`resid_by_group` — residuals by level of a grouping factor, one box per level;
* :func:`sim_qq_uniform` — DHARMa's QQ plot of the simulated (quantile) residuals against
  U(0, 1), with the uniformity and dispersion tests' p-values;
* :func:`sim_resid_fitted` — DHARMa's simulated residuals against the rank of the fitted
  values, with running quartiles (which should be flat at 0.25, 0.5, 0.75);
* :func:`cooks_plot` — Cook's distance by observation, the largest labelled.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from .diagnostics import SimulatedResiduals, cooks_distance, simulate_residuals
from .errors import LmeFormulaError
from .mpl import pyplot

if TYPE_CHECKING:
    from .mermod import LmerMod

__all__ = [
    "PANELS",
    "cooks_plot",
    "diagnostics",
    "qq_ranef",
    "qq_residuals",
    "resid_by_group",
    "resid_fitted",
    "scale_location",
    "sim_qq_uniform",
    "sim_resid_fitted",
]

PANELS = ("resid_fitted", "qq_residuals", "scale_location", "qq_ranef", "resid_by_group",
          "sim_qq_uniform", "sim_resid_fitted", "cooks")
_DEFAULT = PANELS


def _axes(ax: Any, figsize: tuple[float, float] = (5, 4)) -> Any:
    if ax is None:
        _, ax = pyplot().subplots(figsize=figsize)
    return ax


def _smooth(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R's ``lowess`` (span 2/3, three robustness iterations) through statsmodels."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    out = lowess(y, x, frac=2 / 3, it=3, return_sorted=True)
    return out[:, 0], out[:, 1]


def _fitted_resid(m: LmerMod, type: str = "pearson", scaled: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    fitted = np.asarray(m.fitted(), dtype=float)
    resid = np.asarray(m.residuals(type=type, scaled=scaled), dtype=float)
    ok = ~(np.isnan(fitted) | np.isnan(resid))
    return fitted[ok], resid[ok]


def resid_fitted(m: LmerMod, ax: Any = None, type: str = "pearson", smoother: bool = True
                 ) -> Any:
    """Residuals (Pearson by default, as lme4's ``plot.merMod``) against fitted values, with
    a zero line and a lowess smoother: a trend means a missing term, a funnel a variance
    that changes with the mean."""
    ax = _axes(ax)
    x, y = _fitted_resid(m, type=type)
    ax.scatter(x, y, s=10, alpha=0.7)
    ax.axhline(0, color="grey", lw=0.8)
    if smoother and x.size > 3 and np.ptp(x) > 0:
        sx, sy = _smooth(x, y)
        ax.plot(sx, sy, color="C3", lw=1.5)
    ax.set_xlabel("fitted values")
    ax.set_ylabel(f"{type} residuals")
    ax.set_title("Residuals vs fitted")
    return ax


def _qq(ax: Any, values: np.ndarray, title: str, ylabel: str) -> Any:
    """A normal QQ plot with R's ``qqline`` (through the quartiles)."""
    v = np.sort(np.asarray(values, dtype=float))
    n = v.size
    # R's ppoints: (i - a) / (n + 1 - 2a), a = 3/8 for n <= 10, else 1/2
    a = 3 / 8 if n <= 10 else 0.5
    theo = stats.norm.ppf((np.arange(1, n + 1) - a) / (n + 1 - 2 * a))
    ax.scatter(theo, v, s=10, alpha=0.8)
    q_y = np.quantile(v, [0.25, 0.75])
    q_x = np.asarray(stats.norm.ppf([0.25, 0.75]), dtype=float)
    slope = (q_y[1] - q_y[0]) / (q_x[1] - q_x[0]) if n > 1 else 0.0
    intercept = q_y[0] - slope * q_x[0]
    lims = np.array([theo.min(), theo.max()]) if n else np.array([-1.0, 1.0])
    ax.plot(lims, intercept + slope * lims, color="C3", lw=1)
    ax.set_xlabel("standard normal quantiles")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


def qq_residuals(m: LmerMod, ax: Any = None) -> Any:
    """Normal QQ plot of the scaled Pearson residuals, with a line through the quartiles."""
    ax = _axes(ax)
    _, r = _fitted_resid(m, scaled=True)
    return _qq(ax, r, "Normal QQ: residuals", "scaled residuals")


def scale_location(m: LmerMod, ax: Any = None, smoother: bool = True) -> Any:
    """√|scaled Pearson residual| against fitted values: a rising smoother means the
    residual variance grows with the mean."""
    ax = _axes(ax)
    x, r = _fitted_resid(m, scaled=True)
    y = np.sqrt(np.abs(r))
    ax.scatter(x, y, s=10, alpha=0.7)
    if smoother and x.size > 3 and np.ptp(x) > 0:  # no smoother over a single x value
        sx, sy = _smooth(x, y)
        ax.plot(sx, sy, color="C3", lw=1.5)
    ax.set_xlabel("fitted values")
    ax.set_ylabel("√|scaled residuals|")
    ax.set_title("Scale-location")
    return ax


def ranef_columns(m: LmerMod) -> list[tuple[str, str]]:
    """(grouping factor, column) of every column of every random-effects term."""
    return [(g, c) for g, df in m.ranef(condVar=False).items() for c in df.columns]


def qq_ranef(m: LmerMod, group: str | None = None, column: str | int = 0, ax: Any = None
             ) -> Any:
    """Normal QQ plot of the conditional modes of one column of a grouping factor's random
    effects (by default the first factor's first column)."""
    ranef = m.ranef(condVar=False)
    group = group or next(iter(ranef))
    if group not in ranef:
        raise LmeFormulaError(f"{group!r} is not a grouping factor of the model: "
                              f"{', '.join(ranef)}")
    df = ranef[group]
    series = df.iloc[:, column] if isinstance(column, int) else df[column]
    ax = _axes(ax)
    return _qq(ax, series.to_numpy(), f"Normal QQ: {series.name} | {group}",
               "conditional modes")


def resid_by_group(m: LmerMod, group: str | None = None, ax: Any = None,
                   type: str = "pearson") -> Any:
    """Residuals of each level of a grouping factor, one box per level (lme4's
    ``plot(m, g ~ resid(.))``): boxes away from 0 or of unequal size point at the
    grouping structure."""
    flist = m.lformula.reTrms.flist
    group = group or next(iter(flist))
    if group not in flist:
        raise LmeFormulaError(f"{group!r} is not a grouping factor of the model: "
                              f"{', '.join(flist)}")
    factor = flist[group]
    resid = np.asarray(m.residuals(type=type), dtype=float)
    resid = resid[~np.isnan(resid)]
    codes = np.asarray(factor.codes)
    levels = [str(c) for c in factor.categories]
    boxes = [resid[codes == i] for i in range(len(levels))]
    ax = _axes(ax, (5, max(3.0, 0.22 * len(levels))))
    style: dict[str, Any] = {"widths": 0.6, "flierprops": {"markersize": 3}}
    try:  # matplotlib >= 3.10 names the direction; older ones take vert=
        ax.boxplot(boxes, orientation="horizontal", **style)
    except TypeError:  # pragma: no cover - older matplotlib
        ax.boxplot(boxes, vert=False, **style)
    ax.set_yticks(np.arange(1, len(levels) + 1))
    ax.set_yticklabels(levels, fontsize=7 if len(levels) > 20 else 9)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"{type} residuals")
    ax.set_ylabel(group)
    ax.set_title(f"Residuals by {group}")
    return ax


def _sim(m: Any, sim: SimulatedResiduals | None, n_sim: int, seed: Any) -> SimulatedResiduals:
    if isinstance(m, SimulatedResiduals):
        return m
    return sim if sim is not None else simulate_residuals(m, n_sim=n_sim, seed=seed)


def sim_qq_uniform(m: Any, ax: Any = None, sim: SimulatedResiduals | None = None,
                   n_sim: int = 250, seed: Any = 123) -> Any:
    """DHARMa's ``plotQQunif``: the simulated quantile residuals against U(0, 1) quantiles,
    with the Kolmogorov-Smirnov and dispersion tests' p-values (a model or the output of
    :func:`lmeformula.simulate_residuals`)."""
    s = _sim(m, sim, n_sim, seed)
    r = np.sort(s.scaled_residuals.to_numpy())
    n = r.size
    expected = (np.arange(1, n + 1) - 0.5) / n
    ax = _axes(ax)
    ax.scatter(expected, r, s=8, alpha=0.8)
    ax.plot([0, 1], [0, 1], color="C3", lw=1)
    ks = s.test_uniformity()
    disp = s.test_dispersion()
    ax.text(0.03, 0.97, f"KS p = {ks.p_value:.3g}\ndispersion p = {disp.p_value:.3g}",
            transform=ax.transAxes, va="top", fontsize=8,
            color="C3" if min(ks.p_value, disp.p_value) < 0.05 else "black")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("expected (uniform)")
    ax.set_ylabel("observed")
    ax.set_title("Simulated residuals: QQ uniform")
    return ax


def sim_resid_fitted(m: Any, ax: Any = None, sim: SimulatedResiduals | None = None,
                     n_sim: int = 250, seed: Any = 123, bins: int | None = None) -> Any:
    """DHARMa's ``plotResiduals``: the simulated residuals against the rank-transformed
    fitted values, with their quartiles in ``bins`` bins of the rank (DHARMa draws quantile
    regressions); under the model they lie near 0.25, 0.5, 0.75. ``bins`` defaults to one
    per 25 observations, between 3 and 10.

    The fitted values are those the simulations were drawn around (with the conditional
    modes for conditional simulations; DHARMa always uses the population-level predictions,
    which are constant for a model without fixed-effect covariates)."""
    s = _sim(m, sim, n_sim, seed)
    r = s.scaled_residuals.to_numpy()
    pred = (s.fitted_response if s.fitted_response is not None
            else s.fitted_predicted_response)
    rank = stats.rankdata(pred) / pred.size
    ax = _axes(ax)
    ax.scatter(rank, r, s=8, alpha=0.6)
    bins = bins or max(3, min(10, r.size // 25))
    edges = np.linspace(0, 1, bins + 1)
    mids, qs = [], []
    for lo, hi in itertools.pairwise(edges):
        inside = (rank > lo) & (rank <= hi)
        if inside.sum() >= 4:
            mids.append((lo + hi) / 2)
            qs.append(np.quantile(r[inside], [0.25, 0.5, 0.75]))
    for k, level in enumerate((0.25, 0.5, 0.75)):
        ax.axhline(level, color="grey", lw=0.6, ls="--")
        if qs:
            ax.plot(mids, [q[k] for q in qs], color="C3", lw=1.2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("fitted (rank transformed)")
    ax.set_ylabel("simulated residual")
    ax.set_title("Simulated residuals vs fitted")
    return ax


def cooks_plot(m: LmerMod, ax: Any = None, label: int = 3) -> Any:
    """Cook's distance of each observation (lme4's ``cooks.distance``), the ``label``
    largest named."""
    d = cooks_distance(m).dropna()
    ax = _axes(ax)
    pos = np.arange(d.size)
    ax.vlines(pos, 0, d.to_numpy(), lw=1)
    for i in np.argsort(d.to_numpy())[::-1][:label]:
        ax.annotate(str(d.index[i]), (pos[i], d.iloc[i]), fontsize=7,
                    xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("observation")
    ax.set_ylabel("Cook's distance")
    ax.set_title("Cook's distance")
    return ax


def diagnostics(m: LmerMod, which: tuple[str, ...] | list[str] | None = None,
                group: str | None = None, sim: SimulatedResiduals | None = None,
                n_sim: int = 250, seed: Any = 123, ncols: int = 3,
                figsize: tuple[float, float] | None = None) -> Any:
    """The usual panel of diagnostic plots in one figure.

    Parameters
    ----------
    m
        A fitted model.
    which
        Panels to draw, from :data:`PANELS`: ``"resid_fitted"``, ``"qq_residuals"``,
        ``"scale_location"``, ``"qq_ranef"`` (one panel per column of every random-effects
        term), ``"resid_by_group"``, ``"sim_qq_uniform"``, ``"sim_resid_fitted"``,
        ``"cooks"``. By default all of them.
    group
        Grouping factor for ``"resid_by_group"`` (default: the first).
    sim
        Simulated residuals to use (default: :func:`lmeformula.simulate_residuals` with
        ``n_sim`` and ``seed``).
    ncols
        Panels per row.
    figsize
        Figure size (default: 4 x 3.3 inches per panel).

    Returns
    -------
    matplotlib.figure.Figure
    """
    chosen = list(_DEFAULT if which is None else which)
    unknown = [w for w in chosen if w not in PANELS]
    if unknown:
        raise LmeFormulaError(f"unknown panel(s) {', '.join(unknown)}; use {', '.join(PANELS)}")
    jobs: list[tuple[str, Any]] = []
    for w in chosen:
        if w == "qq_ranef":
            jobs.extend(("qq_ranef", gc) for gc in ranef_columns(m))
        else:
            jobs.append((w, None))
    if any(w.startswith("sim_") for w, _ in jobs) and sim is None:
        sim = simulate_residuals(m, n_sim=n_sim, seed=seed)
    n = len(jobs)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    plt = pyplot()
    # constrained layout is worked out when the figure is drawn, not here
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, layout="constrained",
                             figsize=figsize or (4.0 * ncols, 3.3 * nrows))
    flat = axes.ravel()
    for ax, (w, extra) in zip(flat, jobs, strict=False):
        if w == "resid_fitted":
            resid_fitted(m, ax)
        elif w == "qq_residuals":
            qq_residuals(m, ax)
        elif w == "scale_location":
            scale_location(m, ax)
        elif w == "qq_ranef":
            qq_ranef(m, extra[0], extra[1], ax)
        elif w == "resid_by_group":
            resid_by_group(m, group, ax)
        elif w == "sim_qq_uniform":
            sim_qq_uniform(m, ax, sim=sim)
        elif w == "sim_resid_fitted":
            sim_resid_fitted(m, ax, sim=sim)
        elif w == "cooks":
            cooks_plot(m, ax)
    for ax in flat[n:]:
        ax.remove()
    return fig
