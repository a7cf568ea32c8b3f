"""The fitted linear mixed model (lme4's ``lmerMod``) and its accessors.

Stored values are properties (``m.fixef``, ``m.sigma``, ``m.theta``, ``m.VarCorr``); accessors
that take options are methods (``m.ranef(condVar=True)``, ``m.deviance(REML=False)``). The
module-level functions in :mod:`lmeformula.accessors` call the same code, as lme4's do.

Imports run one way: ``predict``, ``simulate`` and the NA padding of ``fitted``/``residuals``
call down into :mod:`lmeformula.prediction` (which reads the model through its
``FittedModel`` protocol); ``VarCorr`` prints itself with :mod:`lmeformula.rformat`; the
model's and its summary's printed and HTML layouts, and lmerTest's coefficient table of
``summary(ddf=...)``, belong to later modules and are reached through the generic functions
of :mod:`lmeformula.generics`.
"""

from __future__ import annotations

import math
import re as _re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .call import ModelCall
from .devcomp import DevComp, DevCompCmp, DevCompDims
from .errors import ArgumentError, DeprecatedUsageWarning, LmeFormulaError
from .generics import ddf_coefficients, show, show_html
from .modular import LFormula, LmerDevfun
from .optimize import OptResult
from .pls.terms import lower_factors
from .prediction import lambdat_at, naresid
from .prediction import predict as predict_model
from .prediction import simulate as simulate_model
from .rformat import format_numbers, print_char_matrix
from .validate import check_flag, check_number

__all__ = ["LmerMod", "VarCorr", "VarCorrTerm", "format_varcorr", "match_ddf"]

# lmerTest's ddf= of summary() (and of its tables in lmeformula.ddf)
DDF_METHODS = ("Satterthwaite", "Kenward-Roger", "lme4")
KR_ML_MESSAGE = "Kenward-Roger's method is only available for REML model fits"


@dataclass(frozen=True)
class VarCorrTerm:
    """One random-effects term's estimated covariance: ``σ² λλ'``.

    Attributes
    ----------
    group
        The grouping factor's name, made unique as R's ``make.names`` does (``Subject.1``).
    names
        The term's column names.
    cov
        nc x nc covariance matrix.
    """

    group: str
    names: list[str]
    cov: np.ndarray

    @property
    def stddev(self) -> np.ndarray:
        """Standard deviations."""
        return np.sqrt(np.diag(self.cov))

    @property
    def correlation(self) -> np.ndarray:
        """Correlation matrix (NaN where a standard deviation is 0)."""
        sd = self.stddev
        with np.errstate(invalid="ignore", divide="ignore"):
            out = self.cov / np.outer(sd, sd)
        np.fill_diagonal(out, 1.0)
        return out


@dataclass(frozen=True)
class VarCorr:
    """lme4's ``VarCorr``: one entry per term, and the residual standard deviation ``sc``
    (``use_sc`` False for GLMMs without a scale parameter: no Residual row)."""

    terms: list[VarCorrTerm]
    sc: float
    use_sc: bool = True

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.terms)

    def __getitem__(self, key: str | int) -> VarCorrTerm:
        if isinstance(key, int):
            return self.terms[key]
        for t in self.terms:
            if t.group == key:
                return t
        raise KeyError(key)

    def as_data_frame(self, order: str = "cov.last") -> pd.DataFrame:
        """R's ``as.data.frame(VarCorr(m))``: columns grp, var1, var2, vcov, sdcor.

        ``order="cov.last"`` lists each term's variances before its covariances;
        ``"lower.tri"`` follows the lower triangle column by column.
        """
        rows: list[tuple[str, str | None, str | None, float, float]] = []
        for t in self.terms:
            nc = len(t.names)
            cells = [(i, j) for j in range(nc) for i in range(j, nc)]
            if order == "cov.last":
                cells.sort(key=lambda ij: ij[0] != ij[1])
            for i, j in cells:
                if i == j:
                    rows.append((t.group, t.names[i], None, t.cov[i, i], t.stddev[i]))
                else:
                    rows.append((t.group, t.names[j], t.names[i], t.cov[i, j],
                                 t.correlation[i, j]))
        if self.use_sc:
            rows.append(("Residual", None, None, self.sc**2, self.sc))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    to_frame = as_data_frame

    def format(self, digits: int = 5, comp: tuple[str, ...] = ("Std.Dev.",)) -> str:
        """lme4's ``formatVC`` table, printed as R prints it."""
        return format_varcorr(self, digits=digits, comp=comp)

    def __str__(self) -> str:
        return self.format()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return show_html(self)  # lmeformula.html's layout, through lmeformula.generics


