"""The arguments of a model call, held once: :class:`ModelCall` (lme4's ``m@call``).

``lFormula``, ``glFormula``, ``lmer`` and ``glmer`` take the same arguments (formula, data,
subset, weights, na_action, offset, contrasts, control, syntax; REML or family). Each front end
checks them into one frozen :class:`ModelCall`; the model frame, the structures and the fit read
their arguments from it, and the result keeps it (``pf.call``, ``m.call``) for ``update``,
``refit``, ``predict`` and the bootstrap, as R keeps the call and evaluates it again.

It sits below the model frame in the pipeline: it knows the arguments, not what they build.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, KeysView, Mapping
from dataclasses import dataclass, field
from typing import Any

from .control import LmerControl, as_control
from .errors import ArgumentError, FormulaError
from .validate import check_flag

__all__ = ["SYNTAXES", "ModelCall", "check_syntax"]

SYNTAXES = ("R", "formulaic")


def check_syntax(syntax: str) -> str:
    """The ``syntax=`` argument, checked: ``"R"`` (default) or ``"formulaic"``."""
    if syntax not in SYNTAXES:
        raise FormulaError(f"syntax must be 'R' or 'formulaic', not {syntax!r}")
    return syntax


@dataclass(frozen=True, eq=False)  # compared by identity: arguments may be arrays and frames
class ModelCall:
    """The arguments of one call of ``lFormula`` / ``glFormula`` / ``lmer`` / ``glmer``.

    Built once by the front end that was called, checked on construction (and again by
    :meth:`replace`), then shared: the model frame, the structures and the fitted model read
    the same object (``m.call is m.lformula.call``). It can be read as the dict it replaces,
    ``call["formula"]``, ``call.get("syntax")``, ``dict(call)``.

    Attributes
    ----------
    formula
        The formula text as given (``||`` not expanded; ``pf.formula`` is lme4's stored form).
    data
        The data the model was built from (a reference, never modified; pandas when ``lmer`` or
        ``glmer`` was called, whatever data frame ``lFormula`` was given otherwise). ``update``
        refits on it when no new data are given.
    REML
        Whether the REML criterion is to be used (False for ``glFormula`` / ``glmer``).
    subset
        Boolean array-like or R expression text selecting rows, or None.
    weights, offset
        Column names or arrays with one value per row of ``data``, or None.
    na_action
        ``"omit"``, ``"exclude"``, ``"fail"`` or ``"pass"`` (R's ``"na.omit"`` spellings too).
    contrasts
        Contrasts of fixed-effect factors (``{"f": "contr.sum"}``), or None.
    control
        The identifiability checks' and the optimizer's settings
        (:class:`lmeformula.control.LmerControl`; for ``glmer`` the checks of its
        :class:`lmeformula.GlmerControl`, which the fitted model keeps as ``glmer_control``).
    syntax
        ``"R"`` or ``"formulaic"``.
    family
        The GLM family of ``glFormula`` / ``glmer`` (a :class:`lmeformula.families.Family`),
        None for ``lFormula`` / ``lmer``.
    """

    formula: str
    data: Any = field(default=None, repr=False)
    REML: bool = True
    subset: Any = None
    weights: Any = None
    na_action: str = "omit"
    offset: Any = None
    contrasts: Mapping[str, Any] | None = None
    control: LmerControl = field(default_factory=LmerControl)
    syntax: str = "R"
    family: Any = None

    def __post_init__(self) -> None:
        # the checks lFormula made on its arguments, in its order (REML, contrasts, syntax);
        # the formula, data, subset, weights, offset and na_action are checked where they are
        # evaluated (parser, model frame), with R's messages
        object.__setattr__(self, "REML", bool(check_flag(self.REML, "REML")))
        if self.contrasts is not None and not isinstance(self.contrasts, Mapping):
            raise ArgumentError("contrasts must be a dict: factor name -> contrast")
        check_syntax(self.syntax)
        # a dict of options (update(m, control={...})) becomes the settings it names
        object.__setattr__(self, "control", as_control(self.control))

    def replace(self, **changes: Any) -> ModelCall:
        """A new call with some arguments changed (``update``'s step), checked again.

        Raises
        ------
        ArgumentError
            For a name that is not an argument of the call.
        """
        unknown = sorted(set(changes) - set(_FIELDS))
        if unknown:
            raise ArgumentError(f"unused argument(s) {', '.join(unknown)}: the call's arguments "
                                f"are {', '.join(_FIELDS)}")
        return dataclasses.replace(self, **changes)

    # -- read as the dict it replaces -------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``call[key]``, or ``default`` for a name that is not an argument."""
        return getattr(self, key) if key in _FIELDS else default

    def keys(self) -> KeysView[str]:
        """The arguments' names."""
        return dict.fromkeys(_FIELDS).keys()

    def __contains__(self, key: object) -> bool:
        return key in _FIELDS

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)


_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelCall))
