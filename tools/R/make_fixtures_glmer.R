# Reference results for glmer (issue 13). Run from the repository root:
#   LC_ALL=C Rscript tools/R/make_fixtures_glmer.R
# Writes tests/fixtures/glmer/<name>.json: data (for the simulated sets), the call, the fit's
# numbers, accessors and printed output; refusals' messages in refusals.json.
suppressMessages({library(lme4); library(jsonlite)})
options(digits = 7, warn = 1)
dir.create("tests/fixtures/glmer", showWarnings = FALSE)

catch <- function(expr) tryCatch(expr, error = function(e) list(error = conditionMessage(e)))
num <- function(x) unname(as.numeric(x))
mat <- function(x) { x <- as.matrix(x); list(values = unname(x), rownames = rownames(x),
                                            colnames = colnames(x)) }

fit_json <- function(name, m, data = NULL, args = list()) {
  re <- ranef(m, condVar = TRUE)
  ranef_out <- lapply(re, function(d) list(values = unname(as.matrix(d)), rownames = rownames(d),
                                           colnames = colnames(d),
                                           postVar = as.vector(attr(d, "postVar"))))
  vc <- as.data.frame(VarCorr(m))
  warnings_seen <- m@optinfo$conv$lme4$messages
  out <- list(
    name = name, args = args,
    data = if (is.null(data)) NULL else as.list(data),
    theta = num(getME(m, "theta")), beta = num(fixef(m)), fixef_names = names(fixef(m)),
    fval = m@optinfo$val, feval = m@optinfo$feval,
    logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"),
    AIC = AIC(m), BIC = BIC(m), deviance = deviance(m), sigma = sigma(m),
    df_residual = df.residual(m), nobs = nobs(m),
    vcov = unname(as.matrix(vcov(m))),
    vcov_rx = unname(as.matrix(vcov(m, use.hessian = FALSE))),
    ranef = ranef_out,
    varcorr = list(grp = vc$grp, var1 = vc$var1, var2 = vc$var2, vcov = vc$vcov, sdcor = vc$sdcor),
    fitted = num(fitted(m)),
    resid_deviance = num(residuals(m, type = "deviance")),
    resid_pearson = num(residuals(m, type = "pearson")),
    resid_response = num(residuals(m, type = "response")),
    resid_working = num(residuals(m, type = "working")),
    predict_link = num(predict(m)),
    predict_response = num(predict(m, type = "response")),
    predict_population = num(predict(m, re.form = NA)),
    u = num(getME(m, "u")), b = num(getME(m, "b")), mu = num(getME(m, "mu")),
    weights = num(weights(m)),
    isSingular = isSingular(m),
    devcomp = as.list(m@devcomp$cmp),
    conv_messages = if (is.null(warnings_seen)) list() else as.list(warnings_seen),
    print = paste(capture.output(print(m)), collapse = "\n"),
    summary = paste(capture.output(print(summary(m))), collapse = "\n"),
    confint_wald = mat(confint(m, method = "Wald"))
  )
  writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null"),
             file.path("tests/fixtures/glmer", paste0(name, ".json")))
  invisible(m)
}

cb <- cbpp
f_cbpp <- cbind(incidence, size - incidence) ~ period + (1 | herd)
m_cbpp <- fit_json("cbpp", glmer(f_cbpp, cb, binomial), args = list(formula = deparse(f_cbpp),
                   family = "binomial", link = "logit", nAGQ = 1))
fit_json("cbpp_probit", glmer(f_cbpp, cb, binomial(link = "probit")),
         args = list(formula = deparse(f_cbpp), family = "binomial", link = "probit", nAGQ = 1))
m_cbpp0 <- fit_json("cbpp_nagq0", glmer(f_cbpp, cb, binomial, nAGQ = 0),
         args = list(formula = deparse(f_cbpp), family = "binomial", link = "logit", nAGQ = 0))
fit_json("cbpp_nagq5", glmer(f_cbpp, cb, binomial, nAGQ = 5),
         args = list(formula = deparse(f_cbpp), family = "binomial", link = "logit", nAGQ = 5))
cb$prop <- cb$incidence / cb$size
fit_json("cbpp_prop", glmer(prop ~ period + (1 | herd), cb, binomial, weights = size),
         args = list(formula = "prop ~ period + (1 | herd)", family = "binomial", link = "logit",
                     nAGQ = 1, weights = "size"))

f_gt <- TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)
fit_json("grouseticks", glmer(f_gt, grouseticks, poisson),
         args = list(formula = deparse(f_gt), family = "poisson", link = "log", nAGQ = 1))

f_va <- r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)
fit_json("verbagg", glmer(f_va, VerbAgg, binomial),
         args = list(formula = deparse(f_va), family = "binomial", link = "logit", nAGQ = 1))

set.seed(101)
ng <- 25; nper <- 8
g <- factor(rep(seq_len(ng), each = nper))
x <- round(rnorm(ng * nper), 3)
exposure <- round(runif(ng * nper, 0.5, 5), 3)
bg <- rnorm(ng, sd = 0.5)
cnt <- rpois(ng * nper, exposure * exp(0.3 + 0.4 * x + bg[g]))
d_off <- data.frame(cnt = cnt, x = x, exposure = exposure, g = g)
fit_json("poisson_offset", glmer(cnt ~ x + offset(log(exposure)) + (1 | g), d_off, poisson),
         data = d_off, args = list(formula = "cnt ~ x + offset(log(exposure)) + (1 | g)",
                                   family = "poisson", link = "log", nAGQ = 1))

