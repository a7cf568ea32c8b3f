"""The numeric engine: cross-products once, a blocked Cholesky factor per θ."""

from .engine import Factorization, PLSProblem, TermShape, lambda_template

__all__ = ["Factorization", "PLSProblem", "TermShape", "lambda_template"]
