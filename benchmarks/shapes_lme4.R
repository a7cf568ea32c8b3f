# Times lme4's lmer on one design of benchmarks/shapes.py; prints one JSON line.
# Usage: Rscript benchmarks/shapes_lme4.R CSV FORMULA RUNS REML [WEIGHTS_COLUMN]
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[1], stringsAsFactors = TRUE)
form <- as.formula(args[2]); runs <- as.integer(args[3]); reml <- as.logical(args[4])
wcol <- if (length(args) >= 5 && nzchar(args[5])) args[5] else NULL
fit_once <- function() {
  if (is.null(wcol)) suppressMessages(suppressWarnings(lmer(form, data, REML = reml)))
  else {
    data$.w <- data[[wcol]]
    suppressMessages(suppressWarnings(lmer(form, data, REML = reml, weights = .w)))
  }
}
fit <- fit_once()  # warm-up, as the Python engines get
cpu <- wall <- numeric(runs)
for (i in seq_len(runs)) {
  t0 <- proc.time(); fit <- fit_once(); d <- proc.time() - t0
  cpu[i] <- d[["user.self"]] + d[["sys.self"]]; wall[i] <- d[["elapsed"]]
}
crit <- if (isREML(fit)) REMLcrit(fit) else deviance(fit)
cat(toJSON(list(cpu_s = median(cpu), wall_s = median(wall), feval = fit@optinfo$feval,
                criterion = crit), auto_unbox = TRUE, digits = NA), "\n")
