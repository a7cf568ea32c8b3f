"""syntax="formulaic": the parser (bars inside parentheses, multi-part '|' outside), and package
errors for R-only constructs and bad input; the R syntax never evaluates Python."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import lmeformula as lmf
from lmeformula.pyformula import parse_formulaic
from lmeformula.pyformula.parser import PARSER


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return lmf.datasets.load("sleepstudy")


def test_bars_are_split_from_the_fixed_part() -> None:
    p = parse_formulaic("y ~ x + np.log(z) + (0 + x || g) + (1 | a/b) + (x | a:b)")
    assert [str(t) for t in p.fixed_formula] == ["1", "x", "np.log(z)"]
    assert [b.name for b in p.bars] == ["0 + x | g", "1 | b:a", "1 | a", "x | a:b"]
    assert [str(b.lhs) for b in p.bars] == ["x", "1", "1", "1 + x"]
    assert p.fixed.term_labels == ("x", "np.log(z)")
    p = parse_formulaic("y ~ (x + z || g)")
    assert [(b.name, str(b.lhs)) for b in p.bars] == [("1 | g", "1"), ("0 + x | g", "x"),
                                                       ("0 + z | g", "z")]
    p = parse_formulaic("~ (Days - 1 | Subject)")
    assert p.response is None and str(p.bars[0].lhs) == "Days"


def test_formulaics_own_multipart_bar_still_works_outside_parentheses() -> None:
    terms = PARSER.get_terms("y ~ x | z")
    assert [str(t) for t in terms.rhs[0]] == ["1", "x"]
    assert [str(t) for t in terms.rhs[1]] == ["1", "z"]
    with pytest.raises(lmf.FormulaError, match="inside parentheses"):
        parse_formulaic("y ~ x | z")


@pytest.mark.parametrize(("formula", "message"), [
    ("Reaction ~ I(Days^2) + (1 | Subject)", r"'\^' is XOR in Python.*\{x\*\*2\} or I\(x\*\*2\)"),
    ("Reaction ~ {Days^2} + (1 | Subject)", r"XOR"),
    ("Reaction ~ Days %in% Subject + (1 | Subject)", r"%in%.*syntax='R'"),
    ("Reaction ~ Days + offset(Days) + (1 | Subject)", r"offset\(\) is R.*offset=.*syntax='R'"),
    ("Reaction ~ as.numeric(Days) + (1 | Subject)", r"not a Python expression.*syntax='R'"),
    ("Reaction ~ Days", r"No random effects terms"),
    ("Reaction ~ Days + (1 | Subject + Days)", r"Invalid grouping factor"),
    ("Reaction ~ Days + (1 | np.abs(Days))", r"Invalid grouping factor"),
])
def test_r_only_and_malformed_formulas_are_package_errors(sleep: pd.DataFrame, formula: str,
                                                          message: str) -> None:
    with pytest.raises(lmf.LmeFormulaError, match=message):
        lmf.lFormula(formula, sleep, syntax="formulaic")


def test_data_errors(sleep: pd.DataFrame) -> None:
    with pytest.raises(lmf.VariableNotFoundError, match="nosuch"):
        lmf.lFormula("Reaction ~ nosuch + (1 | Subject)", sleep, syntax="formulaic")
    with pytest.raises(lmf.VariableNotFoundError, match="object 'Group' not found"):
        lmf.lFormula("Reaction ~ Days + (1 | Group)", sleep, syntax="formulaic")
    with pytest.raises(lmf.ModelFrameError, match="response must be numeric"):
        lmf.lFormula("Subject ~ Days + (1 | Subject)", sleep, syntax="formulaic")
    with pytest.raises(lmf.FormulaError, match="contrasts= belongs to syntax='R'"):
        lmf.lFormula("Reaction ~ Days + (1 | Subject)", sleep, syntax="formulaic",
                     contrasts={"Subject": "contr.sum"})
    with pytest.raises(lmf.FormulaError, match="syntax must be 'R' or 'formulaic'"):
        lmf.lFormula("Reaction ~ Days + (1 | Subject)", sleep, syntax="python")
    with pytest.raises(lmf.FormulaError, match="formula must be a string"):
        lmf.lFormula(3, sleep, syntax="formulaic")  # type: ignore[arg-type]
    m = lmf.lmer("Reaction ~ bs(Days, df=4) + (1 | Subject)", sleep, syntax="formulaic")
    # formulaic refuses to extrapolate a spline: a package error, formulaic's reason kept
    with pytest.raises(lmf.FormulaError, match="extrapolation"):
        m.predict(pd.DataFrame({"Days": [20.0], "Subject": ["308"]}))
    assert isinstance(sleep, pd.DataFrame) and sleep.shape == (180, 3)  # untouched


def test_the_r_syntax_never_evaluates_python(sleep: pd.DataFrame) -> None:
    probe = "lmeformula_probe_module"
    formula = f"Reaction ~ __import__('sys').modules.setdefault('{probe}', 1) + (1 | Subject)"
    with pytest.raises(lmf.LmeFormulaError):
        lmf.lFormula(formula, sleep)
    assert probe not in sys.modules


def test_non_finite_fixed_effects_column_stops_as_in_the_r_syntax() -> None:
    # np.log(0) = -inf: lme4 stops ("NA/NaN/Inf in 'x'"); dropping the column as rank
    # deficient would silently fit an intercept-only model
    df = lmf.datasets.load("sleepstudy")
    with pytest.warns(RuntimeWarning), pytest.raises(lmf.ModelFrameError,
                                                     match=r"NA/NaN/Inf in 'x'.*np.log\(Days\)"):
        lmf.lmer("Reaction ~ np.log(Days) + (1 | Subject)", df, syntax="formulaic")


def test_lmertest_term_tests_need_r_syntax() -> None:
    """lmerTest's term-wise tests read R's terms: a formulaic-syntax fit gets a package
    error saying so (it was an AttributeError), while summary and contest still work."""
    import warnings

    from lmeformula.datasets import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmf.lmer("angle ~ recipe * temp + (1 | recipe:replicate)", load("cake"),
                     syntax="formulaic")
    for call in (lambda: lmf.drop1(m), lambda: lmf.anova(m, type=2),
                 lambda: lmf.anova(m, ddf="Kenward-Roger"), lambda: lmf.ls_means(m)):
        with pytest.raises(lmf.LmeFormulaError, match='refit it with syntax="R"'):
            call()
    assert "Linear mixed model fit by REML" in str(m.summary())
    contrast = np.zeros(len(m.beta))
    contrast[1] = 1.0
    assert lmf.contest(m, contrast).shape[0] == 1
