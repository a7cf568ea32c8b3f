"""Test-suite configuration: the ``slow`` marker.

``pytest -m "not slow"`` is the developer's quick loop (under 20 s); CI (``.ci/run``) runs every
test. A test is slow when

- it is marked ``@pytest.mark.slow`` by hand (InstEval-sized fits, notebook execution, the
  bootstrap and profiles of larger models, subprocesses, GLMM fits of several seconds);
- it is parametrised by ``case_id`` over the lme4 fixture cases and the case is not one of
  ``cases.QUICK_CASES`` (the quick loop runs each such test on one case of each kind; the
  InstEval-sized cases, ``cases.SLOW_CASES``, are never among them);
- one of its parameters is in :data:`SLOW_PARAMS` for its file (a fixture model whose fit is
  expensive: every test of the file on that model is slow).

The rule for new tests: a test that takes more than ~0.2 s gets a shared (module- or
session-scoped) fixture or the slow marker.
"""

from __future__ import annotations

from pathlib import Path, PurePath

import pytest
from cases import QUICK_CASES, SLOW_CASES

# Per test file, parameter values (model or case names) whose fits take more than ~0.2 s
SLOW_PARAMS: dict[str, frozenset[str]] = {
    # glmer fits of ~0.3-7 s (grouseticks' Poisson fit, cbpp's observation-level effect)
    # and the lme4 fits other than slope, intercept, singular, crossed, weighted and dyestuff
    "test_diagnostics.py": frozenset({"ticks_poisson", "cbpp_olre", "cbpp_probit",
                                      "ml_slope", "double_bar", "nested", "slope_not_fixed",
                                      "cbpp_logit", "crossed_plate", "slope_Subject",
                                      "intercept_Subject", "dyestuff_case"}),
    "test_diagnostics_glmm.py": frozenset({"binomial_cauchit", "invgauss_log",
                                           "gamma_identity", "gaussian_log", "gamma_inverse",
                                           "gamma_log"}),
    "test_diagnostic_plots.py": frozenset({"weighted", "nested", "double_bar", "ml_slope",
                                           "crossed", "slope", "slope_not_fixed",
                                           "intercept", "singular", "dyestuff"}),
    # the two large models and the slower small ones; cbpp and cbpp_nagq0 (Laplace and
    # nAGQ = 0) stay in the quick loop
    "test_glmer_lme4.py": frozenset({"grouseticks", "verbagg", "binomial_slope", "cbpp_nagq5",
                                     "cbpp_probit", "cbpp_prop", "binomial_crossed",
                                     "gamma_log", "poisson_offset", "binomial_singular"}),
    # lmerTest's models: sleepstudy (REML) and oats (factors) stay in the quick loop
    "test_lmertest_lsmeans_ranova.py": frozenset({"ham", "cake", "carrots", "cake_sum",
                                                  "cake_missing", "orthodont", "oats_ml",
                                                  "sleepstudy_ml", "machines"}),
    "test_lmertest_tables.py": frozenset({"ham", "cake", "carrots", "cake_sum",
                                          "cake_missing", "orthodont", "oats_ml",
                                          "sleepstudy_ml", "machines"}),
    # step's chains of ham refits with their accuracy bounds (0.2-2 s); sleepstudy and the
    # simulated models stay in the quick loop
    "test_lmertest_step.py": frozenset({"ham", "ham_kr", "ham_alpha", "ham_keep",
                                        "ham_keep_invalid", "ham_ml", "ham_no_reduction"}),
    # broom.mixed's models: fm1 stays in the quick loop
    "test_tidy.py": frozenset({"pen_ml", "weighted"}),
    "test_glmer_families.py": frozenset({"grouseticks"}),
    # the guides whose examples fit and profile several models
    "test_docs.py": frozenset({"after-the-fit.md", "getting-started.md"}),
    # VerbAgg with a vector term (0.6-2.9 s); the scalar-term model stays in the quick loop
    "test_glmer_lbfgsb_modes.py": frozenset({
        "r2 ~ Anger + Gender + btype + (1 | id) + (1 + Anger | item)"}),
    "test_glmer_lbfgsb.py": frozenset({
        "r2 ~ btype + (1 + Gender | item) + (0 + Anger | id) + (1 | id)"}),
    # grouseticks' three-term chain (0.4 s); the two-term chains stay quick
    "test_pirls_batch.py": frozenset({
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"}),
    # the slope-by-factor binomial fits (0.4-0.8 s); the other sweep GLMMs stay quick
    "test_sweep_glmer.py": frozenset({"bin_logical_slope", "bin_factor_slope"}),
}


# Modules whose every test is slow: the quick loop does not even import them (hypothesis' import
# and its scan of the package's constants cost about a second before any test runs; the
# statsmodels bridge needs statsmodels' import, ~0.6 s, for any of its tests)
SLOW_MODULES = frozenset({"test_properties.py", "test_statsmodels_bridge.py"})


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name in SLOW_MODULES and config.getoption("markexpr") == "not slow":
        return True
    return None


def _is_slow(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    params = callspec.params
    case = params.get("case_id")
    if isinstance(case, str) and case not in QUICK_CASES:
        return True
    values = {v if isinstance(v, str) else v.name for v in params.values()
              if isinstance(v, str | PurePath)}
    return bool(SLOW_CASES & values) or bool(SLOW_PARAMS.get(item.path.name, frozenset())
                                             & values)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)
        elif item.path.name in SLOW_MODULES and item.get_closest_marker("slow") is None:
            raise pytest.UsageError(f"{item.nodeid} is in SLOW_MODULES (tests/conftest.py), "
                                    "which the quick loop skips: mark it slow or move it")
