# Reference results for GLMM profiles, profile intervals and predict(se.fit=) (issues 13, 17).
# Run from the repository root:
#   LC_ALL=C Rscript tools/R/make_fixtures_glmer_confint.R
# Writes tests/fixtures/glmer_confint.json. lme4 1.1-31's profile.merMod profiles a glmerMod
# over (sd/cor, beta) with the second-stage deviance; every profile point is kept so that the
# tests can evaluate zeta at lme4's own parameter values.
#
# predict(se.fit = TRUE) arrived in lme4 1.1-35, after the lme4 installed here (1.1-31), so its
# algebra is written out below from lme4's source (R/predict.R and vcov_full in R/lmer.R):
#   Cmat = crossprod(Minv),  Minv = sigma * [ L^-1 P Lambdat , 0 ; -RX^-T RZX^T L^-1 P Lambdat , RX^-T ]
#   se.fit = sqrt(diag([Z X] Cmat [Z X]^T))  (Z = 0 for re.form = NA)
#   type = "response": se.fit * |mu.eta(eta)|  (lme4 >= 1.1-38, GH #847; 1.1-35 to 1.1-37
#   returned the link-scale value for both types)
# lme4's vcov_full omits CHOLMOD's fill-reducing permutation P; it is applied here (for these
# single-term models P is the identity, checked below, so both agree).
suppressMessages({library(lme4); library(jsonlite)})
options(digits = 7, warn = 1)

num <- function(x) unname(as.numeric(x))

profile_json <- function(pr) {
  # one entry per parameter: its own column (value) and .zeta, in lme4's row order
  out <- list()
  for (p in levels(pr$.par)) {
    rows <- pr[pr$.par == p, ]
    out[[p]] <- list(value = num(rows[[p]]), zeta = num(rows$.zeta))
  }
  out
}

ci_json <- function(ci) list(values = unname(as.matrix(ci)), rownames = rownames(ci),
                             colnames = colnames(ci))

se_fit_by_hand <- function(m, X, Z) {
  L <- getME(m, "L"); RX <- getME(m, "RX"); RZX <- getME(m, "RZX")
  Lambdat <- getME(m, "Lambdat"); s <- sigma(m)
  RXtinv <- solve(t(RX))
  LinvLambdat <- solve(L, solve(L, Lambdat, system = "P"), system = "L")
  Minv <- s * rbind(cbind(LinvLambdat, Matrix(0, nrow = nrow(L), ncol = ncol(RX))),
                    cbind(-RXtinv %*% t(RZX) %*% LinvLambdat, RXtinv))
  Cmat <- as.matrix(crossprod(Minv))
  ZX <- as.matrix(cbind(Z, X))
  sqrt(rowSums((ZX %*% Cmat) * ZX))
}

se_fit_json <- function(m, newdata = NULL) {
  fam <- family(m)
  if (is.null(newdata)) {
    X <- getME(m, "X"); Z <- getME(m, "Z")
    eta_full <- num(predict(m)); eta_pop <- num(predict(m, re.form = NA))
  } else {
    X <- model.matrix(delete.response(terms(lme4:::nobars(formula(m)))), newdata)
    # one scalar term (1 | g): Z is the indicator matrix of g's levels (the fit's levels)
    g <- names(getME(m, "flist"))
    Z <- t(fac2sparse(factor(newdata[[g]], levels = levels(getME(m, "flist")[[g]])),
                      drop.unused.levels = FALSE))
    eta_full <- num(predict(m, newdata = newdata)); eta_pop <- num(predict(m, newdata, re.form = NA))
  }
  Z0 <- Matrix(0, nrow = nrow(X), ncol = ncol(Z))
  se_full <- num(se_fit_by_hand(m, X, Z)); se_pop <- num(se_fit_by_hand(m, X, Z0))
  list(link = list(fit = eta_full, se_fit = se_full),
       response = list(fit = fam$linkinv(eta_full), se_fit = se_full * abs(fam$mu.eta(eta_full))),
       link_population = list(fit = eta_pop, se_fit = se_pop),
       response_population = list(fit = fam$linkinv(eta_pop),
                                  se_fit = se_pop * abs(fam$mu.eta(eta_pop))),
       perm_identity = identical(as.integer(getME(m, "L")@perm), seq_along(getME(m, "L")@perm) - 1L))
}

out <- list()

# cbpp: binomial (cbind), one scalar term; lme4's default optimizer (Nelder-Mead in stage 2)
cb <- cbpp
gm <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, family = binomial)
# the standard errors first: lme4's profile evaluates the fit's own deviance function, whose
# state (L, RX, RZX) is the fitted model's, so getME() after profile() sees the last profile point
se_cbpp <- se_fit_json(gm)
se_cbpp_new <- se_fit_json(gm, data.frame(period = factor(c("1", "3", "4"), levels = levels(cb$period)),
                                          herd = factor(c("2", "5", "15"), levels = levels(cb$herd))))
pr <- profile(gm)
out$cbpp <- list(
  formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
  basedev = -2 * as.numeric(logLik(gm)),
  profile = profile_json(pr),
  confint = ci_json(confint(pr)),
  confint_90 = ci_json(confint(pr, level = 0.9)),
  newnames = rownames(confint(gm, method = "Wald", oldNames = FALSE)),
  se_fit = se_cbpp,
  se_fit_newdata = se_cbpp_new
)

# the same model with adaptive quadrature: its own deviance scale, one parameter profiled
gm5 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, family = binomial,
             nAGQ = 5)
pr5 <- profile(gm5, which = 1)
out$cbpp_nagq5 <- list(profile = profile_json(pr5), confint = ci_json(confint(pr5)))

# grouseticks: Poisson with one scalar term, 403 rows, 118 broods
gt <- glmer(TICKS ~ YEAR + (1 | BROOD), grouseticks, family = poisson)
se_gt <- se_fit_json(gt)
prg <- profile(gt)
out$grouseticks <- list(
  formula = "TICKS ~ YEAR + (1 | BROOD)",
  basedev = -2 * as.numeric(logLik(gt)),
  profile = profile_json(prg),
  confint = ci_json(confint(prg)),
  se_fit = se_gt
)

# refusals and the boot table's row names (the bootstrap's numbers depend on R's RNG)
gm0 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, family = binomial,
             nAGQ = 0)
set.seed(1)
gam <- as.data.frame(fromJSON("tests/fixtures/glmer/gamma_log.json")$data)
gam$g <- factor(gam$g, levels = sort(unique(as.integer(gam$g))))  # make_fixtures_glmer.R's order
gg <- glmer(y ~ x + (1 | g), gam, family = Gamma(link = "log"))
stopifnot(isTRUE(all.equal(num(getME(gg, "theta")),
                           fromJSON("tests/fixtures/glmer/gamma_log.json")$theta, tolerance = 1e-10)))
out$gamma_se_fit <- se_fit_json(gg)
out$refusals <- list(
  nagq0 = tryCatch({profile(gm0, which = 1); "no error"}, error = function(e) conditionMessage(e)),
  gamma = tryCatch({profile(gg); "no error"}, error = function(e) conditionMessage(e))
)
out$boot_rownames <- list(
  cbpp = rownames(suppressWarnings(confint(gm, method = "boot", nsim = 3, quiet = TRUE))),
  gamma = rownames(suppressWarnings(confint(gg, method = "boot", nsim = 3, quiet = TRUE)))
)

writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null"),
           "tests/fixtures/glmer_confint.json")
