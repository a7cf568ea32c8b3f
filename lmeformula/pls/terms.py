"""Random-effects term types, one per covariance shape: what the engines (and everything that
maps θ to Λ) need of a term, without importing the engine.

A term with ``nc`` columns on ``nl`` levels has an nc x nc relative covariance factor λ, the
same on every level (Λ = I_nl ⊗ λ), parameterised by its part of θ, which starts at
``theta_offset``. Each type owns

- the θ <-> λ map (:meth:`TermShape.lower_factor`, :meth:`TermShape.theta_from_factor`),
- the bounds on its θ (:attr:`TermShape.lower`) and lme4's starting θ (:attr:`initial_theta`),
- lme4's parameter names (:meth:`TermShape.theta_names`: ``Subject.(Intercept)``,
  ``Subject.Days.(Intercept)``),
- the pattern of its level's block of Λ' (:meth:`TermShape.lambdat_block`, for ``Lind``), and
- where a derivative in λ lands in the gradient in θ (:meth:`TermShape.gradient_from_factor`).

The types: :class:`ScalarTerm` (one column, θ = λ, the ``(1 | g)`` terms) and
:class:`VectorTerm` (an unstructured lower-triangular λ, θ its lower triangle column by column,
lme4's ``(x | g)``). :func:`term_type` chooses one from ``nc``; :func:`term_shapes` is the one
place where θ offsets are run.

Other shapes plug in here. lme4 1.1-31 writes ``(x || g)`` as separate scalar terms (so does
this package), so no diagonal type is built yet. A diagonal term (independent variances on
one factor: ``theta_positions`` the diagonal of λ, every bound 0), or structured ones such as
compound symmetry or AR(1) (λ a non-linear function of θ: override :meth:`lower_factor`,
:meth:`theta_from_factor` and :meth:`gradient_from_factor` by the chain rule) subclass
:class:`TermShape` and are chosen in :func:`term_type`; the engines read a term only through
``nl``, ``nc``, ``size``, ``theta_offset``, :meth:`lower_factor`, :meth:`lambdat_block` and
:meth:`gradient_from_factor` (the blocked engine's scalar fast path is for ``nc == 1``).
``inference.sdcor_from_theta`` and ``reterms.ReTerm.theta_index`` still assume an unstructured
λ and would need the type too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np

__all__ = ["ScalarTerm", "TermShape", "VectorTerm", "column_shapes", "lambda_template",
           "lower_factors", "term_shapes", "term_type"]


class TermShape(ABC):
    """A random-effects term's covariance shape: levels, columns, and its part of θ.

    Subclasses are frozen dataclasses with fields ``nl``, ``nc`` (fixed for some types) and
    ``theta_offset``; they define which entries of λ θ fills (:attr:`theta_positions`).
    """

    nl: int  # levels of the grouping factor
    nc: int  # columns: random effects per level
    theta_offset: int  # where the term's part of θ starts

    @property
    @abstractmethod
    def theta_positions(self) -> np.ndarray:
        """Flat positions in the nc x nc λ of the term's θ, in θ's order (read-only)."""

    @property
    def size(self) -> int:
        """The term's number of random effects, nl x nc."""
        return self.nl * self.nc

    @property
    def theta_length(self) -> int:
        """Length of the term's part of θ."""
        return int(self.theta_positions.shape[0])

    @property
    def theta_slice(self) -> slice:
        """The term's part of θ."""
        return slice(self.theta_offset, self.theta_offset + self.theta_length)

    @property
    def diagonal(self) -> np.ndarray:
        """Which of the term's θ lie on λ's diagonal."""
        return self.theta_positions % (self.nc + 1) == 0

    @property
    def lower(self) -> np.ndarray:
        """Bounds on the term's θ: 0 on λ's diagonal, -inf off it (lme4's ``lower``)."""
        out = np.full(self.theta_length, -np.inf)
        out[self.diagonal] = 0.0
        return out

    @property
    def initial_theta(self) -> np.ndarray:
        """lme4's starting θ for the term: λ = I."""
        return self.diagonal.astype(float)

    def lower_factor(self, theta: np.ndarray) -> np.ndarray:
        """The term's nc x nc λ from the whole θ (a new array)."""
        lam = np.zeros((self.nc, self.nc))
        lam.ravel()[self.theta_positions] = theta[self.theta_slice]
        return lam

    def theta_from_factor(self, lam: np.ndarray) -> np.ndarray:
        """The term's θ (its part only) from an nc x nc λ: :meth:`lower_factor`'s inverse."""
        return np.asarray(lam, dtype=float).ravel()[self.theta_positions]

    def gradient_from_factor(self, d_lam: np.ndarray) -> np.ndarray:
        """The term's part of a gradient in θ from the nc x nc derivatives in λ's entries
        (``d_lam[r, c]`` the derivative in λ[r, c])."""
        return np.asarray(d_lam).ravel()[self.theta_positions]

    def theta_names(self, group: str, cnms: Sequence[str]) -> list[str]:
        """lme4's names of the term's θ (``getME(m, "theta")``): ``group.col`` for λ[r, r],
        ``group.row.col`` for λ[r, c] off the diagonal."""
        rows, cols = np.divmod(self.theta_positions, self.nc)
        return [f"{group}.{cnms[r]}" if r == c else f"{group}.{cnms[r]}.{cnms[c]}"
                for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]

    def lambdat_block(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One level's block of Λ' in CSC order: (rows, entries per column, θ index).

        Column c of the block holds λ[c, r] (Λ' is λ transposed) for the r where θ fills
        λ[c, r], rows ascending; the θ indices are the whole θ's."""
        return _lambdat_block(self.nc, self.theta_offset,
                              tuple(self.theta_positions.tolist()))


@dataclass(frozen=True)
class ScalarTerm(TermShape):
    """A term with one column (``(1 | g)``, ``(0 + x | g)``): λ is θ's one entry."""

    nl: int
    theta_offset: int = 0
    nc: int = field(default=1, init=False)

    @property
    def theta_positions(self) -> np.ndarray:
        return _lower_positions(1)

    def lower_factor(self, theta: np.ndarray) -> np.ndarray:
        return np.full((1, 1), theta[self.theta_offset], dtype=float)


@dataclass(frozen=True)
class VectorTerm(TermShape):
    """A term with an unstructured λ (``(x | g)``): λ lower triangular, θ its lower triangle
    column by column (λ[0, 0], λ[1, 0], ..., λ[1, 1], ...), as lme4's."""

    nl: int
    nc: int
    theta_offset: int = 0

    @property
    def theta_positions(self) -> np.ndarray:
        return _lower_positions(self.nc)


def term_type(nl: int, nc: int, theta_offset: int = 0) -> TermShape:
    """The term type of a term with ``nc`` columns on ``nl`` levels (lme4's: scalar or
    unstructured), its θ from ``theta_offset`` on."""
    if nc == 1:
        return ScalarTerm(int(nl), int(theta_offset))
    if nc < 1:
        raise ValueError(f"a random-effects term needs at least one column, not {nc}")
    return VectorTerm(int(nl), int(nc), int(theta_offset))


class _HasShape(Protocol):
    @property
    def nl(self) -> int: ...

    @property
    def nc(self) -> int: ...


def term_shapes(terms: Iterable[_HasShape]) -> list[TermShape]:
    """The types of consecutive terms (anything with ``nl`` and ``nc``), θ offsets running."""
    out: list[TermShape] = []
    offset = 0
    for t in terms:
        shape = term_type(int(t.nl), int(t.nc), offset)
        out.append(shape)
        offset += shape.theta_length
    return out


def column_shapes(sizes: Iterable[int]) -> list[TermShape]:
    """Types of consecutive terms with ``sizes`` columns, one level each, θ offsets running
    (for maps of θ alone, such as standard deviations and correlations)."""
    out: list[TermShape] = []
    offset = 0
    for nc in sizes:
        shape = term_type(1, int(nc), offset)
        out.append(shape)
        offset += shape.theta_length
    return out


def lower_factors(terms: Iterable[_HasShape], theta: np.ndarray) -> list[np.ndarray]:
    """Each term's λ at θ (terms consecutive in θ)."""
    return [s.lower_factor(theta) for s in term_shapes(terms)]


@lru_cache(maxsize=64)
def _lower_positions(nc: int) -> np.ndarray:
    """Flat positions in an nc x nc array of the lower triangle, column by column (the order
    of θ within an unstructured term)."""
    rows, cols = np.tril_indices(nc)
    order = np.lexsort((rows, cols))
    out = rows[order] * nc + cols[order]
    out.flags.writeable = False
    return out


@lru_cache(maxsize=256)
def _lambdat_block(nc: int, offset: int, positions: tuple[int, ...],
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """See :meth:`TermShape.lambdat_block` (read-only arrays, cached)."""
    index = {pos: k for k, pos in enumerate(positions)}
    rows: list[int] = []
    counts: list[int] = []
    theta: list[int] = []
    for c in range(nc):  # column c of Λ' is row c of λ
        present = [r for r in range(nc) if c * nc + r in index]
        rows.extend(present)
        counts.append(len(present))
        theta.extend(offset + index[c * nc + r] for r in present)
    out = (np.array(rows, dtype=np.int64), np.array(counts, dtype=np.int64),
           np.array(theta, dtype=np.int64))
    for a in out:
        a.flags.writeable = False
    return out


def lambda_template(terms: Sequence[TermShape]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSC pattern of Λ' for consecutive terms: (indices, indptr, Lind)."""
    indices, counts, lind = [], [], []
    row0 = 0
    for t in terms:
        rows, per_column, theta = t.lambdat_block()
        starts = row0 + np.arange(t.nl, dtype=np.int64) * t.nc
        indices.append((starts[:, None] + rows).ravel())
        lind.append(np.tile(theta, t.nl))
        counts.append(np.tile(per_column, t.nl))
        row0 += t.nl * t.nc
    if not indices:
        empty = np.zeros(0, np.int64)
        return empty, np.zeros(1, np.int64), empty
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    return np.concatenate(indices), indptr, np.concatenate(lind)
