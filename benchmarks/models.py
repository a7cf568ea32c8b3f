"""The benchmark models: data set and lme4 formula."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    """One benchmark model."""

    name: str
    data: str
    formula: str
    runs: int = 7  # timed repetitions (the median is reported)


MODELS = [
    Model("sleepstudy", "sleepstudy", "Reaction ~ Days + (Days | Subject)", runs=21),
    Model("penicillin", "Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", runs=21),
    Model("pastes", "Pastes", "strength ~ 1 + (1 | batch/cask)", runs=21),
    Model("cake", "cake", "angle ~ recipe * temp + (1 | recipe:replicate)", runs=21),
    Model("verbagg", "VerbAgg",
          'as.numeric(r2 == "Y") ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)', runs=5),
    Model("insteval", "InstEval", "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)", runs=3),
]
