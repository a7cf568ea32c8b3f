"""The dense engine for small systems: the whole augmented matrix factored by one LAPACK call,
its T'MT a precomputed quadratic form in θ."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from ..errors import FittingError
from .lapack import cholesky_exact_fit
from .system import (
    _AugmentedSystem,
    _check_reweight,
    _lambda_pattern,
    _log_det_weights,
    _policy,
    _upper_pairs,
    profiled_criteria,
    profiled_criterion,
)
from .terms import TermShape

_dpotrf = la.lapack.dpotrf  # looked up once: the engine calls it per evaluation
_TINY = float(np.finfo(float).tiny)


def _gram_pattern(Zt: sp.csc_matrix) -> np.ndarray:
    """The structural pattern of Zt Zt' (q x q, bool): rows r and r' meet where some column
    of Zt stores an entry in both (explicit zeros count, as in a sparse product of Zt's
    pattern). Found from the pairs of entries within each column, offset by offset (a column
    stores at most a few entries, one per column of the terms), without a sparse product:
    scipy's constructors and product cost more than the whole pass on small models."""
    q = Zt.shape[0]
    indptr = np.asarray(Zt.indptr)
    rows = np.asarray(Zt.indices, dtype=np.int64)
    counts = np.diff(indptr)
    col = np.repeat(np.arange(counts.shape[0]), counts)
    flat = np.zeros(q * q, dtype=bool)
    for d in range(int(counts.max(initial=0))):
        first = rows[: rows.shape[0] - d]
        same = col[: col.shape[0] - d] == col[d:]
        flat[first[same] * q + rows[d:][same]] = True
    out = flat.reshape(q, q)
    return out | out.T


# _quadratic_plan's results by (terms, p, pattern of Z'Z, limit): a refit, bootstrap or
# simulation of one design builds its quadratic form from the same plan. Small (the dense
# engine's systems have at most policy.dense_limit rows) and bounded in number.
_PLANS: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}
_MAX_PLANS = 16
_NO_PLAN: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0), np.zeros(0))


