# A second differential fuzz of lmer (lme4 1.1-31) and lmerTest 3.1-3 (session 13): simulated,
# unbalanced data with NA in several columns; character, logical, integer-coded, ordered and
# unused-level factors as fixed effects and grouping factors; factor slopes (0 + f | g),
# (f || g), 3x3 covariances, nesting with repeated labels, transforms of the response and of
# the predictors, offsets, weights, the contrasts= argument, ML fits and singular fits. Each
# case records lme4's estimates and accessors, the printed outputs, lmerTest's Satterthwaite
# and Kenward-Roger tables, anova types I-III, ranova, Wald intervals and predictions.
# Run from the repository root (about 20 s):
#   LC_ALL=C Rscript tools/R/make_fixtures_fuzz2.R
# Writes tests/fixtures/fuzz2/<name>.json.
suppressMessages({library(lmerTest); library(jsonlite)})
options(digits = 7, warn = 1)
out_dir <- "tests/fixtures/fuzz2"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

source("tools/R/fixture_helpers.R")  # columns_of, collect

num <- function(x) unname(as.numeric(x))
text_of <- function(x) paste(capture.output(print(x)), collapse = "\n")
tab <- function(t) {
  d <- as.data.frame(t)
  list(rownames = rownames(d), colnames = colnames(d),
       columns = lapply(as.list(d), function(x) if (is.numeric(x)) num(x) else as.character(x)))
}
mat <- function(x) { x <- as.matrix(x); list(values = unname(x), rownames = rownames(x),
                                            colnames = colnames(x)) }
tryit <- function(expr) tryCatch(expr, error = function(e) list(error = conditionMessage(e)))

outputs <- function(lm4, m, newdata) {
  reml <- isREML(lm4)
  re <- ranef(lm4, condVar = TRUE)
  vc <- as.data.frame(VarCorr(lm4))
  out <- list(
    theta = num(getME(lm4, "theta")), beta = num(fixef(lm4)), fixef_names = names(fixef(lm4)),
    sigma = sigma(lm4), REML = reml,
    crit = if (reml) REMLcrit(lm4) else deviance(lm4),
    logLik = as.numeric(logLik(lm4)), df = attr(logLik(lm4), "df"), AIC = AIC(lm4), BIC = BIC(lm4),
    nobs = nobs(lm4), ngrps = as.list(ngrps(lm4)), isSingular = isSingular(lm4),
    X_colnames = colnames(getME(lm4, "X")), cnms = getME(lm4, "cnms"),
    flist_levels = lapply(getME(lm4, "flist"), levels), Zt_dim = dim(getME(lm4, "Zt")),
    vcov = unname(as.matrix(vcov(lm4))),
    varcorr = list(grp = vc$grp, var1 = vc$var1, var2 = vc$var2, vcov = vc$vcov,
                   sdcor = vc$sdcor),
    varcorr_text = text_of(VarCorr(lm4)),
    varcorr_text_var = paste(capture.output(print(VarCorr(lm4), comp = c("Variance", "Std.Dev."))),
                             collapse = "\n"),
    ranef = lapply(re, function(d) list(values = unname(as.matrix(d)), rownames = rownames(d),
                                        colnames = colnames(d),
                                        postVar = as.vector(attr(d, "postVar")))),
    coef = lapply(coef(lm4), function(d) list(values = unname(as.matrix(d)),
                                            rownames = rownames(d), colnames = colnames(d))),
    fitted = num(fitted(lm4)),
    resid_response = num(residuals(lm4, type = "response")),
    resid_pearson = num(residuals(lm4, type = "pearson")),
    resid_working = num(residuals(lm4, type = "working")),
    resid_scaled = num(residuals(lm4, scaled = TRUE)),
    predict_population = num(predict(lm4, re.form = NA)),
    confint_wald = mat(confint(lm4, method = "Wald")),
    summary_lme4 = text_of(summary(lm4)),
    print_lme4 = text_of(lm4),
    anova_lme4 = text_of(anova(lm4)),
    conv_messages = as.list(lm4@optinfo$conv$lme4$messages),
    # lmerTest
    coef_sat = tab(summary(m)$coefficients),
    summary_sat = text_of(summary(m))
  )
  for (type in c("1", "2", "3")) {
    a <- tryit(anova(m, type = type))
    out[[paste0("anova", type, "_sat")]] <- if (is.list(a) && !is.null(a$error)) a else
      c(tab(a), list(text = text_of(a)))
  }
  if (reml) {
    out$coef_kr <- tab(summary(m, ddf = "Kenward-Roger")$coefficients)
    out$summary_kr <- text_of(summary(m, ddf = "Kenward-Roger"))
    for (type in c("1", "2", "3")) {
      a <- tryit(anova(m, type = type, ddf = "Kenward-Roger"))
      out[[paste0("anova", type, "_kr")]] <- if (is.list(a) && !is.null(a$error)) a else
        c(tab(a), list(text = text_of(a)))
    }
  }
  lsm <- tryit(suppressWarnings(ls_means(m)))
  out$ls_means <- if (is.list(lsm) && !is.null(lsm$error)) lsm else
    c(tab(structure(lsm, class = "data.frame")), list(text = text_of(lsm)))
  dl <- tryit(suppressWarnings(difflsmeans(m)))
  out$difflsmeans <- if (is.list(dl) && !is.null(dl$error)) dl else
    tab(structure(dl, class = "data.frame"))
  dr <- tryit(suppressWarnings(drop1(m)))
  out$drop1 <- if (is.list(dr) && !is.null(dr$error)) dr else c(tab(dr), list(text = text_of(dr)))
  rr <- tryit(ranova(m))
  out$ranova <- if (is.list(rr) && !is.null(rr$error)) rr else c(tab(rr), list(text = text_of(rr)))
  bars <- findbars(formula(lm4))
  if (length(bars) > 1) {
    out$re_form_first <- paste("~", paste(deparse(bars[[1]]), collapse = " "))
    # (lme4's mkNewReTrms fails on some factor terms: then left out)
    pr <- tryCatch(num(predict(lm4, re.form = as.formula(out$re_form_first))),
                   error = function(e) NULL)
    if (is.null(pr)) out$re_form_first <- NULL else out$predict_re_first <- pr
  }
  if (!is.null(newdata)) {
    out$newdata <- columns_of(newdata)
    out$predict_newdata <- num(predict(lm4, newdata = newdata, allow.new.levels = TRUE))
    out$predict_newdata_population <- num(predict(lm4, newdata = newdata, re.form = NA))
    if (!is.null(out$re_form_first))
      out$predict_newdata_re_first <- num(predict(lm4, newdata = newdata,
                                                  re.form = as.formula(out$re_form_first),
                                                  allow.new.levels = TRUE))
  }
  out
}

