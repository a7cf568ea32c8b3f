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
        return int(self.data.split(":")[1]) if self.data.startswith("synthetic:") else None


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
]


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
    path = directory / f"synthetic_{model.rows}.csv"
    if not path.exists():
        synthetic(model.rows).to_csv(path, index=False)
    return str(path)
