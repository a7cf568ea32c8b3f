"""GLM families and links, as R's ``stats`` defines them (``binomial()``, ``poisson()`` ...).

The numerical functions are the ones lme4's fits use (its C++ ``glmFamily``): inverse links
and dμ/dη clamped to [ε, 1 - ε] where lme4 clamps them, the binomial variance floored at ε,
so that a fit agrees with lme4's to round-off; they equal R's ``family`` functions away from
those clamps.

Each family carries R's link functions (``linkfun``, ``linkinv``, ``mu_eta``, ``valideta``),
its variance function, deviance residuals, ``aic`` (R's, used by lme4's Laplace deviance),
``validmu`` and ``initialize`` (R's starting values and error messages). Families are given
as strings (``"binomial"``) or objects (``binomial(link="probit")``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

from .errors import LmeFormulaError

__all__ = ["Family", "Gamma", "Link", "binomial", "gaussian", "get_family", "inverse_gaussian",
           "logistic_parts", "make_link", "poisson"]

Array = np.ndarray
_EPS = np.finfo(float).eps


class FamilyError(LmeFormulaError):
    """A family, link or response R's family objects refuse."""


@dataclass(frozen=True)
class Link:
    """A link function: η = g(μ), its inverse and dμ/dη (R's ``make.link``)."""

    name: str
    linkfun: Callable[[Array], Array] = field(repr=False)
    linkinv: Callable[[Array], Array] = field(repr=False)
    mu_eta: Callable[[Array], Array] = field(repr=False)
    valideta: Callable[[Array], bool] = field(repr=False)


def _always(eta: Array) -> bool:
    return True


# exp(-|η|) at least this: none of lme4's logistic clamps and floors acts (logistic_parts)
_INNER_E = 8.0 * _EPS


def logistic_parts(eta: Array, mu_out: Array | None = None, me_out: Array | None = None,
                   var_out: Array | None = None, tmp: Array | None = None,
                   ) -> tuple[Array, Array, Array, bool]:
    """lme4 1.1-31's logit link and binomial variance at η (its C++ ``glmFamily``, checked
    through ``lme4::glmFamily``): μ = plogis(η) kept inside [ε, 1 - ε]; dμ/dη =
    max(dlogis(η), ε) with R's dlogis e / (1 + e)², e = exp(-|η|), accurate in both tails;
    V(μ) = max(μ (1 - μ), ε) of that μ. Where μ is near 1, 1 - μ keeps only the bits μ's
    rounding left, so V(μ) and dμ/dη differ there (at η = 20, μ (1 - μ) is 3.6e-8 above
    dlogis) as in lme4, and so do the working weights μ'(η)² / V(μ) (forming dμ/dη as
    μ (1 - μ) put a separated fit's variance from RX 6 % off lme4's at η = 37).

    μ is scipy's expit (R's plogis formula with the C library's exp, as before this function
    existed: the arithmetic lme4's paths are matched with). With e = exp(-|η|) (numpy's
    vectorised exp) and s = max(μ, 1 - μ) = 1 / (1 + e) in either tail, dlogis(η) =
    e s²: accurate in both tails for one vectorised exponential and plain passes, into the
    arrays given (``tmp`` a scratch array; else new ones), elementwise on η of any shape.
    Returns (μ, dμ/dη, V, inside): ``inside`` when e >= 8ε everywhere, where none of the
    clamps and floors acts (4ε < μ <= 1 - 3ε, dμ/dη > ε, μ (1 - μ) > ε), so the results are
    the plain formulas."""
    mu = special.expit(eta, out=mu_out)
    e = np.abs(eta, out=me_out)
    np.negative(e, out=e)
    np.exp(e, out=e)  # e = exp(-|η|)
    inside = bool(e.size == 0 or float(e.min()) >= _INNER_E)
    t = np.subtract(1.0, mu, out=var_out)  # 1 - μ
    s = np.maximum(mu, t, out=tmp)  # 1 / (1 + e)
    s *= s
    me = np.multiply(e, s, out=e)  # e / (1 + e)², R's dlogis
    if not inside:
        np.clip(mu, _EPS, 1.0 - _EPS, out=mu)
        np.maximum(me, _EPS, out=me)
    var = np.subtract(1.0, mu, out=t) if not inside else t
    var *= mu
    if not inside:
        np.maximum(var, _EPS, out=var)
    return mu, me, var, inside


