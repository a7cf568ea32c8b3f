# ns() and bs() of package splines, cut(), C() and droplevels() in lme4 formulas (session 14):
# R 4.2.2, splines 4.2.2, lme4 1.1-31. For random data of several seeds (x with NA, factors
# with unused levels, an ordered factor), records
#   bases.json       lFormula's X (values, column names, rows kept) and its warnings for
#                    fixed parts with these functions, and the bases on new data beyond the
#                    training range (predict of a model.frame's terms: R's makepredictcall);
#   structures.json  lFormula's random-effects structures where they enter random terms
#                    (Zt, cnms, flist levels);
#   fits.json        lmer fits (theta, beta, REML criterion, printed summary, lmerTest's anova)
#                    and predictions on new data inside and outside the training range, with
#                    their warnings;
#   glmer_fits.json  glmer fits (binomial, Poisson) and their predictions on new data;
#   errors.json      R's errors and warnings for bad calls.
# Run from the repository root (about 15 s):
#   LC_ALL=C Rscript tools/R/make_fixtures_splines.R
suppressMessages({library(lme4); library(splines); library(jsonlite)})
options(digits = 7, warn = 1)
out_dir <- "tests/fixtures/splines"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
source("tools/R/fixture_helpers.R")  # columns_of, collect

num <- function(x) unname(as.numeric(x))
text_of <- function(x) paste(capture.output(print(x)), collapse = "\n")
write_out <- function(x, file)
  writeLines(toJSON(x, auto_unbox = TRUE, digits = NA, null = "null", na = "null"),
             file.path(out_dir, file))

make_data <- function(seed, n = 150, ng = 10) {
  set.seed(seed)
  x <- round(runif(n, 0.5, 9.5), 3)
  x[sample(n, 4)] <- NA
  f <- factor(sample(c("a", "b", "c", "d"), n, replace = TRUE))
  o <- factor(sample(c("lo", "mid", "hi"), n, replace = TRUE), levels = c("lo", "mid", "hi"),
              ordered = TRUE)
  fu <- factor(sample(c("p", "q", "r"), n, replace = TRUE), levels = c("p", "q", "r", "s"))
  g <- factor(sample(sprintf("g%02d", 1:ng), n, replace = TRUE))
  z <- 1000 + round(runif(n), 4) / 100  # a narrow range: cut's labels need more digits
  u <- rnorm(ng, sd = 0.7)[as.integer(g)]
  y <- sin(x) + 0.4 * as.integer(f) + 0.3 * as.integer(o) + u + rnorm(n, sd = 0.5)
  y[sample(n, 3)] <- NA
  # (drawn last: the columns above are the same as without them)
  xs <- ifelse(is.na(x), 5, x)
  yb <- rbinom(n, 1, plogis(-1 + 0.8 * sin(xs) + 0.3 * as.integer(f) + u))
  yc <- rpois(n, exp(0.2 + 0.5 * cos(xs / 2) + 0.1 * as.integer(f) + u / 2))
  data.frame(y = round(y, 4), x = x, z = z, f = f, o = o, fu = fu, g = g, yb = yb, yc = yc)
}
newdata_of <- function(d) {
  data.frame(x = c(-1.5, 0.1, 0.5, 2.25, 5, 7.75, 9.5, 10.4, 25, NA),
             z = 1000 + c(0, 1, 2, 3, 4, 5, 6, 7, 8, 9) / 1000,
             f = factor(c("a", "b", "c", "d", "a", "b", "c", "d", "a", "b"), levels = levels(d$f)),
             o = factor(rep(c("lo", "mid", "hi"), length.out = 10), levels = levels(d$o),
                        ordered = TRUE),
             fu = factor(rep(c("p", "q", "r"), length.out = 10), levels = levels(d$fu)),
             g = factor(levels(d$g)[c(1, 2, 3, 4, 5, 1, 2, 3, 4, 5)], levels = levels(d$g)))
}
seeds <- c(11, 29, 47)
datasets <- lapply(seeds, make_data)

