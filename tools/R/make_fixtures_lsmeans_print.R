# lmerTest's printed least-squares means tables: print(ls_means(m, ...)) and
# print(difflsmeans(m, ...)) (lmerTest's print.ls_means: its heading, printCoefmat with the df
# rounded to one decimal, the confidence level and the df method), for several models and
# arguments.
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_lsmeans_print.R
# Writes tests/fixtures/lsmeans_print.json (about 10 s).
source("tools/R/fixture_helpers.R")
suppressMessages({library(lmerTest); library(pbkrtest); library(jsonlite)})
options(digits = 7, warn = 1)

data(ham, package = "lmerTest")
data(Machines, package = "nlme"); Machines <- as.data.frame(Machines)
data(Oats, package = "nlme"); Oats <- as.data.frame(Oats)
# cake without the cell recipe C x temperature 225 (as make_fixtures_lmertest.R): a
# rank-deficient X whose means involving that cell are not estimable (NA rows)
missing_rows <- which(!(cake$recipe == "C" & cake$temperature == "225"))
cake_missing <- cake[missing_rows, ]
rownames(cake_missing) <- NULL
datasets <- list(cake = cake, cake_missing = cake_missing, ham = ham, Machines = Machines,
                 Oats = Oats, sleepstudy = sleepstudy)

models <- list(
  cake = list(formula = "angle ~ recipe * temperature + (1 | recipe:replicate)",
              data = "cake", REML = TRUE),
  cake_temp = list(formula = "angle ~ recipe * temp + (1 | recipe:replicate)",
                   data = "cake", REML = TRUE),
  cake_missing = list(formula = "angle ~ recipe * temperature + (1 | replicate)",
                      data = "cake_missing", REML = TRUE),
  ham = list(formula = paste("Informed.liking ~ Product * Information + (1 | Consumer) +",
                             "(1 | Consumer:Product)"), data = "ham", REML = TRUE),
  machines = list(formula = "score ~ Machine + (1 | Worker/Machine)", data = "Machines",
                  REML = TRUE),
  oats_ml = list(formula = "yield ~ nitro + Variety + (1 | Block/Variety)", data = "Oats",
                 REML = FALSE),
  sleepstudy = list(formula = "Reaction ~ Days + (Days | Subject)", data = "sleepstudy",
                    REML = TRUE)
)

# each case: the function (ls_means or difflsmeans) and its arguments besides the model
cases <- list(
  list(model = "cake", fun = "ls_means"),
  list(model = "cake", fun = "ls_means", which = "recipe"),
  list(model = "cake", fun = "ls_means", which = "recipe", pairwise = TRUE),
  list(model = "cake", fun = "ls_means", which = "recipe:temperature", level = 0.9),
  list(model = "cake", fun = "ls_means", which = c("temperature", "recipe"),
       ddf = "Kenward-Roger"),
  list(model = "cake", fun = "difflsmeans"),
  list(model = "cake", fun = "difflsmeans", which = "temperature"),
  list(model = "cake", fun = "difflsmeans", which = "recipe", ddf = "Kenward-Roger",
       level = 0.99),
  list(model = "cake_temp", fun = "ls_means"),
  list(model = "cake_temp", fun = "difflsmeans", level = 0.999),
  list(model = "cake_missing", fun = "ls_means", which = "recipe"),
  list(model = "cake_missing", fun = "difflsmeans", which = "recipe"),
  list(model = "cake_missing", fun = "difflsmeans", which = "recipe:temperature"),
  list(model = "ham", fun = "ls_means", which = "Product"),
  list(model = "ham", fun = "difflsmeans", which = "Product"),
  list(model = "ham", fun = "ls_means", which = "Product:Information", level = 0.5),
  list(model = "machines", fun = "ls_means", ddf = "Kenward-Roger"),
  list(model = "machines", fun = "difflsmeans"),
  list(model = "oats_ml", fun = "difflsmeans"),
  list(model = "sleepstudy", fun = "ls_means"),
  list(model = "sleepstudy", fun = "difflsmeans")
)

fits <- lapply(models, function(s) {
  call <- substitute(lmer(F, data = D, REML = R),
                     list(F = as.formula(s$formula), D = as.name(s$data), R = s$REML))
  eval(call, envir = list2env(datasets, parent = asNamespace("lmerTest")))
})
out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest")),
                            pbkrtest = as.character(packageVersion("pbkrtest"))),
            cake_missing_rows = missing_rows,
            # lme4's θ of each fit: the tests print at it (tests/fit_accuracy.py's at_point),
            # so that the optimizer's last digits do not move a printed digit
            models = Map(function(s, m) c(s, list(theta = unname(getME(m, "theta")))),
                         models, fits))
out$cases <- lapply(cases, function(cs) {
  m <- fits[[cs$model]]
  args <- list(m, which = cs$which, level = if (is.null(cs$level)) 0.95 else cs$level,
               ddf = if (is.null(cs$ddf)) "Satterthwaite" else cs$ddf)
  if (isTRUE(cs$pairwise)) args$pairwise <- TRUE
  x <- do.call(cs$fun, args)
  # the estimates too, to tell which tokens of the text are round-off (a difference of two
  # equal means is ~1e-14 in R and in Python, each its own)
  c(cs, list(text = capture.output(print(x)),
             estimate = unname(as.numeric(x[, "Estimate"])),
             rownames = rownames(x)))
})
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", null = "null"),
           "tests/fixtures/lsmeans_print.json")
