"""Notebook 02: from θ to Λ — Lind, theta, lower and the covariance of the random effects."""

from __future__ import annotations

from nbcommon import setup

NAME = "02_theta_to_lambda.ipynb"
MIN_FIGURES = 1
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# From θ to Λ: Lind, theta, lower and the covariance of the random effects

**Data**: `sleepstudy` (18 subjects, 10 days each), the model
`Reaction ~ Days + (Days | Subject)`.

**This notebook**: how lme4 parameterises the covariance of the random effects by a *relative
covariance factor* $\Lambda_\theta$,
$\operatorname{Var}(b) = \sigma^2\Lambda_\theta\Lambda_\theta^\top$ (lme4 paper §2.2 and
§3.7); how θ fills Λ through `Lind`; why `Lambdat` stores a zero and what `lower` bounds; how to
read the estimated θ; and a picture of Λ.
"""),
    ("code", setup("from lmeformula import plots")),
    ("md", r"""
## One block λ per term, repeated per level

For a term with $p_i$ columns, θ holds the lower triangle of one $p_i \times p_i$ matrix
$\lambda$, **column by column**. For `(Days | Subject)`, $p_i = 2$ and θ has three elements:

$$\lambda = \begin{bmatrix} \theta_1 & 0 \\ \theta_2 & \theta_3 \end{bmatrix}, \qquad
\Lambda_\theta = I_{18} \otimes \lambda \quad (36 \times 36,\ \text{block diagonal}),$$

so every subject's (intercept, slope) pair has covariance $\sigma^2\lambda\lambda^\top$ and
different subjects are independent.
"""),
    ("code", r"""
sleep = lmf.datasets.load("sleepstudy")
pf = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleep)
re = pf.reTrms
print("initial theta:", re.theta, "   lower:", re.lower)
print("Lind (0-based) of the first 9 stored values:", re.Lind[:9])
print(lmf.format_sparse(re.Lambdat[:6, :6]))
"""),
    ("md", r"""
## The stored zero, `Lind` and `lower`

`Lambdat` is $\Lambda^\top$, upper triangular. At the initial θ = (1, 0, 1) the off-diagonal
element θ₂ is 0, yet `Lambdat` prints it as `0` and not as `.`: it is a **stored** zero. lme4
keeps the full triangular pattern of every block, so that for any θ it can refill the values in
place — `Lambdat@x <- theta[Lind]` — without changing the sparsity pattern (and the symbolic
Cholesky analysis that depends on it). `Lind` gives, for every stored value in compressed-column
order, the element of θ it takes: here 1, 2, 3, 1, 2, 3, ... (0-based: 0, 1, 2, ...).

`lower` bounds θ for the optimiser: **0 for diagonal elements** of λ, **−∞ for off-diagonal
ones**. A Cholesky-type factor with non-negative diagonal is unique, and every covariance matrix
has one; a diagonal element at its bound 0 makes $\lambda\lambda^\top$ singular (notebook 05).
"""),
    ("code", r"""
m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
theta = m.theta.to_numpy()
Lt = re.Lambdat.copy()
Lt.data = theta[re.Lind]                       # lme4's Lambdat@x <- theta[Lind]
assert (Lt != lmf.getME(m, "Lambdat")).nnz == 0
lam = Lt.T.toarray()[:2, :2]                   # one subject's block of Λ
print(m.theta.round(6))
print("λ =\n", np.round(lam, 6))
cov = m.sigma**2 * lam @ lam.T
assert np.allclose(cov, m.VarCorr["Subject"].cov)
print("σ² λλ' =\n", np.round(cov, 3))
"""),
    ("md", r"""
## Reading θ

θ is **relative** to the residual standard deviation σ. For the first column,
$(\lambda\lambda^\top)_{11} = \theta_1^2$, so

$$\theta_1 = \frac{\sigma_1}{\sigma} = \frac{24.74}{25.59} = 0.967:$$

subjects' intercepts vary about as much as single reactions scatter around their subject's line.
The slope's standard deviation and the correlation need both remaining elements:
$\sigma_2 = \sigma\sqrt{\theta_2^2 + \theta_3^2}$ and
$\rho = \theta_2 / \sqrt{\theta_2^2 + \theta_3^2}$.
"""),
    ("code", r"""
t1, t2, t3 = theta
vc = lmf.VarCorr(m).as_data_frame()
print(vc)
sd = vc[vc.var2.isna()].set_index(["grp", "var1"])["sdcor"]
assert np.isclose(t1 * m.sigma, sd.loc[("Subject", "(Intercept)")])
assert np.isclose(m.sigma * np.hypot(t2, t3), sd.loc[("Subject", "Days")])
print(f"θ1 = σ1/σ = {sd.loc[('Subject', '(Intercept)')]:.2f}/{m.sigma:.2f} = {t1:.4f}",
      f"  correlation θ2/√(θ2²+θ3²) = {t2 / np.hypot(t2, t3):.3f}")
"""),
    ("md", r"""
## A picture of Λ

Left: the pattern of $\Lambda$ (36 x 36), one 2 x 2 lower-triangular block per subject, the
stored zeros included (all black: the pattern is what is stored, not the values). Right: the
first three blocks at the estimate, the values written in.
"""),
    ("code", r"""
Lam = lmf.getME(m, "Lambda")
labels = plots.re_labels(m)
fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained",
                         gridspec_kw={"width_ratios": [1.2, 1]})
pattern = Lam.copy()
pattern.data[:] = 1.0                       # every stored entry, zero or not
plots.image(pattern, axes[0], "pattern of Λ: 18 blocks λ (36 x 36)", row_labels=labels,
            xlabel="random effect (column index, same order as the rows)",
            ylabel="random effect", fontsize=5)
plots.image(Lam[:6, :6], axes[1], "Λ at the estimate, subjects 308, 309, 310",
            row_labels=labels[:6], col_labels=labels[:6], xlabel="random effect",
            ylabel="random effect", annotate=True, fontsize=8)
axes[1].tick_params(axis="x", labelrotation=30);
"""),
    ("md", r"""
## Key points

* $\operatorname{Var}(b) = \sigma^2\Lambda_\theta\Lambda_\theta^\top$; Λ is block diagonal with
  one lower-triangular λ per level of each term; θ is λ's lower triangle, column by column.
* `Lind` maps θ into the stored values of `Lambdat`; the pattern (stored zeros included) never
  changes.
* `lower`: 0 on λ's diagonal, −∞ off it.
* θ is relative to σ: θ₁ = σ₁/σ for the first column of a term.

## Exercises

1. For `(Days || Subject)`, predict θ's length, `Lind`, `lower` and the pattern of Λ; check with
   `lFormula`.
2. Set θ = (1, 0.5, 1) by hand in `Lambdat` and compute the implied correlation of intercept and
   slope.
3. Why would a parameterisation by variances and a correlation be harder for an optimiser than
   θ with `lower`? (Hint: which constraints would it need?)
"""),
]
