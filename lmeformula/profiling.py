"""The machinery of likelihood profiles shared by linear and generalized mixed models.

The parameter scales lme4 profiles on (θ <-> standard deviations and correlations, lme4's
``Cv_to_Sv``/``Sv_to_Cv``), lme4's parameter names, the :class:`Profile` result with its
spline-inverse intervals, the stepping rule that extends a profile (lme4's ``fillmat``), and
the bounded BOBYQA used at each profile point. :mod:`lmeformula.inference` (lmer) and
:mod:`lmeformula.glmmprofile` (glmer) both build on it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
from scipy import interpolate, stats

from .errors import LmeFormulaWarning
from .pls.terms import column_shapes
from .validate import check_number

if TYPE_CHECKING:
    from .mermod import LmerMod

__all__ = ["Profile", "parameter_names", "sdcor_from_theta", "theta_from_sdcor"]


def term_sizes(m: LmerMod) -> list[int]:
    return [t.nc for t in m.lformula.reTrms.terms]


def sdcor_from_theta(theta: np.ndarray, sizes: list[int], sigma: float) -> np.ndarray:
    """lme4's ``Cv_to_Sv``: θ -> standard deviations and correlations (lower triangle,
    column-major, per term), with σ appended."""
    out = []
    for t in column_shapes(sizes):
        nc = t.nc
        lam = t.lower_factor(theta)
        cov = sigma**2 * lam @ lam.T
        sd = np.sqrt(np.diag(cov))
        for c in range(nc):
            for r in range(c, nc):
                if r == c:
                    out.append(sd[r])
                else:
                    out.append(cov[r, c] / (sd[r] * sd[c]) if sd[r] * sd[c] > 0 else 0.0)
    return np.array([*out, sigma])


def theta_from_sdcor(pars: np.ndarray, sizes: list[int]) -> np.ndarray:
    """lme4's ``Sv_to_Cv``: standard deviations, correlations and σ (last) -> θ."""
    sigma = pars[-1]
    out: list[float]
    out = []
    for t in column_shapes(sizes):
        m = t.lower_factor(pars)  # sds on the diagonal, correlations below it
        sd = np.diag(m).copy()
        corr = m + m.T
        np.fill_diagonal(corr, 1.0)
        cov = corr * np.outer(sd, sd) / sigma**2
        try:
            lam = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            w, vec = np.linalg.eigh(cov)
            lam = np.linalg.qr((vec * np.sqrt(np.clip(w, 0, None))).T)[1].T
            lam = lam * np.sign(np.diag(lam))[None, :]
        out.extend(t.theta_from_factor(lam).tolist())
    return np.array(out)


def parameter_names(m: LmerMod, oldNames: bool = True) -> list[str]:
    """lme4's profile names: ``.sig01``... and ``.sigma`` (or ``sd_(Intercept)|Subject``,
    ``cor_Days.(Intercept)|Subject``, ``sigma``), then the fixed effects."""
    re = m.lformula.reTrms
    scale = getattr(m, "use_scale", True)  # binomial and Poisson GLMMs have no sigma
    if oldNames:
        names = [f".sig{i + 1:02d}" for i in range(len(m.theta))] + [".sigma"] * scale
    else:
        names = []
        for t in re.terms:
            for c in range(t.nc):
                for r in range(c, t.nc):
                    names.append(f"sd_{t.cnms[r]}|{t.group_name}" if r == c else
                                 f"cor_{t.cnms[r]}.{t.cnms[c]}|{t.group_name}")
        names += ["sigma"] * scale
    return names + list(m.fixef.index)


def perc_label(p: float) -> str:
    text = f"{100 * p:.3g}"
    return f"{text} %"


