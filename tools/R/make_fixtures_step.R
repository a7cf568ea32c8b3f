# Reference results for lmerTest's step() of lmer fits (step.lmerModLmerTest, lmerTest 3.1-3):
# the backward-reduced random- and fixed-effect tables, the printed text and the final model.
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_step.R
# Writes tests/fixtures/step.json. The simulated data sets are stored in the fixture (columns
# with R's types); ham and sleepstudy are lmeformula.datasets' (tools/R/export_datasets.R,
# tools/R/make_fixtures_lmertest.R). About 15 s.
suppressMessages({library(lmerTest); library(jsonlite)})
source("tools/R/fixture_helpers.R")
options(digits = 7, warn = 1)

num <- function(x) unname(as.numeric(x))
tab <- function(t) {
  d <- as.data.frame(t)
  list(rownames = rownames(d), colnames = colnames(d),
       columns = lapply(as.list(d), num), heading = attr(t, "heading"))
}
deparse2 <- function(x) paste(deparse(x, width.cutoff = 500L), collapse = " ")
text_of <- function(x) paste(capture.output(print(x)), collapse = "\n")

# ---- simulated data: 12 groups of 8, a slope whose variance is small, a response with no
# fixed effects (y0) and one with no group effect (y1)
set.seed(14)
ng <- 12; nper <- 8
sim <- data.frame(g = factor(rep(sprintf("g%02d", 1:ng), each = nper)),
                  x = round(rnorm(ng * nper), 3))
b0 <- rnorm(ng, 0, 1); b1 <- rnorm(ng, 0, 0.15)
sim$f <- factor(sample(c("a", "b", "c"), ng * nper, TRUE))
sim$z <- round(runif(ng * nper), 3)
sim$y <- round(2 + 0.8 * sim$x + b0[sim$g] + b1[sim$g] * sim$x + rnorm(ng * nper, 0, 1), 3)
sim$y0 <- round(2 + b0[sim$g] + rnorm(ng * nper, 0, 1), 3)
sim$y1 <- round(2 + 0.5 * sim$x + 0.05 * b0[sim$g] + rnorm(ng * nper, 0, 1), 3)

# z missing in two rows: dropping z from the model changes the rows in use
sim_na <- sim
sim_na$z[c(3, 10)] <- NA
datasets <- list(ham = ham, sleepstudy = sleepstudy, sim = sim, sim_na = sim_na)
ham_f <- Informed.liking ~ Product * Information * Gender + (1 | Consumer) +
  (1 | Product:Consumer)
# name = list(formula, data, REML, step's arguments)
cases <- list(
  ham = list(ham_f, "ham", TRUE, list()),
  ham_kr = list(ham_f, "ham", TRUE, list(ddf = "Kenward-Roger")),
  ham_alpha = list(ham_f, "ham", TRUE, list(alpha.random = 0.05, alpha.fixed = 0.2)),
  ham_keep = list(ham_f, "ham", TRUE, list(keep = "Product:Information")),
  ham_keep_invalid = list(ham_f, "ham", TRUE, list(keep = c("Gender", "Nonsense"))),
  ham_no_reduction = list(ham_f, "ham", TRUE, list(reduce.fixed = FALSE, reduce.random = FALSE)),
  ham_ml = list(ham_f, "ham", FALSE, list(alpha.fixed = 0.1)),
  sleepstudy = list(Reaction ~ Days + (Days | Subject), "sleepstudy", TRUE, list()),
  sleepstudy_double_bar = list(Reaction ~ Days + (Days || Subject), "sleepstudy", TRUE,
                               list(alpha.random = 0.5)),
  sim_vector = list(y ~ x + (x | g), "sim", TRUE, list()),
  sim_double_bar = list(y ~ x + (x || g), "sim", TRUE, list()),
  sim_vector_fixed = list(y ~ x * f + z + (x | g), "sim", TRUE, list()),
  sim_vector_fixed_kept = list(y ~ x * f + z + (x | g), "sim", TRUE,
                               list(reduce.random = FALSE, keep = c("z", "x:f"))),
  sim_intercept_only = list(y0 ~ x * f + z + (1 | g), "sim", TRUE, list()),
  sim_random_fixed_only = list(y0 ~ x * f + z + (1 | g), "sim", TRUE,
                               list(reduce.random = FALSE, alpha.fixed = 0.2)),
  sim_to_lm = list(y1 ~ x * f + z + (1 | g), "sim", TRUE, list()),
  sim_to_lm_ml = list(y1 ~ x * f + z + (1 | g), "sim", FALSE, list())
)

