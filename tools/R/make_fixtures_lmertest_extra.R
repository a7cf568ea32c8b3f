# Further lmerTest / pbkrtest cases: prior weights, a model without fixed effects beyond the
# intercept, a model without an intercept, and ranova of an uncorrelated (||) term.
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_lmertest_extra.R
# Writes tests/fixtures/lmertest_extra.json.
suppressMessages({library(lmerTest); library(pbkrtest); library(jsonlite)})
options(digits = 7, warn = 1)
num <- function(x) unname(as.numeric(x))
tab <- function(t) {
  d <- if (inherits(t, "ls_means")) structure(t, class = "data.frame") else as.data.frame(t)
  list(rownames = rownames(d), colnames = colnames(d),
       columns = lapply(as.list(d), function(x) if (is.numeric(x)) num(x) else as.character(x)))
}
text_of <- function(x) paste(capture.output(print(x)), collapse = "\n")
w <- seq(0.5, 2, length.out = nrow(sleepstudy))
mw <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy, weights = w)
m1 <- lmer(Reaction ~ 1 + (1 | Subject), sleepstudy)
m0 <- lmer(angle ~ 0 + recipe + temp + (1 | replicate), cake)
mu <- lmer(Reaction ~ Days + (Days || Subject), sleepstudy)
out <- list(
  weighted = list(weights = w, coef_sat = tab(summary(mw)$coefficients),
                  coef_kr = tab(summary(mw, ddf = "Kenward-Roger")$coefficients),
                  anova3 = tab(anova(mw)), vcovAdj = unname(lapply(seq_len(2), function(i)
                    num(as.matrix(vcovAdj(mw))[i, ])))),
  intercept_only = list(coef_sat = tab(summary(m1)$coefficients), anova3 = tab(anova(m1)),
                        anova_text = text_of(anova(m1))),
  no_intercept = list(anova2 = tab(anova(m0, type = 2)), anova3 = tab(anova(m0)),
                      anova1 = tab(anova(m0, type = 1)),
                      anova3_kr = tab(anova(m0, ddf = "Kenward-Roger")),
                      ls_means = tab(ls_means(m0))),
  uncorrelated = list(ranova = tab(ranova(mu)), ranova_whole = tab(ranova(mu, reduce.terms = FALSE)))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", null = "null"),
           "tests/fixtures/lmertest_extra.json")
