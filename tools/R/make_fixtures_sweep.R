# Differential sweep: glmer and lmer on simulated data and formulas that the other fixtures do
# not cover (families/links, response kinds, weights, offsets, NA, subset, contrasts, nAGQ,
# random-term shapes). Run from the repository root:
#   LC_ALL=C Rscript tools/R/make_fixtures_sweep.R
# Writes tests/fixtures/sweep/<name>.json: the data (column types and factor levels kept), the
# call's arguments, and what lme4 returns (estimates, accessors, printed summary, warnings or
# the error message).
suppressMessages({library(lme4); library(jsonlite)})
options(digits = 7, warn = 1)
out_dir <- "tests/fixtures/sweep"
dir.create(file.path(out_dir, "anova"), showWarnings = FALSE, recursive = TRUE)

num <- function(x) unname(as.numeric(x))
mat <- function(x) { x <- as.matrix(x); list(values = unname(x), rownames = rownames(x),
                                            colnames = colnames(x)) }

source("tools/R/fixture_helpers.R")  # columns_of, collect

accessors <- function(m, glmm) {
  re <- ranef(m, condVar = TRUE)
  ranef_out <- lapply(re, function(d) list(values = unname(as.matrix(d)), rownames = rownames(d),
                                           colnames = colnames(d),
                                           postVar = as.vector(attr(d, "postVar"))))
  vc <- as.data.frame(VarCorr(m))
  out <- list(
    theta = num(getME(m, "theta")), beta = num(fixef(m)), fixef_names = names(fixef(m)),
    feval = m@optinfo$feval,
    logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"),
    AIC = AIC(m), BIC = BIC(m), sigma = sigma(m),
    deviance = if (!glmm && isREML(m)) REMLcrit(m) else deviance(m),
    df_residual = df.residual(m), nobs = nobs(m),
    vcov = unname(as.matrix(vcov(m))),
    ranef = ranef_out,
    varcorr = list(grp = vc$grp, var1 = vc$var1, var2 = vc$var2, vcov = vc$vcov, sdcor = vc$sdcor),
    fitted = num(fitted(m)),
    resid_deviance = num(residuals(m, type = "deviance")),
    resid_pearson = num(residuals(m, type = "pearson")),
    resid_response = num(residuals(m, type = "response")),
    predict_link = num(predict(m)),
    predict_population = num(predict(m, re.form = NA)),
    weights = num(weights(m)),
    isSingular = isSingular(m),
    cnms = getME(m, "cnms"),
    flist_levels = lapply(getME(m, "flist"), levels),
    Zt_dim = dim(getME(m, "Zt")),
    X_colnames = colnames(getME(m, "X")),
    conv_messages = as.list(m@optinfo$conv$lme4$messages),
    coef = lapply(coef(m), function(d) list(values = unname(as.matrix(d)),
                                            rownames = rownames(d), colnames = colnames(d))),
    anova_text = if (glmm) NULL else paste(capture.output(print(anova(m))), collapse = "\n"),
    summary = paste(capture.output(print(summary(m))), collapse = "\n"),
    print = paste(capture.output(print(m)), collapse = "\n")
  )
  # getME's sizes and index vectors
  out$getme <- lapply(setNames(nm = c("Gp", "lower", "Lind", "n_rtrms", "n_rfacs", "N", "n",
                                      "p", "q", "p_i", "l_i", "q_i", "k", "m_i", "m",
                                      "offset")),
                      function(nm) unname(getME(m, nm)))
  # predictions with the first random-effects term only
  bars <- findbars(formula(m))
  if (length(bars) > 1) {
    out$re_form_first <- paste("~", paste(deparse(bars[[1]]), collapse = " "))
    pr <- tryCatch(num(predict(m, re.form = as.formula(out$re_form_first))),
                   error = function(e) NULL)  # (dummy() terms fail in lme4's mkNewReTrms)
    if (is.null(pr)) out$re_form_first <- NULL else out$predict_re_first <- pr
  }
  if (glmm) {
    out$resid_working <- num(residuals(m, type = "working"))
    out$predict_response <- num(predict(m, type = "response"))
    out$confint_wald <- mat(confint(m, method = "Wald"))
    # refit to a simulated response (the response stored: R's random numbers are not ours)
    # simulate(seed =) reseeds R's generator: keep the data sets' draws what they were
    saved <- get(".Random.seed", envir = globalenv())
    sim <- tryCatch(simulate(m, nsim = 1, seed = 11)[[1]], error = function(e) e)
    assign(".Random.seed", saved, envir = globalenv())
    if (inherits(sim, "error")) {
      out$simulate_error <- conditionMessage(sim)
      r2 <- list(fit = NULL)
    } else r2 <- collect(refit(m, newresp = sim))
    if (!is.null(r2$error)) out$refit_error <- r2$error
    if (!is.null(r2$fit)) out$refit <- list(
      # a factor as 0/1 (first level = failure), as refit takes it
      newresp = if (is.matrix(sim)) unname(sim) else if (is.factor(sim))
        as.numeric(sim) - 1 else num(sim),
      feval = r2$fit@optinfo$feval,
                                            theta = num(getME(r2$fit, "theta")),
                                            beta = num(fixef(r2$fit)),
                                            logLik = as.numeric(logLik(r2$fit)))
  } else {
    out$REML <- isREML(m)
  }
  out
}

