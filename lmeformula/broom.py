"""Tidy frames of a fitted model with broom.mixed's conventions: ``tidy``, ``glance``, ``augment``.

The columns, their names, their order and the order of the rows are broom.mixed's (0.2.9):

- ``tidy``: ``effect``, ``group``, ``level``, ``term``, ``estimate``, ``std.error``,
  ``statistic``, ``df``, ``p.value``, ``conf.low``, ``conf.high`` (those that apply), fixed
  effects first, then variance parameters, conditional modes and coefficients whatever the
  order of ``effects``;
- ``glance``: ``nobs``, ``sigma``, ``logLik``, ``AIC``, ``BIC``, ``REMLcrit`` (REML fits) or
  ``deviance``, ``df.residual``;
- ``augment``: the model frame (or the data given), then ``.fitted``, ``.resid``, ``.hat``,
  ``.cooksd``, ``.fixed``, ``.mu``, ``.offset``, ``.sqrtXwt``, ``.sqrtrwt``, ``.weights``,
  ``.wtres``.

Everything is read through the model's public accessors (``summary().coefficients``,
``VarCorr``, ``ranef``, ``coef``, ``confint``, ``getME``...), so another model class with the
same accessors (a GLMM's summary table with ``z value`` and ``Pr(>|z|)``, a ``VarCorr`` without
a residual row) gets the same treatment; a model class can supply its own response columns for
``augment`` through a ``_broom_response()`` method (see :func:`augment`).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg as la
import scipy.sparse as sp
from scipy import stats

from .dataframe import as_pandas
from .ddf import coef_table
from .errors import LmeFormulaError, LmeFormulaWarning
from .validate import model_functions

__all__ = ["augment", "glance", "tidy"]

EFFECTS = ("fixed", "ran_pars", "ran_vals", "ran_coefs")
# broom.mixed's reorder_cols: the columns a tidy frame may have, in their order
_TIDY_COLUMNS = ("response", "effect", "component", "group", "level", "term", "index",
                 "estimate", "std.error", "statistic", "df", "p.value", "conf.low",
                 "conf.high")
# broom's rename_regex_match: summary-table column -> tidy name
_RENAMES = (
    (re.compile(r"^(Estimate|Value)$"), "estimate"),
    (re.compile(r"Std\. ?Error"), "std.error"),
    (re.compile(r"^df$"), "df"),
    (re.compile(r"(t|Z|z)[ -]?value"), "statistic"),
    (re.compile(r"(Pr\(>\|[tZz]\|\)|p[ -]?value)"), "p.value"),
)


def _rename_coefficients(table: pd.DataFrame) -> pd.DataFrame:
    names = {}
    for col in table.columns:
        for pattern, new in _RENAMES:
            if pattern.search(str(col)):
                names[col] = new
                break
    out = table.rename(columns=names)
    out.insert(0, "term", [str(i) for i in table.index])
    return out.reset_index(drop=True)


def _as_effects(effects: str | Sequence[str]) -> list[str]:
    wanted = [effects] if isinstance(effects, str) else list(effects)
    unknown = [e for e in wanted if e not in EFFECTS]
    if unknown:
        raise LmeFormulaError(f"unknown effect type {', '.join(map(repr, unknown))}: use "
                              f"{', '.join(map(repr, EFFECTS))}")
    return wanted


class _Intervals:
    """lme4's ``confint`` computed once per ``tidy`` call (broom.mixed calls it per effect)."""

    def __init__(self, m: Any, method: str, level: float, options: dict[str, Any]) -> None:
        if method not in ("Wald", "profile", "boot"):
            raise LmeFormulaError(
                f"unknown conf_method {method!r}: use 'Wald', 'profile' or 'boot'")
        self.m, self.method, self.level, self.options = m, method, level, options
        self._table: pd.DataFrame | None = None

    def table(self) -> pd.DataFrame:
        if self._table is None:
            from .inference import confint

            self._table = confint(self.m, level=self.level, method=self.method,
                                  **self.options)
        return self._table

    def fixed(self, n_fixed: int) -> np.ndarray:
        """The last ``n_fixed`` rows (lme4's ``parm = "beta_"``)."""
        values = self.table().to_numpy(dtype=float)
        return values[values.shape[0] - n_fixed :] if n_fixed else values[:0]

    def variance(self, n_fixed: int) -> np.ndarray:
        """The rows before the fixed effects (lme4's ``parm = "theta_"``)."""
        values = self.table().to_numpy(dtype=float)
        return values[: values.shape[0] - n_fixed]


