"""The scalar PIRLS kernel's step when every term is in its chain and nothing is left over.

In glmer's second stage PIRLS solves for u alone (β is in the offset, p = 0). When the
random-effects terms are scalar and each is nested in the next (cbpp's one ``(1 | herd)``,
grouseticks' INDEX in BROOD in LOCATION, any ``(1 | a/b/c)``), the kernel's *rest* is the
working response alone (order m = 1): the whole step is the chain's level-by-level
elimination, a few dozen vector operations on arrays of the levels' length. At cbpp's and
grouseticks' sizes those operations take about a microsecond each, so the general kernel's
bookkeeping (its dense block, index maps and slices, kept for the rest it does not have
here) cost more than the arithmetic.

:class:`ChainStep` does the same arithmetic as :meth:`ScalarPirlsKernel.step` (the same
operations on the same numbers in the same order, so the same bits) with that bookkeeping
left out: each term's weighted count of w is formed once and shared by its diagonal and its
columns towards the later terms, the columns are vectors instead of one-column matrices,
and the Schur complement's sums over the nesting maps skip the scatter when every level of
the coarser term receives one (always, for a nested design).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg as la

from .pirls_kernel import ScalarPirlsKernel, downdate_factor

__all__ = ["ChainResult", "ChainStep", "ChainXStep", "back_substitute", "bincount_rows",
           "chain_step", "chain_system", "eliminate", "one_term_solve"]


# up to this many rows times terms the counts of every term are taken by one bincount over
# stacked keys (two calls instead of 2K at grouseticks' size); above it the stacked copy of
# the weights costs more than the calls it saves
_STACKED_COUNTS_MAX = 50_000


_NO_BETA = np.zeros(0)  # shared: an empty array has nothing to change


class ChainResult:
    """One chain step's u (Zt's order) and β (empty), and ldL2 on demand: PIRLS reads only
    the last step's log-determinant, so the other steps never take their logarithms."""

    __slots__ = ("_ldL2", "_pivots", "beta", "u")

    def __init__(self, u: np.ndarray, pivots: list[np.ndarray],
                 beta: np.ndarray = _NO_BETA) -> None:
        self.u = u
        self.beta = beta
        self._pivots = pivots
        self._ldL2: float | None = None

    @property
    def ldL2(self) -> float:
        """log|L|², summed term by term as the general kernel sums it."""
        if self._ldL2 is None:
            ld = 0.0
            for piv in self._pivots:
                ld += float(np.add.reduce(np.log(piv)))  # (.sum() without its wrapper)
            self._ldL2 = 2.0 * ld
        return self._ldL2


