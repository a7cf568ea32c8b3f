"""``glmerControl``: lme4 1.1-31's defaults for glmer.

Two optimizers (``("bobyqa", "Nelder_Mead")``: the first for the θ-only stage, the second for
(θ, β)); ``tolPwrss``, ``compDev``, ``nAGQ0initStep``; the identifiability checks as for lmer
except ``check.conv.nparmax`` (20). Names may use lme4's dots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .control import LmerControl, as_control, own_copy
from .errors import LmeFormulaError
from .validate import check_flag, check_number

__all__ = ["GlmerControl", "as_glmer_control", "glmerControl"]

_CHECK_NAMES = {f.name for f in fields(LmerControl)} - {"optimizer", "optCtrl", "restart_edge",
                                                        "boundary_tol", "calc_derivs", "given"}


@dataclass(frozen=True)
class GlmerControl:
    """Settings of ``glmer`` (lme4's ``glmerControl``).

    Attributes
    ----------
    optimizer
        ``(stage1, stage2)``; one name is used for both stages. Stage 1 (θ only, β inside
        PIRLS) defaults to ``"bobyqa"``; stage 2 (θ and β) to ``"Nelder_Mead"`` (lme4's own
        Nelder-Mead). Also ``"nloptwrap"``, and None (no optimisation: the deviance at the
        start).

        ``"L-BFGS-B"`` (not in lme4; stage 2 with ``nAGQ = 1`` only, binomial(logit) and
        poisson(log)): scipy's L-BFGS-B over (θ, β) on the Laplace deviance with its
        analytic gradient (:mod:`lmeformula.laplace_grad`), preconditioned by a Hessian
        from finite differences of that gradient. ``optimizer="L-BFGS-B"`` means
        ``("auto", "L-BFGS-B")``: stage 1 is None (the deviance at the start θ, PIRLS
        giving β there) when every random-effects term is scalar, lme4's bobyqa when one is
        vector-valued (a gradient method from θ = 1 can end in a boundary minimum of Λ's
        triangular parametrisation there); ``("bobyqa", "L-BFGS-B")`` always keeps lme4's
        stage 1.
        The deviance it minimises and reports takes log|L|² with the weights at the
        conditional mode itself; lme4 takes them from PIRLS's last-but-one step, a
        difference of the order of PIRLS's tolerance (VerbAgg: the log-likelihood is
        3.9e-4 higher than lme4's, as glmm's). The Hessian behind ``vcov`` is the forward
        difference of the analytic gradient (lme4: central differences of its deviance);
        standard errors differ from lme4's by up to ~1% and agree with glmm's. Other
        families and links are refused (their working weights are not the Hessian in u, so
        the gradient would need another term). ``optCtrl``: ``gtol`` (1e-5, on the
        preconditioned gradient), ``coarse``, ``round_iter``, ``max_rounds``, ``ftol``.
    tolPwrss
        PIRLS convergence tolerance on the relative change of the penalised deviance.
    compDev
        lme4's flag for compiled deviance evaluation (kept for compatibility; always on).
    nAGQ0initStep
        Run the nAGQ = 0 stage first (default True).
    boundary_tol
        Components of θ within this of the boundary are tried on it.
    calc_derivs
        Finite-difference gradient and Hessian at the optimum (default True, as lme4
        1.1-31; None for lme4 >= 1.1-38's rule: n < 1e4 and fewer than 20 parameters).
    optCtrl
        Options passed to the optimizers (``maxfun``, ``FtolAbs``, ``xst``, ``xt``, ...).
    checks
        The identifiability and convergence checks' settings (an :class:`LmerControl`).
    given
        The options as the caller gave them to :func:`glmerControl` or as a dict, in their
        order and spelling (None for an object made otherwise), for the printed call's
        ``Control:`` line. Not compared, not an option.
    """

    optimizer: tuple[str | None, str | None] = ("bobyqa", "Nelder_Mead")
    tolPwrss: float = 1e-7
    compDev: bool = True
    nAGQ0initStep: bool = True
    restart_edge: bool = False
    boundary_tol: float = 1e-5
    calc_derivs: bool | None = True
    optCtrl: Mapping[str, Any] = field(default_factory=dict)
    check_response_not_const: str = "stop"
    checks: LmerControl = field(default_factory=LmerControl)
    given: tuple[tuple[str, Any], ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_number(self.tolPwrss, "tolPwrss", lower=0, lower_open=True)
        for name in ("compDev", "nAGQ0initStep", "restart_edge"):
            check_flag(getattr(self, name), name)
        check_flag(self.calc_derivs, "calc.derivs", allow_none=True)
        if self.restart_edge:
            raise LmeFormulaError("restart_edge not implemented for optimizeGlmer yet")
        # the control's own dict: the caller's later edits do not reach it, nor its the caller's
        object.__setattr__(self, "optCtrl", own_copy(self.optCtrl))
        opt: Any = self.optimizer
        if opt == "L-BFGS-B":  # the Laplace stage's optimizer; stage 1 by the model
            object.__setattr__(self, "optimizer", ("auto", opt))
        elif opt is None or isinstance(opt, str):
            object.__setattr__(self, "optimizer", (opt, opt))
        elif len(opt) == 1:
            object.__setattr__(self, "optimizer", (opt[0], opt[0]))


_OWN = {f.name for f in fields(GlmerControl)} - {"checks", "given"}


def glmerControl(**kwargs: Any) -> GlmerControl:
    """Make a :class:`GlmerControl`; lme4's dotted names via ``**{"check.nlev.gtr.1": ...}``."""
    return as_glmer_control(kwargs)


def as_glmer_control(control: Any) -> GlmerControl:
    """Accept a GlmerControl, a dict of options (dotted or Python names), or None."""
    if control is None:
        return GlmerControl()
    if isinstance(control, GlmerControl):
        return control
    if isinstance(control, LmerControl):
        raise LmeFormulaError("please use glmerControl() instead of lmerControl()")
    if not isinstance(control, Mapping):
        raise TypeError("control must be a GlmerControl or a dict of options")
    own: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    for key, value in control.items():
        name = key.replace(".", "_")
        if name in _OWN:
            own[name] = value
        elif name in _CHECK_NAMES:
            checks[name] = value
        else:
            raise LmeFormulaError(f"unknown glmerControl option {key!r}")
    # the options as given, for the printed call (a copy: the caller's dict may change later)
    return replace(GlmerControl(), checks=as_control(checks), **own,
                   given=tuple(own_copy(dict(control)).items()))