run_case <- function(name, data, formula, family = NULL, ..., data_name = "d", fitter = NULL,
                     newdata = NULL, py = list()) {
  args <- list(...)
  if (is.function(family)) family <- family()
  glmm <- !is.null(family)
  # the call names the data "d" and the weights/offset columns by name, as a user writes it
  # (the summary's Data:, Weights:, Offset: and Subset: lines show them)
  call_args <- c(list(formula = as.formula(formula), data = as.name("d")), args)
  if (glmm) call_args$family <- family
  for (a in c("weights", "offset")) if (is.character(call_args[[a]]))
    call_args[[a]] <- as.name(call_args[[a]])
  if (is.character(call_args$subset))
    call_args$subset <- parse(text = call_args$subset)[[1]]
  env <- new.env(); env$d <- data
  r <- collect(eval(as.call(c(as.name(if (glmm) "glmer" else "lmer"), call_args)), env))
  out <- list(name = name, columns = columns_of(data), formula = formula,
              family = if (glmm) family$family else NULL,
              link = if (glmm) family$link else NULL,
              args = lapply(args, function(a) if (is.function(a) || is.language(a)) NULL else a),
              py = py, data_name = data_name,
              warnings = as.list(r$warnings), error = r$error)
  if (!is.null(r$fit)) {
    m <- r$fit
    # the summary's Data: line names the data argument; refit with the name "d"
    out <- c(out, accessors(m, glmm))
    if (!is.null(newdata)) {
      out$newdata <- columns_of(newdata)
      out$predict_newdata <- num(predict(m, newdata = newdata, allow.new.levels = TRUE))
      if (glmm) out$predict_newdata_response <- num(predict(m, newdata = newdata,
                                                            allow.new.levels = TRUE,
                                                            type = "response"))
    }
  }
  writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null"),
             file.path(out_dir, paste0(name, ".json")))
  cat(name, if (is.null(r$error)) "ok" else paste("ERROR:", r$error),
      if (length(r$warnings)) paste("| warn:", paste(r$warnings, collapse = "; ")) else "", "\n")
  invisible(r$fit)
}

## simulated designs --------------------------------------------------------------------------
set.seed(2024)
ng <- 20; nper <- 10; n <- ng * nper
g <- factor(rep(sprintf("g%02d", seq_len(ng)), each = nper))
h <- factor(rep(rep(c("a", "b"), each = nper / 2), ng))
x <- round(rnorm(n), 3)
z <- round(runif(n), 3)
f3 <- factor(sample(c("lo", "mid", "hi"), n, TRUE), levels = c("lo", "mid", "hi"))
b0 <- rnorm(ng, sd = 0.7); b1 <- rnorm(ng, sd = 0.4)
eta <- -0.3 + 0.8 * x + b0[g] + b1[g] * x
ybin <- rbinom(n, 1, plogis(eta))
base <- data.frame(g = g, h = h, x = x, z = z, f3 = f3)
d_bin <- cbind(base, y = ybin)

