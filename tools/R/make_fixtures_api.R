# Values for tests/test_model_api.py: lme4's deviance function (devFunOnly = TRUE) at θ away
# from the optimum, REML and ML. Run from the repository root:
#   LC_ALL=C Rscript tools/R/make_fixtures_api.R      (a few seconds; writes tests/fixtures/api.json)
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
probe <- function(reml, theta) {
  dd <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = reml, devFunOnly = TRUE)
  list(REML = reml, theta = theta, value = dd(theta))
}
out <- list(devfun_sleepstudy = list(probe(TRUE, c(1, 0, 1)), probe(FALSE, c(0.5, 0.2, 0.3)),
                                     probe(TRUE, c(0, 0, 0.4))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/fixtures/api.json")
