# Reference results for what users do after a fit, on cases the other fixtures do not reach:
# R's format() of mixed-sign columns (the width of printCoefmat's coefficient block), an
# lmerTest summary whose df column passes 1000 next to a small negative estimate, lmerTest's
# summary of a (x || g) model, predict()'s "new levels detected" error (which term is
# reported, the order of the levels, the truncation of a long list), predict() with a
# re.form that is not the model's terms, confint's parm, and lmerTest's drop1.
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_postfit.R
# Writes tests/fixtures/postfit.json.
suppressMessages({library(lmerTest); library(jsonlite)})
options(digits = 7, warn = 1)
num <- function(x) unname(as.numeric(x))
catch <- function(expr) tryCatch(expr, error = function(e) list(error = conditionMessage(e)))

# ---- format(): fixed or scientific, widths ------------------------------------------------
vectors <- list(
  list(x = c(1.67586, -0.02935, 0.04057, 11.84603, 1130.70353), digits = 4, nsmall = 0),
  list(x = c(-0.5, 123.25), digits = 4, nsmall = 0),
  list(x = c(-1.5, 1e-04, 250), digits = 3, nsmall = 0),
  list(x = c(-0.002295, 0.004293, 582.554596), digits = 4, nsmall = 0),
  list(x = c(9.9996, 0.5), digits = 4, nsmall = 0),
  list(x = c(99.996, -1.25), digits = 4, nsmall = 0),
  list(x = c(1e-05, 123456), digits = 3, nsmall = 2),
  list(x = c(123.456), digits = 7, nsmall = 2),
  list(x = c(-12.5, 0.001), digits = 3, nsmall = 0),
  list(x = c(-1234.5, 0.0012), digits = 4, nsmall = 0)
)
format_cases <- lapply(vectors, function(v)
  c(v, list(text = format(v$x, digits = v$digits, nsmall = v$nsmall))))

# ---- an lmerTest summary with df above 1000 --------------------------------------------------
set.seed(20261202)
n <- 1100
g <- factor(sprintf("G%02d", sample(30, n, replace = TRUE)))
x <- round(rnorm(n), 3)
y <- round(2.4 + 0.7 * x - 0.03 * x^2 + rnorm(30, sd = 0.8)[g] + rnorm(n), 4)
d <- data.frame(y = y, x = x, g = g)
m <- lmer(y ~ x + I(x^2) + (1 | g), d)
summary_case <- list(
  data = list(y = d$y, x = d$x, g = as.character(d$g)),
  theta = num(getME(m, "theta")),
  coefficients = lapply(as.data.frame(summary(m)$coefficients), num),
  text = paste(capture.output(print(summary(m))), collapse = "\n"))

# lmerTest's lmer keeps the call as written: its summary shows (Days || Subject) unexpanded
mu <- lmer(Reaction ~ Days + (Days || Subject), sleepstudy)
summary_uncorrelated <- list(
  theta = num(getME(mu, "theta")),
  coefficients = lapply(as.data.frame(summary(mu)$coefficients), num),
  text = paste(capture.output(print(summary(mu))), collapse = "\n"))

# ---- predict() with new levels -----------------------------------------------------------
fss <- lmer(Reaction ~ Days + (1 | Subject), sleepstudy)
many <- data.frame(Days = 1, Subject = sprintf("N%02d", 1:30))
fpen <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)
# lme4 checks the terms in the order mkReTrms sorts them on the new data (decreasing numbers
# of levels there): sample (3 levels) before plate (2), though the fit has plate first
pen_nd <- data.frame(plate = c("zz", "zz", "a"), sample = c("Q", "A", "B"))
# equal numbers of levels: no reordering, the formula's order (plate first)
pen_tie <- data.frame(plate = c("a", "zz"), sample = c("Q", "A"))
fpas <- lmer(strength ~ 1 + (1 | batch/cask), Pastes)
# new batch:cask levels, listed in the order of the interaction's levels, not of the rows
pas_nd <- data.frame(batch = c("Z", "A", "B", "Y"), cask = c("a", "d", "c", "b"))
# a numeric grouping variable (no xlev: the new values sorted as numbers) and a character one
# (lmer's frame makes it a factor: the new values in order of appearance)
ss <- sleepstudy
ss$S <- as.numeric(as.character(ss$Subject))
ss$C <- as.character(ss$Subject)
fnum <- lmer(Reaction ~ Days + (1 | S), ss)
fchr <- lmer(Reaction ~ Days + (1 | C), ss)
num_nd <- data.frame(Days = 1, S = c(999, 400, 308))
chr_nd <- data.frame(Days = 1, C = c("999", "400", "308"))
new_levels <- list(
  numeric_group = list(model = "numeric", newdata = num_nd,
                       error = catch(predict(fnum, newdata = num_nd))),
  character_group = list(model = "character", newdata = chr_nd,
                         error = catch(predict(fchr, newdata = chr_nd))),
  many = list(model = "sleepstudy", newdata = many,
              error = catch(predict(fss, newdata = many))),
  penicillin = list(model = "penicillin", newdata = pen_nd,
                    error = catch(predict(fpen, newdata = pen_nd))),
  penicillin_tie = list(model = "penicillin", newdata = pen_tie,
                        error = catch(predict(fpen, newdata = pen_tie))),
  penicillin_reform = list(model = "penicillin", newdata = pen_tie,
                           re_form = "~(1 | sample) + (1 | plate)",
                           error = catch(predict(fpen, newdata = pen_tie,
                                                 re.form = ~(1 | sample) + (1 | plate)))),
  pastes = list(model = "pastes", newdata = pas_nd,
                error = catch(predict(fpas, newdata = pas_nd))))

