"""Notebook 04: penalised least squares, the profiled criterion, and profile intervals."""

from __future__ import annotations

from nbcommon import setup

NAME = "04_pls_and_profiles.ipynb"
MIN_FIGURES = 3
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# Penalised least squares and the profiled criterion

**Data**: `sleepstudy` (`Reaction ~ Days + (Days | Subject)`, and the uncorrelated version
`(Days || Subject)`) and `Dyestuff` (yield of 6 batches of dye, 5 each: `Yield ~ 1 + (1 | Batch)`).

**This notebook**: how lme4 evaluates its criterion at a given θ by **penalised least squares**
(PLS, lme4 paper §3.1-3.4), step by step, checked against `lmer`; the criterion as a function of
θ; **profile ζ** and why profile intervals beat Wald intervals for variance components; and the
criterion over two θ's.
"""),
    ("code", setup("from lmeformula import plots")),
    ("md", r"""
## Penalised least squares at one θ

Write $b = \Lambda_\theta u$ with $u \sim N(0, \sigma^2 I)$. For a fixed θ, $\beta$ and $u$ minimise
the **penalised residual sum of squares**

$$r^2(\theta) = \min_{\beta, u}\ \|y - X\beta - Z\Lambda_\theta u\|^2 + \|u\|^2 .$$

The penalty $\|u\|^2$ is what makes the random effects random: large $u$ cost. This is an ordinary
least-squares problem for $(u, \beta)$ with $q$ extra pseudo-observations, solved through a
blocked Cholesky factorisation. Each step on the fitted sleepstudy model, at its θ:
"""),
    ("code", r"""
sleep = lmf.datasets.load("sleepstudy")
m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
theta = m.theta.to_numpy()
X = lmf.getME(m, "X").to_numpy()
y = lmf.getME(m, "y")
Zt = lmf.getME(m, "Zt").toarray()
n, p = X.shape

# 1. Λ from θ (notebook 02), and A = Λ'Z' (q x n)
Lt = lmf.getME(m, "Lambdat").toarray()
A = Lt @ Zt
# 2. the sparse Cholesky factor of the random-effects block: L L' = A A' + I (notebook 03)
L = np.linalg.cholesky(A @ A.T + np.eye(A.shape[0]))
# 3. forward solves: c_u = L⁻¹ A y and R_ZX = L⁻¹ A X
cu = np.linalg.solve(L, A @ y)
RZX = np.linalg.solve(L, A @ X)
# 4. the fixed-effects block: R_X' R_X = X'X - R_ZX' R_ZX (what is left of X'X after u)
RX = np.linalg.cholesky(X.T @ X - RZX.T @ RZX).T
# 5. β from R_X' R_X β = X'y - R_ZX' c_u, then u from L' u = c_u - R_ZX β
beta = np.linalg.solve(RX, np.linalg.solve(RX.T, X.T @ y - RZX.T @ cu))
u = np.linalg.solve(L.T, cu - RZX @ beta)
# 6. the penalised residual sum of squares
r2 = np.sum((y - X @ beta - A.T @ u) ** 2) + u @ u
print("β:", beta, "  lmer:", m.beta)
assert np.allclose(beta, m.beta) and np.allclose(u, lmf.getME(m, "u"))
"""),
    ("md", r"""
Steps 2-5 are one Cholesky factorisation of the normal equations of $(u, \beta)$:

$$\begin{bmatrix} AA^\top + I & AX \\ X^\top A^\top & X^\top X\end{bmatrix} =
\begin{bmatrix} L & 0 \\ R_{ZX}^\top & R_X^\top\end{bmatrix}
\begin{bmatrix} L^\top & R_{ZX} \\ 0 & R_X\end{bmatrix},$$

done in two blocks because the first is large and sparse ($q \times q$) and the second small
and dense ($p \times p$). Step 4 is the Schur complement; step 5 the back-substitution.

From $r^2$ and the two log-determinants, with σ profiled out, the REML criterion (lme4 paper
eq. 42) is

$$d_R(\theta) = \log|L|^2 + \log|R_X|^2 + (n-p)\left(1 + \log\frac{2\pi r^2}{n-p}\right),$$

and the ML deviance drops $\log|R_X|^2$ and uses $n$ for $n-p$. The estimate of σ is
$\sqrt{r^2/(n-p)}$ (REML).
"""),
    ("code", r"""
dR = (2 * np.log(np.diag(L)).sum() + 2 * np.log(np.diag(RX)).sum()
      + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p))))
print(dR, m.REMLcrit())
assert np.isclose(dR, m.REMLcrit(), rtol=1e-10)
assert np.isclose(np.sqrt(r2 / (n - p)), m.sigma)
"""),
    ("md", r"""
