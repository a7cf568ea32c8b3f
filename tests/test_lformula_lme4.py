"""lFormula against lme4 1.1-31: every structure, value, order and name (fixtures from R)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from cases import (
    CASE_IDS,
    as_float_array,
    as_list,
    case_data,
    case_kwargs,
    fingerprint,
    load_case,
    r_sparse,
)

import lmeformula as lmf

# values that R computes in floating point (poly, scale, contr.poly) agree to round-off only
RTOL = 1e-12


def build(case_id: str) -> tuple[dict, lmf.LFormula]:
    case = load_case(case_id)
    data = case_data(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = lmf.lFormula(case["formula"], data, **case_kwargs(case))
    return case, pf


def assert_same_sparse(ours: sp.spmatrix, spec: dict, what: str) -> None:
    ref = r_sparse(spec)
    ours = sp.csc_matrix(ours)
    assert ours.shape == ref.shape, what
    np.testing.assert_array_equal(ours.indptr, ref.indptr, err_msg=f"{what}: column pointers")
    np.testing.assert_array_equal(ours.indices, ref.indices, err_msg=f"{what}: row indices")
    np.testing.assert_allclose(ours.data, ref.data, rtol=RTOL, atol=1e-14, err_msg=what)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_fixed_effects_matrix(case_id: str) -> None:
    case, pf = build(case_id)
    ref = case["lformula"]
    assert list(pf.X.columns) == as_list(ref["X_colnames"])
    assert pf.X_attrs["assign"] == as_list(ref["X_assign"])
    assert pf.formula == ref["formula"]
    if "X" in ref:
        expected = np.array(ref["X"], dtype=float).reshape(pf.X.shape)
        np.testing.assert_allclose(pf.X.to_numpy(), expected, rtol=RTOL, atol=1e-13)
        assert [str(i) for i in pf.fr.index] == as_list(ref["fr_rownames"])
    else:
        np.testing.assert_allclose(pf.X.to_numpy().sum(axis=0), as_float_array(ref["X_colsums"]),
                                   rtol=1e-12)
        ours = np.array([fingerprint(col) for col in pf.X.to_numpy().T])
        np.testing.assert_allclose(ours, np.array(ref["X_fingerprint"], dtype=float).T,
                                   rtol=1e-12)
    assert pf.X.shape[0] == ref["n"]
    dropped = ref["X_col_dropped"]
    if dropped is None:
        assert "col.dropped" not in pf.X_attrs
    else:
        assert pf.X_attrs["col.dropped"] == dropped
    contrasts = ref["X_contrasts"] or {}
    assert pf.X_attrs["contrasts"] == contrasts


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_random_effects_structures(case_id: str) -> None:
    case, pf = build(case_id)
    ref = case["lformula"]
    re = pf.reTrms
    np.testing.assert_array_equal(re.theta, as_float_array(ref["theta"]))
    np.testing.assert_array_equal(re.lower, as_float_array(ref["lower"]))
    np.testing.assert_array_equal(re.Lind, np.array(as_list(ref["Lind"])) - 1)
    np.testing.assert_array_equal(re.Gp, as_list(ref["Gp"]))
    cnms = [as_list(c) for c in (ref["cnms"] if isinstance(ref["cnms"], list) and
                                 any(isinstance(c, list) for c in ref["cnms"])
                                 else [ref["cnms"]] if not isinstance(ref["cnms"], list)
                                 else [ref["cnms"]] if len(as_list(ref["cnms_names"])) == 1
                                 else ref["cnms"])]
    assert re.cnms == cnms
    assert re.cnms_names == as_list(ref["cnms_names"])
    assert list(re.nl) == as_list(ref["nl"])
    assert list(re.nl.index) == as_list(ref["nl_names"])
    assert list(re.flist) == as_list(ref["flist_names"])
    np.testing.assert_array_equal(re.assign + 1, as_list(ref["flist_assign"]))
    levels = ref["flist_levels"]
    levels = [levels] if levels and not isinstance(levels[0], list) else levels
    assert [list(map(str, f.categories)) for f in re.flist.values()] == levels
    # lme4's names; a repeated term gets a unique key in our Ztlist dict ("1 | g.1")
    assert [t.name for t in re.terms] == as_list(ref["Ztlist_names"])
    assert list(re.Ztlist) == [t.key for t in re.terms]
    assert len(set(re.Ztlist)) == len(re.terms)
    if "Zt" in ref:
        assert_same_sparse(re.Zt, ref["Zt"], "Zt")
        for t, spec in zip(re.terms, as_list(ref["Ztlist"]), strict=True):
            assert_same_sparse(re.Ztlist[t.key], spec, f"Ztlist[{t.key}]")
            assert [lev for lev in map(str, t.factor.categories) for _ in range(t.nc)] == \
                as_list(spec["rownames"])
        assert_same_sparse(re.Lambdat, ref["Lambdat"], "Lambdat")
        codes = ref["flist_codes"]
        codes = [codes] if codes and not isinstance(codes[0], list) else codes
        for f, c in zip(re.flist.values(), codes, strict=True):
            np.testing.assert_array_equal(np.asarray(f.codes) + 1, c)
    else:
        assert list(re.Zt.shape) == as_list(ref["Zt_dim"])
        assert re.Zt.nnz == ref["Zt_nnz"]
        assert re.Zt.data.sum() == pytest.approx(ref["Zt_sum"], rel=1e-12)
        head = len(as_list(ref["Zt_p_head"]))
        np.testing.assert_array_equal(re.Zt.indptr[:head], as_list(ref["Zt_p_head"]))
        np.testing.assert_array_equal(re.Zt.indices[:200], as_list(ref["Zt_i_head"]))
        # the whole index vectors and codes, exactly, through their fingerprints
        np.testing.assert_array_equal(fingerprint(re.Zt.indptr), ref["Zt_p_fingerprint"])
        np.testing.assert_array_equal(fingerprint(re.Zt.indices), ref["Zt_i_fingerprint"])
        np.testing.assert_allclose(fingerprint(re.Zt.data), ref["Zt_x_fingerprint"], rtol=1e-13)
        assert re.Lambdat.nnz == ref["Lambdat_nnz"]
        lam = ref["Lambdat_fingerprint"]
        np.testing.assert_array_equal(fingerprint(re.Lambdat.indices), lam["i"])
        np.testing.assert_array_equal(fingerprint(re.Lambdat.indptr), lam["p"])
        np.testing.assert_allclose(fingerprint(re.Lambdat.data), lam["x"], rtol=1e-13)
        for f, c, fp in zip(re.flist.values(), ref["flist_codes_head"],
                            ref["flist_codes_fingerprint"], strict=True):
            np.testing.assert_array_equal(np.asarray(f.codes)[:200] + 1, c)
            np.testing.assert_array_equal(fingerprint(np.asarray(f.codes) + 1), fp)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_check_messages(case_id: str) -> None:
    case, pf = build(case_id)
    assert pf.wmsgs == as_list(case["lformula"]["wmsgs"])
    rank_message = [m.strip() for m in as_list(case["lformula_messages"])]
    if rank_message:
        assert pf.X_attrs["msgRankdrop"] == rank_message[0]