def _logit_inv(eta: Array) -> Array:
    return logistic_parts(np.asarray(eta, float))[0]


def _logit_mu_eta(eta: Array) -> Array:
    return logistic_parts(np.asarray(eta, float))[1]


def _probit_inv(eta: Array) -> Array:
    return np.minimum(special.ndtr(eta), 1.0 - _EPS)


def _probit_mu_eta(eta: Array) -> Array:
    return np.exp(-0.5 * eta * eta) / math.sqrt(2.0 * math.pi)


def _cauchit_inv(eta: Array) -> Array:
    return np.minimum(stats.cauchy.cdf(eta), 1.0 - _EPS)


def _cloglog_inv(eta: Array) -> Array:
    with np.errstate(over="ignore"):  # (exp(η) = inf above 709: μ = 1, clamped as lme4's)
        return np.clip(-np.expm1(-np.exp(eta)), _EPS, 1.0 - _EPS)


def _cloglog_mu_eta(eta: Array) -> Array:
    with np.errstate(over="ignore"):
        return np.maximum(np.exp(eta - np.exp(eta)), _EPS)


def _log_inv(eta: Array) -> Array:
    return np.maximum(np.exp(eta), _EPS)


def _nonzero(eta: Array) -> bool:
    return bool(np.all(np.isfinite(eta)) and np.all(eta != 0))


def _positive(eta: Array) -> bool:
    return bool(np.all(np.isfinite(eta)) and np.all(eta > 0))


def _logit(mu: Array) -> Array:
    # R's C logit link refuses μ outside [0, 1] (a cbind response with negative failures
    # gives such a starting μ): its message, naming the first such value
    bad = (mu < 0.0) | (mu > 1.0)
    if np.any(bad):
        raise FamilyError(f"Value {float(np.asarray(mu)[bad].flat[0]):g} out of range (0, 1)")
    return np.log(mu / (1.0 - mu))


_LINKS: dict[str, Link] = {
    "logit": Link("logit", _logit, _logit_inv, _logit_mu_eta,
                  _always),
    "probit": Link("probit", lambda mu: special.ndtri(mu), _probit_inv, _probit_mu_eta,
                   _always),
    "cauchit": Link("cauchit", lambda mu: stats.cauchy.ppf(mu), _cauchit_inv,
                    lambda eta: stats.cauchy.pdf(eta), _always),
    "cloglog": Link("cloglog", lambda mu: np.log(-np.log1p(-mu)), _cloglog_inv,
                    _cloglog_mu_eta, _always),
    "identity": Link("identity", lambda mu: np.asarray(mu, float).copy(),
                     lambda eta: np.asarray(eta, float).copy(),
                     lambda eta: np.ones_like(np.asarray(eta, float)), _always),
    "log": Link("log", lambda mu: np.log(mu), _log_inv, _log_inv, _always),
    "sqrt": Link("sqrt", lambda mu: np.sqrt(mu), lambda eta: eta**2, lambda eta: 2.0 * eta,
                 _positive),
    "1/mu^2": Link("1/mu^2", lambda mu: 1.0 / mu**2, lambda eta: 1.0 / np.sqrt(eta),
                   lambda eta: -1.0 / (2.0 * eta**1.5), _positive),
    "inverse": Link("inverse", lambda mu: 1.0 / mu, lambda eta: 1.0 / eta,
                    lambda eta: -1.0 / eta**2, _nonzero),
}


def make_link(link: str) -> Link:
    """R's ``make.link``: the link called ``link``."""
    if link not in _LINKS:
        raise FamilyError(f"'{link}' link not recognised")
    return _LINKS[link]


