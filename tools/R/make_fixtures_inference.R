# Reference results for prediction and inference: predict, anova, confint, lmList, simulate.
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_inference.R
# Writes tests/fixtures/inference.json.
suppressMessages({library(lme4); library(jsonlite)})
options(digits = 7, warn = 1)

catch <- function(expr) tryCatch(expr, error = function(e) list(error = conditionMessage(e)))
table_json <- function(tab) {
  d <- as.data.frame(tab)
  list(rownames = rownames(d), columns = lapply(as.list(d), function(x) unname(x)),
       colnames = colnames(d), text = paste(capture.output(print(tab)), collapse = "\n"))
}

fm1 <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
fm0 <- lmer(Reaction ~ Days + (1 | Subject), sleepstudy)
fm2 <- lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sleepstudy)
fmML <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE)
fpen <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)
fcake <- lmer(angle ~ recipe * temp + (1 | recipe:replicate), cake)
fcake2 <- lmer(angle ~ recipe + temperature + (1 | replicate), cake)
fdye <- lmer(Yield ~ 1 + (1 | Batch), Dyestuff)
fpoly <- lmer(Reaction ~ poly(Days, 2) + (1 | Subject), sleepstudy)

nd <- data.frame(Days = c(0, 1, 5, 9.5, 3), Subject = factor(c("308", "309", "372", "999", NA)))
nd_known <- nd[1:3, ]
cake_nd <- data.frame(recipe = c("A", "C", "B"), temperature = c("175", "225", "205"),
                      temp = c(175, 225, 205), replicate = c("1", "15", "3"))
out <- list(
  predict = list(
    fitted = unname(predict(fm1)),
    population = unname(predict(fm1, re.form = NA)),
    newdata_known = unname(predict(fm1, newdata = nd_known)),
    newdata_known_pop = unname(predict(fm1, newdata = nd_known, re.form = NA)),
    newdata_new_allowed = unname(predict(fm1, newdata = nd, allow.new.levels = TRUE)),
    newdata_new_error = catch(predict(fm1, newdata = nd[4, ])),
    newdata_na_error = catch(predict(fm1, newdata = nd[5, ])),
    reform_intercept_only = unname(predict(fm2, newdata = nd_known, re.form = ~ (1 | Subject))),
    reform_slope_only = unname(predict(fm2, newdata = nd_known, re.form = ~ (0 + Days | Subject))),
    cake_ordered = unname(predict(fcake2, newdata = transform(cake_nd,
                          temperature = factor(temperature, levels = levels(cake$temperature), ordered = TRUE)))),
    cake_interaction = unname(predict(fcake, newdata = cake_nd)),
    poly_newdata = unname(predict(fpoly, newdata = data.frame(Days = c(0.5, 4, 12), Subject = c("308", "310", "335"))))
  ),
  anova = list(
    fm0_fm1 = table_json(suppressMessages(anova(fm0, fm1))),
    fm0_fm1_message = capture.output(anova(fm0, fm1), type = "message"),
    fm0_fm2_fm1 = table_json(suppressMessages(anova(fm0, fm2, fm1))),
    single_cake = table_json(anova(fcake)),
    single_cake2 = table_json(anova(fcake2))
  ),
  confint = list(
    wald_fm1 = table_json(confint(fm1, method = "Wald")),
    profile_fm1 = table_json(confint(fm1, method = "profile")),
    profile_fm1_oldnames_false = table_json(confint(fm1, method = "profile", oldNames = FALSE)),
    profile_fmML = table_json(confint(fmML, method = "profile")),
    profile_dye = table_json(confint(fdye, method = "profile")),
    profile_pen = table_json(confint(fpen, method = "profile")),
    wald_90 = table_json(confint(fm1, method = "Wald", level = 0.9))
  ),
  lmlist = list(
    sleep = table_json(coef(lmList(Reaction ~ Days | Subject, sleepstudy))),
    sleep_pooled_sd = attr(summary(lmList(Reaction ~ Days | Subject, sleepstudy))$residuals, "sd"),
    sleep_sigma = summary(lmList(Reaction ~ Days | Subject, sleepstudy))$RSE
  ),
  simulate = list(
    theta = unname(getME(fm1, "theta")), sigma = sigma(fm1)
  )
)
set.seed(101)
bb <- confint(fm1, method = "boot", nsim = 500, boot.type = "perc")
out$confint$boot_fm1 <- table_json(bb)
refit_y <- sleepstudy$Reaction + 10 * sin(seq_len(180))
rf <- refit(fm1, newresp = refit_y)
fresh <- lmer(y ~ Days + (Days | Subject), transform(sleepstudy, y = refit_y))
# lme4 1.1-31's refit() finds the optimum (its own devfun at the refit theta gives the fresh
# fit's criterion) but stores devcomp components that do not belong to that theta
out$refit <- list(newresp = refit_y, theta = unname(getME(rf, "theta")), beta = unname(fixef(rf)),
                  REMLcrit = REMLcrit(rf),
                  devfun_at_refit_theta = getME(fresh, "devfun")(getME(rf, "theta")),
                  fresh_theta = unname(getME(fresh, "theta")), fresh_beta = unname(fixef(fresh)),
                  fresh_REMLcrit = REMLcrit(fresh), fresh_sigma = sigma(fresh))
up <- update(fm1, . ~ . - (Days | Subject) + (1 | Subject))
out$update <- list(formula = paste(deparse(formula(up)), collapse = ""), REMLcrit = REMLcrit(up))
upml <- update(fm1, REML = FALSE)
out$update_ml <- list(deviance = deviance(upml))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = FALSE),
           "tests/fixtures/inference.json")
