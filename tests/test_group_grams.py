"""The downdate by per-group Gram matrices (too many pairs to list, scalar first term): the
same criterion and gradient as the sparse products it replaces, and a re-weighting that
leaves it for the sparse products (weights break the groups)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from cases import crossed_intercepts

import lmeformula as lmf
import lmeformula.pls.policy as pls_policy
from lmeformula.modular import LmerDevfun
from lmeformula.pls.blocks import PairsBlock, SparseBlock

FORMULA = "y ~ x + (1 | subj) + (1 | item)"


def crossed(seed: int = 3) -> pd.DataFrame:
    # G 10 % filled (not the dense-G path); subjects' counts take few values (few groups)
    return crossed_intercepts(seed, n=6000, nsubj=300, nitem=200)


def devfun(monkeypatch: pytest.MonkeyPatch, **policy: int) -> LmerDevfun:
    monkeypatch.setattr(pls_policy, "POLICY", dataclasses.replace(pls_policy.POLICY, **policy))
    dev = lmf.lmer(FORMULA, crossed(), devFunOnly=True)
    assert isinstance(dev, LmerDevfun)
    return dev


THETAS = [np.array([1.0, 1.0]), np.array([0.3, 2.5]), np.array([0.0, 0.7])]


def test_group_grams_give_the_sparse_products_criterion_and_gradient(
        monkeypatch: pytest.MonkeyPatch) -> None:
    grams = devfun(monkeypatch, max_pairs=0)  # the pairs are "too many": the grams path
    b21 = grams.problem.b21
    assert isinstance(b21, PairsBlock) and isinstance(b21.pairs, np.ndarray)
    ngroups = b21.pairs.shape[1]
    assert 1 < ngroups < 300  # subjects grouped by equal counts
    sparse = devfun(monkeypatch, max_pairs=0, max_group_grams=0)
    assert type(sparse.problem.b21) is SparseBlock  # neither pairs nor Grams
    listed = devfun(monkeypatch)  # the default: the pairs listed
    for theta in THETAS:
        for reml in (True, False):
            grams.REML = sparse.REML = listed.REML = reml
            want = listed(theta)
            assert grams(theta) == pytest.approx(want, rel=1e-12)
            assert sparse(theta) == pytest.approx(want, rel=1e-12)
    theta = THETAS[1]
    np.testing.assert_allclose(grams.gradient(theta), listed.gradient(theta), rtol=1e-9)


def test_reweighting_leaves_the_group_grams(monkeypatch: pytest.MonkeyPatch) -> None:
    grams = devfun(monkeypatch, max_pairs=0)
    problem = grams.problem
    w = np.random.default_rng(1).uniform(0.5, 2.0, problem.n)
    problem.reweight(w, problem.y)
    assert type(problem.b21) is SparseBlock  # the groups of equal A11 no longer hold
    monkeypatch.setattr(pls_policy, "POLICY", dataclasses.replace(pls_policy.POLICY))
    df = crossed()
    fresh = lmf.lmer(FORMULA, df, weights=w, devFunOnly=True)
    assert isinstance(fresh, LmerDevfun)
    for theta in THETAS:
        assert grams(theta) == pytest.approx(fresh(theta), rel=1e-10)