# args: extra arguments of lmer as R text (REML, weights, offset, contrasts, na.action)
# lme4's lmer fits (its warnings and messages are the fit's); lmerTest's lmer fits again
# and computes what Satterthwaite's method needs (it warns of a Hessian with negative
# eigenvalues there, as the package does when the method is used: kept apart)
run_case <- function(name, data, formula, args = list(), newdata = NULL) {
  call <- sprintf("lme4::lmer(%s, data = d", formula)
  for (a in names(args)) call <- paste0(call, ", ", a, " = ", args[[a]])
  call <- paste0(call, ")")
  # in the global environment: ranova's and as_lmerModLmerTest's refits evaluate the call
  assign("d", data, envir = globalenv())
  r <- collect(eval(parse(text = call), globalenv()))
  out <- list(name = name, call = call, columns = columns_of(data), formula = formula,
              args = args, warnings = as.list(r$warnings), error = r$error)
  if (!is.null(r$fit)) {
    # lmerTest's lmer: the same fit, its formula stored as written ((f || g) unexpanded, as
    # lmerTest's summaries print it); lme4's outputs from lme4's fit
    rt <- collect(eval(parse(text = sub("lme4::lmer", "lmerTest::lmer", call)), globalenv()))
    out$lmertest_warnings <- as.list(rt$warnings)
    out <- c(out, outputs(r$fit, rt$fit, newdata))
  }
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"),
             file.path(out_dir, paste0(name, ".json")))
  cat(name, if (is.null(r$error)) "ok" else paste("ERROR:", r$error),
      if (length(r$warnings)) paste("| warn:", paste(r$warnings, collapse = "; ")) else "", "\n")
}

## the data ------------------------------------------------------------------------------------
set.seed(20261203)
n <- 260
ng <- 14
g <- factor(sprintf("s%02d", sample.int(ng, n, TRUE, prob = seq(1, 3, length.out = ng))))
site <- factor(sprintf("site%d", sample.int(5, n, TRUE)))
plot <- sample(1:3, n, TRUE)              # labels repeated across sites
x <- round(rnorm(n, 2, 1), 3)
z <- round(runif(n, -1, 1), 3)
tt <- round(runif(n, 0.5, 4), 3)
fc <- sample(c("ctl", "trtA", "trtB"), n, TRUE, prob = c(.4, .35, .25))   # character
fo <- factor(sample(c("low", "med", "high", "top"), n, TRUE),
             levels = c("low", "med", "high", "top"), ordered = TRUE)
