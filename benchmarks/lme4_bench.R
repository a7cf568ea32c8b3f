# Times lme4's lmer on one benchmark model; prints one JSON line.
# Usage: Rscript benchmarks/lme4_bench.R NAME DATA FORMULA RUNS
# DATA is an lme4 data set name or a CSV file.
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
name <- args[1]; form <- as.formula(args[3]); runs <- as.integer(args[4])
data <- if (grepl("\\.csv$", args[2])) read.csv(args[2], stringsAsFactors = TRUE) else get(args[2])
time_of <- function(f) { t0 <- proc.time()[["elapsed"]]; f(); proc.time()[["elapsed"]] - t0 }
fit <- NULL
times <- sapply(seq_len(runs), function(i) time_of(function() fit <<- suppressMessages(lmer(form, data))))
crit <- if (isREML(fit)) REMLcrit(fit) else deviance(fit)
vc <- as.data.frame(VarCorr(fit), order = "lower.tri")
cat(toJSON(list(engine = "lme4", version = as.character(packageVersion("lme4")), model = name,
                fit_s = median(times), feval = fit@optinfo$feval, criterion = crit,
                beta = unname(fixef(fit)), sdcor = vc$sdcor),
           auto_unbox = TRUE, digits = NA), "\n")
