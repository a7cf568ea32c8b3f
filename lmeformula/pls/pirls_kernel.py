"""One PIRLS step for GLMMs whose random-effects terms are all scalar, with no sparse matrix
built per step.

A PIRLS step needs, at θ and at the step's case weights w and working response z, only
log|Λ'Z'WZΛ + I| (``ldL2``) and the solution (u, β) of the penalised least squares problem.
For scalar terms every cross-product of [Z X z] is a weighted count over the grouping
factors' codes (``bincount``), so a step is a few passes over the n observations plus a
small factorisation:

* The terms form a *chain* when each is nested in the next ones (each level of an earlier
  term meets one level of every later term of the chain: grouseticks' INDEX in BROOD in
  LOCATION). The first term always starts the chain (its block Z₁'WZ₁ is diagonal). A
  chain term's block stays diagonal after the earlier ones are eliminated, so it is
  eliminated level by level with vector operations: pivots ``sqrt(d)``, its column of L
  divided by them, and the Schur complement updated by counts over the nesting maps.
* The other terms, X and z form the *rest*, a dense block (VerbAgg: 24 items + 6 + 1)
  downdated by the chain's columns (one ``syrk``-like product) and factored by LAPACK.

The structure (chain, nesting maps, keys of every count, index maps) is found once per
model; a step only recomputes values. The numbers equal the blocked engine's to round-off
(the same sums, in another association).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
from scipy.linalg import blas

from . import policy

__all__ = ["ScalarLinPred", "ScalarPirlsKernel", "downdate_factor", "scalar_kernel_fits"]



@dataclass
class KernelStep:
    """One step's results: ``ldL2``, the spherical random effects ``u`` (Zt's order) and
    ``beta``."""

    ldL2: float
    u: np.ndarray
    beta: np.ndarray


def scalar_kernel_fits(nls: list[int], ncs: list[int], p: int,
                       codes: list[np.ndarray] | None = None) -> bool:
    """Whether the kernel applies: every term scalar and the dense parts small enough
    (the chain is taken as the first term alone, the worst case, when codes are not
    given)."""
    if not nls or any(nc != 1 for nc in ncs):
        return False
    limits = policy.POLICY
    chain = _chain_length(codes, nls) if codes is not None else 1
    m = sum(nls[chain:]) + p + 1
    if m > limits.kernel_max_rest_order:
        return False
    if sum(nl * m * m for nl in nls[:chain]) > limits.kernel_max_downdate_work:
        return False
    cells = sum(nls[t] * nls[r] for t in range(len(nls)) for r in range(chain, len(nls))
                if r != t)
    return cells <= limits.kernel_max_cross_cells


def _nested(codes_t: np.ndarray, codes_s: np.ndarray, nl_t: int) -> np.ndarray | None:
    """The map level of t -> level of s when every level of t meets one level of s (None
    otherwise)."""
    target = np.full(nl_t, -1, dtype=np.int64)
    target[codes_t] = codes_s
    return target if np.array_equal(target[codes_t], codes_s) else None


def _chain_length(codes: list[np.ndarray], nls: list[int]) -> int:
    """How many leading terms are each nested in all later leading terms."""
    d = 1
    while d < len(codes):
        if all(_nested(codes[t], codes[d], nls[t]) is not None for t in range(d)):
            d += 1
        else:
            break
    return d


class ScalarPirlsKernel:
    """The penalised least squares of a PIRLS step for scalar random-effects terms.

    Parameters
    ----------
    codes
        Each term's level codes (n,), in Zt's order of terms.
    xs
        Each term's single model-matrix column (n,) (ones for ``(1 | g)``).
    nls
        Each term's number of levels.
    X
        (n, p) fixed-effects matrix (p may be 0: the u-only problem of lme4's second stage).
    """

    def __init__(self, codes: list[np.ndarray], xs: list[np.ndarray], nls: list[int],
                 X: np.ndarray) -> None:
        self.codes = [np.ascontiguousarray(c, dtype=np.int64) for c in codes]
        self.xs = [np.ascontiguousarray(x, dtype=float) for x in xs]
        self.ones = [bool(np.all(x == 1.0)) for x in self.xs]
        self.nls = [int(nl) for nl in nls]
        self.X = np.ascontiguousarray(X, dtype=float)
        self.n, self.p = self.X.shape
        K = len(self.nls)
        self.K = K
        self.d = d = _chain_length(self.codes, self.nls)
        self.offsets = np.concatenate([[0], np.cumsum(self.nls)]).astype(np.int64)
        self.q = int(self.offsets[-1])
        # nesting maps between chain terms (t < s), and aggregation matrices summing the
        # rows of t's levels into s's levels
        self.maps: dict[tuple[int, int], np.ndarray] = {}
        self.agg: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for t in range(d):
            for s in range(t + 1, d):
                f = _nested(self.codes[t], self.codes[s], self.nls[t])
                assert f is not None
                self.maps[(t, s)] = f
                order = np.argsort(f, kind="stable")
                starts = np.flatnonzero(np.r_[True, np.diff(f[order]) != 0])
                self.agg[(t, s)] = (order, starts, f[order][starts])
        # the rest: terms d.. then X and z; rest_off[r] = where term r starts in it
        self.rest_terms = list(range(d, K))
        self.rest_off = {}
        pos = 0
        for r in self.rest_terms:
            self.rest_off[r] = pos
            pos += self.nls[r]
        self.qr = pos
        self.m = pos + self.p + 1
        # counts of pairs of terms over a rectangle of levels: the pairs of levels that
        # occur (sorted), each observation's pair among them (a count into few bins is
        # cache-friendly: 1e5 rows into 200,000 possible pairs took 1.9 ms, into the
        # 79,000 present ones 0.2 ms), and where each pair goes in a row-major rectangle
        self.pairs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, int, np.ndarray]] = {}
        for t in range(K):
            for r in self.rest_terms:
                if r != t and (t < d or t < r):
                    key = self.codes[t] * self.nls[r] + self.codes[r]
                    present, inverse = np.unique(key, return_inverse=True)
                    self.pairs[(t, r)] = (inverse.ravel().astype(np.int64), present,
                                          int(present.shape[0]), present // self.nls[r])
        # work arrays, reused by every step (fresh megabyte-sized arrays cost page faults)
        self._S = np.zeros((self.m, self.m))
        # the chain's columns towards the rest, stacked: one downdate of the rest by all
        self._C_all = np.zeros((sum(self.nls[:d]), self.m))
        self._C_starts = np.concatenate([[0], np.cumsum(self.nls[:d])]).tolist()
        # where the first term's pair counts go in the stacked columns (flat indices): its
        # rows are never changed by the elimination, so the levels that never meet stay 0
        # and each step writes only the pairs present, in place
        self._first_flat: dict[int, np.ndarray] = {}
        for r in self.rest_terms:
            if (0, r) in self.pairs:
                present = self.pairs[(0, r)][1]
                self._first_flat[r] = ((present // self.nls[r]) * self.m + self.rest_off[r]
                                       + present % self.nls[r])
        self._cross = {key: np.zeros((self.nls[key[0]], self.nls[key[1]]))
                       for key in self.pairs}
        self._Zt: sp.csr_matrix | None = None  # built on first use (see Zt)
        # [X z]' row by row (each column of [X z] contiguous, for the counts)
        self.xzt = np.empty((self.p + 1, self.n))
        self.xzt[: self.p] = self.X.T
        self._wxzt = np.empty((self.p + 1, self.n))
        # Z'W[X z] by counts per column while that is fewer passes than a sparse product's
        # overhead is worth (the same sums, in the observations' order, either way)
        self.count_columns = self.K * (self.p + 1) <= 16
        self.diag_rest = np.arange(self.qr) * (self.m + 1)

    @property
    def Zt(self) -> sp.csr_matrix:
        """Z'[X z] for all terms at once: the sparse Zt with the terms' columns as values
        (built when first asked for: only steps that do not take the counts read it)."""
        if self._Zt is None:
            K = self.K
            rows = np.concatenate([self.codes[k] + self.offsets[k] for k in range(K)])
            cols = np.tile(np.arange(self.n, dtype=np.int64), K)
            vals = np.concatenate(self.xs)
            Zt = sp.csr_matrix((vals, (rows, cols)), shape=(self.q, self.n))
            Zt.sum_duplicates()
            self._Zt = Zt
        return self._Zt

    def _pair_counts(self, t: int, r: int, wt: np.ndarray, scale: float,
                     pivots: np.ndarray | None = None) -> np.ndarray:
        """Z_t'WZ_r as a dense (nl_t, nl_r) array times ``scale`` (``wt``: w x_t), its rows
        divided by ``pivots`` when given."""
        out = self._cross[(t, r)]
        out.ravel()[self.pairs[(t, r)][1]] = self._pair_values(t, r, wt, scale, pivots)
        return out

    def _pair_values(self, t: int, r: int, wt: np.ndarray, scale: float,
                     pivots: np.ndarray | None = None) -> np.ndarray:
        """Z_t'WZ_r at the pairs of levels present (row-major order) times ``scale``,
        divided by the row's pivot when ``pivots`` are given."""
        inverse, _, npresent, rows = self.pairs[(t, r)]
        weights = wt if self.ones[r] else wt * self.xs[r]
        values: np.ndarray = np.bincount(inverse, weights=weights, minlength=npresent)
        values *= scale
        if pivots is not None:
            values /= pivots[rows]
        return values

    def response_row(self) -> np.ndarray:
        """The kernel's own row for the working response z: a caller that writes z there
        saves :meth:`step` a copy."""
        return self.xzt[self.p]

    def _weighted(self, k: int, w: np.ndarray) -> np.ndarray:
        return w if self.ones[k] else w * self.xs[k]

    @property
    def _C(self) -> list[np.ndarray]:
        """The chain terms' rows of ``_C_all``, as views made on access: views kept as
        attributes became separate arrays in a copy of the kernel (``copy.deepcopy``, as
        glmer's profile copies its deviance function; pickling), which then read stale
        values."""
        s = self._C_starts
        return [self._C_all[s[t] : s[t + 1]] for t in range(len(s) - 1)]

    def step(self, theta: np.ndarray, w: np.ndarray, z: np.ndarray) -> KernelStep | None:
        """ldL2, u and β at θ for case weights ``w`` and working response ``z``; None when the
        dense block is not positive definite (the caller then asks the full engine, which
        diagnoses)."""
        nls, d, m, p, qr = self.nls, self.d, self.m, self.p, self.qr
        th = [float(theta[k]) for k in range(self.K)]
        xzt = self.xzt
        if z.__array_interface__["data"][0] != xzt[p].__array_interface__["data"][0]:
            xzt[p] = z
        wxzt = np.multiply(xzt, w, out=self._wxzt)
        if self.count_columns:  # (q, p + 1): Z_k'W[X z] for every term, by counts
            zxz = np.empty((self.q, p + 1))
            for k in range(self.K):
                lo, hi = self.offsets[k], self.offsets[k + 1]
                for j in range(p + 1):
                    col = wxzt[j] if self.ones[k] else wxzt[j] * self.xs[k]
                    zxz[lo:hi, j] = np.bincount(self.codes[k], weights=col, minlength=nls[k])
        else:
            zxz = self.Zt @ wxzt.T
        wx = [self._weighted(k, w) for k in range(self.K)]
        # the rest's dense block S (lower triangle read by LAPACK after transposing); with
        # the response alone in it (p = 0 and every term in the chain: the second stage
        # of nested designs) nothing of it is needed, as S is then the PWRSS only
        S = self._S
        if m > 1:
            S.fill(0.0)
            for r in self.rest_terms:
                o, nl = self.rest_off[r], nls[r]
                x2 = wx[r] if self.ones[r] else wx[r] * self.xs[r]
                diag = np.bincount(self.codes[r], weights=x2, minlength=nl)
                S.ravel()[self.diag_rest[o : o + nl]] = diag * (th[r] * th[r])
                for r2 in self.rest_terms:
                    if r2 > r:
                        o2 = self.rest_off[r2]
                        cross = self._pair_counts(r, r2, wx[r], th[r] * th[r2])
                        S[o2 : o2 + nls[r2], o : o + nl] = cross.T
                zo = self.offsets[r]
                S[qr:, o : o + nl] = zxz[zo : zo + nl].T * th[r]
            if p:
                S[qr:, qr:] = xzt @ wxzt.T
            else:
                # z'Wz alone: it only becomes the factor's last diagonal entry, which nothing
                # reads (its sign still tells a failed factorisation); a dot product of two
                # rows, not a (1 x n) (n x 1) matrix product (slow here: ~20 ns a row)
                S[qr, qr] = float(np.dot(xzt[0], wxzt[0]))
            S.ravel()[self.diag_rest] += 1.0
        # the chain: diagonals, columns towards later chain terms and towards the rest
        diags, vcols, ccols = [], {}, []
        for t in range(d):
            nl = nls[t]
            x2 = wx[t] if self.ones[t] else wx[t] * self.xs[t]
            diags.append(np.bincount(self.codes[t], weights=x2, minlength=nl)
                         * (th[t] * th[t]) + 1.0)
            for s in range(t + 1, d):
                ws = wx[t] if self.ones[s] else wx[t] * self.xs[s]
                vcols[(t, s)] = np.bincount(self.codes[t], weights=ws,
                                            minlength=nl) * (th[t] * th[s])
            # the first term's column is divided by its pivots as it is formed (one pass
            # less over it; the same operations on each entry)
            piv0 = np.sqrt(diags[0]) if t == 0 else None
            C = self._C[t]
            for r in self.rest_terms:
                o = self.rest_off[r]
                if t == 0:
                    self._C_all.ravel()[self._first_flat[r]] = self._pair_values(
                        0, r, wx[0], th[0] * th[r], piv0)
                else:
                    C[:, o : o + nls[r]] = self._pair_counts(t, r, wx[t], th[t] * th[r])
            zo = self.offsets[t]
            np.multiply(zxz[zo : zo + nl], th[t], out=C[:, qr:])
            if piv0 is not None:
                C[:, qr:] /= piv0[:, None]
            ccols.append(C)
        # eliminate the chain term by term
        ld = 0.0
        pivots = []
        for t in range(d):
            piv = np.sqrt(diags[t])
            pivots.append(piv)
            ld += float(np.log(piv).sum())
            C = ccols[t]
            if t:
                C /= piv[:, None]
            for s in range(t + 1, d):
                vcols[(t, s)] /= piv
            for s in range(t + 1, d):
                f = self.maps[(t, s)]
                v = vcols[(t, s)]
                diags[s] -= np.bincount(f, weights=v * v, minlength=nls[s])
                for s2 in range(s + 1, d):
                    vcols[(s, s2)] -= np.bincount(f, weights=v * vcols[(t, s2)],
                                                  minlength=nls[s])
                # rows of t's levels summed into the s levels they are nested in
                order, starts, targets = self.agg[(t, s)]
                # take(axis=0) gathers the same rows as [order], many times faster
                ccols[s][targets] -= np.add.reduceat((C * v[:, None]).take(order, axis=0),
                                                     starts, axis=0)
        # the rest's downdate by every chain term's column at once, S -= CᵀC on S's lower
        # triangle (the upper one of the F-ordered S.T, which LAPACK factors next)
        if m > 1:
            lfac, info = downdate_factor(self._C_all, S)
            if info != 0:
                return None
            dl = np.diagonal(lfac)
            if p and np.any(dl[qr : qr + p] <= 0.0):
                return None
            ld += float(np.log(dl[:qr]).sum())
            # L' sol = the z row of L, i.e. U sol = U's last column, U = L'
            sol, info = la.lapack.dtrtrs(lfac[:-1, :-1], lfac[:-1, -1], lower=0, trans=0)
            if info != 0:
                return None
        else:
            sol = np.zeros(0)
        u = np.empty(self.q)
        for r in self.rest_terms:
            o, zo = self.rest_off[r], self.offsets[r]
            u[zo : zo + nls[r]] = sol[o : o + nls[r]]
        for t in range(d - 1, -1, -1):
            C = ccols[t]
            rhs = C[:, -1] - C[:, :-1] @ sol
            for s in range(t + 1, d):
                zo = self.offsets[s]
                rhs -= vcols[(t, s)] * u[zo : zo + nls[s]][self.maps[(t, s)]]
            zo = self.offsets[t]
            u[zo : zo + nls[t]] = rhs / pivots[t]
        return KernelStep(2.0 * ld, u, sol[qr:].copy())


def lin_pred_scalar(codes: list[np.ndarray], xs: list[np.ndarray], ones: list[bool],
                    offsets: np.ndarray, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Z Λ u for scalar terms: Σ_k x_k θ_k u_k[code_k], summed in the terms' order (the
    order of a row of Z in CSR, so the same sums as the sparse product)."""
    out: np.ndarray | None = None
    for k, (c, x) in enumerate(zip(codes, xs, strict=True)):
        b = theta[k] * u[offsets[k] : offsets[k + 1]]
        part = b[c] if ones[k] else x * b[c]
        if out is None:
            out = part
        else:  # summed into the first term's (fresh) array: one array fewer per term
            out += part
    assert out is not None
    return out


class ScalarLinPred:
    """:func:`lin_pred_scalar` with its index work done once: θ_k u_k for every term by
    one product (each level's θ gathered), every term's gather by one ``take`` over
    stacked codes, then the terms summed in order into the first term's row. The same
    products and the same sums in the same order (bit for bit); for terms whose x is not
    all ones, :func:`lin_pred_scalar` itself.

    Parameters
    ----------
    codes, xs, ones, offsets
        As for :func:`lin_pred_scalar`.
    """

    def __init__(self, codes: list[np.ndarray], xs: list[np.ndarray], ones: list[bool],
                 offsets: np.ndarray) -> None:
        self.codes, self.xs, self.ones, self.offsets = codes, xs, ones, offsets
        self.K = K = len(codes)
        self.n = codes[0].shape[0] if K else 0
        self.plain = all(ones)
        nls = np.diff(offsets)
        self.term_of_level = np.repeat(np.arange(K), nls)
        self.keys = np.concatenate([c + offsets[k] for k, c in enumerate(codes)]) \
            if K > 1 else (codes[0] if K else np.zeros(0, np.int64))

    def __call__(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Z Λ u (a fresh array)."""
        if not self.plain:
            return lin_pred_scalar(self.codes, self.xs, self.ones, self.offsets, theta, u)
        if self.K == 1:
            out: np.ndarray = (theta[0] * u).take(self.keys)
            return out
        parts = (u * theta.take(self.term_of_level)).take(self.keys).reshape(self.K, self.n)
        out = parts[0] + parts[1]
        for k in range(2, self.K):
            out += parts[k]
        return out


def downdate_factor(C_all: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, int]:
    """The dense rest's downdate by the chain's columns and its factorisation, in place:
    S -= CᵀC on S's lower triangle (the upper one of the F-ordered S.T), then LAPACK's
    Cholesky of S.T, whose upper factor is the C-ordered lower factor of S; (that factor,
    LAPACK's info). The general kernel's and :class:`~lmeformula.pls.pirls_chain.ChainXStep`'s."""
    out = blas.dsyrk(-1.0, C_all.T, beta=1.0, c=S.T, trans=0, lower=0, overwrite_c=1)
    if not np.shares_memory(out, S):  # (f2py copied: not expected)
        S.T[...] = out
    lfac, info = la.lapack.dpotrf(S.T, lower=0, clean=0, overwrite_a=1)
    return lfac, int(info)
