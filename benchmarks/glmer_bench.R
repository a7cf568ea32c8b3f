# Times lme4's glmer on one benchmark model; prints one JSON line.
# Usage: Rscript benchmarks/glmer_bench.R NAME DATA FORMULA FAMILY RUNS
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
name <- args[1]; form <- as.formula(args[3]); fam <- get(args[4]); runs <- as.integer(args[5])
data <- if (grepl("\\.csv$", args[2])) read.csv(args[2], stringsAsFactors = TRUE) else get(args[2])
time_of <- function(f) { t0 <- proc.time()[["elapsed"]]; f(); proc.time()[["elapsed"]] - t0 }
fit <- NULL
times <- sapply(seq_len(runs), function(i)
  time_of(function() fit <<- suppressWarnings(suppressMessages(glmer(form, data, fam)))))
cat(toJSON(list(engine = "lme4", model = name, fit_s = min(times),
                feval = fit@optinfo$feval, logLik = as.numeric(logLik(fit)),
                beta = unname(fixef(fit))), auto_unbox = TRUE, digits = NA), "\n")
