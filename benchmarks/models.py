"""The benchmark models: packaged data sets and a synthetic crossed series."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Model:
    """One benchmark model.

    Attributes
    ----------
    name
        Row label in the results.
    data
        Packaged data set name, or ``"synthetic:<n>"``.
    formula
        lme4 formula.
    runs
        Timed repetitions (the median is reported).
    """

    name: str
    data: str
    formula: str
    runs: int = 5

    @property
    def rows(self) -> int | None:
        if self.data.startswith(("synthetic:", "crossed:")):
            return int(self.data.split(":")[1])
        return None


SYNTHETIC_FORMULA = "y ~ x + (x | subj) + (1 | item)"
SYNTHETIC_SIZES = [1_000, 10_000, 100_000, 1_000_000]

MODELS = [
    Model("sleepstudy", "sleepstudy", "Reaction ~ Days + (Days | Subject)", runs=21),
    Model("penicillin", "Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", runs=21),
    Model("pastes", "Pastes", "strength ~ 1 + (1 | batch/cask)", runs=21),
    Model("cake", "cake", "angle ~ recipe * temp + (1 | recipe:replicate)", runs=21),
    Model("verbagg", "VerbAgg",
          'as.numeric(r2 == "Y") ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)',
          runs=5),
    Model("insteval", "InstEval", "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
          runs=3),
    Model("insteval_large", "InstEval",
          "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept) + (0 + service | dept)", runs=1),
    *[Model(f"crossed_{n:.0e}".replace("+0", ""), f"synthetic:{n}", SYNTHETIC_FORMULA,
            runs=3 if n <= 100_000 else 1) for n in SYNTHETIC_SIZES],
    # designs outside the tuned shapes (issue 12): every subject meets most items; many
    # levels on both sides; a very large factor crossed with a large one
    Model("dense_crossed_1e6", "crossed:1000000:2000:500", SYNTHETIC_FORMULA, runs=1),
    Model("crossed_1e4x1e3", "crossed:1000000:10000:1000", "y ~ x + (1 | subj) + (1 | item)",
          runs=1),
    Model("crossed_1e5x2e3", "crossed:1000000:100000:2000", "y ~ x + (1 | subj) + (1 | item)",
          runs=1),
]


def crossed(n: int, nsubj: int, nitem: int, seed: int = 20261201) -> pd.DataFrame:
    """Crossed design with random subject intercepts and slopes and item intercepts, levels
    drawn uniformly (every level appears when n is several times the levels)."""
    rng = np.random.default_rng(seed + n + nsubj + nitem)
    subj = rng.integers(0, nsubj, n)
    item = rng.integers(0, nitem, n)
    x = rng.normal(size=n)
    y = (2 + 0.5 * x + rng.normal(size=nsubj)[subj] + rng.normal(scale=0.5, size=nsubj)[subj] * x
         + rng.normal(scale=0.7, size=nitem)[item] + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "subj": [f"s{i}" for i in subj],
                         "item": [f"i{i}" for i in item]})


def synthetic(n: int, seed: int = 20261125) -> pd.DataFrame:
    """Crossed design: 200 subjects with random intercepts and slopes, 100 items."""
    rng = np.random.default_rng(seed + n)
    subj = rng.integers(0, 200, n)
    item = rng.integers(0, 100, n)
    x = rng.normal(size=n)
    b0 = rng.normal(scale=1.0, size=200)
    b1 = rng.normal(scale=0.5, size=200)
    c0 = rng.normal(scale=0.7, size=100)
    y = 2 + 0.5 * x + b0[subj] + b1[subj] * x + c0[item] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "subj": [f"s{i:03d}" for i in subj],
                         "item": [f"i{i:03d}" for i in item]})


def data_file(model: Model, directory: Path) -> str:
    """The data for a model: a packaged name, or a CSV written once for synthetic data."""
    if model.rows is None:
        return model.data
    if model.data.startswith("crossed:"):
        n, nsubj, nitem = (int(v) for v in model.data.split(":")[1:])
        path = directory / f"crossed_{n}_{nsubj}_{nitem}.csv"
        if not path.exists():
            crossed(n, nsubj, nitem).to_csv(path, index=False)
        return str(path)
    path = directory / f"synthetic_{model.rows}.csv"
    if not path.exists():
        synthetic(model.rows).to_csv(path, index=False)
    return str(path)
