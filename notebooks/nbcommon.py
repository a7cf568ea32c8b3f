"""What every teaching notebook shares: its first code cell.

A notebook source ``nb_*.py`` uses ``("code", setup("import pandas as pd", ...))`` with the
imports it needs beyond numpy, matplotlib and lmeformula, or ``("code", SETUP)`` for the usual
set (numpy, pandas, matplotlib, lmeformula and its plots). Figures are shown inline (the
``inline`` backend, never Agg) and saved into the notebook as PNG at 80 dpi, which keeps them
legible and the repository small.
"""

from __future__ import annotations


def setup(*imports: str) -> str:
    """The first code cell: numpy, matplotlib and lmeformula, then ``imports`` (one line
    each), then the figure settings."""
    lines = ["%matplotlib inline", "import numpy as np", "import matplotlib.pyplot as plt",
             "import lmeformula as lmf", *imports, "",
             'plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80})',
             "np.set_printoptions(linewidth=100)"]
    return "\n".join(lines)


SETUP = setup("import pandas as pd", "from lmeformula import plots")
