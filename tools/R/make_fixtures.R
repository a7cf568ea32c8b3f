# Reference fixtures from lme4 for lmeformula's tests.
#
# Run from the repository root (needs R with lme4 and jsonlite):
#     LC_ALL=C Rscript tools/R/make_fixtures.R
# Writes tests/fixtures/cases/<case>.json: the data (when it is not one of the packaged data
# sets), the call, lFormula's structures, and for fitted cases lmer's estimates, criteria,
# accessors and printed output, plus the deviance function at fixed theta values.
suppressMessages({library(lme4); library(jsonlite)})
options(digits = 7, warn = 1)
out <- "tests/fixtures/cases"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
data(Machines, package = "nlme")
Machines <- as.data.frame(Machines)

## ---- custom data, generated once with a fixed seed and stored inside the fixtures ----------
set.seed(20261125)
n <- 120
sim <- data.frame(
  g1 = factor(rep(sprintf("G%02d", 1:10), each = 12)),
  gnum = rep(c(1, 2, 3, 10, 11, 12, 20, 100, 5, 7, 9, 15), length.out = n),
  a = factor(rep(c("p", "q", "r", "s", "t"), length.out = n)),
  b = factor(rep(sprintf("b%d", 1:10), times = 12)),
  c = factor(rep(sprintf("c%d", 1:10), each = 2, length.out = n)),
  e = factor(rep(c("e1", "e2", "e3"), length.out = n)),
  f = factor(sample(c("lo", "mid", "hi"), n, replace = TRUE), levels = c("lo", "mid", "hi")),
  h = factor(sample(c("u", "v"), n, replace = TRUE)),
  cc = sample(c("beta", "Alpha", "gamma", "delta", "alpha", "Zeta"), n, replace = TRUE),
  lg = sample(c(TRUE, FALSE), n, replace = TRUE),
  k = sample(c(2, 4, 8), n, replace = TRUE),
  x = round(rnorm(n), 3),
  z = round(runif(n, 0, 5), 3),
  w = round(runif(n, 0.5, 2), 3),
  off = round(rnorm(n, sd = 0.3), 3),
  stringsAsFactors = FALSE
)
sim$x2 <- 2 * sim$x
gi <- as.integer(sim$g1)
sim$y <- round(3 + 0.5 * sim$x + rnorm(10)[gi] + 0.4 * rnorm(10)[gi] * sim$x +
               0.3 * as.integer(sim$f) + rnorm(n, sd = 0.7), 3)
sim$y2 <- round(exp(sim$y / 3), 4)
simna <- sim
simna$x[c(5, 17, 60)] <- NA
simna$y[c(8, 17, 99)] <- NA
simna$f[c(33)] <- NA
# three-level nesting: 3 sites, 4 blocks per site, 2 plots per block, 5 obs per plot
nest <- expand.grid(rep = 1:5, plot = c("P1", "P2"), block = c("B1", "B2", "B3", "B4"),
                    site = c("S1", "S2", "S3"), stringsAsFactors = TRUE)
nest$resp <- round(10 + rnorm(3)[as.integer(nest$site)] +
                   rnorm(12)[as.integer(interaction(nest$site, nest$block))] +
                   rnorm(24)[as.integer(interaction(nest$site, nest$block, nest$plot))] * 0.5 +
                   rnorm(nrow(nest), sd = 0.3), 3)
# an interaction grouping with unobserved combinations
inter <- sim[!(sim$a == "q" & sim$h == "u"), ]
rownames(inter) <- NULL

sleep3 <- sleepstudy[sleepstudy$Subject %in% c(309, 330, 371), ]
rownames(sleep3) <- NULL

## ---- helpers ------------------------------------------------------------------------------
col_json <- function(d) {
  lapply(names(d), function(v) {
    x <- d[[v]]
    type <- if (is.ordered(x)) "ordered" else if (is.factor(x)) "factor" else
      if (is.logical(x)) "logical" else if (is.character(x)) "character" else "numeric"
    vals <- if (is.factor(x)) as.character(x) else x
    res <- list(name = v, type = type, values = vals)
    if (is.factor(x)) res$levels <- levels(x)
    res
  })
}
sparse_json <- function(m) {
  m <- as(m, "CsparseMatrix")
  list(dim = dim(m), i = m@i, p = m@p, x = m@x,
       rownames = if (is.null(rownames(m))) NULL else rownames(m))
}
msg_of <- function(expr) {
  warns <- character(); msgs <- character()
  val <- withCallingHandlers(
    tryCatch(expr, error = function(e) structure(conditionMessage(e), class = "err")),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, conditionMessage(m)); invokeRestart("muffleMessage") })
  list(value = val, warnings = warns, messages = msgs)
}