@dataclass(frozen=True)
class Family:
    """An R ``family`` object: its name, link and the functions lme4's PIRLS uses.

    Attributes
    ----------
    family
        R's family name (``"binomial"``, ``"poisson"``, ``"Gamma"``, ``"gaussian"``,
        ``"inverse.gaussian"``).
    link
        The :class:`Link`.
    """

    family: str
    link: Link

    # -- link -------------------------------------------------------------------------------
    def linkfun(self, mu: Array) -> Array:
        """η = g(μ)."""
        return self.link.linkfun(np.asarray(mu, float))

    def linkinv(self, eta: Array) -> Array:
        """μ = g⁻¹(η)."""
        return self.link.linkinv(np.asarray(eta, float))

    def mu_eta(self, eta: Array) -> Array:
        """dμ/dη."""
        return self.link.mu_eta(np.asarray(eta, float))

    def valideta(self, eta: Array) -> bool:
        """Whether η is valid for the link."""
        return self.link.valideta(np.asarray(eta, float))

    # -- distribution -----------------------------------------------------------------------
    def variance(self, mu: Array) -> Array:
        """The variance function V(μ)."""
        mu = np.asarray(mu, float)
        if self.family == "binomial":
            return np.maximum(mu * (1.0 - mu), _EPS)
        if self.family == "poisson":
            return mu.copy()
        if self.family == "Gamma":
            return mu**2
        if self.family == "inverse.gaussian":
            return mu**3
        return np.ones_like(mu)

    def validmu(self, mu: Array) -> bool:
        """Whether μ is inside the family's range (R's ``validmu``)."""
        mu = np.asarray(mu, float)
        if not np.all(np.isfinite(mu)):
            return False
        if self.family == "binomial":
            return bool(np.all((mu > 0) & (mu < 1)))
        if self.family in ("poisson", "Gamma"):
            return bool(np.all(mu > 0))
        return True

    def dev_resids(self, y: Array, mu: Array, wt: Array) -> Array:
        """Deviance residuals (each observation's contribution to the deviance)."""
        y, mu, wt = (np.asarray(a, float) for a in (y, mu, wt))
        if self.family == "binomial":
            return 2.0 * wt * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))
        if self.family == "poisson":
            r = mu * wt
            pos = y > 0
            r = np.where(pos, wt * (y * np.log(np.where(pos, y, 1.0) / mu) - (y - mu)), r)
            return 2.0 * r
        if self.family == "Gamma":
            with np.errstate(divide="ignore"):
                ratio = np.where(y == 0, 1.0, y / mu)
            return -2.0 * wt * (np.log(ratio) - (y - mu) / mu)
        if self.family == "inverse.gaussian":
            return wt * ((y - mu) ** 2) / (y * mu**2)
        return wt * (y - mu) ** 2

    def aic(self, y: Array, n: Array, mu: Array, wt: Array, dev: float) -> float:
        """R's ``family$aic``: -2 log-likelihood (plus 2 for a scale the family estimates)."""
        y, n, mu, wt = (np.asarray(a, float) for a in (y, n, mu, wt))
        if self.family == "binomial":
            const, k, rest, factor = binomial_aic_parts(y, n, wt)
            # the binomial log-probability written out (scipy.stats' formula, without its
            # per-call overhead: this runs at every deviance evaluation)
            logp = const + special.xlogy(k, mu) + special.xlog1py(rest, -mu)
            return float(-2.0 * np.sum(np.where(factor != 0, factor * logp, 0.0)))
        if self.family == "poisson":
            logp = special.xlogy(y, mu) - mu - special.gammaln(y + 1)
            # R's dpois (lme4's compiled poissonDist::aic calls it): a count that is not an
            # integer has probability 0, so the criterion is +Inf (warned in initialize)
            logp = np.where(r_nonint(y), -np.inf, logp)
            return float(-2.0 * np.sum(logp * wt))
        if self.family == "Gamma":
            nobs = float(np.sum(wt))
            disp = dev / nobs
            shape = 1.0 / disp
            scale = mu * disp
            logd = (special.xlogy(shape - 1.0, y) - y / scale - special.gammaln(shape)
                    - shape * np.log(scale))
            return float(-2.0 * np.sum(logd * wt) + 2.0)
        if self.family == "inverse.gaussian":
            return float(np.sum(wt) * (math.log(dev / np.sum(wt) * 2.0 * math.pi) + 1.0)
                         + 3.0 * np.sum(np.log(y) * wt) + 2.0)
        nobs = y.shape[0]
        with np.errstate(divide="ignore"):
            return float(nobs * (math.log(2.0 * math.pi * dev / nobs) + 1.0) + 2.0
                         - np.sum(np.log(wt)))

    def initialize(self, y: Array, weights: Array) -> tuple[Array, Array, Array, Array]:
        """R's ``family$initialize``: ``(y, weights, n, mustart)``.

        ``y`` is a vector, or for the binomial a two-column (successes, failures) matrix,
        which becomes proportions with the totals folded into the weights, as in R.
        Raises R's messages; R's warnings about non-integer counts are warnings here."""
        from .errors import LmeFormulaWarning

        y = np.asarray(y, float)
        w = np.asarray(weights, float)
        name = self.family
        n = np.ones(y.shape[0])
        if name == "binomial":
            if y.ndim == 2:
                if y.shape[1] != 2:
                    raise FamilyError("for the 'binomial' family, y must be a vector of 0 and "
                                      "1's\nor a 2 column matrix where col 1 is no. successes "
                                      "and col 2 is no. failures")
                if np.any(np.abs(y - np.round(y)) > 0.001):
                    warnings.warn("non-integer counts in a binomial glm!", LmeFormulaWarning,
                                  stacklevel=4)
                n = y[:, 0] + y[:, 1]
                with np.errstate(divide="ignore", invalid="ignore"):
                    prop = np.where(n == 0, 0.0, y[:, 0] / np.where(n == 0, 1.0, n))
                w = w * n
                return prop, w, n, (n * prop + 0.5) / (n + 1.0)
            y = np.where(w == 0, 0.0, y)
            if np.any((y < 0) | (y > 1)):
                raise FamilyError("y values must be 0 <= y <= 1")
            m = w * y
            if np.any(np.abs(m - np.round(m)) > 0.001):
                warnings.warn("non-integer #successes in a binomial glm!", LmeFormulaWarning,
                              stacklevel=4)
            return y, w, n, (w * y + 0.5) / (w + 1.0)
        if y.ndim != 1:
            raise FamilyError("can't handle matrix-valued responses: consider using refit()")
        if name == "poisson":
            if np.any(y < 0):
                raise FamilyError("negative values not allowed for the 'Poisson' family")
            # R's dpois warns "non-integer x = %f" for each such count and gives it
            # probability 0: lme4's Laplace criterion (its aic) is then +Inf at every θ, the
            # optimizer cannot move and the fit stays at its start; warned once per value
            for value in dict.fromkeys(y[r_nonint(y)].tolist()):
                warnings.warn(f"non-integer x = {value:f}", LmeFormulaWarning, stacklevel=4)
            return y, w, n, y + 0.1
        if name == "Gamma":
            if np.any(y <= 0):
                raise FamilyError("non-positive values not allowed for the 'Gamma' family")
            return y, w, n, y.copy()
        if name == "inverse.gaussian":
            if np.any(y <= 0):
                raise FamilyError("positive values only are allowed for the "
                                  "'inverse.gaussian' family")
            return y, w, n, y.copy()
        if (self.link.name == "inverse" and np.any(y == 0)) or (
                self.link.name == "log" and np.any(y <= 0)):
            raise FamilyError("cannot find valid starting values: please specify some")
        return y, w, n, y.copy()

    @property
    def has_scale(self) -> bool:
        """Whether the family has a scale parameter to estimate (lme4's ``useSc``)."""
        return self.family not in ("binomial", "poisson")

    def __str__(self) -> str:
        return f"\nFamily: {self.family} \nLink function: {self.link.name} \n"

    def __repr__(self) -> str:
        return f"{_FUNCTION_NAME[self.family]}(link={self.link.name!r})"


