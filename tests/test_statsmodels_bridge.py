"""The statsmodels bridge: the same lme4 formula fitted by MixedLM, compared side by side."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lmeformula as lmf
from lmeformula.compare import (
    StatsmodelsUnsupported,
    compare_statsmodels,
    lme4_to_statsmodels_params,
    statsmodels_to_theta,
    to_statsmodels,
)

# statsmodels' import alone takes ~0.6 s: the whole bridge runs in CI, not in the quick loop
pytestmark = pytest.mark.slow

CASES = [
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "grouped"),
    ("Reaction ~ Days + (Days || Subject)", "sleepstudy", "grouped"),
    ("Yield ~ 1 + (1 | Batch)", "Dyestuff", "grouped"),
    ("strength ~ 1 + (1 | batch/cask)", "Pastes", "nested"),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", "single group"),
]


@pytest.mark.parametrize(("formula", "data", "construction"), CASES)
@pytest.mark.parametrize("REML", [True, False])
def test_statsmodels_agrees(formula: str, data: str, construction: str, REML: bool) -> None:
    table = compare_statsmodels(formula, lmf.datasets.load(data), REML=REML)
    assert list(table.columns[:2]) == ["lmeformula", "statsmodels"]
    assert list(table.columns[2:]) == ["abs_diff", "rel_diff"]
    assert table.attrs["statsmodels_result"].model.lme4_spec.construction == construction
    # both optimise the same criterion: the log-likelihoods agree to statsmodels' tolerance,
    # and lmeformula's optimum is not worse
    ll = table.loc["logLik"]
    assert ll["lmeformula"] >= ll["statsmodels"] - 1e-6
    assert ll["abs_diff"] < 1e-5
    # parameters agree as far as the flatness of the likelihood lets optimizers stop
    assert (table.drop(index="logLik")["rel_diff"].fillna(0) < 2e-3).all()
    fixed = list(lmf.lmer(formula, lmf.datasets.load(data)).fixef.index)
    assert list(table.index[: len(fixed)]) == fixed


def both_fits(formula: str, data: str) -> tuple:  # type: ignore[type-arg]
    """The MixedLM model and its REML fit, and lmeformula's fit, of one formula."""
    df = lmf.datasets.load(data)
    model = to_statsmodels(formula, df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(reml=True)
    return model, result, lmf.lmer(formula, df)


def test_parameter_converters() -> None:
    model, result, m = both_fits("Reaction ~ Days + (Days | Subject)", "sleepstudy")
    theta = statsmodels_to_theta(result, model.lme4_spec)
    np.testing.assert_allclose(theta, m.theta.to_numpy(), rtol=1e-4, atol=1e-5)
    params = lme4_to_statsmodels_params(m)
    np.testing.assert_allclose(params["cov_re"], np.asarray(result.cov_re), rtol=1e-4)
    assert params["scale"] == pytest.approx(result.scale, rel=1e-5)
    np.testing.assert_allclose(params["fe_params"].to_numpy(), result.fe_params.to_numpy(),
                               rtol=1e-8)


def test_variance_components_converters() -> None:
    model, result, m = both_fits("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin")
    np.testing.assert_allclose(statsmodels_to_theta(result, model.lme4_spec),
                               m.theta.to_numpy(), rtol=1e-3)
    np.testing.assert_allclose(lme4_to_statsmodels_params(m)["vcomp"], result.vcomp, rtol=1e-3)


@pytest.mark.parametrize(("formula", "message"), [
    ("Reaction ~ Days + (Days | Subject) + (1 | Days)",
     r"cannot express \(Days \| Subject\) with the crossed term\(s\) \(1 \| Days\)"),
    ("Reaction ~ Days + (Days | Subject) + (0 + Days + I(Days^2) | Subject)",
     "one random-effects block with a free covariance matrix"),
])
def test_refusals_say_which_term_and_why(formula: str, message: str) -> None:
    with pytest.raises(StatsmodelsUnsupported, match=message):
        to_statsmodels(formula, lmf.datasets.load("sleepstudy"))


def test_nested_vector_term_is_refused() -> None:
    df = lmf.datasets.load("sleepstudy").assign(
        Half=lambda d: (d.Days > 4).map({True: "late", False: "early"}))
    with pytest.raises(StatsmodelsUnsupported, match=r"nested factor Subject:Half"):
        to_statsmodels("Reaction ~ Days + (1 | Subject) + (Days | Subject:Half)", df,
                       control={"check.nobs.vs.nRE": "ignore"})
