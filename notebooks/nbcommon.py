"""What every teaching notebook shares: its first code cell.

A notebook source ``nb_*.py`` uses it as ``("code", SETUP)``. Figures are shown inline (the
``inline`` backend, never Agg) and saved into the notebook as PNG at ``figure.dpi`` 80, which
keeps them legible and the repository small.
"""

from __future__ import annotations

SETUP = """\
%matplotlib inline
import numpy as np
import pandas as pd
import scipy.sparse as sp
import matplotlib.pyplot as plt
import lmeformula as lmf
from lmeformula import plots

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80})
np.set_printoptions(linewidth=100)"""
