"""The same lme4 formula fitted by statsmodels' ``MixedLM``, and the two compared.

MixedLM has one grouping factor: within each group, random effects with a free covariance
matrix (``exog_re``) and variance components, each a set of independent effects sharing one
variance (``exog_vc``). lme4 terms map onto that as follows:

======================================  ====================================================
lme4                                    MixedLM
======================================  ====================================================
``(x | g)``                             groups = g, ``exog_re`` = [1, x] (free covariance)
``(0 + x | g)``                         groups = g, ``exog_re`` = [x]
``(1 | g) + (0 + x | g)``, ``(x || g)`` groups = g, ``exog_re`` = [1], a component for x
``(1 | a/b)``                           groups = a, ``exog_re`` = [1], a component with one
                                        indicator per level of b within a
``(1 | f) + (1 | h)`` (crossed)         one group for all rows, a component per factor
                                        (indicators of its levels): the single-group
                                        construction of statsmodels' documentation
``(0 + x | f) + (1 | h)`` (crossed)     one group, components x*indicator(f) and
                                        indicator(h)
``(x | f) + (1 | h)`` (crossed)         not expressible: a correlated vector term needs the
                                        grouping factor to be MixedLM's group, and the
                                        crossed factor h cannot be nested in it
two correlated vector terms             not expressible: MixedLM has one ``exog_re`` block
======================================  ====================================================

The design matrices are built here from lmeformula's own model structures (X with R's names,
the terms' X_i and grouping factors), so the fixed part, factor coding and transforms are
exactly lme4's; statsmodels only estimates. Parameter conventions differ: statsmodels reports
variances (``cov_re``, ``vcomp``) and the residual variance ``scale``; lme4 reports standard
deviations and correlations (VarCorr) and σ; lme4's θ is the relative Cholesky factor,
``cov_re = scale · λλ'``. Both packages' log-likelihoods include the same constants, under REML
and ML, so ``llf`` and ``logLik`` are directly comparable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import LmeFormulaError
from ..modular import LFormula, lFormula
from ..reterms import ReTerm

__all__ = [
    "StatsmodelsSpec",
    "StatsmodelsUnsupported",
    "compare_statsmodels",
    "lme4_to_statsmodels_params",
    "statsmodels_spec",
    "statsmodels_to_theta",
    "to_statsmodels",
]


class StatsmodelsUnsupported(LmeFormulaError):
    """The lme4 model has a structure statsmodels' MixedLM cannot express."""


@dataclass
class StatsmodelsSpec:
    """How an lme4 model is laid out for MixedLM.

    Attributes
    ----------
    groups
        MixedLM's group label of each row.
    exog_re
        The term with a free covariance matrix (or None for the single-group construction).
    components
        Variance-component name -> the lme4 term it carries.
    exog_vc
        MixedLM's ``exog_vc``: component -> group -> design block.
    construction
        ``"grouped"``, ``"nested"`` or ``"single group"``.
    """

    lformula: LFormula
    groups: np.ndarray
    exog_re: ReTerm | None
    exog_re_matrix: np.ndarray
    components: dict[str, ReTerm]
    exog_vc: dict[str, dict[Any, np.ndarray]]
    construction: str
    notes: list[str] = field(default_factory=list)


def _factor_levels_nested_in(inner: pd.Categorical, outer: pd.Categorical) -> bool:
    codes_in = np.asarray(inner.codes)
    codes_out = np.asarray(outer.codes)
    pairs = pd.DataFrame({"i": codes_in, "o": codes_out}).drop_duplicates()
    return not pairs["i"].duplicated().any()


