"""Loading the sweep fixtures (tests/fixtures/sweep/*.json, tools/R/make_fixtures_sweep.R):
the data with R's column types, the call, and fitting it here as the R script fitted it."""

from __future__ import annotations

import json
import re
import warnings
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from cases import FIXTURES
from fit_accuracy import at_point

import lmeformula as lmf

SWEEP = FIXTURES / "sweep"
NAMES = sorted(p.stem for p in SWEEP.glob("*.json"))


@cache
def fixture(name: str) -> dict[str, Any]:
    return json.loads((SWEEP / f"{name}.json").read_text())  # type: ignore[no-any-return]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def close(ours: Any, theirs: Any, rtol: float, atol: float) -> None:
    """Assert ``ours`` equals lme4's value (a JSON number, list or matrix; None is NA)."""
    ref = np.array([np.nan if v is None else v for v in as_list(theirs)], dtype=float) \
        if not (isinstance(theirs, list) and theirs and isinstance(theirs[0], list)) \
        else np.array(theirs, dtype=float)
    np.testing.assert_allclose(np.asarray(ours, dtype=float).ravel(), ref.ravel(), rtol=rtol,
                               atol=atol, equal_nan=True)


def close_ranef(m: Any, ref_ranef: dict[str, Any], rtol: float, atol: float) -> Any:
    """Assert ``m.ranef(condVar=True)`` has lme4's groups, row and column names and values;
    returns it (the conditional variances are compared by the callers)."""
    re_ = m.ranef(condVar=True)
    assert list(re_) == list(ref_ranef)
    for grp, ref in ref_ranef.items():
        df = re_[grp]
        assert [str(i) for i in df.index] == as_list(ref["rownames"])
        assert list(df.columns) == as_list(ref["colnames"])
        close(df.to_numpy().ravel(order="F"), np.array(ref["values"]).T.ravel(), rtol=rtol,
              atol=atol)
    return re_


def printed_values(fx: dict[str, Any], scaled: np.ndarray, criterion: float) -> np.ndarray:
    """R's unrounded numbers behind a fixture's printed lmer output: β, standard errors, t,
    correlations, the quantiles of the scaled residuals ``scaled`` (R's type 7, NumPy's
    default), variances, SDs and correlations of the random effects, σ, the likelihoods
    and the fixture's ``criterion`` (its REML criterion or deviance)."""
    beta = np.array(as_list(fx["beta"]), dtype=float)
    vcov = np.array(fx["vcov"], dtype=float).reshape(beta.size, beta.size)
    se = np.sqrt(np.diag(vcov))
    return np.concatenate([
        beta, se, beta / se, (vcov / np.outer(se, se)).ravel(),
        np.nanquantile(scaled, [0, 0.25, 0.5, 0.75, 1]),
        np.array(as_list(fx["varcorr"]["vcov"]), float),
        np.array(as_list(fx["varcorr"]["sdcor"]), float),
        [fx["sigma"], fx["logLik"], fx["AIC"], fx["BIC"], criterion]])


def na_floats(values: Any) -> np.ndarray:
    """A fixture's numbers with R's NA (None) as NaN."""
    return np.array([np.nan if v is None else v for v in as_list(values)], dtype=float)


def close_coef(m: Any, ref_coef: dict[str, Any], rtol: float, atol: float) -> None:
    """Assert ``coef(m)`` has lme4's groups, column and row names and values."""
    co = lmf.coef(m)
    assert list(co) == list(ref_coef)
    for grp, ref in ref_coef.items():
        assert list(co[grp].columns) == as_list(ref["colnames"])
        assert [str(i) for i in co[grp].index] == as_list(ref["rownames"])
        close(co[grp].to_numpy().ravel(order="F"), np.array(ref["values"]).T.ravel(),
              rtol=rtol, atol=atol)


def close_glmm_new_levels(m: Any, fx: dict[str, Any], newdata: pd.DataFrame) -> None:
    """Assert a GLMM's predictions on ``newdata`` with its random effects (new levels
    allowed) are lme4's, on the link and the response scales."""
    close(m.predict(newdata=newdata, allow_new_levels=True), fx["predict_newdata"],
          rtol=1e-5, atol=1e-7)
    close(m.predict(newdata=newdata, allow_new_levels=True, type="response"),
          fx["predict_newdata_response"], rtol=1e-5, atol=1e-7)


def close_glmm_estimates(m: Any, fx: dict[str, Any], theta_atol: float) -> None:
    """Assert a GLMM's estimates, likelihoods and structures are lme4's (the glmer sweeps'
    fixtures), θ to ``theta_atol`` absolute."""
    close(m.theta, fx["theta"], rtol=1e-4, atol=theta_atol)
    close(m.fixef, fx["beta"], rtol=1e-5, atol=1e-6)
    assert list(m.fixef.index) == as_list(fx["fixef_names"])
    close(m.logLik().value, fx["logLik"], rtol=1e-9, atol=0)
    assert m.logLik().df == fx["df"]
    close(m.AIC(), fx["AIC"], rtol=1e-9, atol=0)
    close(m.BIC(), fx["BIC"], rtol=1e-9, atol=0)
    # Σ squared deviance residuals moves with the estimates
    close(m.deviance(), fx["deviance"], rtol=1e-6, atol=0)
    close(m.sigma, fx["sigma"], rtol=1e-5, atol=0)
    assert m.df_residual == fx["df_residual"]
    assert m.nobs == fx["nobs"]
    assert m.isSingular() == fx["isSingular"]
    assert [list(c) for c in lmf.getME(m, "cnms")] == [as_list(c) for c in fx["cnms"].values()]
    assert list(lmf.getME(m, "Zt").shape) == fx["Zt_dim"]
    assert list(lmf.getME(m, "X").columns) == as_list(fx["X_colnames"])