def make_unique_names(names: list[str]) -> list[str]:
    """R's ``make.names(unique = TRUE)`` for grouping-factor names."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        valid = _re.sub(r"[^A-Za-z0-9._]", ".", name)
        if not valid or not (valid[0].isalpha() or valid[0] == "."):
            valid = "X" + valid
        if valid in seen:
            seen[valid] += 1
            candidate = f"{valid}.{seen[valid]}"
            while candidate in seen:
                seen[valid] += 1
                candidate = f"{valid}.{seen[valid]}"
            out.append(candidate)
            seen[candidate] = 0
        else:
            seen[valid] = 0
            out.append(valid)
    return out


def format_varcorr(vc: VarCorr, digits: int = 5, comp: tuple[str, ...] = ("Std.Dev.",)
                   ) -> str:
    """lme4's ``formatVC`` printed as R prints it (``print(VarCorr(m))``)."""
    groups: list[str] = []
    names: list[str] = []
    sds: list[float] = []
    lens: list[int] = []
    for t in vc.terms:
        for j, c in enumerate(t.names):
            groups.append(t.group if j == 0 else "")
            names.append(c)
        sds.extend(t.stddev.tolist())
        lens.append(len(t.names))
    if vc.use_sc:  # GLMMs without a scale have no Residual row
        groups.append("Residual")
        names.append("")
        sds.append(vc.sc)
        lens.append(1)
    header = ["Groups", "Name"]
    cols: list[list[str]] = [groups, names]
    if "Variance" in comp:
        header.append("Variance")
        cols.append(format_numbers([s * s for s in sds], digits))
    if "Std.Dev." in comp:
        header.append("Std.Dev.")
        cols.append(format_numbers(sds, digits))
    maxlen = max(lens)
    if maxlen > 1:
        dig = max(2, digits - 2)
        corr_rows: list[list[str]] = []
        for t in vc.terms:
            r = t.correlation
            nc = len(t.names)
            cells = [[""] * (maxlen - 1) for _ in range(nc)]
            if nc > 1:
                # R formats the whole matrix (diagonal included) with a common width
                whole = format_numbers([np.round(x, dig) for x in r.T.ravel()], 7, nsmall=dig)
                mat = np.array(whole, dtype=object).reshape(nc, nc).T
                for i in range(nc):
                    for j in range(min(i, maxlen - 1)):
                        cells[i][j] = mat[i, j]
            corr_rows.extend(cells)
        if vc.use_sc:
            corr_rows.append([""] * (maxlen - 1))
        for j in range(maxlen - 1):
            header.append("Corr" if j == 0 else "")
            cols.append([row[j] for row in corr_rows])
    rows = [list(r) for r in zip(*cols, strict=True)]
    return "\n".join(print_char_matrix(header, rows, width=80))  # R wraps at getOption("width")


def match_ddf(ddf: str, allowed: Sequence[str] = DDF_METHODS) -> str:
    """R's ``match.arg`` for ``ddf``: an exact name or a unique prefix."""
    if not isinstance(ddf, str):
        raise ArgumentError(f"'ddf' must be a string, one of {', '.join(map(repr, allowed))}")
    if ddf in allowed:
        return ddf
    hits = [a for a in allowed if a.startswith(ddf)] if ddf else []
    if len(hits) == 1:
        return hits[0]
    quoted = ", ".join(f"\u201c{a}\u201d" for a in allowed)
    raise LmeFormulaError(f"'arg' should be one of {quoted}")


