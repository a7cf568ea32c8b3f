"""What a large fit no longer holds (issue 12's peak memory), and that the public structures
are what they were: Zt is built on first access (never during a fit on the counting path),
lmer's engine counts from the factors' own codes, an intercept's X_i is one broadcast value,
and the scalar pairs plan's pieces are joined as ``sp.hstack`` would join them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from cases import crossed_intercepts

import lmeformula as lmf
import lmeformula.pls.downdate as downdate
from lmeformula.modular import LmerDevfun
from lmeformula.reterms import _stacked_zt


def dense_crossed(seed: int = 3, n: int = 6000, nsubj: int = 120, nitem: int = 40,
                  ) -> pd.DataFrame:
    """Every subject meets most items: a vector first term and a scalar second one."""
    rng = np.random.default_rng(seed)
    subj = rng.integers(0, nsubj, n)
    item = rng.integers(0, nitem, n)
    x = rng.normal(size=n)
    a, b = rng.normal(size=nsubj), 0.5 * rng.normal(size=nsubj)
    y = (1 + 0.5 * x + a[subj] + b[subj] * x + rng.normal(size=nitem)[item]
         + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "subj": subj.astype(str), "item": item.astype(str)})


FORMULAS = [("y ~ x + (x | subj) + (1 | item)", dense_crossed),
            ("y ~ x + (1 | subj) + (1 | item)",
             lambda: crossed_intercepts(7, n=5000, nsubj=500, nitem=80))]


@pytest.mark.parametrize(("formula", "data"), FORMULAS)
def test_fit_builds_no_zt_and_getme_zt_is_lme4s(formula: str, data: object) -> None:
    df = data()  # type: ignore[operator]
    m = lmf.lmer(formula, df)
    re = m.lformula.reTrms
    assert "Zt" not in vars(re)  # the blocked engine counted; nothing built Zt
    zt = m.getME("Zt")
    expected = _stacked_zt(re.terms)
    assert zt.shape == expected.shape == (re.q, len(df))
    assert (zt != expected).nnz == 0
    assert np.array_equal(zt.indptr, expected.indptr)
    assert np.array_equal(zt.indices, expected.indices)
    # the same matrix as lFormula's (built there on access) and as Ztlist stacked
    pf = lmf.lFormula(formula, df)
    assert (pf.reTrms.Zt != zt).nnz == 0
    stacked = sp.vstack(list(pf.reTrms.Ztlist.values()), format="csc")
    assert (stacked != zt).nnz == 0


@pytest.mark.parametrize(("formula", "data"), FORMULAS)
def test_compact_codes_and_lazy_zt_give_the_same_criterion(formula: str, data: object) -> None:
    df = data()  # type: ignore[operator]
    pf = lmf.lFormula(formula, df)
    re = pf.reTrms
    compact = re.level_factors(compact=True)
    wide = re.level_factors()
    for (c, x), (c64, x64) in zip(compact, wide, strict=True):
        assert c.dtype.itemsize < 8 and c64.dtype == np.int64
        assert np.array_equal(c, c64) and np.array_equal(x, x64)
    dev = lmf.mkLmerDevfun(pf)
    assert isinstance(dev, LmerDevfun)
    from lmeformula.pls import make_problem, term_shapes

    wide_problem = make_problem(re.Zt, pf.X_values, pf.y, None, term_shapes(re.terms), wide)
    for theta in (dev.start, dev.start * 0.3 + 0.2):
        for reml in (True, False):
            assert dev.problem.deviance(theta, reml)[0] == wide_problem.deviance(theta, reml)[0]


def test_intercept_xi_is_broadcast_and_public_copies_are_arrays() -> None:
    df = dense_crossed()
    pf = lmf.lFormula("y ~ x + (x | subj) + (1 | item)", df)
    re = pf.reTrms
    item = next(t for t in re.terms if t.group_name == "item")
    assert item.X.shape == (len(df), 1) and item.X.strides[0] == 0
    assert not item.X.flags.writeable
    xi = re.Xi[item.key]
    assert xi.shape == (len(df), 1) and (xi.to_numpy() == 1.0).all()
    xi.iloc[0, 0] = 5.0  # an ordinary frame: writing to it leaves the term alone
    assert item.X[0, 0] == 1.0
    m = lmf.lmer("y ~ x + (x | subj) + (1 | item)", df)
    mm = m.getME("mmList")
    assert all((frame.to_numpy() == 1.0).all() for key, frame in mm.items() if "item" in key)


def test_nan_in_an_intercept_free_term_is_still_refused() -> None:
    df = dense_crossed()
    df.loc[3, "x"] = np.nan
    with pytest.raises(ValueError, match="NA in Z"):
        lmf.lFormula("y ~ 1 + (0 + x | subj)", df, na_action="pass")


@pytest.mark.parametrize("seed", range(8))
def test_join_columns_is_hstack(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    blocks = [sp.random(n, int(rng.integers(1, 9)), density=float(rng.uniform(0, 0.6)),
                        format="csr", random_state=int(rng.integers(2**31)))
              for _ in range(int(rng.integers(1, 6)))]
    expected = sp.hstack(blocks, format="csr")
    got = downdate._join_columns(list(blocks), n)
    assert got.shape == expected.shape
    for attr in ("indptr", "indices", "data"):
        a, b = getattr(got, attr), getattr(expected, attr)
        assert a.dtype == b.dtype and np.array_equal(a, b)