set.seed(102)
shape <- 4
yg <- rgamma(ng * nper, shape = shape, rate = shape / exp(1 + 0.5 * x + bg[g]))
d_gam <- data.frame(y = round(yg, 4), x = x, g = g)
fit_json("gamma_log", glmer(y ~ x + (1 | g), d_gam, Gamma(link = "log")), data = d_gam,
         args = list(formula = "y ~ x + (1 | g)", family = "Gamma", link = "log", nAGQ = 1))

set.seed(103)
ng2 <- 30; nper2 <- 12
g2 <- factor(rep(seq_len(ng2), each = nper2))
x2 <- round(runif(ng2 * nper2, -1, 1), 3)
b0 <- rnorm(ng2, sd = 0.8); b1 <- rnorm(ng2, sd = 0.6)
yb <- rbinom(ng2 * nper2, 1, plogis(-0.2 + 0.9 * x2 + b0[g2] + b1[g2] * x2))
d_slope <- data.frame(y = yb, x = x2, g = g2)
fit_json("binomial_slope", glmer(y ~ x + (x | g), d_slope, binomial), data = d_slope,
         args = list(formula = "y ~ x + (x | g)", family = "binomial", link = "logit", nAGQ = 1))

set.seed(104)
ys <- rbinom(ng * nper, 1, plogis(0.2 + 0.5 * x))
d_sing <- data.frame(y = ys, x = x, g = g)
fit_json("binomial_singular", glmer(y ~ x + (1 | g), d_sing, binomial), data = d_sing,
         args = list(formula = "y ~ x + (1 | g)", family = "binomial", link = "logit", nAGQ = 1))

set.seed(105)
na <- 20; nb <- 15
A <- factor(rep(seq_len(na), times = nb)); B <- factor(rep(seq_len(nb), each = na))
xa <- round(rnorm(na * nb), 3)
ya <- rbinom(na * nb, 1, plogis(-0.3 + 0.6 * xa + rnorm(na, sd = 0.7)[A] + rnorm(nb, sd = 0.9)[B]))
d_cross <- data.frame(y = ya == 1, x = xa, A = A, B = B)
fit_json("binomial_crossed", glmer(y ~ x + (1 | A) + (1 | B), d_cross, binomial), data = d_cross,
         args = list(formula = "y ~ x + (1 | A) + (1 | B)", family = "binomial", link = "logit",
                     nAGQ = 1))

# deviance functions at given parameters (criterion to round-off)
dev0 <- glmer(f_cbpp, cb, binomial, nAGQ = 0, devFunOnly = TRUE)
dev1 <- glmer(f_cbpp, cb, binomial, devFunOnly = TRUE)
dev5 <- glmer(f_cbpp, cb, binomial, nAGQ = 5, devFunOnly = TRUE)
pars <- c(0.6, -1.4, -1, -1.1, -1.6)
devfuns <- list(
  nagq0 = list(theta = c(0.3, 0.6, 1, 2), value = sapply(c(0.3, 0.6, 1, 2), dev0)),
  laplace = list(pars = pars, value = dev1(pars)),
  agq5 = list(pars = pars, value = dev5(pars))
)

cnt_data <- cb
refusals <- list(
  counts_no_weights = catch(glmer(incidence ~ period + (1 | herd), cb, binomial)),
  nagq_two_terms = catch(glmer(f_gt, grouseticks, poisson, nAGQ = 2)),
  nagq_slope = catch(glmer(y ~ x + (x | g), d_slope, binomial, nAGQ = 3)),
  poisson_negative = catch(glmer(I(-TICKS) ~ YEAR + (1 | BROOD), grouseticks, poisson)),
  gamma_nonpositive = catch(glmer(I(y - 10) ~ x + (1 | g), d_gam, Gamma)),
  factor_poisson = catch(glmer(period ~ 1 + (1 | herd), cb, poisson)),
  bad_link = catch(binomial(link = "foo")),
  sqrt_link_accepted = binomial(link = "sqrt")$link
)
writeLines(toJSON(list(devfuns = devfuns, refusals = refusals), digits = NA, auto_unbox = TRUE,
                  null = "null", na = "null"), "tests/fixtures/glmer/misc.json")

# likelihood-ratio test between GLMMs, and refit/update
m_cbpp_null <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cb, binomial)
tab <- anova(m_cbpp_null, m_cbpp)
d <- as.data.frame(tab)
anova_out <- list(rownames = rownames(d), columns = lapply(as.list(d), function(x) unname(x)),
                  colnames = colnames(d),
                  text = paste(capture.output(print(tab)), collapse = "\n"),
                  null_logLik = as.numeric(logLik(m_cbpp_null)),
                  null_beta = num(fixef(m_cbpp_null)), null_theta = num(getME(m_cbpp_null, "theta")))
writeLines(toJSON(anova_out, digits = NA, auto_unbox = TRUE, null = "null", na = "null"),
           "tests/fixtures/glmer/anova.json")

# families with a scale besides Gamma, on the Gamma model's data, and lme4's convergence checks
other <- list()
for (fam in list(gaussian(link = "log"), inverse.gaussian(link = "log"))) {
  msgs <- character(0)
  m <- withCallingHandlers(glmer(y ~ x + (1 | g), d_gam, fam),
                           warning = function(w) { msgs <<- c(msgs, conditionMessage(w))
                                                   invokeRestart("muffleWarning") })
  other[[fam$family]] <- list(logLik = as.numeric(logLik(m)), sigma = sigma(m),
                              beta = num(fixef(m)), warnings = as.list(msgs))
}
writeLines(toJSON(other, digits = NA, auto_unbox = TRUE, null = "null", na = "null"),
           "tests/fixtures/glmer/other_families.json")
