"""What a large fit no longer holds (issue 12's peak memory), and that the public structures
are what they were: Zt is built on first access (never during a fit on the counting path),
lmer's engine counts from the factors' own codes, an intercept's X_i is one broadcast value,
the scalar pairs plan's columns are placed as scipy's conversion places them, the model
frame holds no row index when every row is kept, and the gradient's key positions are made
only by the gradient."""

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


@pytest.mark.parametrize("seed", range(12))
def test_csc_from_columns_is_scipys(seed: int) -> None:
    """Columns held narrow (counts as bytes, a few real values apart, or whole) make C
    entry for entry as scipy's conversion, zeros' signs included."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    full = sp.random(n, int(rng.integers(1, 12)), density=float(rng.uniform(0, 0.6)),
                     format="csc", random_state=int(rng.integers(2**31)))
    real = rng.uniform(0, 0.5)  # the share of entries that are not counts
    counts = np.floor(full.data * rng.choice([30, 300, 3000]))  # bytes, or wider counts
    full.data = np.where(rng.uniform(size=full.nnz) < real, full.data, counts)
    full.data[rng.uniform(size=full.nnz) < 0.03] = -0.0  # not a count: held apart, exactly
    full.sort_indices()
    columns = [downdate._held_column(full.indices[a:b].astype(np.int32), full.data[a:b].copy())
               for a, b in zip(full.indptr[:-1], full.indptr[1:], strict=True)]
    expected = full.tocsr().tocsc()  # as the one-piece plan makes C: CSR, then CSC
    got = downdate._csc_from_columns(columns, n)
    assert not columns  # emptied as placed
    assert got.shape == expected.shape
    for attr in ("indptr", "indices", "data"):
        a, b = getattr(got, attr), getattr(expected, attr)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("seed", range(6))
def test_held_rows_in_blocks(seed: int) -> None:
    """Columns of more than 2¹⁶ rows hold their rows as 16-bit offsets in blocks: C is made
    from them entry for entry as from the rows themselves, as one CSC matrix and held narrow
    by blocks of keys that do not line up with the rows' blocks."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(70_000, 300_000))
    full = sp.random(n, int(rng.integers(1, 5)), density=float(rng.uniform(0.001, 0.05)),
                     format="csc", random_state=int(rng.integers(2**31)))
    full.data = np.floor(full.data * rng.choice([30, 3000]))
    full.data[rng.uniform(size=full.nnz) < 0.01] = 0.25  # a few real values, held apart
    full.sort_indices()
    pieces = [(full.indices[a:b].astype(np.int32), full.data[a:b].copy())
              for a, b in zip(full.indptr[:-1], full.indptr[1:], strict=True)]
    held = [downdate._held_column(rows, vals, n) for rows, vals in pieces]
    assert all(h.cuts is not None and h.rows.dtype == np.uint16 for h in held if h.rows.size)
    for h, (rows, _) in zip(held, pieces, strict=True):
        np.testing.assert_array_equal(h.rows_of(0, rows.shape[0]), rows)
        for r in [*rng.integers(0, n + 1, 20).tolist(), 0, n, 65_536, 65_535]:
            assert h.entry_at(r) == int(np.searchsorted(rows, r))
    expected = full.tocsr().tocsc()
    got = downdate._csc_from_columns(list(held), n)
    for attr in ("indptr", "indices", "data"):
        assert getattr(got, attr).tobytes() == getattr(expected, attr).tobytes()
    narrow = downdate._narrow_pairs_from_columns(list(held), n)
    assert len(narrow.blocks) > 1
    back = narrow.tocsc()
    np.testing.assert_array_equal(back.indices, expected.indices)
    assert back.data.tobytes() == expected.data.tobytes()
    v = rng.uniform(size=full.shape[1])
    assert (narrow @ v).tobytes() == (expected @ v).tobytes()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("nrows", [None, 600])
