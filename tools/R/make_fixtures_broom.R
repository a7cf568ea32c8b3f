# Reference output of broom.mixed's tidy / glance / augment for three lmer fits.
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_broom.R
# Writes tests/fixtures/broom.json (each table as columns of plain values, NA -> null).
suppressMessages({library(lme4); library(broom.mixed); library(jsonlite)})
options(digits = 7, warn = 1)

frame_json <- function(d) {
  d <- as.data.frame(d, stringsAsFactors = FALSE)
  d[] <- lapply(d, function(x) if (is.factor(x)) as.character(x) else unname(x))
  list(colnames = colnames(d), columns = lapply(as.list(d), function(x) unname(x)))
}

ss <- sleepstudy
ss$w <- 1 + (ss$Days %% 3)           # weights 1, 2, 3, 1, 2, 3, ...
fm1 <- lmer(Reaction ~ Days + (Days | Subject), ss)
fpen <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin, REML = FALSE)
fw <- lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), ss, weights = w)

one_model <- function(m) {
  list(
    tidy = frame_json(tidy(m)),
    tidy_fixed = frame_json(tidy(m, effects = "fixed")),
    tidy_wald = frame_json(tidy(m, conf.int = TRUE)),
    tidy_wald90 = frame_json(tidy(m, conf.int = TRUE, conf.level = 0.9)),
    tidy_profile = frame_json(tidy(m, conf.int = TRUE, conf.method = "profile")),
    tidy_vcov = frame_json(tidy(m, effects = "ran_pars", scales = "vcov")),
    tidy_ran_vals = frame_json(tidy(m, effects = "ran_vals", conf.int = TRUE)),
    tidy_ran_coefs = frame_json(tidy(m, effects = "ran_coefs")),
    tidy_all = frame_json(tidy(m, effects = c("ran_vals", "fixed", "ran_pars"))),
    glance = frame_json(glance(m)),
    augment = frame_json(augment(m))
  )
}
out <- list(
  versions = list(lme4 = as.character(packageVersion("lme4")),
                  broom.mixed = as.character(packageVersion("broom.mixed"))),
  fm1 = one_model(fm1), pen_ml = one_model(fpen), weighted = one_model(fw)
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = FALSE),
           "tests/fixtures/broom.json")