class ChainStep:
    """:meth:`ScalarPirlsKernel.step` for a kernel whose chain holds every term and whose
    dense rest is the working response alone (m = 1, p = 0).

    Parameters
    ----------
    kernel
        The general kernel of the same problem (its structure is read, not copied).
    """

    def __init__(self, kernel: ScalarPirlsKernel) -> None:
        if not applies(kernel):
            raise ValueError("ChainStep needs a kernel with every term in the chain and p = 0")
        self.kernel = kernel
        K = kernel.K
        self.K = K
        self.n = kernel.n
        self.q = q = kernel.q
        self.codes = kernel.codes
        self.nls = kernel.nls
        self.xs = kernel.xs
        self.ones = kernel.ones
        self.bounds = [(int(kernel.offsets[k]), int(kernel.offsets[k + 1])) for k in range(K)]
        self.later = [list(range(t + 1, K)) for t in range(K)]
        # θ of each level's term, to scale every term's counts by one product
        self.term_of_level = np.repeat(np.arange(K), self.nls)
        # every term's counts of w z and of w x² by one bincount: keys of the stacked
        # weights [w z x_k for each k, w x_k² for each k] (each level's sum in the
        # observations' order, as the per-term bincounts sum it)
        self.stacked_keys: np.ndarray | None = None
        if K > 1 and self.n * K <= _STACKED_COUNTS_MAX:
            self.stacked_keys = np.concatenate(
                [self.codes[k] + lo for k, (lo, _) in enumerate(self.bounds)]
                + [self.codes[k] + (q + lo) for k, (lo, _) in enumerate(self.bounds)])
        # the Schur complement's updates of t's elimination: for each later term s, the
        # nesting map, the sums' order, and the levels of s receiving a sum (None: all of
        # them, always so for a nested design), and the map into u for the back-substitution
        self.updates: list[list[tuple[int, np.ndarray, np.ndarray, np.ndarray,
                                      np.ndarray | None]]] = []
        self.gathers: list[list[tuple[int, np.ndarray]]] = []
        for t in range(K):
            self.updates.append([(s, kernel.maps[(t, s)], *_sums_order(kernel, t, s))
                                 for s in self.later[t]])
            self.gathers.append([(s, kernel.maps[(t, s)] + self.bounds[s][0])
                                 for s in self.later[t]])
        self._z = np.empty(self.n)

    def response_row(self) -> np.ndarray:
        """An array of n the caller may write the working response into (the general
        kernel's protocol; the chain step reads z wherever it is)."""
        return self._z

    def _counts(self, w: np.ndarray, wz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Σ w z x_k and Σ w x_k² per level, every term's levels in one array each."""
        K, codes, nls, xs, ones = self.K, self.codes, self.nls, self.xs, self.ones
        zparts = [wz if ones[k] else wz * xs[k] for k in range(K)]
        wparts = [w if ones[k] else (w * xs[k]) * xs[k] for k in range(K)]
        if self.stacked_keys is not None:
            counts = np.bincount(self.stacked_keys, weights=np.concatenate(zparts + wparts),
                                 minlength=2 * self.q)
            return counts[: self.q], counts[self.q :]
        zx = [np.bincount(codes[k], weights=zparts[k], minlength=nls[k]) for k in range(K)]
        cnt = [np.bincount(codes[k], weights=wparts[k], minlength=nls[k]) for k in range(K)]
        if K == 1:
            return zx[0], cnt[0]
        return np.concatenate(zx), np.concatenate(cnt)

    def step(self, theta: np.ndarray, w: np.ndarray, z: np.ndarray) -> ChainResult:
        """ldL2 and u at θ for case weights ``w`` and working response ``z`` (β is empty).
        The chain's pivots are square roots of 1 + (positive counts), so this never fails
        where the general kernel would not."""
        K, codes, nls, xs, ones, bounds = (self.K, self.codes, self.nls, self.xs, self.ones,
                                           self.bounds)
        if K == 1:
            return self._one_term(float(theta[0]), w, z * w)
        th = theta.tolist()
        zx, cnt = self._counts(w, z * w)
        thq = theta.take(self.term_of_level) if K > 1 else theta[0]
        cols, diags = chain_system(zx, cnt, thq, bounds)
        vcols: dict[tuple[int, int], np.ndarray] = {}
        for t in range(K - 1):
            tt, x1 = th[t], ones[t]
            lo, hi = bounds[t]
            for s in self.later[t]:
                if x1 and ones[s]:
                    vcols[(t, s)] = cnt[lo:hi] * (tt * th[s])
                else:
                    wx = w if x1 else w * xs[t]
                    ws = wx if ones[s] else wx * xs[s]
                    vcols[(t, s)] = np.bincount(codes[t], weights=ws,
                                                minlength=nls[t]) * (tt * th[s])
        piv_t = eliminate(self, cols, diags, vcols)
        u = np.empty(self.q)
        back_substitute(self, cols.__getitem__, vcols, piv_t, u)
        return ChainResult(u, piv_t)

    def _one_term(self, tt: float, w: np.ndarray, wz: np.ndarray) -> ChainResult:
        """The step of a single term (cbpp's ``(1 | herd)``): a diagonal system."""
        c, nl = self.codes[0], self.nls[0]
        if self.ones[0]:
            zx = np.bincount(c, weights=wz, minlength=nl)
            cnt = np.bincount(c, weights=w, minlength=nl)
        else:
            x = self.xs[0]
            zx = np.bincount(c, weights=wz * x, minlength=nl)
            cnt = np.bincount(c, weights=(w * x) * x, minlength=nl)
        u, piv = one_term_solve(zx, cnt, tt)
        return ChainResult(u, [piv])


class ChainXStep:
    """:meth:`ScalarPirlsKernel.step` for a kernel whose chain holds every term and whose
    dense rest is [X z] alone (glmer's first stage on nested designs: cbpp, grouseticks).

    The same operations as the general kernel, on its own work arrays (the dense block and
    the chain's stacked columns, so that BLAS and LAPACK see the same memory), with its
    per-column counts taken by one bincount over stacked keys, each term's count of w
    shared by its diagonal and its columns, and the logarithms of the pivots left to the
    step PIRLS keeps (:class:`ChainResult`).

    Parameters
    ----------
    kernel
        The general kernel of the same problem.
    """

    def __init__(self, kernel: ScalarPirlsKernel) -> None:
        if not applies_with_x(kernel):
            raise ValueError("ChainXStep needs a kernel with every term in the chain and p > 0")
        self.kernel = kernel
        K, p, q = kernel.K, kernel.p, kernel.q
        self.K, self.p, self.q, self.n = K, p, q, kernel.n
        self.codes, self.nls, self.xs, self.ones = (kernel.codes, kernel.nls, kernel.xs,
                                                    kernel.ones)
        self.bounds = [(int(kernel.offsets[k]), int(kernel.offsets[k + 1])) for k in range(K)]
        self.later = [list(range(t + 1, K)) for t in range(K)]
        # one bincount for Z_k'W[X z] (column j of term k at j q + its levels) and every
        # term's Σ w x² (after them); used while the stacked weights stay small
        self.stacked_keys: np.ndarray | None = None
        if self.n * K * (p + 2) <= _STACKED_COUNTS_MAX:
            self.stacked_keys = np.concatenate(
                [self.codes[k] + (j * q + lo) for j in range(p + 2)
                 for k, (lo, _) in enumerate(self.bounds)])
        self.updates = [[(s, kernel.maps[(t, s)], *_sums_order(kernel, t, s))
                         for s in self.later[t]] for t in range(K)]
        self.gathers = [[(s, kernel.maps[(t, s)] + self.bounds[s][0]) for s in self.later[t]]
                        for t in range(K)]

    def response_row(self) -> np.ndarray:
        """The general kernel's row for the working response (its protocol)."""
        return self.kernel.xzt[self.p]

    def step(self, theta: np.ndarray, w: np.ndarray, z: np.ndarray) -> ChainResult | None:
        """ldL2, u and β at θ for case weights ``w`` and working response ``z``; None when
        the dense block is not positive definite (the caller then asks the engine)."""
        kern = self.kernel
        K, p, q, codes, nls, xs, ones = (self.K, self.p, self.q, self.codes, self.nls,
                                         self.xs, self.ones)
        th = theta.tolist()
        xzt = kern.xzt
        row = xzt[p]
        if z is not row:
            row[...] = z
        wxzt = xzt * w
        wparts = [w if ones[k] else (w * xs[k]) * xs[k] for k in range(K)]
        if self.stacked_keys is not None:
            parts = [wxzt[j] if ones[k] else wxzt[j] * xs[k]
                     for j in range(p + 1) for k in range(K)]
            counts = np.bincount(self.stacked_keys, weights=np.concatenate(parts + wparts),
                                 minlength=(p + 2) * q)
            zxz = counts[: (p + 1) * q].reshape(p + 1, q).T  # (q, p + 1)
            cnt = counts[(p + 1) * q :]
        else:
            zxz = np.empty((q, p + 1))
            for k, (lo, hi) in enumerate(self.bounds):
                for j in range(p + 1):
                    col = wxzt[j] if ones[k] else wxzt[j] * xs[k]
                    zxz[lo:hi, j] = np.bincount(codes[k], weights=col, minlength=nls[k])
            cnt = np.concatenate([np.bincount(codes[k], weights=wparts[k], minlength=nls[k])
                                  for k in range(K)])
        S = kern._S
        S[...] = xzt @ wxzt.T  # [X z]'W[X z]: the dense rest before the downdate
        diags: list[np.ndarray] = []
        vcols: dict[tuple[int, int], np.ndarray] = {}
        cols = kern._C
        for t in range(K):
            lo, hi = self.bounds[t]
            tt = th[t]
            c_t = cnt[lo:hi]
            diags.append(c_t * (tt * tt) + 1.0)
            for s in self.later[t]:
                if ones[t] and ones[s]:
                    vcols[(t, s)] = c_t * (tt * th[s])
                else:
                    wx = w if ones[t] else w * xs[t]
                    ws = wx if ones[s] else wx * xs[s]
                    vcols[(t, s)] = np.bincount(codes[t], weights=ws,
                                                minlength=nls[t]) * (tt * th[s])
            np.multiply(zxz[lo:hi], tt, out=cols[t])
        piv_t = eliminate(self, cols, diags, vcols)
        # the dense rest's downdate by the chain's columns, factor and solve, as the kernel
        lfac, info = downdate_factor(kern._C_all, S)
        if info != 0:
            return None
        if any(d <= 0.0 for d in np.diagonal(lfac)[:p].tolist()):
            return None
        sol, info = la.lapack.dtrtrs(lfac[:-1, :-1], lfac[:-1, -1], lower=0, trans=0)
        if info != 0:
            return None
        u = np.empty(q)
        back_substitute(self, lambda t: cols[t][:, -1] - cols[t][:, :-1] @ sol, vcols, piv_t, u)
        return ChainResult(u, piv_t, sol.copy())


def rows_keys(keys: np.ndarray, rows: int, width: int) -> np.ndarray:
    """``keys`` repeated for each row, row j's shifted by j·width (bins of their own)."""
    return (keys + (np.arange(rows) * width)[:, None]).ravel()


def bincount_rows(keys: np.ndarray, weights: np.ndarray, width: int) -> np.ndarray:
    """Row by row ``bincount(keys, weights[j], minlength=width)``: one bincount over the
    rows' own bins (each bin sums the same terms in the same order)."""
    rows = weights.shape[0]
    out = np.bincount(rows_keys(keys, rows, width), weights=weights.ravel(),
                      minlength=rows * width)
    return out.reshape(rows, width)


def one_term_solve(zx: np.ndarray, cnt: np.ndarray,
                   tt: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """u and the pivots of a single term's diagonal system from its levels' Σ w z x and
    Σ w x² (vectors; or (rows, levels) with θ a column ``tt`` of (rows, 1): the batch)."""
    col = zx * tt
    diag = cnt * (tt * tt)
    diag += 1.0
    piv = np.sqrt(diag)
    col /= piv  # the column of L, then the forward and the back substitution
    col /= piv
    return col, piv


def chain_system(zx: np.ndarray, cnt: np.ndarray, thq: float | np.ndarray,
                 bounds: list[tuple[int, int]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each term's column Λ Z'Wz and diagonal of Λ Z'WZ Λ + I, as views of one array each,
    from every level's Σ w z x and Σ w x² and its term's θ (``thq``); levels on the last
    axis (vectors, or the batch's (rows, levels))."""
    cols_all = zx * thq  # Λ Z'Wz
    diag_all = cnt * (thq * thq)
    diag_all += 1.0  # the diagonal of Λ Z'WZ Λ + I
    return ([cols_all[..., lo:hi] for lo, hi in bounds],
            [diag_all[..., lo:hi] for lo, hi in bounds])


def eliminate(chain: ChainStep | ChainXStep, cols: list[np.ndarray], diags: list[np.ndarray],
              vcols: dict[tuple[int, int], np.ndarray]) -> list[np.ndarray]:
    """The chain's level-by-level elimination, in place: each term's pivots (returned), its
    columns of L (``cols``, towards the rest) and its columns towards the later terms
    (``vcols``), and the Schur complement's updates of the later terms' diagonals and columns.

    One implementation for three layouts, told apart by the arrays' dimensions, doing for
    each the operations it did when each had its own copy (so the same bits):

    - :class:`ChainStep`: every array a vector over the term's levels;
    - :class:`ChainXStep`: ``cols[t]`` is (levels, columns of the rest), the rest vectors;
    - :func:`lmeformula.pirls_batch.laplace_batch`: every array (rows, levels), one row a
      point, each row's counts and sums formed as the vector's (:func:`bincount_rows`).
    """
    rows = diags[0].ndim == 2
    later, nls = chain.later, chain.nls
    piv_t: list[np.ndarray] = []
    for t in range(len(diags)):
        piv = np.sqrt(diags[t])
        piv_t.append(piv)
        col = cols[t]
        wide = col.ndim > piv.ndim  # ChainXStep's (levels, columns)
        col /= piv[:, None] if wide else piv
        for s in later[t]:
            vcols[(t, s)] /= piv
        for s, f, order, starts, targets in chain.updates[t]:
            v = vcols[(t, s)]
            nl = nls[s]
            if rows:
                diags[s] -= bincount_rows(f, v * v, nl)
                for s2 in later[s]:
                    vcols[(s, s2)] -= bincount_rows(f, v * vcols[(t, s2)], nl)
                # each row's segments follow each other in the raveled rows
                sums = np.add.reduceat((col * v).take(order, axis=1).ravel(),
                                       rows_keys(starts, v.shape[0], nls[t]))
                sums = sums.reshape(v.shape[0], starts.shape[0])
            else:
                diags[s] -= np.bincount(f, weights=v * v, minlength=nl)
                for s2 in later[s]:
                    vcols[(s, s2)] -= np.bincount(f, weights=v * vcols[(t, s2)], minlength=nl)
                if wide:
                    # (take along an axis: a fancy index of rows costs ten times as much)
                    sums = np.add.reduceat((col * v[:, None]).take(order, axis=0), starts,
                                           axis=0)
                else:
                    sums = np.add.reduceat((col * v).take(order), starts)
            if targets is None:
                cols[s] -= sums
            elif rows:
                cols[s][:, targets] -= sums
            else:
                cols[s][targets] -= sums
    return piv_t


def back_substitute(chain: ChainStep | ChainXStep, rhs_of: Callable[[int], np.ndarray],
                    vcols: dict[tuple[int, int], np.ndarray], piv_t: list[np.ndarray],
                    u: np.ndarray) -> None:
    """The back-substitution after :func:`eliminate`, last term first, into ``u`` (levels
    on its last axis: a vector, or (rows, q) for the batch); ``rhs_of(t)`` is term t's
    right-hand side before the later terms' parts are taken off (not modified)."""
    rows = u.ndim == 2
    for t in range(len(piv_t) - 1, -1, -1):
        rhs = rhs_of(t)
        lo, hi = chain.bounds[t]
        if rows:
            for s, where in chain.gathers[t]:
                rhs = rhs - vcols[(t, s)] * u.take(where, axis=1)
            np.divide(rhs, piv_t[t], out=u[:, lo:hi])
        else:
            for s, where in chain.gathers[t]:
                rhs = rhs - vcols[(t, s)] * u.take(where)
            np.divide(rhs, piv_t[t], out=u[lo:hi])


def applies_with_x(kernel: ScalarPirlsKernel) -> bool:
    """Whether :class:`ChainXStep` does this kernel's steps: every term in the chain, fixed
    effects (p > 0), Z'W[X z] by counts."""
    return kernel.d == kernel.K and kernel.p > 0 and kernel.count_columns


def _sums_order(kernel: ScalarPirlsKernel, t: int,
                s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The order and starts of the sums of t's rows into the levels of s, and the levels of
    s receiving a sum (None: all of them, always so for a nested design)."""
    order, starts, targets = kernel.agg[(t, s)]
    nl = kernel.nls[s]
    full = targets.shape[0] == nl and bool(np.array_equal(targets, np.arange(nl)))
    return order, starts, None if full else targets


def applies(kernel: ScalarPirlsKernel) -> bool:
    """Whether :class:`ChainStep` does this kernel's steps: every term in the chain, no
    fixed effects, Z'Wz by counts."""
    return kernel.d == kernel.K and kernel.p == 0 and kernel.m == 1 and kernel.count_columns


def chain_step(kernel: ScalarPirlsKernel) -> ScalarPirlsKernel | ChainStep | ChainXStep:
    """The chain step for ``kernel`` where it applies, else the kernel itself."""
    if applies(kernel):
        return ChainStep(kernel)
    return ChainXStep(kernel) if applies_with_x(kernel) else kernel
