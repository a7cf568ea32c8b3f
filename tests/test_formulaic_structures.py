"""syntax="formulaic" against the R syntax on every lme4 fixture whose formula means the same in
both: the random-effects structures are identical, X spans the same columns (with the same values
where the two coding rules agree), and the criterion and fits agree."""

from __future__ import annotations

import re
import warnings
from functools import cache

import numpy as np
import pytest
import scipy.sparse as sp
from cases import CASE_IDS, case_data, case_kwargs, load_case

import lmeformula as lmf

# Fixtures whose formula text means something else (or nothing) in formulaic syntax, and why.
DIFFERENT_MEANING = {
    "arabidopsis": "total.fruits is an attribute access in Python (formulaic writes `total.fruits`)",
    "cbpp_proportion": "incidence/size on the left is formulaic's nesting, not a division",
    "mm_02": "%in% is R syntax",
    "probe_04": "offset() is R syntax",
    "probe_09": "TRUE is R's spelling of True",
    "sim_contrasts": "contrasts= is R-syntax only (formulaic writes C(f, contr.sum))",
    "sim_fixed_logical": "R codes a logical as a factor, formulaic as a number",
    "sim_lhs_transform": "x^2 is XOR in Python",
    "sim_offset": "offset() is R syntax",
    "sim_transforms": "x^3 is XOR in Python",
    "sleep_quadratic": "Days^2 is XOR in Python",
    "verbagg": "as.numeric() is R, not Python",
}
# R codes ordered factors by contr.poly, formulaic by treatment contrasts: same span, other values
POLY_CODED = {"cake_crossed", "cake_ordered", "insteval3000_ordered",
              "mm_cake_ordered_interaction"}
# R's no-intercept interaction coding (f:h with indicators for f) differs from formulaic's
OTHER_CODING = {"sim_fixed_inter_only"}

SAME = [c for c in CASE_IDS if "formula" in load_case(c) and c not in DIFFERENT_MEANING]