def test_held_column_by_chunks(monkeypatch: pytest.MonkeyPatch, seed: int,
                               nrows: int | None) -> None:
    """A column held from its sums read a few entries at a time (a large group's, from the
    accumulator) is the one held from them all at once, dtype for dtype and byte for byte:
    the narrowest dtype and which values are kept apart are the whole column's."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 500))
    rows = np.sort(rng.choice(600, n, replace=False)).astype(np.int32)
    sums = np.floor(rng.uniform(0, rng.choice([3, 300, 3000, 70_000]), n))
    kind = rng.uniform(size=n)
    sums[kind < rng.uniform(0, 0.4)] = 0.5  # real values, few or many
    sums[kind > 0.98] = -0.0  # not a count
    if seed < 2:  # bytes but for a few counts above 255 (one in 20), kept apart with 0.5
        sums = np.floor(rng.uniform(0, 200, n))
        sums[::20] = 300.0
        sums[1::40] = 0.5
    whole = downdate._held_column(rows, sums, nrows)
    monkeypatch.setattr(downdate, "_ROW_BLOCK", 64)
    expected = downdate._held_column(rows, sums, nrows) if nrows else whole  # one chunk
    monkeypatch.setattr(downdate, "_INDEX_CHUNK", 5)
    chunked = downdate._held_column_of(rows, lambda lo, hi: sums[lo:hi].copy(), nrows)
    if seed < 2:
        assert chunked.values.dtype == np.uint8 and (sums[chunked.wide_at] == 300).any()
    for a, b in zip(expected, chunked, strict=True):
        if a is None:
            assert b is None
            continue
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if nrows is None:  # the chunks change nothing but how the sums are read
        for a, b in zip(whole, chunked, strict=True):
            assert (a is None and b is None) or a.tobytes() == b.tobytes()


def test_held_column_keeps_counts_as_bytes() -> None:
    sums = np.array([3.0, 0.5, 7.0, 255.0, -0.0, 1.0, 2.0, 4.0, 9.0, 12.0])
    held = downdate._held_column(np.arange(10, dtype=np.int32), sums)
    assert held.values.dtype == np.uint8  # two of ten are not counts: held apart
    np.testing.assert_array_equal(held.wide_at, [1, 4])
    assert held.wide_values.tobytes() == sums[[1, 4]].tobytes()
    mostly_real = downdate._held_column(np.arange(4, dtype=np.int32),
                                        np.array([0.5, 1.5, 2.0, 0.25]))
    assert mostly_real.wide_at.size == 0 and mostly_real.values.dtype == np.float32


@pytest.mark.parametrize("syntax", ["R", "formulaic"])
def test_frame_rows_without_an_index(syntax: str) -> None:
    df = dense_crossed(n=400)
    pf = lmf.lFormula("y ~ x + (1 | subj)", df, syntax=syntax)
    assert pf.frame.kept_rows is None  # every row kept: no n-length index held
    np.testing.assert_array_equal(pf.frame.rows, np.arange(len(df)))
    assert pf.frame.nrow == len(df)
    df.loc[[3, 10], "x"] = np.nan
    pf = lmf.lFormula("y ~ x + (1 | subj)", df, syntax=syntax)
    expected = np.setdiff1d(np.arange(len(df)), [3, 10])
    assert pf.frame.kept_rows is not None
    np.testing.assert_array_equal(pf.frame.rows, expected)
    assert pf.frame.nrow == len(df) - 2
    # fitted values and residuals land on the caller's rows either way
    m = lmf.lmer("y ~ x + (1 | subj)", df, syntax=syntax)
    assert len(m.fitted()) == len(df) - 2


def crossed_devfun(monkeypatch: pytest.MonkeyPatch, pairs: bool = True) -> LmerDevfun:
    """A crossed design's deviance function, G stored sparse with its pairs listed (a G
    this small is otherwise stored dense) unless ``pairs`` is False."""
    if pairs:
        monkeypatch.setattr(pls_policy, "POLICY", replace(pls_policy.POLICY, dense_g_work=0,
                                                          dense_g_fill=1.0))
    dev = lmf.lmer("y ~ x + (1 | subj) + (1 | item)", crossed_intercepts(7, 3000, 300, 40),
                   devFunOnly=True)
    assert isinstance(dev, LmerDevfun)
    return dev


def test_gradient_keeps_nothing_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # G stored sparse with its pairs listed (the gradient weighs the keys then)
    dev = crossed_devfun(monkeypatch)
    problem = dev.problem
    assert isinstance(problem.b21, PairsBlock)
    theta = np.array([0.7, 1.1])
    dev(theta)
    assert not problem._inside_counts  # a fit without the gradient counts nothing
    grad = dev.gradient(theta)
    (s, count), = problem._inside_counts.items()  # one number per size, nothing per key
    rows, cols = np.divmod(problem.b21.keys, problem.m)
    assert count == int(np.count_nonzero((rows < s) & (cols < s)))
    np.testing.assert_array_equal(dev.gradient(theta), grad)  # the same count reused


def test_dense_block_scatters_index_typed_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dense block 2 holds the downdate's keys in numpy's index type up to
    ``max_index_keys_bytes`` (no conversion per scatter), 32-bit above it; the criterion is
    the same either way, bit for bit."""
    monkeypatch.setattr(pls_policy, "POLICY", replace(pls_policy.POLICY, dense_g_work=0,
                                                      dense_g_fill=1.0))
    monkeypatch.setattr(downdate, "_PAIRS_CHUNK", 300)  # the chunked build: 32-bit keys
    df = crossed_intercepts(7, 3000, 300, 40)
    values = []
    for limit, dtype in ((pls_policy.POLICY.max_index_keys_bytes, np.intp), (0, np.int32)):
        monkeypatch.setattr(pls_policy, "POLICY", replace(pls_policy.POLICY,
                                                          max_index_keys_bytes=limit))
        dev = lmf.lmer("y ~ x + (1 | subj) + (1 | item)", df, devFunOnly=True)
        assert isinstance(dev, LmerDevfun)
        problem = dev.problem
        assert isinstance(problem.b21, PairsBlock) and problem.b21.keys.dtype == np.int32
        assert problem.b22.keys.dtype == dtype
        np.testing.assert_array_equal(problem.b22.keys, problem.b21.keys)
        values.append(dev(np.array([0.7, 1.1])))
    assert values[0] == values[1]


