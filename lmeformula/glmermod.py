"""The fitted GLMM (lme4's ``glmerMod``): LmerMod's accessors with a GLMM's meanings.

What differs from an LMM, as in lme4: ``fitted`` is μ on the response scale; ``sigma`` is 1
for the binomial and Poisson families and ``sqrt((Σ a(y-μ)²/V(μ) + ‖u‖²)/n)`` otherwise;
``logLik`` is minus half the optimised deviance (Laplace or quadrature) with
``length(θ) + p (+1 with a scale)`` parameters; ``deviance()`` is the sum of squared deviance
residuals (not -2 logLik); ``vcov`` comes from the finite-difference Hessian over (θ, β) when
it was computed and nAGQ > 0 (falling back, with lme4's warning, to the RX-based matrix);
residuals have types deviance (default), pearson, response and working.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .devcomp import DevComp, DevCompCmp, DevCompDims
from .errors import ArgumentError, ConvergenceWarning, LmeFormulaError, LmeFormulaWarning
from .generics import show
from .mermod import LmerMod, LogLik, _lambda_times, getME
from .pirls import GlmerDevfun
from .prediction import SimulationMeans
from .prediction import predict as predict_model
from .validate import as_generator, check_count, check_flag

__all__ = ["GlmerMod", "GlmerSummary"]

_VAR_HESS_TOL = 1e-4


class _FinalProblem:
    """Adapter giving LmerMod's code the engine problem of the final PIRLS step."""

    def __init__(self, devfun: GlmerDevfun) -> None:
        self.devfun = devfun
        self.REML = False
        self.problem, self._factor = devfun.final_factor()

    def factor(self, theta: np.ndarray) -> Any:
        return self._factor


