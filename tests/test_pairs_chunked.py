"""The scalar downdate's pairs plan built a few groups at a time (to bound its memory on
large designs) is the one-piece plan entry for entry: same keys, same stored values, same
layout, so the per-θ downdate and the criterion are bit-identical."""

from __future__ import annotations

import copy
import pickle
from dataclasses import replace
from typing import Any

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


def crossed_slopes(seed: int = 6) -> pd.DataFrame:
    """6-11 rows per subject (one group of equal A11 per count: every group of many levels):
    C's values are real products, several summed per key within a group (their order shows).
    The subjects of the group of 13 rows have x = 0 and y < 0: their products with the y row
    are +0 times a negative, -0.0, and some keys' sums all -0.0."""
    rng = np.random.default_rng(seed)
    nsubj = 300
    counts = rng.integers(6, 12, nsubj)
    zero = rng.choice(nsubj, 30, replace=False)
    counts[zero] = 13
    subj = np.repeat(np.arange(nsubj), counts)
    n = subj.shape[0]
    item = rng.integers(0, 40, n)
    x = rng.normal(size=n)
    in_zero = np.isin(subj, zero)
    x[in_zero] = 0.0
    y = x + rng.normal(size=nsubj)[subj] + rng.normal(size=n)
    y[in_zero] = -1.0 - rng.uniform(size=int(in_zero.sum()))
    return pd.DataFrame({"y": y, "x": x, "subj": subj.astype(str), "item": item.astype(str)})


MODELS = {"intercepts": ("y ~ x + (1 | subj) + (1 | item)", crossed),
          "slopes": ("y ~ x + (1 | subj) + (0 + x | item)", crossed_slopes)}


def raw_plan(monkeypatch: pytest.MonkeyPatch, chunk: int, key_order: bool,
             model: str = "intercepts") -> tuple[np.ndarray, Any]:
    """The grouped downdate plan (keys, C) of a model's G, built in pieces of ``chunk``."""
    monkeypatch.setattr(downdate, "_PAIRS_CHUNK", chunk)
    formula, data = MODELS[model]
    dev = lmf.lmer(formula, data(), devFunOnly=True)
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
    return keys, pairs


def plan(monkeypatch: pytest.MonkeyPatch, chunk: int, key_order: bool,
         model: str = "intercepts") -> tuple[np.ndarray, sp.csc_matrix]:
    keys, pairs = raw_plan(monkeypatch, chunk, key_order, model)
    assert isinstance(pairs, sp.csc_matrix)  # grouped: by columns, for the per-θ product
    return keys, pairs


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("chunk", [6000, 2000, 500, 40])
@pytest.mark.parametrize("key_order", [False, True])
@pytest.mark.parametrize("small_index_chunks", [False, True])
def test_pieces_equal_one_piece(monkeypatch: pytest.MonkeyPatch, key_order: bool,
                                chunk: int, model: str, small_index_chunks: bool) -> None:
    keys1, whole = plan(monkeypatch, 10**12, key_order, model)
    if small_index_chunks:
        # the keys' ordering and the large groups' held columns a few entries at a time,
        # the columns' rows as 16-bit offsets in many blocks, as on the largest designs
        monkeypatch.setattr(downdate, "_INDEX_CHUNK", 7)
        monkeypatch.setattr(downdate, "_ROW_BLOCK", 16)
        monkeypatch.setattr(downdate, "_narrow_rows", lambda nkeys, ngroups: nkeys)
    keys2, pieces = plan(monkeypatch, chunk, key_order, model)
    np.testing.assert_array_equal(keys1, keys2)
    assert whole.shape == pieces.shape
    assert whole.indptr.dtype == pieces.indptr.dtype
    assert whole.indices.dtype == pieces.indices.dtype
    np.testing.assert_array_equal(whole.indptr, pieces.indptr)
    np.testing.assert_array_equal(whole.indices, pieces.indices)
    assert whole.data.tobytes() == pieces.data.tobytes()  # zeros' signs included
    if model == "slopes":  # the case the accumulator's -0.0 start is for
        assert np.any((whole.data == 0) & np.signbit(whole.data))
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