@pytest.mark.parametrize("dense_g", [False, True])
def test_gradient_inverts_in_the_factors_array(monkeypatch: pytest.MonkeyPatch,
                                              dense_g: bool) -> None:
    """Above ``max_inverse_copy_bytes`` the gradient makes S_s⁻¹ in the factor's own array
    (no copy of its leading block): the gradient equals the copy's (dpotri) to rounding,
    and the factor is left as it was where it is read (lower triangle, diagonal)."""
    problem = crossed_devfun(monkeypatch, pairs=not dense_g).problem
    f = problem.factor(np.array([0.7, 1.1]))
    lower = np.tril(f.L22).tobytes()
    from lmeformula.pls import engine as pls_engine

    used: list[int] = []
    in_place = pls_engine.leading_inverse_in_place
    monkeypatch.setattr(pls_engine, "leading_inverse_in_place",
                        lambda a, s: used.append(s) or in_place(a, s))
    grads = []
    for limit in (2**40, 0):  # a copy, then in place
        monkeypatch.setattr(pls_policy, "POLICY", replace(pls_policy.POLICY,
                                                          max_inverse_copy_bytes=limit))
        grads.append([problem.gradient(f, reml) for reml in (True, False)])
        assert np.tril(f.L22).tobytes() == lower
    assert len(used) == 2  # in place only below the bound (REML's s and ML's)
    for copied, inverted in zip(*grads, strict=True):
        np.testing.assert_allclose(inverted, copied, rtol=1e-12, atol=0)