def statsmodels_spec(pf: LFormula) -> StatsmodelsSpec:
    """Map the random-effects terms of an lFormula result onto MixedLM's structure, or raise
    :class:`StatsmodelsUnsupported` saying which term cannot be expressed and why."""
    re = pf.reTrms
    terms = list(re.terms)
    factors = re.flist
    vector_terms = [t for t in terms if t.nc > 1]
    if len(vector_terms) > 1:
        raise StatsmodelsUnsupported(
            f"statsmodels MixedLM cannot express the terms ({vector_terms[0].name}) and "
            f"({vector_terms[1].name}) together: it has one random-effects block with a free "
            "covariance matrix per group")
    # the outer factor: every other factor must be nested in it
    outer = None
    for name in sorted(factors, key=lambda n: len(factors[n].categories)):
        if all(_factor_levels_nested_in(factors[o], factors[name]) for o in factors):
            outer = name
            break
    if outer is not None:
        construction = "grouped" if len(factors) == 1 else "nested"
        groups = np.asarray(factors[outer].astype(str))
        bad = [t for t in vector_terms if t.group_name != outer]
        if bad:
            raise StatsmodelsUnsupported(
                f"statsmodels MixedLM cannot express ({bad[0].name}): a correlated vector term "
                f"on the nested factor {bad[0].group_name} would need its own covariance "
                f"matrix within each level of {outer}, and MixedLM has one per group")
        own = [t for t in terms if t.group_name == outer]
        re_term = vector_terms[0] if vector_terms else next(
            (t for t in own if t.cnms == ["(Intercept)"]), own[0] if own else None)
        rest = [t for t in terms if t is not re_term]
    else:
        if vector_terms:
            crossed = [t.name for t in terms if t.group_name != vector_terms[0].group_name]
            raise StatsmodelsUnsupported(
                f"statsmodels MixedLM cannot express ({vector_terms[0].name}) with the crossed "
                f"term(s) ({'), ('.join(crossed)}): a correlated vector term needs its grouping "
                "factor to be MixedLM's group, and a crossed factor cannot be nested in it")
        construction = "single group"
        groups = np.zeros(pf.X_values.shape[0], dtype=int)
        re_term = None
        rest = terms
    n = pf.X_values.shape[0]
    exog_re_matrix = re_term.X if re_term is not None else np.zeros((n, 0))
    components: dict[str, ReTerm] = {}
    exog_vc: dict[str, dict[Any, np.ndarray]] = {}
    labels = pd.unique(groups)
    rows_of = {g: np.flatnonzero(groups == g) for g in labels}
    for t in rest:
        name = t.key
        components[name] = t
        codes = np.asarray(t.factor.codes)
        exog_vc[name] = {}
        for g in labels:
            rows = rows_of[g]
            levels = np.unique(codes[rows])
            block = np.zeros((rows.shape[0], levels.shape[0] * t.nc))
            pos = np.searchsorted(levels, codes[rows])
            block[np.arange(rows.shape[0]), pos] = t.X[rows, 0]
            exog_vc[name][g] = block
    return StatsmodelsSpec(pf, groups, re_term, exog_re_matrix, components, exog_vc,
                           construction)


def to_statsmodels(formula: str, data: pd.DataFrame, REML: bool = True, **kwargs: Any) -> Any:
    """A statsmodels ``MixedLM`` for an lme4 formula (unfitted; fit with ``reml=REML``).

    The model carries the mapping as ``model.lme4_spec`` (:class:`StatsmodelsSpec`) and the
    REML choice as ``model.lme4_REML``.
    """
    import statsmodels.api as sm

    pf = lFormula(formula, data, REML=REML, **kwargs)
    spec = statsmodels_spec(pf)
    exog_re = (pd.DataFrame(spec.exog_re_matrix, columns=spec.exog_re.cnms)
               if spec.exog_re is not None else spec.exog_re_matrix)
    y = pf.y if pf.offset is None else pf.y - pf.offset
    if pf.weights is not None:
        raise StatsmodelsUnsupported("statsmodels MixedLM has no prior weights")
    model = sm.MixedLM(pd.Series(y, name=pf.frame.response), pf.X.reset_index(drop=True),
                       groups=spec.groups, exog_re=exog_re, exog_vc=_vcspec(spec))
    model.lme4_spec = spec
    model.lme4_REML = REML
    return model


def _vcspec(spec: StatsmodelsSpec) -> Any:
    """MixedLM's VCSpec: per component, one design block per group in MixedLM's group order."""
    from statsmodels.regression.mixed_linear_model import VCSpec

    if not spec.exog_vc:
        return None
    labels = sorted(set(spec.groups.tolist()))
    names = list(spec.exog_vc)
    mats = [[spec.exog_vc[name][g] for g in labels] for name in names]
    colnames = [[[f"{name}[{j}]" for j in range(m.shape[1])] for m in per_group]
                for name, per_group in zip(names, mats, strict=True)]
    return VCSpec(names, colnames, mats)


def _statsmodels_parameters(result: Any, spec: StatsmodelsSpec) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in result.fe_params.items():
        out[str(name)] = float(value)
    if spec.exog_re is not None:
        cov = np.asarray(result.cov_re)
        t = spec.exog_re
        sd = np.sqrt(np.diag(cov))
        for c in range(t.nc):
            out[f"sd_{t.cnms[c]}|{t.group_name}"] = float(sd[c])
        for c in range(t.nc):
            for r in range(c + 1, t.nc):
                out[f"cor_{t.cnms[r]}.{t.cnms[c]}|{t.group_name}"] = float(
                    cov[r, c] / (sd[r] * sd[c]))
    names = list(result.model.exog_vc.names) if result.model.exog_vc is not None else []
    for k, name in enumerate(names):
        t = spec.components[name]
        out[f"sd_{t.cnms[0]}|{t.group_name}"] = float(np.sqrt(result.vcomp[k]))
    out["sigma"] = float(np.sqrt(result.scale))
    out["logLik"] = float(result.llf)
    return out