## bases: lFormula's X --------------------------------------------------------------------------
fixed_parts <- c(
  "ns(x, df = 3)", "ns(x, 4, Boundary.knots = c(0, 10))", "ns(x, knots = c(3, 6))",
  "ns(x, df = 4, intercept = TRUE)", "ns(x)", "ns(x, df = 1)", "ns(x, d = 2)",
  "splines::ns(x, 3)", "ns(x, 3, Boundary.knots = c(2, 8))", "ns(x, df = 5):f",
  "bs(x, df = 5)", "bs(x, knots = c(2, 5), degree = 2)", "bs(x)", "bs(x, degree = 1, df = 3)",
  "bs(x, df = 4, Boundary.knots = c(2, 8))", "bs(x, df = 2)", "bs(x, 6, intercept = TRUE)",
  "f * bs(x, 3)", "splines::bs(x, knots = 5)", "ns(scale(x), 3)", "bs(log(x), df = 4)",
  "cut(x, 3)", "cut(x, breaks = c(0, 2, 5, 10))", "cut(x, breaks = c(0, 2, 5, 10), labels = FALSE)",
  "cut(x, c(0, 2, 5, 10), labels = c(\"lo\", \"mid\", \"hi\"))",
  "cut(x, c(0, 2, 5, 10), right = FALSE, include.lowest = TRUE)",
  "cut(x, c(0.5, 2, 5, 9.5), include.lowest = TRUE)", "cut(x, 4, dig.lab = 2)",
  "cut(x, c(-Inf, 2, 5, Inf))", "cut(x, 3, ordered_result = TRUE)", "cut(z, 3)",
  "cut(x, 5, labels = FALSE)",
  "cut(x, quantile(x, c(0, 0.25, 0.5, 1), na.rm = TRUE), include.lowest = TRUE)",
  "cut(x, seq(0, 10, by = 2.5))", "cut(x, seq(0, 10, length.out = 4))", "cut(x, seq(0, 10, 3))",
  "ns(x, knots = quantile(x, c(0.3, 0.6), na.rm = TRUE))",
  "C(f, contr.sum)", "C(f, sum)", "C(f, treatment, base = 2)", "C(f, contr.helmert)",
  "C(f, contr.treatment)", "C(f, treatment)", "C(f, contr.SAS)", "C(f, SAS)",
  "C(f, contr.sum, 1)", "C(f, poly)", "C(o, contr.treatment)", "C(o)", "C(f)",
  "C(f, \"contr.sum\")", "x:C(f, sum)", "C(f, helmert) + C(o, sum)",
  "droplevels(fu)", "droplevels(fu):x", "droplevels(f)", "droplevels(f, \"a\")",
  "droplevels(f, exclude = c(\"b\", \"d\"))")
bases <- list()
for (k in seq_along(datasets)) {
  d <- datasets[[k]]
  for (part in fixed_parts) {
    form <- as.formula(paste("y ~", part, "+ (1 | g)"))
    r <- collect(lFormula(form, d))
    case <- list(seed = seeds[k], rhs = part, warnings = as.list(r$warnings), error = r$error)
    if (!is.null(r$fit)) {
      X <- r$fit$X
      case$colnames <- colnames(X)
      case$X <- unname(X)
      case$rows <- as.integer(rownames(r$fit$fr))
      # the terms' variables on new data, as predict's model.frame(delete.response(terms),
      # newdata) evaluates them (R's makepredictcall)
      tt <- delete.response(terms(r$fit$fr))
      nd <- newdata_of(d)
      p <- collect({
        mf <- model.frame(tt, nd, na.action = na.pass,
                          xlev = lapply(Filter(is.factor, r$fit$fr), levels))
        model.matrix(tt, mf, contrasts.arg = attr(X, "contrasts"))
      })
      case$new_warnings <- as.list(p$warnings)
      case$new_error <- p$error
      if (!is.null(p$fit)) case$newX <- unname(p$fit[, colnames(X), drop = FALSE])
    }
    bases[[length(bases) + 1]] <- case
  }
}
write_out(list(columns = lapply(datasets, columns_of), seeds = seeds,
               newdata = lapply(datasets, function(d) columns_of(newdata_of(d))),
               cases = bases), "bases.json")