@dataclass
class LmerMod:
    """A fitted linear mixed model, as lme4's ``lmerMod``.

    Attributes
    ----------
    lformula
        The :class:`lmeformula.modular.LFormula` the model was fitted from.
    devfun
        The deviance function (:class:`lmeformula.modular.LmerDevfun`).
    optinfo
        The optimizer's result (:class:`lmeformula.optimize.OptResult`).
    data_name
        How the data is named in printed output (``Data: sleepstudy``).
    call_args
        How the call's optional arguments are shown (``Weights:``, ``Offset:``, ``Subset:``;
        ``Control:``'s deparsed lines joined by newlines).
    """

    lformula: LFormula
    devfun: LmerDevfun
    optinfo: OptResult
    data_name: str = "data"
    call_args: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        prob = self.devfun.problem
        theta = np.asarray(self.optinfo.par, dtype=float)
        self._factor = self.devfun.factor(theta)
        self._beta, self._u = prob.solve(self._factor)
        self._theta = theta

    # b, μ and the sums of squares are computed on first use, from θ, u and β as fixed above
    # (a fit that is only asked for its estimates does not form them; GlmerMod sets its own)
    @cached_property
    def _b(self) -> np.ndarray:
        return _lambda_times(self.lformula.reTrms.terms, self._theta, self._u)

    @cached_property
    def _mu(self) -> np.ndarray:
        X = self.lformula.X_values
        offset = self.lformula.offset
        mu = X @ self._beta
        mu += _z_times(self.lformula.reTrms.terms, self._b)
        if offset is not None:
            mu += offset
        return mu

    @cached_property
    def _wrss(self) -> float:
        # Σ w r² with one n-length temporary (no ones for unit weights: 1·x is x)
        r2 = np.square(self.lformula.y - self._mu)
        if self.lformula.weights is not None:
            r2 *= self.lformula.weights
        return float(np.sum(r2))

    @cached_property
    def _ussq(self) -> float:
        return float(self._u @ self._u)

    @property
    def call(self) -> ModelCall:
        """The call's arguments (lme4's ``m@call``): formula, data, weights, offset, subset,
        na_action, contrasts, control, syntax (and family for a GLMM); the object the model
        frame and the structures were built from. ``update`` changes and refits it."""
        return self.lformula.call

    @property
    def _data(self) -> Any:
        """The data of the call (a reference, never modified), or None: what ``update``,
        ``ranova`` and the deletion refits refit on."""
        return self.lformula.call.data

    @cached_property
    def _lambdat(self) -> sp.csc_matrix:
        """Λ' at the estimates."""
        return lambdat_at(self)

    # -- basic quantities ---------------------------------------------------------------------
    @property
    def formula(self) -> str:
        """The formula as lme4 stores it (``||`` expanded)."""
        return self.lformula.formula

    @property
    def weights(self) -> np.ndarray:
        """Prior weights (ones when none were given)."""
        w = self.lformula.weights
        return np.ones(self.n) if w is None else w

    @property
    def n(self) -> int:
        return self.lformula.X_values.shape[0]

    @property
    def p(self) -> int:
        return self.lformula.X_values.shape[1]

    @property
    def q(self) -> int:
        return self.lformula.reTrms.q

    @property
    def is_REML(self) -> bool:
        """Whether the REML criterion was optimised (lme4's ``isREML``)."""
        return self.devfun.REML

    @property
    def theta(self) -> pd.Series:
        """Covariance parameters θ with lme4's names."""
        return pd.Series(self._theta, index=self.lformula.reTrms.theta_names, name="theta")

    @property
    def beta(self) -> np.ndarray:
        """Fixed effects, unnamed (``getME(m, "beta")``)."""
        return self._beta.copy()

    @property
    def fixef(self) -> pd.Series:
        """Fixed effects named by X's columns."""
        return pd.Series(self._beta, index=list(self.lformula.X_names), name="fixef")

    @property
    def u(self) -> np.ndarray:
        """Spherical conditional modes."""
        return self._u.copy()

    @property
    def b(self) -> np.ndarray:
        """Conditional modes of the random effects, ``Λu``."""
        return np.asarray(self._b).copy()

    @property
    def pwrss(self) -> float:
        """Penalised weighted residual sum of squares."""
        return self._wrss + self._ussq

    @property
    def sigma(self) -> float:
        """Residual standard deviation (REML or ML estimate, as the fit)."""
        dc = self.devcomp.cmp
        return dc.sigmaREML if self.is_REML else dc.sigmaML

    @property
    def devcomp(self) -> DevComp:
        """lme4's ``devcomp``: ``cmp`` (criterion pieces) and ``dims`` (see
        :class:`lmeformula.devcomp.DevComp`; ``m.devcomp["cmp"]["pwrss"]`` as in R)."""
        f = self._factor
        n, p = self.n, self.p
        pwrss = self.pwrss
        crit = self.devfun.problem.criterion(f, self.is_REML)
        cmp = DevCompCmp(
            ldL2=f.ldL2, ldRX2=self._ldRX2, wrss=self._wrss, ussq=self._ussq, pwrss=pwrss,
            drsum=math.nan, REML=crit if self.is_REML else math.nan,
            dev=math.nan if self.is_REML else crit,
            sigmaML=math.sqrt(pwrss / n), sigmaREML=math.sqrt(pwrss / (n - p)))
        dims = DevCompDims(N=n, n=n, p=p, nmp=n - p, q=self.q, nth=len(self._theta), useSc=1,
                           reTrms=len(self.lformula.reTrms.terms), spFe=0,
                           REML=p if self.is_REML else 0, GLMM=0, NLMM=0)
        return DevComp(cmp, dims)

    # -- criteria -------------------------------------------------------------------------------
    @property
    def _ldRX2(self) -> float:
        # log det of an empty RX is 0. (lme4 1.1-31 reports uninitialised memory here for a
        # model without fixed effects: 1, 3e-313, ... from run to run, and adds it to REMLcrit.)
        return self._factor.ldRX2 if self.p > 0 else 0.0

    def _criterion_at_fit(self, REML: bool) -> float:
        from .pls.engine import profiled_criterion

        return profiled_criterion(self._factor.ldL2, self._ldRX2, self.pwrss, self.n, self.p,
                                  self.devfun.problem.ldW, REML)

    def REMLcrit(self) -> float:
        """The REML criterion at the fitted θ (recomputed for an ML fit, as lme4 does)."""
        return self._criterion_at_fit(True)

    def deviance(self, REML: bool | None = None) -> float:
        """lme4's ``deviance``: ML deviance; for a REML fit with ``REML=None`` it warns and
        returns the REML criterion; ``REML=False`` gives the ML deviance at the REML θ."""
        check_flag(REML, "REML", allow_none=True)
        if REML is None:
            if self.is_REML:
                warnings.warn(
                    "deviance() is deprecated for REML fits; use REMLcrit for the REML "
                    "criterion or deviance(.,REML=FALSE) for deviance calculated at the "
                    "REML fit", DeprecatedUsageWarning, stacklevel=2)
                return self.REMLcrit()
            return self._criterion_at_fit(False)
        return self._criterion_at_fit(bool(REML))

    def npar(self) -> int:
        """Number of parameters: p + length(θ) + 1."""
        return self.p + len(self._theta) + 1

    def logLik(self, REML: bool | None = None) -> LogLik:
        """Log-likelihood (the REML one for a REML fit unless ``REML=False``)."""
        check_flag(REML, "REML", allow_none=True)
        use_reml = self.is_REML if REML is None else bool(REML)
        return LogLik(-self._criterion_at_fit(use_reml) / 2.0, self.npar(), self.n)

    def AIC(self) -> float:
        """Akaike's criterion from :meth:`logLik`."""
        ll = self.logLik()
        return -2.0 * ll.value + 2.0 * ll.df

    def BIC(self) -> float:
        """Bayesian criterion from :meth:`logLik`."""
        ll = self.logLik()
        return -2.0 * ll.value + math.log(ll.nobs) * ll.df

    @property
    def nobs(self) -> int:
        """Number of observations used."""
        return self.n

    @property
    def df_residual(self) -> int:
        """Residual degrees of freedom: nobs - npar."""
        return self.n - self.npar()

    @property
    def ngrps(self) -> pd.Series:
        """Levels of each grouping factor."""
        fl = self.lformula.reTrms.flist
        return pd.Series({k: len(v.categories) for k, v in fl.items()}, dtype=np.int64)

    def isSingular(self, tol: float = 1e-4) -> bool:
        """Whether any θ with lower bound 0 is below ``tol``."""
        check_number(tol, "tol", lower=0)
        lower = self.lformula.reTrms.lower
        return bool(np.any(self._theta[lower == 0] < tol))

    # -- matrices -----------------------------------------------------------------------------
    def RX(self) -> np.ndarray:
        """p x p upper-triangular factor with RX'RX = X'WX - RZX'RZX."""
        return self.devfun.problem.rx(self._factor)

    def RZX(self) -> np.ndarray:
        """q x p, L⁻¹Λ'Z'WX (rows in Zt's order: this engine uses no permutation)."""
        return self.devfun.problem.rzx_rx(self._factor)[0]

    def vcov(self) -> pd.DataFrame:
        """Covariance of the fixed effects, ``σ² RX⁻¹RX⁻ᵀ`` (conditional on θ)."""
        rx = self.RX()
        names = list(self.lformula.X_names)
        if rx.size == 0:
            return pd.DataFrame(np.zeros((0, 0)))
        rinv = np.linalg.solve(rx, np.eye(rx.shape[0]))
        return pd.DataFrame(self.sigma**2 * (rinv @ rinv.T), index=names, columns=names)

    @property
    def VarCorr(self) -> VarCorr:
        """Estimated variances and correlations of the random effects (lme4's ``VarCorr``)."""
        re = self.lformula.reTrms

        names = list(re.cnms_names)
        if len(set(names)) < len(names):  # lme4 applies make.names only to repeated names
            names = make_unique_names(names)
        out = []
        s2 = self.sigma**2
        lams = lower_factors(re.terms, self._theta)
        for t, nm, lam in zip(re.terms, names, lams, strict=True):
            out.append(VarCorrTerm(nm, list(t.cnms), s2 * lam @ lam.T))
        return VarCorr(out, self.sigma)

    # -- random effects -----------------------------------------------------------------------
    def ranef(self, condVar: bool = True) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor: a DataFrame (levels x columns); with
        ``condVar`` the conditional covariances in ``df.attrs["postVar"]`` (levels, k, k),
        or a list of such arrays when several terms share the factor."""
        check_flag(condVar, "condVar")
        re = self.lformula.reTrms
        blocks = self._cond_var_blocks() if condVar else None
        out: dict[str, pd.DataFrame] = {}
        start = 0
        per_term = []
        for t in re.terms:
            size = t.nl * t.nc
            vals = np.asarray(self._b[start : start + size]).reshape(t.nl, t.nc)
            per_term.append(vals)
            start += size
        for fi, (name, f) in enumerate(re.flist.items()):
            idx = [i for i, a in enumerate(re.assign) if a == fi]
            values = np.hstack([per_term[i] for i in idx])
            cols = [c for i in idx for c in re.terms[i].cnms]
            df = pd.DataFrame(values, index=list(map(str, f.categories)), columns=cols)
            if blocks is not None:
                arrays = [blocks[i] for i in idx]
                df.attrs["postVar"] = arrays[0] if len(arrays) == 1 else arrays
            out[name] = df
        return out

    def _cond_var_blocks(self) -> list[np.ndarray]:
        """Per term, (nl, nc, nc) blocks of σ² Λ (Λ'Z'WZΛ + I)⁻¹ Λ' on the diagonal."""

        blocks = self.devfun.problem.inverse_diagonal_blocks(self._factor)
        re = self.lformula.reTrms
        s2 = self.sigma**2
        out = []
        lams = lower_factors(re.terms, self._theta)
        for blk, lam in zip(blocks, lams, strict=True):
            out.append(s2 * np.einsum("ij,ljk,mk->lim", lam, blk, lam))
        return out

    @property
    def coef(self) -> dict[str, pd.DataFrame]:
        """Per grouping factor: fixed effects plus conditional modes, one row per level.

        As lme4's ``coef.merMod``: random-effect columns that are not fixed effects (of any
        grouping factor, in ranef's order) come first, as zero fixed effects, then the fixed
        effects; every factor's table has all these columns."""
        fe = self.fixef
        re = self.ranef(condVar=False)
        missing = list(dict.fromkeys(c for r in re.values() for c in r.columns
                                     if c not in fe.index))
        cols = missing + list(fe.index)
        base = np.concatenate([np.zeros(len(missing)), fe.to_numpy(dtype=float)])
        out = {}
        for name, r in re.items():
            df = pd.DataFrame(np.tile(base, (len(r.index), 1)), index=r.index, columns=cols)
            for j, c in enumerate(r.columns):
                df[c] += r.iloc[:, j].to_numpy()
            out[name] = df
        return out

    # -- fitted values and residuals ----------------------------------------------------------
    def _pad(self, values: np.ndarray, name: str) -> pd.Series:
        return naresid(self.lformula, values, name)

    def fitted(self) -> pd.Series:
        """Fitted values μ = Xβ + Zb + offset (padded with NaN under na_action="exclude")."""
        return self._pad(self._mu, "fitted")

    def residuals(self, type: str = "response", scaled: bool = False) -> pd.Series:
        """Residuals: ``"response"``/``"working"`` y - μ, ``"pearson"``/``"deviance"``
        sqrt(w)(y - μ); ``scaled`` divides by σ."""
        check_flag(scaled, "scaled")
        r = self.lformula.y - self._mu
        if type in ("pearson", "deviance"):
            r = np.sqrt(self.weights) * r
        elif type not in ("response", "working"):
            raise LmeFormulaError(f"residual type {type!r} is not available for lmer fits")
        if scaled:
            r = r / self.sigma
        return self._pad(r, "residuals")

    def predict(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
                allow_new_levels: bool = False, se_fit: bool = False, *,
                apply_offset_arg: bool = False) -> Any:
        """Predictions (see :func:`lmeformula.prediction.predict`)."""
        return predict_model(self, newdata, re_form, allow_new_levels, se_fit,
                             apply_offset_arg=apply_offset_arg)

    def simulate(self, nsim: int = 1, rng: Any = None, use_u: bool = False,
                 re_form: Any = math.nan, newdata: pd.DataFrame | None = None,
                 allow_new_levels: bool = False) -> pd.DataFrame:
        """Simulated responses (see :func:`lmeformula.prediction.simulate`)."""
        return simulate_model(self, nsim, rng, use_u, re_form, newdata, allow_new_levels)

    # -- getME ----------------------------------------------------------------------------------
    def getME(self, name: str) -> Any:
        """lme4's ``getME`` for the names an LMM has (see :data:`GETME_NAMES`)."""
        return getME(self, name)

    # -- presentation -------------------------------------------------------------------------
    def summary(self, ddf: str | None = None) -> Summary:
        """lme4's summary (print it for lme4's layout); with ``ddf="Satterthwaite"`` or
        ``"Kenward-Roger"`` lmerTest's, whose coefficients have df and p-values
        (``ddf="lme4"`` is lme4's)."""
        if ddf is not None:
            ddf = match_ddf(ddf)
            if ddf == "Kenward-Roger" and not self.is_REML:
                raise LmeFormulaError(KR_ML_MESSAGE)
        return Summary(self, None if ddf == "lme4" else ddf)

    # lme4's layouts are the presentation layer's (lmeformula.printing, glmerprint, html): they
    # register themselves on the generic functions, which dispatch on the model's class
    def __str__(self) -> str:
        return show(self)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        return show_html(self)

    def to_dict(self) -> dict[str, Any]:
        """The main results as plain Python values (for JSON)."""
        vc = self.VarCorr.as_data_frame()
        return {
            "formula": self.formula, "REML": self.is_REML, "nobs": self.n,
            "fixef": self.fixef.to_dict(), "theta": self.theta.to_dict(), "sigma": self.sigma,
            "REMLcrit" if self.is_REML else "deviance": (
                self.REMLcrit() if self.is_REML else self.deviance()),
            "logLik": self.logLik().value, "AIC": self.AIC(), "BIC": self.BIC(),
            "varcorr": vc.where(vc.notna(), None).to_dict(orient="records"),
            "ngrps": {k: int(v) for k, v in self.ngrps.items()},
            "isSingular": self.isSingular(), "feval": self.optinfo.feval,
            "messages": self.optinfo.lme4_messages + self.optinfo.warnings,
        }