def _coefficients(m: Any, ddf_method: str | None) -> pd.DataFrame:
    """``coef(summary(m))``, or lmerTest's table with ``df`` and ``Pr(>|t|)`` for a
    denominator-degrees-of-freedom method (:func:`lmeformula.coef_table`)."""
    if ddf_method is None:
        return m.summary().coefficients
    return coef_table(m, ddf=ddf_method)


def _tidy_fixed(m: Any, ci: _Intervals | None, exponentiate: bool,
                ddf_method: str | None = None) -> pd.DataFrame:
    ret = _rename_coefficients(_coefficients(m, ddf_method))
    if ci is not None and ddf_method is not None and ci.method == "Wald":
        # broom.mixed's cifun with a ddf.method: t quantiles on the table's df
        df = ret["df"].to_numpy(dtype=float) if "df" in ret else np.inf
        mult = stats.t.ppf((1 + ci.level) / 2, df)
        ret["conf.low"] = ret["estimate"] - mult * ret["std.error"]
        ret["conf.high"] = ret["estimate"] + mult * ret["std.error"]
    elif ci is not None:
        if ddf_method is not None:
            warnings.warn('ddf_method ignored when conf_method != "Wald"', LmeFormulaWarning,
                          stacklevel=3)
        bounds = ci.fixed(len(ret))
        ret["conf.low"], ret["conf.high"] = bounds[:, 0], bounds[:, 1]
    if exponentiate:
        for col in ("estimate", "conf.low", "conf.high"):
            if col in ret:
                ret[col] = np.exp(ret[col].to_numpy(dtype=float))
        if "std.error" in ret:
            ret["std.error"] = ret["std.error"] * ret["estimate"]
    return ret


def _ran_pars_name(var1: Any, var2: Any, prefix: tuple[str, str] | None) -> str:
    """broom.mixed's ``ran_pars_name``: ``sd__x``, ``cor__x.y``, ``sd__Observation``."""
    parts = [str(v) for v in (var1, var2) if v is not None and not pd.isna(v)]
    if not parts:
        parts = ["Observation"]
    text = ".".join(parts)
    return text if prefix is None else f"{prefix[len(parts) - 1]}__{text}"


def _tidy_ran_pars(m: Any, scale: str, ran_prefix: tuple[str, str] | None,
                   ci: _Intervals | None, n_fixed: int) -> pd.DataFrame:
    if scale not in ("sdcor", "vcov"):
        raise LmeFormulaError(f"unrecognized ran_pars scale {scale!r}: use 'sdcor' or 'vcov'")
    vc = m.VarCorr.as_data_frame(order="lower.tri")
    prefix = ran_prefix or (("sd", "cor") if scale == "sdcor" else ("var", "cov"))
    terms = [_ran_pars_name(a, b, prefix) for a, b in zip(vc["var1"], vc["var2"], strict=True)]
    ret = pd.DataFrame({"group": vc["grp"].astype(object).to_numpy(), "term": terms,
                        "estimate": vc[scale].to_numpy(dtype=float)})
    if ci is not None:
        # positionally, as broom.mixed does: lme4 lists the variance parameters in the same
        # order (and on the sd/cor scale whatever ``scales`` says)
        bounds = ci.variance(n_fixed)
        if bounds.shape[0] != len(ret):
            raise LmeFormulaError("confint() returned a different number of variance "
                                  "parameters than VarCorr() has")
        ret["conf.low"], ret["conf.high"] = bounds[:, 0], bounds[:, 1]
    return ret


def _condsd_blocks(df: pd.DataFrame) -> np.ndarray:
    """Conditional standard deviations (levels x columns) from ranef's ``postVar``."""
    post = df.attrs.get("postVar")
    if post is None:
        return np.full(df.shape, np.nan)
    arrays = post if isinstance(post, list) else [post]
    return np.hstack([np.sqrt(np.diagonal(a, axis1=1, axis2=2)) for a in arrays])