## structures: splines, cut() and C() in random terms -------------------------------------------
random_parts <- c("(ns(x, 2) | g)", "(0 + bs(x, df = 3) | g)", "(1 | g) + (0 + ns(x, df = 2) | g)",
                  "(C(f, sum) | g)", "(1 | cut(x, 3))", "(1 | g:cut(x, c(0, 5, 10)))",
                  "(ns(x, 2) || g)", "(C(f, contr.helmert) || g)", "(1 | droplevels(fu))")
structures <- list()
for (k in seq_along(datasets)) {
  d <- datasets[[k]]
  for (part in random_parts) {
    form <- as.formula(paste("y ~ x +", part))
    r <- collect(lFormula(form, d, control = lmerControl(check.nobs.vs.nRE = "ignore")))
    case <- list(seed = seeds[k], rhs = paste("x +", part), warnings = as.list(r$warnings),
                 error = r$error)
    if (!is.null(r$fit)) {
      rt <- r$fit$reTrms
      case$Zt <- unname(as.matrix(rt$Zt))
      case$cnms <- rt$cnms
      case$flist_levels <- lapply(rt$flist, levels)
      case$theta <- rt$theta
    }
    structures[[length(structures) + 1]] <- case
  }
}
write_out(list(cases = structures), "structures.json")

## fits -------------------------------------------------------------------------------------------
fit_formulas <- c(
  "y ~ ns(x, df = 3) + (1 | g)", "y ~ bs(x, df = 4) + f + (1 | g)",
  "y ~ bs(x, knots = c(3, 6), degree = 2) + (1 | g)",
  "y ~ ns(x, 3, Boundary.knots = c(1, 9)) + o + (1 | g)",
  "y ~ C(f, sum) * ns(x, 2) + (1 | g)", "y ~ cut(x, 3) + (1 | g)",
  "y ~ cut(x, c(0, 3, 6, 10), labels = FALSE) + C(o, contr.treatment) + (1 | g)",
  "y ~ droplevels(fu) + splines::ns(x, 2) + (1 | g)", "y ~ x + (ns(x, 2) || g)",
  "y ~ C(f, helmert) + (1 | g) + (0 + ns(x, df = 2) | g)",
  "y ~ C(fu, sum) + x + (1 | g)",  # fu's unused level: R drops the contrasts
  "y ~ ns(scale(x), 3) + (1 | g)",  # new data: the knots kept, scale(x) evaluated afresh
  "y ~ log(scale(x) + 3) + (1 | g)")  # makepredictcall: only a variable's own call is kept
fits <- list()
for (k in seq_along(datasets)) {
  d <- datasets[[k]]
  nd <- newdata_of(d)
  for (fm in fit_formulas) {
    r <- collect(lmer(as.formula(fm), d))
    case <- list(seed = seeds[k], formula = fm, warnings = as.list(r$warnings), error = r$error)
    m <- r$fit
    if (!is.null(m)) {
      case <- c(case, list(
        theta = num(getME(m, "theta")), beta = num(fixef(m)), fixef_names = names(fixef(m)),
        sigma = sigma(m), crit = REMLcrit(m), X_colnames = colnames(getME(m, "X")),
        cnms = getME(m, "cnms"), isSingular = isSingular(m), fitted = num(fitted(m)),
        summary = text_of(summary(m)), print = text_of(m),
        vcov = unname(as.matrix(vcov(m))), logLik = as.numeric(logLik(m)), AIC = AIC(m),
        BIC = BIC(m), varcorr = list(vcov = as.data.frame(VarCorr(m))$vcov,
                                     sdcor = as.data.frame(VarCorr(m))$sdcor),
        resid_scaled = num(residuals(m, scaled = TRUE))))
      # lmerTest's Satterthwaite anova of types I-III (type III maps treatment-coded
      # hypotheses onto the coding the model used: C()'s contrasts)
      mt <- suppressMessages(suppressWarnings(lmerTest::as_lmerModLmerTest(m)))
      for (type in 1:3) {
        a <- tryCatch(as.data.frame(anova(mt, type = type)), error = function(e) NULL)
        if (!is.null(a))
          case[[paste0("anova", type)]] <- list(
            rownames = rownames(a), colnames = colnames(a),
            columns = lapply(as.list(a), function(x) num(x)))
      }
      for (what in c("newdata", "population")) {
        p <- collect(if (what == "newdata") predict(m, newdata = nd)
                     else predict(m, newdata = nd, re.form = NA))
        case[[paste0("predict_", what)]] <- if (is.null(p$fit)) NULL else num(p$fit)
        case[[paste0("predict_", what, "_warnings")]] <- as.list(p$warnings)
        case[[paste0("predict_", what, "_error")]] <- p$error
      }
    }
    fits[[length(fits) + 1]] <- case
    cat(seeds[k], fm, if (is.null(r$error)) "ok" else paste("ERROR:", r$error), "\n")
  }
}
write_out(list(cases = fits), "fits.json")

