"""Cells of notebook 07_glmer: a GLMM from the data to the fit (picked up by build.py)."""

NAME = "07_glmer.ipynb"
MIN_FIGURES = 1

CELLS: list[tuple[str, str]] = [
    ("md", """# 07 — Generalized linear mixed models: cbpp with `glmer`

Contagious bovine pleuropneumonia: for 15 herds, in four periods, the number of new cases
(`incidence`) among the animals at risk (`size`). The model is lme4's classic

    cbind(incidence, size - incidence) ~ period + (1 | herd),  family = binomial

a logistic regression for the proportion of new cases with a random intercept per herd."""),
    ("code", """import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import lmeformula as lmf

cbpp = lmf.datasets.load("cbpp")
cbpp.head()"""),
    ("md", """## The structures: `glFormula`

`glFormula` is `lFormula` with a family: the response is the two-column matrix of successes
and failures; X, Zt and Λ are built exactly as for a linear mixed model."""),
    ("code", """pf = lmf.glFormula("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                   family="binomial")
print(pf.y[:4])
print(pf.X.head(3))
print(pf.reTrms.Zt.shape, pf.reTrms.theta)"""),
    ("md", """## What PIRLS does at one θ

At a fixed θ the conditional modes u and β are found by penalised iteratively re-weighted
least squares: the working weights `w = μ'(η)² n / V(μ)` and the working response
`z = η + (y - μ)/μ'(η)` define a weighted penalised least-squares problem; its solution gives a
new η, and so on until the penalised deviance `Σ dᵢ + ‖u‖²` stops changing. Here the
iterations are written out with the family's functions and compared with the package's deviance
function (the θ-only one, `nAGQ=0`)."""),
    ("code", """fam = lmf.binomial()
theta = np.array([0.6])
y, w_prior, ntot, mustart = fam.initialize(pf.y, np.ones(len(cbpp)))
X = pf.X_values
Z = pf.reTrms.Zt.T.toarray()
lam = theta[0] * np.eye(Z.shape[1])           # Λ for one scalar term
eta = fam.linkfun(mustart)
pdev_old = np.inf
for it in range(20):
    mu = fam.linkinv(eta)
    mueta = fam.mu_eta(eta)
    w = mueta**2 * w_prior / fam.variance(mu)
    z = eta + (y - mu) / mueta
    # the penalised weighted least-squares system in (u, β)
    A = np.hstack([Z @ lam, X])
    M = A.T @ (A * w[:, None])
    M[: Z.shape[1], : Z.shape[1]] += np.eye(Z.shape[1])
    sol = np.linalg.solve(M, A.T @ (w * z))
    u, beta = sol[: Z.shape[1]], sol[Z.shape[1]:]
    eta = A @ sol
    mu = fam.linkinv(eta)
    pdev = fam.dev_resids(y, mu, w_prior).sum() + u @ u
    print(f"iteration {it + 1}: penalised deviance {pdev:.10f}")
    if abs(pdev_old - pdev) < 1e-7 * pdev:
        break
    pdev_old = pdev
# the Laplace deviance: log|L|² + ‖u‖² + the family's -2 log-likelihood, with the weights
# of the last step
ZL = Z @ lam
L2 = ZL.T @ (ZL * w[:, None]) + np.eye(Z.shape[1])
laplace = np.linalg.slogdet(L2)[1] + u @ u + fam.aic(y, ntot, mu, w_prior, 0.0)
devfun = lmf.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                   family="binomial", nAGQ=0, devFunOnly=True)
print("by hand:", laplace, " glmer's deviance function:", devfun(theta))"""),
    ("md", """The two numbers agree to the tolerance of the iteration (the package starts PIRLS from
the fit at the initial θ, not from the family's starting values)."""),
    ("md", """## The fit

glmer optimises in two stages, as lme4 does: first θ alone with β inside PIRLS (BOBYQA),
then θ and β together with lme4's own Nelder-Mead, the Laplace approximation for the
likelihood."""),
    ("code", """m = lmf.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
              family="binomial", data_name="cbpp")
print(m.summary())"""),
    ("md", """## Laplace against adaptive Gauss-Hermite quadrature

With a single scalar random-effects term lme4 can integrate over each herd's random effect
with k quadrature points (`nAGQ = k`). The estimates barely move; the log-likelihood does,
because lme4 leaves the saturated model's constant out of the quadrature deviance. AIC and
BIC are therefore not comparable across nAGQ."""),
    ("code", """rows = []
for k in (1, 3, 5, 9):
    mk = lmf.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                   family="binomial", nAGQ=k)
    rows.append({"nAGQ": k, "logLik": mk.logLik().value, "theta": mk.theta.iloc[0],
                 **mk.fixef.to_dict()})
pd.DataFrame(rows).set_index("nAGQ").round(5)"""),
    ("md", """## Predictions on both scales

`type="link"` gives η = Xβ + Zb (log-odds), `type="response"` the probability μ; `re_form="~0"`
leaves the herds' effects out (population level)."""),
    ("code", """pred = pd.DataFrame({
    "herd": cbpp["herd"], "period": cbpp["period"],
    "observed": cbpp["incidence"] / cbpp["size"],
    "link": m.predict(),
    "response": m.predict(type="response"),
    "population": m.predict(re_form="~0", type="response"),
})
pred.head(8)"""),
    ("code", """fig, ax = plt.subplots(figsize=(7, 4))
for herd, d in pred.groupby("herd", observed=True):
    ax.plot(d["period"].astype(int), d["response"], color="grey", alpha=0.5, lw=1)
pop = pred.drop_duplicates("period")
ax.plot(pop["period"].astype(int), pop["population"], color="k", lw=3, label="population")
ax.scatter(pred["period"].astype(int), pred["observed"], s=12, color="C1", label="observed")
ax.set_xlabel("period"); ax.set_ylabel("probability of a new case"); ax.legend()
plt.show()"""),
]
