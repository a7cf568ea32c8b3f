# Reference optimizer records for issue 19 (typed OptResult / Lme4Conv). Run from the
# repository root:
#   LC_ALL=C Rscript tools/R/make_fixtures_call.R      (a few seconds)
# Writes tests/fixtures/call_conv.json: for a few fits, lme4's optinfo$conv (the optimizer's
# code and lme4's checkConv record: code and messages) and devcomp.
suppressMessages({library(lme4); library(jsonlite)})
options(digits = 7, warn = 1)

record <- function(name, m, call) {
  conv <- m@optinfo$conv
  dc <- getME(m, "devcomp")
  list(name = name, call = call,
       conv_opt = conv$opt,
       lme4_code = if (is.null(conv$lme4$code)) list() else as.integer(conv$lme4$code),
       lme4_messages = if (is.null(conv$lme4$messages)) list() else
         as.character(unlist(conv$lme4$messages)),
       devcomp_cmp = as.list(dc$cmp), devcomp_dims = as.list(dc$dims))
}

quiet <- function(expr) suppressWarnings(suppressMessages(expr))
out <- list(
  record("sleepstudy", quiet(lmer(Reaction ~ Days + (Days | Subject), sleepstudy)),
         list(formula = "Reaction ~ Days + (Days | Subject)", data = "sleepstudy")),
  record("sleepstudy_maxeval5",
         quiet(lmer(Reaction ~ Days + (Days | Subject), sleepstudy,
                    control = lmerControl(optCtrl = list(maxeval = 5)))),
         list(formula = "Reaction ~ Days + (Days | Subject)", data = "sleepstudy",
              control = list(optCtrl = list(maxeval = 5)))),
  record("dyestuff2_singular", quiet(lmer(Yield ~ 1 + (1 | Batch), Dyestuff2)),
         list(formula = "Yield ~ 1 + (1 | Batch)", data = "Dyestuff2")),
  record("sleepstudy_ml", quiet(lmer(Reaction ~ Days + (Days | Subject), sleepstudy,
                                     REML = FALSE)),
         list(formula = "Reaction ~ Days + (Days | Subject)", data = "sleepstudy",
              REML = FALSE))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                  pretty = TRUE),
           "tests/fixtures/call_conv.json")