class GlmerMod(LmerMod):
    """A fitted generalized linear mixed model, as lme4's ``glmerMod``.

    Attributes
    ----------
    lformula
        The :class:`lmeformula.glmodular.GlFormula`.
    devfun
        The :class:`lmeformula.pirls.GlmerDevfun` (its state is the fit's).
    optinfo
        The last stage's optimizer result.
    family
        The family.
    nAGQ
        Quadrature points (0 = the first stage only, 1 = Laplace).
    """

    nAGQ: int = 1
    glmer_control: Any = None
    is_glmm = True

    def __post_init__(self) -> None:
        dv: GlmerDevfun = self.devfun  # type: ignore[assignment]
        self._glmer_devfun = dv
        k = dv.ntheta
        par = np.asarray(self.optinfo.par, dtype=float)
        self._theta = par[:k].copy()
        self._beta = par[k:].copy() if par.shape[0] > k else dv.state.beta.copy()
        self._u = dv.state.u.copy()
        self._final = _FinalProblem(dv)
        self._factor = self._final._factor
        self._b = _lambda_times(self.lformula.reTrms.terms, self._theta, self._u)
        resp = dv.resp
        self._eta = resp.eta.copy()
        self._mu = resp.mu.copy()
        self._wrss = resp.wrss()
        self._ussq = float(self._u @ self._u)
        self._devres = resp.dev_resid()

    # LmerMod reads devfun.problem and devfun.factor: give it the final PIRLS problem
    @property
    def _problem(self) -> Any:
        return self._final.problem

    @property
    def family(self) -> Any:
        """The GLM family."""
        return self._glmer_devfun.family

    @property
    def is_REML(self) -> bool:
        return False

    @property
    def weights(self) -> np.ndarray:
        """Prior weights as lme4 stores them (for ``cbind`` responses, times the totals)."""
        return self._glmer_devfun.resp.weights.copy()

    @property
    def use_scale(self) -> bool:
        """Whether the family has a scale parameter (lme4's ``useSc``)."""
        return bool(self.family.has_scale)

    @property
    def sigma(self) -> float:
        """1 without a scale parameter; else sqrt(pwrss / n) (lme4's ``sigmaML``)."""
        if not self.use_scale:
            return 1.0
        return math.sqrt((self._wrss + self._ussq) / self.n)

    @property
    def devcomp(self) -> DevComp:
        """lme4's ``devcomp`` for a glmerMod (``tolPwrss`` in ``cmp``, ``nAGQ`` and
        ``compDev`` in ``dims``)."""
        pwrss = self._wrss + self._ussq
        cmp = DevCompCmp(
            ldL2=float(self._factor.ldL2), ldRX2=float(self._factor.ldRX2), wrss=self._wrss,
            ussq=self._ussq, pwrss=pwrss, drsum=float(self._devres.sum()), REML=math.nan,
            dev=float(self.optinfo.fval),
            sigmaML=math.sqrt(pwrss / self.n) if self.use_scale else math.nan,
            sigmaREML=math.nan, tolPwrss=self._glmer_devfun.tolPwrss)
        dims = DevCompDims(N=self.n, n=self.n, p=self.p, nmp=self.n - self.p, q=self.q,
                           nth=len(self._theta), nAGQ=self.nAGQ, compDev=1,
                           useSc=int(self.use_scale), reTrms=len(self.lformula.reTrms.terms),
                           spFe=0, REML=0, GLMM=1, NLMM=0)
        return DevComp(cmp, dims)

    @property
    def VarCorr(self) -> Any:
        """Variances and correlations of the random effects (σ²λλ'; no Residual row for
        the binomial and Poisson families, which have no scale)."""
        import dataclasses

        return dataclasses.replace(LmerMod.VarCorr.fget(self),  # type: ignore[attr-defined]
                                   use_sc=self.use_scale)

    # -- criteria ---------------------------------------------------------------------------
    @property
    def _ldRX2(self) -> float:
        return float(self._factor.ldRX2) if self.p > 0 else 0.0

    def REMLcrit(self) -> float:
        raise LmeFormulaError("REML criterion is not defined for a GLMM")

    def deviance(self, REML: bool | None = None) -> float:
        """lme4's ``deviance`` of a glmerMod: the sum of squared deviance residuals.

        lme4 sums ``residuals(fit, type = "deviance")^2``, which ``na.exclude`` pads with NA
        at the rows it removed: the deviance is then NA (NaN here), as in lme4 1.1-31."""
        na = self.lformula.frame.na_action
        if na is not None and na.kind == "exclude" and len(na.omitted):
            return math.nan
        return float(self._devres.sum())

    def npar(self) -> int:
        """length(θ) + p, plus 1 when the family has a scale."""
        return len(self._theta) + self.p + int(self.use_scale)

    def logLik(self, REML: bool | None = None) -> LogLik:
        """Minus half the optimised deviance (with nAGQ > 1 it leaves out the saturated
        model's constant, so it is not comparable with the Laplace value)."""
        return LogLik(-float(self.optinfo.fval) / 2.0, self.npar(), self.n)

    # -- matrices -----------------------------------------------------------------------------
    def RX(self) -> np.ndarray:
        # from block 2's sparse factor where the model kept one (no dense factor made)
        return np.asarray(self._problem.rx(self._factor))

    def RZX(self) -> np.ndarray:
        return np.asarray(self._problem.rzx_rx(self._factor)[0])

    def vcov(self, use_hessian: bool | None = None) -> pd.DataFrame:
        """Covariance of β: from the finite-difference Hessian over (θ, β) when available
        (nAGQ > 0, ``calc_derivs``), else σ² (RX'RX)⁻¹ (lme4's ``vcov.merMod``)."""
        names = list(self.lformula.X_names)
        p = self.p
        if p == 0:
            return pd.DataFrame(np.zeros((0, 0)))
        rx = self.RX()
        rinv = np.linalg.solve(rx, np.eye(p))
        v = self.sigma**2 * (rinv @ rinv.T)
        derivs = self.optinfo.derivs
        k = len(self._theta)
        hess_avail = derivs is not None and derivs["Hessian"].shape[0] > k
        if use_hessian is None:
            use_hessian = hess_avail
        if use_hessian and not hess_avail:
            raise LmeFormulaError("'use.hessian'=TRUE specified, but Hessian is unavailable")
        if hess_avail:
            assert derivs is not None
            try:
                hinv = np.linalg.inv(derivs["Hessian"])
                vh = hinv[k:, k:]
                vh = vh + vh.T
                bad = not np.all(np.isfinite(vh)) or np.linalg.eigvalsh(vh).min() <= 0
            except np.linalg.LinAlgError:
                vh, bad = np.full((p, p), np.nan), True
            if use_hessian:
                if not bad:
                    v = vh
                else:
                    warnings.warn("variance-covariance matrix computed from finite-difference "
                                  "Hessian is\nnot positive definite or contains NA values: "
                                  "falling back to var-cov estimated from RX",
                                  ConvergenceWarning, stacklevel=2)
        return pd.DataFrame(v, index=names, columns=names)

    def _cond_var_blocks(self) -> list[np.ndarray]:
        from .pls.terms import lower_factors

        blocks = self._problem.inverse_diagonal_blocks(self._factor)
        re = self.lformula.reTrms
        s2 = self.sigma**2
        out = []
        for lam, blk in zip(lower_factors(re.terms, self._theta), blocks, strict=True):
            out.append(s2 * np.einsum("ij,ljk,mk->lim", lam, blk, lam))
        return out

    # -- fitted values and residuals ----------------------------------------------------------
    def fitted(self) -> pd.Series:
        """μ, on the response scale."""
        return self._pad(self._mu, "fitted")

    def residuals(self, type: str = "deviance", scaled: bool = False) -> pd.Series:
        """Residuals of type ``"deviance"`` (default), ``"pearson"``, ``"response"`` or
        ``"working"``, as lme4's ``residuals.glmResp``."""
        resp = self._glmer_devfun.resp
        y, mu = resp.y, self._mu
        if type == "deviance":
            r = np.sign(y - mu) * np.sqrt(np.maximum(self._devres, 0.0))
        elif type == "pearson":
            r = np.sqrt(resp.weights / self.family.variance(mu)) * (y - mu)
        elif type == "response":
            r = y - mu
        elif type == "working":
            r = (y - mu) / self.family.mu_eta(self._eta)
        else:
            raise LmeFormulaError(f"residual type {type!r}: use one of deviance, pearson, "
                                  "working, response")
        if scaled:
            r = r / self.sigma
        return self._pad(r, "residuals")

    def predict(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
                allow_new_levels: bool = False, se_fit: bool = False,
                type: str = "link", *, apply_offset_arg: bool = False) -> Any:
        """Predictions on the link scale (``type="link"``, default) or the response scale
        (``type="response"``), with lme4's ``re_form``, ``newdata``, ``allow_new_levels``.

        ``se_fit=True`` adds standard errors as lme4's ``predict(se.fit = TRUE)`` (1.1-35 and
        later) computes them, with its warning that they are an approximation: on the link
        scale from the joint covariance of the fixed effects and the conditional modes given
        θ at the final PIRLS weights (lme4's ``vcov_full``), and on the response scale times
        |dμ/dη| (the delta method, lme4 1.1-38's correction; lme4 1.1-35 to 1.1-37 returned
        the link-scale values there). Returns a DataFrame with columns ``fit``, ``se_fit``.
        """
        if type not in ("link", "response"):
            raise LmeFormulaError("type must be 'link' or 'response'")
        check_flag(se_fit, "se_fit")
        if se_fit:
            warnings.warn("se.fit computation uses an approximation to estimate the sampling "
                          "distribution of the parameters", LmeFormulaWarning, stacklevel=2)
        out = predict_model(self, newdata, re_form, allow_new_levels, se_fit,
                            apply_offset_arg=apply_offset_arg)
        if type == "link":
            return out
        eta = (out["fit"] if se_fit else out).to_numpy()
        mu = pd.Series(self.family.linkinv(eta), index=out.index, name="fit")
        if not se_fit:
            return mu
        se = out["se_fit"].to_numpy() * np.abs(self.family.mu_eta(eta))
        return pd.DataFrame({"fit": mu, "se_fit": se}, index=out.index)

    def simulate(self, nsim: int = 1, rng: Any = None, use_u: bool = False,
                 re_form: Any = math.nan, newdata: pd.DataFrame | None = None,
                 allow_new_levels: bool = False) -> pd.DataFrame:
        """Responses drawn from the fitted GLMM: new random effects for the terms not in
        ``re_form`` (all by default; none with ``use_u``), then the family's distribution at
        μ (binomial: proportions out of the totals).

        With ``newdata``, the linear predictor on its rows (lme4's ``predict``, so the
        ``offset=`` argument is left out, as lme4 does) and new random effects for its levels
        (a level the fit never saw is an error unless ``allow_new_levels``). A binomial fit
        with totals (``cbind`` or weights) is refused there: the new rows' totals are not
        known (lme4 1.1-31 recycles the fitted rows' totals, with warnings, and returns a
        malformed data frame)."""
        nsim = check_count(nsim, "nsim")
        resp = self._glmer_devfun.resp
        if newdata is not None and self.family.family == "binomial" and np.any(
                np.asarray(resp.weights) != 1.0):
            raise ArgumentError("simulate(newdata=) of a binomial fit with totals (cbind() or "
                                "weights) is not available: the totals of the new rows are "
                                "not known")
        gen = as_generator(rng)
        means = SimulationMeans.of(self, nsim, use_u, re_form, newdata, allow_new_levels)
        draws_of = resp if newdata is None else _Bernoulli(np.ones(means.eta.shape[0]))
        cols = {}
        for s in range(nsim):
            random = means.redrawn(gen)
            eta = means.eta if random is None else means.eta + random
            mu = self.family.linkinv(eta)
            cols[f"sim_{s + 1}"] = _draw(self.family, mu, draws_of, self.sigma, gen)
        return means.frame(cols)

    def getME(self, name: str) -> Any:
        """lme4's ``getME`` for a glmerMod (``"mu"`` is μ on the response scale)."""
        if name == "ALL":
            from .mermod import GETME_NAMES

            return {n: self.getME(n) for n in (*GETME_NAMES, "glmer.nb.theta")}
        if name == "devfun":
            return self._glmer_devfun
        if name == "L":
            return self._problem.sparse_L(self._factor)
        if name == "glmer.nb.theta":
            return math.nan
        return getME(self, name)

    def summary(self) -> GlmerSummary:  # type: ignore[override]
        """lme4's summary of a glmerMod (print it for lme4's layout)."""
        return GlmerSummary(self)

    def __str__(self) -> str:
        return show(self)  # lmeformula.glmerprint's layout, through lmeformula.generics

    def __repr__(self) -> str:
        return self.__str__()