# A whole vector in three numbers, for the fixtures too large to store whole: the sum, the sum
# weighted by position and the sum weighted by position modulo a prime. For integer vectors
# (indices, codes) every partial sum is an integer below 2^53, so all three are exact and the
# tests compare them exactly; for doubles they are compared to round-off.
fingerprint <- function(v) {
  v <- as.numeric(v); k <- seq_along(v)
  c(sum(v), sum(v * k), sum(v * (k %% 9973)))
}

lformula_json <- function(lf, full = TRUE) {
  re <- lf$reTrms
  X <- lf$X
  res <- list(
    formula = paste(deparse(lf$formula, width.cutoff = 500), collapse = ""),
    n = nrow(X), X_colnames = colnames(X), X_assign = attr(X, "assign"),
    X_contrasts = attr(X, "contrasts"),
    X_col_dropped = if (is.null(attr(X, "col.dropped"))) NULL else as.list(attr(X, "col.dropped")),
    fr_names = names(lf$fr),
    theta = re$theta, lower = re$lower, Lind = re$Lind, Gp = re$Gp,
    cnms = unname(re$cnms), cnms_names = names(re$cnms),
    nl = unname(re$nl), nl_names = names(re$nl),
    flist_names = names(re$flist), flist_assign = attr(re$flist, "assign"),
    flist_levels = unname(lapply(re$flist, levels)),
    Ztlist_names = names(re$Ztlist),
    wmsgs = unname(lf$wmsgs)
  )
  if (full) {
    res$fr_rownames <- rownames(lf$fr)
    res$X <- unname(as.matrix(X))
    res$Zt <- sparse_json(re$Zt)
    res$Ztlist <- unname(lapply(re$Ztlist, sparse_json))
    res$Lambdat <- sparse_json(re$Lambdat)
    res$flist_codes <- unname(lapply(re$flist, as.integer))
  } else {
    res$X_colsums <- unname(colSums(X))
    res$X_fingerprint <- unname(apply(X, 2, fingerprint))
    res$Zt_dim <- dim(re$Zt); res$Zt_nnz <- length(re$Zt@x); res$Zt_sum <- sum(re$Zt@x)
    res$Zt_p_head <- head(re$Zt@p, 200); res$Zt_i_head <- head(re$Zt@i, 200)
    res$Zt_p_fingerprint <- fingerprint(re$Zt@p); res$Zt_i_fingerprint <- fingerprint(re$Zt@i)
    res$Zt_x_fingerprint <- fingerprint(re$Zt@x)
    res$Lambdat_nnz <- length(re$Lambdat@x)
    res$Lambdat_fingerprint <- list(i = fingerprint(re$Lambdat@i), p = fingerprint(re$Lambdat@p),
                                    x = fingerprint(re$Lambdat@x))
    res$flist_codes_head <- unname(lapply(re$flist, function(f) head(as.integer(f), 200)))
    res$flist_codes_fingerprint <- unname(lapply(re$flist, function(f) fingerprint(as.integer(f))))
  }
  res
}

