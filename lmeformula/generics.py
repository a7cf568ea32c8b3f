"""Generic functions through which a fitted model's methods reach later stages of the pipeline:
its printed text, its HTML and lmerTest's coefficient table.

Imports run one way, down the pipeline (``... -> mermod -> after the fit -> printing/html``). A
user asks the model (``print(m)``, ``m.summary()``, ``m._repr_html_()``,
``m.summary(ddf="Satterthwaite")``), but lme4's layouts and lmerTest's tables are built by later
modules, which read the model and must not be imported by it. As R's ``print`` and ``summary``
dispatch to the methods of the package that knows the layout, the model's methods call these
generic functions (:func:`functools.singledispatch`, dispatching on the class and its bases),
and the later modules register their implementations when they are imported:

- :func:`show`, the text R prints: :mod:`lmeformula.printing` registers ``LmerMod``, its
  ``Summary``, ``AnovaTable`` and ``LsMeansTable``; :mod:`lmeformula.glmerprint` registers
  ``GlmerMod`` and ``GlmerSummary``;
- :func:`show_html`, a notebook's HTML: :mod:`lmeformula.html` registers ``LmerMod``,
  ``Summary``, ``VarCorr``, ``AnovaTable``, ``LsMeansTable`` and ``AllFitSummary`` (a
  ``GlmerMod`` finds ``LmerMod``'s);
- :func:`ddf_coefficients`, lmerTest's coefficient table of ``summary(ddf=...)``:
  :mod:`lmeformula.ddf.tables` registers ``LmerMod``.

The package's ``__init__`` imports these modules, and Python runs it before any module of the
package, so the implementations are registered whichever module a user imports. Structures
that are printed on their own before a fit exists (``ReTrms``, the ``lFormula`` result,
``VarCorr``'s text) do not go through here: they print themselves with
:mod:`lmeformula.rformat`.

This module is at the bottom of the pipeline and imports nothing of the package.
"""

from __future__ import annotations

import html
from functools import singledispatch
from typing import Any

__all__ = ["ddf_coefficients", "show", "show_html"]


@singledispatch
def show(obj: object) -> str:
    """The text R prints for ``obj`` (the object's ``__str__`` and ``__repr__``).

    Without a registered layout (none is missing in the assembled package), Python's default
    representation.
    """
    return object.__repr__(obj)


@singledispatch
def show_html(obj: object) -> str:
    """``obj``'s HTML for notebooks (its ``_repr_html_``); without a registered layout, its
    text in a ``<pre>`` block."""
    return f"<pre>{html.escape(show(obj))}</pre>"


@singledispatch
def ddf_coefficients(model: object, ddf: str) -> Any:
    """lmerTest's coefficient table (Estimate, Std. Error, df, t value, Pr(>|t|)) of
    ``summary(model, ddf = ddf)``, a pandas DataFrame."""
    raise TypeError(f"no coefficient table with denominator degrees of freedom for "
                    f"{type(model).__name__}")
