"""The random-effects term types (pls/terms.py): θ <-> λ, bounds, names, Λ' pattern, gradient
positions, and that they load without the engine."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from lmeformula.pls.terms import (
    ScalarTerm,
    TermShape,
    VectorTerm,
    column_shapes,
    lambda_template,
    term_shapes,
    term_type,
)

PLS = Path(__file__).resolve().parents[1] / "lmeformula" / "pls"


class _Term:
    def __init__(self, nl: int, nc: int) -> None:
        self.nl, self.nc = nl, nc


def test_term_type_by_columns() -> None:
    assert term_type(7, 1, 3) == ScalarTerm(7, 3)
    assert term_type(7, 3, 2) == VectorTerm(7, 3, 2)
    assert ScalarTerm(5).nc == 1 and ScalarTerm(5).size == 5
    with pytest.raises(ValueError, match="at least one column"):
        term_type(4, 0)


def test_offsets_run_over_consecutive_terms() -> None:
    shapes = term_shapes([_Term(10, 2), _Term(4, 1), _Term(3, 3), _Term(2, 1)])
    assert [type(s) for s in shapes] == [VectorTerm, ScalarTerm, VectorTerm, ScalarTerm]
    assert [s.theta_offset for s in shapes] == [0, 3, 4, 10]
    assert [s.theta_slice for s in shapes][2] == slice(4, 10)
    assert [s.theta_offset for s in column_shapes([1, 2, 3])] == [0, 1, 4]
    assert all(s.nl == 1 for s in column_shapes([1, 2, 3]))


@pytest.mark.parametrize("nc", [1, 2, 3, 4])
def test_theta_lambda_round_trip(nc: int) -> None:
    t = term_type(6, nc, 2)
    theta = np.arange(1.0, 3.0 + t.theta_length)
    lam = t.lower_factor(theta)
    assert lam.shape == (nc, nc)
    assert np.array_equal(np.triu(lam, 1), np.zeros((nc, nc)))  # lower triangular
    # θ fills the lower triangle column by column: λ[0,0], λ[1,0], ..., λ[1,1], ...
    expected = [lam[r, c] for c in range(nc) for r in range(c, nc)]
    assert np.array_equal(theta[t.theta_slice], expected)
    assert np.array_equal(t.theta_from_factor(lam), theta[t.theta_slice])


def test_bounds_and_start() -> None:
    t = VectorTerm(9, 3)
    assert np.array_equal(t.lower, [0.0, -np.inf, -np.inf, 0.0, -np.inf, 0.0])
    assert np.array_equal(t.initial_theta, [1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    assert np.array_equal(t.lower_factor(np.r_[t.initial_theta]), np.eye(3))
    assert np.array_equal(ScalarTerm(4).lower, [0.0])
    assert np.array_equal(ScalarTerm(4).initial_theta, [1.0])


def test_lme4_names() -> None:
    # getME(fm1, "theta") for Reaction ~ Days + (Days | Subject)
    assert VectorTerm(18, 2).theta_names("Subject", ["(Intercept)", "Days"]) == [
        "Subject.(Intercept)", "Subject.Days.(Intercept)", "Subject.Days"]
    assert ScalarTerm(6).theta_names("batch", ["(Intercept)"]) == ["batch.(Intercept)"]
    assert VectorTerm(2, 3).theta_names("g", ["a", "b", "c"]) == [
        "g.a", "g.b.a", "g.c.a", "g.b", "g.c.b", "g.c"]


def test_lambda_template_is_the_kronecker_factor() -> None:
    shapes = term_shapes([_Term(3, 2), _Term(4, 1), _Term(2, 3)])
    theta = np.random.default_rng(1).normal(size=sum(s.theta_length for s in shapes))
    idx, ptr, lind = lambda_template(shapes)
    q = sum(s.size for s in shapes)
    lambdat = sp.csc_matrix((theta[lind], idx, ptr), shape=(q, q)).toarray()
    expected = sp.block_diag([np.kron(np.eye(s.nl), s.lower_factor(theta).T)
                              for s in shapes]).toarray()
    assert np.array_equal(lambdat, expected)
    # every stored entry is a θ (the whole triangle is stored, zeros of θ included)
    assert idx.shape[0] == sum(s.nl * s.theta_length for s in shapes)
    assert np.array_equal(lambda_template([])[1], [0])


@pytest.mark.parametrize("nc", [1, 2, 3])
def test_gradient_positions(nc: int) -> None:
    # f(θ) = Σ C ∘ λ(θ): ∂f/∂λ = C, so ∂f/∂θ is C at the θ's positions
    t = term_type(5, nc, 1)
    c = np.random.default_rng(nc).normal(size=(nc, nc))
    theta = np.random.default_rng(0).normal(size=1 + t.theta_length)

    def f(th: np.ndarray) -> float:
        return float(np.sum(c * t.lower_factor(th)))

    numeric = [f(theta + np.eye(theta.shape[0])[k]) - f(theta)
               for k in range(t.theta_offset, t.theta_offset + t.theta_length)]
    assert np.allclose(t.gradient_from_factor(c), numeric, rtol=1e-12, atol=1e-12)


def _imports(path: Path) -> list[str]:
    """Modules imported at a module's top level (relative ones with their dots)."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append("." * node.level + (node.module or ""))
    return out


def test_term_types_load_without_the_engine() -> None:
    # reterms uses the term types; neither terms.py nor the package's __init__ may load the
    # engine (pls/__init__ loads it lazily, on first use of an engine name)
    assert _imports(PLS / "terms.py") == ["__future__", "abc", "collections.abc",
                                           "dataclasses", "functools", "typing", "numpy"]
    assert [m for m in _imports(PLS / "__init__.py") if m.startswith(".")] == [".terms"]
    assert issubclass(ScalarTerm, TermShape) and issubclass(VectorTerm, TermShape)
