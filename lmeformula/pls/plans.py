"""The blocked engine's per-θ plan for block 2, as typed blocks, and its update at a θ.

Block 2 of the augmented system (the terms after the first, then X and y) is assembled per θ
as S = Λ₂'(M22 - L21 L21')Λ₂ + I, with L21 L21' = G B Gᵀ the downdate by block 1. It is cut
into rectangles, one per pair of blocks (a, b) on or above the diagonal (terms, then X and y
as one block whose Λ is the identity); how a rectangle is filled depends on its kind:

- :class:`ScaledBlock`: both blocks are scalar terms, or X and y: Λ₂ is a constant on the
  rectangle, which is copied from M22 multiplied by λ_a λ_b (diagonal rectangles in bands of
  rows, each from its diagonal rightwards: LAPACK reads the upper triangle only);
- :class:`ZeroBlock`: a scalar term with itself when every term is scalar: the block is
  diagonal (one level per observation), so it is zero-filled and its diagonal written apart
  (InstEval: 5 MB less to read per θ);
- :class:`VectorBlock`: a pair with a vector term: copied as is, downdated, then multiplied by
  the terms' λ on both sides (their λ mixes entries).

:func:`update_block2` is MixedModels.jl's ``updateL!`` for block 2 (copy and scale by Λ,
rank-downdate, multiply by Λ, inflate the diagonal), dispatching on these types; block 2's
type, :class:`~lmeformula.pls.blocks.DenseDiagonalBlock`, holds the plan and factors the result
(``dpotrf``). :func:`plan_block2` makes the plan once per model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .terms import TermShape

__all__ = ["Block", "Block2Plan", "DowndateSegment", "ScaledBlock", "VectorBlock",
           "VectorPatternAssembly", "ZeroBlock", "plan_block2", "times_lambdas",
           "update_block2"]


@dataclass(frozen=True)
class _Rectangle:
    """A rectangle of block 2 (rows x cols) inside the pair of blocks (a, b)."""

    rows: slice
    cols: slice
    a: int
    b: int


@dataclass(frozen=True)
class ScaledBlock(_Rectangle):
    """Copied from M22 scaled by λ_a λ_b (both blocks scalar terms, or X and y)."""


@dataclass(frozen=True)
class ZeroBlock(_Rectangle):
    """A scalar term's diagonal block with itself (all terms scalar): zero-filled; its
    diagonal is written apart, scaled."""


@dataclass(frozen=True)
class VectorBlock(_Rectangle):
    """A pair with a vector term: copied, downdated, then (I ⊗ λ_a)' block (I ⊗ λ_b)."""


Block = ScaledBlock | ZeroBlock | VectorBlock


@dataclass(frozen=True)
class DowndateSegment:
    """The downdate's entries of one pair of blocks, ``keys[span]``, and how that pair is
    assembled (``kind``: one of its rectangles)."""

    span: slice
    kind: Block


@dataclass(frozen=True)
class Block2Plan:
    """How block 2 is assembled per θ (made once per model by :func:`plan_block2`).

    Attributes
    ----------
    terms
        The terms of block 2 (all but the first).
    p
        Columns of X.
    blocks
        The rectangles of block 2's upper triangle, in the order they are filled.
    segments
        The downdate's entries by pair of blocks (its keys are ordered by pair).
    qr, m
        Rows of block 2 that are random effects; its order.
    vector_blocks
        The rectangles with a vector term (one per pair).
    downdate_first
        With a vector term, scaled entries are downdated before they are scaled,
        (M22 - D)·θθ, as the vector terms' blocks must be; the optimizer's path on flat
        criteria depends on such last digits (InstEval with (0 + service | dept): 273
        evaluations, as lme4's 270, against 360 otherwise).
    """

    terms: tuple[TermShape, ...]
    p: int
    blocks: tuple[Block, ...]
    segments: tuple[DowndateSegment, ...]
    downdate_first: bool
    band: int = 128
    qr: int = field(init=False)  # rows of block 2 that are random effects
    m: int = field(init=False)  # order of block 2
    vector_blocks: tuple[VectorBlock, ...] = field(init=False)  # one rectangle per pair

    def __post_init__(self) -> None:
        qr = sum(t.size for t in self.terms)
        object.__setattr__(self, "qr", qr)
        object.__setattr__(self, "m", qr + self.p + 1)
        object.__setattr__(self, "vector_blocks",
                           tuple(b for b in self.blocks if isinstance(b, VectorBlock)))

    def scales(self, theta: np.ndarray) -> list[float]:
        """Λ₂ on each block where it is a constant: a scalar term's θ, 1 for X and y (nan
        for a vector term)."""
        return [float(theta[t.theta_offset]) if t.nc == 1 else math.nan
                for t in self.terms] + [1.0]


