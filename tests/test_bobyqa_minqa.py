"""lmeformula.bobyqa against minqa 1.2.5's BOBYQA (Powell's Fortran), point for point.

tests/fixtures/minqa_bobyqa.json (tools/R/make_fixtures_minqa.R) holds every point at which
``minqa::bobyqa`` evaluated the objective, with the values, on test problems (Rosenbrock in
2-5 dimensions with and without bounds, a box-constrained quadratic started on and near its
bounds, minima on lower and upper bounds, one parameter, 7 and 12 parameters with θ-like
bounds, a piecewise-constant function that makes BOBYQA replace its model, npt other than
the default, rhobeg/rhoend/maxfun given, maxfun reached, maxfun below npt, NA and Inf
values), on lme4's glmer first-stage deviance
functions, and in lme4's own fits (every call lmer and glmer make, traced: optimizer =
"bobyqa" for sleepstudy and Penicillin, both glmer stages of cbpp, glmer's default first stage
on cbpp and grouseticks). The port is run on an objective that returns R's value for each
call and checks that the point asked for is R's point, bit for bit: the same arithmetic in
the same order gives the same doubles, so any difference is a port bug, not round-off.
"""

from __future__ import annotations

import json
import math
import warnings
from functools import cache
from typing import Any

import numpy as np
import pytest
from cases import FIXTURES

from lmeformula.bobyqa import bobyqa, minqa_npt


@cache
def fixture() -> dict[str, Any]:
    return json.loads((FIXTURES / "minqa_bobyqa.json").read_text())  # type: ignore[no-any-return]


def _num(s: str | None) -> float:
    """A number as the R script writes it: C99 hexadecimal, "Inf", "-Inf", or null (NA)."""
    if s is None:
        return math.nan
    return {"Inf": math.inf, "-Inf": -math.inf}.get(s) or float.fromhex(s)


def _nums(v: list[str | None] | str) -> list[float]:
    return [_num(s) for s in (v if isinstance(v, list) else [v])]


def _case(name: str) -> dict[str, Any]:
    return next(c for c in fixture()["cases"] if c["name"] == name)


NAMES = [c["name"] for c in fixture()["cases"]]


class Replay:
    """R's recorded values, returned in order, each after checking that the point asked for
    is the point R evaluated."""

    def __init__(self, case: dict[str, Any]) -> None:
        self.points = [_nums(p) for p in case["points"]]
        self.values = _nums(case["values"])
        self.calls = 0

    def __call__(self, x: np.ndarray) -> float:
        i = self.calls
        assert i < len(self.points), f"evaluation {i + 1}: R made only {len(self.points)}"
        assert x.tolist() == self.points[i], (
            f"evaluation {i + 1}: {x.tolist()!r} where minqa evaluated {self.points[i]!r}")
        self.calls += 1
        return self.values[i]  # (NA, Inf: the port's calfun replaces them, as minqa's)


def _run(case: dict[str, Any], fn: Any) -> Any:
    ctrl = case["control"] or {}
    with pytest.warns() if case["warnings"] else _no_warning():
        return bobyqa(fn, _nums(case["par0"]), _nums(case["lower"]), _nums(case["upper"]),
                      npt=ctrl.get("npt"), rhobeg=ctrl.get("rhobeg"),
                      rhoend=ctrl.get("rhoend"), maxfun=ctrl.get("maxfun", 10000))


class _no_warning:
    def __enter__(self) -> None:
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


@pytest.mark.parametrize("name", NAMES)
def test_same_points_as_minqa(name: str) -> None:
    case = _case(name)
    replay = Replay(case)
    res = _run(case, replay)
    # checkObj, the Fortran's evaluations, rval's: every point, none more
    assert replay.calls == len(replay.points)
    assert res.feval == case["feval"]
    assert res.par.tolist() == _nums(case["par"])
    assert res.fval == _num(case["fval"]) or (math.isnan(res.fval)
                                              and math.isnan(_num(case["fval"])))
    assert res.ierr == case["ierr"]
    assert res.msg == case["msg"]


def test_fixture_covers_the_cases_the_port_must_meet() -> None:
    cases = {c["name"]: c for c in fixture()["cases"]}
    assert {c["n"] for c in cases.values()} >= {1, 2, 3, 4, 5, 7}
    assert any(c["ierr"] == 1 for c in cases.values())  # maxfun reached
    assert sum(name.startswith("glmer_") for name in cases) >= 5
    # lme4 runs minqa with its default npt = n + 2
    assert all("npt" not in (c["control"] or {}) for n, c in cases.items()
               if n.startswith(("glmer_", "lmer_")))
    # NA and Inf values reach the port (as the largest double)
    for name in ("holes_nonfinite", "edge_nonfinite"):
        assert any(v is None or v == "Inf" for v in cases[name]["values"])


def test_minqa_npt() -> None:
    # minqa:::commonArgs: min(n + 2, 2n), at least n + 2, at most (n + 1)(n + 2)/2
    assert [minqa_npt(n) for n in (1, 2, 3, 10)] == [3, 4, 5, 12]
    assert minqa_npt(3, 7) == 7 and minqa_npt(3, 100) == 10 and minqa_npt(3, 1) == 5


# -- RESCUE ----------------------------------------------------------------------------------
# No fixture reaches RESCUE (it runs only when rounding errors have damaged a denominator),
# and minqa's cannot be compared: it evaluates the objective at an undefined point (see
# lmeformula/bobyqa.py). So RESCUE is checked against what it must leave: interpolation
# conditions that hold, for H (BMAT and ZMAT: each Lagrange function is 1 at its point and 0
# at the others) and for the model (it interpolates every point, new ones included).