fit_json <- function(fit, devfun, full = TRUE) {
  th <- getME(fit, "theta")
  start <- environment(devfun)$pp$theta * 1  # a copy: pp$theta is updated in place by devfun
  probes <- list(th, pmax(th * 0.7 + 0.1, getME(fit, "lower")), rep(1, length(th)) * (getME(fit, "lower") == 0) + 0.3 * (getME(fit, "lower") != 0))
  dev_at <- lapply(probes, function(t) list(theta = unname(t), value = devfun(t)))
  vc <- as.data.frame(VarCorr(fit))
  vc$var1[is.na(vc$var1)] <- ""; vc$var2[is.na(vc$var2)] <- ""
  re <- ranef(fit, condVar = TRUE)
  ranef_j <- lapply(names(re), function(nm) {
    d <- re[[nm]]
    pv <- attr(d, "postVar")
    list(name = nm, rownames = rownames(d), colnames = colnames(d), values = unname(as.matrix(d)),
         postVar = if (is.list(pv)) NULL else unname(as.vector(pv)))
  })
  ll <- logLik(fit)
  res <- list(
    REML = isREML(fit), theta = unname(th), theta_names = names(th),
    beta = unname(fixef(fit)), beta_names = names(fixef(fit)),
    sigma = sigma(fit), REMLcrit = REMLcrit(fit),
    deviance_ML = deviance(fit, REML = FALSE),
    devcomp_cmp = as.list(getME(fit, "devcomp")$cmp), devcomp_dims = as.list(getME(fit, "devcomp")$dims),
    vcov = unname(as.matrix(vcov(fit))),
    varcorr = list(grp = vc$grp, var1 = vc$var1, var2 = vc$var2, vcov = vc$vcov, sdcor = vc$sdcor),
    varcorr_print = paste(capture.output(print(VarCorr(fit))), collapse = "\n"),
    logLik = as.numeric(ll), logLik_df = attr(ll, "df"), AIC = AIC(fit), BIC = BIC(fit),
    nobs = nobs(fit), ngrps = as.list(ngrps(fit)), df_residual = df.residual(fit),
    isSingular = isSingular(fit), feval = fit@optinfo$feval,
    hessian = unname(fit@optinfo$derivs$Hessian), gradient = unname(fit@optinfo$derivs$gradient),
    optinfo_conv = fit@optinfo$conv$opt, optinfo_messages = unname(unlist(fit@optinfo$conv$lme4$messages)),
    start = unname(start), dev_at = dev_at,
    ranef = if (full) ranef_j else NULL,
    summary_text = paste(capture.output(print(summary(fit))), collapse = "\n"),
    print_text = paste(capture.output(print(fit)), collapse = "\n")
  )
  if (full) {
    res$fitted <- unname(fitted(fit))
    res$fitted_names <- names(fitted(fit))
    res$residuals <- unname(residuals(fit))
    res$residuals_pearson_scaled <- unname(residuals(fit, type = "pearson", scaled = TRUE))
    res$u <- unname(getME(fit, "u")); res$b <- unname(as.vector(getME(fit, "b")))
    res$RX <- unname(as.matrix(getME(fit, "RX")))
    res$coef <- lapply(coef(fit), function(d) list(rownames = rownames(d), colnames = colnames(d), values = unname(as.matrix(d))))
  } else {
    res$fitted_head <- unname(head(fitted(fit), 50))
    res$fitted_fingerprint <- fingerprint(fitted(fit))
    res$residuals_fingerprint <- fingerprint(residuals(fit))
    res$b_fingerprint <- fingerprint(as.vector(getME(fit, "b")))
    res$ranef_head <- lapply(re, function(d) unname(head(d[[1]], 50)))
  }
  res
}