def test_one_factor_held_gives_the_same_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above ``max_best_factor`` the deviance function keeps no factor of the best point (the
    optimum is factored once more, as lme4 evaluates it once more): the same fit, bit for bit."""
    df = crossed_intercepts(11, 3000, 300, 40)
    fits = []
    for limit in (pls_policy.POLICY.max_best_factor, 100):
        monkeypatch.setattr(pls_policy, "POLICY", replace(pls_policy.POLICY,
                                                          max_best_factor=limit))
        m = lmf.lmer("y ~ x + (1 | subj) + (1 | item)", df)
        problem = m.devfun.problem
        assert problem.holds_one_factor == (limit == 100)
        assert (m.devfun._best is None) == (limit == 100)
        fits.append(m)
    a, b = fits
    assert a.optinfo.feval == b.optinfo.feval
    assert float(a.REMLcrit()) == float(b.REMLcrit())
    for attr in ("theta", "fixef", "fitted", "residuals"):
        x, y = getattr(a, attr), getattr(b, attr)
        x, y = (x() if callable(x) else x), (y() if callable(y) else y)
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    for key in a.ranef():
        assert np.asarray(a.ranef()[key]).tobytes() == np.asarray(b.ranef()[key]).tobytes()


def test_setup_gives_freed_pages_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's setup ends by giving freed pages back (glibc's malloc_trim; a no-op
    elsewhere), once per problem from ``TRIM_MIN_ROWS`` rows on, with the results as they
    were; a smaller problem skips it."""
    import lmeformula.pls.factory as factory
    import lmeformula.pls.memory as pls_memory

    pls_memory.release_freed_memory()  # callable anywhere, any number of times
    calls: list[int] = []
    monkeypatch.setattr(factory, "release_freed_memory", lambda: calls.append(1))
    df = crossed_intercepts(12, 3000, 300, 40)
    lmf.lmer("y ~ x + (1 | subj) + (1 | item)", df)
    assert calls == []  # fewer rows than TRIM_MIN_ROWS
    monkeypatch.setattr(pls_memory, "TRIM_MIN_ROWS", len(df))
    a = lmf.lmer("y ~ x + (1 | subj) + (1 | item)", df)
    assert calls == [1]
    monkeypatch.undo()
    b = lmf.lmer("y ~ x + (1 | subj) + (1 | item)", df)
    assert np.asarray(a.theta).tobytes() == np.asarray(b.theta).tobytes()


def test_small_fits_skip_the_model_frame_s_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    """mkLmerDevfun gives lFormula's (and lme4_start's) freed pages back only for large data (from
    ``TRIM_MIN_ROWS`` rows): malloc_trim walks the whole heap (milliseconds in a session
    holding many objects), more than a small fit itself costs."""
    import lmeformula.pls.memory as pls_memory

    calls: list[int] = []
    monkeypatch.setattr(pls_memory, "release_freed_memory", lambda: calls.append(1))
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"y": rng.normal(size=60), "g": np.repeat(list("abcdef"), 10)})
    pf = lmf.lFormula("y ~ 1 + (1 | g)", df)
    lmf.mkLmerDevfun(pf)
    assert calls == []
    monkeypatch.setattr(pls_memory, "TRIM_MIN_ROWS", 60)
    lmf.mkLmerDevfun(pf)
    assert calls == [1, 1]  # before the engine is built and after lme4's start


