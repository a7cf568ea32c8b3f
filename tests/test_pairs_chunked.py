"""The scalar downdate's pairs plan built a few groups at a time (to bound its memory on
large designs) is the one-piece plan entry for entry: same keys, same stored values, same
layout, so the per-θ downdate and the criterion are bit-identical."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from cases import crossed_intercepts

import lmeformula as lmf
import lmeformula.pls.downdate as downdate
import lmeformula.pls.policy as pls_policy
from lmeformula.modular import LmerDevfun
from lmeformula.pls.blocks import PairsBlock


def crossed(seed: int = 5) -> pd.DataFrame:
    return crossed_intercepts(seed, n=4000, nsubj=400, nitem=60)


def plan(monkeypatch: pytest.MonkeyPatch, chunk: int, key_order: bool,
         ) -> tuple[np.ndarray, sp.csr_matrix]:
    monkeypatch.setattr(downdate, "_PAIRS_CHUNK", chunk)
    dev = lmf.lmer("y ~ x + (1 | subj) + (1 | item)", crossed(), devFunOnly=True)
    assert isinstance(dev, LmerDevfun)
    prob = dev.problem
    first = prob.terms[0]
    _, level_group = np.unique(prob.A11.reshape(first.nl, -1)[:, 0], return_inverse=True)
    level_group = level_group.ravel()
    ngroups = int(level_group.max()) + 1
    assert ngroups > 3  # several pieces when the pieces are small
    keys, pairs, _ = downdate._downdate_pattern(
        prob.G, 1, first.nl, prob.m, level_group, ngroups,
        key_order=prob._order_by_block_pair if key_order else None)
    assert isinstance(pairs, sp.csr_matrix)
    return keys, pairs


@pytest.mark.parametrize("key_order", [False, True])
def test_pieces_equal_one_piece(monkeypatch: pytest.MonkeyPatch, key_order: bool) -> None:
    keys1, whole = plan(monkeypatch, 10**12, key_order)
    keys2, pieces = plan(monkeypatch, 500, key_order)
    np.testing.assert_array_equal(keys1, keys2)
    assert whole.shape == pieces.shape
    np.testing.assert_array_equal(whole.indptr, pieces.indptr)
    np.testing.assert_array_equal(whole.indices, pieces.indices)
    assert whole.data.tobytes() == pieces.data.tobytes()
    b = np.random.default_rng(1).uniform(size=whole.shape[1])
    assert (whole @ b).tobytes() == (pieces @ b).tobytes()


def test_criterion_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    theta = np.array([0.4, 1.3])
    values = []
    # G would be stored dense here (its pairs outweigh the dense update's flops): keep the pairs
    monkeypatch.setattr(pls_policy, "POLICY", replace(pls_policy.POLICY, dense_g_work=0))
    for chunk in (10**12, 300):
        monkeypatch.setattr(downdate, "_PAIRS_CHUNK", chunk)
        dev = lmf.lmer("y ~ x + (1 | subj) + (1 | item)", crossed(), devFunOnly=True)
        assert isinstance(dev, LmerDevfun)
        assert isinstance(dev.problem.b21, PairsBlock)  # the pairs plan is in use
        values.append(dev(theta))
    assert values[0] == values[1]
