"""Notebook 03: Sparsity: Zt, Λ, Z'Z and the Cholesky factor L"""

from __future__ import annotations

from nbcommon import SETUP

NAME = "03_sparsity.ipynb"
MIN_FIGURES = 2
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# Sparsity: Zt, Λ, Z'Z and the Cholesky factor L

The penalised least-squares step factors $\Lambda^\top Z^\top Z \Lambda + I = LL^\top$. Where
$Z^\top Z$ has zeros, $L$ may not: *fill-in*. Nested designs produce none; crossed ones do.
"""),
    ("code", SETUP),
    ("code", r"""
def panel(m, name):
    Zt = lmf.getME(m, "Zt")
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    plots.image(Zt, axes[0], f"{name}: Zt")
    plots.image(lmf.getME(m, "Lambda"), axes[1], "Λ")
    plots.image(Zt @ Zt.T, axes[2], "Z'Z")
    L = lmf.getME(m, "L")
    plots.image(L, axes[3], f"L ({L.nnz} non-zeros)")
    fig.tight_layout()
    return L

pastes = lmf.lmer("strength ~ 1 + (1 | batch/cask)", lmf.datasets.load("Pastes"))
L_nested = panel(pastes, "Pastes (nested)")
"""),
    ("md", r"""
In Pastes each cask belongs to one batch: the `cask:batch` block of $Z^\top Z$ is diagonal
and each cask touches only its own batch, so $L$ has exactly the pattern of the lower
triangle of $Z^\top Z$ — no fill-in.
"""),
    ("code", r"""
pen = lmf.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", lmf.datasets.load("Penicillin"))
L_crossed = panel(pen, "Penicillin (crossed)")
ZtZ = (lmf.getME(pen, "Zt") @ lmf.getME(pen, "Zt").T)
print("non-zeros in the lower triangle of Z'Z:", sp.tril(ZtZ).nnz, " in L:", L_crossed.nnz)
"""),
    ("md", r"""
In Penicillin every plate meets every sample. The sample block (6 x 6) of $Z^\top Z$ is
diagonal, but after eliminating the 24 plates it becomes full: each pair of samples is
connected through the plates they share. That is the fill-in, and it is why lmeformula's
engine factors the first (largest) term's block level by level and keeps the rest dense.
"""),
]