@dataclass
class Profile:
    """lme4's ``profile``: for each parameter, the points (value, ζ) and the spline inverse.

    Attributes
    ----------
    points
        Parameter name -> DataFrame with columns ``value`` and ``zeta``, sorted by value.
    lower, upper
        Bounds of each parameter.
    """

    points: dict[str, pd.DataFrame]
    lower: dict[str, float]
    upper: dict[str, float]

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """Profile intervals: where the interpolated ζ crosses ±qnorm((1+level)/2)."""
        check_number(level, "level", lower=0, upper=1, lower_open=True, upper_open=True)
        a = (1 - level) / 2
        # an array for a list (the stubs also allow a float)
        cut = cast(np.ndarray, stats.norm.ppf([a, 1 - a]))
        out = {}
        for name, pts in self.points.items():
            lo_hi = _back_spline(pts["value"].to_numpy(), pts["zeta"].to_numpy(), cut)
            if lo_hi is None:
                warnings.warn(f"non-monotonic profile for {name}", LmeFormulaWarning,
                              stacklevel=2)
                lo_hi = np.interp(cut, pts["zeta"], pts["value"], left=np.nan,
                                  right=np.nan)
            lo, hi = lo_hi
            if np.isnan(lo):
                lo = self.lower.get(name, np.nan)
            if np.isnan(hi):
                hi = self.upper.get(name, np.nan)
            # the spline's linear ends can pass a bound (an sd below 0): lme4 reports the bound
            lo = max(lo, self.lower.get(name, -np.inf)) if not np.isnan(lo) else lo
            hi = min(hi, self.upper.get(name, np.inf)) if not np.isnan(hi) else hi
            out[name] = (lo, hi)
        return pd.DataFrame.from_dict(out, orient="index",
                                      columns=[perc_label(a), perc_label(1 - a)])


def _back_spline(x: np.ndarray, z: np.ndarray, at: np.ndarray) -> np.ndarray | None:
    """R's ``backSpline(interpSpline(zeta ~ x))``: a natural cubic spline of ζ in x, inverted
    by cubic Hermite interpolation with slopes 1/ζ'(x); linear beyond the end knots."""
    ok = np.isfinite(z)
    x, z = x[ok], z[ok]
    if x.size < 3:
        return None
    forward = interpolate.CubicSpline(x, z, bc_type="natural")
    slope = forward(x, 1)
    if np.any(np.diff(z) <= 0) or np.any(slope <= 0):
        return None
    back = interpolate.CubicHermiteSpline(z, x, 1.0 / slope, extrapolate=False)
    out = back(at)
    for i, a in enumerate(at):  # the end pieces of a natural spline's inverse are linear
        if a < z[0]:
            out[i] = x[0] + (a - z[0]) / slope[0]
        elif a > z[-1]:
            out[i] = x[-1] + (a - z[-1]) / slope[-1]
    return out


def bounded_bobyqa(fn: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray,
            upper: np.ndarray) -> tuple[np.ndarray, float]:
    import nlopt

    if x0.size == 0:
        return x0, fn(x0)
    opt = nlopt.opt(nlopt.LN_BOBYQA, x0.size)
    opt.set_lower_bounds(lower)
    opt.set_upper_bounds(upper)
    opt.set_min_objective(lambda x, g: fn(x))
    opt.set_xtol_abs(1e-8)
    opt.set_ftol_abs(1e-8)
    opt.set_xtol_rel(1e-4)
    opt.set_maxeval(100000)
    x = np.clip(x0, lower, upper)
    x = opt.optimize(x)
    return np.asarray(x), float(opt.last_optimum_value())


def fill_profile(rows: list[tuple[float, float]], lowcut: float, upcut: float,
          zeta_at: Callable[[float], float], cutoff: float, delta: float,
          maxpts: int = 100, maxmult: float = 10.0) -> list[tuple[float, float]]:
    """lme4's ``fillmat``/``nextpar``: extend (value, ζ) rows until |ζ| passes the cutoff."""
    while (len(rows) < maxpts and lowcut < rows[-1][0] < upcut
           and (np.isnan(rows[-1][1]) or abs(rows[-1][1]) <= cutoff)):
        (p0, z0), (p1, z1) = rows[-2], rows[-1]
        num = p1 - p0
        denom = z1 - z0
        if np.isnan(denom) or denom == 0:
            step = 1e-6
        else:
            step = delta * num / denom
            if step < 0:
                step = 1e-6
            elif abs(step) > abs(maxmult * num):
                step = math.copysign(abs(maxmult * num), step)
        nxt = min(upcut, max(lowcut, p1 + math.copysign(1.0, num) * step))
        rows.append((nxt, zeta_at(nxt)))
    return rows


def profile_points(rows: list[tuple[float, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["value", "zeta"]).drop_duplicates()
    return df.sort_values("value", kind="stable").reset_index(drop=True)