def _tidy_ran_vals(m: Any, ci_level: float | None, method: str) -> pd.DataFrame:
    """R's ``as.data.frame(ranef(m, condVar = TRUE))``: factor by factor, column by column,
    level by level."""
    if ci_level is not None and method != "Wald":
        raise LmeFormulaError("only Wald CIs available for conditional modes")
    rows: list[pd.DataFrame] = []
    for group, df in m.ranef(condVar=True).items():
        sd = _condsd_blocks(df)
        nl, nc = df.shape
        rows.append(pd.DataFrame({
            "group": [group] * (nl * nc),
            "term": np.repeat([str(c) for c in df.columns], nl),
            "level": [str(lev) for lev in df.index] * nc,
            "estimate": df.to_numpy(dtype=float).T.ravel(),
            "std.error": sd.T.ravel(),
        }))
    ret = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["group", "term", "level", "estimate", "std.error"])
    if ci_level is not None:
        mult = stats.norm.ppf((1 + ci_level) / 2)
        ret["conf.low"] = ret["estimate"] - mult * ret["std.error"]
        ret["conf.high"] = ret["estimate"] + mult * ret["std.error"]
    return ret


def _tidy_ran_coefs(m: Any, conf_int: bool) -> pd.DataFrame:
    """``coef(m)`` gathered long: factor by factor, column by column, level by level."""
    rows: list[pd.DataFrame] = []
    coefs = m.coef() if callable(m.coef) else m.coef
    for group, df in coefs.items():
        nl, nc = df.shape
        rows.append(pd.DataFrame({
            "group": [group] * (nl * nc),
            "level": [str(lev) for lev in df.index] * nc,
            "term": np.repeat([str(c) for c in df.columns], nl),
            "estimate": df.to_numpy(dtype=float).T.ravel(),
        }))
    ret = pd.concat(rows, ignore_index=True)
    if conf_int:
        warnings.warn("CIs not available for random-effects coefficients: returning NA",
                      LmeFormulaWarning, stacklevel=3)
        ret["conf.low"] = np.nan
        ret["conf.high"] = np.nan
    return ret


