# Reference results for fit diagnostics: performance::icc / r2_nakagawa (with insight's
# get_variance), lme4's hatvalues, cooks.distance, residuals of every type, and lme4's
# influence.merMod (group and case deletion refits).
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_diagnostics.R
# Writes tests/fixtures/diagnostics.json.
suppressMessages({library(lme4); library(performance); library(insight); library(jsonlite)})
options(digits = 7, warn = 1)

na_null <- function(x) if (is.null(x) || (length(x) == 1 && is.na(x))) NULL else x
quiet <- function(expr) suppressWarnings(suppressMessages(expr))

sleep_w <- sleepstudy
# deterministic weights, rebuilt the same way by the tests: 1, 2, 0.5, 1, 2, 0.5, ...
sleep_w$w <- rep(c(1, 2, 0.5), length.out = nrow(sleepstudy))
cbpp_obs <- transform(cbpp, obs = factor(seq_len(nrow(cbpp))))

specs <- list(
  slope = list(formula = "Reaction ~ Days + (Days | Subject)", data = "sleepstudy"),
  intercept = list(formula = "Reaction ~ Days + (1 | Subject)", data = "sleepstudy"),
  ml_slope = list(formula = "Reaction ~ Days + (Days | Subject)", data = "sleepstudy",
                  REML = FALSE),
  singular = list(formula = "Yield ~ 1 + (1 | Batch)", data = "Dyestuff2"),
  double_bar = list(formula = "Reaction ~ Days + (Days || Subject)", data = "sleepstudy"),
  crossed = list(formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", data = "Penicillin"),
  nested = list(formula = "strength ~ 1 + (1 | batch/cask)", data = "Pastes"),
  weighted = list(formula = "Reaction ~ Days + (Days | Subject)", data = "sleep_w",
                  weights = "w"),
  slope_not_fixed = list(formula = "Reaction ~ 1 + (Days | Subject)", data = "sleepstudy"),
  dyestuff = list(formula = "Yield ~ 1 + (1 | Batch)", data = "Dyestuff")
)

fit <- function(s) {
  dat <- get(s$data)
  reml <- if (is.null(s$REML)) TRUE else s$REML
  if (is.null(s$weights)) {
    eval(bquote(lmer(.(as.formula(s$formula)), data = .(as.name(s$data)), REML = .(reml))))
  } else {
    eval(bquote(lmer(.(as.formula(s$formula)), data = .(as.name(s$data)), REML = .(reml),
                     weights = .(as.name(s$weights)))))
  }
}

models <- list()
out_models <- list()
for (nm in names(specs)) {
  s <- specs[[nm]]
  m <- quiet(fit(s))
  models[[nm]] <- m
  ic <- quiet(icc(m))
  ic_g <- quiet(icc(m, by_group = TRUE))
  ic0 <- quiet(icc(m, tolerance = 0))  # the singularity check switched off
  r2 <- quiet(r2_nakagawa(m))
  r20 <- quiet(r2_nakagawa(m, tolerance = 0))
  gv <- quiet(get_variance(m))
  gv0 <- quiet(get_variance(m, tolerance = 0))
  res <- list()
  for (type in c("response", "working", "pearson", "deviance")) {
    res[[type]] <- unname(residuals(m, type = type))
    res[[paste0(type, "_scaled")]] <- unname(residuals(m, type = type, scaled = TRUE))
  }
  out_models[[nm]] <- list(
    formula = s$formula, data = s$data, REML = isREML(m), weights = s$weights,
    theta = unname(getME(m, "theta")), beta = unname(fixef(m)), sigma = sigma(m),
    nobs = nobs(m),
    icc = if (is.data.frame(ic)) list(ICC_adjusted = ic$ICC_adjusted,
                                      ICC_unadjusted = ic$ICC_unadjusted) else NULL,
    icc_by_group = if (is.data.frame(ic_g)) list(Group = ic_g$Group, ICC = ic_g$ICC) else NULL,
    icc_tolerance0 = if (is.data.frame(ic0)) list(ICC_adjusted = ic0$ICC_adjusted,
                                                  ICC_unadjusted = ic0$ICC_unadjusted) else NULL,
    r2 = list(R2_marginal = unname(r2$R2_marginal), R2_conditional = na_null(unname(r2$R2_conditional))),
    r2_tolerance0 = list(R2_marginal = unname(r20$R2_marginal),
                         R2_conditional = na_null(unname(r20$R2_conditional))),
    get_variance = list(var.fixed = gv$var.fixed, var.random = na_null(gv$var.random),
                        var.residual = gv$var.residual,
                        var.intercept = as.list(gv$var.intercept)),
    get_variance_tolerance0 = list(var.fixed = gv0$var.fixed, var.random = gv0$var.random,
                                   var.residual = gv0$var.residual),
    isSingular = isSingular(m),
    hatvalues = unname(hatvalues(m)),
    cooks_distance = unname(cooks.distance(m)),
    residuals = res
  )
}

infl <- function(m, groups) {
  inf <- if (is.null(groups)) quiet(influence(m)) else quiet(influence(m, groups = groups))
  fe1 <- inf[[2]]; vc1 <- inf[[4]]
  list(
    groups = if (is.null(groups)) NULL else groups,
    deleted = as.character(inf$deleted),
    fixed_effects = as.list(inf$fixed.effects),
    fixed_effects_deleted = lapply(seq_len(ncol(fe1)), function(j) unname(fe1[, j])),
    fixed_names = colnames(fe1),
    var_cov_comps = as.list(inf$var.cov.comps),
    var_cov_comps_deleted = lapply(seq_len(ncol(vc1)), function(j) unname(vc1[, j])),
    var_cov_names = colnames(vc1),
    vcov_deleted = lapply(inf[[6]], function(v) unname(as.matrix(v))),
    converged = unname(inf$converged),
    feval = unname(inf$function.evals),
    dfbeta = unname(as.matrix(dfbeta(inf))),
    # lme4 1.1-31's dfbetas fails for one fixed effect (a vapply shape); recorded as null
    dfbetas = tryCatch(unname(as.matrix(dfbetas(inf))), error = function(e) NULL),
    cooks_distance = tryCatch(unname(cooks.distance(inf)), error = function(e) NULL)
  )
}
influence_out <- list(
  slope_Subject = infl(models$slope, "Subject"),
  intercept_Subject = infl(models$intercept, "Subject"),
  crossed_plate = infl(models$crossed, "plate"),
  dyestuff_case = infl(models$dyestuff, NULL)
)

# GLMMs: the observation-level variance per family and link (binomial logit: pi^2/3)
glmm_out <- list()
gspecs <- list(
  cbpp_logit = list(formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                    data = "cbpp", family = "binomial", link = "logit"),
  cbpp_probit = list(formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     data = "cbpp", family = "binomial", link = "probit"),
  # Poisson log: the distribution variance needs insight's null model (log1p(1/mu))
  ticks_poisson = list(formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
                       data = "grouseticks", family = "poisson", link = "log"),
  # an observation-level random effect is insight's "dispersion" variance (cbpp_obs: cbpp
  # with obs = 1, 2, ..., 56 as a factor, rebuilt the same way by the tests)
  cbpp_olre = list(
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs)",
    data = "cbpp_obs", family = "binomial", link = "logit")
)
for (nm in names(gspecs)) {
  s <- gspecs[[nm]]
  fam <- get(s$family)(link = s$link)
  m <- quiet(glmer(as.formula(s$formula), data = get(s$data), family = fam))
  gv <- quiet(get_variance(m))
  ic <- quiet(icc(m)); r2 <- quiet(r2_nakagawa(m))
  glmm_out[[nm]] <- c(s, list(
    theta = unname(getME(m, "theta")), beta = unname(fixef(m)),
    get_variance = list(var.fixed = gv$var.fixed, var.random = gv$var.random,
                        var.residual = gv$var.residual, var.distribution = gv$var.distribution,
                        var.dispersion = gv$var.dispersion),
    icc = list(ICC_adjusted = ic$ICC_adjusted, ICC_unadjusted = ic$ICC_unadjusted),
    r2 = list(R2_marginal = unname(r2$R2_marginal), R2_conditional = unname(r2$R2_conditional)),
    hatvalues = unname(quiet(hatvalues(m))), cooks_distance = unname(quiet(cooks.distance(m)))))
}

out <- list(
  versions = list(R = paste(R.version$major, R.version$minor, sep = "."),
                  lme4 = as.character(packageVersion("lme4")),
                  performance = as.character(packageVersion("performance")),
                  insight = as.character(packageVersion("insight"))),
  models = out_models,
  glmm = glmm_out,
  influence = influence_out
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null",
                  pretty = FALSE),
           "tests/fixtures/diagnostics.json")
cat("wrote tests/fixtures/diagnostics.json\n")
