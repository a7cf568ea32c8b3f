"""lmer's and glmer's non-default optimizers against lme4's (tools/R/make_fixtures_optimizers.R).

``Nelder_Mead`` is lme4's own Nelder-Mead and ``nloptwrap`` NLopt's BOBYQA with lme4's settings:
the same path as lme4 (the same evaluations, θ to round-off). ``bobyqa`` is lme4's minqa BOBYQA
settings run by NLopt's implementation of the same algorithm, which does not step as minqa
does: the same optimum to the optimizer's tolerance, not the same evaluation count.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
from cases import FIXTURES

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


@pytest.mark.parametrize("name", [n for n in FITS if not n.endswith("_bobyqa")])
def test_lme4s_path(name: str) -> None:
    ref = FITS[name]
    m, crit = _fit(name)
    assert m.optinfo.feval == ref["feval"]
    np.testing.assert_allclose(np.asarray(m.theta), np.atleast_1d(ref["theta"]), rtol=1e-7)
    np.testing.assert_allclose(np.asarray(m.fixef), np.atleast_1d(ref["fixef"]), rtol=1e-7)
    assert crit == pytest.approx(ref["crit"], rel=1e-12)


@pytest.mark.parametrize("name", [n for n in FITS if n.endswith("_bobyqa")])
def test_bobyqa_reaches_lme4s_optimum(name: str) -> None:
    ref = FITS[name]
    m, crit = _fit(name)
    assert m.optinfo.optimizer == "bobyqa"
    np.testing.assert_allclose(np.asarray(m.theta), np.atleast_1d(ref["theta"]), rtol=1e-5)
    assert crit == pytest.approx(ref["crit"], rel=1e-11)
