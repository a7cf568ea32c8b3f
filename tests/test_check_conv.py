"""lme4's convergence checks (checkConv, checkHess) on given derivatives, against what lme4
1.1-31 returned and signalled for the same inputs (tools/R/make_fixtures_checkconv.R)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lmeformula.control import LmerControl, as_control
from lmeformula.errors import ConvergenceWarning, LmeFormulaError, SingularFitWarning
from lmeformula.optimize import Derivs, Lme4Conv, check_conv

CASES = json.loads((Path(__file__).parent / "fixtures" / "checkconv.json").read_text())["cases"]


def _control(case: dict[str, Any]) -> LmerControl:
    options: dict[str, Any] = {}
    for key, name in (("grad", "check.conv.grad"), ("hess", "check.conv.hess"),
                      ("singular", "check.conv.singular")):
        if case[key]:
            options[name] = case[key]
    return as_control(options)


def _run(case: dict[str, Any]) -> tuple[Lme4Conv | None, str | None, list[tuple[str, str]]]:
    derivs = None if case["gradient"] is None else Derivs(
        np.array(case["gradient"], dtype=float),
        np.array(case["hessian"], dtype=float))
    par = np.array(case["coefs"], dtype=float)
    lower = np.array([-np.inf if b is None else b for b in case["lbound"]], dtype=float)
    ctrl = _control(case)
    # lme4's message() for a singular fit is the package's SingularFitWarning
    as_message = ctrl.check_conv_singular[0] == "message"
    result, error = None, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = check_conv(derivs, par, lower, ctrl)
        except LmeFormulaError as exc:
            error = str(exc)
    signalled = [("message" if as_message and issubclass(w.category, SingularFitWarning)
                  else "warning", str(w.message)) for w in caught]
    kinds = {w.category for w in caught}
    assert kinds <= {ConvergenceWarning, SingularFitWarning}
    return result, error, signalled


def _assert_as_lme4(case: dict[str, Any], result: Any, error: Any, signalled: Any) -> None:
    """lme4's error, warnings, messages and codes for ``case``."""
    assert error == case["error"]
    assert signalled == [(s["kind"], s["text"]) for s in case["signalled"]]
    if error is None:
        assert result is not None
        assert list(result.messages) == case["messages"]
        assert list(result.code) == [int(c) for c in case["code"]]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_check_conv_as_lme4(case: dict[str, Any]) -> None:
    _assert_as_lme4(case, *_run(case))


def test_rel_tol_from_lme4_style_dict() -> None:
    ctrl = as_control({"check.conv.grad": {"action": "warning", "tol": 2e-3, "relTol": 0.5}})
    assert ctrl.check_conv_grad == ("warning", 2e-3)
    assert ctrl.check_conv_grad_relTol == 0.5
    with pytest.raises(ValueError, match="relTol"):
        as_control({"check.conv.grad": {"relTol": -1}})



def _has_no_cholesky(case: dict[str, Any]) -> bool:
    if case["hessian"] is None:
        return False
    try:
        np.linalg.cholesky(np.array(case["hessian"], dtype=float))
    except np.linalg.LinAlgError:
        return True
    return False


NON_PD = [c for c in CASES if _has_no_cholesky(c)]


def test_fixtures_have_hessians_without_cholesky_factor() -> None:
    assert {"gradient_nonpd", "negative_eigenvalue", "two_negative"} <= {
        c["name"] for c in NON_PD}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_hessian_factored_at_most_once(case: dict[str, Any],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # the gradient and Hessian checks share one Cholesky factorisation of the Hessian, a
    # failed one included (not tried again on the failure path), with lme4's messages
    calls: list[int] = []
    real = np.linalg.cholesky

    def counting(a: np.ndarray) -> np.ndarray:
        calls.append(1)
        return real(a)

    monkeypatch.setattr(np.linalg, "cholesky", counting)
    result, error, signalled = _run(case)
    assert len(calls) <= 1
    if case in NON_PD:
        assert len(calls) == 1
    _assert_as_lme4(case, result, error, signalled)