# -- C held narrow (NarrowPairs): large plans, the same products ----------------------------
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("chunk", [2000, 40])
def test_narrow_plan_is_the_csc_plan(monkeypatch: pytest.MonkeyPatch, chunk: int,
                                     model: str) -> None:
    """Above ``max_wide_pairs_bytes`` C is held by blocks of keys, narrow: the same entries
    as the CSC plan, and the same products bit for bit, whole or block by block."""
    keys1, wide = plan(monkeypatch, chunk, True, model)
    monkeypatch.setattr(pls_policy, "POLICY",
                        replace(pls_policy.POLICY, max_wide_pairs_bytes=0))
    monkeypatch.setattr(downdate.NarrowPairs, "MAX_BLOCK_KEYS", 64)  # many blocks
    keys2, narrow = raw_plan(monkeypatch, chunk, True, model)
    assert isinstance(narrow, downdate.NarrowPairs)
    assert len(narrow.blocks) > 3
    if model == "intercepts":  # counts, but for the X and y keys: bytes
        assert narrow.nbytes < (wide.data.nbytes + wide.indices.nbytes) / 2
    np.testing.assert_array_equal(keys1, keys2)
    back = narrow.tocsc()
    np.testing.assert_array_equal(back.indptr, wide.indptr)
    np.testing.assert_array_equal(back.indices, wide.indices)
    assert back.data.tobytes() == wide.data.tobytes()  # zeros' signs included
    b = np.random.default_rng(2).uniform(size=wide.shape[1])
    expected = (wide @ b).tobytes()
    assert (narrow @ b).tobytes() == expected
    parts = list(narrow.block_products(b))
    assert [lo for lo, _, _ in parts] == narrow.starts[:-1].tolist()
    assert np.concatenate([p for _, _, p in parts]).tobytes() == expected


@pytest.mark.parametrize("large", [False, True])
def test_criterion_unchanged_with_a_narrow_plan(monkeypatch: pytest.MonkeyPatch,
                                                large: bool) -> None:
    """The criterion with C held narrow is the CSC plan's bit for bit, in the blocked engine
    and in the large-block engine (which applies the downdate block by block)."""
    base = replace(pls_policy.POLICY, dense_g_work=0,
                   compact_m22_order=0 if large else pls_policy.POLICY.compact_m22_order)
    monkeypatch.setattr(downdate, "_PAIRS_CHUNK", 300)
    monkeypatch.setattr(downdate.NarrowPairs, "MAX_BLOCK_KEYS", 50)
    thetas = [np.array([0.4, 1.3]), np.array([0.0, 0.7]), np.array([2.0, 0.0])]
    values = []
    gradients = []
    for limit in (2**40, 0):
        monkeypatch.setattr(pls_policy, "POLICY", replace(base, max_wide_pairs_bytes=limit))
        dev = lmf.lmer("y ~ x + (1 | subj) + (1 | item)", crossed(), devFunOnly=True)
        assert isinstance(dev, LmerDevfun)
        b21 = dev.problem.b21
        assert isinstance(b21, PairsBlock)
        assert isinstance(b21.pairs, downdate.NarrowPairs) == (limit == 0)
        values.append([dev(t) for t in thetas])
        # the analytic gradient sums over the pairs (REML's keys and ML's)
        gradients.append([dev.gradient(thetas[0]).tobytes(),
                          dev.problem.gradient(dev.problem.factor(thetas[0]), False).tobytes()])
        if limit == 0:  # a narrow plan survives a deep copy and pickling (slots, no views)
            for copied in (copy.deepcopy(dev), pickle.loads(pickle.dumps(dev))):
                assert [copied(t) for t in thetas] == values[-1]
    assert values[0] == values[1]
    assert gradients[0] == gradients[1]


def test_many_groups_keep_the_csc_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """A C of more groups than ``NarrowPairs.MAX_COLUMNS`` stays CSC however large (each block
    would hold an index pointer over every group; case weights make every level a group)."""
    monkeypatch.setattr(pls_policy, "POLICY", replace(pls_policy.POLICY,
                                                      max_wide_pairs_bytes=0))
    monkeypatch.setattr(downdate.NarrowPairs, "MAX_COLUMNS", 3)
    _, pairs = raw_plan(monkeypatch, 2000, True)
    assert isinstance(pairs, sp.csc_matrix) and pairs.shape[1] > 3