def plan_block2(terms: Sequence[TermShape], p: int, edges: np.ndarray,
                pair_segments: Sequence[tuple[int, int, int, int]], band: int) -> Block2Plan:
    """The plan of block 2 for its ``terms`` (all but the first) and ``p`` columns of X.

    ``edges``: where each block starts (terms, X and y) and the end; ``pair_segments``:
    (start, stop, a, b) of the downdate's keys of each pair of blocks; ``band``: rows per
    band of a scaled diagonal block."""
    nblk = len(edges) - 1
    scalar = [t.nc == 1 for t in terms] + [True]
    mixed = not all(scalar)
    blocks: list[Block] = []
    for a in range(nblk):
        for b in range(a, nblk):
            rows, cols = slice(int(edges[a]), int(edges[a + 1])), slice(int(edges[b]),
                                                                        int(edges[b + 1]))
            if not (scalar[a] and scalar[b]):
                blocks.append(VectorBlock(rows, cols, a, b))
            elif a < b:
                blocks.append(ScaledBlock(rows, cols, a, b))
            else:
                kind = ZeroBlock if a < nblk - 1 and not mixed else ScaledBlock
                for lo in range(rows.start, rows.stop, band):
                    hi = min(lo + band, rows.stop)
                    blocks.append(kind(slice(lo, hi), slice(lo, rows.stop), a, a))
    kinds: dict[tuple[int, int], Block] = {}
    for blk in blocks:
        kinds.setdefault((blk.a, blk.b), blk)
    segments = tuple(DowndateSegment(slice(lo, hi), kinds[(a, b)])
                     for lo, hi, a, b in pair_segments)
    return Block2Plan(tuple(terms), p, tuple(blocks), segments, mixed, band)


@dataclass(frozen=True, eq=False)
class PatternAssembly:
    """Block 2 assembled at the entries of a sparse pattern only, the values a sparse factor
    reads (:mod:`lmeformula.pls.cholmod`), for plans whose terms are all scalar: entry by
    entry S = (M22 - D)·λ_a λ_b + I, λ_a the scale of the entry's row block and λ_b of its
    column block (1 for X and y), I on the random effects' diagonal.

    Attributes
    ----------
    plan
        Block 2's plan (its scales per block).
    m22
        M22 at the pattern's entries.
    pair
        Each entry's pair of blocks, a·nblk + b, as an index into the table of scale products.
    key_slots
        The pattern's slot of each of the downdate's keys, in the keys' order.
    inflate
        The slots of the random effects' diagonal.
    """

    plan: Block2Plan
    m22: np.ndarray
    pair: np.ndarray
    key_slots: np.ndarray
    inflate: np.ndarray

    @classmethod
    def of(cls, plan: Block2Plan, m22: np.ndarray, keys: np.ndarray, flat: np.ndarray,
           edges: np.ndarray) -> PatternAssembly:
        """The assembly at ``flat`` (ascending flat positions i·m + j, i ≤ j, of S's upper
        triangle, every key and the diagonal among them) of a plan without vector terms;
        ``m22``: M22 at those positions."""
        m = plan.m
        rows, cols = np.divmod(flat, m)
        nblk = len(edges) - 1
        a = np.searchsorted(edges, rows, side="right") - 1
        b = np.searchsorted(edges, cols, side="right") - 1
        pair = (a * nblk + b).astype(np.min_scalar_type(nblk * nblk))
        return cls(plan, np.asarray(m22, dtype=float), pair, *_key_and_inflate_slots(plan,
                                                                                    flat, keys))

    def values(self, theta: np.ndarray, down: np.ndarray) -> np.ndarray:
        """S's values at the pattern's entries at ``theta``, ``down`` the rank update D at
        the keys (not modified)."""
        scales = np.asarray(self.plan.scales(theta))
        out = self.m22.copy()
        out[self.key_slots] -= down
        out *= np.multiply.outer(scales, scales).ravel()[self.pair]
        out[self.inflate] += 1.0
        return out