# ---- predict() with a re.form that is not the model's terms -------------------------------
# lme4 matches re.form by grouping factor and column names (mkNewReTrms' get_re)
fm1 <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
fm2 <- lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sleepstudy)
ss_nd <- data.frame(Days = c(0, 3, 7.5, 2), Subject = c("308", "335", "999", "372"))
reform_case <- function(model, re_form, newdata) {
  fm <- get(model)
  fit <- if (newdata) predict(fm, ss_nd, re.form = as.formula(re_form), allow.new.levels = TRUE)
         else predict(fm, re.form = as.formula(re_form))
  list(model = model, re_form = re_form, newdata = newdata, fit = num(fit))
}
reform <- list(
  theta = list(fm1 = num(getME(fm1, "theta")), fm2 = num(getME(fm2, "theta"))),
  newdata = ss_nd,
  cases = list(reform_case("fm1", "~(1 | Subject)", TRUE),
               reform_case("fm1", "~(1 | Subject)", FALSE),
               reform_case("fm1", "~(0 + Days | Subject)", TRUE),
               reform_case("fm1", "~(Days || Subject)", TRUE),
               reform_case("fm2", "~(Days | Subject)", TRUE),
               reform_case("fm2", "~(Days | Subject)", FALSE)),
  errors = list(
    list(model = "fm1", re_form = "~(1 | Days)",
         error = catch(predict(fm1, ss_nd, re.form = ~(1 | Days), allow.new.levels = TRUE))),
    list(model = "fm1", re_form = "~(Reaction | Subject)",
         error = catch(predict(fm1, ss_nd, re.form = ~(Reaction | Subject),
                               allow.new.levels = TRUE)))))

# ---- confint's parm: names (in the table's order), "theta_", "beta_", positions -----------
ci_tab <- function(ci) list(rownames = rownames(ci), colnames = colnames(ci),
                            lower = num(ci[, 1]), upper = num(ci[, 2]))
confint_parm <- list(
  theta = num(getME(fm1, "theta")),
  wald = list(
    list(parm = "beta_", table = ci_tab(confint(fm1, parm = "beta_", method = "Wald"))),
    list(parm = "theta_", table = ci_tab(confint(fm1, parm = "theta_", method = "Wald"))),
    list(parm = c(5, 6), table = ci_tab(confint(fm1, parm = c(5, 6), method = "Wald"))),
    list(parm = 6, table = ci_tab(confint(fm1, parm = 6, method = "Wald"))),
    list(parm = c("Days", ".sig01"),
         table = ci_tab(confint(fm1, parm = c("Days", ".sig01"), method = "Wald"))),
    list(parm = c("theta_", "Days"),
         table = ci_tab(confint(fm1, parm = c("theta_", "Days"), method = "Wald")))),
  profile = list(parm = c("Days", ".sig01"),
                 table = ci_tab(confint(fm1, parm = c("Days", ".sig01")))))

# ---- lmerTest's drop1 -------------------------------------------------------------------
tab <- function(t) {
  d <- as.data.frame(t)
  list(rownames = rownames(d), colnames = colnames(d),
       columns = lapply(as.list(d), num),
       text = paste(capture.output(print(t)), collapse = "\n"))
}
drop_models <- list(
  cake_interaction = list(formula = "angle ~ recipe * temperature + (1 | recipe:replicate)",
                          data = "cake", REML = TRUE),
  cake_additive = list(formula = "angle ~ recipe + temp + (1 | recipe:replicate)",
                       data = "cake", REML = TRUE),
  sleep_uncorrelated = list(formula = "Reaction ~ Days + (Days || Subject)",
                            data = "sleepstudy", REML = TRUE),
  sleep_ml = list(formula = "Reaction ~ Days + I(Days^2) + (1 | Subject)", data = "sleepstudy",
                  REML = FALSE),
  intercept_only = list(formula = "Reaction ~ 1 + (1 | Subject)", data = "sleepstudy",
                        REML = TRUE))
# a missing cell (recipe C at 225 degrees): X loses a column, and drop1 tests the difference
# between X and the model matrix without the term (get_Ldiffmat2)
cake_missing <- cake[!(cake$recipe == "C" & cake$temperature == "225"), ]
drop_models$cake_missing_cell <- list(
  formula = "angle ~ recipe * temperature + temp + (1 | recipe:replicate)",
  data = "cake_missing", REML = TRUE)
drop1_cases <- lapply(drop_models, function(spec) {
  fm <- eval(parse(text = sprintf("lmer(%s, %s, REML = %s)", spec$formula, spec$data,
                                  spec$REML)))
  c(spec, list(theta = num(getME(fm, "theta")),
               satterthwaite = tab(drop1(fm)),
               kenward_roger = catch(tab(drop1(fm, ddf = "Kenward-Roger"))),
               scope_error = catch(drop1(fm, scope = "(Intercept)"))))
})
cake_int <- lmer(angle ~ recipe * temperature + (1 | recipe:replicate), cake)
drop1_cases$cake_interaction$non_marginal = catch(drop1(cake_int, scope = "recipe"))
cake_add <- lmer(angle ~ recipe + temp + (1 | recipe:replicate), cake)
drop1_cases$cake_additive$scope_temp = tab(drop1(cake_add, scope = "temp"))
drop1_cases$cake_additive$forced = tab(drop1(cake_add, force_get_contrasts = TRUE))

out <- list(format = format_cases, summary = summary_case,
            summary_uncorrelated = summary_uncorrelated, new_levels = new_levels,
            reform = reform, confint_parm = confint_parm, drop1 = drop1_cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", null = "null"),
           "tests/fixtures/postfit.json")