# binomial links on 0/1
for (lk in c("probit", "cloglog", "cauchit"))
  run_case(paste0("bin_", lk), d_bin, "y ~ x + (1 | g)", binomial(link = lk))
# log link: probabilities well below 1
d_binlog <- cbind(base, y = rbinom(n, 1, exp(-1.6 + 0.3 * z + 0.3 * b0[g])))
run_case("bin_log", d_binlog, "y ~ z + (1 | g)", binomial(link = "log"))
# response kinds
d_fac <- d_bin; d_fac$y <- factor(ifelse(d_bin$y == 1, "yes", "no"))
run_case("bin_factor_resp_diag", d_fac, "y ~ x + (x || g)", binomial,
         newdata = data.frame(x = c(0, 1, -1), g = factor(c("g01", "g02", "new"))))
d_lgl <- d_bin; d_lgl$y <- d_bin$y == 1
run_case("bin_logical_slope", d_lgl, "y ~ x + f3 + (x | g)", binomial)
# cbind and proportions with weights
size <- sample(3:12, n, TRUE)
succ <- rbinom(n, size, plogis(eta))
d_cb <- cbind(base, succ = succ, size = size, prop = succ / size)
run_case("bin_cbind_nagq0", d_cb, "cbind(succ, size - succ) ~ x + f3 + (1 | g)", binomial,
         nAGQ = 0)
run_case("bin_prop_weights_agq", d_cb, "prop ~ x + (1 | g)", binomial, weights = "size",
         nAGQ = 7, py = list(weights = "size"))
run_case("bin_cbind_nested", d_cb, "cbind(succ, size - succ) ~ x + (1 | g/h)", binomial)
# poisson links, offsets, weights
expo <- round(runif(n, 0.5, 3), 3)
cnt <- rpois(n, expo * exp(0.4 + 0.3 * x + 0.5 * b0[g]))
d_poi <- cbind(base, cnt = cnt, expo = expo, lexpo = log(expo))
run_case("poi_sqrt", d_poi, "cnt ~ x + (1 | g)", poisson(link = "sqrt"))
cnt_id <- rpois(n, 5 + 2 * z + 1.5 * abs(b0[g]))
run_case("poi_identity", cbind(base, cnt = cnt_id), "cnt ~ z + (1 | g)", poisson(link = "identity"))
run_case("poi_offset_arg", d_poi, "cnt ~ x + (1 | g)", poisson, offset = "lexpo",
         py = list(offset = "lexpo"),
         newdata = data.frame(x = c(0.5, -0.5), g = factor(c("g03", "zz")), lexpo = c(0, 1)))
run_case("poi_factor_re", d_poi, "cnt ~ x + offset(log(expo)) + (0 + h | g)", poisson)
run_case("poi_agq9", d_poi, "cnt ~ x + offset(log(expo)) + (1 | g)", poisson, nAGQ = 9)
wts <- round(runif(n, 0.5, 2), 2)
run_case("poi_weights", cbind(d_poi, w = wts), "cnt ~ x + (1 | g)", poisson, weights = "w",
         py = list(weights = "w"))
run_case("poi_crossed_fh", d_poi, "cnt ~ x * h + (1 | g) + (1 | f3)", poisson)
# Gamma and inverse Gaussian
mu_g <- exp(1 + 0.4 * x + 0.5 * b0[g])
yg <- round(rgamma(n, shape = 5, rate = 5 / mu_g), 4)
d_gam <- cbind(base, y = yg)
run_case("gamma_inverse", d_gam, "y ~ x + (1 | g)", Gamma)
run_case("gamma_identity", d_gam, "y ~ z + (1 | g)", Gamma(link = "identity"))
run_case("invgauss_default", d_gam, "y ~ x + (1 | g)", inverse.gaussian)
run_case("gaussian_log", d_gam, "y ~ x + (1 | g)", gaussian(link = "log"))
# NA handling, subset, contrasts, start, control
d_na <- d_bin; d_na$x[c(3, 50)] <- NA; d_na$y[7] <- NA; d_na$g[99] <- NA
run_case("bin_na_omit", d_na, "y ~ x + (1 | g)", binomial)
run_case("bin_na_exclude", d_na, "y ~ x + (1 | g)", binomial, na.action = na.exclude,
         py = list(na_action = "exclude"))