def _ylogy(y: Array, mu: Array) -> Array:
    """R's y_log_y: y log(y/μ), 0 when y = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = y * np.log(np.where(y > 0, y, 1.0) / mu)
    return np.where(y > 0, out, 0.0)


_DEFAULT_LINK = {"binomial": "logit", "poisson": "log", "Gamma": "inverse",
                 "gaussian": "identity", "inverse.gaussian": "1/mu^2"}
_FUNCTION_NAME = {"binomial": "binomial", "poisson": "poisson", "Gamma": "Gamma",
                  "gaussian": "gaussian", "inverse.gaussian": "inverse_gaussian"}


def _family(name: str, link: str | None) -> Family:
    link = _DEFAULT_LINK[name] if link is None else link
    if not isinstance(link, str):
        raise FamilyError(f"link must be a string, not {type(link).__name__}")
    # R's family functions take any link make.link knows when it is given as a string
    # (binomial(link = "sqrt") works); make.link refuses the others
    return Family(name, make_link(link))


def binomial(link: str = "logit") -> Family:
    """R's ``binomial()``: links logit (default), probit, cloglog, cauchit, log."""
    return _family("binomial", link)


def poisson(link: str = "log") -> Family:
    """R's ``poisson()``: links log (default), identity, sqrt."""
    return _family("poisson", link)