## glmer fits -------------------------------------------------------------------------------------
glmer_fits <- list(
  list(formula = "yb ~ ns(x, df = 3) + (1 | g)", family = "binomial"),
  list(formula = "yc ~ bs(x, df = 4) + C(f, sum) + (1 | g)", family = "poisson"),
  list(formula = "yc ~ cut(x, c(0, 3, 6, 10)) + x + (1 | g)", family = "poisson"))
gfits <- list()
for (k in seq_along(datasets)) {
  d <- datasets[[k]]
  nd <- newdata_of(d)
  for (gf in glmer_fits) {
    r <- collect(glmer(as.formula(gf$formula), d, family = gf$family))
    case <- list(seed = seeds[k], formula = gf$formula, family = gf$family,
                 warnings = as.list(r$warnings), error = r$error)
    m <- r$fit
    if (!is.null(m)) {
      case <- c(case, list(
        theta = num(getME(m, "theta")), beta = num(fixef(m)), fixef_names = names(fixef(m)),
        logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), AIC = AIC(m), BIC = BIC(m),
        deviance = deviance(m), sigma = sigma(m), df_residual = df.residual(m), nobs = nobs(m),
        isSingular = isSingular(m), cnms = getME(m, "cnms"), Zt_dim = dim(getME(m, "Zt")),
        X_colnames = colnames(getME(m, "X")),
        predict_newdata = num(predict(m, newdata = nd)),
        predict_newdata_response = num(predict(m, newdata = nd, type = "response")),
        predict_population = num(predict(m, newdata = nd, re.form = NA, type = "response"))))
    }
    gfits[[length(gfits) + 1]] <- case
    cat(seeds[k], gf$formula, if (is.null(r$error)) "ok" else paste("ERROR:", r$error), "\n")
  }
}
write_out(list(cases = gfits), "glmer_fits.json")

## errors and warnings of bad calls --------------------------------------------------------------
bad <- c("ns(f)", "bs(f, df = 3)", "bs(x, degree = 0)", "ns(x, df = 3, foo = 1)",
         "bs(x, df = 2)", "ns(x, df = 0)", "cut(x, 1)", "cut(x, c(1, 1, 5))", "cut(f, 3)",
         "cut(x, c(0, 5, 10), labels = c(\"a\"))", "cut(x)", "C(x)", "C(f, foo)", "C(fu, sum)",
         "droplevels(x)", "C(f, sum, 5)", "C(f, treatment, 5)", "bs(x, d = 3)",
         "ns(x, 3, df = 2)", "cut(x, 3, lab = FALSE)", "C(f, sum, foo = 1)",
         "ns(x, df = 3, Boundary.knots = c(8, 2))", "ns(x, knots = 20)", "bs(x, knots = -1)",
         "ns(x, knots = 3, Boundary.knots = c(4, 5))", "cut(x, quantile(x, c(0, 0.5, 1)))",
         "cut(x, seq(10, 0, by = 2))", "cut(x, seq(0, 10, by = 2, length.out = 3))")
errors <- list()
d <- datasets[[1]]
for (part in bad) {
  r <- collect(lFormula(as.formula(paste("y ~", part, "+ (1 | g)")), d))
  errors[[length(errors) + 1]] <- list(rhs = part, warnings = as.list(r$warnings),
                                       error = r$error,
                                       colnames = if (is.null(r$fit)) NULL else colnames(r$fit$X))
  cat(part, "|", r$error, "|", paste(r$warnings, collapse = "; "), "\n")
}
write_out(list(cases = errors), "errors.json")
