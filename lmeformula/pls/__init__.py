"""The numeric engine: cross-products once, a blocked Cholesky factor per θ.

Modules: ``terms`` (the term types, one per covariance shape, and the θ <-> λ map; imports no
engine), ``system`` (what both engines share: the base class, the profiled criterion),
``crossprod`` (cross-products by counting), ``downdate`` (the blocked engine's downdate plan),
``engine`` (the blocked engine), ``large`` (the blocked engine with a compact block 2 of
scalar terms), ``factory`` (``make_problem``: which engine a model gets), ``dense`` (the dense
engine for small systems), ``plans`` (the blocked engine's typed plan for block 2 and its
per-θ update, as MixedModels.jl's ``updateL!``), ``pirls_kernel`` (glmer's PIRLS step for
scalar terms), ``protocol`` (what a deviance function needs of an engine), ``threads`` (BLAS
threads policy), ``memory`` (the dense block's size check), ``policy`` (every size
threshold), ``lapack`` (LAPACK helpers).
The engine's names are loaded on first use, so that ``reterms`` can use the term types
without importing the engine.
"""

from __future__ import annotations

from typing import Any

from .terms import (
    ScalarTerm,
    TermShape,
    VectorTerm,
    column_shapes,
    lambda_template,
    lower_factors,
    term_shapes,
    term_type,
)

__all__ = ["DensePLSProblem", "Factorization", "PLSProblem", "ScalarTerm", "TermShape",
           "VectorTerm", "column_shapes", "lambda_template", "lower_factors", "make_problem",
           "term_shapes", "term_type"]

_ENGINE_NAMES = {"DensePLSProblem", "Factorization", "PLSProblem"}


def __getattr__(name: str) -> Any:
    if name == "make_problem":
        from . import factory

        return factory.make_problem
    if name in _ENGINE_NAMES:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
