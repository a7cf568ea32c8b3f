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
df <- sleepstudy
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
                    na.action = na.pass))
  )
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/fixtures/bad_input.json")
