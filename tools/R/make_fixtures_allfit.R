# Reference output of lme4's allFit (the optimizers lmeformula shares with lme4: minqa's
# bobyqa and NLopt's).
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_allfit.R
# Writes tests/fixtures/allfit.json.
suppressMessages({library(lme4); library(jsonlite)})
fits <- list(
  fm1 = lmer(Reaction ~ Days + (Days | Subject), sleepstudy),
  pen = lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)
)
meth <- lme4:::meth.tab.0
meth <- meth[meth[, "optimizer"] %in% c("bobyqa", "nloptwrap"), , drop = FALSE]
one <- function(m) {
  s <- summary(allFit(m, meth.tab = meth, verbose = FALSE))
  list(names = names(s$which.OK), which_OK = unname(s$which.OK),
       theta = lapply(seq_len(nrow(s$theta)), function(i) unname(s$theta[i, ])),
       fixef = lapply(seq_len(nrow(s$fixef)), function(i) unname(s$fixef[i, ])),
       llik = unname(s$llik), feval = unname(s$feval))
}
out <- lapply(fits, one)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"),
           "tests/fixtures/allfit.json")