def tidy(m: Any, effects: str | Sequence[str] = ("ran_pars", "fixed"),
         scales: str | Sequence[str | None] | None = None, exponentiate: bool = False,
         ran_prefix: tuple[str, str] | None = None, conf_int: bool = False,
         conf_level: float = 0.95, conf_method: str = "Wald", ddf_method: str | None = None,
         **confint_options: Any) -> pd.DataFrame:
    """broom.mixed's ``tidy`` of a fitted mixed model: one row per parameter.

    Parameters
    ----------
    m
        A fitted model (:class:`lmeformula.LmerMod`), or :func:`lmeformula.allFit`'s result:
        then one block per optimizer whose refit worked, with an ``optimizer`` column first
        (broom.mixed's ``tidy.allFit``).
    effects
        Any of ``"fixed"`` (fixed effects: ``coef(summary(m))``), ``"ran_pars"`` (standard
        deviations and correlations of the random effects and the residual standard
        deviation, ``sd__(Intercept)``, ``cor__(Intercept).Days``, ``sd__Observation``),
        ``"ran_vals"`` (conditional modes and their conditional standard deviations, by
        level) and ``"ran_coefs"`` (``coef(m)``: fixed effects plus conditional modes).
        Rows come in that order whatever the order given (as broom.mixed).
    scales
        ``"sdcor"`` (default) or ``"vcov"`` (variances and covariances, ``var__``/``cov__``)
        for ``ran_pars``; a sequence gives one entry per element of ``effects``.
    exponentiate
        Exponentiate the fixed effects and their intervals (standard errors by the delta
        method).
    ran_prefix
        Prefixes of the variance-parameter names instead of ``("sd", "cor")``.
    conf_int
        Add ``conf.low``/``conf.high`` from :func:`lmeformula.confint`.
    conf_level
        Their level.
    conf_method
        ``"Wald"`` (NaN for the variance parameters, as lme4), ``"profile"`` or ``"boot"``;
        conditional modes get Wald intervals ``estimate ± z·std.error`` only.
    ddf_method
        Denominator degrees of freedom of the fixed effects' t tests (``"Satterthwaite"``,
        ``"Kenward-Roger"``): adds broom.mixed's ``df`` and ``p.value`` columns from lmerTest's
        table (``lmf.coef_table``) and makes the Wald intervals t intervals, as broom.mixed
        does for an ``lmerModLmerTest`` fit. None (default): lme4's table, no p-values.
    **confint_options
        Passed to :func:`lmeformula.confint` (``nsim=``, ``rng=``, ``boot_type=``,
        ``progress=``...).

    Returns
    -------
    DataFrame with broom.mixed's columns (``effect``, ``group``, ``level``, ``term``,
    ``estimate``, ``std.error``, ``statistic``, ``conf.low``, ``conf.high``, those that
    apply); ``group`` and ``level`` are None where they do not apply (R's NA).
    """
    fits = _allfit_fits(m)
    if fits is not None:  # broom.mixed's tidy.allFit: one tidy frame per working fit
        frames = [tidy(fit, effects, scales, exponentiate, ran_prefix, conf_int, conf_level,
                       conf_method, ddf_method, **confint_options).assign(optimizer=name)
                  for name, fit in fits.items() if not isinstance(fit, Exception)]
        if not frames:
            raise LmeFormulaError("all models bad")
        out = pd.concat(frames, ignore_index=True)
        return out[["optimizer", *[c for c in out.columns if c != "optimizer"]]]
    wanted = _as_effects(effects)
    if scales is None:
        scale = "sdcor"
    elif isinstance(scales, str):
        scale = scales
    else:
        if len(scales) != len(wanted):
            raise LmeFormulaError("if scales are specified, values (or None) must be provided "
                                  "for each effect")
        given = scales[wanted.index("ran_pars")] if "ran_pars" in wanted else None
        scale = given or "sdcor"
    ci = _Intervals(m, conf_method, conf_level, confint_options) if conf_int else None
    n_fixed = len(m.fixef)
    parts: dict[str, pd.DataFrame] = {}
    if "fixed" in wanted:
        parts["fixed"] = _tidy_fixed(m, ci, exponentiate, ddf_method)
    if "ran_pars" in wanted:
        parts["ran_pars"] = _tidy_ran_pars(m, scale, ran_prefix, ci, n_fixed)
    if "ran_vals" in wanted:
        parts["ran_vals"] = _tidy_ran_vals(m, conf_level if conf_int else None, conf_method)
    if "ran_coefs" in wanted:
        parts["ran_coefs"] = _tidy_ran_coefs(m, conf_int)
    frames = []
    for effect in EFFECTS:
        if effect in parts:
            part = parts[effect].copy()
            part.insert(0, "effect", effect)
            frames.append(part)
    out = pd.concat(frames, ignore_index=True)
    for col in ("group", "level"):
        if col in out:  # R's NA in a character column
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out[[c for c in _TIDY_COLUMNS if c in out.columns]]


def _allfit_fits(m: Any) -> dict[str, Any] | None:
    from .allfit import AllFit

    return m.fits if isinstance(m, AllFit) else None


