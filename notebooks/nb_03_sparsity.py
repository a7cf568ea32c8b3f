"""Notebook 03: sparsity — Zt, Λ, Z'Z, the Cholesky factor L, term order and fill-in."""

from __future__ import annotations

from nbcommon import setup

NAME = "03_sparsity.ipynb"
MIN_FIGURES = 3
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# Sparsity: Zt, Λ, Z'Z and the Cholesky factor L

**Data**: `Pastes` (strength of a paste; 10 batches, 3 casks *within* each batch, 2 samples per
cask: **nested** factors) and `Penicillin` (diameter of an inhibition zone; 24 plates, 6
samples, every sample tested on every plate: **crossed** factors).

**This notebook**: at every θ the fit factors
$\Lambda^\top Z^\top Z\Lambda + I = LL^\top$ (lme4 paper §3.2-3.3). Where $Z^\top Z$ has zeros, $L$
may not: **fill-in**. We look at the four matrices for a nested and a crossed design, see how
lme4 orders the terms (decreasing number of levels) and what the other order would cost, and how
lme4's factor differs from the one here.
"""),
    ("code", setup("import scipy.sparse as sp", "from lmeformula import plots")),
    ("code", r"""
def panel(m, name):
    Zt = lmf.getME(m, "Zt")
    blocks = plots.term_blocks(m)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.9), layout="constrained")
    plots.image(Zt, axes[0], f"{name}: Zt", row_blocks=blocks, xlabel="observation",
                ylabel="random effect")
    plots.image(lmf.getME(m, "Lambda"), axes[1], "Λ (diagonal: θ per term)",
                row_blocks=blocks, xlabel="random effect", ylabel="random effect")
    plots.image(Zt @ Zt.T, axes[2], "Z'Z", row_blocks=blocks, col_blocks=blocks,
                xlabel="random effect", ylabel="random effect")
    L = lmf.getME(m, "L")
    plots.image(L, axes[3], f"L ({L.nnz} non-zeros)", row_blocks=blocks, col_blocks=blocks,
                xlabel="random effect", ylabel="random effect")
    return L

pastes = lmf.lmer("strength ~ 1 + (1 | batch/cask)", lmf.datasets.load("Pastes"))
L_nested = panel(pastes, "Pastes (nested)")
"""),
    ("md", r"""
In Pastes each cask belongs to one batch: the `cask:batch` block of $Z^\top Z$ is diagonal and
each cask touches only its own batch, so $L$ has exactly the pattern of the lower triangle of
$Z^\top Z$ — **no fill-in**.
"""),
    ("code", r"""
pen = lmf.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", lmf.datasets.load("Penicillin"))
L_crossed = panel(pen, "Penicillin (crossed)")
ZtZ = lmf.getME(pen, "Zt") @ lmf.getME(pen, "Zt").T
print("non-zeros in the lower triangle of Z'Z:", sp.tril(ZtZ).nnz, "  in L:", L_crossed.nnz)
"""),
    ("md", r"""
In Penicillin every plate meets every sample. The sample block (6 x 6) of $Z^\top Z$ is diagonal,
but after the 24 plates are eliminated it becomes full: each pair of samples is connected through
the plates they share. That is the fill-in: 15 entries.

## Term order: decreasing number of levels

lme4 sorts the random-effects terms by **decreasing number of levels** of their grouping factors
(`cask:batch` 30 before `batch` 10; `plate` 24 before `sample` 6), whatever the order in the
formula. The term eliminated first is then the large one, whose block is diagonal (or block
diagonal); fill-in can only appear in the later, smaller blocks. The other order makes it worse:
"""),
    ("code", r"""
def fill(m, order):
    # L of A A' + I with the terms in the given order; A = Λ'Z', rows permuted by term
    A = (lmf.getME(m, "Lambdat") @ lmf.getME(m, "Zt")).toarray()
    gp = lmf.getME(m, "Gp")
    perm = np.concatenate([np.arange(gp[k], gp[k + 1]) for k in order])
    Ap = A[perm]
    L = np.linalg.cholesky(Ap @ Ap.T + np.eye(len(Ap)))
    L[np.abs(L) < 1e-12] = 0.0
    return sp.csc_matrix(L)

for name, m in [("Pastes", pastes), ("Penicillin", pen)]:
    re = m.lformula.reTrms
    print(name, "terms in lme4's order:", [(t.key, t.nl) for t in re.terms])

fig, axes = plt.subplots(1, 4, figsize=(15, 3.9), layout="constrained")
for ax, (name, m, order) in zip(axes, [("Pastes", pastes, [0, 1]), ("Pastes", pastes, [1, 0]),
                                      ("Penicillin", pen, [0, 1]), ("Penicillin", pen, [1, 0])]):
    blocks = plots.term_blocks(m)
    blocks = [blocks[k] for k in order]
    L = fill(m, order)
    which = "lme4's order" if order == [0, 1] else "reversed"
    plots.image(L, ax, f"{name}, {which}: L has {L.nnz} non-zeros", values=False,
                row_blocks=blocks, col_blocks=blocks, xlabel="random effect",
                ylabel="random effect")
"""),
    ("md", r"""
Reversed, Pastes eliminates each batch first, which couples its three casks (3 fill-ins per
batch, 30 in all); Penicillin eliminates the 6 samples first, and since each sample meets all 24
plates, the whole 24 x 24 plate block fills in (276 entries instead of 15).

## lme4's factor is permuted; this one is not

lme4 hands $\Lambda^\top Z^\top$ to CHOLMOD, which computes a **fill-reducing permutation** $P$
once (from the pattern) and factors $P(\Lambda^\top Z^\top Z\Lambda + I)P^\top = LL^\top$; lme4's
`getME(m, "L")` is that permuted factor (`L@perm` holds $P$), so its rows are not in the order of
`Zt`'s. lmeformula's `getME(m, "L")` is **not permuted**: rows and columns in `Zt`'s order. Its
engine relies on lme4's term order instead — the first (largest) term's block is diagonal or
block diagonal and is factored level by level, and the remaining blocks are kept dense — so the
pictures above are the factor actually used. The two factors have the same determinant, so the
criterion is the same.
"""),
    ("code", r"""
A = (lmf.getME(pen, "Lambdat") @ lmf.getME(pen, "Zt")).toarray()
L = lmf.getME(pen, "L").toarray()
assert np.allclose(L @ L.T, A @ A.T + np.eye(len(A)))          # no permutation
print("log|L|² =", 2 * np.log(np.diag(L)).sum())
"""),
    ("md", r"""
## Key points

* The fit factors $\Lambda^\top Z^\top Z\Lambda + I = LL^\top$ at every θ; zeros of $Z^\top Z$ that
  become non-zeros of $L$ are fill-in.
* Nested factors give no fill-in; crossed factors fill in the later term's block.
* lme4 orders terms by decreasing number of levels, so the large term goes first; reversing the
  order can fill in a much larger block.
* lme4's CHOLMOD factor carries a fill-reducing permutation; lmeformula's $L$ is in `Zt`'s order.

## Exercises

1. Fit `diameter ~ 1 + (1 | sample) + (1 | plate)` (terms written the other way). Is `Zt`'s row
   order different? Is $L$?
2. Drop half of the plate-sample pairs of Penicillin at random (fixed seed) and count the
   fill-in of $L$ in both orders.
3. For `strength ~ 1 + (1 | batch) + (1 | sample)` in Pastes (`sample` is a 30-level factor
   nested in batch, written without `/`), is there fill-in?
"""),
]
