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

import numpy as np

from .pirls_kernel import KernelStep, ScalarPirlsKernel

__all__ = ["ChainStep", "chain_step"]


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
        self.q = kernel.q
        self.codes = kernel.codes
        self.nls = kernel.nls
        self.xs = kernel.xs
        self.ones = kernel.ones
        self.bounds = [(int(kernel.offsets[k]), int(kernel.offsets[k + 1])) for k in range(K)]
        self.later = [list(range(t + 1, K)) for t in range(K)]
        # the Schur complement's updates of t's elimination: for each later term s, the
        # nesting map, the sums' order, and whether every level of s receives a sum
        self.updates: list[list[tuple[int, np.ndarray, np.ndarray, np.ndarray,
                                      np.ndarray | None]]] = []
        for t in range(K):
            row = []
            for s in self.later[t]:
                order, starts, targets = kernel.agg[(t, s)]
                full = targets.shape[0] == self.nls[s] and bool(
                    np.array_equal(targets, np.arange(self.nls[s])))
                row.append((s, kernel.maps[(t, s)], order, starts, None if full else targets))
            self.updates.append(row)

    def step(self, theta: np.ndarray, w: np.ndarray, z: np.ndarray) -> KernelStep:
        """ldL2 and u at θ for case weights ``w`` and working response ``z`` (β is empty).
        The chain's pivots are square roots of 1 + (positive counts), so this never fails
        where the general kernel would not."""
        K, codes, nls, xs, ones = self.K, self.codes, self.nls, self.xs, self.ones
        th = theta.tolist()
        wz = z * w
        diags: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vcols: dict[tuple[int, int], np.ndarray] = {}
        for t in range(K):
            nl, c, x1 = nls[t], codes[t], ones[t]
            tt = th[t]
            zx = np.bincount(c, weights=wz if x1 else wz * xs[t], minlength=nl)
            cols.append(zx * tt)
            wx = w if x1 else w * xs[t]
            cnt = np.bincount(c, weights=wx if x1 else wx * xs[t], minlength=nl)
            diags.append(cnt * (tt * tt) + 1.0)
            for s in self.later[t]:
                if x1 and ones[s]:
                    vcols[(t, s)] = cnt * (tt * th[s])
                else:
                    ws = wx if ones[s] else wx * xs[s]
                    vcols[(t, s)] = np.bincount(c, weights=ws, minlength=nl) * (tt * th[s])
        ld = 0.0
        pivots: list[np.ndarray] = []
        for t in range(K):
            piv = np.sqrt(diags[t])
            pivots.append(piv)
            ld += float(np.log(piv).sum())
            col = cols[t]
            col /= piv
            for s in self.later[t]:
                vcols[(t, s)] /= piv
            for s, f, order, starts, targets in self.updates[t]:
                v = vcols[(t, s)]
                diags[s] -= np.bincount(f, weights=v * v, minlength=nls[s])
                for s2 in self.later[s]:
                    vcols[(s, s2)] -= np.bincount(f, weights=v * vcols[(t, s2)],
                                                  minlength=nls[s])
                sums = np.add.reduceat((col * v)[order], starts)
                if targets is None:
                    cols[s] -= sums
                else:
                    cols[s][targets] -= sums
        u = np.empty(self.q)
        for t in range(K - 1, -1, -1):
            rhs = cols[t]
            for s in self.later[t]:
                lo, hi = self.bounds[s]
                rhs = rhs - vcols[(t, s)] * u[lo:hi][self.kernel.maps[(t, s)]]
            lo, hi = self.bounds[t]
            np.divide(rhs, pivots[t], out=u[lo:hi])
        return KernelStep(2.0 * ld, u, np.zeros(0))


def applies(kernel: ScalarPirlsKernel) -> bool:
    """Whether :class:`ChainStep` does this kernel's steps: every term in the chain, no
    fixed effects, Z'Wz by counts."""
    return kernel.d == kernel.K and kernel.p == 0 and kernel.m == 1 and kernel.count_columns


def chain_step(kernel: ScalarPirlsKernel) -> ScalarPirlsKernel | ChainStep:
    """The chain step for ``kernel`` where it applies, else the kernel itself."""
    return ChainStep(kernel) if applies(kernel) else kernel
