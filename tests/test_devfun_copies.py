"""A copy of a fitted model's deviance function is the same function: glmer's profile
(``confint(method="profile")``) and the tests' refits at a point evaluate a deep copy, and a
model may be pickled. The scalar PIRLS kernel keeps its chain terms' rows as views of one
stacked array; views stored as attributes became separate arrays in a copy, which then read
stale values (a 4e-8 difference in the criterion at the optimum of this model)."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
from lmeformula.glmermod import GlmerMod


@pytest.fixture(scope="module")
def crossed_binomial() -> GlmerMod:
    rng = np.random.default_rng(1)
    n = 800
    d = pd.DataFrame({"x": rng.normal(size=n),
                      "g": pd.Categorical(rng.integers(0, 20, n).astype(str)),
                      "a": pd.Categorical(rng.integers(0, 6, n).astype(str))})
    eta = (0.3 * d.x + rng.normal(0, 0.5, 20)[d.g.cat.codes]
           + rng.normal(0, 0.3, 6)[d.a.cat.codes])
    d["n"] = rng.integers(1, 10, n)
    d["s"] = rng.binomial(d.n, 1 / (1 + np.exp(-eta)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.glmer("cbind(s, n - s) ~ x + (1 | g) + (1 | a)", d, family="binomial")


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copied_glmer_devfun_is_the_same_function(crossed_binomial: GlmerMod,
                                                  how: str) -> None:
    m = crossed_binomial
    points = [np.asarray(m.optinfo.par, dtype=float)]
    points.append(points[0] * 1.1)
    copied = (copy.deepcopy(m.devfun) if how == "deepcopy"
              else pickle.loads(pickle.dumps(m.devfun)))
    for p in points:  # the original first, then the copy, then the original again
        first = float(m.devfun(p))
        assert float(copied(p)) == first
        assert float(m.devfun(p)) == first


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_large_block_fit_can_be_saved(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """A fit on the large-block engine (block 2 assembled into one reused m x m buffer, whose
    owner is held by a weak reference) pickles and deep-copies: the copy evaluates the same
    criterion and refactors without the buffer."""
    from dataclasses import replace

    import lmeformula.pls.policy as pls_policy
    from lmeformula.pls.large import LargeBlockPLSProblem

    monkeypatch.setattr(pls_policy, "POLICY", replace(pls_policy.POLICY, compact_m22_order=0))
    rng = np.random.default_rng(3)
    n = 2000  # levels enough for the blocked engines (the dense one takes small systems)
    d = pd.DataFrame({"x": rng.normal(size=n), "s": rng.integers(0, 200, n).astype(str),
                      "i": rng.integers(0, 40, n).astype(str)})
    d["y"] = (d.x + rng.normal(size=200)[d.s.astype(int)] + rng.normal(size=40)[d.i.astype(int)]
              + rng.normal(size=n))
    m = lmf.lmer("y ~ x + (1 | s) + (1 | i)", d)
    dev = m.devfun
    assert isinstance(dev.problem, LargeBlockPLSProblem)
    copied = copy.deepcopy(m) if how == "deepcopy" else pickle.loads(pickle.dumps(m))
    assert copied.REMLcrit() == m.REMLcrit()
    theta = np.asarray(m.theta) * 1.1
    assert copied.devfun(theta) == dev(theta)
