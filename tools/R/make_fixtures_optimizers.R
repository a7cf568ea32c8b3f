# lme4 1.1-31's non-default optimizers for lmer and glmer (lmerControl/glmerControl's
# optimizer = "bobyqa", "Nelder_Mead", "nloptwrap"). Run from the repository root:
#   LC_ALL=C Rscript tools/R/make_fixtures_optimizers.R      (a few seconds)
# Writes tests/fixtures/optimizers.json: each fit's feval, theta, fixef and criterion.
suppressMessages({library(lme4); library(jsonlite)})
rec <- function(name, m) list(name = name, feval = m@optinfo$feval,
                              theta = unname(getME(m, "theta")), fixef = unname(fixef(m)),
                              crit = if (isGLMM(m)) -2 * as.numeric(logLik(m)) else
                                unname(m@devcomp$cmp[if (isREML(m)) "REML" else "dev"]))
q <- function(e) suppressWarnings(suppressMessages(e))
out <- list()
for (o in c("bobyqa", "Nelder_Mead", "nloptwrap")) {
  out[[length(out) + 1]] <- rec(paste0("sleepstudy_", o),
    q(lmer(Reaction ~ Days + (Days | Subject), sleepstudy, control = lmerControl(optimizer = o))))
  out[[length(out) + 1]] <- rec(paste0("penicillin_", o),
    q(lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin,
           control = lmerControl(optimizer = o))))
}
for (o in c("bobyqa", "nloptwrap")) {
  out[[length(out) + 1]] <- rec(paste0("cbpp_", o),
    q(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial,
            control = glmerControl(optimizer = o))))
}
write_json(list(lme4 = as.character(packageVersion("lme4")), fits = out),
           "tests/fixtures/optimizers.json", auto_unbox = TRUE, digits = NA, pretty = TRUE)
