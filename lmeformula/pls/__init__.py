"""The numeric engine: cross-products once, a blocked Cholesky factor per θ."""

from .engine import (
    DensePLSProblem,
    Factorization,
    PLSProblem,
    TermShape,
    lambda_template,
    make_problem,
)

__all__ = ["DensePLSProblem", "Factorization", "PLSProblem", "TermShape", "lambda_template",
           "make_problem"]
