"""lme4's ``allFit``: refit a model with every optimizer the package offers and compare.

Each refit starts from the model's own starting θ with the model's control settings, only the
optimizer changed (and its evaluation limit set to ``maxfun``), as lme4's ``allFit`` does with
``update(object, control = ...)``. A doubtful fit (convergence warnings, a singular fit, a
large gradient) is usually fine when the optimizers agree on the criterion and the estimates;
:meth:`AllFit.summary` tabulates what lme4's ``summary.allFit`` tabulates.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .control import LmerControl
from .errors import LmeFormulaError
from .generics import show_html
from .lmer import mkMerMod, optimizeLmer
from .mermod import LmerMod
from .modular import mkLmerDevfun
from .progress import progress_bar
from .validate import model_functions

__all__ = ["ALLFIT_OPTIMIZERS", "AllFit", "AllFitSummary", "allFit"]

# name shown -> (optimizer of lmerControl, its optCtrl, the optCtrl key of the evaluation limit)
ALLFIT_OPTIMIZERS: dict[str, tuple[str, dict[str, Any], str]] = {
    "bobyqa": ("bobyqa", {}, "maxfun"),  # minqa's (lmeformula.bobyqa, its faithful port)
    "Nelder_Mead": ("Nelder_Mead", {}, "maxfun"),
    "Powell": ("Powell", {}, "maxfev"),
    "L-BFGS-B": ("L-BFGS-B", {}, "maxfun"),
    "nloptwrap.NLOPT_LN_NELDERMEAD": ("nloptwrap", {"algorithm": "NLOPT_LN_NELDERMEAD"},
                                      "maxeval"),
    "nloptwrap.NLOPT_LN_SBPLX": ("nloptwrap", {"algorithm": "NLOPT_LN_SBPLX"}, "maxeval"),
    "nloptwrap.NLOPT_LN_BOBYQA": ("nloptwrap", {"algorithm": "NLOPT_LN_BOBYQA"}, "maxeval"),
}


@dataclass
class AllFit:
    """The refits of :func:`allFit`.

    Attributes
    ----------
    fits
        Optimizer name -> the refitted model, or the exception its refit raised.
    times
        Optimizer name -> elapsed seconds.
    original
        The model that was refitted.
    """

    fits: dict[str, LmerMod | Exception]
    times: dict[str, float]
    original: LmerMod

    def __getitem__(self, name: str) -> LmerMod | Exception:
        return self.fits[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fits)

    def __len__(self) -> int:
        return len(self.fits)

    def summary(self) -> AllFitSummary:
        """lme4's ``summary.allFit``: which fits worked, their messages, and per optimizer the
        fixed effects, log-likelihood, standard deviations/correlations, θ, time and
        evaluations."""
        ok = {k: isinstance(v, LmerMod) for k, v in self.fits.items()}
        good = {k: v for k, v in self.fits.items() if isinstance(v, LmerMod)}
        msgs: dict[str, list[str]] = {}
        for name, fit in self.fits.items():
            if isinstance(fit, LmerMod):
                msgs[name] = list(fit.optinfo.lme4_messages) + list(fit.optinfo.warnings)
            else:
                msgs[name] = [f"{type(fit).__name__}: {fit}"]
        names = list(good)
        fixef = pd.DataFrame([good[k].fixef.to_numpy() for k in names], index=names,
                             columns=list(self.original.fixef.index))
        llik = pd.Series([good[k].logLik().value for k in names], index=names, name="llik",
                         dtype=float)
        sdcor = pd.DataFrame([_sdcor(good[k]) for k in names], index=names)
        theta = pd.DataFrame([good[k].theta.to_numpy() for k in names], index=names,
                             columns=list(self.original.theta.index))
        times = pd.Series(self.times, name="elapsed", dtype=float)
        feval = pd.Series([good[k].optinfo.feval for k in names], index=names, name="feval",
                          dtype=float)
        return AllFitSummary(ok, msgs, fixef, llik, sdcor, theta, times, feval)

    def __str__(self) -> str:
        return str(self.summary())

    __repr__ = __str__


def _sdcor(m: LmerMod) -> pd.Series:
    """Standard deviations, then correlations, then σ (``as.data.frame(VarCorr)``'s
    ``cov.last`` order), named ``group.var`` / ``group.var1.var2`` / ``sigma``."""
    vc = m.VarCorr.as_data_frame(order="cov.last")
    names = []
    for grp, v1, v2 in zip(vc["grp"], vc["var1"], vc["var2"], strict=True):
        if grp == "Residual":
            names.append("sigma")
        else:
            names.append(".".join(str(x) for x in (grp, v1, v2) if x is not None
                                  and not (isinstance(x, float) and math.isnan(x))))
    return pd.Series(vc["sdcor"].to_numpy(dtype=float), index=names)


@dataclass
class AllFitSummary:
    """lme4's ``summary.allFit``: each attribute is one of its components."""

    which_OK: dict[str, bool]
    msgs: dict[str, list[str]]
    fixef: pd.DataFrame
    llik: pd.Series
    sdcor: pd.DataFrame
    theta: pd.DataFrame
    times: pd.Series
    feval: pd.Series
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = ["$which.OK", pd.Series(self.which_OK).to_string(), "", "$msgs"]
        for name, m in self.msgs.items():
            lines.append(f"[{name}]")
            lines.extend(f"  {x}" for x in m) if m else lines.append("  NULL")
        with pd.option_context("display.width", 100, "display.precision", 7):
            for label, table in (("fixef", self.fixef), ("llik", self.llik),
                                 ("sdcor", self.sdcor), ("theta", self.theta),
                                 ("times (elapsed, s)", self.times), ("feval", self.feval)):
                lines += ["", f"${label}", table.to_string()]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return show_html(self)  # lmeformula.html's layout, through lmeformula.generics