@dataclass(frozen=True)
class _Bernoulli:
    """The prior weights of new rows for a binomial draw: one trial each."""

    weights: np.ndarray


def _draw(family: Any, mu: np.ndarray, resp: Any, sigma: float,
          gen: np.random.Generator) -> np.ndarray:
    name = family.family
    if name == "binomial":
        if np.any(np.asarray(resp.weights) % 1 != 0):  # R's binomial()$simulate refuses them
            raise LmeFormulaError("cannot simulate from non-integer prior.weights")
        ntrials = np.round(resp.weights).astype(np.int64)
        ntrials = np.maximum(ntrials, 1)
        return gen.binomial(ntrials, mu) / ntrials
    if name == "poisson":
        return gen.poisson(mu).astype(float)
    if name == "Gamma":
        shape = 1.0 / sigma**2
        return gen.gamma(shape, mu / shape)
    if name == "inverse.gaussian":
        return np.asarray(stats.invgauss.rvs(mu * sigma**2, scale=1.0 / sigma**2,
                                             random_state=gen))
    return mu + sigma * gen.standard_normal(mu.shape[0])


class GlmerSummary:
    """lme4's ``summary.merMod`` for a GLMM; ``str()`` gives lme4's layout."""

    def __init__(self, model: GlmerMod) -> None:
        self.model = model

    @property
    def coefficients(self) -> pd.DataFrame:
        """Estimate, Std. Error, z value (t value for families with a scale) and
        ``Pr(>|z|)``."""
        m = self.model
        fe = m.fixef
        se = np.sqrt(np.diag(m.vcov().to_numpy())) if len(fe) else np.zeros(0)
        z = fe.to_numpy() / se
        stat = "t value" if m.use_scale else "z value"
        return pd.DataFrame({"Estimate": fe.to_numpy(), "Std. Error": se, stat: z,
                             "Pr(>|z|)": 2.0 * stats.norm.sf(np.abs(z))}, index=fe.index)

    def __str__(self) -> str:
        return show(self)

    __repr__ = __str__
