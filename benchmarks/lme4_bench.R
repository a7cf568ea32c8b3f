# Times lme4's lFormula and lmer on the benchmark models; prints one JSON object per line.
# Usage: Rscript benchmarks/lme4_bench.R NAME DATA FORMULA RUNS
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
name <- args[1]; data <- get(args[2]); form <- as.formula(args[3]); runs <- as.integer(args[4])
invisible(lmer(form, data))  # warm up
time_of <- function(f) { t0 <- proc.time()[["elapsed"]]; f(); proc.time()[["elapsed"]] - t0 }
fit_times <- sapply(seq_len(runs), function(i) time_of(function() lmer(form, data)))
lf_times <- sapply(seq_len(runs), function(i) time_of(function() lFormula(form, data)))
fit <- lmer(form, data)
crit <- if (isREML(fit)) REMLcrit(fit) else deviance(fit)
cat(toJSON(list(engine = "lme4", version = as.character(packageVersion("lme4")), model = name,
                fit_s = median(fit_times), lformula_s = median(lf_times),
                feval = fit@optinfo$feval, criterion = crit, theta = unname(getME(fit, "theta")),
                beta = unname(fixef(fit)), sigma = sigma(fit)),
           auto_unbox = TRUE, digits = NA), "\n")
