# Reference results for the GLMM part of fit diagnostics: insight::get_variance,
# performance::icc and r2_nakagawa on glmer fits of the families and links whose
# distribution-specific variance is not a link constant (Gamma, inverse.gaussian, gaussian
# with a non-identity link) and of links insight does not support (NA plus its warning).
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_diagnostics_glmm.R
# Writes tests/fixtures/diagnostics_glmm.json (data included, so the tests need no R).
suppressMessages({library(lme4); library(performance); library(insight); library(jsonlite)})
options(digits = 7, warn = 1)

set.seed(2020)
ng <- 20; nper <- 10
g <- factor(rep(sprintf("g%02d", seq_len(ng)), each = nper))
x <- round(rnorm(ng * nper), 4)
b <- rep(rnorm(ng, sd = 0.4), each = nper)
# positive responses: Gamma with mean exp(1 + 0.3 x + b), shape 4
mu <- exp(1 + 0.3 * x + b)
y <- round(rgamma(ng * nper, shape = 4, rate = 4 / mu), 6)
# inverse Gaussian draws by Michael, Schucany and Haas, mean mu, shape 8
lam <- 8
nu <- rnorm(ng * nper)^2
xx <- mu + mu^2 * nu / (2 * lam) - mu / (2 * lam) * sqrt(4 * mu * lam * nu + mu^2 * nu^2)
yig <- round(ifelse(runif(ng * nper) <= mu / (mu + xx), xx, mu^2 / xx), 6)
cnt <- rpois(ng * nper, exp(1.5 + 0.2 * x + b))
bin <- rbinom(ng * nper, 1, plogis(0.2 + 0.8 * x + b))
# for links that need a positive linear predictor throughout PIRLS: responses whose mean
# is far from the boundary
eta_inv <- 0.4 + 0.03 * x + 0.25 * b
yinv <- round(rgamma(ng * nper, shape = 4, rate = 4 * eta_inv), 6)
cnt_id <- rpois(ng * nper, 25 + 2 * x + 5 * b)
dat <- data.frame(g = g, x = x, y = y, yig = yig, cnt = cnt, bin = bin, yinv = yinv,
                  cnt_id = cnt_id)

specs <- list(
  gamma_log = list(formula = "y ~ x + (1 | g)", family = "Gamma", link = "log"),
  gamma_inverse = list(formula = "yinv ~ x + (1 | g)", family = "Gamma", link = "inverse"),
  gamma_identity = list(formula = "y ~ x + (1 | g)", family = "Gamma", link = "identity"),
  invgauss_log = list(formula = "yig ~ x + (1 | g)", family = "inverse.gaussian", link = "log"),
  gaussian_log = list(formula = "y ~ x + (1 | g)", family = "gaussian", link = "log"),
  poisson_identity = list(formula = "cnt_id ~ x + (1 | g)", family = "poisson",
                          link = "identity"),
  binomial_cauchit = list(formula = "bin ~ x + (1 | g)", family = "binomial", link = "cauchit")
)

# run expr, collecting warning messages (insight's come through format_warning)
with_warnings <- function(expr) {
  w <- character(0)
  value <- withCallingHandlers(expr, warning = function(c) {
    w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning")
  })
  list(value = value, warnings = w)
}
num <- function(v) if (is.null(v) || length(v) == 0) NULL else
  lapply(as.numeric(v), function(z) if (is.na(z)) "NA" else z)

out <- list()
for (nm in names(specs)) {
  s <- specs[[nm]]
  fam <- get(s$family)(link = s$link)
  m <- tryCatch(eval(bquote(glmer(.(as.formula(s$formula)), data = dat, family = .(fam)))),
                error = function(e) { message(nm, ": ", conditionMessage(e)); NULL })
  if (is.null(m)) next
  gv <- with_warnings(get_variance(m))
  ic <- with_warnings(icc(m))
  r2 <- with_warnings(r2_nakagawa(m))
  v <- gv$value
  out[[nm]] <- list(
    formula = s$formula, family = s$family, link = s$link,
    theta = unname(getME(m, "theta")), beta = unname(fixef(m)), sigma = sigma(m),
    var_fixed = num(v$var.fixed), var_random = num(v$var.random),
    var_residual = num(v$var.residual), var_distribution = num(v$var.distribution),
    var_dispersion = num(v$var.dispersion), var_intercept = num(v$var.intercept),
    get_variance_warnings = gv$warnings,
    icc_adjusted = num(if (is.list(ic$value)) ic$value$ICC_adjusted else NA),
    icc_unadjusted = num(if (is.list(ic$value)) ic$value$ICC_unadjusted else NA),
    icc_warnings = ic$warnings,
    r2_marginal = num(if (is.list(r2$value)) r2$value$R2_marginal else NA),
    r2_conditional = num(if (is.list(r2$value)) r2$value$R2_conditional else NA),
    r2_warnings = r2$warnings
  )
}
res <- list(
  versions = list(lme4 = as.character(packageVersion("lme4")),
                  performance = as.character(packageVersion("performance")),
                  insight = as.character(packageVersion("insight"))),
  data = as.list(transform(dat, g = as.character(g))),
  models = out
)
writeLines(toJSON(res, auto_unbox = TRUE, digits = I(15), null = "null", pretty = TRUE),
           "tests/fixtures/diagnostics_glmm.json")