def _refit(m: LmerMod, optimizer: str, opt_ctrl: Mapping[str, Any]) -> LmerMod:
    pf = m.lformula
    base: LmerControl = pf.control
    ctrl = dataclasses.replace(base, optimizer=optimizer,
                               optCtrl={**dict(base.optCtrl), **dict(opt_ctrl)})
    devfun = mkLmerDevfun(pf, start=np.asarray(m.devfun.start))
    with warnings.catch_warnings():
        # the messages are kept in optinfo and shown by summary(), as lme4's allFit does
        warnings.simplefilter("ignore")
        opt = optimizeLmer(devfun, ctrl)
    return mkMerMod(devfun, opt, pf, m.data_name, m.call_args)


def allFit(m: LmerMod, optimizers: Sequence[str] | None = None, maxfun: int = 100_000,
           catch_errs: bool = True, progress: bool = False) -> AllFit:
    """lme4's ``allFit``: refit ``m`` with each optimizer and keep every result.

    Parameters
    ----------
    m
        A fitted model.
    optimizers
        Names from :data:`ALLFIT_OPTIMIZERS` (default: all of them): minqa's ``bobyqa``
        (lme4's first), lme4's own ``Nelder_Mead``, scipy's ``Powell`` and ``L-BFGS-B`` and
        NLopt's Nelder-Mead, Subplex and BOBYQA (``nloptwrap.NLOPT_LN_BOBYQA``, lme4's
        default); ``nlminbwrap``, ``nmkbw`` (dfoptim) and ``optimx`` have no Python
        counterpart here.
    maxfun
        Evaluation limit given to every optimizer (lme4's default 1e5).
    catch_errs
        Keep a failing refit's exception in the result instead of raising it.
    progress
        Show a progress bar (tqdm, on stderr), one step per optimizer.

    Returns
    -------
    AllFit
        ``fits`` by name; ``summary()`` gives lme4's table of the results.
    """
    names = (list(ALLFIT_OPTIMIZERS) if optimizers is None
             else [optimizers] if isinstance(optimizers, str) else list(optimizers))
    unknown = [n for n in names if n not in ALLFIT_OPTIMIZERS]
    if unknown:
        raise LmeFormulaError(f"unknown optimizer(s) {', '.join(map(repr, unknown))} for "
                              f"allFit: use {', '.join(ALLFIT_OPTIMIZERS)}")
    fits: dict[str, LmerMod | Exception] = {}
    times: dict[str, float] = {}
    with progress_bar(len(names), "allFit", progress) as bar:
        for name in names:
            optimizer, opt_ctrl, limit = ALLFIT_OPTIMIZERS[name]
            start = time.perf_counter()
            try:
                fits[name] = _refit(m, optimizer, {**opt_ctrl, limit: maxfun})
            except Exception as err:  # lme4's catch.errs keeps any failure
                if not catch_errs:
                    raise
                fits[name] = err
            times[name] = time.perf_counter() - start
            bar.update(1)
    return AllFit(fits, times, m)


model_functions(globals(), __all__)  # a clear error for a non-model first argument
