# Times lme4's glmer on one benchmark model; prints one JSON line.
# Usage: Rscript benchmarks/glmer_bench.R NAME DATA FORMULA FAMILY RUNS
# fit_s: the fastest elapsed time of RUNS fits; cpu_s: that fit's CPU time (user + system).
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
name <- args[1]; form <- as.formula(args[3]); fam <- get(args[4]); runs <- as.integer(args[5])
data <- if (grepl("\\.csv$", args[2])) read.csv(args[2], stringsAsFactors = TRUE) else get(args[2])
time_of <- function(f) {
  t0 <- proc.time(); f(); d <- proc.time() - t0
  c(elapsed = d[["elapsed"]], cpu = d[["user.self"]] + d[["sys.self"]])
}
fit <- NULL
times <- sapply(seq_len(runs), function(i)
  time_of(function() fit <<- suppressWarnings(suppressMessages(glmer(form, data, fam)))))
best <- which.min(times["elapsed", ])
cat(toJSON(list(engine = "lme4", model = name, fit_s = times["elapsed", best],
                cpu_s = times["cpu", best],
                feval = fit@optinfo$feval, logLik = as.numeric(logLik(fit)),
                beta = unname(fixef(fit))), auto_unbox = TRUE, digits = NA), "\n")
