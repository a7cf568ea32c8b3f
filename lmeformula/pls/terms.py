"""Random-effects term shapes: what the engine (and everything that maps θ to Λ) needs of a
term, without importing the engine.

A term with ``nc`` columns on ``nl`` levels has an unstructured nc x nc lower-triangular
relative covariance factor λ (a scalar term is the case nc = 1), stored in θ column by column
from ``theta_offset`` on. :func:`term_shapes` is the one place where the offsets are run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

__all__ = ["TermShape", "lambda_template", "lower_factors", "term_shapes"]


@dataclass(frozen=True)
class TermShape:
    """What the engine needs of a random-effects term: levels, columns, theta offset."""

    nl: int
    nc: int
    theta_offset: int

    @property
    def size(self) -> int:
        return self.nl * self.nc

    @property
    def theta_length(self) -> int:
        """Length of the term's part of θ: nc(nc+1)/2."""
        return self.nc * (self.nc + 1) // 2

    @property
    def theta_slice(self) -> slice:
        """The term's part of θ."""
        return slice(self.theta_offset, self.theta_offset + self.theta_length)

    @property
    def lower(self) -> np.ndarray:
        """Bounds on the term's θ: 0 on λ's diagonal, -inf off it."""
        out = np.full(self.theta_length, -np.inf)
        diagonal = np.flatnonzero(_lower_positions(self.nc) % (self.nc + 1) == 0)
        out[diagonal] = 0.0
        return out

    def lower_factor(self, theta: np.ndarray) -> np.ndarray:
        """The term's nc x nc lower-triangular λ from theta (column-major lower triangle)."""
        lam = np.zeros((self.nc, self.nc))
        lam.ravel()[_lower_positions(self.nc)] = theta[self.theta_slice]
        return lam


class _HasShape(Protocol):
    @property
    def nl(self) -> int: ...

    @property
    def nc(self) -> int: ...


def term_shapes(terms: Iterable[_HasShape]) -> list[TermShape]:
    """The shapes of consecutive terms (anything with ``nl`` and ``nc``), θ offsets running."""
    out, offset = [], 0
    for t in terms:
        shape = TermShape(int(t.nl), int(t.nc), offset)
        out.append(shape)
        offset += shape.theta_length
    return out


def lower_factors(terms: Iterable[_HasShape], theta: np.ndarray) -> list[np.ndarray]:
    """Each term's λ at θ (terms consecutive in θ)."""
    return [s.lower_factor(theta) for s in term_shapes(terms)]


@lru_cache(maxsize=64)
def _lower_positions(nc: int) -> np.ndarray:
    """Flat positions in an nc x nc array of the lower triangle, column by column (the order
    of θ within a term)."""
    rows, cols = np.tril_indices(nc)
    order = np.lexsort((rows, cols))
    out = rows[order] * nc + cols[order]
    out.flags.writeable = False
    return out


def lambda_template(terms: Sequence[TermShape]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSC pattern of Λ' for consecutive terms: (indices, indptr, Lind)."""
    indices, counts, lind = [], [], []
    row0 = 0
    for t in terms:
        # one level's block of Λ': column c holds λ[c, r] for r <= c, in rows r
        rows = [r for c in range(t.nc) for r in range(c + 1)]
        theta = [t.theta_offset + r * t.nc - r * (r - 1) // 2 + (c - r)
                 for c in range(t.nc) for r in range(c + 1)]
        starts = row0 + np.arange(t.nl, dtype=np.int64) * t.nc
        indices.append((starts[:, None] + np.array(rows, dtype=np.int64)).ravel())
        lind.append(np.tile(np.array(theta, dtype=np.int64), t.nl))
        counts.append(np.tile(np.arange(1, t.nc + 1, dtype=np.int64), t.nl))
        row0 += t.nl * t.nc
    if not indices:
        empty = np.zeros(0, np.int64)
        return empty, np.zeros(1, np.int64), empty
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    return np.concatenate(indices), indptr, np.concatenate(lind)
