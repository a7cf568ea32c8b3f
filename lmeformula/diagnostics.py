"""Checking a fit: variance decomposition (ICC, Nakagawa's R²), leverage and influence,
and simulation-based (DHARMa) residuals.

* :func:`get_variance`, :func:`icc`, :func:`r2_nakagawa` — R's ``insight::get_variance``
  0.19 and ``performance::icc`` / ``r2_nakagawa`` 0.10, their quirks included (documented
  below, each with an option for the better definition);
* :func:`hatvalues`, :func:`cooks_distance` — lme4 1.1-31's ``hatvalues.merMod`` and
  ``cooks.distance.merMod``;
* :func:`influence` — lme4's ``influence.merMod``: the model refitted without each group (or
  each observation), from the fit's θ;
* :func:`simulate_residuals` — DHARMa's scaled residuals (the randomised probability
  integral transform of the observed response among simulated ones) with DHARMa's
  uniformity (Kolmogorov-Smirnov) and dispersion tests.

Every function reads the fitted model through lme4's accessors (``getME``, ``VarCorr``,
``residuals``, ``simulate``), so a generalised model that provides them plugs in; where a
GLMM needs its own piece (the distribution-specific variance) the hook is named
``_distribution_variance``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import linalg as la
from scipy import stats

from .errors import LmeFormulaError, LmeFormulaWarning, SingularFitWarning
from .pls.threads import blas_threads
from .validate import as_generator, check_flag, model_functions

if TYPE_CHECKING:
    from .mermod import LmerMod

__all__ = [
    "DispersionTest",
    "Influence",
    "SimulatedResiduals",
    "UniformityTest",
    "VarianceComponents",
    "cooks_distance",
    "get_variance",
    "hatvalues",
    "icc",
    "influence",
    "r2_nakagawa",
    "simulate_residuals",
]


# -- variance decomposition -------------------------------------------------------------------
@dataclass(frozen=True)
class VarianceComponents:
    """insight's ``get_variance``: the pieces of ICC and R².

    Attributes
    ----------
    var_fixed
        Sample variance (denominator n - 1) of the fixed-effects linear predictor Xβ.
    var_random
        Mean over observations of Σ_k z_ik' Σ_k z_ik, summed over the random-effects terms
        used (NaN when the fit is judged singular).
    var_residual
        The observation-level variance: σ² for a linear mixed model.
    var_intercept
        Each term's intercept variance, named by ``VarCorr``'s group names (terms whose first
        column is not an intercept are left out).
    singular
        Whether the singularity check (a diagonal θ below ``tolerance``) fired.
    terms
        The ``VarCorr`` groups whose variances make up ``var_random``.
    var_distribution, var_dispersion
        The two parts of ``var_residual``: the family's observation-level variance, and (for
        a GLMM) the variance of observation-level random effects, terms whose grouping factor
        has one level per observation.
    """

    var_fixed: float
    var_random: float
    var_residual: float
    var_intercept: pd.Series
    singular: bool
    terms: list[str] = field(default_factory=list)
    var_distribution: float = math.nan
    var_dispersion: float = 0.0


def _distribution_variance(m: Any) -> float:
    """The observation-level ("distribution-specific") variance, as insight computes it.

    σ² for a linear mixed model. For a GLMM (a model with a ``family`` attribute whose
    ``family``/``link`` names are given), insight 0.19's ``.compute_variance_distribution``:

    * gaussian, any link: σ² (insight counts every gaussian model as linear);
    * binomial: the link's constant, logit π²/3, probit 1, cloglog π²/6;
    * Poisson: sqrt 1/4; log log1p(1/μ), μ = exp of the null model's intercept;
    * Gamma (inverse, identity, log links): the family's variance function at σ, V(σ) = σ²
      (σ² is the squared coefficient of variation, the lognormal approximation's
      ``log1p(V(μ)/μ²)`` without the log, as insight computes it);
    * inverse.gaussian (any link): σ itself, not σ², as insight's fallthrough for families
      it does not list returns ``sig``; matched, not corrected.

    Links insight does not support (binomial log/cauchit, Poisson identity) give NaN with
    insight's warning, so ICC and R² are NaN as in R. Families insight computes through
    fitted models glmer does not have (negative binomial, beta, Tweedie) raise
    NotImplementedError.
    """
    fam = getattr(m, "family", None)
    if fam is None:
        return float(m.sigma) ** 2
    name = str(getattr(fam, "family", fam)).lower()
    link = getattr(fam, "link", "")
    link = str(getattr(link, "name", link)).lower()  # a Link object or its name
    if name == "gaussian":
        # insight's is_linear holds for any gaussian link: sig²
        return float(m.sigma) ** 2
    if name == "binomial":
        table = {"logit": math.pi**2 / 3, "probit": 1.0, "cloglog": math.pi**2 / 6}
        if link in table:
            return table[link]
        return _unsupported_link(link, "binomial")
    if name == "gamma":
        if link in ("inverse", "identity", "log"):
            # stats::Gamma()$variance(sig) = sig²; σ is lme4's sigma (sqrt(pwrss / n))
            return float(m.sigma) ** 2
        return _unsupported_link(link, "Gamma")
    if name == "inverse.gaussian":
        # insight has no branch for this family: its fallthrough returns sig, unsquared
        return float(m.sigma)
    if name == "poisson" and link == "sqrt":
        return 0.25
    if name == "poisson" and link != "log":
        return _unsupported_link(link, "poisson")
    if name == "poisson" and link == "log":
        # insight's lognormal approximation: log(1 + V(μ)/μ²) = log1p(1/μ), μ = exp of the
        # intercept of the null model (the same random effects, no covariates)
        mu = math.exp(_null_model_intercept(m))
        if mu < 6:
            warnings.warn(f"mu of {mu:.1f} is too close to zero, estimate of random effect "
                          "variances may be unreliable.", LmeFormulaWarning, stacklevel=4)
        return math.log1p(1.0 / mu)
    raise NotImplementedError(
        f"the distribution-specific variance of family {name!r} with link {link!r} is not "
        "implemented")


def _unsupported_link(link: str, family: str) -> float:
    """insight's ``.badlink``: NaN (R's NA), with its warning."""
    warnings.warn(f"Model link `{link}` is not yet supported for the {family} distribution.",
                  LmeFormulaWarning, stacklevel=4)
    return math.nan


def _null_model_intercept(m: Any) -> float:
    """The fixed intercept of insight's null model: the response on the random-effects terms
    alone (and the formula's offsets), fitted as the model was. Kept on the model, so that
    icc and r2_nakagawa of one model fit it once."""
    cached = getattr(m, "_null_model_intercept", None)
    if cached is not None:
        return float(cached)
    import importlib

    from .formula.ast import deparse

    try:
        glmer = importlib.import_module(".glmer", __package__).glmer
    except (ImportError, AttributeError) as err:  # pragma: no cover - needs glmer
        raise NotImplementedError("the null model needs glmer") from err
    data = getattr(m, "_data", None)
    if data is None:
        raise LmeFormulaError("the distribution-specific variance needs the null model, and "
                              "the fitted model does not keep its data")
    parsed = m.lformula.parsed
    parts = [f"({deparse(b)})" for b in parsed.bars]
    for node in parsed.fixed.offsets:
        text = deparse(node)
        parts.append(text if text.startswith("offset(") else f"offset({text})")
    formula = f"{deparse(parsed.lhs)} ~ {' + '.join(parts)}"
    call = m.call
    args = {k: call[k] for k in ("weights", "offset", "subset", "na_action") if
            call[k] is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        null = glmer(formula, data, family=m.family, **args)
    value = float(np.asarray(null.beta, dtype=float)[0])
    m._null_model_intercept = value
    return value


def _random_slope_columns(m: LmerMod) -> list[str]:
    return [c for t in m.lformula.reTrms.terms for c in t.cnms if c != "(Intercept)"]


def get_variance(m: LmerMod, tolerance: float = 1e-5, all_terms: bool = False
                 ) -> VarianceComponents:
    """Variance components of a mixed model, as R's ``insight::get_variance`` (0.19).

    Parameters
    ----------
    m
        A fitted model.
    tolerance
        The fit counts as singular when a θ with lower bound 0 (a relative standard
        deviation) is below this; then ``var_random`` is NaN, as in insight. ``tolerance=0``
        switches the check off.
    all_terms
        insight looks terms up in ``VarCorr`` by the names of the grouping factors, so of
        several terms on one factor (``(x || g)``, ``(1 | g) + (0 + x | g)``) only the first
        enters ``var_random``; ``all_terms=True`` uses every term.

    Notes
    -----
    For each term, ``z_i`` are the rows of X's columns named like the term's columns (an
    intercept column is supplied when X has none); columns of the term that are not in X are
    dropped, with their rows and columns of Σ_k, as insight does. Terms whose grouping factor
    has one level per observation are left out of ``var_random``: for a GLMM they are
    insight's dispersion variance (part of ``var_residual``), for a linear model they count
    nowhere. ``var_fixed`` leaves offsets out, as insight's ``Xβ`` does.
    """
    re = m.lformula.reTrms
    X = np.asarray(m.lformula.X_values, dtype=float)
    names = list(m.lformula.X_names)
    n = X.shape[0]
    beta = np.asarray(m.beta, dtype=float)
    eta = X @ beta if beta.size else np.zeros(n)
    var_fixed = float(np.var(eta, ddof=1)) if n > 1 else math.nan

    vc = m.VarCorr
    theta = np.asarray(m.theta, dtype=float)
    singular = bool(np.any(np.abs(theta[re.lower == 0]) < tolerance))

    if not any(c.startswith("(Intercept)") for c in names):
        X = np.column_stack([np.ones(n), X])
        names = ["(Intercept)", *names]
    col = {c: i for i, c in enumerate(names)}
    nlevels = {k: len(f.categories) for k, f in re.flist.items()}
    if all_terms:
        used = [t for t in vc.terms if nlevels.get(_factor_of(m, t.group), 0) != n]
    else:
        # insight's vc[names(ranef)]: the first VarCorr entry of each factor's name
        used = []
        for fname, nl in nlevels.items():
            match = next((t for t in vc.terms if t.group == fname), None)
            if match is not None and nl != n:
                used.append(match)
    var_random = sum((_mean_quadratic_form(X, col, t) for t in used), 0.0)
    intercepts = {t.group: float(t.cov[0, 0]) for t in vc.terms
                  if t.names and t.names[0].startswith("(Intercept)")}
    distribution = _distribution_variance(m)
    dispersion = 0.0
    if _is_glmm(m):
        # observation-level random effects are overdispersion: insight counts them in the
        # residual variance (for a linear model they count nowhere)
        observation_level = [t for t in vc.terms
                             if t.group in nlevels and nlevels[t.group] == n]
        dispersion = sum(_mean_quadratic_form(X, col, t) for t in observation_level)
    return VarianceComponents(
        var_fixed=var_fixed,
        var_random=math.nan if singular else var_random,
        var_residual=distribution + dispersion,
        var_intercept=pd.Series(intercepts, dtype=float, name="var_intercept"),
        singular=singular,
        terms=[t.group for t in used],
        var_distribution=distribution,
        var_dispersion=dispersion,
    )


def _mean_quadratic_form(X: np.ndarray, col: dict[str, int], t: Any) -> float:
    """insight's per-term variance: the mean over rows of z_i'Σz_i, with z_i from X's
    columns named like the term's (the term's other columns dropped)."""
    keep = [i for i, c in enumerate(t.names) if c in col]
    if not keep:
        return 0.0
    sigma_k = t.cov[np.ix_(keep, keep)]
    z = X[:, [col[t.names[i]] for i in keep]]
    return float(np.einsum("ij,jk,ik->", z, sigma_k, z)) / X.shape[0]


def _factor_of(m: LmerMod, group: str) -> str:
    """The grouping factor of a VarCorr group name (``Subject.1`` -> ``Subject``)."""
    re = m.lformula.reTrms
    vc_names = [t.group for t in m.VarCorr.terms]
    return re.cnms_names[vc_names.index(group)]


def _warn_variances(m: LmerMod, v: VarianceComponents, what: str) -> None:
    if v.singular:
        warnings.warn(
            f"Can't compute {what}. Some variance components equal zero. Your model may suffer "
            "from singularity (see isSingular). Respecify the random structure, or decrease "
            "`tolerance` to enforce the calculation of random-effect variances.",
            SingularFitWarning, stacklevel=3)
    missing = [c for c in _random_slope_columns(m) if c not in m.lformula.X_names]
    if missing:
        warnings.warn(
            f"Random slopes not present as fixed effects ({', '.join(missing)}). This "
            f"artificially inflates the conditional {what}.", LmeFormulaWarning, stacklevel=3)


def icc(m: LmerMod, by_group: bool = False, tolerance: float = 1e-5, all_terms: bool = False
        ) -> pd.Series | pd.DataFrame:
    """Intraclass correlation, as R's ``performance::icc`` (0.10).

    ``ICC_adjusted = var_random / (var_random + var_residual)`` and
    ``ICC_unadjusted = var_random / (var_fixed + var_random + var_residual)`` with the
    components of :func:`get_variance`. Both are NaN, with a warning, when the fit is judged
    singular (a diagonal θ below ``tolerance``); ``tolerance=0`` computes them anyway.

    Parameters
    ----------
    m
        A fitted model.
    by_group
        Instead, one ICC per term with an intercept: its intercept variance over
        ``var_random + var_residual`` (performance's definition; with random slopes these do
        not add up and can exceed 1, and a warning says so).
    tolerance, all_terms
        See :func:`get_variance` (``all_terms=True`` counts every term of ``(x || g)``).

    Returns
    -------
    pandas.Series (``ICC_adjusted``, ``ICC_unadjusted``), or with ``by_group`` a DataFrame
    with columns ``Group`` and ``ICC`` (NaN for a singular fit, where performance returns a
    bare NA).
    """
    by_group = bool(check_flag(by_group, "by_group"))
    all_terms = bool(check_flag(all_terms, "all_terms"))
    v = get_variance(m, tolerance=tolerance, all_terms=all_terms)
    _warn_variances(m, v, "ICC")
    total = v.var_random + v.var_residual
    if by_group:
        if _random_slope_columns(m):
            warnings.warn("Model contains random slopes. Cannot compute accurate ICCs by group "
                          "factors.", LmeFormulaWarning, stacklevel=2)
        return pd.DataFrame({"Group": list(v.var_intercept.index),
                             "ICC": (v.var_intercept / total).to_numpy()})
    return pd.Series({"ICC_adjusted": v.var_random / total,
                      "ICC_unadjusted": v.var_random / (v.var_fixed + total)}, name="ICC")


def r2_nakagawa(m: LmerMod, tolerance: float = 1e-5, all_terms: bool = False) -> pd.Series:
    """Nakagawa's marginal and conditional R², as R's ``performance::r2_nakagawa`` (0.10).

    ``R2_marginal = var_fixed / total`` and ``R2_conditional = (var_fixed + var_random) /
    total`` with ``total = var_fixed + var_random + var_residual`` (:func:`get_variance`).
    When the fit is judged singular, performance leaves the random effects out: the marginal
    R² becomes ``var_fixed / (var_fixed + var_residual)`` and the conditional one NaN (with a
    warning); ``tolerance=0`` keeps them in.

    Returns
    -------
    pandas.Series with ``R2_marginal`` and ``R2_conditional``.
    """
    v = get_variance(m, tolerance=tolerance, all_terms=all_terms)
    _warn_variances(m, v, "R2")
    if math.isnan(v.var_random):
        warnings.warn("Random effect variances not available. Returned R2 does not account for "
                      "random effects.", LmeFormulaWarning, stacklevel=2)
        marginal = v.var_fixed / (v.var_fixed + v.var_residual)
        conditional = math.nan
    else:
        total = v.var_fixed + v.var_random + v.var_residual
        marginal = v.var_fixed / total
        conditional = (v.var_fixed + v.var_random) / total
    return pd.Series({"R2_marginal": marginal, "R2_conditional": conditional}, name="R2")


# -- leverage and Cook's distance ---------------------------------------------------------------
# Above this many random effects plus fixed effects the triangular factor is not inverted
# densely (memory (q + p)², time (q + p)³ / 3); the sparse solves take over.
_DENSE_HAT_LIMIT = 5000


class _HatPieces:
    """lme4's two pieces of the hat matrix, for blocks of observations:
    C_L = L⁻¹Λ'Z'W^½ (q x k) and C_R = R_X'⁻¹(X'W^½ - R_ZX'C_L) (p x k), so that
    H = C_L'C_L + C_R'C_R.

    Both are T⁻¹ [Λ'Z'W^½; X'W^½] with T = [L 0; R_ZX' R_X'] the lower-triangular factor of
    the penalised cross-product matrix. While q + p is moderate, T⁻¹ is formed once and each
    block is a sparse-times-dense product (cost: the non-zeros of Z times q + p); otherwise
    each block is a sparse triangular solve.
    """

    def __init__(self, m: LmerMod) -> None:
        L = sp.csr_matrix(m.getME("L"))
        lambdat = sp.csc_matrix(m.getME("Lambdat"))
        zt = sp.csc_matrix(m.getME("Zt"))
        self.rx = np.asarray(m.getME("RX"), dtype=float)
        self.rzx = np.asarray(m.getME("RZX"), dtype=float)
        sqrt_w = np.sqrt(np.asarray(m.weights, dtype=float))
        self.at = (lambdat @ zt @ sp.diags(sqrt_w)).tocsc()  # Λ'Z'W^½, q x n
        self.xw = np.asarray(m.lformula.X_values, dtype=float) * sqrt_w[:, None]
        self.q, self.p = L.shape[0], self.rx.shape[0]
        self.L = L
        self.tinv: np.ndarray | None = None
        if self.q + self.p <= _DENSE_HAT_LIMIT:
            t = np.zeros((self.q + self.p, self.q + self.p))
            t[: self.q, : self.q] = L.toarray()
            t[self.q :, : self.q] = self.rzx.T
            t[self.q :, self.q :] = self.rx.T
            self.tinv = la.solve_triangular(t, np.eye(self.q + self.p), lower=True,
                                            check_finite=False)

    def block(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """C_L and C_R of the observations in ``rows``."""
        at = self.at[:, rows]
        xw = self.xw[rows]
        if self.tinv is not None:
            # (T⁻¹ [A'; XW'])' = [A XW] T⁻ᵀ, sparse A times dense
            both = np.asarray(at.T @ self.tinv[:, : self.q].T) + xw @ self.tinv[:, self.q :].T
            return both[:, : self.q].T, both[:, self.q :].T
        rhs = at.toarray()
        cl = spla.spsolve_triangular(self.L, rhs, lower=True) if rhs.shape[0] else rhs
        if not self.rx.size:
            return cl, np.zeros((0, cl.shape[1]))
        cr = la.solve_triangular(self.rx, xw.T - self.rzx.T @ cl, trans="T", lower=False)
        return cl, cr


def _hat_diagonal(m: LmerMod, chunk: int = 2048) -> np.ndarray:
    """Diagonal of the hat matrix of the penalised least-squares problem, as lme4's
    ``hatvalues.merMod``: colSums(C_L²) + colSums(C_R²), a block of observations at a time so
    that no q x n dense matrix is formed."""
    n = m.n
    pieces = _HatPieces(m)
    out = np.empty(n)
    for start in range(0, n, chunk):
        cl, cr = pieces.block(slice(start, min(n, start + chunk)))
        out[start : start + cl.shape[1]] = (np.einsum("ij,ij->j", cl, cl)
                                            + np.einsum("ij,ij->j", cr, cr))
    return out


def _is_glmm(m: Any) -> bool:
    fam = getattr(m, "family", None)
    return fam is not None and str(getattr(fam, "family", fam)) != "gaussian"


def hatvalues(m: LmerMod, fullHatMatrix: bool = False) -> pd.Series | pd.DataFrame:
    """Leverages: the diagonal of the penalised least-squares hat matrix (lme4's
    ``hatvalues.merMod``), named as the residuals and padded under ``na_action="exclude"``.

    With ``fullHatMatrix=True``, the whole n x n hat matrix as a DataFrame (the observations
    used, no padding), as lme4 returns it.
    """
    if _is_glmm(m):
        warnings.warn("the hat matrix may not make sense for GLMMs", LmeFormulaWarning,
                      stacklevel=2)
    if fullHatMatrix:
        if m.n > 20000:
            raise LmeFormulaError(f"the full hat matrix of {m.n} observations is too large")
        cl, cr = _HatPieces(m).block(slice(0, m.n))
        idx = m.lformula.fr.index
        with blas_threads(None, order=m.n):  # n x n products: threaded syrk crashes there
            hat = cl.T @ cl + cr.T @ cr
        return pd.DataFrame(hat, index=idx, columns=idx)
    return m._pad(_hat_diagonal(m), "hatvalues")


def cooks_distance(m: LmerMod) -> pd.Series:
    """Cook's distance, as lme4's ``cooks.distance.merMod``:
    ``(r / (1 - h))² h / (σ² rank(X))`` with r the Pearson residuals and h the leverages;
    infinite values (h = 1) become NaN."""
    if _is_glmm(m):
        warnings.warn("the hat matrix may not make sense for GLMMs", LmeFormulaWarning,
                      stacklevel=2)
    h = _hat_diagonal(m)
    r = np.asarray(m.residuals(type="pearson"), dtype=float)
    if r.shape[0] != h.shape[0]:  # padded with NaN for na_action="exclude": the rows used
        r = r[~np.isnan(r)]
    X = np.asarray(m.lformula.X_values, dtype=float)
    rank = int(np.linalg.matrix_rank(X)) if X.size else 0
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (r / (1.0 - h)) ** 2 * h / (m.sigma**2 * rank)
    d[np.isinf(d)] = np.nan
    return m._pad(d, "cooks_distance")


# -- influence by deletion ----------------------------------------------------------------------
@dataclass(frozen=True)
class Influence:
    """lme4's ``influence.merMod``: the model refitted without each group.

    Attributes
    ----------
    fixed_effects
        The full fit's fixed effects.
    fixed_effects_deleted
        One row per deleted group: the fixed effects without it.
    var_cov_comps, var_cov_comps_deleted
        σ² then each term's covariance (lower triangle, column by column), named as lme4 names
        them (``sigma^2``, ``Subject:v[(Intercept)]``, ``C[Days,(Intercept)]``).
    theta, theta_deleted
        θ of the full fit and of each refit.
    vcov, vcov_deleted
        Covariance of the fixed effects; per deleted group, a DataFrame.
    groups
        The grouping column (``"case"`` for observations).
    deleted
        The deleted groups' labels, in order of first appearance.
    converged, feval
        Per refit: the optimizer's code was 0 with no warnings; its number of evaluations.
    """

    fixed_effects: pd.Series
    fixed_effects_deleted: pd.DataFrame
    var_cov_comps: pd.Series
    var_cov_comps_deleted: pd.DataFrame
    theta: pd.Series
    theta_deleted: pd.DataFrame
    vcov: pd.DataFrame
    vcov_deleted: dict[str, pd.DataFrame]
    groups: str
    deleted: list[str]
    converged: pd.Series
    feval: pd.Series

    def dfbeta(self, which: str = "fixed") -> pd.DataFrame:
        """Change in the estimates when each group is deleted (deleted minus full), for the
        fixed effects (``"fixed"``) or the variance components (``"var.cov"``)."""
        if which == "fixed":
            return self.fixed_effects_deleted - self.fixed_effects
        if which in ("var.cov", "var_cov"):
            return self.var_cov_comps_deleted - self.var_cov_comps
        if which == "theta":
            return self.theta_deleted - self.theta
        raise LmeFormulaError("which must be 'fixed', 'var.cov' or 'theta'")

    def dfbetas(self) -> pd.DataFrame:
        """:meth:`dfbeta` of the fixed effects over their standard errors in each refit."""
        se = pd.DataFrame({k: np.sqrt(np.diag(v.to_numpy()))
                           for k, v in self.vcov_deleted.items()}).T
        se.columns = self.fixed_effects.index
        return pd.DataFrame(self.dfbeta().to_numpy() / se.to_numpy(), index=self.deleted,
                            columns=self.fixed_effects.index)

    def cooks_distance(self) -> pd.Series:
        """lme4's ``cooks.distance.influence.merMod``: dfbetaᵢ' V⁻¹ dfbetaᵢ (n - p)/(n p),
        V the full fit's covariance of the fixed effects and n the number of deletions."""
        db = self.dfbeta().to_numpy()
        n, p = db.shape
        vinv = (n - p) / (n * p) * np.linalg.inv(self.vcov.to_numpy())
        return pd.Series(np.einsum("ij,jk,ik->i", db, vinv, db), index=self.deleted,
                         name="cooks_distance")


def _var_cov_comps(m: LmerMod) -> pd.Series:
    vc = m.VarCorr
    single = len(vc.terms) == 1
    values: dict[str, float] = {"sigma^2": float(m.sigma) ** 2}
    for t in vc.terms:
        prefix = "" if single else f"{t.group}:"
        k = len(t.names)
        for j in range(k):
            for i in range(j, k):
                label = (f"v[{t.names[i]}]" if i == j
                         else f"C[{t.names[i]},{t.names[j]}]")
                values[prefix + label] = float(t.cov[i, j])
    return pd.Series(values, name="var_cov_comps")


def influence(m: LmerMod, group: str | list[str] | None = None,
              data: pd.DataFrame | None = None, maxfun: int = 1000,
              start: Any = None) -> Influence:
    """Refit the model without each group (or, with ``group=None``, each observation), as lme4's
    ``influence.merMod``.

    Each refit starts from the full fit's θ (a warm start) with lme4's default optimizer and
    at most ``maxfun`` evaluations, as lme4 does; the rows deleted are those of the data the
    model was fitted to.

    Parameters
    ----------
    m
        A fitted model.
    group
        A column of the data (or several: their combinations are deleted), or None for
        observations.
    data
        The data the model was fitted to (by default the data ``lmer`` was given).
    maxfun
        Maximum number of criterion evaluations per refit.
    start
        Starting θ for the refits (default: the fit's θ).

    Returns
    -------
    Influence
    """
    from .lmer import lmer
    from .mermod import LmerMod

    if _is_glmm(m):
        raise NotImplementedError("influence() refits with lmer; deletion refits of a GLMM "
                                  "are not implemented yet")
    if data is None:
        data = getattr(m, "_data", None)
        if data is None:
            raise LmeFormulaError("influence() needs data= (the fitted model does not keep "
                                  "the data)")
    frame = m.lformula.frame
    if len(data) != frame.nrow_data:
        raise LmeFormulaError(f"data has {len(data)} rows; the model was fitted to "
                              f"{frame.nrow_data}")
    used = np.zeros(len(data), dtype=bool)
    used[frame.rows] = True
    if group is None:
        labels = np.array([str(v) for v in data.index], dtype=object)
        group_name = "case"
    else:
        cols = [group] if isinstance(group, str) else list(group)
        for c in cols:
            if c not in data.columns:
                raise LmeFormulaError(f"group column {c!r} is not in the data")
        parts = [data[c].astype(str).to_numpy() for c in cols]
        labels = parts[0].astype(object)
        for extra in parts[1:]:
            labels = np.array([f"{a}.{b}" for a, b in zip(labels, extra, strict=True)],
                              dtype=object)
        group_name = ".".join(cols)
    deleted = list(dict.fromkeys(labels[used]))

    call = m.call
    theta0 = np.asarray(m.theta, dtype=float) if start is None else np.asarray(start, float)
    # lme4 refits with lmerControl(optCtrl = list(maxfun = maxfun)): its default optimizer
    # (nloptwrap), whatever the fit used; the fit's checks are kept, so that a model fitted
    # with a check switched off can be refitted
    control = replace(m.lformula.control, optimizer="nloptwrap",
                      optCtrl={"maxeval": int(maxfun)})
    fe_rows, vc_rows, th_rows, vcovs, conv, fevals = [], [], [], {}, [], []
    for lab in deleted:
        keep = used & (labels != lab)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lme4 wraps each refit in suppressWarnings
            fit = lmer(call.formula, data, REML=m.is_REML, weights=call.weights,
                       offset=call.offset, na_action=call.na_action,
                       contrasts=call.contrasts, subset=keep, control=control,
                       start=theta0, syntax=call.syntax)
        if not isinstance(fit, LmerMod):  # pragma: no cover - lmer returns a model here
            raise TypeError("lmer did not return a fitted model")
        fe_rows.append(fit.fixef.to_numpy())
        vc_rows.append(_var_cov_comps(fit).to_numpy())
        th_rows.append(np.asarray(fit.theta))
        vcovs[lab] = fit.vcov()
        opt = fit.optinfo
        conv.append(opt.conv == 0 and not opt.warnings)
        fevals.append(opt.feval)
    fixed = m.fixef
    vcc = _var_cov_comps(m)
    return Influence(
        fixed_effects=fixed,
        fixed_effects_deleted=pd.DataFrame(fe_rows, index=deleted, columns=fixed.index),
        var_cov_comps=vcc,
        var_cov_comps_deleted=pd.DataFrame(vc_rows, index=deleted, columns=vcc.index),
        theta=m.theta,
        theta_deleted=pd.DataFrame(th_rows, index=deleted, columns=m.theta.index),
        vcov=m.vcov(),
        vcov_deleted=vcovs,
        groups=group_name,
        deleted=deleted,
        converged=pd.Series(conv, index=deleted, name="converged"),
        feval=pd.Series(fevals, index=deleted, name="feval"),
    )


# -- DHARMa's simulated residuals ----------------------------------------------------------------
@dataclass(frozen=True)
class UniformityTest:
    """One-sample Kolmogorov-Smirnov test of the scaled residuals against U(0, 1)."""

    statistic: float
    p_value: float
    alternative: str
    method: str = "Asymptotic one-sample Kolmogorov-Smirnov test"


@dataclass(frozen=True)
class DispersionTest:
    """DHARMa's non-parametric dispersion test: the variance of the observed response around
    the fitted (population-level) values, against the same for each simulated response, both
    over the variance of all simulated values.

    Attributes
    ----------
    statistic
        ``dispersion``: the observed value over the mean of the simulated ones (about 1 for
        a correct model, above 1 for overdispersion).
    p_value
        Two-sided by default: ``min(1, 2 min(P(sim <= obs), P(sim >= obs)))``.
    observed, simulated
        The statistic of the data and of each simulation.
    """

    statistic: float
    p_value: float
    alternative: str
    observed: float
    simulated: np.ndarray = field(repr=False)
    method: str = ("DHARMa nonparametric dispersion test via sd of residuals fitted vs. "
                   "simulated")


def _simulation_p(simulated: np.ndarray, observed: float, alternative: str) -> float:
    """DHARMa's ``getP``: the proportion of simulated statistics beyond the observed one."""
    if alternative == "greater":
        return float(np.mean(simulated >= observed))
    if alternative == "less":
        return float(np.mean(simulated <= observed))
    if alternative == "two.sided":
        return min(2 * min(float(np.mean(simulated <= observed)),
                           float(np.mean(simulated >= observed))), 1.0)
    raise LmeFormulaError("alternative must be 'two.sided', 'greater' or 'less'")


def _alternative(alternative: str) -> str:
    return alternative.replace("-", ".").replace("two_sided", "two.sided")


def quantile_residuals(simulated: np.ndarray, observed: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """DHARMa's PIT residuals: for each observation the proportion of its simulated values
    below the observed one, drawn uniformly between that and the proportion at or below it
    where the two differ (ties, as with discrete responses).

    Parameters
    ----------
    simulated
        n x n_sim simulated responses.
    observed
        The n observed responses.
    rng
        Random numbers for the ties.
    """
    sim = np.asarray(simulated, dtype=float)
    obs = np.asarray(observed, dtype=float)[:, None]
    lower = np.mean(sim < obs, axis=1)
    upper = np.mean(sim <= obs, axis=1)
    ties = lower != upper
    out = lower.copy()
    if ties.any():
        # one uniform per observation, as DHARMa's vectorised runif(n, lower, upper)
        u = rng.uniform(size=lower.shape[0])
        out[ties] = lower[ties] + u[ties] * (upper[ties] - lower[ties])
    return out


def _ks_uniform(x: np.ndarray, alternative: str) -> UniformityTest:
    """R's ``ks.test(x, "punif")``: exact p-value for n < 100 without ties, the asymptotic
    Kolmogorov distribution otherwise."""
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    exact = n < 100 and np.unique(x).shape[0] == n
    alt: Literal["two-sided", "less", "greater"] = (
        "two-sided" if alternative == "two.sided" else "less" if alternative == "less"
        else "greater")
    res = stats.kstest(x, "uniform", alternative=alt, method="exact" if exact else "asymp")
    method = ("Exact" if exact else "Asymptotic") + " one-sample Kolmogorov-Smirnov test"
    return UniformityTest(float(res.statistic), float(res.pvalue), alternative, method)


@dataclass(frozen=True)
class SimulatedResiduals:
    """DHARMa's ``simulateResiduals`` output.

    Attributes
    ----------
    scaled_residuals
        Quantile residuals in [0, 1], uniform under the fitted model.
    simulated_response
        n x n_sim responses simulated from the fit.
    observed_response
        The response.
    fitted_predicted_response
        Population-level predictions (``predict(m, re_form=NA)``), DHARMa's
        ``fittedPredictedResponse``.
    fitted_response
        The mean the simulations are drawn around: the fitted values (with the conditional
        modes) for conditional simulations, the population-level predictions otherwise.
    n_sim, simulate_re, seed
        The settings.
    """

    scaled_residuals: pd.Series
    simulated_response: np.ndarray = field(repr=False)
    observed_response: np.ndarray = field(repr=False)
    fitted_predicted_response: np.ndarray = field(repr=False)
    n_sim: int
    simulate_re: str
    seed: Any = None
    fitted_response: np.ndarray | None = field(default=None, repr=False)

    def test_uniformity(self, alternative: str = "two.sided") -> UniformityTest:
        """DHARMa's ``testUniformity``: KS test of the scaled residuals against U(0, 1)."""
        return _ks_uniform(self.scaled_residuals.to_numpy(), _alternative(alternative))

    def test_dispersion(self, alternative: str = "two.sided") -> DispersionTest:
        """DHARMa's default ``testDispersion`` for simulated residuals (``type="DHARMa"``):
        var(y - fitted) / var(all simulations) against the same of each simulated response."""
        alt = _alternative(alternative)
        sim = self.simulated_response
        expected = float(np.var(sim, ddof=1))  # sd(simulatedResponse)^2: every value pooled
        fitted = self.fitted_predicted_response
        observed = float(np.var(self.observed_response - fitted, ddof=1)) / expected
        simulated = np.var(sim - fitted[:, None], axis=0, ddof=1) / expected
        return DispersionTest(observed / float(np.mean(simulated)),
                              _simulation_p(simulated, observed, alt), alt, observed,
                              simulated)


def _observed_response(m: LmerMod, simulated: np.ndarray) -> np.ndarray:
    """The response on the simulations' scale. A binomial ``cbind(successes, failures)``
    response is compared as successes (DHARMa's choice) or as proportions, whichever the
    simulations are; the quantile residuals are the same either way, since the totals are
    fixed per observation."""
    y = np.asarray(m.lformula.y, dtype=float)
    if y.ndim == 2 and y.shape[1] == 2:
        totals = y.sum(axis=1)
        as_counts = simulated.size > 0 and np.nanmax(simulated) > 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return y[:, 0] if as_counts else np.where(totals > 0, y[:, 0] / totals, 0.0)
    return y.reshape(-1)


def simulate_residuals(m: LmerMod, n_sim: int = 250, seed: Any = 123,
                       simulate_re: str = "conditional") -> SimulatedResiduals:
    """DHARMa's simulation-based scaled residuals (``simulateResiduals``).

    ``n_sim`` responses are simulated from the fit; each observation's residual is the
    proportion of its simulated values below the observed one (randomised between "below"
    and "at or below" where simulated values tie with it). Under the model these are uniform
    on (0, 1) whatever the family: departures show in :meth:`SimulatedResiduals.test_uniformity`
    and :meth:`SimulatedResiduals.test_dispersion` and in the QQ plot
    (:func:`lmeformula.plots.diagnostics`).

    Parameters
    ----------
    m
        A fitted model.
    n_sim
        Number of simulations (DHARMa's ``n``), at least 2.
    seed
        Seed or ``numpy.random.Generator`` (DHARMa's default seed is 123; the numbers differ
        from R's generator).
    simulate_re
        ``"conditional"`` (DHARMa >= 0.5's default: simulations keep the fitted conditional
        modes, ``use_u=True``) or ``"unconditional"`` (random effects redrawn, lme4's default
        and DHARMa < 0.5's).

    Notes
    -----
    lme4's ``simulate`` ignores prior weights for a linear mixed model, so residuals of a
    weighted fit are not uniform; DHARMa warns about this, and so does this function.
    """
    if n_sim < 2:
        raise LmeFormulaError("n_sim > 1 is required to calculate scaled residuals")
    if simulate_re not in ("conditional", "unconditional"):
        raise LmeFormulaError("simulate_re must be 'conditional' or 'unconditional'")
    if m.lformula.weights is not None:
        warnings.warn("Model was fit with prior weights. These will be ignored in the "
                      "simulation, so the scaled residuals may not be uniform.",
                      LmeFormulaWarning, stacklevel=2)
    rng = as_generator(seed, "seed")
    sims = m.simulate(nsim=n_sim, rng=rng, use_u=simulate_re == "conditional")
    simulated = sims.to_numpy(dtype=float)
    observed = _observed_response(m, simulated)
    fitted = np.asarray(m.predict(re_form=math.nan), dtype=float)
    fitted = fitted[~np.isnan(fitted)] if fitted.shape[0] != observed.shape[0] else fitted
    centre = (np.asarray(m.getME("mu"), dtype=float) if simulate_re == "conditional"
              else fitted)
    scaled = quantile_residuals(simulated, observed, rng)
    return SimulatedResiduals(
        scaled_residuals=pd.Series(scaled, index=m.lformula.fr.index, name="scaled_residuals"),
        simulated_response=simulated, observed_response=observed,
        fitted_predicted_response=fitted, n_sim=n_sim, simulate_re=simulate_re, seed=seed,
        fitted_response=centre)


model_functions(globals(), __all__)  # a clear error for a non-model first argument
