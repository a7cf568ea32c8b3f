# Disagreements found by a differential fuzz of lmer/glmer against lme4 1.1-31 (session 11):
# simulated data and formulas outside the other fixtures, one case per fixed disagreement.
# Run from the repository root (about 6 s):
#   LC_ALL=C Rscript tools/R/make_fixtures_fuzz.R
# Writes tests/fixtures/fuzz/<name>.json: the data (column types and factor levels kept, as
# make_fixtures_sweep.R writes them), the call's arguments, and what lme4 returns (estimates,
# structures, optimizer record, warnings and messages, or the error message).
suppressMessages({library(lme4); library(jsonlite)})
options(warn = 1)
out_dir <- "tests/fixtures/fuzz"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

num <- function(x) unname(as.numeric(x))

source("tools/R/fixture_helpers.R")  # columns_of, collect

# args: what both calls get (REML, weights and offset as column names, subset as R text)
run_case <- function(name, data, formula, args = list(), family = NULL, summary = FALSE) {
  call <- sprintf("%s(%s, data = d", if (is.null(family)) "lmer" else "glmer", formula)
  if (!is.null(family)) call <- paste0(call, ", family = ", family)
  if (!is.null(args$REML)) call <- paste0(call, ", REML = ", args$REML)
  for (a in c("weights", "offset", "subset"))
    if (!is.null(args[[a]])) call <- paste0(call, ", ", a, " = ", args[[a]])
  call <- paste0(call, ")")
  d <- data
  r <- collect(eval(parse(text = call)))
  out <- list(name = name, call = call, columns = columns_of(data), formula = formula,
              family = family, args = args, warnings = r$warnings, error = r$error)
  m <- r$fit
  if (!is.null(m)) {
    glmm <- !is.null(family)
    out <- c(out, list(
      theta = num(getME(m, "theta")), beta = num(fixef(m)), beta_names = names(fixef(m)),
      X_colnames = colnames(getME(m, "X")), sigma = sigma(m),
      crit = local({  # +Inf (zero weights) written as the string "Inf"
        v <- if (!glmm && isREML(m)) REMLcrit(m) else deviance(m)
        if (is.infinite(v)) "Inf" else v }),
      nobs = nobs(m), ngrps = as.list(ngrps(m)),
      flist_levels = lapply(getME(m, "flist"), levels), cnms = getME(m, "cnms"),
      feval = m@optinfo$feval, isSingular = isSingular(m),
      conv_messages = as.list(m@optinfo$conv$lme4$messages),
      fitted = num(fitted(m)),
      formula_text = paste(deparse(formula(m)), collapse = " ")))
    if (summary)  # the printed summary and the correlations behind its last block
      out <- c(out, list(summary = paste(capture.output(print(summary(m))), collapse = "\n"),
                         correlation = unname(as.matrix(cov2cor(vcov(m))))))
  }
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"),
             file.path(out_dir, paste0(name, ".json")))
  cat(name, if (is.null(r$error)) "" else paste("error:", r$error), "\n")
}

base <- function(seed, n, ng = 12) {
  set.seed(seed)
  g <- factor(sprintf("g%02d", sample.int(ng, n, TRUE)))
  x <- rnorm(n)
  z <- runif(n, -2, 2)
  y <- 1 + 0.5 * x - 0.3 * z + rnorm(ng, sd = 0.8)[g] + rnorm(n)
  data.frame(y = y, x = x, z = z, g = g)
}

# R's math functions warn "NaNs produced" (log of y + 3 < 0, sqrt of z < 0); the rows
# become NA and are omitted
d <- base(1, 300)
run_case("nans_produced", d, "log(y + 3) ~ sqrt(z + 1) + (1 | g)")

# a zero prior weight: lme4's REML criterion is +Inf at every theta (log of the weights),
# the fit stays at its start and checkConv records "Gradient contains NAs" without warning
d <- base(2, 300)
d$w <- runif(300, 0.5, 2)
d$w[seq(1, 300, by = 25)] <- 0
run_case("zero_weights", d, "y ~ x + (1 | g)", list(weights = "w"))

# a singular fit (theta stops on 0): optinfo$feval is the optimizer's count; lme4 does not
# count restart_edge's probes of the boundary (nor check.boundary's evaluations)
set.seed(4)
d <- data.frame(x = rnorm(300), g = factor(sample(sprintf("g%02d", 1:12), 300, TRUE)))
d$y <- 1 + 0.5 * d$x + rnorm(300)
run_case("singular_feval", d, "y ~ x + (1 | g)")

# check.boundary moves the second theta (within boundary.tol of 0) onto 0: its two
# evaluations are not counted either (seed 3: lme4's optimizer stops at 1.02e-6)
set.seed(3); n <- 400
d <- data.frame(x = rnorm(n), g = factor(sample(sprintf("g%02d", 1:15), n, TRUE)),
                h = factor(sample(sprintf("h%d", 1:8), n, TRUE)))