## ---- the cases ----------------------------------------------------------------------------
# data: a packaged data set name, or a custom frame (stored in the fixture)
cases <- list(
  list(id = "sleepstudy_slope", data = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)", fit = TRUE, ml = TRUE),
  list(id = "sleepstudy_dblvert", data = "sleepstudy", formula = "Reaction ~ Days + (Days || Subject)", fit = TRUE),
  list(id = "sleepstudy_indep", data = "sleepstudy", formula = "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", fit = TRUE),
  list(id = "sleepstudy_intercept", data = "sleepstudy", formula = "Reaction ~ Days + (1 | Subject)", fit = TRUE),
  list(id = "sleep3", data = "sleep3", custom = TRUE, formula = "Reaction ~ Days + (Days | Subject)", fit = TRUE),
  list(id = "dyestuff", data = "Dyestuff", formula = "Yield ~ 1 + (1 | Batch)", fit = TRUE, ml = TRUE),
  list(id = "dyestuff2", data = "Dyestuff2", formula = "Yield ~ 1 + (1 | Batch)", fit = TRUE),
  list(id = "penicillin", data = "Penicillin", formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", fit = TRUE, ml = TRUE),
  list(id = "pastes", data = "Pastes", formula = "strength ~ 1 + (1 | batch/cask)", fit = TRUE, ml = TRUE),
  list(id = "cake", data = "cake", formula = "angle ~ recipe * temp + (1 | recipe:replicate)", fit = TRUE),
  list(id = "cake_ordered", data = "cake", formula = "angle ~ recipe + temperature + (1 | replicate)", fit = TRUE),
  list(id = "machines_factor", data = "Machines", formula = "score ~ Machine + (0 + Machine | Worker)", fit = TRUE),
  list(id = "machines_two", data = "Machines", formula = "score ~ Machine + (1 | Worker) + (0 + Machine | Worker)", fit = TRUE),
  list(id = "machines_nested", data = "Machines", formula = "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)", fit = TRUE),
  list(id = "machines_slope_factor", data = "Machines", formula = "score ~ Machine + (Machine | Worker)", fit = TRUE),
  list(id = "verbagg", data = "VerbAgg", formula = "as.numeric(r2 == \"Y\") ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", fit = TRUE, full = FALSE),
  list(id = "insteval", data = "InstEval", formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)", fit = TRUE, full = FALSE),
  list(id = "sim_na", data = "simna", custom = TRUE, formula = "y ~ x + (x | g1)", fit = TRUE),
  list(id = "sim_na_exclude", data = "simna", custom = TRUE, formula = "y ~ x + f + (1 | g1)", na.action = "na.exclude", fit = TRUE),
  list(id = "sim_factor_lhs", data = "sim", custom = TRUE, formula = "y ~ x + f + (f | g1)", control = "ignore_nRE"),
  list(id = "sim_factor_lhs0", data = "sim", custom = TRUE, formula = "y ~ x + (0 + f | g1)", fit = TRUE),
  list(id = "sim_ties", data = "sim", custom = TRUE, formula = "y ~ x + (1 | a) + (1 | b) + (1 | c)", fit = TRUE),
  list(id = "sim_ties2", data = "sim", custom = TRUE, formula = "y ~ x + (1 | e) + (x | b) + (1 | b)", fit = TRUE),
  list(id = "sim_ties3", data = "sim", custom = TRUE, formula = "y ~ x + (1 | b) + (1 | c) + (1 | a)"),
  list(id = "sim_dblvert2", data = "sim", custom = TRUE, formula = "y ~ x + (x + z || g1)", fit = TRUE),
  list(id = "nest3", data = "nest", custom = TRUE, formula = "resp ~ 1 + (1 | site/block/plot)", fit = TRUE),
  list(id = "sim_rankdef", data = "sim", custom = TRUE, formula = "y ~ x + x2 + z + (1 | g1)", fit = TRUE),
  list(id = "sim_weights", data = "sim", custom = TRUE, formula = "y ~ x + (1 | g1)", weights = "w", fit = TRUE),
  list(id = "sim_offset", data = "sim", custom = TRUE, formula = "y ~ x + offset(off) + (1 | g1)", offset = "z", fit = TRUE),
  list(id = "sim_transforms", data = "sim", custom = TRUE, formula = "log(y2) ~ poly(x, 2) + log(z + 10) + scale(w) + factor(k) + I(x^3) + (1 | g1)", fit = TRUE),
  list(id = "sim_numgroup", data = "sim", custom = TRUE, formula = "y ~ x + (1 | gnum)", fit = TRUE),
  list(id = "sim_chargroup", data = "sim", custom = TRUE, formula = "y ~ x + cc + (1 | cc)"),
  list(id = "sim_interaction_group", data = "inter", custom = TRUE, formula = "y ~ x + (1 | a:h)", fit = TRUE),
  list(id = "sim_fixed_nointercept", data = "sim", custom = TRUE, formula = "y ~ 0 + f + x + (1 | g1)"),
  list(id = "sim_fixed_minus1", data = "sim", custom = TRUE, formula = "y ~ f * x - 1 + (1 | g1)"),
  list(id = "sim_fixed_power", data = "sim", custom = TRUE, formula = "y ~ (f + h + x)^2 + (1 | g1)"),
  list(id = "sim_fixed_nest", data = "sim", custom = TRUE, formula = "y ~ f/x + (1 | g1)"),
  list(id = "sim_fixed_inter_only", data = "sim", custom = TRUE, formula = "y ~ f:h + (1 | g1)"),
  list(id = "sim_fixed_order", data = "sim", custom = TRUE, formula = "y ~ h:f + x + f + (1 | g1)"),
  list(id = "sim_fixed_logical", data = "sim", custom = TRUE, formula = "y ~ lg + x:lg + (1 | g1)"),
  list(id = "sim_lhs_transform", data = "sim", custom = TRUE, formula = "y ~ x + (log(z + 1) + I(x^2) | g1)", control = "ignore_nRE"),
  list(id = "sim_lhs_poly", data = "sim", custom = TRUE, formula = "y ~ x + (poly(x, 2) | g1)", control = "ignore_nRE"),
  list(id = "sim_nlev5_warning", data = "sim", custom = TRUE, formula = "y ~ x + (1 | e)", control = "warn_nlev5"),
  list(id = "sim_subset", data = "sim", custom = TRUE, formula = "y ~ x + (1 | g1)", subset = "x > -1", fit = TRUE),
  list(id = "sim_contrasts", data = "sim", custom = TRUE, formula = "y ~ f + h + (1 | g1)", contrasts = list(f = "contr.sum", h = "contr.helmert"), fit = TRUE),
  list(id = "sim_noint_ml", data = "sim", custom = TRUE, formula = "y ~ 0 + (1 | g1)", fit = TRUE),
  list(id = "sleep_quadratic", data = "sleepstudy", formula = "Reaction ~ Days + I(Days^2) + (Days | Subject)", fit = TRUE),
  list(id = "sleep_poly3", data = "sleepstudy", formula = "Reaction ~ poly(Days, 3) + (1 | Subject)", fit = TRUE),
  list(id = "pastes_explicit", data = "Pastes", formula = "strength ~ 1 + (1 | batch) + (1 | batch:cask)", fit = TRUE),
  list(id = "machines_slash", data = "Machines", formula = "score ~ Machine + (1 | Worker/Machine)", fit = TRUE),
  list(id = "cake_crossed", data = "cake", formula = "angle ~ temperature + (1 | recipe) + (1 | recipe:replicate)", fit = TRUE),
  list(id = "cbpp_proportion", data = "cbpp", formula = "incidence/size ~ period + (1 | herd)", fit = TRUE),
  list(id = "grouseticks_log", data = "grouseticks", formula = "log(TICKS + 1) ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION)", fit = TRUE),
  list(id = "arabidopsis", data = "Arabidopsis", formula = "log(total.fruits + 1) ~ nutrient * amd + rack + status + (1 | popu) + (1 | gen)", fit = TRUE),
  list(id = "cake_repeated_term", data = "cake", formula = "angle ~ temp + (1 | replicate) + (1 | replicate)", fit = TRUE),
  list(id = "sleep_minus_one", data = "sleepstudy", formula = "Reaction ~ Days + (Days - 1 | Subject) + (1 | Subject)", fit = TRUE),
  list(id = "probe_01", data = "sim", custom = TRUE, formula = "y ~ x * f + (x | g1:h)", control = "ignore_nRE_nlev", fit = TRUE),
  list(id = "probe_02", data = "sim", custom = TRUE, formula = "log(y2) ~ scale(x) + (scale(x) | g1)", control = "ignore_nRE_nlev", fit = TRUE),
  list(id = "probe_03", data = "sim", custom = TRUE, formula = "y ~ f + (1 | g1) + (0 + f | g1)", control = "ignore_nRE_nlev", fit = TRUE),
  list(id = "probe_04", data = "sim", custom = TRUE, formula = "y ~ offset(x) + (1 | g1)", control = "ignore_nRE_nlev", fit = TRUE),
  list(id = "probe_05", data = "sim", custom = TRUE, formula = "y ~ 1 + (1 | gnum:a)", control = "ignore_nRE_nlev", fit = TRUE),
  list(id = "probe_06", data = "sim", custom = TRUE, formula = "y ~ x + (1 | cc:h)", control = "ignore_nRE_nlev", fit = TRUE),
  list(id = "probe_07", data = "sim", custom = TRUE, formula = "y ~ I(x > 0) + (1 | g1)", control = "ignore_nRE_nlev", fit = TRUE),
  list(id = "probe_08", data = "sim", custom = TRUE, formula = "y ~ x + (x || g1:h)", control = "ignore_nRE_nlev", fit = TRUE),
  list(id = "probe_09", data = "sim", custom = TRUE, formula = "y ~ poly(z, 2, raw = TRUE) + (1 | b) + (1 | c)", control = "ignore_nRE_nlev", fit = TRUE),
  list(id = "probe_10", data = "sim", custom = TRUE, formula = "y ~ h * lg + (1 | e:a)", control = "ignore_nRE_nlev", fit = TRUE),
  list(id = "mm_01", data = "sim", custom = TRUE, formula = "y ~ f:x + h + (1 | g1)"),
  list(id = "mm_02", data = "sim", custom = TRUE, formula = "y ~ x %in% f + (1 | g1)"),
  list(id = "mm_03", data = "sim", custom = TRUE, formula = "y ~ (f + h + lg)^3 + (1 | g1)"),
  list(id = "mm_04", data = "sim", custom = TRUE, formula = "y ~ f - 1 + h + (1 | g1)"),
  list(id = "mm_05", data = "sim", custom = TRUE, formula = "y ~ poly(x, 2) * f + (1 | g1)"),
  list(id = "mm_06", data = "sim", custom = TRUE, formula = "y ~ log(z + 1):f + (1 | g1)"),
  list(id = "mm_07", data = "sim", custom = TRUE, formula = "y ~ 0 + f:h + (1 | g1)"),
  list(id = "mm_08", data = "sim", custom = TRUE, formula = "y ~ f + f:x - 1 + (1 | g1)"),
  list(id = "mm_09", data = "sim", custom = TRUE, formula = "y ~ 1 + I(f == \"lo\") + (1 | g1)"),
  list(id = "mm_10", data = "sim", custom = TRUE, formula = "y ~ x:z + x + (1 | g1)"),
  list(id = "mm_11", data = "sim", custom = TRUE, formula = "y ~ f * h * x + (1 | g1)"),
  list(id = "mm_12", data = "sim", custom = TRUE, formula = "y ~ h/f/x + (1 | g1)"),
  list(id = "mm_cake_ordered_interaction", data = "cake", formula = "angle ~ recipe * temperature + (1 | replicate)"),
  list(id = "insteval3000_ordered", data = "ie3000", custom = TRUE, formula = "y ~ service * studage + lectage + (1 | s) + (1 | d)", fit = TRUE)
)
controls <- list(
  ignore_nRE = lmerControl(check.nobs.vs.nRE = "ignore"),
  warn_nlev5 = lmerControl(check.nlev.gtreq.5 = "warning"),
  ignore_nRE_nlev = lmerControl(check.nobs.vs.nRE = "ignore", check.nobs.vs.nlev = "ignore")
)
ie3000 <- InstEval[1:3000, ]
datasets <- list(ie3000 = ie3000, cbpp = cbpp, grouseticks = grouseticks, Arabidopsis = Arabidopsis,
                 sleepstudy = sleepstudy, Dyestuff = Dyestuff, Dyestuff2 = Dyestuff2,
                 Penicillin = Penicillin, Pastes = Pastes, cake = cake, Machines = Machines,
                 VerbAgg = VerbAgg, InstEval = InstEval, sleep3 = sleep3, sim = sim,
                 simna = simna, nest = nest, inter = inter)

env <- list2env(c(datasets, list(controls = controls)))
call_text <- function(fn, cs, extra = "") {
  parts <- c(cs$formula, paste0("data = ", cs$data))
  if (!is.null(cs$weights)) parts <- c(parts, paste0("weights = ", cs$weights))
  if (!is.null(cs$offset)) parts <- c(parts, paste0("offset = ", cs$offset))
  if (!is.null(cs$na.action)) parts <- c(parts, paste0("na.action = ", cs$na.action))
  if (!is.null(cs$subset)) parts <- c(parts, paste0("subset = ", cs$subset))
  if (!is.null(cs$contrasts))
    parts <- c(parts, paste0("contrasts = list(", paste0(names(cs$contrasts), " = \"",
                                                           unlist(cs$contrasts), "\"", collapse = ", "), ")"))
  if (!is.null(cs$control)) parts <- c(parts, paste0("control = controls$", cs$control))
  if (nzchar(extra)) parts <- c(parts, extra)
  paste0(fn, "(", paste(parts, collapse = ", "), ")")
}
run <- function(text) eval(parse(text = text), envir = env)

for (cs in cases) {
  d <- datasets[[cs$data]]
  full <- is.null(cs$full) || cs$full
  t0 <- Sys.time()
  lf <- msg_of(run(call_text("lFormula", cs)))
  res <- list(id = cs$id, data = cs$data, formula = cs$formula,
              weights = cs$weights, offset = cs$offset, na_action = cs$na.action,
              subset = cs$subset, contrasts = cs$contrasts, control = cs$control,
              lformula = lformula_json(lf$value, full),
              lformula_warnings = lf$warnings, lformula_messages = lf$messages)
  if (isTRUE(cs$custom)) res$columns <- col_json(d)
  if (isTRUE(cs$fit)) {
    fitted <- msg_of(run(call_text("lmer", cs)))
    devfun <- run(call_text("lmer", cs, "devFunOnly = TRUE"))
    res$fit <- fit_json(fitted$value, devfun, full)
    res$fit_warnings <- fitted$warnings; res$fit_messages <- fitted$messages
    if (isTRUE(cs$ml)) {
      fml <- msg_of(run(call_text("lmer", cs, "REML = FALSE")))
      devfun_ml <- run(call_text("lmer", cs, "REML = FALSE, devFunOnly = TRUE"))
      res$fit_ml <- fit_json(fml$value, devfun_ml, full)
    }
  }
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null", na = "null"),
             file.path(out, paste0(cs$id, ".json")))
  cat(sprintf("%-28s %6.1fs\n", cs$id, as.numeric(Sys.time() - t0, units = "secs")))
}

