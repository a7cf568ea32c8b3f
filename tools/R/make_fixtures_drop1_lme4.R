# lme4's drop1 (drop1.merMod), as lmerTest's drop1(model, ddf = "lme4") calls it: each term of
# the scope (by default the marginal fixed-effects terms, drop.scope) dropped by
# update(object, ~ . - term), every model's AIC from extractAIC.merMod, that is from
# logLik(refitML(fit)) (a REML fit is refitted by ML, starting from its REML theta), the
# "npar" column (the difference in the number of parameters), LRT and Pr(Chi) with
# test = "Chisq", the heading and R's printed table. Also lme4's own drop1 of the model as an
# lmerMod (the same method, which lmerTest reaches through NextMethod), and R's messages for a
# scope that is not among the term labels, test = "user" without sumFun (and a sumFun
# without it), a test that is not one of the choices, and rows that change with the dropped
# term (NA in its variable). test = "user" with a sumFun of one's own too.
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_drop1_lme4.R
# Writes tests/fixtures/drop1_lme4.json (a few seconds).
suppressMessages({library(lmerTest); library(jsonlite)})
source("tools/R/fixture_helpers.R")
options(digits = 7, warn = 1)
num <- function(x) unname(as.numeric(x))
catch <- function(expr) tryCatch(expr, error = function(e) list(error = conditionMessage(e)))
tab <- function(t) {
  d <- as.data.frame(t)
  list(rownames = rownames(d), colnames = colnames(d),
       columns = lapply(as.list(d), num),
       heading = attr(t, "heading"),
       text = paste(capture.output(print(t)), collapse = "\n"))
}
Orthodont <- nlme::Orthodont
# test = "user": sumFun(object, scale =, k =) for the <none> row, sumFun(object, fit, ...)
# for each refit; a call's "sumFun" names one of these
sum_funs <- list(
  deviance_nfixef = function(x, y = NULL, scale, k, ...) {
    fit <- if (is.null(y)) x else y
    c(deviance = deviance(refitML(fit)), nfixef = length(fixef(fit)))
  })

# each model with the drop1 calls made on it: args are drop1's (scope, test, k, scale,
# sumFun)
cases <- list(
  sleep = list(formula = "Reaction ~ Days + (Days | Subject)", data = "sleepstudy",
               REML = TRUE,
               calls = list(list(), list(test = "Chisq"))),
  # only the interaction is marginal; lme4's drop1 accepts any term label as scope (lmerTest's
  # marginality check is on its own path, not reached with ddf = "lme4"), so recipe can be
  # dropped and recipe:temp then gets a column per recipe; scale only adds a heading line;
  # an empty scope leaves the <none> row, which R then names "1" (a one-row matrix's column
  # loses its names)
  cake = list(formula = "angle ~ recipe * temp + (1 | recipe:replicate)", data = "cake",
              REML = TRUE,
              calls = list(list(), list(test = "Chisq"),
                           list(scope = "recipe", test = "Chisq"),
                           list(scope = c("recipe:temp", "temp"), test = "Chisq"),
                           list(scale = 2.5), list(scope = character(0)),
                           list(scope = "Days"), list(test = "user"), list(test = "F"),
                           list(test = "user", sumFun = "deviance_nfixef"),
                           list(sumFun = "deviance_nfixef"))),
  # an ML fit: no refitML; k = log(n) gives BIC
  orthodont_ml = list(formula = "distance ~ age + Sex + (1 | Subject)", data = "Orthodont",
                      REML = FALSE,
                      calls = list(list(), list(test = "Chisq"),
                                   list(test = "Chisq", k = log(108)))),
  # prior weights and an expression as response
  cbpp_weights = list(formula = "incidence/size ~ period + (1 | herd)", data = "cbpp",
                      REML = TRUE, weights = "size",
                      calls = list(list(), list(test = "Chisq"))),
  # crossed random effects, factors and numeric terms, ML; the formula is deparsed on two
  # lines (width.cutoff 60)
  carrots_ml = list(formula = paste("Preference ~ sens1 + sens2 + Homesize + Gender +",
                                    "(1 | Consumer) + (1 | Product)"),
                    data = "carrots", REML = FALSE,
                    calls = list(list(test = "Chisq"))),
  # terms that are calls: update(m, ~ . - I(Days^2)) and friends; poly()'s two columns
  sleep_calls_ml = list(formula = "Reaction ~ Days + I(Days^2) + log(Days + 1) + (1 | Subject)",
                        data = "sleepstudy", REML = FALSE, calls = list(list(test = "Chisq"))),
  sleep_poly = list(formula = "Reaction ~ poly(Days, 2) + (1 | Subject)", data = "sleepstudy",
                    REML = TRUE, calls = list(list(test = "Chisq"))),
  # no intercept: without recipe the model is angle ~ temp - 1; a scope given as a formula
  # (stored as text), the fixed terms of the model's formula updated by it
  cake_no_intercept = list(formula = "angle ~ 0 + recipe + temp + (1 | replicate)",
                           data = "cake", REML = TRUE,
                           calls = list(list(test = "Chisq"), list(scope = "~ . - temp"))),
  # Income has 72 NA: without it more rows are used, which drop1 refuses
  carrots_na = list(formula = "Preference ~ Income + sens2 + (1 | Consumer)",
                    data = "carrots", REML = TRUE,
                    calls = list(list())),
  # a GLMM: drop1(glmerMod) is lme4's method itself (lmerTest's is for lmer fits), no
  # refitML (the likelihood is the Laplace approximation's)
  cbpp_binomial = list(formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                       data = "cbpp", family = "binomial",
                       calls = list(list(), list(test = "Chisq")))
)

out <- lapply(cases, function(spec) {
  w <- spec$weights
  glmm <- !is.null(spec$family)
  fm <- if (glmm) {
    eval(parse(text = sprintf("glmer(%s, %s, family = %s)", spec$formula, spec$data,
                              spec$family)))
  } else if (is.null(w)) {
    eval(parse(text = sprintf("lmer(%s, %s, REML = %s)", spec$formula, spec$data, spec$REML)))
  } else {
    eval(parse(text = sprintf("lmer(%s, %s, REML = %s, weights = %s)", spec$formula, spec$data,
                              spec$REML, w)))
  }
  spec$calls <- lapply(spec$calls, function(args) {
    call_args <- args
    if (!is.null(args$sumFun)) call_args$sumFun <- sum_funs[[args$sumFun]]
    if (is.character(args$scope) && any(grepl("~", args$scope)))
      call_args$scope <- as.formula(args$scope)
    res <- catch(tab(do.call(drop1, c(list(fm), if (!glmm) list(ddf = "lme4"), call_args))))
    list(args = args, result = res)
  })
  # lme4's own method on the lmerMod gives the same table
  own <- catch(tab(drop1(if (glmm) fm else as(fm, "lmerMod"), test = "Chisq")))
  spec$lme4_chisq <- own
  for (cl in spec$calls)
    if (identical(cl$args, list(test = "Chisq"))) stopifnot(all.equal(own, cl$result))
  spec$nobs <- nobs(fm)
  spec
})
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", null = "null"),
           "tests/fixtures/drop1_lme4.json")
