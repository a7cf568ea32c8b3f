"""lmer's and glmer's non-default optimizers against lme4's (tools/R/make_fixtures_optimizers.R).

``Nelder_Mead`` is lme4's own Nelder-Mead and ``nloptwrap`` NLopt's BOBYQA with lme4's settings:
the same path as lme4 (the same evaluations, θ to round-off). ``bobyqa`` is minqa's BOBYQA
(lmeformula.bobyqa, which evaluates minqa's points given minqa's values:
tests/test_bobyqa_minqa.py), but its path amplifies the criterion's last bits, in which ours
differs from lme4's (1.6e-14 relative for sleepstudy): the points part beyond 1e-10 from about
the 15th evaluation, and with round-off noise on the criterion the counts spread (sleepstudy
80 to 94 evaluations, lme4 98, ours 97; penicillin 33 to 37, lme4 35, ours 38; cbpp's second
stage 74 in lme4, 73 here): the same optimum to the optimizer's tolerance, not the same count.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
from cases import FIXTURES
from fit_accuracy import counts_under_roundoff

import lmeformula as lmf

FITS = {f["name"]: f for f in
        json.loads((FIXTURES / "optimizers.json").read_text())["fits"]}
MODELS = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp"),
}


def _fit(name: str) -> tuple[Any, float]:
    model, optimizer = name.split("_", 1)
    formula, data = MODELS[model]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if model == "cbpp":
            m: Any = lmf.glmer(formula, lmf.datasets.load(data), "binomial",
                               control={"optimizer": optimizer})
            return m, -2 * float(m.logLik())
        m = lmf.lmer(formula, lmf.datasets.load(data), control={"optimizer": optimizer})
        return m, float(m.optinfo.fval)


def _roundoff_counts(name: str) -> set[int]:
    """The evaluation counts of the optimizer on this LMM with round-off noise on the
    criterion (tests/fit_accuracy.py; none for the GLMM): more than one where round-off
    decides the path, as for penicillin's Nelder-Mead (90 to 96 by the seed; 91 as lme4's
    under most OpenBLAS kernels, 96 under Prescott's)."""
    model, optimizer = name.split("_", 1)
    if model == "cbpp":
        return set()
    formula, data = MODELS[model]
    devfun = lmf.mkLmerDevfun(lmf.lFormula(formula, lmf.datasets.load(data)))
    return counts_under_roundoff(devfun, {"optimizer": optimizer})


@pytest.mark.parametrize("name", [n for n in FITS if not n.endswith("_bobyqa")])
def test_lme4s_path(name: str) -> None:
    ref = FITS[name]
    m, crit = _fit(name)
    counts = _roundoff_counts(name)
    if len(counts) > 1:
        # no path is the implementation's: the same optimum to the optimizer's tolerance,
        # as for bobyqa below, and lme4's count among those round-off gives
        np.testing.assert_allclose(np.asarray(m.theta), np.atleast_1d(ref["theta"]), rtol=1e-5)
        assert crit == pytest.approx(ref["crit"], rel=1e-11)
        counts.add(m.optinfo.feval)
        assert min(counts) <= ref["feval"] <= max(counts), (sorted(counts), ref["feval"])
        return
    assert m.optinfo.feval == ref["feval"]
    np.testing.assert_allclose(np.asarray(m.theta), np.atleast_1d(ref["theta"]), rtol=1e-7)
    np.testing.assert_allclose(np.asarray(m.fixef), np.atleast_1d(ref["fixef"]), rtol=1e-7)
    assert crit == pytest.approx(ref["crit"], rel=1e-12)


@pytest.mark.parametrize("name", [n for n in FITS if n.endswith("_bobyqa")])
def test_bobyqa_reaches_lme4s_optimum(name: str) -> None:
    ref = FITS[name]
    m, crit = _fit(name)
    assert m.optinfo.optimizer == "bobyqa"
    assert m.optinfo.conv == 0 and m.optinfo.message == "Normal exit from bobyqa"
    np.testing.assert_allclose(np.asarray(m.theta), np.atleast_1d(ref["theta"]), rtol=1e-5)
    assert crit == pytest.approx(ref["crit"], rel=1e-11)


def test_nloptwrap_returns_its_best_point_when_nlopt_stops_on_round_off() -> None:
    """NLopt's Python binding raises RoundoffLimited without the point it stopped at; nloptr
    (lme4's) returns NLopt's best point. The best point evaluated is returned with its value
    (it had been the start with the best value: a model built at the wrong θ)."""
    import nlopt

    from lmeformula.optimize import nloptwrap

    seen: list[tuple[float, np.ndarray]] = []

    def fn(x: np.ndarray) -> float:
        value = float(((x - np.array([0.3, 2.0])) ** 2).sum())
        seen.append((value, np.array(x)))
        if len(seen) == 12:
            raise nlopt.RoundoffLimited("round-off")
        return value

    x0 = np.array([1.0, 1.0])
    par, fval, conv, _, _ = nloptwrap(fn, x0, np.zeros(2), {})
    best_value, best_x = min(seen[:-1], key=lambda s: s[0])
    assert conv == -4
    assert fval == best_value < seen[0][0]
    np.testing.assert_array_equal(par, best_x)
