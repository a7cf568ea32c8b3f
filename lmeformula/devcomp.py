"""lme4's ``devcomp``: the pieces of the criterion at the fit (``cmp``) and the model's
dimensions (``dims``), as typed frozen records.

``getME(m, "devcomp")`` (and ``m.devcomp``) is a :class:`DevComp`. It reads as lme4's list
does, by lme4's names: ``dc["cmp"]["pwrss"]``, ``dc["dims"]["nmp"]``, ``dict(dc["dims"])``
(``cmp`` and ``dims`` are read-only mappings and compare equal to dicts with the same entries);
the same values are attributes, ``dc.cmp.pwrss``, ``dc.dims.nmp``. The entries and their order
are lme4 1.1-31's: a GLMM's ``cmp`` adds ``tolPwrss`` and its ``dims`` add ``nAGQ`` and
``compDev``; entries R gives as ``NA`` are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .records import NamedRecord

__all__ = ["DevComp", "DevCompCmp", "DevCompDims"]


# eq=False: a Mapping's equality (entries equal, also to a dict), not the dataclass's
@dataclass(frozen=True, eq=False)
class DevCompCmp(NamedRecord):
    """``devcomp$cmp``: the criterion's pieces at the fit.

    Attributes
    ----------
    ldL2
        log det(L)² (L the sparse Cholesky factor of Λ'Z'WZΛ + I).
    ldRX2
        log det(RX)² (0 without fixed effects).
    wrss, ussq, pwrss
        Weighted residual sum of squares, ‖u‖², and their sum.
    drsum
        Sum of the deviance residuals (GLMM; NaN for an LMM).
    REML, dev
        The REML criterion (REML fit) or the deviance (ML fit, GLMM); NaN for the other.
    sigmaML, sigmaREML
        σ's ML and REML estimates (NaN where the model has none).
    tolPwrss
        PIRLS's convergence tolerance (GLMM only; None, and no entry, for an LMM).
    """

    ldL2: float
    ldRX2: float
    wrss: float
    ussq: float
    pwrss: float
    drsum: float
    REML: float
    dev: float
    sigmaML: float
    sigmaREML: float
    tolPwrss: float | None = None

    _OPTIONAL = frozenset({"tolPwrss"})


@dataclass(frozen=True, eq=False)
class DevCompDims(NamedRecord):
    """``devcomp$dims``: the model's dimensions (integers).

    Attributes
    ----------
    N, n
        Number of observations.
    p, nmp
        Number of fixed effects, and n - p.
    q
        Number of random effects.
    nth
        Length of θ.
    nAGQ, compDev
        Quadrature points and lme4's ``compDev`` flag (GLMM only; None, and no entry, for an
        LMM).
    useSc
        1 when the model has a scale parameter σ.
    reTrms
        Number of random-effects terms.
    spFe
        1 for sparse fixed effects (never here).
    REML
        p for a REML fit, else 0.
    GLMM, NLMM
        1 for a generalized (nonlinear) mixed model.
    """

    N: int
    n: int
    p: int
    nmp: int
    q: int
    nth: int
    nAGQ: int | None = None
    compDev: int | None = None
    useSc: int = 1
    reTrms: int = 0
    spFe: int = 0
    REML: int = 0
    GLMM: int = 0
    NLMM: int = 0

    _OPTIONAL = frozenset({"nAGQ", "compDev"})


@dataclass(frozen=True, eq=False)
class DevComp(NamedRecord):
    """lme4's ``devcomp`` (``getME(m, "devcomp")``): ``cmp`` and ``dims``.

    Attributes
    ----------
    cmp
        The criterion's pieces (:class:`DevCompCmp`).
    dims
        The dimensions (:class:`DevCompDims`).
    """

    cmp: DevCompCmp
    dims: DevCompDims

    def to_dict(self) -> dict[str, Any]:
        """``{"cmp": {...}, "dims": {...}}`` as plain dicts."""
        return {"cmp": self.cmp.to_dict(), "dims": self.dims.to_dict()}