# The chain of models step() fits, replayed as reduce_random and reduce_fixed make it (each
# refit from the last; the p-values' largest above alpha goes): each model's formula and
# theta, for the tests to compute the tables at lme4's optima. Checked against step()'s
# own tables and model below.
chain_of <- function(m, args) {
  arg <- function(nm, default) if (is.null(args[[nm]])) default else args[[nm]]
  a_random <- if (isFALSE(arg("reduce.random", TRUE))) 1 else arg("alpha.random", 0.1)
  a_fixed <- if (isFALSE(arg("reduce.fixed", TRUE))) 1 else arg("alpha.fixed", 0.05)
  keep <- arg("keep", character(0))
  ddf <- arg("ddf", "Satterthwaite")
  fit <- m
  models <- list(m)
  ran <- ranova(fit)
  repeat {
    p <- ran[-1, "Pr(>Chisq)"]
    if (!any(!is.na(p) & p > a_random)) break
    form <- attr(ran, "formulae")[[which.max(p)]]
    if (!lmerTest:::has_ranef(form)) {
      fit <- eval(as.call(lmerTest:::get_lm_call(fit, form)))
      models <- c(models, list(fit))
      break
    }
    fit <- update(fit, formula. = form)
    models <- c(models, list(fit))
    ran <- ranova(fit)
  }
  repeat {
    aov <- if (inherits(fit, "lmerMod")) drop1(fit, ddf = ddf) else
      drop1(fit, test = "F")[-1L, , drop = FALSE]
    consider <- setdiff(rownames(aov), keep)
    p <- aov[consider, "Pr(>F)"]
    if (!any(!is.na(p) & p > a_fixed)) break
    form <- update.formula(formula(fit), paste0("~.- (", consider[which.max(p)], ")"))
    fit <- update(fit, formula = form)
    models <- c(models, list(fit))
  }
  lapply(models, function(f) list(
    class = class(f)[1], formula = deparse2(formula(f)),
    theta = if (inherits(f, "lm")) NULL else num(getME(f, "theta"))))
}

fit <- function(cs) {
  call <- substitute(lmer(F, data = D, REML = R), list(F = cs[[1]], D = as.name(cs[[2]]),
                                                       R = cs[[3]]))
  suppressMessages(eval(call, envir = list2env(datasets, parent = asNamespace("lmerTest"))))
}

out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest"))),
            data = list(sim = columns_of(sim), sim_na = columns_of(sim_na)))
for (nm in names(cases)) {
  cs <- cases[[nm]]
  cat(nm, "\n")
  m <- fit(cs)
  res <- collect(do.call(step, c(list(m), cs[[4]])))
  s <- res$fit
  final <- get_model(s)
  chain <- suppressMessages(suppressWarnings(
    eval(substitute(chain_of(m, A), list(A = cs[[4]])),
         envir = list2env(datasets, parent = environment()))))
  stopifnot(identical(chain[[length(chain)]]$formula, deparse2(formula(final))),
            length(chain) == sum(s$random$Eliminated > 0, na.rm = TRUE) +
              sum(s$fixed$Eliminated > 0) + 1)
  args <- cs[[4]]
  names(args) <- gsub(".", "_", names(args), fixed = TRUE)  # step()'s names in Python
  out$cases[[nm]] <- list(
    formula = deparse2(cs[[1]]), data = cs[[2]], REML = cs[[3]], args = args,
    theta = num(getME(m, "theta")), chain = chain,
    warnings = res$warnings,
    random = tab(s$random), fixed = tab(s$fixed),
    drop1 = tab(attr(s, "drop1")),
    text = text_of(s),
    final = list(class = class(final)[1], formula = deparse2(formula(final)),
                 coef = as.list(if (inherits(final, "lm")) coef(final) else fixef(final)),
                 theta = if (inherits(final, "lm")) NULL else num(getME(final, "theta")),
                 logLik = as.numeric(logLik(final))))
}

# ---- R's messages for bad arguments
m <- fit(cases$ham)
msg <- function(expr) tryCatch({ expr; NULL }, error = function(e) conditionMessage(e))
out$errors <- list(
  ddf_lme4 = msg(step(m, ddf = "lme4")),
  ddf_bad = msg(step(m, ddf = "KR")),
  keep_numeric = msg(step(m, keep = 1)),
  kr_ml = msg(step(fit(cases$ham_ml), ddf = "Kenward-Roger")),
  rows_changed = msg(step(fit(list(y0 ~ x * f + z + (1 | g), "sim_na", TRUE))))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", null = "null",
                  pretty = FALSE), "tests/fixtures/step.json")
