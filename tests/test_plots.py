"""lmeformula.plots, function by function: what each draws (artists, data, labels, limits)."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")  # the tests draw off screen; the notebooks show figures inline

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D
from scipy import stats

import lmeformula as lmf
from lmeformula import plots


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return lmf.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def sleep3(sleep: pd.DataFrame) -> pd.DataFrame:
    return sleep[sleep.Subject.isin(["309", "330", "371"])].reset_index(drop=True)


@pytest.fixture(scope="module")
def fm1(sleep: pd.DataFrame) -> lmf.LmerMod:
    return lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)


@pytest.fixture(scope="module")
def pen() -> lmf.LmerMod:
    return lmf.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", lmf.datasets.load("Penicillin"))


def _luminance(rgba: tuple[float, ...]) -> float:
    r, g, b = to_rgb(rgba)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# ---- image ----------------------------------------------------------------------------------

def test_image_pattern_is_black_without_colour_bar() -> None:
    codes = np.array([0, 0, 1, 1, 2, 2])
    J = sp.csc_matrix((np.ones(6), (np.arange(6), codes)), shape=(6, 3))
    ax = plots.image(J)
    (im,) = ax.get_images()
    assert len(ax.figure.axes) == 1  # no colour bar for a pattern
    shown = im.get_array()
    assert shown.mask.sum() == 18 - 6  # structural zeros are masked (white)
    assert to_rgb(im.cmap(im.norm(1.0))) == (0.0, 0.0, 0.0)
    assert ax.get_title() == "6 x 3, 6 non-zeros"
    assert ax.get_xlabel() == "column" and ax.get_ylabel() == "row"


def test_image_non_negative_values_one_colour_scale_small_values_visible(pen: lmf.LmerMod
                                                                         ) -> None:
    Zt = lmf.getME(pen, "Zt")
    ZtZ = (Zt @ Zt.T).tocsc()
    ax = plots.image(ZtZ, title="Z'Z")
    (im,) = ax.get_images()
    assert len(ax.figure.axes) == 2  # values matter: a colour bar
    assert im.norm.vmin == 0 and im.norm.vmax == ZtZ.max()
    # the off-diagonal 1s (out of a maximum of 24) are clearly darker than white paper
    assert _luminance(im.cmap(im.norm(1.0))) < 0.75
    # one hue: the colours at both ends share their dominant channel (blue)
    lo, hi = to_rgb(im.cmap(0.0)), to_rgb(im.cmap(1.0))
    assert np.argmax(lo) == np.argmax(hi) == 2
    assert ax.get_title() == "Z'Z"


def test_image_signed_values_symmetric_scale_without_pale_middle(pen: lmf.LmerMod) -> None:
    L = lmf.getME(pen, "L")
    dense = L.toarray()
    assert (dense < 0).any()
    ax = plots.image(L)
    (im,) = ax.get_images()
    lim = np.abs(dense).max()
    assert im.norm.vmin == pytest.approx(-lim) and im.norm.vmax == pytest.approx(lim)
    small = np.abs(dense[dense != 0]).min()
    for v in (small, -small):
        assert _luminance(im.cmap(im.norm(v))) < 0.85
    assert len(ax.figure.axes) == 2


def test_image_labels_blocks_and_axis_names(sleep3: pd.DataFrame) -> None:
    pf = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleep3)
    rows = plots.re_labels(pf)
    assert rows == ["309 (Intercept)", "309 Days", "330 (Intercept)", "330 Days",
                    "371 (Intercept)", "371 Days"]
    blocks = plots.term_blocks(pf)
    assert blocks == [("Days | Subject", 6)]
    cols = [str(j + 1) for j in range(30)]
    ax = plots.image(pf.reTrms.Zt, row_labels=rows, col_labels=cols, xlabel="observation j",
                     ylabel="random effect", col_blocks=[("309", 10), ("330", 10), ("371", 10)])
    assert [t.get_text() for t in ax.get_yticklabels()] == rows
    assert [t.get_text() for t in ax.get_xticklabels()] == cols
    assert ax.get_xlabel() == "observation j" and ax.get_ylabel() == "random effect"
    # two boundaries between three column blocks
    vlines = [ln for ln in ax.get_lines() if np.ptp(ln.get_xdata()) == 0]
    assert sorted(ln.get_xdata()[0] for ln in vlines) == [9.5, 19.5]
    with pytest.raises(ValueError, match="labels"):
        plots.image(pf.reTrms.Zt, row_labels=rows[:3])
    with pytest.raises(ValueError, match="blocks"):
        plots.image(pf.reTrms.Zt, row_blocks=[("a", 5)])


def test_image_thins_long_label_lists() -> None:
    ax = plots.image(np.eye(100), col_labels=[f"c{j}" for j in range(100)], max_labels=25)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) <= 25 and labels[0] == "c0" and labels[1] == "c4"


def test_term_blocks_follow_gp(pen: lmf.LmerMod) -> None:
    blocks = plots.term_blocks(pen)
    assert [s for _, s in blocks] == list(np.diff(pen.lformula.reTrms.Gp))
    assert {name for name, _ in blocks} == {"1 | plate", "1 | sample"}
    assert len(plots.re_labels(pen)) == sum(s for _, s in blocks)


# ---- caterpillar ----------------------------------------------------------------------------

def test_caterpillar_panels_share_one_level_order(fm1: lmf.LmerMod) -> None:
    axes = plots.caterpillar(fm1, "Subject", None)
    assert len(axes) == 2
    re = fm1.ranef(condVar=True)["Subject"]
    expected = [str(s) for s in re.sort_values("(Intercept)", kind="stable").index]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == expected
    # the second panel shares that axis (its labels are the first panel's)
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    assert np.array_equal(axes[1].get_lines()[0].get_ydata(), np.arange(18))
    assert [ax.get_title() for ax in axes] == ["(Intercept)", "Days"]
    assert axes[0].get_ylabel() == "Subject"
    # the points are the conditional modes, in that order, with z * sd half-widths
    post = re.attrs["postVar"]
    post = post[0] if isinstance(post, list) else post
    order = [list(map(str, re.index)).index(s) for s in expected]
    line = axes[1].get_lines()[0]
    assert np.allclose(line.get_xdata(), re["Days"].to_numpy()[order])
    segs = axes[1].collections[0].get_segments()
    half = np.array([(s[1][0] - s[0][0]) / 2 for s in segs])
    assert np.allclose(half, stats.norm.ppf(0.975) * np.sqrt(post[order, 1, 1]))


def test_caterpillar_one_column_and_given_order(fm1: lmf.LmerMod) -> None:
    order = [str(s) for s in sorted(fm1.ranef()["Subject"].index, key=str)]
    ax = plots.caterpillar(fm1, "Subject", 1, order=order)
    assert [t.get_text() for t in ax.get_yticklabels()] == order
    assert "conditional mode" in ax.get_xlabel()


# ---- shrinkage, group lines -----------------------------------------------------------------

def test_shrinkage_arrows_points_and_legend(fm1: lmf.LmerMod, sleep: pd.DataFrame) -> None:
    ax = plots.shrinkage(fm1, sleep, "Reaction ~ Days | Subject", "Subject")
    arrows = [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None]
    assert len(arrows) == 18
    own, mixed = ax.collections[:2]
    ols = lmf.lmList("Reaction ~ Days | Subject", sleep).coef()
    assert np.allclose(own.get_offsets(), ols[["(Intercept)", "Days"]].to_numpy())
    coef = fm1.coef["Subject"].loc[ols.index]
    assert np.allclose(mixed.get_offsets(), coef[["(Intercept)", "Days"]].to_numpy())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "own least squares (lmList)" in legend and "mixed model (coef)" in legend
    assert ax.get_xlabel() == "(Intercept)" and ax.get_ylabel() == "Days"
    assert ax.get_title()


def test_group_lines_legend_title_and_lines(sleep3: pd.DataFrame) -> None:
    m3 = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep3)
    ax = plots.group_lines(m3, sleep3, "Days", "Reaction", "Subject")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["own least-squares line", "mixed model (coef)", "population (fixef)"]
    assert "dashed" in ax.get_title() and "solid" in ax.get_title()
    lines = [ln for ln in ax.get_lines() if isinstance(ln, Line2D)]
    assert len(lines) == 2 * 3 + 1
    dashed = [ln for ln in lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 3
    # the solid line of subject 309 is its coef() line
    xs = lines[1].get_xdata()
    c = m3.coef["Subject"].loc["309"]
    assert np.allclose(lines[1].get_ydata(), c["(Intercept)"] + c["Days"] * xs)
    assert sorted(t.get_text() for t in ax.texts) == ["309", "330", "371"]


# ---- profile and contour --------------------------------------------------------------------

@pytest.mark.slow
def test_profile_zeta_marks_the_interval() -> None:
    dye = lmf.lmer("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff"))
    prof = lmf.profile(dye)
    axes = plots.profile_zeta(prof)
    assert len(axes) == 3
    ci = prof.confint()
    for ax, name in zip(axes, prof.points, strict=True):
        assert ax.get_xlabel() == name
        (span,) = ax.patches
        x0, x1 = span.get_x(), span.get_x() + span.get_width()
        assert (x0, x1) == pytest.approx(tuple(ci.loc[name]))
        hlines = sorted(ln.get_ydata()[0] for ln in ax.get_lines() if np.ptp(ln.get_ydata()) == 0
                        and len(ln.get_ydata()) == 2)
        assert hlines == pytest.approx([-1.959964, 0.0, 1.959964], abs=1e-6)
    # one y label only: panels share the axis, nothing collides
    assert axes[0].get_ylabel() and not axes[1].get_ylabel() and not axes[2].get_ylabel()


def test_criterion_contour_labels_and_frame(sleep: pd.DataFrame) -> None:
    m = lmf.lmer("Reaction ~ Days + (Days || Subject)", sleep)
    theta = m.theta.to_numpy()
    at_estimate = m.devfun(theta)
    ax = plots.criterion_contour(m, 0, 1, points=21)
    assert ax.get_xlabel().startswith("θ₁ = σ₁/σ") and "Subject.(Intercept)" in ax.get_xlabel()
    assert ax.get_ylabel().startswith("θ₂ = σ₂/σ")
    assert "REML" in ax.get_title()
    # the outermost (99%) contour lies inside the frame, and is not lost in a huge frame
    cs = ax.collections[0]
    outer = np.vstack([p.vertices for p in cs.get_paths()[-1:]])
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert outer[:, 0].min() > x0 and outer[:, 0].max() < x1
    assert outer[:, 1].min() > y0 and outer[:, 1].max() < y1
    assert np.ptp(outer[:, 0]) > 0.6 * (x1 - x0) and np.ptp(outer[:, 1]) > 0.6 * (y1 - y0)
    assert m.devfun(theta) == pytest.approx(at_estimate, rel=1e-12)


def test_criterion_contour_names_a_cholesky_element(fm1: lmf.LmerMod) -> None:
    ax = plots.criterion_contour(fm1, 0, 1, span=1.5, points=9)
    assert ax.get_xlabel().startswith("θ₁ = σ₁/σ")
    assert ax.get_ylabel().startswith("θ₂ = λ[2,1] of Days | Subject")


@pytest.mark.slow
def test_profile_zeta_wald_tangent() -> None:
    dye = lmf.lmer("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff"))
    prof = lmf.profile(dye)
    axes = plots.profile_zeta(prof, wald=True)
    ml = lmf.lmer("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff"), REML=False)
    for ax, name in zip(axes, prof.points, strict=True):
        (tangent,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-."]
        x, y = tangent.get_xdata(), tangent.get_ydata()
        est = x[0] - y[0] * (x[1] - x[0]) / (y[1] - y[0])  # where the line crosses ζ = 0
        # lme4's profile is of the ML deviance: ζ = 0 at the ML estimates
        fitted = {".sig01": ml.sigma * ml.theta.iloc[0], ".sigma": ml.sigma,
                  "(Intercept)": ml.fixef.iloc[0]}[name]
        assert est == pytest.approx(fitted, rel=1e-2)
        assert (y[1] - y[0]) > 0


def test_image_all_zero_and_dense_input() -> None:
    ax = plots.image(sp.csc_matrix((3, 4)))
    assert ax.get_title() == "3 x 4, 0 non-zeros"
    ax = plots.image(np.array([[0.0, -2.0], [1.0, 0.5]]), colorbar=False, annotate=True)
    assert sorted(t.get_text() for t in ax.texts) == ["-2", "0.5", "1"]
    assert len(ax.figure.axes) == 1