run_case("bin_subset", d_bin, "y ~ x + (1 | g)", binomial, subset = "z > 0.2",
         py = list(subset = "z > 0.2"))
run_case("poi_contr_sum", d_poi, "cnt ~ f3 + (1 | g)", poisson,
         contrasts = list(f3 = "contr.sum"), py = list(contrasts = list(f3 = "contr.sum")))
run_case("bin_start", d_bin, "y ~ x + (1 | g)", binomial, start = list(theta = 0.5),
         py = list(start = list(theta = 0.5)))
run_case("bin_bobyqa", d_bin, "y ~ x + (1 | g)", binomial,
         control = quote(glmerControl(optimizer = "bobyqa")), py = list(control = list(optimizer = "bobyqa")))
# singular: no group variation
d_sing <- cbind(base, y = rbinom(n, 1, plogis(0.2 + 0.5 * x)))
run_case("bin_singular_slope", d_sing, "y ~ x + (x | g)", binomial)
# interaction of a factor and numeric in the random term, intercept-free fixed effects
run_case("poi_noint", d_poi, "cnt ~ 0 + f3 + (1 | g)", poisson)
run_case("bin_gh", d_bin, "y ~ x + (1 | g:h)", binomial)

## lmer corners ------------------------------------------------------------------------------
set.seed(77)
yl <- 2 + 0.5 * x - 0.3 * z + as.numeric(f3) * 0.2 + 1.2 * b0[g] + 0.5 * b1[g] * x +
  0.3 * (h == "b") * b0[g] + rnorm(n, sd = 0.6)
d_lm <- cbind(base, y = round(yl, 3), pos = round(exp(z) + 1, 3))
run_case("lm_fac_by_num", d_lm, "y ~ x + (0 + h:x | g)")
run_case("lm_interaction_re", d_lm, "y ~ x * z + (x:z | g)")
run_case("lm_poly", d_lm, "y ~ poly(x, 2) + log(pos) + I(z^2) + (1 | g)")
run_case("lm_noint_ml", d_lm, "y ~ 0 + x + f3 + (1 | g)", REML = FALSE)
run_case("lm_gh", d_lm, "y ~ x + (1 | g:h) + (1 | g)")
run_case("lm_weights_offset", cbind(d_lm, w = wts), "y ~ x + (x | g)", weights = "w",
         offset = "z", py = list(weights = "w", offset = "z"))
d_lmna <- d_lm; d_lmna$z[c(5, 6)] <- NA; d_lmna$f3[9] <- NA; d_lmna$h[150] <- NA
run_case("lm_na_types", d_lmna, "y ~ z + f3 + (1 | g) + (1 | h)")
d_unused <- d_lm; d_unused$f3 <- factor(as.character(d_lm$f3), levels = c("lo", "mid", "hi", "xx"))
d_unused$g <- factor(as.character(d_lm$g), levels = c(levels(d_lm$g), "g99"))
run_case("lm_unused_levels", d_unused, "y ~ f3 + (1 | g)")
d_bool <- d_lm; d_bool$flag <- d_lm$z > 0.5
run_case("lm_bool", d_bool, "y ~ flag + (flag | g)")
run_case("lm_char_group", transform(d_lm, gc = as.character(g)), "y ~ x + (1 | gc)")
run_case("lm_f3_slope", d_lm, "y ~ f3 + (f3 | g)")
run_case("lm_diag_factor", d_lm, "y ~ x + (1 + x || g) + (1 | h:g)")

## second batch ------------------------------------------------------------------------------
set.seed(3030)
# a three-level factor response: binomial takes the first level as failure, the rest success
d_f3 <- d_bin; d_f3$y <- factor(sample(c("none", "some", "many"), n, TRUE, prob = c(.4, .3, .3)),
                                levels = c("none", "some", "many"))
run_case("bin_factor3_resp", d_f3, "y ~ x + (1 | g)", binomial)
# logical response with NA, na.exclude, subset together
d_lna <- d_lgl; d_lna$y[c(4, 40)] <- NA
run_case("bin_logical_na_subset", d_lna, "y ~ x + (1 | g)", binomial, subset = "f3 != 'lo'",
         na.action = na.exclude, py = list(subset = "f3 != 'lo'", na_action = "exclude"))
