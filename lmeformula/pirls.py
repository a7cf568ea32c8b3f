"""PIRLS and glmer's deviance functions (lme4's ``mkGlmerDevfun``, ``pwrssUpdate``,
``glmerLaplace`` and ``glmerAGQ``).

At a given θ, penalised iteratively re-weighted least squares finds the conditional modes u
(and, in the first stage, β) of a GLMM: each step re-weights the engine's cross-products of
[Z X y] with the working weights ``w = μ'(η)² a / V(μ)`` and the working response
``z = η - offset + (y - μ)/μ'(η)`` (no structure is rebuilt), factors at θ and solves the
penalised least squares problem for the new (u, β). As in lme4, the iteration stops when the
penalised deviance ``Σ d_i + ‖u‖²`` changes by less than ``tolPwrss`` relatively, and a step
that increases it is halved (up to 20 times) towards the previous solution.

The deviances are lme4's:

* Laplace (nAGQ = 1, and the first stage): ``log|L|² + ‖u‖² + aic(family)``, where the
  family's ``aic`` is -2 log-likelihood of the response at μ (for Gamma and inverse Gaussian,
  with the dispersion estimated by deviance / n and 2 added).
* Adaptive Gauss-Hermite (nAGQ > 1, a single scalar term): per level, the conditional
  deviance ``Σ d_i + u_j²`` at the mode and at the quadrature knots ``u_j + z_k / L_jj``;
  ``Σ_j devc_j + log|L|² - 2 Σ_j log(Σ_k w_k exp(-(devc_jk - devc_j)/2 + z_k²/2))``. The
  deviance residuals leave out the saturated model's constant, so this is not on the Laplace
  deviance's scale.

In the first stage (``nAGQ = 0``) β is solved with u inside PIRLS and the optimizer sees θ
only. In the second the optimizer sees (θ, β): X β is folded into the offset and PIRLS solves
u alone, on a problem built once with no fixed-effects columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import special

from .errors import FittingError
from .families import Family, binomial_aic_parts, logistic_parts, r_nonint
from .pirls_batch import binomial_resid, laplace_batch, poisson_half_resid
from .pirls_constants import DBL_MAX, EPS, MAX_STEP_HALVINGS
from .pls import TermShape, make_problem, term_shapes
from .pls.pirls_chain import ChainStep, ChainXStep, chain_step
from .pls.pirls_kernel import ScalarLinPred, ScalarPirlsKernel, scalar_kernel_fits

__all__ = ["GlmerDevfun", "ghrule", "mkGlmerDevfun"]

_NO_BETA = np.zeros(0)
_NO_BETA.flags.writeable = False
# ndarray.sum() without its Python wrapper (the same reduction: the same sum), ~1 µs a call
_sum = np.add.reduce


def ghrule(k: int) -> np.ndarray:
    """lme4's ``GHrule(k)``: a (k, 3) array of knots z, weights w (summing to 1) and
    log φ(z) for integrals against the standard normal density (symmetrised)."""
    if k == 0:
        return np.zeros((0, 3))
    x, w = np.polynomial.hermite.hermgauss(k)
    z = x * math.sqrt(2.0)
    w = w / w.sum()
    z = (z - z[::-1]) / 2.0
    w = (w + w[::-1]) / 2.0
    ldnorm = -0.5 * z * z - 0.5 * math.log(2.0 * math.pi)
    return np.column_stack([z, w, ldnorm])


def _reweightable(Zt: sp.csc_matrix, X: np.ndarray, terms: list[TermShape],
                  factors: list[tuple[np.ndarray, np.ndarray]], w: np.ndarray,
                  y: np.ndarray) -> Any:
    """The engine's problem, built once; PIRLS re-weights it in place at every step."""
    return make_problem(Zt, X, y, w, terms, factors)