def frame_of(columns: list[dict[str, Any]]) -> pd.DataFrame:
    """A DataFrame with R's column types: factors (ordered ones too) as categoricals with R's
    levels (unused ones kept), logicals as bool (object with None when NA), numerics with NaN for NA."""
    out: dict[str, Any] = {}
    for col in columns:
        vals = as_list(col["values"])
        kind = col["type"]
        if kind in ("factor", "ordered"):
            out[col["name"]] = pd.Categorical(vals, categories=as_list(col["levels"]),
                                              ordered=kind == "ordered")
        elif kind == "logical":
            out[col["name"]] = (pd.array(vals, dtype="boolean") if None in vals
                                else np.array(vals, dtype=bool))
        elif kind == "character":
            out[col["name"]] = pd.Series(vals, dtype=object)
        else:
            out[col["name"]] = np.array([np.nan if v is None else v for v in vals], dtype=float)
    return pd.DataFrame(out)


def data_of(name: str) -> pd.DataFrame:
    return frame_of(fixture(name)["columns"])


def kwargs_of(name: str) -> dict[str, Any]:
    fx = fixture(name)
    args = fx["args"] if isinstance(fx["args"], dict) else {}
    kw: dict[str, Any] = dict(fx["py"]) if isinstance(fx["py"], dict) else {}
    if "nAGQ" in args:
        kw["nAGQ"] = args["nAGQ"]
    if "REML" in args:
        kw["REML"] = args["REML"]
    return kw


def is_glmm(name: str) -> bool:
    return fixture(name).get("family") is not None


def family_of(name: str) -> lmf.Family:
    fx = fixture(name)
    return getattr(lmf, fx["family"].replace(".", "_"))(link=fx["link"])  # type: ignore[no-any-return]


def fit_now(name: str) -> Any:
    """Fit the fixture's model as the R script did (warnings go to the caller)."""
    fx = fixture(name)
    kw = kwargs_of(name)
    d = data_of(name)
    if is_glmm(name):
        return lmf.glmer(fx["formula"], d, family=family_of(name), data_name=fx["data_name"],
                         **kw)
    return lmf.lmer(fx["formula"], d, data_name=fx["data_name"], **kw)


@cache
def fit_and_warnings(name: str) -> tuple[Any, tuple[str, ...]]:
    """The fit (cached) and the messages of the warnings it raised."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        m = fit_now(name)
    return m, tuple(str(w.message) for w in seen)


def fit(name: str) -> Any:
    return fit_and_warnings(name)[0]


def r_warnings(name: str) -> list[str]:
    """R's warnings and messages (a message prefixed "message: ")."""
    w = fixture(name).get("warnings")
    return as_list(w) if w else []


@cache
def fit_at_lme4(name: str) -> lmf.LmerMod:
    """The fit moved to lme4's optimum, (θ, β) for a GLMM, on its own deviance function
    (:func:`fit_accuracy.at_point`): what this package reports at lme4's point (PIRLS there,
    the finite-difference derivatives and the Hessian-based vcov, the convergence checks,
    the printed summary), independent of where the optimizers stop within their tolerance."""
    fx = fixture(name)
    optimised_beta = is_glmm(name) and kwargs_of(name).get("nAGQ", 1) > 0
    return at_point(fit(name), as_list(fx["theta"]),
                    as_list(fx["beta"]) if optimised_beta else None)


def assert_identical_fits(a: lmf.LmerMod, b: lmf.LmerMod) -> None:
    """The two models are one fit, bit for bit: the optimizer record (point, criterion,
    derivatives, convergence checks, counts), the estimates and the printed summary."""
    oa, ob = a.optinfo, b.optinfo
    np.testing.assert_array_equal(oa.par, ob.par)
    assert (oa.fval, oa.conv, oa.message, oa.feval, oa.lme4) == \
        (ob.fval, ob.conv, ob.message, ob.feval, ob.lme4)
    assert (oa.derivs is None) == (ob.derivs is None)
    if oa.derivs is not None and ob.derivs is not None:
        np.testing.assert_array_equal(oa.derivs.gradient, ob.derivs.gradient)
        np.testing.assert_array_equal(oa.derivs.Hessian, ob.derivs.Hessian)
    np.testing.assert_array_equal(a.fixef, b.fixef)
    np.testing.assert_array_equal(a.vcov().to_numpy(), b.vcov().to_numpy())
    assert a.sigma == b.sigma
    assert str(a.summary()) == str(b.summary())


def r_call_kwargs(args: Any) -> dict[str, Any]:
    """lmer's keyword arguments from a fixture's R call arguments (R text: ``REML = FALSE``,
    ``weights = w``, ``na.action = na.exclude``, ``contrasts = list(fc = "contr.sum")``,
    ``subset = fo != 'top'``, ``control = lmerControl(optimizer = "Nelder_Mead")``)."""
    kw: dict[str, Any] = {}
    for key, value in (args.items() if isinstance(args, dict) else ()):
        if key == "REML":
            kw["REML"] = value == "TRUE"
        elif key in ("weights", "offset", "subset"):
            kw[key] = value
        elif key == "na.action":
            kw["na_action"] = value.removeprefix("na.")
        elif key == "contrasts":
            kw["contrasts"] = dict(re.findall(r'(\w+) = "([\w.]+)"', value))
        elif key == "control":
            optimizer = re.fullmatch(r'lmerControl\(optimizer = "(\w+)"\)', value)
            assert optimizer is not None, value
            kw["control"] = {"optimizer": optimizer[1]}
    return kw
