# lme4 1.1-31's "Control:" line of printed models: summary() shows the deparsed control
# expression of the call (.prt.call with long = TRUE; cat(..., fill = TRUE) of deparse()'s
# lines), except when it deparses to exactly "lmerControl()"; print() never shows it. Run
# from the repository root:
#   LC_ALL=C Rscript tools/R/make_fixtures_control_line.R      (a few seconds)
# Writes tests/fixtures/control_line.json: for each case the control expression, the same
# options as the Python dict a user passes (`py`), and lme4's summary and print text; and R's
# deparse() of some numbers (written with 17 significant digits); cat(fill = TRUE) of items
# around the width of 80.
suppressMessages({library(lme4); library(jsonlite)})

# `py` is the Python control: R lists become dicts, vectors of length > 1 lists; names are
# those a Python user may write (lme4's dotted names or the package's underscored ones)
no_names <- setNames(list(), character(0))
cases <- list(
  list(id = "lmer_nelder_mead", fun = "lmer", data = "sleepstudy",
       formula = "Reaction ~ Days + (Days | Subject)",
       control = 'lmerControl(optimizer = "Nelder_Mead", optCtrl = list(maxfun = 1e5))',
       py = list(optimizer = "Nelder_Mead", optCtrl = list(maxfun = 100000))),
  list(id = "lmer_empty", fun = "lmer", data = "sleepstudy",
       formula = "Reaction ~ Days + (Days | Subject)",
       control = "lmerControl()", py = no_names),
  list(id = "lmer_default_given", fun = "lmer", data = "sleepstudy",
       formula = "Reaction ~ Days + (Days | Subject)",
       control = 'lmerControl(optimizer = "nloptwrap")', py = list(optimizer = "nloptwrap")),
  list(id = "lmer_long", fun = "lmer", data = "sleepstudy",
       formula = "Reaction ~ Days + (Days | Subject)",
       control = paste0('lmerControl(optimizer = "bobyqa", check.nobs.vs.nlev = "ignore", ',
                        'calc.derivs = FALSE, boundary.tol = 1e-7, ',
                        'optCtrl = list(maxfun = 123456, rhobeg = 0.1))'),
       py = list(optimizer = "bobyqa", check_nobs_vs_nlev = "ignore", calc_derivs = FALSE,
                 boundary_tol = 1e-7, optCtrl = list(maxfun = 123456, rhobeg = 0.1))),
  list(id = "lmer_conv_list", fun = "lmer", data = "sleepstudy",
       formula = "Reaction ~ Days + (Days | Subject)",
       control = paste0('lmerControl(check.conv.grad = list(action = "warning", tol = 0.001), ',
                        'restart_edge = FALSE)'),
       py = list(check.conv.grad = list(action = "warning", tol = 0.001),
                 restart_edge = FALSE)),
  list(id = "lmer_ml_rankX", fun = "lmer", data = "sleepstudy", REML = FALSE,
       formula = "Reaction ~ Days + (1 | Subject)",
       control = 'lmerControl(check.rankX = "silent.drop.cols", calc.derivs = TRUE)',
       py = list(check.rankX = "silent.drop.cols", calc.derivs = TRUE)),
  list(id = "glmer_bobyqa", fun = "glmer", data = "cbpp",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
       control = 'glmerControl(optimizer = "bobyqa")', py = list(optimizer = "bobyqa")),
  list(id = "glmer_empty", fun = "glmer", data = "cbpp",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
       control = "glmerControl()", py = no_names),
  list(id = "glmer_long", fun = "glmer", data = "cbpp",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
       control = paste0('glmerControl(optimizer = c("bobyqa", "Nelder_Mead"), ',
                        'tolPwrss = 1e-8, nAGQ0initStep = TRUE, optCtrl = list(maxfun = 2e4))'),
       py = list(optimizer = c("bobyqa", "Nelder_Mead"), tolPwrss = 1e-8,
                 nAGQ0initStep = TRUE, optCtrl = list(maxfun = 20000))),
  list(id = "glmer_checks", fun = "glmer", data = "cbpp",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
       control = paste0('glmerControl(check.nobs.vs.nlev = "ignore", calc.derivs = FALSE, ',
                        'check.response.not.const = "warning", boundary.tol = 1e-4)'),
       py = list(check_nobs_vs_nlev = "ignore", calc_derivs = FALSE,
                 check_response_not_const = "warning", boundary_tol = 1e-4))
)

run <- function(case) {
  reml <- if (is.null(case$REML)) "" else sprintf(", REML = %s", case$REML)
  fam <- if (case$fun == "glmer") ", family = binomial" else ""
  text <- sprintf("%s(%s, data = %s%s%s, control = %s)", case$fun, case$formula, case$data,
                  fam, reml, case$control)
  m <- eval(parse(text = text))
  list(id = case$id, fun = case$fun, data = case$data, formula = case$formula,
       REML = if (is.null(case$REML)) TRUE else case$REML,
       r_control = case$control, py = case$py,
       summary = paste(capture.output(print(summary(m))), collapse = "\n"),
       print = paste(capture.output(print(m)), collapse = "\n"))
}

nums <- c(1e5, 123456, 0.1, 1e-7, 2e-3, 20000, 1/3, 100, 1e15, 1e16, 123456789012, -2.5,
          1e-300, 1e-4, 1.2e-4, 1234567.1, 0.1 + 0.2, 2^60, 100000.5, 1e-5, 3e8, 0, -1e-8)
# cat(fill = TRUE) at the width: "Control:" and items of n characters (the separator counts)
fill <- list()
for (n in 68:72) for (tail in list(character(0), "b", c("bb", strrep("c", 75)))) {
  items <- c("Control:", strrep("a", n), tail)
  fill[[length(fill) + 1]] <- list(items = as.list(items),
                                   text = paste(capture.output(do.call(cat, c(as.list(items),
                                                                    fill = TRUE))),
                                                collapse = "\n"))
}
out <- list(lme4 = as.character(packageVersion("lme4")), cases = lapply(cases, run),
            numbers = lapply(nums, function(x) list(value = sprintf("%.17g", x),
                                                    deparse = deparse(x))),
            fill = fill)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = FALSE),
           "tests/fixtures/control_line.json")
