"""lme4's bounded Nelder-Mead (lmeformula.neldermead): stopping rules, bounds and NaN values.

glmer's fixture tests pin its path on real models (evaluation counts equal to lme4's); these
check the rules on small functions where the answer is known.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmeformula.errors import FittingError
from lmeformula.neldermead import nelder_mead


def _quad(x: np.ndarray) -> float:
    return float((x[0] - 1.0) ** 2 + 2.0 * (x[1] + 0.5) ** 2 + 0.5 * x[0] * x[1])


def test_converges_to_the_minimum_within_the_tolerance() -> None:
    xst = np.full(2, 0.2)
    res = nelder_mead(_quad, np.zeros(2), np.full(2, -np.inf), np.full(2, np.inf), xst,
                      xst * 1e-6)
    # the minimum of the quadratic: grad = 0
    want = np.linalg.solve([[2.0, 0.5], [0.5, 4.0]], [2.0, -2.0])
    np.testing.assert_allclose(res.par, want, atol=1e-5)
    assert res.code == 3 and res.fval == pytest.approx(_quad(want), abs=1e-10)


def test_every_point_within_the_bounds_and_the_best_returned() -> None:
    seen: list[np.ndarray] = []

    def fn(x: np.ndarray) -> float:
        seen.append(x.copy())
        return _quad(x)

    lower, upper = np.array([-np.inf, 0.0]), np.array([0.5, np.inf])
    res = nelder_mead(fn, np.array([0.2, 0.3]), lower, upper, np.full(2, 0.2),
                      np.full(2, 1e-7))
    pts = np.array(seen)
    assert np.all(pts >= lower) and np.all(pts <= upper)
    assert res.feval == len(seen)
    values = [_quad(p) for p in seen]
    assert res.fval == min(values)
    np.testing.assert_array_equal(res.par, seen[int(np.argmin(values))])
    assert res.par[0] == pytest.approx(0.5) and res.par[1] == pytest.approx(0.0)


def test_maxfun_and_minf_max_stop_with_lme4s_codes() -> None:
    start, steps = np.zeros(2), np.full(2, 0.2)
    inf = np.full(2, np.inf)
    res = nelder_mead(_quad, start, -inf, inf, steps, steps * 1e-9, maxfun=20)
    assert res.code == 4 and res.feval == 21  # lme4 counts the evaluation past the limit
    res = nelder_mead(_quad, start, -inf, inf, steps, steps * 1e-9, minf_max=0.5)
    assert res.code == 1 and res.fval < 0.5


def test_nan_values_are_never_returned_as_the_best() -> None:
    def fn(x: np.ndarray) -> float:
        return float("nan") if x[0] > 0.15 else _quad(x)

    inf = np.full(2, np.inf)
    res = nelder_mead(fn, np.zeros(2), -inf, inf, np.full(2, 0.2), np.full(2, 1e-6))
    assert np.isfinite(res.fval) and res.par[0] <= 0.15


def test_an_infeasible_start_is_refused() -> None:
    with pytest.raises(FittingError, match="feasible"):
        nelder_mead(_quad, np.array([-1.0, 0.0]), np.zeros(2), np.full(2, np.inf),
                    np.full(2, 0.2), np.full(2, 1e-6))
