"""Notebook 02: From θ to Λ: Lind, theta, lower and the covariance of the random effects"""

from __future__ import annotations

from nbcommon import SETUP

NAME = "02_theta_to_lambda.ipynb"
MIN_FIGURES = 0
CELLS: list[tuple[str, str]] = [
    ("md", r"""
# From θ to Λ: Lind, theta, lower and the covariance of the random effects

lme4 parameterises the covariance of the random effects by a *relative covariance factor*
Λ(θ): $\operatorname{Var}(b) = \sigma^2 \Lambda\Lambda^\top$. For a term with $n_c$
columns, θ holds the lower triangle of one $n_c \times n_c$ block $\lambda$, column by column,
and Λ repeats $\lambda$ once per level.
"""),
    ("code", SETUP),
    ("code", r"""
sleep = lmf.datasets.load("sleepstudy")
pf = lmf.lFormula("Reaction ~ Days + (Days | Subject)", sleep)
re = pf.reTrms
print("theta:", re.theta, " lower:", re.lower)
print("Lind (0-based):", re.Lind[:9], "...")
print(lmf.format_sparse(re.Lambdat[:6, :6]))
"""),
    ("md", r"""
`Lind` maps every stored value of `Lambdat` (in compressed-column order) to a position of θ,
so that `Lambdat.data = theta[Lind]` rebuilds Λ' for any θ. Diagonal elements are bounded
below by 0 (`lower`), off-diagonal ones are free.
"""),
    ("code", r"""
m = lmf.lmer("Reaction ~ Days + (Days | Subject)", sleep)
theta = m.theta.to_numpy()
Lt = re.Lambdat.copy()
Lt.data = theta[re.Lind]
lam = Lt.T.toarray()[:2, :2]          # one subject's block of Λ
print(np.round(lam, 6))
cov = m.sigma**2 * lam @ lam.T
print(np.round(cov, 4))
print(m.VarCorr)
print(np.allclose(cov, m.VarCorr["Subject"].cov))
"""),
    ("md", r"""
`VarCorr` reports the standard deviations and correlation of that covariance matrix:
"""),
    ("code", r"""
print(lmf.VarCorr(m).as_data_frame())
"""),
]
