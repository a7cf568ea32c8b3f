# How much lme4's own Nelder-Mead (glmer's second stage, refit's optimisation) depends on the
# last digits of its start: the measurements behind test_sweep_glmer's EARLY_STOP and
# test_glmer_refit_lme4's evaluation bands. Writes no fixture; prints the summaries. Run
# from the repository root:
#   LC_ALL=C Rscript tools/R/nm_start_sensitivity.R
# Each run starts lme4's optimizeGlmer (stage 2) from the first stage's optimum moved by
# N(0, sd) in every coordinate not on its bound (sd 1e-7: the first stage's precision, which
# different BLAS kernels move the start by), or refit() from the fit's (theta, beta) moved by
# N(0, 1e-5) (the second stage's precision).
suppressMessages(library(lme4))
options(digits = 4, width = 100)

stage2_from_perturbed_start <- function(make_devfun, sd, seed) {
  dfun <- make_devfun()
  rho <- environment(dfun)
  st <- lme4:::getStart(NULL, rho$pp, "all")
  set.seed(seed)
  st2 <- ifelse(st == 0, 0, st + rnorm(length(st)) * sd)  # (a bound stays on its bound)
  nth <- length(rho$pp$theta)
  opt <- lme4:::optimizeGlmer(dfun, optimizer = "Nelder_Mead", stage = 2, nAGQ = 1L,
                              boundary.tol = 1e-5,
                              start = list(theta = st2[seq_len(nth)],
                                           fixef = st2[-seq_len(nth)]))
  list(par = opt$par, feval = opt$feval, dev = dfun(opt$par), nth = nth)
}

## bin_factor_slope: the fixture's own data (tests/fixtures/sweep/bin_factor_slope.json, written
## by tools/R/make_fixtures_sweep.R), read back as R made it
fixture_data <- function(path) {
  cols <- jsonlite::fromJSON(path, simplifyVector = FALSE)$columns
  out <- lapply(cols, function(col) {
    v <- unlist(col$values)
    if (col$type == "factor") factor(v, levels = unlist(col$levels)) else v
  })
  names(out) <- vapply(cols, function(col) col$name, "")
  as.data.frame(out)
}
d_bin <- fixture_data("tests/fixtures/sweep/bin_factor_slope.json")
mk_bin <- function() glmer(y ~ x + (0 + f3 | g), d_bin, binomial, devFunOnly = TRUE)
fit_bin <- glmer(y ~ x + (0 + f3 | g), d_bin, binomial)
dev_min <- -2 * as.numeric(logLik(fit_bin))  # (its stop, 442 evaluations)
runs <- lapply(1:40, function(s) stage2_from_perturbed_start(mk_bin, 1e-7, s))
tab <- t(sapply(runs, function(r) c(feval = r$feval, theta_mid = r$par[4], theta_hi = r$par[6],
                                    singular = min(r$par[c(1, 4, 6)]) < 1e-4,
                                    dev_above_fit = r$dev - dev_min)))
cat("bin_factor_slope: the fit's stop", dev_min, "after", fit_bin@optinfo$feval,
    "evaluations; 40 stage-2 runs from starts moved by 1e-7:\n")
print(tab)
cat("singular:", sum(tab[, "singular"]), "of 40; stopped more than 1e-7 above the fit's",
    "deviance:", sum(tab[, "dev_above_fit"] > 1e-7), "\n\n")

## grouse_offset (tools/R/make_fixtures_glmer_refit.R)
gt <- grouseticks
gt$cHEIGHT <- gt$HEIGHT - mean(gt$HEIGHT)
gt$lh <- log(gt$HEIGHT) / 10
form <- TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)
fp <- glmer(form, gt, poisson, offset = lh)
nr <- simulate(fp, seed = 4)[[1]]
r0 <- refit(fp, nr)
mk_gr <- function() glmer(form, gt, poisson, offset = lh, devFunOnly = TRUE)
fits <- t(sapply(1:40, function(s) {
  r <- stage2_from_perturbed_start(mk_gr, 1e-7, s)
  c(feval = r$feval, theta = max(abs(r$par[1:2] - getME(fp, "theta"))),
    beta = max(abs(r$par[3:6] - fixef(fp))))
}))
cat("grouse_offset: the fit,", fp@optinfo$feval, "evaluations; 40 stage-2 runs from starts",
    "moved by 1e-7: evaluations", range(fits[, "feval"]), "; max |theta - fit's|",
    max(fits[, "theta"]), "; max |beta - fit's|", max(fits[, "beta"]), "\n")
refits <- t(sapply(1:40, function(s) {
  f2 <- fp; f2@pp <- fp@pp$copy()
  set.seed(100 + s)
  f2@pp$setTheta(getME(fp, "theta") + rnorm(2) * 1e-5)
  f2@beta <- fixef(fp) + rnorm(4) * 1e-5
  r <- suppressWarnings(refit(f2, nr))
  c(feval = r@optinfo$feval, theta = max(abs(getME(r, "theta") - getME(r0, "theta"))),
    beta = max(abs(fixef(r) - fixef(r0))), logLik = as.numeric(logLik(r) - logLik(r0)))
}))
cat("grouse_offset: the refit,", r0@optinfo$feval, "evaluations; 40 refits from the fit",
    "moved by 1e-5: evaluations", range(refits[, "feval"]), "; max |theta - refit's|",
    max(refits[, "theta"]), "; max |beta - refit's|", max(refits[, "beta"]),
    "; logLik - refit's", range(refits[, "logLik"]), "\n")