# cbind with an offset and correlated slope on a poisson-like scale
run_case("bin_cbind_offset_slope", d_cb, "cbind(succ, size - succ) ~ x + offset(z) + (x | g)",
         binomial)
# proportions with weights, non-integer successes: glm's warning
d_cbw <- d_cb; d_cbw$w2 <- d_cb$size + 0.5
run_case("bin_prop_nonint", d_cbw, "prop ~ x + (1 | g)", binomial, weights = "w2",
         py = list(weights = "w2"))
# zero weights
d_cbz <- d_cb; d_cbz$size0 <- ifelse(seq_len(n) %% 17 == 0, 0, d_cb$size)
d_cbz$prop0 <- ifelse(d_cbz$size0 == 0, 0, d_cb$prop)
run_case("bin_prop_zero_weights", d_cbz, "prop0 ~ x + (1 | g)", binomial, weights = "size0",
         py = list(weights = "size0"))
# poisson: correlated slope, nested explicit, non-integer counts
run_case("poi_slope", d_poi, "cnt ~ x + (x | g)", poisson)
run_case("poi_nested_explicit", d_poi, "cnt ~ x + (1 | g) + (1 | g:h)", poisson)
# (non-integer Poisson counts are left out: lme4's compiled Poisson aic is -Inf for them, its
# fit stays at the start with a NaN log-likelihood and a warning per count)
run_case("poi_nagq0_factor", d_poi, "cnt ~ f3 * x + (1 | g)", poisson, nAGQ = 0)
# Gamma nAGQ = 0 and with weights, inverse Gaussian log
run_case("gamma_nagq0", d_gam, "y ~ x + (1 | g)", Gamma(link = "log"), nAGQ = 0)
run_case("gamma_weights", cbind(d_gam, w = wts), "y ~ x + (1 | g)", Gamma(link = "log"),
         weights = "w", py = list(weights = "w"))
run_case("invgauss_log_agq", d_gam, "y ~ x + (1 | g)", inverse.gaussian(link = "log"), nAGQ = 3)
# refusals
run_case("err_bin_counts", d_poi, "cnt ~ x + (1 | g)", binomial)
run_case("err_bin_negweights", transform(d_cb, wn = size - 5), "prop ~ x + (1 | g)", binomial,
         weights = "wn", py = list(weights = "wn"))
run_case("err_poi_negative", transform(d_poi, cn = cnt - 3), "cn ~ x + (1 | g)", poisson)
run_case("err_nagq_slope", d_poi, "cnt ~ x + (x | g)", poisson, nAGQ = 2)
run_case("err_cbind_negative", d_cb, "cbind(succ, succ - size) ~ x + (1 | g)", binomial)
run_case("err_gamma_zero", transform(d_gam, y0 = ifelse(seq_len(n) == 3, 0, y)),
         "y0 ~ x + (1 | g)", Gamma)
run_case("err_char_resp", transform(d_fac, yc = as.character(y)), "yc ~ x + (1 | g)", binomial)
# lmer: more corners
run_case("lm_slash", d_lm, "y ~ x + (1 | g/h)")
run_case("lm_three_slopes", d_lm, "y ~ x + z + (1 + x + z | g)", REML = FALSE)
run_case("lm_minus_int_slope", d_lm, "y ~ x + (x - 1 | g) + (1 | g)")
run_case("lm_log_resp_scale", d_lm, "log(pos) ~ scale(x) + (1 | g)")
run_case("lm_factor_numeric", transform(d_lm, k = rep(1:4, length.out = n)),
         "y ~ factor(k) + (1 | g)")
run_case("lm_offset_formula_weights", cbind(d_lm, w = wts), "y ~ x + offset(z) + (1 | g)",
         weights = "w", REML = FALSE, py = list(weights = "w"))
run_case("lm_subset_string", d_lm, "y ~ x + (1 | g)", subset = "f3 != 'lo'",
         py = list(subset = "f3 != 'lo'"))