def Gamma(link: str = "inverse") -> Family:
    """R's ``Gamma()``: links inverse (default), identity, log."""
    return _family("Gamma", link)


def gaussian(link: str = "identity") -> Family:
    """R's ``gaussian()``: links identity (default), log, inverse."""
    return _family("gaussian", link)


def inverse_gaussian(link: str = "1/mu^2") -> Family:
    """R's ``inverse.gaussian()``: links 1/mu^2 (default), inverse, identity, log."""
    return _family("inverse.gaussian", link)


_BY_NAME: dict[str, Callable[..., Family]] = {
    "binomial": binomial, "poisson": poisson, "Gamma": Gamma, "gaussian": gaussian,
    "inverse.gaussian": inverse_gaussian, "inverse_gaussian": inverse_gaussian,
}


def get_family(family: str | Family | Callable[[], Family]) -> Family:
    """A :class:`Family` from a name (``"binomial"``), a family object or a family function."""
    if isinstance(family, Family):
        return family
    if isinstance(family, str):
        if family not in _BY_NAME:
            raise FamilyError(
                f"family {family!r} not recognised; use one of binomial, poisson, Gamma, "
                "gaussian, inverse.gaussian")
        return _BY_NAME[family]()
    if callable(family):
        out = family()
        if isinstance(out, Family):
            return out
    raise FamilyError(f"invalid family argument: {family!r}")


def r_nonint(x: Array) -> Array:
    """R's ``R_nonint``: values further than 1e-7 (relative, for large ones) from an
    integer."""
    x = np.asarray(x, float)
    return np.abs(x - np.round(x)) > 1e-7 * np.maximum(1.0, np.abs(x))


def binomial_aic_parts(y: Array, n: Array, wt: Array,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The μ-free parts of R's ``binomial()$aic``: the log binomial coefficient, successes,
    failures, and each observation's factor (prior weight over trials; 0 where no trials).

    As lme4's compiled ``binomialDist::aic`` (which glmer uses, not R's ``binomial()$aic``):
    the factor divides by the *rounded* trials, so non-integer weights (proportions with
    weights of 10.5 trials, say) give lme4's log-likelihood; R's glm divides by the
    unrounded ones. Integer trials give the same either way."""
    m = n if np.any(n > 1) else wt
    size = np.round(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(size > 0, wt / np.where(size > 0, size, 1.0), 0.0)
    k = np.round(m * y)
    const = (special.gammaln(size + 1) - special.gammaln(k + 1)
             - special.gammaln(size - k + 1))
    return const, k, size - k, factor