fl <- runif(n) > 0.45                                                      # logical
fi <- sample(1:3, n, TRUE)                                                 # integer codes
fu <- factor(sample(c("b", "a"), n, TRUE), levels = c("b", "a", "zz"))     # an unused level
w <- round(runif(n, 0.4, 2.5), 2)
bg <- rnorm(ng, sd = 0.9); bx <- rnorm(ng, sd = 0.35); bz <- rnorm(ng, sd = 0.5)
bs <- rnorm(5, sd = 0.6); bsp <- rnorm(15, sd = 0.4)
fcn <- match(fc, c("ctl", "trtA", "trtB"))
bf <- matrix(rnorm(ng * 3, sd = 0.5), ng)
y <- 3 + 0.6 * x - 0.4 * z + c(0, 0.5, -0.3)[fcn] + 0.25 * as.numeric(fo) + 0.3 * fl +
  bg[g] + bx[g] * x + bz[g] * z + bf[cbind(as.integer(g), fcn)] + bs[site] +
  bsp[(as.integer(site) - 1) * 3 + plot] + rnorm(n, sd = 0.7)
d0 <- data.frame(y = round(y, 3), x = x, z = z, tt = tt, fc = fc, fo = fo, fl = fl, fi = fi,
                 fu = fu, w = w, g = g, gc = as.character(g), site = site, plot = plot,
                 stringsAsFactors = FALSE)
# the columns' vectors are not left in the global environment: R evaluates what a data frame
# lacks in the formula's environment, and lmerTest's ls_means grid or a grouping expression
# naming a variable outside the model frame would find them there (a vector of another
# length, or the data's own values, where R without them fails)
rm(g, site, plot, x, z, tt, fc, fo, fl, fi, fu, w, y)
# NA in several columns (rows differ by column)
dna <- d0
dna$x[c(3, 40, 41, 170)] <- NA
dna$fc[c(7, 99)] <- NA
dna$fo[c(15, 200)] <- NA
dna$g[c(55, 56)] <- NA
dna$y[c(120)] <- NA

nd <- d0[c(1, 2, 5, 9, 30), ]
nd <- rbind(nd, transform(d0[c(11, 12), ], g = factor("new", levels = c(levels(d0$g), "new")),
                          gc = "new", site = factor("site9")))
nd$g <- factor(as.character(nd$g))
rownames(nd) <- NULL

## the cases ----------------------------------------------------------------------------------
# character and ordered factors (contr.poly) with NA in several columns
nd_na <- nd
nd_na$x[2] <- NA

run_case("char_ordered_na", dna, "y ~ x + fc + fo + (1 | g)", newdata = nd_na)
# a factor under || : lme4 expands (fc || g) into (1 | g) + (0 + fc | g) (correlated)
run_case("factor_double_bar", d0, "y ~ fc + x + (fc || g)")
# a 3x3 covariance of a factor's indicator columns
run_case("factor_slope_3x3", d0, "y ~ fc + (0 + fc | g)")
# (x + z | g) by REML with weights: a 3x3 covariance
run_case("three_by_three_weights", d0, "y ~ x + z + (x + z | g)", list(weights = "w"))
# nesting with labels repeated across sites: a/b and a:b with an integer variable
run_case("nested_integer_labels", d0, "y ~ x + (1 | site/plot)", newdata = NULL)
run_case("colon_integer_group", d0, "y ~ x + fl + (1 | site:plot) + (1 | site)")
# transforms of the response and the predictors, predicted on new data
run_case("transforms_newdata", d0, "log(y + 5) ~ poly(x, 2) + scale(z) + log(tt) + I(z^2) + (1 | g)",
         newdata = nd)
# offset in the formula, weights, ML
run_case("offset_weights_ml", d0, "y ~ x + fl + offset(log(tt)) + (x | g)",
         list(weights = "w", REML = "FALSE"), newdata = nd)
# the contrasts argument: sum coding and helmert on a factor with an unused level
run_case("contrasts_sum_helmert", d0, "y ~ fc * fu + x + (1 | g)",
         list(contrasts = 'list(fc = "contr.sum", fu = "contr.helmert")'))