def _quadratic_plan(terms: tuple[TermShape, ...], p: int, pattern: np.ndarray, limit: int,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Where the quadratic form's constants come from (see
    :meth:`DensePLSProblem._quadratic_form`): ``index`` (entry x pair slot of each summand),
    ``gather`` (M's flat position of each summand but the identity's q ones, which come
    last) and ``entries`` (the flat positions of the m x m matrix the form reaches); None
    when the form would exceed ``limit`` numbers. Read-only arrays, cached."""
    q = pattern.shape[0]
    key = (terms, p, limit, q, np.packbits(pattern).tobytes())
    cached = _PLANS.get(key, _NO_PLAN)  # one lookup: another thread may clear the cache
    if cached is not _NO_PLAN:
        return cached
    m = q + p + 1
    rows, cols, lind = _lambda_pattern(terms)
    k = sum(t.nc * (t.nc + 1) // 2 for t in terms)
    npairs = (k + 1) * (k + 2) // 2
    xy = np.arange(q, m)
    t_rows = np.concatenate([rows, xy])  # T[t_cols, t_rows] = c[t_coef]
    t_cols = np.concatenate([cols, xy])
    t_coef = np.concatenate([lind + 1, np.zeros(m - q, np.int64)])
    # M's structural pattern (Z'Z's from Zt's, the rest full), not its values: weights
    # changed later (re-weighting) keep the pattern
    structure = np.ones((m, m), dtype=bool)
    structure[:q, :q] = pattern
    i, j = np.nonzero((t_rows[:, None] <= t_rows[None, :])
                      & structure[np.ix_(t_cols, t_cols)])
    gather = t_cols[i] * m + t_cols[j]
    a = np.minimum(t_coef[i], t_coef[j])
    b = np.maximum(t_coef[i], t_coef[j])
    pair = np.concatenate([a * (2 * k + 3 - a) // 2 + (b - a), np.zeros(q, np.int64)])
    pos = np.concatenate([t_rows[i] * m + t_rows[j], np.arange(q) * (m + 1)])
    reached = np.zeros(m * m, dtype=bool)
    reached[pos] = True
    entries = np.flatnonzero(reached)
    plan: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    if npairs * entries.shape[0] <= limit:
        where = np.cumsum(reached) - 1
        index = where[pos] * npairs + pair
        for arr in (index, gather, entries):
            arr.flags.writeable = False
        plan = (index, gather, entries)
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


@dataclass(slots=True)
class DenseFactorization:
    """The Cholesky factor of the whole augmented system (small models): L is its lower
    triangle (the strict upper triangle of the array is left as LAPACK found it)."""

    theta: np.ndarray
    L: np.ndarray
    ldL2: float
    ldRX2: float
    pwrss: float


@dataclass
class DensePLSProblem(_AugmentedSystem):
    """The same system as :class:`PLSProblem` factored as one dense matrix.

    For small models (sleepstudy: 39 x 39) a single LAPACK call on the whole augmented matrix
    costs less than the blocked algorithm's many small steps; the results are identical up
    to round-off. Cross-products are formed once; per θ: T'MT with T = diag(Λ, I), + I, and
    one Cholesky.
    """

    # each term's level codes and X_i, in Zt's order (optional): Z's dense columns and the
    # pattern of Z'Z are then read off them, and Zt (a scipy matrix, which costs more to
    # build than the rest of a small model's setup) is built only if a caller asks for it
    factors: list[tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        w = self._weights()
        q, self.m = self.q, self.q + self.p + 1
        self._z_layout: tuple[np.ndarray, np.ndarray] | None = None
        self._gram(None if self.weights is None else w)
        self._lambda_pattern = _lambda_pattern(tuple(self.terms))
        self._log_parts = np.array([0, q])
        self._quadratic: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._form_sources: tuple[np.ndarray, np.ndarray, int] | None = None
        self._quadratic_form()
        if self._quadratic is None:
            self._products_by_term()

    def _gram(self, w: np.ndarray | None) -> None:
        """M = [Z X y]'W[Z X y] and what is read off its diagonal."""
        q = self.q
        design = np.empty((self.n, self.m))
        if self.factors is not None and callable(self.Zt):
            rows, vals = self._layout()
            design[:, :q] = 0.0
            design[np.arange(self.n)[:, None], rows] = vals  # Zt.toarray().T, entry by entry
        else:
            design[:, :q] = self._zt().toarray().T
        design[:, q:-1] = self.X
        design[:, -1] = self.y
        self.M = design.T @ (design if w is None else design * w[:, None])
        self._xtx_diag = np.diag(self.M)[q : q + self.p].copy()
        self._rx_floor = 1e-13 * np.maximum(self._xtx_diag, _TINY)
        self._rx_sqrt_floor = np.sqrt(self._rx_floor)
        self._rx_sqrt_floors: list[float] = self._rx_sqrt_floor.tolist()

    def _layout(self) -> tuple[np.ndarray, np.ndarray]:
        """Z's entries from the factors, as Zt stores them: for each observation (row) and
        each column of each term, the row of Zt it lands in (offset + code * nc + j) and the
        value (X_i's entry; zeros, which Zt does not store, as +0.0)."""
        if self._z_layout is None:
            assert self.factors is not None
            width = sum(t.nc for t in self.terms)
            rows = np.empty((self.n, width), dtype=np.int64)
            vals = np.empty((self.n, width))
            offset = col = 0
            for t, (codes, x) in zip(self.terms, self.factors, strict=True):
                block = rows[:, col : col + t.nc]
                np.multiply(np.asarray(codes, dtype=np.int64)[:, None], t.nc, out=block)
                block += np.arange(offset, offset + t.nc)
                vals[:, col : col + t.nc] = x
                offset += t.size
                col += t.nc
            vals[vals == 0.0] = 0.0  # -0.0 too: Zt.toarray() has +0.0 where nothing is stored
            self._z_layout = (rows, vals)
        return self._z_layout

    def _z_pattern(self) -> np.ndarray:
        """The structural pattern of Z'Z (q x q, bool), as :func:`_gram_pattern` of Zt: rows
        meet where one observation stores an entry in both (read off the factors when there
        are some, pair of term columns by pair of term columns)."""
        if self.factors is None or not callable(self.Zt):
            return _gram_pattern(self._zt())
        q = self.q
        rows, vals = self._layout()
        stored = vals != 0.0  # NaN is stored, as in Zt
        every = bool(stored.all())
        flat = np.zeros(q * q, dtype=bool)
        width = rows.shape[1]
        for a in range(width):
            for b in range(a, width):
                if every:
                    flat[rows[:, a] * q + rows[:, b]] = True
                else:
                    both = stored[:, a] & stored[:, b]
                    flat[rows[both, a] * q + rows[both, b]] = True
        out = flat.reshape(q, q)
        return out | out.T

    def reweight(self, w: np.ndarray, y: np.ndarray) -> None:
        """Replace the case weights and the response (see :meth:`PLSProblem.reweight`): M
        and the quadratic form's values are recomputed; its pattern is kept."""
        w, y = _check_reweight(w, y, self.n)
        self.weights, self.y = w, y
        self.ldW = _log_det_weights(w)
        self._gram(w)
        if self._quadratic is not None and self._form_sources is not None:
            pa, pb, forms, pos = self._quadratic
            index, gather, q = self._form_sources
            values = np.concatenate([self.M.ravel()[gather], np.ones(q)])
            forms = np.bincount(index, weights=values, minlength=forms.size).reshape(forms.shape)
            self._quadratic = (pa, pb, forms, pos)

    def _products_by_term(self) -> None:
        """What T'MT needs when it is formed by products with Λ (no small quadratic form).

        T = diag(Λ, I) with Λ = ⊕ I_nl ⊗ λ_k: scalar terms scale their rows and columns by θ
        (one outer product for all of them); vector terms multiply each level's nc rows and
        columns by λ_k (one batched product per side), so no m x m product is needed."""
        scalar = [t for t in self.terms if t.nc == 1]
        pos = np.cumsum([0] + [t.size for t in self.terms])
        self._scalar_cols = np.concatenate(
            [np.arange(pos[i], pos[i + 1]) for i, t in enumerate(self.terms) if t.nc == 1]
            + [np.zeros(0, np.int64)]).astype(np.int64)
        self._scalar_theta = np.concatenate(
            [np.full(t.nl, t.theta_offset) for t in scalar] + [np.zeros(0, np.int64)]
        ).astype(np.int64)
        self._vector_terms = [(int(pos[i]), int(pos[i + 1]), t) for i, t in enumerate(self.terms)
                              if t.nc > 1]
        self._diag_z = np.arange(self.q) * (self.m + 1)  # flat positions of the Z diagonal

    def _quadratic_form(self) -> None:
        """T'MT + diag(I_q, 0) as a quadratic form in c = (1, θ), when that is small.

        T = diag(Λ, I) is linear in θ: T[u, v] = c_{k(u,v)} on its pattern. Then
        (T'MT)[v, v'] = Σ c_k c_k' M[u, u'] over the pattern entries (u, v) and (u', v'), so
        T'MT + diag(I_q, 0) = Σ_{a ≤ b} c_a c_b Q_ab with constant Q_ab, formed once at the
        entries on or above the diagonal that any of them reaches. Per θ the matrix is one
        small matrix-vector product (sleepstudy: 10 pairs x 168 entries) instead of several
        products with Λ. Where each Q_ab entry comes from depends only on the terms, p and
        the pattern of Z'Z (:func:`_quadratic_plan`, shared by refits of the same design)."""
        q = self.q
        k = sum(t.nc * (t.nc + 1) // 2 for t in self.terms)
        npairs = (k + 1) * (k + 2) // 2
        limit = _policy().max_quadratic
        if npairs * (q + 1) > limit:
            return  # not small even if only the diagonal were reached
        plan = _quadratic_plan(tuple(self.terms), self.p, self._z_pattern(), limit)
        if plan is None:
            return
        index, gather, entries = plan
        # M read at the pairs kept (M[t_cols[i], t_cols[j]]), then the identity's ones
        values = np.concatenate([self.M.ravel()[gather], np.ones(q)])
        forms = np.bincount(index, weights=values, minlength=entries.shape[0] * npairs)
        self._form_sources = (index, gather, q)
        pa, pb = _upper_pairs(k + 1)  # pair index a(2k+3-a)/2 + (b-a) in this order
        self._quadratic = (pa, pb, forms.reshape(entries.shape[0], npairs), entries)
        self._c = np.ones(k + 1)

    def deviances(self, thetas: np.ndarray, REML: bool) -> np.ndarray:
        """The criterion at each row of ``thetas`` (one batched computation)."""
        s = self._scaled_batch(thetas)  # upper triangles
        if s.shape[0] == 1:
            lfac, info = la.lapack.dpotrf(s[0].T, lower=1, clean=0, overwrite_a=1)
            d = lfac.diagonal()[None, :]
        else:
            try:  # numpy's Cholesky reads the lower triangle: that of the transposes
                d = np.diagonal(np.linalg.cholesky(np.swapaxes(s, 1, 2)), axis1=1, axis2=2)
                info = 0
            except np.linalg.LinAlgError:
                info = 1
        if info != 0:  # not positive definite, or an exact fit: the careful path decides
            return np.array([self.criterion(self.factor(th), REML) for th in thetas])
        q, p = self.q, self.p
        rx = d[:, q : q + p]
        if (rx * rx <= self._rx_floor).any():
            raise FittingError("Downdated VtV is not positive definite")
        logs = np.log(d)
        ld_l2 = 2.0 * logs[:, :q].sum(axis=1)
        ld_rx2 = 2.0 * logs[:, q : q + p].sum(axis=1)
        return profiled_criteria(ld_l2, ld_rx2, d[:, -1] ** 2, self.n, self.p, self.ldW, REML)

    def _scaled_batch(self, thetas: np.ndarray) -> np.ndarray:
        """T'MT + diag(I_q, 0) for each row of ``thetas``: (B, m, m), upper triangles (one
        product for all of them by the quadratic form; else θ by θ)."""
        if self._quadratic is None:
            return np.stack([self._scaled(theta) for theta in thetas])
        pa, pb, forms, pos = self._quadratic
        nb, m = thetas.shape[0], self.m
        c = np.ones((nb, self._c.shape[0]))
        c[:, 1:] = thetas
        s = np.zeros((nb, m * m))
        s[:, pos] = (c[:, pa] * c[:, pb]) @ forms.T
        return s.reshape(nb, m, m)

    def _scaled(self, theta: np.ndarray) -> np.ndarray:
        """T'MT + diag(I_q, 0): the augmented matrix at θ (a new C-order array; only the
        upper triangle when it comes from the quadratic form)."""
        if self._quadratic is not None:
            pa, pb, forms, pos = self._quadratic
            c = self._c
            c[1:] = theta
            s = np.zeros((self.m, self.m))
            s.ravel()[pos] = forms @ (c[pa] * c[pb])
            return s
        if self._scalar_cols.size:
            c = np.ones(self.m)
            c[self._scalar_cols] = theta[self._scalar_theta]
            s = self.M * c[:, None]  # rows first, then columns: the order of (T'M)T
            s *= c
        else:
            s = self.M.copy()
        m = self.m
        lams = [t.lower_factor(theta) for _, _, t in self._vector_terms]
        for (lo, hi, t), lam in zip(self._vector_terms, lams, strict=True):
            s[lo:hi] = (lam.T @ s[lo:hi].reshape(t.nl, t.nc, m)).reshape(hi - lo, m)
        for (lo, hi, t), lam in zip(self._vector_terms, lams, strict=True):
            s[:, lo:hi] = (s[:, lo:hi].reshape(m * t.nl, t.nc) @ lam).reshape(m, hi - lo)
        s.ravel()[self._diag_z] += 1.0
        return s

    def deviance(self, theta: np.ndarray, REML: bool) -> tuple[float, DenseFactorization]:
        """The criterion at ``theta`` and its factorisation (the optimizer's call: one
        method, without the base class's conversions and indirections)."""
        f = self.factor(theta)
        return profiled_criterion(f.ldL2, f.ldRX2, f.pwrss, self.n, self.p, self.ldW, REML), f

    def factor(self, theta: np.ndarray) -> DenseFactorization:
        theta = np.array(theta, dtype=float)  # a copy (see PLSProblem.factor)
        quadratic = self._quadratic
        if quadratic is not None:  # _scaled's quadratic form, inline: it runs per evaluation
            pa, pb, forms, pos = quadratic
            c = self._c
            c[1:] = theta
            s = np.zeros((self.m, self.m))
            s.ravel()[pos] = forms @ (c[pa] * c[pb])
        else:
            s = self._scaled(theta)
        # s is symmetric: factoring its transpose in place leaves L in the lower triangle
        # (the upper one keeps s: only the lower triangle of L is ever read)
        lfac, info = _dpotrf(s.T, lower=1, clean=0, overwrite_a=1)
        if info != 0:  # dpotrf overwrote its input: form it again to diagnose
            lfac = cholesky_exact_fit(self._scaled(theta))
        d = lfac.diagonal()
        q, p = self.q, self.p
        if p == 0:
            return DenseFactorization(theta, lfac, 2.0 * float(np.log(d[:q]).sum()), 0.0,
                                      float(d[-1]) ** 2)
        # pivots of RX (positive), compared as Python floats: p is small, and one numpy
        # reduction costs more than the comparisons
        if any(map(float.__le__, d[q : q + p].tolist(), self._rx_sqrt_floors)):
            raise FittingError("Downdated VtV is not positive definite")
        # log|L|² and log|RX|²: the sums of the logs of the two parts of the diagonal
        ld_l2, ld_rx2 = np.add.reduceat(np.log(d[: q + p]), self._log_parts).tolist()
        return DenseFactorization(theta, lfac, 2.0 * ld_l2, 2.0 * ld_rx2, float(d[-1]) ** 2)

    has_gradient = True

    def gradient(self, f: DenseFactorization, REML: bool) -> np.ndarray:
        """The criterion's gradient in θ at ``f``, analytically.

        With A = T'MT + E (E = I on the random effects) and D_k = ∂T/∂θ_k, so that
        ∂A = D_k'MT + T'MD_k: ∂ log|A_s| = 2 tr(A_s⁻¹ (T'MD_k)_s), where s is the random
        effects and X for REML (log|L|² + log|RX|²) and the random effects alone for ML; and
        ∂pwrss = w'(∂A)w = 2 (D_k w)'(MTw) with w = [-Ω⁻¹a; 1] the solution extended by the
        response (pwrss is a minimum over w's first part, so only A's change counts).
        """
        q, p, m = self.q, self.p, self.m
        theta = f.theta
        s = q + p if REML else q
        rows, cols, lind = self._lambda_pattern
        t = np.eye(m)
        t[cols, rows] = theta[lind]  # T = diag(Λ, I); Λ[c, r] is Λ'[r, c]
        # A_s⁻¹ (T'M)[s, Z] by two solves with A_s's factor, the leading block of L (numpy's
        # solver: scipy's dpotrs wakes OpenBLAS's threads, which costs ms at these sizes)
        ls = np.tril(f.L[:s, :s])
        cn = np.linalg.solve(ls.T, np.linalg.solve(ls, t[:, :s].T @ self.M[:, :q]))
        k = theta.shape[0]
        g_logdet = 2.0 * np.bincount(lind, weights=cn[rows, cols], minlength=k)
        beta, u = self.solve(f)
        w = np.concatenate([-u, -beta, [1.0]])
        h = self.M @ (t @ w)
        g_pwrss = 2.0 * np.bincount(lind, weights=w[rows] * h[cols], minlength=k)
        scale = (self.n - p) if REML else self.n
        return g_logdet + scale * g_pwrss / f.pwrss

    def solve(self, f: DenseFactorization) -> tuple[np.ndarray, np.ndarray]:
        # L' [u; β] = the y row of L, by LAPACK's triangular solve (L is F-ordered)
        sol, info = la.lapack.dtrtrs(f.L[:-1, :-1], f.L[-1, :-1], lower=1, trans=1)
        if info != 0:
            raise FittingError("singular factor in the solution")
        return sol[self.q :], sol[: self.q]

    def sparse_L(self, f: DenseFactorization) -> sp.csc_matrix:
        out = sp.csc_matrix(np.tril(f.L[: self.q, : self.q]))
        out.eliminate_zeros()
        return out

    def rzx_rx(self, f: DenseFactorization) -> tuple[np.ndarray, np.ndarray]:
        q, p = self.q, self.p
        return f.L[q : q + p, :q].T.copy(), np.triu(f.L[q : q + p, q : q + p].T)

    def inverse_diagonal_blocks(self, f: DenseFactorization) -> list[np.ndarray]:
        linv = la.solve_triangular(f.L[: self.q, : self.q], np.eye(self.q), lower=True,
                                   check_finite=False)
        kinv = linv.T @ linv
        out, pos = [], 0
        for t in self.terms:
            blk = np.empty((t.nl, t.nc, t.nc))
            for lev in range(t.nl):
                sl = slice(pos + lev * t.nc, pos + (lev + 1) * t.nc)
                blk[lev] = kinv[sl, sl]
            pos += t.size
            out.append(blk)
        return out
