"""Every size threshold of the engine, in one object.

Which engine a model gets (one dense factor, or blocks), how its cross-products are formed,
how the downdate is done and how block 2 is assembled all depend on sizes; the limits are
here, with why, so that they are measured and changed in one place (tests swap the policy
with :func:`dataclasses.replace` to force a path).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["POLICY", "BlockPolicy"]


@dataclass(frozen=True)
class BlockPolicy:
    """Size thresholds of the engine.

    Attributes
    ----------
    dense_limit
        Augmented systems of at most this order (q + p + 1) are factored as one dense matrix:
        one LAPACK call beats the blocked algorithm's many small steps (sleepstudy: 39).
    max_quadratic
        Largest quadratic form in θ (pairs of θ x entries) the dense engine precomputes for
        T'MT (a few µs per θ); above it, products by term.
    max_dense_cross
        Largest dense G (m x q₁) and number of level pairs formed by counting per pair of
        levels; above either, the cross-products come from sparse products with Zt.
    dense_g_fill
        G (block 2 against block 1) is stored dense (the downdate by BLAS, G T₁ then one
        syrk) above this fraction of non-zeros (its measured fill, nnz / size) ...
    max_dense_g
        ... and when it has at most this many entries (m x q₁).
    dense_g_work
        G is also stored dense, whatever its fill, when the sparse rank update would list more
        than one pair of G's entries per this many flops of the dense one (m² q₁ for the syrk):
        a listed pair costs a memory-bound multiply-add of the per-θ product and a share of a
        setup that sorts them all, where BLAS does tens of flops in the same time. A vector
        term's many levels against a small second block (``(1 | b) + (x | a)``, 3,000 levels
        of a, 100 of b: 6.4·10⁶ pairs against 6.4·10⁷ flops) fill G at 22 %, under
        ``dense_g_fill``, yet their pairs took most of the fit.
    max_gradient_dense_g
        The analytic gradient with a dense G up to m² q₁ of this size.
    max_laplace_dense
        glmer's analytic Laplace gradient (:mod:`lmeformula.laplace_grad`, the L-BFGS-B
        option) keeps the random effects of all terms but the first as one dense block of
        A = (ZΛ)'W(ZΛ) + I, factored at each evaluation: at most this many of them (6,000:
        288 MB and a dense Cholesky of that order per evaluation); above it the option is
        refused with a message naming the count.
    max_pairs
        Above this many (row pair, level) products the downdate G B Gᵀ is done by sparse
        products instead of a precomputed pairs matrix.
    max_group_grams
        When the pairs are too many (above ``max_pairs``) and the first term is scalar, the
        downdate's matrix C is formed densely, one Gram matrix of G's columns per group of
        levels with equal A11, if it has at most this many entries (keys x groups; 8 bytes
        each): per θ one dense matrix-vector product instead of two sparse products.
    max_wide_pairs_bytes
        A pairs plan's C (built group by group,
        :func:`~lmeformula.pls.downdate._chunked_scalar_pairs`) of more than this many bytes
        as float64 values and 32-bit indices is held narrow
        (:class:`~lmeformula.pls.downdate.NarrowPairs`: the 10⁵ x 2,000 crossed design's 53 MB
        in 13 MB; the same products, each block widened as it is multiplied, at about twice
        the time of the product: InstEval's 14 MB C stays as it is).
    key_table
        Up to m² of this size the downdate's keys are indexed through a dense table (else by
        ``unique``).
    kernel_max_rest_order, kernel_max_downdate_work, kernel_max_cross_cells
        glmer's scalar PIRLS kernel (:mod:`lmeformula.pls.pirls_kernel`) is used while each
        step stays cheap: the order of its dense block (the terms after the nested chain, X
        and the response), the flops of the chain's downdate (Σ nl_t m²) and the cells of the
        cross-products it counts per pair of terms; above any of them the engine's re-weighting.
    band
        Rows per band when block 2's diagonal blocks are copied scaled (cache-sized pieces).
    arrow_min_rows
        Block 2 is factored as an arrow (:class:`~lmeformula.pls.blocks.ArrowBlock`) when its
        leading level-diagonal rows (terms on the first term's grouping factor, as the
        slope of ``(x || g)``) are at least this many; below it one dense ``dpotrf`` costs
        less than the arrow's few extra array operations.
    compact_m22_order
        From this order of block 2 on, when the terms' level codes are given, M22 is
        stored without its zeros and block 2 assembled per θ into the one dense array LAPACK
        factors (:mod:`lmeformula.pls.large`): a dense M22 of this order is 18 MB (the 10⁵ x
        2,000 crossed design's, 32 MB, with the second factor kept beside it, took 4.9x the
        input frame to 4.0x; its fit as fast, an evaluation 139 against 154 ms), and of
        3·10⁴ items (10⁵ x 3·10⁴ crossed levels) 7.2 GB beside the factor's 7.2 GB.
        InstEval's block 2 (order 1,159) stays dense.
    max_best_factor
        The deviance function keeps the factor of the best point so far besides the current
        one (mkMerMod then reuses it at the optimum) while block 2's factor has at most this
        many entries (16 MB: InstEval's 1,159² kept); above it only the current one, and
        the optimum is factored once more, as lme4 evaluates it once more (the 10⁵ x 2,000
        crossed design: 32 MB less at the optimizer's peak, one factorisation more a fit).
    max_index_keys_bytes
        A dense block 2 holds the downdate's keys (its flat positions) in numpy's index type
        while they take at most this many bytes: numpy converts other integer indices on
        every use, and the scatter of InstEval's 148,874 keys took 0.42 ms an evaluation
        with 32-bit keys against 0.15 ms. Above it the keys keep the type their plan made
        them in (the chunked pairs plan's are 32-bit: memory first).
    max_inverse_copy_bytes
        The analytic gradient (L-BFGS-B) takes S_s⁻¹ by ``dpotri`` on a copy of the factor's
        leading block up to this size, and in the factor's own array above it (the 10⁴ x
        10³ crossed design: 8 MB less at the optimizer's peak; the 10⁵ x 2,000 one: 32 MB);
        the two are equal up to rounding, and small models keep ``dpotri``'s numbers.
    sparse_min_order, sparse_max_fill
        An LMM's criterion takes block 2's sparse supernodal factor (CHOLMOD,
        :mod:`lmeformula.pls.cholmod`) instead of the dense one when block 2 (its terms
        scalar or vector) is of at least this order and
        its factor ordered by AMD holds at most this fraction of a dense triangle (counted by
        CHOLMOD's symbolic analysis; InstEval: order 1,159, 0.48). Measured on scalar terms:
        CHOLMOD 20 % faster than ``dpotrf`` at a stored fill of 0.69, level at 0.9
        (PROFILING.md, fourteenth session); vector terms' assembly costs more per entry (not
        measured near the limit).
    max_inverse_pairs
        A fitted model whose block 2 kept its sparse factor computes the conditional
        variances from S_z⁻¹ at the factor's pattern (Takahashi's recurrences,
        :meth:`~lmeformula.pls.cholmod.SparseBlock2.selected_inverse`) and, for the first
        term, from pairs of each level's entries of L21z L11⁻¹: up to this many pairs
        (~50 ns each); above it from the dense factor.
    sparse_gradient_min_order, sparse_gradient_work
        The analytic gradient (L-BFGS-B) keeps block 2's sparse factor from this order on,
        where the selected inverse's multiply-adds (Σ_j c_j² over the factor's column counts,
        ~30 ns each vectorised) are at most ``sparse_gradient_work`` m³ (the dense gradient:
        a factor and an inverse, ~m³/1.5 flops at ~20 GFLOP/s). 20,000 teachers in 2,000
        schools: 3·10⁶ against 8·10¹²; InstEval's block 2 (order 1,159) stays dense.
    max_inverse_order
        Up to this order of block 2, the large-block engine's analytic gradient (L-BFGS-B)
        is the blocked engine's: S⁻¹ by two triangular passes (in the factor's array) and
        the first term's part summed over the downdate's pairs. Above it, its own
        (block 2's triangular inverse in place and sparse products against it by panels),
        whose products with the first term's nl₁ columns cost more: on the 10⁵ x 2,000
        crossed design L-BFGS-B took 19.4 s with it against 3.6 s.
    """

    dense_limit: int = 150
    max_quadratic: int = 40_000
    max_dense_cross: int = 10_000_000
    dense_g_fill: float = 0.25
    max_dense_g: int = 50_000_000
    dense_g_work: int = 50
    max_gradient_dense_g: int = 200_000_000
    max_laplace_dense: int = 6_000
    max_pairs: int = 40_000_000
    max_group_grams: int = 40_000_000
    max_wide_pairs_bytes: int = 32 * 2**20
    key_table: int = 50_000_000
    kernel_max_rest_order: int = 1_500
    kernel_max_downdate_work: int = 60_000_000
    kernel_max_cross_cells: int = 20_000_000
    band: int = 128
    arrow_min_rows: int = 64
    compact_m22_order: int = 1_500
    max_best_factor: int = 2_000_000
    max_index_keys_bytes: int = 2 * 2**20
    max_inverse_copy_bytes: int = 4 * 2**20
    max_inverse_order: int = 4_000
    max_inverse_pairs: int = 200_000_000
    sparse_gradient_min_order: int = 2_000
    sparse_gradient_work: float = 1e-3
    sparse_min_order: int = 600
    sparse_max_fill: float = 0.6

    def dense_off_diagonal(self, nnz: int, rows: int, cols: int, pairs: int = 0) -> bool:
        """Whether block 2 against block 1 (G, ``rows`` x ``cols`` with ``nnz`` stored
        entries) is stored dense (:class:`~lmeformula.pls.blocks.DenseBlock`): its size at
        most ``max_dense_g``, and either its measured fill above ``dense_g_fill`` or its
        sparse rank update's ``pairs`` of entries more than one per ``dense_g_work`` flops
        of the dense one (rows² x cols)."""
        if rows * cols > self.max_dense_g:
            return False
        return (nnz > self.dense_g_fill * rows * cols
                or pairs * self.dense_g_work > rows * rows * cols)

    def list_pairs(self, pairs: int) -> bool:
        """Whether a sparse G's rank update is planned as its ``pairs`` of entries listed
        (:class:`~lmeformula.pls.blocks.PairsBlock` with a sparse C): some, at most
        ``max_pairs``."""
        return 0 < pairs <= self.max_pairs

    def group_grams(self, entries: int) -> bool:
        """Whether, the pairs being too many, C is formed as per-group Gram matrices (dense,
        ``entries`` = keys x groups): at most ``max_group_grams``; else sparse products."""
        return entries <= self.max_group_grams


POLICY = BlockPolicy()