def test_long_float_columns_are_shared_read_only_and_writes_stay_the_caller_s(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """From ``SHARE_MIN_ROWS`` rows the model frame holds a read-only view of a float64
    column rather than a copy (where pandas copies on write): the fit is the same, the
    caller's frame is not modified, and a later write to the caller's frame does not reach
    the fitted model (``update`` re-evaluates the call on the data as they are then, as R's
    does)."""
    import lmeformula.frame as frame

    df = crossed_intercepts(4, 3000, 300, 40)
    before = df.copy()
    copied = lmf.lmer("y ~ x + (1 | subj) + (1 | item)", df)
    monkeypatch.setattr(frame, "SHARE_MIN_ROWS", len(df))
    pf = lmf.lFormula("y ~ x + (1 | subj) + (1 | item)", df)
    x_view = pf.frame.variables["x"]
    if frame._copy_on_write():
        assert np.shares_memory(x_view, df["x"].to_numpy())
    assert not x_view.flags.writeable
    shared = lmf.lmer("y ~ x + (1 | subj) + (1 | item)", df)
    for attr in ("theta", "fixef", "fitted"):
        a, b = getattr(copied, attr), getattr(shared, attr)
        a, b = (a() if callable(a) else a), (b() if callable(b) else b)
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    pd.testing.assert_frame_equal(df, before)
    fitted = np.asarray(shared.fitted()).copy()
    df.loc[0, "y"] = 1e6  # the caller's later writes are the caller's
    df.iloc[1, df.columns.get_loc("x")] = -50.0
    assert x_view[1] == before["x"].iloc[1]
    assert np.asarray(shared.fitted()).tobytes() == fitted.tobytes()
    assert np.asarray(lmf.getME(shared, "y"))[0] == before["y"].iloc[0]


def test_columns_of_a_mapping_are_copied_not_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dict of numpy arrays becomes a pandas frame over the caller's own arrays (no copy),
    which pandas' copy-on-write cannot guard: the caller may write into them in place after
    the fit. Their long float64 columns are copied into the model frame as shorter ones are,
    so such writes do not reach the fitted model (its y and residuals) or the model frame."""
    import lmeformula.frame as frame

    df = crossed_intercepts(4, 3000, 300, 40)
    monkeypatch.setattr(frame, "SHARE_MIN_ROWS", len(df))
    y, x = df["y"].to_numpy().copy(), df["x"].to_numpy().copy()
    data = {"y": y, "x": x, "subj": df["subj"].to_numpy(), "item": df["item"].to_numpy()}
    m = lmf.lmer("y ~ x + (1 | subj) + (1 | item)", data)
    pf = lmf.lFormula("y ~ x + (1 | subj) + (1 | item)", data)
    y0, x0 = y.copy(), x.copy()
    resid = np.asarray(m.residuals()).copy()
    y *= 3.0  # the caller's arrays, written in place after the fit
    x += 5.0
    assert np.asarray(lmf.getME(m, "y")).tobytes() == y0.tobytes()
    assert np.asarray(m.residuals()).tobytes() == resid.tobytes()
    assert pf.y.tobytes() == y0.tobytes()
    assert np.asarray(pf.frame.variables["x"]).tobytes() == x0.tobytes()


@pytest.mark.parametrize("formula", ["y ~ x + (1 | subj) + (1 | item)",
                                     "y ~ x + (1 | subj) + (x | item)",
                                     "y ~ x + (1 | subj) + (x || item) + (1 | g3)"])
@pytest.mark.parametrize("band", [1, 7, 1 << 18])
def test_solution_from_bands_of_l21_is_the_whole_l21_s(
        formula: str, band: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block-1 solution and lme4's RZX from bands of L21's rows (whole levels of each
    term of block 2 per band) are bit for bit those from the whole sparse L21."""
    import lmeformula.pls.engine as engine

    df = crossed_intercepts(7, 2500, 150, 30)
    df["g3"] = (np.arange(len(df)) % 11).astype(str)
    dev = lmf.mkLmerDevfun(lmf.lFormula(formula, df))
    problem = dev.problem
    monkeypatch.setattr(engine, "_DENSE_L21_LIMIT", 0)  # the sparse path at this size
    monkeypatch.setattr(engine, "_L21_BAND_ENTRIES", band)
    theta = np.where(dev.lower == 0, 0.8, 0.3) + 0.01 * np.arange(len(dev.lower))
    banded = problem.factor(theta)
    beta_b, u_b = problem.solve(banded)
    rzx_b, rx_b = problem.rzx_rx(banded)
    assert banded._L21 is None  # nothing formed and kept
    whole = problem.factor(theta)
    _ = whole.L21  # formed: solve and rzx_rx read it
    beta_w, u_w = problem.solve(whole)
    rzx_w, rx_w = problem.rzx_rx(whole)
    for a, b in ((beta_b, beta_w), (u_b, u_w), (rzx_b, rzx_w), (rx_b, rx_w)):
        assert a.tobytes() == b.tobytes()


# -- the setup's index arrays made a chunk at a time: the same as the one-piece numpy calls ----
def test_order_by_block_pair_is_the_stable_argsort(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmeformula.pls.engine as engine

    df = crossed_intercepts(3, 3000, 300, 40)
    df["site"] = (np.arange(len(df)) % 7).astype(str)
    dev = lmf.lmer("y ~ x + (1 | subj) + (1 | item) + (1 | site)", df, devFunOnly=True)
    assert isinstance(dev, LmerDevfun)
    problem = dev.problem
    rng = np.random.default_rng(4)
    m = problem.m
    upper = np.flatnonzero(np.triu(np.ones((m, m), dtype=bool)))
    keys = np.sort(rng.choice(upper, upper.shape[0] // 2, replace=False)).astype(np.int32)
    monkeypatch.setattr(engine, "_ORDER_CHUNK", 37)  # many chunks, codes split across them
    order = problem._order_by_block_pair(keys)
    assert order.dtype == np.int32
    np.testing.assert_array_equal(order, np.argsort(problem._block_pair(keys), kind="stable"))


def test_index_helpers_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from lmeformula.pls.engine import csr_order

    monkeypatch.setattr(downdate, "_INDEX_CHUNK", 5)
    rng = np.random.default_rng(5)
    mask = rng.uniform(size=103) < 0.3
    got = downdate._nonzero(mask, np.dtype(np.int32))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.flatnonzero(mask))
    m = 11
    e, f = np.triu_indices(m)
    tri = (e * m - e * (e + 1) // 2 + f).astype(np.int32)  # _scalar_pairs' keys
    np.testing.assert_array_equal(tri, np.arange(tri.shape[0]))
    np.testing.assert_array_equal(downdate._flat_positions(tri, m), e * m + f)
    # CSR order: a slice when the entries are in it already, else lexsort's permutation
    rows, cols = np.array([0, 0, 1, 3, 3]), np.array([1, 4, 0, 2, 3])
    assert csr_order(rows, cols) == slice(None)
    shuffled = rng.permutation(5)
    order = csr_order(rows[shuffled], cols[shuffled])
    assert isinstance(order, np.ndarray)
    np.testing.assert_array_equal(rows[shuffled][order], rows)
    np.testing.assert_array_equal(cols[shuffled][order], cols)
    assert isinstance(csr_order(np.array([0, 0]), np.array([2, 1])), np.ndarray)  # columns


def test_flat_view_reads_any_layout() -> None:
    """The gradient reads S⁻¹ at the keys off the array's memory: Fortran order (dpotri's),
    C order, and the leading block of a transposed Fortran array (the factor's own)."""
    from lmeformula.pls.engine import _flat_view

    base = np.asfortranarray(np.arange(49.0).reshape(7, 7))
    rows, cols = np.indices((5, 5)).reshape(2, -1)
    for a in (base[:5, :5], np.ascontiguousarray(base[:5, :5]), base.T[:5, :5]):
        flat, step_r, step_c = _flat_view(a)
        assert flat is not None and not flat.flags.writeable
        np.testing.assert_array_equal(flat[rows * step_r + cols * step_c], a[rows, cols])
    assert _flat_view(base[::-1])[0] is None  # negative strides: read by index