def glance(m: Any) -> pd.DataFrame:
    """broom.mixed's ``glance``: one row of model statistics.

    Columns ``nobs``, ``sigma``, ``logLik``, ``AIC``, ``BIC``, ``REMLcrit`` for a REML fit or
    ``deviance`` for an ML fit, and ``df.residual`` (statistics a model does not have are left
    out, as broom does with NA ones).

    For :func:`lmeformula.allFit`'s result, one row per optimizer (``optimizer`` first; NaN for
    a failed refit) and ``NLL_rel``, each fit's log-likelihood below the best one (Inf for a
    failed refit), as broom.mixed's ``glance.allFit``.
    """
    fits = _allfit_fits(m)
    if fits is not None:
        good = [f for f in fits.values() if not isinstance(f, Exception)]
        if not good:
            raise LmeFormulaError("all models bad")
        template = glance(good[0])
        rows = []
        for name, fit in fits.items():
            row = (template.astype(float) * np.nan if isinstance(fit, Exception)
                   else glance(fit).astype(float))
            rows.append(row.assign(optimizer=name))
        out = pd.concat(rows, ignore_index=True)
        out = out[["optimizer", *template.columns]]
        ll = out["logLik"].to_numpy(dtype=float)
        out["NLL_rel"] = np.where(np.isnan(ll), np.inf, np.nanmax(ll) - ll)
        return out

    def value(get: Callable[[], Any]) -> float:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(get())
        except (AttributeError, LmeFormulaError, TypeError, ValueError):
            return math.nan

    stats_row = {
        "nobs": value(lambda: m.nobs),
        "sigma": value(lambda: m.sigma),
        "logLik": value(lambda: m.logLik().value),
        "AIC": value(m.AIC),
        "BIC": value(m.BIC),
        "REMLcrit" if m.is_REML else "deviance": value(m.deviance),
        "df.residual": value(lambda: m.df_residual),
    }
    one = pd.DataFrame({k: [v] for k, v in stats_row.items() if not math.isnan(v)})
    for col in ("nobs", "df.residual"):
        if col in one:
            one[col] = one[col].astype(np.int64)
    return one


# ---- augment ---------------------------------------------------------------------------------