# ordered factor by numeric interaction, lmerTest's types I-III with marginality
run_case("ordered_by_numeric", d0, "y ~ fo * x + z + (1 | g)")
# a term nested in a factor without the numeric main effect (fc/x)
run_case("nested_slopes_fixed", dna, "y ~ fc + fc:x + (1 | g)")
# logical fixed effect and character grouping with crossed random effects, partial re.form
run_case("logical_char_crossed", d0, "y ~ fl * z + (z | gc) + (1 | site)", newdata = nd)
# integer codes as factor() and as numbers; interaction with a factor in the fixed part
run_case("integer_codes", d0, "y ~ factor(fi) + fi:x + (1 | g)")
# a singular fit: no slope variation by site
run_case("singular_slope", d0, "y ~ x + (1 + z | site)")
# response as an expression, REML = FALSE, na.exclude
run_case("sqrt_response_exclude", dna, "sqrt(y + 10) ~ x * fc + (1 | g)",
         list(REML = "FALSE", na.action = "na.exclude"))
# an unused level in the grouping factor, intercept-free fixed part
run_case("unused_group_level", transform(d0, gu = factor(as.character(g),
                                                          levels = c(levels(g), "s99"))),
         "y ~ 0 + fc + x + (1 | gu)")
# a logical's indicator columns and a numeric slope in separate terms on the same factor.
# (Not fc's three columns: there the optimizer's path, 143-163 evaluations, is decided by
# round-off, and with it whether the gradient check warns; a singular 8-θ variant,
# (1 | g) + (0 + x | g) + (0 + fc | site), stopped 3e-4 apart in θ in two runs of R itself)
run_case("two_terms_same_factor", d0, "y ~ fl + z + (0 + fl | g) + (0 + z | g)")
# contrasts= with a matrix-free treatment base change: contr.SAS
run_case("contr_sas_ordered", d0, "y ~ fo + fc + (1 | g)",
         list(contrasts = 'list(fo = "contr.treatment", fc = "contr.SAS")'))
# transformed slopes under ||, predicted on new data (scale() and log() with the fit's state)
run_case("slopes_transformed_newdata", d0, "y ~ scale(x) + log(tt) + (scale(x) + log(tt) || g)",
         newdata = nd)
# grouping factors that are interactions of a character column, a logical one and a factor
run_case("char_logical_interaction_groups", d0, "y ~ z + (1 | fc:site) + (1 | fl:g)")
# ranova reducing a || term and a term with a polynomial slope; subset and offset= together
run_case("ranova_double_bar_subset", d0, "y ~ x + z + (x + z || g) + (1 | site)",
         list(subset = "fo != 'top'", offset = "z / 2"))
# an ordered factor and a character column in a new-data prediction with a partial re.form
run_case("ordered_char_newdata", d0, "y ~ fo + x + (1 | gc) + (x | site)", list(REML = "FALSE"),
         newdata = nd)

## third round ---------------------------------------------------------------------------------
# factor levels and column names R's model.matrix pastes as they are (spaces, dashes, dots)
d3 <- d0
d3$trt.grp <- factor(c(ctl = "no trt", trtA = "trt-A", trtB = "trt B.2")[d0$fc],
                     levels = c("no trt", "trt-A", "trt B.2"))
d3$x_1 <- d0$x
run_case("level_names_special", d3, "y ~ trt.grp * x_1 + (1 | g)")
# R's nesting and power operators in the fixed part: fc/x and (fl + fc + z)^2
run_case("fixed_slash_power", d0, "y ~ fc/x + (fl + fc + z)^2 + (1 | g)")
# an intercept-only fixed part
run_case("intercept_only", d0, "y ~ 1 + (1 | g) + (1 | site)")
# %in% and a numeric grouping variable with non-integer values
d3$gnum <- c(0.5, 1.25, 2, 10)[1 + as.integer(d0$g) %% 4]
run_case("in_operator_numeric_group", d3, "y ~ x %in% fc + (1 | gnum)")
# an integer response, weights with NA (the rows dropped), REML = FALSE
d3$yi <- as.integer(round(d0$y * 10))
d3$wna <- d0$w; d3$wna[c(8, 90)] <- NA
run_case("integer_response_weights_na", d3, "yi ~ x + z + (x | g)",
         list(weights = "wna", REML = "FALSE"))
# a slope in an interaction grouping factor and a duplicated grouping factor
run_case("slope_in_interaction_group", d0, "y ~ x + (x | site:fl) + (1 | site)")

## fourth round: rank-deficient fixed effects, model comparisons ---------------------------------
# an empty cell of a character x ordered interaction: lme4 drops a column, lmerTest's type III
# tests the estimable part
d4 <- d0[!(d0$fc == "trtB" & d0$fo == "top"), ]
rownames(d4) <- NULL
run_case("empty_cell_char_ordered", d4, "y ~ fc * fo + x + (1 | g)")
# a covariate that is a linear function of another: its column dropped
d4b <- transform(d0, x2 = 2 * x + 1)
run_case("collinear_covariate", d4b, "y ~ x + x2 + z + (1 | g)")

