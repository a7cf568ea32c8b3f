"""X and an equal X_i are one array (ReTrms.share_fixed_matrix), made read-only.

In ``y ~ x + (x | g)`` the fixed-effects matrix and the term's model matrix are both [1, x]
and one array serves as both; a user's in-place edit of either must raise rather than change
the other unseen (lme4's lFormula hands out a fresh X: editing it changes nothing else).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import lmeformula as lmf

SLEEP = "Reaction ~ Days + (Days | Subject)"


def _shared() -> lmf.LFormula:
    pf = lmf.lFormula(SLEEP, lmf.datasets.load("sleepstudy"))
    assert pf.X_values is pf.reTrms.terms[0].X  # (else this file tests nothing)
    return pf


def test_shared_matrix_is_read_only() -> None:
    pf = _shared()
    before = pf.X_values.copy()
    assert not pf.X_values.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        pf.X_values[:, 1] *= 2.0
    with pytest.raises(ValueError, match="read-only"):
        pf.reTrms.terms[0].X[0, 0] = 5.0
    assert np.array_equal(pf.X_values, before)
    # Zt's values are X_i's: unchanged
    zt = pf.reTrms.Zt.toarray()
    assert np.array_equal(zt[:2, :10].T, np.column_stack([np.ones(10), before[:10, 1]]))


def test_the_data_frame_x_is_a_fresh_matrix() -> None:
    pf = _shared()
    X = pf.X
    X.iloc[0, 1] = 99.0  # the user's copy, as lme4's X
    assert pf.X_values[0, 1] == 0.0 and pf.reTrms.terms[0].X[0, 1] == 0.0


def test_unshared_matrices_stay_writeable() -> None:
    # (1 | Subject)'s X_i is the intercept alone: nothing shared, nothing made read-only
    pf = lmf.lFormula("Reaction ~ Days + (1 | Subject)", lmf.datasets.load("sleepstudy"))
    assert pf.X_values is not pf.reTrms.terms[0].X
    assert pf.X_values.flags.writeable


def test_an_edited_copy_fits_and_the_shared_fit_is_unchanged() -> None:
    pf = _shared()
    data = lmf.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.lmer(SLEEP, data)
        # the package itself never writes into the shared array: a second fit is the same
        m2 = lmf.lmer(SLEEP, data)
    assert not m.lformula.X_values.flags.writeable
    assert np.array_equal(m.theta, m2.theta) and np.array_equal(m.fixef, m2.fixef)
    X = pf.X_values.copy()
    X[:, 1] *= 2.0  # Days in half-days: the slope halves, the random-effects Z unchanged
    edited = dataclasses.replace(pf, X_values=X)
    dev = lmf.mkLmerDevfun(edited)
    opt = lmf.optimizeLmer(dev)
    fit = lmf.mkMerMod(dev, opt, edited)
    np.testing.assert_allclose(fit.fixef.iloc[1] * 2.0, m.fixef.iloc[1], rtol=1e-6)
    np.testing.assert_allclose(fit.theta, m.theta, rtol=1e-5)
