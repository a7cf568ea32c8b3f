# lme4's public names, for the "lme4 -> lmeformula" table of the documentation: every exported
# function, every getME name, and the arguments of the functions users call.
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_docs.R
# Writes tests/fixtures/lme4_api.json.
suppressMessages({library(lme4); library(jsonlite)})
exports <- sort(getNamespaceExports("lme4"))
exports <- exports[!grepl("^\\.", exports)]          # S4 tables and .prt.* printing helpers
fns <- c("lmer", "glmer", "lFormula", "glFormula", "mkLmerDevfun", "optimizeLmer", "mkMerMod",
         "predict.merMod", "simulate.merMod", "ranef.merMod", "confint.merMod",
         "profile.merMod", "bootMer", "allFit", "lmList", "refit.merMod", "anova.merMod",
         "lmerControl", "residuals.merMod", "as.data.frame.VarCorr.merMod", "deviance.merMod",
         "logLik.merMod", "vcov.merMod", "isSingular", "hatvalues.merMod", "update.merMod")
args <- lapply(fns, function(f) setdiff(names(formals(get(f, envir = asNamespace("lme4")))),
                                       "..."))
names(args) <- fns
out <- list(version = as.character(packageVersion("lme4")), exports = exports,
            getME = eval(formals(lme4:::getME.merMod)$name), arguments = args)
writeLines(toJSON(out, auto_unbox = FALSE, pretty = TRUE), "tests/fixtures/lme4_api.json")
