# Reference results for refit() of a glmerMod (lme4 1.1-31's refit.merMod).
# Run from the repository root:
#   LC_ALL=C Rscript tools/R/make_fixtures_glmer_refit.R
# Writes tests/fixtures/glmer_refit.json. lme4's refit of a GLMM runs only the last
# optimisation (Nelder-Mead over (theta, beta), or bobyqa over theta for nAGQ = 0) from the
# fitted (theta, beta), with glmerControl()'s default optCtrl (Nelder-Mead's initial steps 0.02,
# not glmer's second-stage steps), after one PIRLS on the new response at the fitted point.
# Each case stores the fit and its refit (theta, beta, logLik, optinfo$feval, derivs) and the
# new response used; cbpp_shift also a direct glmer fit of its response.
suppressMessages({library(lme4); library(jsonlite)})
options(digits = 7, warn = 1)
num <- function(x) unname(as.numeric(x))

res <- function(f) {
  d <- f@optinfo$derivs
  list(theta = num(getME(f, "theta")), beta = num(fixef(f)), logLik = num(logLik(f)),
       feval = f@optinfo$feval, optimizer = f@optinfo$optimizer,
       gradient = if (is.null(d)) NULL else num(d$gradient),
       Hessian = if (is.null(d)) NULL else unname(d$Hessian))
}
pack <- function(fit, r, newresp) {
  # a factor response (VerbAgg's r2) is stored as 0/1, as refit takes it
  nr <- if (is.matrix(newresp)) unname(newresp) else if (is.factor(newresp))
    num(newresp) - 1 else num(newresp)
  list(fit = res(fit), refit = res(r), newresp = nr)
}
simresp <- function(fit, seed) {
  simulate(fit, seed = seed)[[1]]  # (a factor stays a factor: refit takes it)
}

out <- list()
cbpp_fit <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial)
yobs <- model.response(model.frame(cbpp_fit))  # (a cbind() of the columns is refused by refit)
nr <- yobs
r <- refit(cbpp_fit, nr)
out$cbpp_same <- pack(cbpp_fit, r, nr)
nr <- simresp(cbpp_fit, 1)
r <- refit(cbpp_fit, nr)
out$cbpp_new <- pack(cbpp_fit, r, nr)
# test_glmer_api's shifted response (one case fewer in every herd-period, floored at 0):
# lme4's refit and a direct glmer of it stop at different points of a flat likelihood
inc <- pmax(cbpp$incidence - 1, 0)
nr <- cbind(incidence = inc, cbpp$size - inc)
r <- refit(cbpp_fit, nr)
out$cbpp_shift <- pack(cbpp_fit, r, nr)
cb2 <- cbpp; cb2$incidence <- inc
out$cbpp_shift$direct <- res(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                                   cb2, binomial))
f0 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, nAGQ = 0)
nr <- simresp(f0, 2)
r <- refit(f0, nr)
out$cbpp_nagq0 <- pack(f0, r, nr)
f5 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, nAGQ = 5)
nr <- simresp(f5, 3)
r <- refit(f5, nr)
out$cbpp_nagq5 <- pack(f5, r, nr)
nr <- yobs
r <- refit(f5, nr)
out$cbpp_nagq5_same <- pack(f5, r, nr)
# Poisson with an offset (grouseticks' counts, log(HEIGHT) as offset; scaled year)
gt <- grouseticks
gt$cHEIGHT <- gt$HEIGHT - mean(gt$HEIGHT)
gt$lh <- log(gt$HEIGHT) / 10
fp <- glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), gt, poisson, offset = lh)
nr <- simresp(fp, 4)
r <- refit(fp, nr)
out$grouse_offset <- pack(fp, r, nr)
out$grouse_offset$data <- list(cHEIGHT = num(gt$cHEIGHT), lh = num(gt$lh))
fv <- glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), VerbAgg, binomial)
nr <- simresp(fv, 5)
r <- refit(fv, nr)
out$verbagg_new <- pack(fv, r, nr)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", matrix = "rowmajor"),
           "tests/fixtures/glmer_refit.json")