def _key_and_inflate_slots(plan: Block2Plan, flat: np.ndarray, keys: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """The pattern's slots (``flat``: ascending flat positions) of the downdate's keys, in
    the keys' order, and of the random effects' diagonal (where I is added)."""
    inflate = np.arange(plan.qr, dtype=np.intp) * (plan.m + 1)
    return np.searchsorted(flat, keys), np.searchsorted(flat, inflate)


@dataclass(frozen=True)
class _UnitPairs:
    """The pattern's entries between levels of one pair of blocks (rows' term a, columns'
    term b; X and y a block of one-row levels), as dense nc_a x nc_b level blocks."""

    a: int
    b: int
    npairs: int
    slots: np.ndarray  # the entries' slots in the pattern
    pair: np.ndarray  # each entry's level pair (0..npairs-1)
    row: np.ndarray  # its component in the row level ...
    col: np.ndarray  # ... and in the column level
    mirror: np.ndarray  # entries of a level with itself off its diagonal (filled both ways)


@dataclass(frozen=True, eq=False)
class VectorPatternAssembly:
    """Block 2 assembled at the entries of a sparse pattern closed under levels (with every
    entry of a pair of levels, all of theirs), for plans with vector terms: per pair of
    levels S = λ_aᵀ(M22 - D)λ_b, and I on the random effects' diagonal. The pairs of levels
    of each pair of blocks are gathered into one (pairs, nc_a, nc_b) array per θ and
    multiplied by the blocks' λ on both sides at once.

    Attributes
    ----------
    plan
        Block 2's plan (its terms).
    m22
        M22 at the pattern's entries.
    key_slots
        The pattern's slot of each of the downdate's keys, in the keys' order.
    inflate
        The slots of the random effects' diagonal.
    groups
        The entries by pair of blocks.
    """

    plan: Block2Plan
    m22: np.ndarray
    key_slots: np.ndarray
    inflate: np.ndarray
    groups: tuple[_UnitPairs, ...]

    @classmethod
    def of(cls, plan: Block2Plan, m22: np.ndarray, keys: np.ndarray, flat: np.ndarray,
           edges: np.ndarray) -> VectorPatternAssembly:
        """The assembly at ``flat`` (ascending flat positions i·m + j, i ≤ j, of S's upper
        triangle, closed under levels, every key and the diagonal among them); ``m22``: M22
        at those positions; ``edges``: where each block starts (terms, X and y) and the
        end."""
        m = plan.m
        rows, cols = np.divmod(flat, m)
        ncs = np.array([t.nc for t in plan.terms] + [1], dtype=np.int64)
        block_r = np.searchsorted(edges, rows, side="right") - 1
        block_c = np.searchsorted(edges, cols, side="right") - 1
        level_r, comp_r = np.divmod(rows - edges[block_r], ncs[block_r])
        level_c, comp_c = np.divmod(cols - edges[block_c], ncs[block_c])
        groups = []
        nblk = len(edges) - 1
        for a in range(nblk):
            for b in range(a, nblk):
                slots = np.flatnonzero((block_r == a) & (block_c == b))
                if not slots.size:
                    continue
                key = level_r[slots] * (int(edges[b + 1] - edges[b]) + 1) + level_c[slots]
                uniq, pair = np.unique(key, return_inverse=True)
                mirror = np.flatnonzero((level_r[slots] == level_c[slots]) if a == b
                                        else np.zeros(slots.size, dtype=bool))
                mirror = mirror[comp_r[slots][mirror] != comp_c[slots][mirror]]
                groups.append(_UnitPairs(a, b, int(uniq.size), slots, pair.ravel(),
                                         comp_r[slots], comp_c[slots], mirror))
        return cls(plan, np.asarray(m22, dtype=float), *_key_and_inflate_slots(plan, flat, keys),
                   tuple(groups))

    def values(self, theta: np.ndarray, down: np.ndarray) -> np.ndarray:
        """S's values at the pattern's entries at ``theta``, ``down`` the rank update D at
        the keys (not modified)."""
        v = self.m22.copy()
        v[self.key_slots] -= down
        lams = [t.lower_factor(theta) for t in self.plan.terms] + [np.ones((1, 1))]
        out = np.empty_like(v)
        for g in self.groups:
            lam_a, lam_b = lams[g.a], lams[g.b]
            if lam_a.size == 1 and lam_b.size == 1:  # two scalar blocks: a product of scales
                out[g.slots] = v[g.slots] * (lam_a[0, 0] * lam_b[0, 0])
                continue
            block = np.zeros((g.npairs, lam_a.shape[0], lam_b.shape[0]))
            block[g.pair, g.row, g.col] = v[g.slots]
            mirrored = g.mirror  # a level with itself: its lower entries from the upper
            block[g.pair[mirrored], g.col[mirrored], g.row[mirrored]] = v[g.slots[mirrored]]
            scaled = np.matmul(np.matmul(lam_a.T, block), lam_b)
            out[g.slots] = scaled[g.pair, g.row, g.col]
        out[self.inflate] += 1.0
        return out


def update_block2(plan: Block2Plan, theta: np.ndarray, m22: np.ndarray, keys: np.ndarray,
                  down: np.ndarray, diagonal: tuple[np.ndarray, np.ndarray, np.ndarray],
                  ) -> np.ndarray:
    """S = Λ₂'(M22 - D)Λ₂ + I at θ: its upper triangle, in a C-order array whose transpose
    LAPACK factors in place (MixedModels.jl's ``updateL!`` for block 2).

    ``down``: the downdate D = G B Gᵀ at ``keys`` (flat positions in S, ordered by pair of
    blocks); ``diagonal``: (block, flat position, M22 value) of the zero-filled blocks'
    diagonals."""
    scale = plan.scales(theta)
    s = np.empty((plan.m, plan.m))
    for blk in plan.blocks:  # copy M22 into S, scaled by Λ₂ where it is a constant
        view = s[blk.rows, blk.cols]
        match blk:
            case ZeroBlock():
                view[...] = 0.0
            case ScaledBlock(a=a, b=b):
                np.multiply(m22[blk.rows, blk.cols], scale[a] * scale[b], out=view)
            case VectorBlock():
                np.copyto(view, m22[blk.rows, blk.cols])
    flat = s.ravel()
    for seg in plan.segments:  # the rank downdate, scaled as its block is
        part, at = down[seg.span], keys[seg.span]
        match seg.kind:
            case VectorBlock():  # λ multiplies it afterwards
                flat[at] -= part
            case ScaledBlock(a=a, b=b) | ZeroBlock(a=a, b=b) if plan.downdate_first:
                flat[at] = (m22.ravel()[at] - part) * (scale[a] * scale[b])
            case ZeroBlock(a=a, b=b):
                part *= -(scale[a] * scale[b])
                flat[at] = part
            case ScaledBlock(a=a, b=b):
                part *= -(scale[a] * scale[b])
                flat[at] += part
    block_of, positions, values = diagonal
    if block_of.size:  # the diagonal of the zero-filled blocks
        d = np.asarray(scale)[block_of]
        flat[positions] += values * (d * d)
    if plan.vector_blocks:
        times_lambdas(plan, s, theta)
    flat[: plan.qr * (plan.m + 1) : plan.m + 1] += 1.0  # inflate: + I on the random effects
    return s


def times_lambdas(plan: Block2Plan, s: np.ndarray, theta: np.ndarray) -> None:
    """Multiply the pairs with a vector term by Λ₂ on both sides, in place: rectangle (a, b)
    becomes (I ⊗ λ_a)' rectangle (I ⊗ λ_b) on and above S's diagonal (LAPACK reads no other
    part; a band's square is transformed whole, its lower part's values meaningless).

    A band of about ``plan.band`` rows (whole levels of the row block) at a time, from its
    first column on (what lies left of it in a diagonal rectangle is the lower triangle): λ
    mixes a level's rows and a level's columns only, so each band is transformed on its own,
    with temporaries of the band's size (the whole rectangle's four copies were 51 GB for a
    slope on 2·10⁴ levels). A level's block with itself is made symmetric from its upper
    triangle first."""
    lams = [t.lower_factor(theta) for t in plan.terms] + [np.eye(1)]
    shapes = [(t.nl, t.nc) for t in plan.terms] + [(plan.p + 1, 1)]
    for blk in plan.vector_blocks:
        (nla, nca), (nlb, ncb) = shapes[blk.a], shapes[blk.b]
        lam_a, lam_b = lams[blk.a], lams[blk.b]
        step = max(1, plan.band // nca)
        for l0 in range(0, nla, step):
            l1 = min(nla, l0 + step)
            rows = slice(blk.rows.start + l0 * nca, blk.rows.start + l1 * nca)
            if blk.a == blk.b:  # from the band's own first level rightwards
                view = s[rows, rows.start : blk.cols.stop]
                g = view.reshape(l1 - l0, nca, nlb - l0, ncb)
                own = np.arange(l1 - l0)
                square = g[own, :, own, :]  # (levels, nc, nc): each level with itself
                g[own, :, own, :] = np.triu(square) + np.swapaxes(np.triu(square, 1), 1, 2)
            else:
                view = s[rows, blk.cols]
                g = view.reshape(l1 - l0, nca, nlb, ncb)
            view[...] = _sandwich(lam_a, g, lam_b).reshape(view.shape)


def _sandwich(lam_a: np.ndarray, g: np.ndarray, lam_b: np.ndarray) -> np.ndarray:
    """out[a, i, b, l] = Σ_j Σ_k λ_a[j, i] g[a, j, b, k] λ_b[k, l] for lower-triangular λ
    (g: (levels, nc_a, levels, nc_b)), as ``np.einsum("ji,ajbk,kl->aibl", ...)`` sums it (j
    outer, k inner, each product (λ_a g) λ_b: the same numbers bit for bit) but over whole
    planes of g and only where λ is not structurally zero: 15-20x faster than the einsum,
    which took more than the factorisation at order 2,000."""
    out = np.empty(g.shape)
    nca, ncb = g.shape[1], g.shape[3]
    for i in range(nca):
        for col in range(ncb):
            acc: np.ndarray | None = None
            for j in range(i, nca):
                for k in range(col, ncb):
                    term = g[:, j, :, k] * lam_a[j, i]
                    term *= lam_b[k, col]
                    if acc is None:
                        acc = term
                    else:
                        acc += term
            out[:, i, :, col] = acc
    return out
