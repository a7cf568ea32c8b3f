# Fixtures for tests/test_bad_input.py (issue 18): lme4's profile intervals on Orthodont, whose
# lower limit for the age SD lies on its bound 0, with the data; and lme4's messages for bad
# input. Run from the repository root with LC_ALL=C Rscript tools/R/make_fixtures_bad_input.R
suppressMessages({library(lme4); library(jsonlite)})
data("Orthodont", package = "nlme")
od <- as.data.frame(Orthodont)
od$Subject <- factor(as.character(od$Subject))
od$Sex <- factor(as.character(od$Sex), levels = c("Male", "Female"))
m <- lmer(distance ~ age * Sex + (age | Subject), od)
ci <- suppressWarnings(confint(m, method = "profile"))
msg <- function(expr) tryCatch({force(expr); NA_character_}, error = function(e) conditionMessage(e))
wmsg <- function(expr) tryCatch({force(expr); NA_character_},
                                warning = function(w) conditionMessage(w))
df <- sleepstudy
df3 <- transform(df, f = factor(Days %% 3))
fm <- lmer(Reaction ~ Days + (1|Subject), df)
nd <- df[1:5, ]; nd$Subject <- factor("999")
d2 <- df; d2$Days[1] <- Inf
out <- list(
  orthodont = list(distance = od$distance, age = od$age, Subject = as.character(od$Subject),
                   Sex = as.character(od$Sex)),
  orthodont_confint = list(rows = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2])),
  messages = list(
    offset_factor_arg = msg(lmer(Reaction ~ Days + (1|Subject), df, offset = rep("a", 180))),
    poly_zero = msg(lmer(Reaction ~ poly(Days, 0) + (1|Subject), df)),
    poly_big = msg(lmer(Reaction ~ poly(Days, 1e10) + (1|Subject), df)),
    reml_no = msg(lmer(Reaction ~ Days + (1|Subject), df, REML = "no")),
    grouping_star = msg(suppressWarnings(lmer(Reaction ~ Days + (1|Subject*Days), df))),
    rankx_bad = msg(lmerControl(check.rankX = "xyz")),
    na_y = msg(lmer(Reaction ~ Days + (1|Subject), transform(df, Reaction = c(NA, Reaction[-1])),
                    na.action = na.pass)),
    # session 13: awkward inputs
    complex_column = msg(lmer(Reaction ~ Days + (1|Subject), transform(df, Days = complex(real = Days)))),
    contrasts_nonfactor = msg(lmer(Reaction ~ Days + (1|Subject), df,
                                   contrasts = list(Days = "contr.sum"))),
    contrasts_rows = msg(lmer(Reaction ~ f + (1|Subject), df3, contrasts = list(f = diag(2)))),
    contrasts_unknown = msg(lmer(Reaction ~ f + (1|Subject), df3, contrasts = list(f = "contr.foo"))),
    contrasts_absent = wmsg(lmer(Reaction ~ f + (1|Subject), df3, contrasts = list(Nope = "contr.sum"))),
    # predict.lm's check (lme4's predict itself fails later: "non-conformable arguments")
    newdata_class = msg(stats:::.checkMFClasses(c(Days = "numeric"), data.frame(Days = "1"))),
    start_na = msg(lmer(Reaction ~ Days + (1|Subject), df, start = NA_real_)),
    start_inf = msg(lmer(Reaction ~ Days + (1|Subject), df, start = Inf)),
    start_components = msg(lmer(Reaction ~ Days + (1|Subject), df, start = list(foo = 1))),
    glmer_start_components = msg(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                                       cbpp, binomial, start = list(foo = 1))),
    conv_option = msg(lmerControl(check.conv.grad = 5)),
    conv_tol = msg(lmerControl(check.conv.grad = .makeCC("warning", tol = -1))),
    simulate_new_levels = msg(simulate(fm, newdata = nd)),
    seed = suppressWarnings(msg(simulate(fm, seed = "abc"))),
    update_unused = msg(update(fm, foo = 1)),
    anova_data = msg(suppressMessages(anova(fm, lmer(Reaction ~ Days + (Days|Subject),
                                                     transform(df, Reaction = 2 * Reaction)))))
  )
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/fixtures/bad_input.json")
