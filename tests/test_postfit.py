"""What users do after a fit, on cases the other fixtures do not reach (fixtures from
tools/R/make_fixtures_postfit.R): R's format() of columns mixing signs and magnitudes, as in
an lmerTest summary whose df pass 1000."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from cases import FIXTURES
from fit_accuracy import assert_text_up_to_ties, at_point

import lmeformula as lmf
from lmeformula.rformat import format_numbers

REF: dict[str, Any] = json.loads((FIXTURES / "postfit.json").read_text())


def as_list(x: Any) -> list[Any]:
    """jsonlite writes vectors of length one as scalars."""
    return x if isinstance(x, list) else [x]


@pytest.mark.parametrize("case", REF["format"], ids=lambda c: str(as_list(c["x"])))
def test_format_numbers_as_r(case: dict[str, Any]) -> None:
    # R's formatReal compares the fixed width, the widest integer part with its own sign
    # plus the decimals, with the scientific width before nsmall widens the decimals: a
    # negative number narrower than the widest positive one does not add a column
    # (-0.02935 beside 1130.70353 stays fixed at digits = 4)
    assert format_numbers(as_list(case["x"]), case["digits"], case["nsmall"]) == \
        as_list(case["text"])


def test_lmertest_summary_with_large_df() -> None:
    # the coefficient block's Estimate, Std. Error and df are formatted together; with df
    # above 1000 beside a small negative estimate R keeps fixed notation (the bug printed
    # 1.071e+03 etc.); at lme4's θ the text is R's to rounding
    spec = REF["summary"]
    data = pd.DataFrame(spec["data"])
    m = lmf.lmer("y ~ x + I(x^2) + (1 | g)", data, data_name="d")
    at = at_point(m, spec["theta"])
    values = [v for col in spec["coefficients"].values() for v in as_list(col)]
    assert_text_up_to_ties(str(at.summary(ddf="Satterthwaite")), spec["text"], values)