def _hat_values(m: Any, dense_limit: int = 5000, cells: int = 8_000_000) -> np.ndarray:
    """lme4's ``hatvalues.merMod``: the diagonal of the hat matrix of the penalised least
    squares fit, ``colSums(CL²) + colSums(CR²)`` with ``CL = L⁻¹A W½`` (``A = Λ'Z'``) and
    ``CR = RX⁻ᵀ(X'W½ - RZX'CL)``.

    Without forming CL (q x n): ``RZX'CL = (L⁻ᵀRZX)'A W½``, one solve with p columns, and
    ``colSums(CL²)_i = w_i a_i'(LL')⁻¹a_i`` needs only the entries of (LL')⁻¹ among the few
    rows where column i of A is non-zero. (LL')⁻¹ is formed densely (LAPACK's potri) up to
    ``dense_limit`` random effects; above, CL is solved for a block of observations at a time
    (about ``cells`` entries per block)."""
    L = sp.csc_matrix(m.getME("L"))
    A = sp.csc_matrix(m.getME("Lambdat") @ m.getME("Zt"))
    A.sort_indices()
    rx = np.asarray(m.getME("RX"), dtype=float)
    rzx = np.asarray(m.getME("RZX"), dtype=float)
    X = np.asarray(m.getME("X"), dtype=float)
    w = np.asarray(m.weights, dtype=float)
    q, n = A.shape
    out = np.zeros(n)
    if rx.size:
        g = (sp.linalg.spsolve_triangular(L.T.tocsr(), rzx, lower=False) if q else rzx)
        g = np.asarray(g).reshape(q, rx.shape[0])
        resid_x = (X - A.T @ g) * np.sqrt(w)[:, None]
        cr = la.solve_triangular(rx, resid_x.T, trans="T", lower=False)
        out += np.einsum("ij,ij->j", cr, cr)
    if q == 0:
        return out
    if q <= dense_limit:
        inv, info = la.lapack.dpotri(np.asfortranarray(L.toarray()), lower=1)
        if info != 0:
            raise LmeFormulaError("the random-effects factor is singular: no hat values")
        inv = np.tril(inv) + np.tril(inv, -1).T
        counts = np.diff(A.indptr)
        width = int(counts.max()) if n else 0
        col = np.repeat(np.arange(n), counts)
        pos = np.arange(A.nnz) - np.repeat(A.indptr[:-1], counts)
        rows = np.zeros((n, width), dtype=np.int64)
        vals = np.zeros((n, width))
        rows[col, pos], vals[col, pos] = A.indices, A.data
        for j in range(width):
            for k in range(width):
                out += w * vals[:, j] * vals[:, k] * inv[rows[:, j], rows[:, k]]
        return out
    Lr = L.tocsr()
    sqrt_w = np.sqrt(w)
    chunk = max(1, min(n, cells // q))
    for start in range(0, n, chunk):
        cols = slice(start, min(n, start + chunk))
        rhs = (A[:, cols] @ sp.diags(sqrt_w[cols])).toarray()
        cl = np.asarray(sp.linalg.spsolve_triangular(Lr, rhs, lower=True)).reshape(rhs.shape)
        out[cols] += np.einsum("ij,ij->j", cl, cl)
    return out


def _cooks_distance(m: Any, hat: np.ndarray) -> np.ndarray:
    """lme4's ``cooks.distance.merMod``: ``(r / (1 - h))² h / (σ² rank(X))`` with Pearson
    residuals r; infinite values become NaN."""
    X = np.asarray(m.getME("X"), dtype=float)
    rank = np.linalg.matrix_rank(X) if X.size else 0
    r = m.residuals(type="pearson").dropna().to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (r / (1 - hat)) ** 2 * hat / (m.sigma**2 * rank)
    out[np.isinf(out)] = np.nan
    return out


def _lmm_response(m: Any) -> dict[str, np.ndarray]:
    """lme4's ``lmerResp`` fields: ``mu``, ``offset``, ``sqrtXwt``, ``sqrtrwt``, ``weights``,
    ``wtres`` (for a linear model both square-root weights are sqrt(prior weights))."""
    w = np.asarray(m.weights, dtype=float)
    mu = np.asarray(m.getME("mu"), dtype=float)
    y = np.asarray(m.getME("y"), dtype=float)
    sqrt_w = np.sqrt(w)
    return {".mu": mu, ".offset": np.asarray(m.getME("offset"), dtype=float),
            ".sqrtXwt": sqrt_w, ".sqrtrwt": sqrt_w, ".weights": w,
            ".wtres": sqrt_w * (y - mu)}


def augment(m: Any, data: pd.DataFrame | None = None) -> pd.DataFrame:
    """broom.mixed's ``augment``: the data with one column per observation-level quantity.

    Parameters
    ----------
    m
        A fitted model.
    data
        The data to augment (not modified); by default the model frame ``m.lformula.fr``.
        It must have one row per observation used by the fit or one per row of the data
        the model was fitted to (then rows the fit dropped for NA get NaN).

    Returns
    -------
    DataFrame: the data's columns, then ``.fitted`` (μ), ``.resid`` (y - μ), ``.hat``
    (diagonal of the hat matrix, lme4's ``hatvalues``), ``.cooksd`` (lme4's
    ``cooks.distance``), ``.fixed`` (the population prediction, ``re_form = NA``), and the
    response's ``.mu``, ``.offset``, ``.sqrtXwt``, ``.sqrtrwt``, ``.weights``, ``.wtres``.
    A model class supplies other response columns (a GLMM's ``.eta``...) through a method
    ``_broom_response()`` returning a dict of arrays in this order.
    """
    pf = m.lformula
    # any data frame, as the fitting functions take (a pandas frame as it is)
    frame = pf.fr if data is None else as_pandas(data)
    n = m.nobs
    rows = np.asarray(pf.frame.rows)
    if len(frame) == n:
        place = None
    elif len(frame) == pf.frame.nrow_data:
        place = rows
    else:
        raise LmeFormulaError(f"data has {len(frame)} rows; the model used {n} observations "
                              f"of {pf.frame.nrow_data}")
    hat = _hat_values(m)
    response = m._broom_response() if hasattr(m, "_broom_response") else _lmm_response(m)
    columns: dict[str, np.ndarray] = {
        ".fitted": m.fitted().dropna().to_numpy(dtype=float),
        ".resid": m.residuals().dropna().to_numpy(dtype=float),
        ".hat": hat,
        ".cooksd": _cooks_distance(m, hat),
        ".fixed": np.asarray(m.predict(re_form=math.nan), dtype=float)[:n],
        **response,
    }
    out = frame.copy()  # keeps the data's index, so the result joins back to the data
    for name, values in columns.items():
        full = np.asarray(values, dtype=float)
        if place is not None:
            full = np.full(len(frame), np.nan)
            full[place] = values
        out[name] = full
    return out


model_functions(globals(), __all__)  # a clear error for a non-model first argument