The optimiser then only searches θ (3 numbers here), calling this evaluation at each step:
$\beta$, $u$ and σ follow from θ in closed form.

## The criterion over θ: Dyestuff

With one variance component, the REML criterion is a function of a single θ = σ₁/σ. Its minimum
is the estimate:
"""),
    ("code", r"""
dye = lmf.lmer("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff"))
grid = np.linspace(0.0, 3, 121)
crit = [dye.devfun(np.array([t])) for t in grid]
fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
ax.plot(grid, crit)
ax.axvline(dye.theta.iloc[0], color="0.5", ls="--", lw=1)
ax.annotate(f"θ̂ = {dye.theta.iloc[0]:.3f}", (dye.theta.iloc[0], min(crit)),
            xytext=(10, 20), textcoords="offset points")
ax.set_xlabel("θ = σ₁/σ (Batch)")
ax.set_ylabel("REML criterion")
ax.set_title("Dyestuff: the profiled REML criterion");
"""),
    ("md", r"""
## Profile ζ and profile intervals

`profile` fixes one parameter at a time on a grid, re-optimises all the others, and records
$\zeta = \operatorname{sign}(\text{value} - \text{estimate})\sqrt{d(\text{value}) - d_{\min}}$, the
signed square root of the deviance increase (lme4 profiles the ML deviance, so ζ = 0 at the ML
estimates: σ₁ = 37.3 rather than REML's 42.0). Where ζ crosses ±1.96 are the bounds of the 95%
profile interval. If the log-likelihood were quadratic, ζ would be a straight line; the
dash-dotted line is that straight-line (Wald) approximation, the tangent at the estimate.
"""),
    ("code", r"""
prof = lmf.profile(dye)
ci = prof.confint()
print(ci)
plots.profile_zeta(prof, wald=True);
"""),
    ("md", r"""
The ζ of σ₁ (`.sig01`, left) is strongly **curved**: steep towards 0, flat to the right. The
data can rule out small batch SDs much better than large ones (6 batches say little about how
large the spread could be). The profile interval [12.2, 84.1] is accordingly lopsided around
37.3, while a Wald interval, symmetric by construction, is where the straight line crosses
±1.96:
"""),
    ("code", r"""
pts = prof.points[".sig01"]
x, z = pts["value"].to_numpy(), pts["zeta"].to_numpy()
k = int(np.searchsorted(z, 0.0))
slope = (z[k] - z[k - 1]) / (x[k] - x[k - 1])
est = x[k - 1] - z[k - 1] / slope
print(f"σ1: estimate {est:.1f}, Wald {est - 1.96 / slope:.1f} to {est + 1.96 / slope:.1f},",
      f"profile {ci.loc['.sig01'].iloc[0]:.1f} to {ci.loc['.sig01'].iloc[1]:.1f}")
"""),
    ("md", r"""
The Wald interval starts too low (9.7 against 12.2) and stops far too early (64.8 against
84.1): it misses most of the plausible large values. With fewer batches or a smaller σ₁ it would
also reach below 0, impossible for an SD. That is why lme4's `confint` uses the profile by
default (and gives no Wald intervals for variance components); σ and the fixed effect (middle,
right) are much closer to straight lines.

## Two θ's at once: `(Days || Subject)`

With independent intercept and slope there are two θ's, each σ_k/σ. The contours show the
criterion's increase over the optimum at the χ²₂ quantiles of 50% ... 99%: joint confidence
regions for (θ₁, θ₂). They are not ellipses — the same curvature as above, in two dimensions.
"""),
    ("code", r"""
m2 = lmf.lmer("Reaction ~ Days + (Days || Subject)", sleep)
plots.criterion_contour(m2, 0, 1, points=31);
"""),
    ("md", r"""
## Key points

* At a fixed θ, β and u solve a penalised least-squares problem by one blocked Cholesky
  factorisation: $L$ (sparse, $q \times q$), $R_{ZX}$, $R_X$ (dense, $p \times p$).
* σ, β and u are closed-form functions of θ; the optimiser searches θ only.
* Profile ζ shows the shape of the likelihood; for variance components it is curved, so
  profile intervals (asymmetric, inside the parameter space) beat Wald intervals.

## Exercises

1. Repeat the PLS steps at θ = 0 (no random effects). What do β and $r^2$ become? Compare with
   ordinary least squares.
2. Compute the ML deviance by hand from the PLS pieces and compare with
   `lmf.lmer(..., REML=False).deviance()` at the ML θ.
3. Profile `Reaction ~ Days + (Days | Subject)` and compare the curvature of ζ for the
   correlation (`.sig02`) with that of the SDs.
"""),
]
