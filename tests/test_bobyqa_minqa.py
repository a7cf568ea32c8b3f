"""lmeformula.bobyqa against minqa 1.2.5's BOBYQA (Powell's Fortran), point for point.

tests/fixtures/minqa_bobyqa.json (tools/R/make_fixtures_minqa.R) holds every point at which
``minqa::bobyqa`` evaluated the objective, with the values, on test problems (Rosenbrock in
2-5 dimensions with and without bounds, a box-constrained quadratic, one parameter, seven
parameters with θ-like bounds, npt other than the default, rhobeg/rhoend/maxfun given,
maxfun reached, maxfun below npt, NA and Inf values) and on lme4's glmer first-stage
deviance functions. The port is run on an objective that returns R's value for each call
and checks that the point asked for is R's point, bit for bit: the same arithmetic in the
same order gives the same doubles, so any difference is a port bug, not round-off.
"""

from __future__ import annotations

import json
import math
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
        import warnings

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
