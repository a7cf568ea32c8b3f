"""Notebook 04: Penalised least squares and the profiled criterion"""

from __future__ import annotations

from nbcommon import SETUP

NAME = "04_pls_and_profiles.ipynb"
MIN_FIGURES = 3
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# Penalised least squares and the profiled criterion

For fixed θ, $\beta$ and the spherical random effects $u$ ($b = \Lambda u$) minimise the
penalised residual sum of squares
$$r^2(\theta) = \min_{\beta, u} \|y - X\beta - Z\Lambda u\|^2 + \|u\|^2 .$$
With $A = \Lambda^\top Z^\top$, $L = \operatorname{chol}(AA^\top + I)$,
$R_{ZX} = L^{-1}AX$, $R_X = \operatorname{chol}(X^\top X - R_{ZX}^\top R_{ZX})$, the REML
criterion is
$$d_R(\theta) = \log|L|^2 + \log|R_X|^2 + (n-p)\left(1 + \log\frac{2\pi r^2}{n-p}\right).$$
"""),
    ("code", SETUP),
    ("code", r"""
sleep = lmf.datasets.load("sleepstudy")
m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
theta = m.theta.to_numpy()
X = lmf.getME(m, "X").to_numpy(); y = lmf.getME(m, "y")
Lt = lmf.getME(m, "Lambdat").toarray(); Zt = lmf.getME(m, "Zt").toarray()
A = Lt @ Zt
L = np.linalg.cholesky(A @ A.T + np.eye(A.shape[0]))
cu = np.linalg.solve(L, A @ y)
RZX = np.linalg.solve(L, A @ X)
RX = np.linalg.cholesky(X.T @ X - RZX.T @ RZX).T
beta = np.linalg.solve(RX, np.linalg.solve(RX.T, X.T @ y - RZX.T @ cu))
u = np.linalg.solve(L.T, cu - RZX @ beta)
r2 = np.sum((y - X @ beta - A.T @ u) ** 2) + u @ u
n, p = X.shape
dR = (2 * np.log(np.diag(L)).sum() + 2 * np.log(np.diag(RX)).sum()
      + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p))))
print(beta, m.beta)
print(dR, m.REMLcrit())
"""),
    ("md", r"""
## A one-dimensional profile: Dyestuff

With one variance component, the REML criterion is a function of a single θ. Its minimum is
the estimate; the profile ζ (signed square root of the increase in deviance) gives the
likelihood interval.
"""),
    ("code", r"""
dye = lmf.lmer("Yield ~ 1 + (1 | Batch)", lmf.datasets.load("Dyestuff"))
grid = np.linspace(0.01, 3, 200)
crit = [dye.devfun(np.array([t])) for t in grid]
dye.devfun(dye.theta.to_numpy())
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(grid, crit)
ax.axvline(dye.theta.iloc[0], color="grey", ls="--")
ax.set_xlabel("θ (Batch)"); ax.set_ylabel("REML criterion")
prof = lmf.profile(dye)
print(prof.confint())
plots.profile_zeta(prof);
"""),
    ("md", r"""
## A two-dimensional view: `(Days || Subject)`

With independent intercept and slope there are two θ's; the contours show the criterion's
increase over the optimum at the χ²₂ levels of 50% ... 99% joint regions.
"""),
    ("code", r"""
m2 = lmf.lmer("Reaction ~ Days + (Days || Subject)", sleep)
plots.criterion_contour(m2, 0, 1, span=2.0, points=31);
"""),
]
