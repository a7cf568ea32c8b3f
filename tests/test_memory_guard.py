"""A model whose dense block would not fit in memory gets a clear error before anything big
is allocated (two crossed factors of 10^5 levels: an 80 GB block), unless block 2's sparse
factor, which needs no dense block, serves its fit."""

from __future__ import annotations

import resource

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
from lmeformula.errors import LmeFormulaError, ModelSizeError
from lmeformula.pls import ScalarTerm, VectorTerm
from lmeformula.pls.memory import check_dense_memory, dense_bytes


def crossed(n: int, n1: int, n2: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    # every level of both factors appears (levels are the codes, then shuffled pairs)
    a = np.concatenate([np.arange(n1), rng.integers(0, n1, n - n1)])
    b = np.concatenate([np.arange(n2), rng.integers(0, n2, n - n2)])
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "subj": a.astype(str), "item": b[rng.permutation(n)].astype(str)})


@pytest.mark.slow
def test_two_crossed_factors_of_1e5_levels_are_refused_before_allocation() -> None:
    """10 rows per subject: each item meets ~100 others through the subjects, a random graph
    whose sparse factor stays nearly dense, so the 80 GB dense block is needed and refused
    (at the first evaluation, once CHOLMOD's analysis has measured the fill: ~10 s here).
    With 2 rows per subject the factor fills 0.3 % and the model fits (40 s, 1.2 GB)."""
    df = crossed(1_000_000, 100_000, 100_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelSizeError) as err:
        lmf.lmer("y ~ x + (1 | subj) + (1 | item)", df)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    msg = str(err.value)
    assert "1 | item" in msg or "1 | subj" in msg  # the term in the dense block, by name
    assert "100,000 levels" in msg and "100,003 x 100,003" in msg and "GB" in msg
    assert "sparse factor" in msg and "does not serve" in msg
    assert isinstance(err.value, LmeFormulaError) and isinstance(err.value, ValueError)
    assert grown_mb < 2000  # nothing near the 80 GB block was touched


def test_check_dense_memory_counts_block_two() -> None:
    terms = [ScalarTerm(1000, 0), VectorTerm(300, 2, 1), ScalarTerm(50, 4)]
    order = 300 * 2 + 50 + 3 + 1
    check_dense_memory(terms, 3, available=dense_bytes(order))  # just fits
    with pytest.raises(ModelSizeError, match=r"'b' \(300 levels x 2 columns\), 'c' \(50 "
                                             r"levels x 1 column\) with 3 fixed effects"):
        check_dense_memory(terms, 3, names=["a", "b", "c"], available=dense_bytes(order) - 1)
    with pytest.raises(ModelSizeError, match="term 2"):
        check_dense_memory(terms, 3, available=0)