@dataclass
class GlmerResponse:
    """lme4's ``glmResp``: response, prior weights, binomial totals, offset and the current
    linear predictor and mean.

    Attributes
    ----------
    family
        The family.
    y
        The response (proportions for a binomial with totals).
    n
        Binomial totals (ones otherwise).
    weights
        Prior weights (for a ``cbind`` response, times the totals, as R's ``initialize``).
    offset
        The offset in use (stage 2 adds X β to the base offset).
    eta, mu
        Linear predictor (offset included) and mean.
    """

    family: Family
    y: np.ndarray
    n: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    eta: np.ndarray = field(init=False)
    mu: np.ndarray = field(init=False)
    # dμ/dη at the current η when update_mu computed it along with μ (else None)
    _mu_eta: np.ndarray | None = field(init=False, default=None, repr=False)
    # the binomial variance where update_mu formed it (logit link), else None; and whether
    # none of lme4's clamps acted there (the batched evaluation's arithmetic)
    _var: np.ndarray | None = field(init=False, default=None, repr=False)
    _inside: bool = field(init=False, default=False, repr=False)
    # work arrays re-used by every step, and a count of μ's updates (what is kept per μ)
    _buffers: dict[str, np.ndarray] = field(init=False, default_factory=dict, repr=False)
    _version: int = field(init=False, default=0, repr=False)
    # the step's work arrays (η, μ, dμ/dη, w, z, a spare), fetched once per length
    _work: tuple[np.ndarray, ...] = field(init=False, default=(), repr=False)
    # the μ version a snapshot was restored at, and that snapshot's w and (y - μ)/μ'(η)
    _restored: tuple[int, Any] | None = field(init=False, default=None, repr=False)
    _at_snapshot: tuple[Any, np.ndarray, np.ndarray] | None = field(init=False, default=None,
                                                                     repr=False)

    def update_mu(self, gamma: np.ndarray) -> None:
        """η = offset + γ and μ = g⁻¹(η) (``updateMu``).

        For the logit and log links the family's functions are written out here so that
        what ``mu_eta`` shares with ``linkinv`` is computed once per step (for the log link
        dμ/dη is μ; for the logit, μ, dμ/dη and the binomial variance by
        :func:`~lmeformula.families.logistic_parts`, lme4's formulas, which also tells
        whether any of lme4's clamps acted). η, μ, dμ/dη and the variance are written into
        arrays this response owns and re-uses at every step (callers that keep them copy
        them)."""
        n = gamma.shape[0]
        self._version += 1
        work = self._work_arrays(n)
        self.eta = eta = np.add(self.offset, gamma, out=work[0])
        self._var = None
        self._inside = False
        link = self.family.link.name
        if link == "logit":
            mu, me, var, inside = logistic_parts(eta, work[1], work[2], self._buffer("var", n),
                                                 work[5])
            self.mu, self._mu_eta = mu, me
            if self.family.family == "binomial":
                self._var, self._inside = var, inside
        elif link == "log":
            mu = np.exp(eta, out=work[1])
            self.mu = np.maximum(mu, EPS, out=mu)
            self._mu_eta = self.mu
        else:
            self.mu = self.family.linkinv(eta)
            self._mu_eta = None

    def _work_arrays(self, n: int) -> tuple[np.ndarray, ...]:
        """The step's work arrays of length n: η, μ, dμ/dη, w, z and a spare."""
        work = self._work
        if not work or work[0].shape[0] != n:
            work = self._work = tuple(self._buffer(name, n) for name in
                                      ("eta", "mu", "mu_eta", "w", "z", "tmp"))
        return work

    def _buffer(self, name: str, n: int) -> np.ndarray:
        """A work array of length n owned by this response (kept between steps: fresh
        arrays of 10^5 rows cost page faults at every pass)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] != n:
            buf = self._buffers[name] = np.empty(n)
        return buf

    def _binary(self) -> tuple[np.ndarray, np.ndarray] | None:
        """For a binomial response of 0s and 1s with unit weights and totals (VerbAgg, any
        Bernoulli response without weights), the rows with y = 1 and with y = 0; else None.

        There the family's aic is -2 Σ log p_i with log p_i = log μ_i (y = 1) or
        log(1 - μ_i) (y = 0), its μ-free parts being exactly 0 and 1 (checked, not
        assumed), and the deviance residuals are -2 log p_i, the same quantities."""
        found = self.__dict__.get("_binary_rows")
        if found is None:
            found = (None,)
            if self.family.family == "binomial":
                y, wt, n = self.y, self.weights, self.n
                const, k, rest, factor = binomial_aic_parts(y, n, wt)
                one = (k == 1.0) & (rest == 0.0) & (y == 1.0)
                zero = (k == 0.0) & (rest == 1.0) & (y == 0.0)
                if (np.all(one | zero) and np.all(const == 0.0) and np.all(factor == 1.0)
                        and np.all(wt == 1.0)):
                    found = (np.flatnonzero(one), np.flatnonzero(zero))
            self.__dict__["_binary_rows"] = found
        return None if found[0] is None else found  # type: ignore[return-value]

    def _binary_logp(self, rows: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """log p_i at the current μ (binary responses): ``log μ`` where y = 1 and
        ``log1p(-μ)`` where y = 0, scipy's ``log1p`` as the aic's ``xlog1py`` computes it,
        so that the aic's terms are the same numbers. Kept until μ changes."""
        if self.__dict__.get("_logp_version") == self._version:
            return self._buffers["logp"]
        ones, zeros = rows
        mu = self.mu
        logp = self._buffer("logp", mu.shape[0])
        a = np.take(mu, ones, out=self._buffer("logp_1", ones.shape[0]))
        logp[ones] = np.log(a, out=a)
        b = np.take(mu, zeros, out=self._buffer("logp_0", zeros.shape[0]))
        np.negative(b, out=b)
        logp[zeros] = special.log1p(b, out=b)
        self.__dict__["_logp_version"] = self._version
        return logp

    def dev_sum(self) -> float:
        """Σ of the deviance residuals at μ (PIRLS's convergence test). For binary responses
        -2 Σ log p_i, the aic's terms (the family's y log(y/μ) terms are the same
        quantities, equal to round-off: this sum only decides when PIRLS stops)."""
        return self.dev_sum_function()()

    def dev_sum_function(self) -> Any:
        """The method :meth:`dev_sum` calls for this response (chosen once)."""
        fn = self.__dict__.get("_dev_sum_fn")
        if fn is None:
            fam = self.family.family
            if self._binary() is not None:
                fn = self._binary_dev_sum
            elif fam == "binomial":
                fn = self._binomial_dev_sum
            elif fam == "poisson":
                fn = self._poisson_dev_sum
            else:
                fn = self._general_dev_sum
            self.__dict__["_dev_sum_fn"] = fn
        return fn

    def _binary_dev_sum(self) -> float:
        rows = self._binary()
        assert rows is not None
        return -2.0 * float(_sum(self._binary_logp(rows)))

    def _general_dev_sum(self) -> float:
        return float(self.dev_resid().sum())

    def _binomial_dev_sum(self) -> float:
        """``dev_resid().sum()`` for the binomial family."""
        return float(_sum(self._binomial_resid()))

    def _binomial_resid(self) -> np.ndarray:
        """The binomial deviance residuals, formed in place
        (:func:`lmeformula.pirls_batch.binomial_resid`)."""
        return binomial_resid(self, self.mu)

    def _poisson_dev_sum(self) -> float:
        """``dev_resid().sum()`` for the Poisson family: the residuals over 2, summed, times
        2 (a power of two: the same sum, scaled exactly)."""
        return 2.0 * float(_sum(self._poisson_half_resid()))

    def _poisson_half_resid(self) -> np.ndarray:
        """Half the Poisson deviance residuals, wt (y log(y/μ) - (y - μ)) (wt μ where y = 0),
        formed in place (:func:`lmeformula.pirls_batch.poisson_half_resid`)."""
        return poisson_half_resid(self, self.mu, self._unit_weights())

    def _twice_weights(self) -> np.ndarray:
        tw: np.ndarray | None = self.__dict__.get("_twice_wt")
        if tw is None:
            tw = self.__dict__["_twice_wt"] = 2.0 * self.weights
        return tw

    def _dev_index(self) -> list[np.ndarray]:
        """Where the binomial and Poisson deviance residuals take logarithms, and the
        response (and weights) there."""
        idx: list[np.ndarray] | None = self.__dict__.get("_dev_index_")
        if idx is None:
            y = self.y
            if self.family.family == "binomial":
                i1, i2 = np.flatnonzero(y > 0), np.flatnonzero(1.0 - y > 0)
                idx = [i1, y[i1], i2, (1.0 - y)[i2]]
            else:
                i1 = np.flatnonzero(y > 0)
                idx = [i1, y[i1], self.weights[i1]]
            self.__dict__["_dev_index_"] = idx
        return idx

    def dev_resid(self) -> np.ndarray:
        """Deviance residuals (each observation's deviance). For the binomial and Poisson
        families the logarithms are taken only where the response makes them count (the
        family's formula, element by element)."""
        fam = self.family.family
        if fam not in ("binomial", "poisson"):
            return self.family.dev_resids(self.y, self.mu, self.weights)
        if fam == "binomial":
            return self._binomial_resid()
        return 2.0 * self._poisson_half_resid()

    def aic(self) -> float:
        """The family's aic at μ (for the binomial and Poisson families, with the parts
        that do not depend on μ computed once: the same sums in the same order as
        ``family.aic``)."""
        fam = self.family.family
        rows = self._binary()
        if rows is not None:
            # the sum below with its factors 1 and constants 0 left out (exact)
            return float(-2.0 * _sum(self._binary_logp(rows)))
        if fam == "binomial":
            const, k, rest, factor, nonzero, plain = self._aic_parts()
            logp = special.xlogy(k, self.mu)
            np.add(const, logp, out=logp)
            logp += special.xlog1py(rest, -self.mu)
            if plain:  # every factor 1 and every row counted: the where is the identity
                return -2.0 * float(_sum(logp))
            return float(-2.0 * np.sum(np.where(nonzero, factor * logp, 0.0)))
        if fam == "poisson":
            gam = self._aic_parts()[0]
            logp = special.xlogy(self.y, self.mu)
            logp -= self.mu
            logp -= gam
            if not self._unit_weights():  # (times 1: the same numbers)
                logp *= self.weights
            return -2.0 * float(_sum(logp))
        dev = float(self.dev_resid().sum())
        return self.family.aic(self.y, self.n, self.mu, self.weights, dev)

    def _aic_parts(self) -> tuple[Any, ...]:
        """The μ-free parts of the binomial and Poisson aic (as ``Family.aic`` forms them)."""
        parts: tuple[Any, ...] | None = self.__dict__.get("_aic_cache")
        if parts is None:
            y, n, wt = self.y, self.n, self.weights
            if self.family.family == "binomial":
                const, k, rest, factor = binomial_aic_parts(y, n, wt)
                nonzero = factor != 0
                plain = bool(np.all(factor == 1.0) and np.all(nonzero))
                parts = (const, k, rest, factor, nonzero, plain)
            else:
                # R's dpois: a non-integer count has probability 0 (Family.aic)
                parts = (np.where(r_nonint(y), np.inf, special.gammaln(y + 1)),)
            self.__dict__["_aic_cache"] = parts
        return parts

    def working(self, z_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Working weights and working response (offset removed) at the current μ:
        ``w = μ'(η)² a / V(μ)`` and ``z = (η - offset) + (y - μ)/μ'(η)``, pass by pass in
        that order (the multiplication by the prior weights left out where they are all 1,
        which is exact). ``w`` is written into an array this response re-uses at every step,
        ``z`` into ``z_out`` when given (the scalar kernel's own row) or into another."""
        work = self._work_arrays(self.mu.shape[0])
        restored = self._restored
        if restored is not None and restored[0] == self._version:
            # μ is a restored snapshot's (every evaluation's first step starts there): its w
            # and (y - μ)/μ'(η) are the same at each restore, so formed once (into arrays of
            # their own, never written again) and z = that + (η - offset), the same sum
            cached = self._at_snapshot
            if cached is None or cached[0] is not restored[1]:
                w0, zq0 = self._working_parts(np.empty(work[0].shape[0]),
                                              np.empty(work[0].shape[0]))
                cached = self._at_snapshot = (restored[1], w0, zq0)
            tmp = np.subtract(self.eta, self.offset, out=work[5])
            return cached[1], np.add(cached[2], tmp, out=work[4] if z_out is None else z_out)
        w, z = self._working_parts(work[3], work[4] if z_out is None else z_out)
        z += np.subtract(self.eta, self.offset, out=work[5])
        return w, z

    def _working_parts(self, w_out: np.ndarray,
                       z_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """w = μ'(η)² a / V(μ) and (y - μ)/μ'(η), into the arrays given."""
        mu_eta = self._mu_eta
        if mu_eta is None:
            mu_eta = self.family.mu_eta(self.eta)
        var = self._var
        if var is None:
            fam = self.family.family
            if fam == "binomial":
                var = np.maximum(self.mu * (1.0 - self.mu), EPS)
            elif fam == "poisson":
                var = self.mu
            else:
                var = self.family.variance(self.mu)
        w = np.multiply(mu_eta, mu_eta, out=w_out)
        if not self._unit_weights():
            w *= self.weights
        w /= var
        z = np.subtract(self.y, self.mu, out=z_out)
        z /= mu_eta
        return w, z

    def _unit_weights(self) -> bool:
        flag = self.__dict__.get("_unit")
        if flag is None:
            flag = self.__dict__["_unit"] = bool(np.all(self.weights == 1.0))
        return bool(flag)

    def snapshot(self) -> tuple[Any, ...]:
        """Copies of η, μ, dμ/dη (and whether it is μ's array) and the variance, and
        whether lme4's clamps left them alone, for :meth:`restore`."""
        me, var = self._mu_eta, self._var
        return (self.eta.copy(), self.mu.copy(), None if me is None else me.copy(),
                me is not None and me is self.mu, None if var is None else var.copy(),
                self._inside)

    def restore(self, snap: tuple[Any, ...]) -> None:
        """η, μ and dμ/dη from a :meth:`snapshot` (its arrays are read, never written: the
        next :meth:`update_mu` writes into this response's own arrays)."""
        eta, mu, me, me_is_mu, var, inside = snap
        self._version += 1
        self._restored = (self._version, snap)
        self.eta, self.mu = eta, mu
        self._mu_eta = mu if me_is_mu else me
        self._var, self._inside = var, inside

    def wrss(self) -> float:
        """Σ a (y - μ)² / V(μ): lme4's weighted residual sum of squares after ``updateWts``."""
        return float(np.sum(self.weights * (self.y - self.mu) ** 2
                            / self.family.variance(self.mu)))


@dataclass
class PirlsState:
    """What lme4's predictor module keeps between evaluations: θ, the last solution (u, β),
    the weights and working response of the last factorisation and that factorisation."""

    theta: np.ndarray
    u: np.ndarray
    beta: np.ndarray
    w: np.ndarray | None = None
    z: np.ndarray | None = None
    factor: Any = None
    ldL2: float = 0.0
    iterations: int = 0


class GlmerDevfun:
    """lme4's glmer deviance function (``mkGlmerDevfun`` / ``updateGlmerDevfun``).

    Calling it with θ (``nAGQ = 0``) or with (θ, β) (``nAGQ >= 1``) runs PIRLS from the
    stored linear predictor ``lp0`` and returns the deviance; the state of the last
    evaluation (u, β, μ, the factorisation) is kept, as lme4's modules keep theirs.

    Attributes
    ----------
    nAGQ
        0 (θ only), 1 (Laplace over (θ, β)) or k > 1 (adaptive Gauss-Hermite).
    lower
        Bounds of the parameters the optimizer sees.
    evaluations
        Number of calls.
    """

    def __init__(self, pf: Any, family: Family, nAGQ: int = 0, tolPwrss: float = 1e-7,
                 maxit: int = 100, mustart: np.ndarray | None = None,
                 use_kernel: bool | None = None) -> None:
        re = pf.reTrms
        self.pf = pf
        self.family = family
        self.tolPwrss = float(tolPwrss)
        self.maxit = int(maxit)
        X = np.ascontiguousarray(pf.X_values, dtype=float)
        self.X = X
        n_obs = X.shape[0]
        prior = np.ones(n_obs) if pf.weights is None else np.asarray(pf.weights, float)
        if np.any(prior < 0):
            raise FittingError("negative weights not allowed")
        y, w, ntot, mu0 = family.initialize(pf.y, prior)
        if mustart is not None:
            mu0 = np.asarray(mustart, float)
        base = np.zeros(n_obs) if pf.offset is None else np.asarray(pf.offset, float)
        self.base_offset = base
        self.resp = GlmerResponse(family, y, ntot, w, base.copy())
        shapes = term_shapes(re.terms)
        self.shapes = shapes
        factors = re.level_factors()
        self.Zt = re.Zt
        self._factors = factors
        self._lambdat = re.Lambdat.copy()
        self._lind = re.Lind
        self._y0 = y
        self._lp0_mu: tuple[np.ndarray, tuple[Any, ...]] | None = None
        self._problems: dict[bool, Any] = {}
        # scalar terms: Z Λ u by gathers over the codes, and PIRLS steps by the scalar
        # kernel where its dense parts are small (else by the engine's problems)
        self._scalar = all(t.nc == 1 for t in shapes)
        self._kernels: dict[bool, ScalarPirlsKernel | ChainStep | ChainXStep] = {}
        if self._scalar:
            codes = [c for c, _ in factors]
            xs = [x[:, 0] for _, x in factors]
            self._codes, self._xs = codes, xs
            self._ones = [bool(np.all(x == 1.0)) for x in xs]
            self._offsets = np.cumsum([0] + [t.nl for t in shapes]).astype(np.int64)
            self._zlu = ScalarLinPred(codes, xs, self._ones, self._offsets)
            nls = [t.nl for t in shapes]
            if use_kernel is None:
                use_kernel = scalar_kernel_fits(nls, [1] * len(nls), X.shape[1], codes)
            if use_kernel:
                self._kernels = {False: chain_step(ScalarPirlsKernel(codes, xs, nls, X)),
                                 True: chain_step(ScalarPirlsKernel(codes, xs, nls, X[:, :0]))}
        self.theta_lower = re.lower.copy()
        q, p = re.Zt.shape[0], X.shape[1]
        self.state = PirlsState(re.theta.copy(), np.zeros(q), np.zeros(p))
        self.evaluations = 0
        self.pirls_iterations = 0  # PIRLS steps over all evaluations (for benchmarks)
        # the first PIRLS, from mustart: lme4 sets η = offset + g(mustart)
        self._eta_start = family.linkfun(mu0)  # (refit's PIRLS starts from it too)
        self.resp.update_mu(self._eta_start)
        self.nAGQ = 0
        self._pwrss_update(self.state.theta, u_only=nAGQ > 0)
        self.lp0 = self._lin_pred(self.state.theta, self.state.u, self.state.beta)
        self.lower = self.theta_lower.copy()
        self.GQmat = ghrule(0)
        if nAGQ > 0:
            self.update(nAGQ)

    # the engine's re-weightable problems (θ, β) and u-only, built on first use
    def _problem(self, u_only: bool) -> Any:
        problem = self._problems.get(u_only)
        if problem is None:
            X = self.X[:, :0] if u_only else self.X
            problem = _reweightable(self.Zt, X, self.shapes, self._factors,
                                    np.ones(self.X.shape[0]), self._y0)
            self._problems[u_only] = problem
        return problem

    @property
    def full(self) -> Any:
        """The engine's problem with X (the first stage's PIRLS)."""
        return self._problem(False)

    @property
    def uonly(self) -> Any:
        """The engine's problem without X (the second stage's PIRLS, β fixed)."""
        return self._problem(True)

    # -- lme4's updateGlmerDevfun -------------------------------------------------------------
    def update(self, nAGQ: int) -> None:
        """Switch to the (θ, β) deviance with ``nAGQ`` (lme4's ``updateGlmerDevfun``)."""
        nAGQ = int(nAGQ)
        if nAGQ > 1:
            re = self.pf.reTrms
            if len(re.flist) != 1 or len(re.cnms[0]) != 1:
                raise FittingError("nAGQ > 1 is only available for models with a single, "
                                   "scalar random-effects term")
        self.nAGQ = nAGQ
        self.lower = np.concatenate([self.theta_lower, np.full(self.X.shape[1], -np.inf)])
        self.lp0 = self._lin_pred(self.state.theta, self.state.u, self.state.beta)
        self.GQmat = ghrule(nAGQ)

    def refit_start(self, theta: np.ndarray, u: np.ndarray, beta: np.ndarray,
                    u_only: bool) -> None:
        """Start from a fitted model's point, as lme4's ``refit`` does for a glmerMod: the
        new response's μ from its ``mustart`` (a fresh response module), one PIRLS at the
        fitted θ — over u alone with ``beta`` in the linear predictor (``u_only``, a fit
        with a second stage) or over (u, β) (nAGQ = 0) — as lme4's ``glmerPwrssUpdate`` on
        a copy of the fit's predictor module, and ``lp0`` there."""
        s = self.state
        s.theta = np.asarray(theta, float).copy()
        s.u = np.asarray(u, float).copy()
        s.beta = np.asarray(beta, float).copy()
        self.resp.offset = self.base_offset
        self.resp.update_mu(self._eta_start)
        if u_only and s.beta.size:  # (u-only PIRLS puts X β in the offset)
            self.resp.offset = self.base_offset + self.X @ s.beta
        self._pwrss_update(s.theta, u_only=u_only)
        self.resp.offset = self.base_offset
        self.lp0 = self._lin_pred(s.theta, s.u, s.beta)

    @property
    def ntheta(self) -> int:
        """Length of θ."""
        return int(self.theta_lower.shape[0])

    @property
    def nobs(self) -> int:
        """Number of observations."""
        return int(self.X.shape[0])

    # -- the deviance -------------------------------------------------------------------------
    def __call__(self, pars: np.ndarray) -> float:
        self.evaluations += 1
        pars = np.asarray(pars, dtype=float)
        resp = self.resp
        if self.nAGQ == 0:
            resp.offset = self.base_offset
            self._start_mu()
            return self._laplace(pars.copy(), u_only=False)
        k = self.ntheta
        theta, beta = pars[:k].copy(), pars[k:].copy()
        resp.offset = self.base_offset
        self._start_mu()
        resp.offset = self.base_offset + self.X @ beta if beta.size else self.base_offset
        self.state.beta = beta
        if self.nAGQ == 1:
            return self._laplace(theta, u_only=True)
        return self._agq(theta)

    def batch(self, points: np.ndarray) -> np.ndarray:
        """The deviance at each row of ``points`` (deriv12's), in that order: together
        where :func:`lmeformula.pirls_batch.laplace_batch` applies (the same values), else
        one by one."""
        out = laplace_batch(self, points)
        if out is None:
            out = np.array([self(p) for p in np.asarray(points, dtype=float)])
        return out

    def _start_mu(self) -> None:
        """η and μ at ``lp0`` with the base offset, where every evaluation starts (lme4's
        ``updateMu`` with ``lp0``): the same arrays at every evaluation of a stage, so
        computed once per ``lp0`` (the responses' arrays are replaced, never modified)."""
        resp = self.resp
        cache = self._lp0_mu
        if cache is not None and cache[0] is self.lp0:
            resp.restore(cache[1])
            return
        resp.update_mu(self.lp0)
        self._lp0_mu = (self.lp0, resp.snapshot())

    def _laplace(self, theta: np.ndarray, u_only: bool) -> float:
        self._pwrss_update(theta, u_only)
        s = self.state
        return s.ldL2 + float(s.u @ s.u) + self.resp.aic()

    # -- PIRLS ----------------------------------------------------------------------------------
    def _lambdat_at(self, theta: np.ndarray) -> sp.csc_matrix:
        self._lambdat.data = theta[self._lind]
        return self._lambdat

    def _lin_pred(self, theta: np.ndarray, u: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """X β + Z Λ u (no offset)."""
        if self._scalar:
            zb = self._zlu(theta, u)
        else:
            Z = self.__dict__.get("_Z")
            if Z is None:  # Z in CSR, formed on first use (the scalar terms gather instead)
                Z = self.__dict__["_Z"] = self.Zt.T.tocsr()
            zb = Z @ (self._lambdat_at(theta).T @ u)
        if beta.size:
            zb += self.X @ beta
        return zb

    def _pdev(self) -> float:
        s = self.state
        return self.resp.dev_sum() + float(s.u @ s.u)

    def _pwrss_update(self, theta: np.ndarray, u_only: bool) -> None:
        """lme4's ``pwrssUpdate``: PIRLS at θ, with step halving."""
        s, resp = self.state, self.resp
        s.theta = theta
        kernel = self._kernels.get(u_only)
        old_pdev = DBL_MAX
        tol = self.tolPwrss
        beta_fixed = _NO_BETA
        last: Any = None  # the last kernel step: its ldL2 is read once, after the loop
        row = None if kernel is None else kernel.response_row()
        dev_sum = resp.dev_sum_function()
        for it in range(self.maxit):
            old_u, old_beta = s.u, s.beta
            w, z = resp.working(row)
            step = None if kernel is None else kernel.step(theta, w, z)
            if step is None:  # the engine (which also diagnoses a failed factorisation)
                problem = self._problem(u_only)
                problem.reweight(w, z)
                f = problem.factor(theta)
                beta, u = problem.solve(f)
                s.w, s.z, s.factor, s.ldL2 = w, z, f, float(f.ldL2)
                last = None
            else:
                beta, u = step.beta, step.u
                s.w, s.z, s.factor = w, z, None
                last = step
            s.u = np.asarray(u, float)
            if not u_only:
                s.beta = np.asarray(beta, float)
            bvec = beta_fixed if u_only else s.beta
            resp.update_mu(self._lin_pred(theta, s.u, bvec))
            pdev = dev_sum() + float(s.u @ s.u)  # (_pdev)
            s.iterations = it + 1
            self.pirls_iterations += 1
            if abs((old_pdev - pdev) / pdev) < tol:
                if last is not None:
                    s.ldL2 = last.ldL2
                return
            if math.isnan(pdev) or pdev > old_pdev:
                k = 0
                while k < MAX_STEP_HALVINGS and (math.isnan(pdev) or pdev > old_pdev):
                    s.u = (old_u + s.u) / 2.0
                    if not u_only:
                        s.beta = (old_beta + s.beta) / 2.0
                    bvec = beta_fixed if u_only else s.beta
                    resp.update_mu(self._lin_pred(theta, s.u, bvec))
                    pdev = self._pdev()
                    k += 1
                if math.isnan(pdev):
                    raise FittingError("PIRLS loop resulted in NaN value")
                if pdev - old_pdev > tol:
                    raise FittingError("(maxstephalfit) PIRLS step-halvings failed to reduce "
                                       "deviance in pwrssUpdate")
            old_pdev = pdev
        raise FittingError("pwrssUpdate did not converge in (maxit) iterations")

    # -- adaptive Gauss-Hermite quadrature ---------------------------------------------------
    def _agq(self, theta: np.ndarray) -> float:
        """lme4's ``glmerAGQ`` for a single scalar term."""
        self._pwrss_update(theta, u_only=True)
        s, resp = self.state, self.resp
        codes = np.asarray(self.pf.reTrms.terms[0].factor.codes, dtype=np.int64)
        q = s.u.shape[0]

        def devc(u: np.ndarray) -> np.ndarray:
            return u * u + np.bincount(codes, weights=resp.dev_resid(), minlength=q)

        devc0 = devc(s.u)
        # the diagonal of L for one scalar term: 1 + θ² Σ_{i in level} w_i z_i²
        zcol = np.asarray(self.pf.reTrms.terms[0].X, dtype=float)[:, 0]
        assert s.w is not None
        ldiag = np.sqrt(1.0 + theta[0] ** 2 * np.bincount(codes, weights=s.w * zcol * zcol,
                                                            minlength=q))
        sd = 1.0 / ldiag
        mult = np.zeros(q)
        u_mode = s.u
        for zk, wk, ld in self.GQmat:
            if zk == 0.0:
                mult += wk
                continue
            uk = u_mode + zk * sd
            resp.update_mu(self._lin_pred(theta, uk, np.zeros(0)))
            mult += np.exp(-0.5 * (devc(uk) - devc0) - ld) * wk / math.sqrt(2.0 * math.pi)
        resp.update_mu(self._lin_pred(theta, u_mode, np.zeros(0)))
        return float(devc0.sum() + s.ldL2 - 2.0 * np.log(mult).sum())

    # -- what the fitted model needs ---------------------------------------------------------
    @property
    def beta(self) -> np.ndarray:
        """β of the last evaluation (the optimizer's β in stage 2)."""
        return self.state.beta.copy()

    def final_factor(self) -> tuple[Any, Any]:
        """A problem of its own (with X) weighted with the last factorisation's weights, and
        its factor at the last θ: lme4's ``pp`` after the last PIRLS step (L, RZX, RX). It
        is built anew so that later evaluations of this function do not change it."""
        s = self.state
        assert s.w is not None and s.z is not None
        # (copies: the PIRLS steps write their weights and response into re-used arrays)
        problem = make_problem(self.Zt, self.X, s.z.copy(), s.w.copy(), self.shapes,
                               self._factors)
        return problem, problem.factor(s.theta)

    def unsc(self) -> np.ndarray:
        """(RX'RX)⁻¹ at the last evaluation (lme4's ``pp$unsc()``)."""
        problem, f = self.final_factor()
        p = self.X.shape[1]
        if p == 0:
            return np.zeros((0, 0))
        rx = problem.rx(f)
        rinv = np.linalg.solve(rx, np.eye(p))
        return np.asarray(rinv @ rinv.T)


def mkGlmerDevfun(pf: Any, family: Family, nAGQ: int = 0, tolPwrss: float = 1e-7,
                  maxit: int = 100) -> GlmerDevfun:
    """lme4's ``mkGlmerDevfun``: the deviance function of a :func:`glFormula` result, after
    the first PIRLS from the family's starting values.

    Parameters
    ----------
    pf
        The result of :func:`lmeformula.glFormula`.
    family
        The family.
    nAGQ
        0 for the θ-only deviance; ≥ 1 for the (θ, β) one.
    tolPwrss, maxit
        PIRLS tolerance and iteration limit.
    """
    return GlmerDevfun(pf, family, nAGQ, tolPwrss, maxit)