d$y <- 1 + 0.5 * d$x + rnorm(15, sd = 0.7)[d$g] + rnorm(n)
run_case("check_boundary_feval", d, "y ~ x + (1 | g) + (1 | h)")

# a grouping factor that is an expression of the frame's variables: lme4 evaluates it in
# the model frame, where k is a variable (it is in the fixed effects)...
d <- base(4, 400)
d$k <- sample(1:9, 400, TRUE)
d$k[c(5, 77)] <- NA
run_case("factor_k_group", d, "y ~ x + k + (1 | factor(k))")
# ... and fails when the frame holds factor(k) but not k
run_case("factor_k_group_error", d, "y ~ x + (1 | factor(k))")

# subset by row numbers (R's data[subset, ] in model.frame): ranges, exclusions and c()
d <- base(5, 600)
run_case("subset_range", d, "y ~ x + (1 | g)", list(subset = "1:300"))
run_case("subset_negative", d, "y ~ x + (1 | g)", list(subset = "-(1:50)"))
run_case("subset_c", d, "y ~ x + (1 | g)", list(subset = "c(1:200, 401:600)"))

# is.na() in a subset
d <- base(6, 400)
d$x[seq(3, 400, by = 9)] <- NA
run_case("subset_is_na", d, "y ~ z + (1 | g)", list(subset = "!is.na(x)"))

# a Poisson response with non-integer values: R's dpois gives them probability 0 with the
# warning "non-integer x = %f", so lme4's Laplace criterion is +Inf at every theta and the
# fit stays at its start (theta = 1)
set.seed(7); n <- 200
d <- data.frame(x = rnorm(n), g = factor(sample(sprintf("g%02d", 1:10), n, TRUE)))
d$cnt <- rpois(n, exp(0.5 + 0.3 * d$x + rnorm(10, sd = 0.5)[d$g]))
d$cnt[c(4, 50, 120)] <- d$cnt[c(4, 50, 120)] + c(0.5, 0.25, 1.75)
run_case("poisson_noninteger", d, "cnt ~ x + (1 | g)", family = "poisson")

# weights and offset given as R expressions of the data's columns, evaluated in the data as
# model.frame evaluates them
d <- base(8, 500)
d$t <- runif(500, 0.5, 3)
d$w <- runif(500, 0.5, 2)
run_case("weights_offset_expressions", d, "y ~ x + (1 | g)",
         list(weights = "1/w", offset = "log(t)"))
set.seed(9); n <- 400
d <- data.frame(x = rnorm(n), t = runif(n, 0.5, 3),
                g = factor(sample(sprintf("g%02d", 1:10), n, TRUE)))
d$cnt <- rpois(n, d$t * exp(0.2 + 0.3 * d$x + rnorm(10, sd = 0.5)[d$g]))
run_case("poisson_offset_expression", d, "cnt ~ x + (1 | g)", list(offset = "log(t)"),
         family = "poisson")

# '.' in the formula: every column of the data but the response, in the data's order
# (x, z, g, w here; the formula as written is what lme4 stores and prints)
d <- base(10, 400)
d$w <- runif(400)
run_case("dot_formula", d, "y ~ . - g - w + (1 | g)")
run_case("dot_power", d, "y ~ .^2 - g - w + (1 | g)")

# a summary whose correlation block (p = 12) is wider than 80 characters: R prints the
# character matrix in blocks of columns that fit the width, as print.default does
d <- base(11, 900)
d$k <- sample(1:12, 900, TRUE)
run_case("wide_correlation", d, "y ~ factor(k) + (1 | g)", summary = TRUE)

# VarCorr of a term with 13 correlated columns: wider than 80 characters, R prints it in
# blocks of columns (print.default of formatVC's character matrix); fitted without the
# finite-difference derivatives (91 parameters), compared at lme4's theta
set.seed(12); n <- 1500
d <- data.frame(f = factor(sprintf("lev%02d", sample(1:13, n, TRUE))),
                g = factor(sprintf("g%02d", sample(1:30, n, TRUE))))
d$y <- rnorm(30)[d$g] + rnorm(n)
r <- collect(lmer(y ~ 1 + (0 + f | g), d, control = lmerControl(calc.derivs = FALSE)))
m <- r$fit
vc <- as.data.frame(VarCorr(m))
writeLines(toJSON(list(name = "wide_varcorr", columns = columns_of(d),
                       formula = "y ~ 1 + (0 + f | g)", theta = num(getME(m, "theta")),
                       warnings = r$warnings, sdcor = vc$sdcor,
                       varcorr = paste(capture.output(print(VarCorr(m))), collapse = "\n"),
                       summary = paste(capture.output(print(summary(m))), collapse = "\n")),
                  auto_unbox = TRUE, digits = NA, null = "null", na = "null"),
           file.path(out_dir, "wide_varcorr.json"))
cat("wide_varcorr\n")