@cache  # three tests read each case's pair; lFormula results are not modified
def _both(case_id: str) -> tuple[lmf.LFormula, lmf.LFormula]:
    case = load_case(case_id)
    df, kw = case_data(case), case_kwargs(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = lmf.lFormula(case["formula"], df, **kw)
        f = lmf.lFormula(case["formula"], df, syntax="formulaic", **kw)
    return r, f


def _r_name(column: str) -> str:
    """formulaic's factor column names in R's spelling: ``f[T.b]`` / ``f[b]`` -> ``fb``."""
    return re.sub(r"\[(?:T\.)?([^\]]*)\]", r"\1", column)


def _same_sparse(a: sp.csc_matrix, b: sp.csc_matrix, exact: bool) -> None:
    assert a.shape == b.shape
    a, b = sp.csc_matrix(a), sp.csc_matrix(b)
    a.sort_indices()
    b.sort_indices()
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    if exact:
        np.testing.assert_array_equal(a.data, b.data)
    else:
        np.testing.assert_allclose(b.data, a.data, rtol=1e-12, atol=1e-13)


def test_the_fixture_list_is_complete() -> None:
    assert len(SAME) >= 60
    assert set(DIFFERENT_MEANING) <= set(CASE_IDS)


@pytest.mark.parametrize("case_id", SAME)
def test_random_effects_structures_equal_the_r_syntax(case_id: str) -> None:
    r, f = _both(case_id)
    a, b = r.reTrms, f.reTrms
    # plain columns are copied, so exactly equal; computed ones (poly, scale) to rounding
    computed = any("(" in c and c != "(Intercept)" for cs in a.cnms for c in cs)
    _same_sparse(a.Zt, b.Zt, exact=not computed)
    assert list(a.Ztlist) == list(b.Ztlist)
    for key in a.Ztlist:
        _same_sparse(a.Ztlist[key], b.Ztlist[key], exact=not computed)
    assert (a.Lambdat != b.Lambdat).nnz == 0
    for name in ("Lind", "theta", "lower", "Gp"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert list(a.flist) == list(b.flist)
    for k in a.flist:
        assert list(a.flist[k].categories) == list(b.flist[k].categories)
        np.testing.assert_array_equal(a.flist[k].codes, b.flist[k].codes)
    assert a.nl.to_dict() == b.nl.to_dict()
    # names: identical unless a bar's left side has a factor, which formulaic names f[b]
    assert a.cnms == [[_r_name(c) for c in cs] for cs in b.cnms]
    if not any("[" in c for cs in b.cnms for c in cs):
        assert a.cnms == b.cnms
    np.testing.assert_array_equal(r.frame.rows, f.frame.rows)
    if r.y is not None:
        np.testing.assert_array_equal(r.y, f.y)


@pytest.mark.parametrize("case_id", SAME)
def test_fixed_effects_span_the_same_columns(case_id: str) -> None:
    r, f = _both(case_id)
    Xr, Xf = r.X_values, f.X_values
    assert Xr.shape == Xf.shape
    rank = np.linalg.matrix_rank
    assert rank(np.hstack([Xr, Xf])) == rank(Xr) == rank(Xf)
    if case_id not in POLY_CODED | OTHER_CODING:
        np.testing.assert_allclose(Xf, Xr, rtol=1e-12, atol=1e-12)
    # names are formulaic's (documented); the intercept is lme4's
    assert ("(Intercept)" in r.X_names) == ("(Intercept)" in f.X_names)


@pytest.mark.parametrize("case_id", [c for c in SAME if c not in POLY_CODED | OTHER_CODING])
def test_criterion_at_theta_agrees(case_id: str) -> None:
    r, f = _both(case_id)
    if r.y is None:
        pytest.skip("one-sided formula: nothing to fit")
    dr, df_ = lmf.mkLmerDevfun(r), lmf.mkLmerDevfun(f)
    np.testing.assert_array_equal(dr.start, df_.start)
    for theta in (dr.start, 0.5 * dr.start + 0.1 * (dr.lower == 0)):
        assert df_(theta) == pytest.approx(dr(theta), rel=1e-10)


def test_backquoted_names_spell_r_names_with_dots() -> None:
    # arabidopsis in formulaic syntax: total.fruits quoted, log from numpy
    case = load_case("arabidopsis")
    df = case_data(case)
    r = lmf.lFormula(case["formula"], df)
    f = lmf.lFormula(case["formula"].replace("log(total.fruits", "np.log(`total.fruits`"), df,
                     syntax="formulaic")
    np.testing.assert_array_equal(f.y, r.y)
    _same_sparse(r.reTrms.Zt, f.reTrms.Zt, exact=True)
    np.testing.assert_allclose(f.X_values, r.X_values, rtol=1e-12, atol=1e-12)
    assert f.frame.response == "np.log(`total.fruits` + 1)"


@pytest.mark.parametrize("case_id", ["sleepstudy_slope", "sleepstudy_dblvert", "pastes",
                                     "machines_slope_factor", "sim_weights", "sim_na_exclude",
                                     "sim_subset", "probe_08"])
def test_fits_agree(case_id: str) -> None:
    case = load_case(case_id)
    df, kw = case_data(case), case_kwargs(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mr = lmf.lmer(case["formula"], df, **kw)
        mf = lmf.lmer(case["formula"], df, syntax="formulaic", **kw)
    assert mf.REMLcrit() == pytest.approx(mr.REMLcrit(), rel=1e-10)
    np.testing.assert_allclose(mf.theta, mr.theta, rtol=1e-7, atol=1e-9)
    assert mf.sigma == pytest.approx(mr.sigma, rel=1e-8)
    np.testing.assert_allclose(mf.fitted().to_numpy(), mr.fitted().to_numpy(), rtol=1e-8)