def _lmeformula_parameters(m: Any) -> dict[str, float]:
    out = {str(k): float(v) for k, v in m.fixef.items()}
    for t in m.lformula.reTrms.terms:
        vc = m.VarCorr.terms[m.lformula.reTrms.terms.index(t)]
        for c in range(t.nc):
            out[f"sd_{t.cnms[c]}|{t.group_name}"] = float(vc.stddev[c])
        for c in range(t.nc):
            for r in range(c + 1, t.nc):
                out[f"cor_{t.cnms[r]}.{t.cnms[c]}|{t.group_name}"] = float(vc.correlation[r, c])
    out["sigma"] = float(m.sigma)
    out["logLik"] = float(m.logLik().value)
    return out


def compare_statsmodels(formula: str, data: pd.DataFrame, REML: bool = True,
                        **kwargs: Any) -> pd.DataFrame:
    """Fit the formula with lmeformula and with statsmodels' MixedLM and compare.

    ``data`` may be any data frame :func:`lmeformula.lFormula` takes (polars, pyarrow, a dict);
    keyword arguments (``weights``, ``subset``, ``syntax="formulaic"``...) go to ``lFormula``
    and ``lmer``; MixedLM is built from lmeformula's own matrices either way.

    Returns
    -------
    DataFrame indexed by parameter (lme4 names: fixed effects, ``sd_<col>|<group>``,
    ``cor_<col>.<col>|<group>``, ``sigma``, ``logLik``) with columns ``lmeformula``,
    ``statsmodels``, ``abs_diff`` and ``rel_diff``.
    """
    from ..dataframe import as_pandas
    from ..lmer import lmer

    data = as_pandas(data)  # once for both fits
    model = to_statsmodels(formula, data, REML=REML, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(reml=REML)
        ours = lmer(formula, data, REML=REML, **kwargs)
    theirs = _statsmodels_parameters(result, model.lme4_spec)
    mine = _lmeformula_parameters(ours)
    index = list(mine)
    table = pd.DataFrame({"lmeformula": [mine[k] for k in index],
                          "statsmodels": [theirs.get(k, np.nan) for k in index]}, index=index)
    table["abs_diff"] = (table["lmeformula"] - table["statsmodels"]).abs()
    table["rel_diff"] = table["abs_diff"] / table["lmeformula"].abs().where(
        table["lmeformula"] != 0, np.nan)
    table.attrs["statsmodels_result"] = result
    table.attrs["lmeformula_model"] = ours
    return table


def lme4_to_statsmodels_params(m: Any) -> dict[str, Any]:
    """lmeformula's fit in statsmodels' conventions: ``fe_params``, ``cov_re`` (variances of
    the ``exog_re`` term), ``vcomp`` (variances of the components) and ``scale`` (σ²)."""
    spec = statsmodels_spec(m.lformula)
    vc = {t.key: v for t, v in zip(m.lformula.reTrms.terms, m.VarCorr.terms, strict=True)}
    cov_re = vc[spec.exog_re.key].cov if spec.exog_re is not None else np.zeros((0, 0))
    vcomp = np.array([vc[name].cov[0, 0] for name in spec.components])
    return {"fe_params": m.fixef.copy(), "cov_re": cov_re, "vcomp": vcomp,
            "scale": m.sigma**2}


def statsmodels_to_theta(result: Any, spec: StatsmodelsSpec) -> np.ndarray:
    """lme4's θ (relative Cholesky factors, lme4's term order) from a MixedLM fit."""
    scale = float(result.scale)
    names = list(result.model.exog_vc.names) if result.model.exog_vc is not None else []
    parts: list[np.ndarray] = []
    for t in spec.lformula.reTrms.terms:
        if spec.exog_re is not None and t.key == spec.exog_re.key:
            lam = np.linalg.cholesky(np.asarray(result.cov_re) / scale
                                     + 1e-300 * np.eye(t.nc))
            parts.extend(lam[r, c] for c in range(t.nc) for r in range(c, t.nc))
        else:
            parts.append(np.sqrt(result.vcomp[names.index(t.key)] / scale))
    return np.array(parts)
