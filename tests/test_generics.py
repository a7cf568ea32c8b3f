"""The seams that keep imports one way (issue 19): the generic functions through which a fitted
model reaches its printed and HTML layouts and lmerTest's table, and the protocol through which
prediction reads a model."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
from lmeformula import glmerprint, html, printing
from lmeformula.allfit import AllFitSummary
from lmeformula.anovatable import AnovaTable
from lmeformula.ddf import coef_table
from lmeformula.generics import ddf_coefficients, show, show_html
from lmeformula.glmermod import GlmerMod, GlmerSummary
from lmeformula.lformula import LFormula
from lmeformula.mermod import LmerMod, Summary, VarCorr
from lmeformula.prediction import FittedModel, naresid, predict

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return lmf.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def fm1(sleep: pd.DataFrame) -> LmerMod:
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    assert isinstance(m, LmerMod)
    return m


def test_each_layout_is_registered_by_its_module() -> None:
    # the text layouts: printing.py for the LMM, glmerprint.py for the GLMM (not the LMM's)
    assert show.dispatch(LmerMod) is printing.format_merMod
    assert show.dispatch(AnovaTable) is printing.format_anova
    assert show.dispatch(GlmerMod) is glmerprint.format_glmer
    for cls in (Summary, GlmerSummary):
        assert show.dispatch(cls) is not show.dispatch(object)
    assert show.dispatch(Summary) is not show.dispatch(GlmerSummary)
    # the HTML layouts: html.py; a GLMM uses the LMM's, as before
    assert show_html.dispatch(LmerMod) is html.model_html
    assert show_html.dispatch(GlmerMod) is html.model_html
    assert show_html.dispatch(Summary) is html.summary_html
    assert show_html.dispatch(VarCorr) is html.varcorr_html
    assert show_html.dispatch(AnovaTable) is html.anova_html
    assert show_html.dispatch(AllFitSummary) is html.allfit_html
    # lmerTest's coefficient table of summary(ddf=...)
    assert ddf_coefficients.dispatch(LmerMod) is coef_table


def test_the_generics_without_a_layout() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<a & b>"

    thing = Thing()
    assert show(thing) == object.__repr__(thing)
    assert show_html(thing) == f"<pre>{object.__repr__(thing).replace('<', '&lt;').replace('>', '&gt;')}</pre>"
    with pytest.raises(TypeError, match="Thing"):
        ddf_coefficients(thing, "Satterthwaite")


def test_the_model_methods_go_through_the_generics(fm1: LmerMod) -> None:
    assert str(fm1) == repr(fm1) == printing.format_merMod(fm1)
    s = fm1.summary(ddf="Satterthwaite")
    assert str(s) == printing.format_summary(fm1, ddf="Satterthwaite")
    pd.testing.assert_frame_equal(s.coefficients, coef_table(fm1, ddf="Satterthwaite"))
    assert fm1._repr_html_() == html.model_html(fm1)
    assert fm1.summary()._repr_html_() == html.summary_html(fm1.summary())
    assert fm1.VarCorr._repr_html_() == html.varcorr_html(fm1.VarCorr)
    a = lmf.anova(fm1)
    assert str(a) == printing.format_anova(a)
    assert a._repr_html_() == html.anova_html(a)


@pytest.mark.slow
def test_importing_one_module_registers_the_layouts() -> None:
    # Python runs the package's __init__ (which imports the presentation modules) before any
    # of its modules, so a user importing only lmeformula.mermod gets the printed layouts
    code = ("import lmeformula.mermod as mm\n"
            "from lmeformula.generics import show, show_html\n"
            "assert show.dispatch(mm.LmerMod) is not show.dispatch(object)\n"
            "assert show_html.dispatch(mm.VarCorr) is not show_html.dispatch(object)\n"
            "print('ok')\n")
    env = {**os.environ, "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


@dataclasses.dataclass
class _Estimates:
    """Not a fitted model: only what prediction.FittedModel asks for."""

    lformula: LFormula
    beta: np.ndarray
    b: np.ndarray
    theta: pd.Series
    sigma: float
    weights: np.ndarray
    cov: pd.DataFrame

    def vcov(self) -> pd.DataFrame:
        return self.cov


def test_prediction_needs_only_the_protocol(fm1: LmerMod, sleep: pd.DataFrame) -> None:
    est = _Estimates(fm1.lformula, fm1.beta, fm1.b, fm1.theta, fm1.sigma, fm1.weights,
                     fm1.vcov())
    model: FittedModel = est
    new = sleep.iloc[[0, 15, 40, 100]].copy()
    new["Subject"] = new["Subject"].astype(str)
    new.loc[new.index[1], "Subject"] = "999"  # a new level: population-level prediction
    for kwargs in ({}, {"re_form": "~0"}, {"re_form": "~(Days | Subject)"}):
        got = predict(model, new, allow_new_levels=True, **kwargs)
        want = fm1.predict(new, allow_new_levels=True, **kwargs)
        pd.testing.assert_series_equal(got, want, check_exact=True)
    pd.testing.assert_frame_equal(predict(model, None, se_fit=True),
                                  fm1.predict(None, se_fit=True), check_exact=True)


def test_naresid_pads_excluded_rows(sleep: pd.DataFrame) -> None:
    data = sleep.copy()
    data.loc[data.index[[3, 50]], "Reaction"] = np.nan
    m = lmf.lmer("Reaction ~ Days + (1 | Subject)", data, na_action="exclude")
    assert isinstance(m, LmerMod)
    values = np.arange(178, dtype=float)
    padded = naresid(m.lformula, values, "x")
    assert padded.index.equals(data.index)
    assert padded.name == "x"
    assert np.isnan(padded.iloc[[3, 50]]).all()
    np.testing.assert_array_equal(padded.drop(data.index[[3, 50]]).to_numpy(), values)
    pd.testing.assert_series_equal(m.fitted(), naresid(m.lformula, m.fitted().dropna()
                                                       .to_numpy(), "fitted"))