## ---- error and warning messages -----------------------------------------------------------
one <- sim; one$g0 <- factor("only")
msgs <- list(
  no_bars = msg_of(lFormula(y ~ x, sim)),
  one_sided = msg_of(lFormula(~ x + (1 | g1), sim)),
  unknown_var = msg_of(lFormula(y ~ nosuch + (1 | g1), sim)),
  unknown_group = msg_of(lFormula(y ~ x + (1 | nosuchg), sim)),
  nlev_lt2 = msg_of(lFormula(y ~ x + (1 | g0), one)),
  nlev_ge_n = msg_of(lFormula(y ~ x + (1 | id), transform(sim, id = factor(seq_len(nrow(sim)))))),
  nobs_le_nre = msg_of(lFormula(y ~ x + (x + z | b), sim[1:30, ])),
  zero_cases = msg_of(lFormula(y ~ x + (1 | g1), transform(sim, x = NA_real_))),
  rank_stop = msg_of(lFormula(y ~ x + x2 + (1 | g1), sim, control = lmerControl(check.rankX = "stop.deficient"))),
  rank_drop = msg_of(lFormula(y ~ x + x2 + z + (1 | g1), sim)),
  scale_warn = msg_of(lFormula(y ~ x + I(z * 1e4) + (1 | g1), sim)),
  plus_group = msg_of(lFormula(y ~ x + (1 | a + b), sim)),
  response_factor = msg_of(lFormula(f ~ x + (1 | g1), sim)),
  nlev5_warn = msg_of(lFormula(y ~ x + (1 | e), sim, control = lmerControl(check.nlev.gtreq.5 = "warning"))),
  nlev_ge_n_warn = msg_of(lFormula(y ~ x + (1 | id), transform(sim, id = factor(seq_len(nrow(sim)))), control = lmerControl(check.nobs.vs.nlev = "warning", check.nobs.vs.nRE = "warning"))),
  deviance_reml = msg_of(deviance(lmer(Reaction ~ Days + (Days | Subject), sleepstudy)))
)
msgs <- lapply(msgs, function(m) list(error = if (inherits(m$value, "err")) unclass(m$value) else NULL,
                                        warnings = m$warnings, messages = m$messages))
writeLines(toJSON(msgs, auto_unbox = TRUE, null = "null", pretty = TRUE),
           "tests/fixtures/messages.json")
writeLines(toJSON(list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                       Matrix = as.character(packageVersion("Matrix")),
                       date = format(Sys.Date())), auto_unbox = TRUE, pretty = TRUE),
           "tests/fixtures/VERSION.json")