def _rosen(x: np.ndarray) -> float:
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def _state_mid_run(npt: int | None, maxfun: int) -> Any:
    """BOBYQB's arrays after ``maxfun`` evaluations on Rosenbrock in 3 dimensions."""
    import lmeformula.bobyqa as b

    seen: dict[str, Any] = {}
    trsbox = b.trsbox

    def spy(m: Any, *args: Any) -> Any:
        seen["m"] = m
        return trsbox(m, *args)

    b.trsbox = spy  # type: ignore[assignment]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (maxfun < 10 n², npt > 2n + 1 not recommended)
            b.bobyqa(_rosen, [-1.2, 1.0, 1.5], npt=npt, maxfun=maxfun)
    finally:
        b.trsbox = trsbox  # type: ignore[assignment]
    return seen["m"]


@pytest.mark.parametrize("npt", [None, 7, 10])
@pytest.mark.parametrize("maxfun", [30, 60])
def test_rescue_rebuilds_a_valid_interpolation_system(npt: int | None, maxfun: int) -> None:
    import lmeformula.bobyqa as b

    m = _state_mid_run(npt, maxfun)
    kopt = int(np.argmin(m.fval))
    calfun = b._Calfun(_rosen)
    inf = [math.inf] * m.n
    nf, kopt2 = b.rescue(m, [-v for v in inf], inf, 10**6, 0, 0.1, kopt, [0.0] * m.ndim,
                         calfun)
    assert nf == calfun.count > 0  # provisional points kept, and evaluated
    k = kopt2
    X = np.array(m.xpt)
    assert not X[k].any() and not np.any(m.xopt)  # XBASE moved to the best point
    # H: l_j(x_i) - l_j(x_kopt) = δ_ij - δ_j,kopt, with l_j's gradient BMAT(j,.) and second
    # derivatives sum_k (Z Zᵀ)_jk x_k x_kᵀ
    Z = np.array(m.zmat)
    lag = np.array(m.bmat)[: m.npt] @ X.T + 0.5 * (Z @ Z.T) @ (X @ X.T) ** 2
    np.testing.assert_allclose(lag, np.eye(m.npt) - np.eye(m.npt)[:, [k]], atol=1e-10)
    # the model: Q(x_i) - Q(x_kopt) = F(x_i) - F(x_kopt) at every point
    H = np.zeros((m.n, m.n))
    ih = 0
    for j in range(m.n):
        for i in range(j + 1):
            H[i, j] = H[j, i] = m.hq[ih]
            ih += 1
    H += (X.T * np.array(m.pq)) @ X
    q = X @ np.array(m.gopt) + 0.5 * np.einsum("ki,ij,kj->k", X, H, X)
    np.testing.assert_allclose(q, np.array(m.fval) - m.fval[k],
                               atol=1e-8 * max(map(abs, m.fval)))


# -- lme4's bobyqa (optimize.minqa_bobyqa): optwrap's settings around minqa's -------------------

def test_lme4s_bobyqa_wrapper() -> None:
    from lmeformula.errors import FittingError, LmeFormulaWarning
    from lmeformula.optimize import minqa_bobyqa

    seen: list[list[float]] = []

    def fn(x: np.ndarray) -> float:
        seen.append(x.tolist())
        return float((x[0] - 0.3) ** 2 + (x[1] - 0.2) ** 2)

    # optwrap's "minor kludge": x0 = 0 starts at 0.001 (rhobeg 2e-4); minqa evaluates there
    # first (checkObj), then the Fortran does, counted from there
    par, fval, conv, msg, feval = minqa_bobyqa(fn, np.zeros(2), np.zeros(2), {})
    assert seen[0] == seen[1] == [0.001, 0.001]
    assert seen[2] == [0.001 + 2e-4, 0.001]
    assert (conv, msg) == (0, "Normal exit from bobyqa") and feval == len(seen) - 2
    np.testing.assert_allclose(par, [0.3, 0.2], atol=1e-9)
    assert fval == fn(par)
    # maxfun reached: lme4's convergence code 1 with minqa's message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (maxfun < 10 n² is not recommended)
        out = minqa_bobyqa(fn, np.ones(2), np.full(2, -np.inf), {"maxfun": 12})
    assert out[2:] == (1, "bobyqa -- maximum number of function evaluations exceeded", 12)
    # options minqa does not take are ignored with its warning
    with pytest.warns(LmeFormulaWarning, match="unused control arguments ignored"):
        minqa_bobyqa(fn, np.ones(2), np.zeros(2), {"xst": 0.1})
    # a start outside the bounds is minqa's error (lme4 passes it on)
    with pytest.raises(FittingError, match="Starting values violate bounds"):
        minqa_bobyqa(fn, np.array([-1.0, 1.0]), np.zeros(2), {})


@pytest.mark.parametrize("name", [n for n in NAMES if _case(n)["n"] >= 7])
@pytest.mark.parametrize("numpy_from", [1, 10**6])
def test_both_ways_of_multiplying_by_the_hessian(name: str, numpy_from: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # TRSBOX's products in numpy (cumulative sums) or in loops: minqa's points either way
    import lmeformula.bobyqa as b

    monkeypatch.setattr(b, "_NUMPY_FROM", numpy_from)
    case = _case(name)
    replay = Replay(case)
    res = _run(case, replay)
    assert replay.calls == len(replay.points) and res.par.tolist() == _nums(case["par"])
