"""The formulaic front end (``syntax="formulaic"``): formulaic's parser extended with lme4's
bars, formulaic's materializer for the fixed part and each bar's left side, and the same reTrms
builder and engine as the R syntax.

Security: this syntax evaluates the Python expressions in the formula (that is what formulaic
does); the R syntax never evaluates Python.
"""

from .design import FormulaicDesign, FormulaicModel, formulaic_model
from .lformula import SYNTAXES, FormulaicLFormula, check_syntax, formulaic_lformula
from .parser import FormulaicBar, FormulaicFormula, LmerFormulaParser, parse_formulaic

__all__ = [
    "SYNTAXES",
    "FormulaicBar",
    "FormulaicDesign",
    "FormulaicFormula",
    "FormulaicLFormula",
    "FormulaicModel",
    "LmerFormulaParser",
    "check_syntax",
    "formulaic_lformula",
    "formulaic_model",
    "parse_formulaic",
]