run_case("lm_interaction_group", d_lm, "y ~ x + (1 | f3:h)")
run_case("lm_na_exclude", d_lmna, "y ~ z + (1 | g)", na.action = na.exclude,
         py = list(na_action = "exclude"),
         newdata = data.frame(z = c(0.5, NA, 0.1), g = factor(c("g01", "g02", "zz"))))
run_case("lm_newdata_factor_slope", d_lm, "y ~ f3 + x + (x | g)",
         newdata = data.frame(f3 = factor(c("hi", "lo"), levels = c("lo", "mid", "hi")),
                              x = c(1, 2), g = factor(c("g05", "new"))))
d_int <- d_lm; d_int$k <- as.integer(rep(1:5, length.out = n))
run_case("lm_integer_col", d_int, "y ~ k + (k | g)")

## third batch -------------------------------------------------------------------------------
set.seed(4040)
# prior weights on a 0/1 response (integer), NA in the weights column (the row is dropped)
d_bw <- cbind(d_bin, w = sample(1:3, n, TRUE))
run_case("bin_binary_weights", d_bw, "y ~ x + (1 | g)", binomial, weights = "w",
         py = list(weights = "w"))
d_bwna <- d_bw; d_bwna$w[c(11, 12)] <- NA
run_case("bin_weights_na", d_bwna, "y ~ x + (1 | g)", binomial, weights = "w",
         py = list(weights = "w"))
# a factor slope without intercept, binomial; dummy() in a random term
run_case("bin_factor_slope", d_bin, "y ~ x + (0 + f3 | g)", binomial)
run_case("poi_dummy", d_poi, "cnt ~ x + (1 | g) + (0 + dummy(f3, \"hi\") | g)", poisson)
# offset in the formula and as argument together; quadrature with many points on cbind
run_case("poi_two_offsets", cbind(d_poi, half = 0.5), "cnt ~ x + offset(log(expo)) + (1 | g)",
         poisson, offset = "half", py = list(offset = "half"))
run_case("bin_cbind_agq25", d_cb, "cbind(succ, size - succ) ~ x + (1 | g)", binomial, nAGQ = 25)
# a logical grouping factor, an integer grouping variable, I() of a comparison
d_lm3 <- cbind(d_lm, flag = d_lm$z > 0.5, k = rep(1:8, length.out = n), allna = NA_real_)
run_case("lm_logical_group", d_lm3, "y ~ x + (1 | flag) + (1 | g)",
         control = quote(lmerControl(calc.derivs = FALSE)),
         py = list(control = list(calc_derivs = FALSE)))
run_case("lm_integer_group", d_lm3, "y ~ x + (1 | k)")
run_case("lm_I_compare", d_lm3, "y ~ I(x > 0) + poly(z, 2, raw = TRUE) + (1 | g)")
run_case("lm_unrelated_na_column", d_lm3, "y ~ x + (1 | g)")
run_case("lm_fixed_interactions_noint", d_lm3, "y ~ f3 * h - 1 + x:z + (1 | g)")
run_case("lm_dummy_default", d_lm3, "y ~ x + (1 | g) + (0 + dummy(f3) | g)")
run_case("lm_offset_log", d_lm3, "log(pos) ~ x + offset(log(pos) / 2) + (1 | g)", REML = FALSE)

# likelihood-ratio tests between GLMMs (and the fits' order by df)
ma <- glmer(y ~ x + (1 | g), d_bin, binomial)
mb <- glmer(y ~ x + f3 + (1 | g), d_bin, binomial)
mc <- glmer(y ~ x + f3 + (x | g), d_bin, binomial)
tab <- anova(mb, ma, mc)
dtab <- as.data.frame(tab)
writeLines(toJSON(list(columns = columns_of(d_bin),
                       formulas = c("y ~ x + (1 | g)", "y ~ x + f3 + (1 | g)",
                                    "y ~ x + f3 + (x | g)"),
                       rownames = rownames(dtab), colnames = colnames(dtab),
                       values = lapply(as.list(dtab), unname),
                       text = paste(capture.output(print(tab)), collapse = "\n")),
                  digits = NA, auto_unbox = TRUE, null = "null", na = "null"),
           file.path(out_dir, "anova", "glmm.json"))
