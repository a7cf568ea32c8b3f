"""R 4.2.2's format.pval, as printed by R (LC_ALL=C Rscript -e 'format.pval(c(...), digits=3)').

p-values in [1e-4, 1e-3) are shown in fixed notation when digits > 1 (R 4.2's rule); the
package had one implementation that missed it and another that had it, now one."""

from __future__ import annotations

import pytest

from lmeformula.printing import _format_pval


@pytest.mark.parametrize(("pv", "expected"), [
    ([1.468e-09, 0.0010677, 0.00047447, 0.000181808],
     ["1.47e-09", "0.001068", "0.000474", "0.000182"]),
    ([0.2, 0.00047447], ["0.200000", "0.000474"]),
    ([0.5, 1e-20], ["0.5", "<2e-16"]),
])
def test_format_pval_as_r(pv: list[float], expected: list[str]) -> None:
    assert [s.strip() for s in _format_pval(pv, 3)] == expected
