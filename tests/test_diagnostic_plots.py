"""The fit-checking figures (lmeformula.plots.diagnostics and its panels), drawn on the
diagnostics fixtures' models: no exceptions, the right axes, the right number of points."""

from __future__ import annotations

import warnings
from functools import cache

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from test_diagnostics import MODELS, model

import lmeformula as lmf
import lmeformula.plots as plots
from lmeformula import diagnostic_plots as dp
from lmeformula.errors import LmeFormulaError


@cache
def sim(name: str) -> lmf.diagnostics.SimulatedResiduals:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.simulate_residuals(model(name), n_sim=50, seed=1)


def scatter_points(ax) -> int:  # type: ignore[no-untyped-def]
    return sum(len(c.get_offsets()) for c in ax.collections
               if hasattr(c, "get_offsets") and c.get_offsets().ndim == 2)


@pytest.fixture(autouse=True)
def _close_figures():  # type: ignore[no-untyped-def]
    yield
    plt.close("all")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_panel_has_one_axes_per_panel(name: str) -> None:
    m = model(name)
    n_re = sum(df.shape[1] for df in m.ranef(condVar=False).values())
    fig = plots.diagnostics(m, sim=sim(name))
    assert len(fig.axes) == len(dp.PANELS) - 1 + n_re
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["Residuals vs fitted", "Normal QQ: residuals", "Scale-location"]
    assert sum(t.startswith("Normal QQ:") and "|" in t for t in titles) == n_re
    assert "Simulated residuals: QQ uniform" in titles
    for ax in fig.axes[:3]:
        assert scatter_points(ax) == m.nobs


def test_each_panel_alone_draws_every_point() -> None:
    m = model("slope")
    n = m.nobs
    ax = dp.resid_fitted(m)
    assert scatter_points(ax) == n and len(ax.lines) == 2  # zero line and smoother
    x, y = ax.collections[0].get_offsets().T
    np.testing.assert_allclose(x, m.fitted().to_numpy())
    np.testing.assert_allclose(y, m.residuals(type="pearson").to_numpy())
    ax = dp.qq_residuals(m)
    assert scatter_points(ax) == n and len(ax.lines) == 1
    ys = ax.collections[0].get_offsets()[:, 1]
    np.testing.assert_allclose(ys, np.sort(m.residuals(scaled=True).to_numpy()))
    ax = dp.scale_location(m)
    assert scatter_points(ax) == n
    ax = dp.qq_ranef(m, "Subject", "Days")
    assert scatter_points(ax) == 18 and "Days | Subject" in ax.get_title()
    ax = dp.resid_by_group(m)
    assert len(ax.get_yticklabels()) == 18 and ax.get_ylabel() == "Subject"
    s = sim("slope")
    ax = dp.sim_qq_uniform(s)
    assert scatter_points(ax) == n and "KS p" in ax.texts[0].get_text()
    ax = dp.sim_resid_fitted(m, sim=s)
    assert scatter_points(ax) == n and ax.get_xlim() == (0, 1)
    ax = dp.cooks_plot(m)
    assert len(ax.collections[0].get_segments()) == n and len(ax.texts) == 3


@pytest.mark.slow
def test_crossed_and_nested_models_give_a_panel_per_factor() -> None:
    for name, groups in (("crossed", {"plate", "sample"}), ("nested", {"cask:batch", "batch"})):
        fig = plots.diagnostics(model(name), which=["qq_ranef", "resid_by_group"],
                                sim=sim(name))
        titles = {ax.get_title().split("| ")[-1] for ax in fig.axes[:-1]}
        assert titles == groups
        by = dp.resid_by_group(model(name), group=sorted(groups)[1])
        assert by.get_ylabel() == sorted(groups)[1]


@pytest.mark.slow
def test_singular_fit_draws() -> None:
    fig = plots.diagnostics(model("singular"), sim=sim("singular"))
    qq = next(ax for ax in fig.axes if "| Batch" in ax.get_title())
    assert scatter_points(qq) == 6


def test_bad_panel_names_are_errors() -> None:
    with pytest.raises(LmeFormulaError, match="unknown panel"):
        plots.diagnostics(model("slope"), which=["nope"])
    with pytest.raises(LmeFormulaError, match="not a grouping factor"):
        dp.resid_by_group(model("slope"), group="Days")
    with pytest.raises(LmeFormulaError, match="not a grouping factor"):
        dp.qq_ranef(model("slope"), group="Days")