@dataclass(frozen=True)
class LogLik:
    """A log-likelihood with its degrees of freedom, like R's ``logLik`` object."""

    value: float
    df: int
    nobs: int

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        from .rformat import format_numbers

        return f"'log Lik.' {format_numbers([self.value])[0].strip()} (df={self.df})"

    __repr__ = __str__


@dataclass
class Summary:
    """lme4's ``summary.merMod``; ``str()`` gives lme4's printed layout."""

    model: LmerMod
    ddf: str | None = None

    @property
    def coefficients(self) -> pd.DataFrame:
        """Estimate, Std. Error and t value of the fixed effects (with ``ddf``, lmerTest's
        table: df and Pr(>|t|) too)."""
        if self.ddf is not None:  # lmeformula.ddf's table, through lmeformula.generics
            return cast(pd.DataFrame, ddf_coefficients(self.model, self.ddf))
        fe = self.model.fixef
        se = np.sqrt(np.diag(self.model.vcov().to_numpy())) if len(fe) else np.zeros(0)
        return pd.DataFrame({"Estimate": fe.to_numpy(), "Std. Error": se,
                             "t value": fe.to_numpy() / se}, index=fe.index)

    def __str__(self) -> str:
        return show(self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return show_html(self)


GETME_NAMES = (
    "X", "Z", "Zt", "Ztlist", "mmList", "A", "y", "mu", "u", "b", "Gp", "Tp", "L", "Lambda",
    "Lambdat", "Lind", "Tlist", "RX", "RZX", "flist", "sigma", "beta", "theta", "lower",
    "REML", "is_REML", "n_rtrms", "n_rfacs", "N", "n", "p", "q", "p_i", "l_i", "q_i", "k",
    "m_i", "m", "cnms", "devcomp", "devfun", "offset", "fixef", "ST", "weights",
)


def _lambda_times(terms: list[Any], theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """b = Λu term by term: each level's nc coefficients times the term's λ."""
    out, pos = np.empty_like(u), 0
    for t, lam in zip(terms, lower_factors(terms, theta), strict=True):
        size = t.nl * t.nc
        out[pos : pos + size] = (u[pos : pos + size].reshape(t.nl, t.nc) @ lam.T).ravel()
        pos += size
    return out


def _z_times(terms: list[Any], b: np.ndarray) -> np.ndarray:
    """Zb term by term without Z: observation j gets, from each term, its row of X_i times
    the coefficients of its level, (J_i b_i) ∘ X_i summed over the columns."""
    out = None
    pos = 0
    for t in terms:
        size = t.nl * t.nc
        coef = b[pos : pos + size].reshape(t.nl, t.nc)[np.asarray(t.factor.codes)]
        part = np.einsum("ja,ja->j", coef, t.X) if t.nc > 1 else coef[:, 0] * t.X[:, 0]
        if out is None:
            out = part
        else:
            out += part  # part is a new array: summed in place
        pos += size
    assert out is not None
    return out


def getME(m: LmerMod, name: str) -> Any:
    """lme4's ``getME(m, name)``; ``name="ALL"`` returns a dict of everything.

    ``"L"`` is the sparse lower-triangular factor of Λ'Z'WZΛ + I with rows and columns in
    Zt's row order (lme4's CHOLMOD factor carries a fill-reducing permutation instead), and
    ``"RZX"`` is in the same order; ``"Ztlist"`` has one block per column of each term, named
    ``group.column`` as lme4's getME names them (``lFormula``'s ``reTrms.Ztlist`` is per term).
    """
    re = m.lformula.reTrms
    if name == "ALL":
        return {n: getME(m, n) for n in GETME_NAMES}
    theta = m._theta

    def tlist() -> dict[str, np.ndarray]:

        return {t.key: lam
                for t, lam in zip(re.terms, lower_factors(re.terms, theta), strict=True)}

    def mm_list() -> dict[str, pd.DataFrame]:
        # lme4's mmList uses a stable decreasing sort of nl (ties in formula order)
        terms = sorted(re.terms, key=lambda t: (-t.nl, int(re.ord[re.terms.index(t)])))
        return {t.key: pd.DataFrame(t.X, columns=t.cnms) for t in terms}

    def ztlist_by_column() -> dict[str, sp.csc_matrix]:
        out = {}
        for t in re.terms:
            block = re.Ztlist[t.key].tocsr()
            for j, c in enumerate(t.cnms):
                out[f"{t.group_name}.{c}"] = block[j :: t.nc].tocsc()
        return out

    lambdat = m._lambdat
    table: dict[str, Any] = {
        "X": lambda: m.lformula.X.copy(),
        "Z": lambda: re.Zt.T.tocsc(),
        "Zt": lambda: re.Zt.copy(),
        "Ztlist": ztlist_by_column,
        "mmList": mm_list,
        "A": lambda: (lambdat @ re.Zt).tocsc(),
        "y": lambda: cast(np.ndarray, m.lformula.y).copy(),  # a fitted model has a response
        "mu": lambda: m._mu.copy(),
        "u": lambda: m.u,
        "b": lambda: m.b,
        "Gp": lambda: re.Gp.copy(),
        "Tp": lambda: np.concatenate([[0], np.cumsum([t.theta_length for t in re.terms])]),
        "L": lambda: m.devfun.problem.sparse_L(m._factor),
        "Lambda": lambda: lambdat.T.tocsc(),
        "Lambdat": lambda: lambdat.copy(),
        "Lind": lambda: re.Lind.copy(),
        "Tlist": tlist,
        "ST": lambda: {k: _st(v) for k, v in tlist().items()},
        "RX": m.RX,
        "RZX": m.RZX,
        "flist": lambda: dict(re.flist),
        "sigma": lambda: m.sigma,
        "beta": lambda: m.beta,
        "fixef": lambda: m.fixef,
        "theta": lambda: m.theta,
        "lower": lambda: pd.Series(re.lower, index=re.theta_names, name="lower"),
        "REML": lambda: m.p if m.is_REML else 0,
        "is_REML": lambda: m.is_REML,
        "n_rtrms": lambda: len(re.terms),
        "n_rfacs": lambda: len(re.flist),
        "N": lambda: m.n,
        "n": lambda: m.n,
        "p": lambda: m.p,
        "q": lambda: m.q,
        "p_i": lambda: np.array([df.shape[1] for df in mm_list().values()]),
        "l_i": lambda: np.array([len(f.categories) for f in re.flist.values()]),
        "q_i": lambda: np.array([t.nl * t.nc for t in re.terms]),
        "k": lambda: len(re.terms),
        "m_i": lambda: np.array([t.theta_length for t in re.terms]),
        "m": lambda: len(theta),
        "cnms": lambda: [list(c) for c in re.cnms],
        "devcomp": lambda: m.devcomp,
        "devfun": lambda: m.devfun,
        "offset": lambda: (np.zeros(m.n) if m.lformula.offset is None
                           else m.lformula.offset.copy()),
        "weights": lambda: m.weights,
    }
    if name not in table:
        raise LmeFormulaError(
            f"'{name}' is not a valid name for getME; use one of: {', '.join(GETME_NAMES)}"
        )
    return table[name]()


def _st(lam: np.ndarray) -> np.ndarray:
    """lme4's scaled form: diagonal as θ, below it L_ij / L_jj."""
    out = lam.copy()
    d = np.diag(lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j in range(lam.shape[0]):
            out[j + 1 :, j] = lam[j + 1 :, j] / d[j]
    return out