# likelihood-ratio tests between lmer fits (refitted by ML), and the refusal of fits to
# different rows
comparison <- function(name, data, formulas) {
  assign("d", data, envir = globalenv())
  fits <- lapply(formulas, function(f) eval(parse(text = sprintf("lme4::lmer(%s, data = d)", f)),
                                            globalenv()))
  names(fits) <- paste0("m", seq_along(fits))
  r <- collect(do.call(anova, unname(fits)))
  out <- list(name = name, columns = columns_of(data), formulas = formulas,
              warnings = as.list(r$warnings), error = r$error)
  if (!is.null(r$fit)) {
    out$table <- tab(r$fit)
    out$text <- text_of(r$fit)
  }
  dir.create(file.path(out_dir, "anova"), showWarnings = FALSE)
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"),
             file.path(out_dir, "anova", paste0(name, ".json")))
  cat("anova", name, if (is.null(r$error)) "ok" else paste("ERROR:", r$error), "\n")
}
comparison("nested_three", d0, c("y ~ x + (1 | g)", "y ~ x + fc + fo + (1 | g)",
                                 "y ~ x + fc + fo + (x | g)"))
comparison("different_rows", dna, c("y ~ z + (1 | g)", "y ~ x + z + (1 | g)"))

## fifth round: factor codings inside random terms, new data with NA and new levels ------------
ord3 <- function(fo) factor(c("low", "med", "high")[pmin(as.integer(fo), 3)],
                            levels = c("low", "med", "high"), ordered = TRUE)
d5 <- transform(d0, fo3 = ord3(fo))
nd5 <- transform(nd, fo3 = ord3(fo))
nd5$g[3] <- NA
nd5$site[4] <- NA
# an ordered factor's polynomial contrasts in a random term (with an intercept: fo3.L, fo3.Q;
# (fo | site), four levels on five sites, has an optimizer path round-off decides, and
# whether the fit ends on the boundary with it)
run_case("ordered_slope_poly", d5, "y ~ fo3 + x + (fo3 | g)", newdata = nd5)
# a character by numeric slope without intercept and a logical slope
run_case("char_by_numeric_slope", d5, "y ~ fc * x + (0 + fc:x | g) + (fl | site)", newdata = nd5)

## sixth round: wide fixed parts ---------------------------------------------------------------
# 24 coefficients: lme4's summary leaves the correlations out (p > 12) and says so
d6 <- transform(d0, ff = factor(fc))
run_case("wide_fixed_three_way", d6, "y ~ ff * fo * fl + (1 | g)")
# poly() of two variables is R's polym(): products of the variables' orthogonal polynomials
# (columns 1.0, 2.0, 0.1, 1.1, 0.2), predicted on new data with the fit's coefficients
run_case("polym_two_variables", d0, "y ~ poly(x, z, degree = 2) + (1 | g)", newdata = nd)
run_case("polym_raw", d0, "y ~ poly(x, tt, degree = 2, raw = TRUE) + (1 | g)", newdata = nd)

## seventh round: factor(x, levels, labels), relevel(), interaction() -----------------------------
run_case("factor_levels_labels", d0,
         "y ~ factor(fi, levels = c(3, 1, 2)) + factor(fc, labels = c('C', 'A', 'B')) + (1 | g)",
         newdata = nd)
run_case("relevel_ordered_levels", d0,
         "y ~ relevel(factor(fc), ref = 'trtA') + ordered(fi, levels = 3:1) + x + (1 | g)",
         newdata = nd)
# (a grouping expression is evaluated in the model frame: site and fl must be variables of it)
run_case("interaction_fixed_and_group", d0,
         "y ~ interaction(fc, fo, sep = '_') + site + fl + (1 | interaction(site, fl))")
# ifelse() of numbers and of strings (a character variable, a factor in the model frame)
run_case("ifelse_terms", d0, "y ~ ifelse(x > 2, 1, 0) + ifelse(fl, 'yes', 'no') + ifelse(fc == 'ctl', z, -z) + (1 | g)",
         newdata = nd)
# comparisons of NA are NA (their rows dropped; NA & FALSE is FALSE), a logical that is
# FALSE throughout coded by both levels (an all-zero column lme4 drops), subset by one
run_case("na_comparisons", dna,
         "y ~ I(x > 2) + ifelse(x > 2 & z > 0, 1, 0) + I(!(z > 0.5)) + I(tt > 100) + (1 | g)",
         newdata = nd_na)
run_case("na_comparison_subset", dna, "y ~ x + (1 | g)", list(subset = "x > 2 | z > 0"))
