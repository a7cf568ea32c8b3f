# lme4 on the issue-12 large crossed design y ~ x + (1 | subj) + (1 | item), 10 rows per
# subject and ~33 per item (benchmarks.models.crossed), at scaled sizes and at full size.
# Usage: LC_ALL=C Rscript tools/R/bench_large_crossed.R CSV MODE [EVALS]
#   MODE "scaled": lme4's devfun (devFunOnly=TRUE): setup time, EVALS timed evaluations at
#     lme4's start (median), the criterion at a few fixed θ (for the engine's 1e-10 check),
#     CHOLMOD's fill on the whole system (Matrix::Cholesky, perm=TRUE, super=TRUE, as lme4):
#     nnz(L) and its largest supernode; the pattern of the item block's Schur complement;
#     with "fit" (4th argument) also lmer's full fit; with "nocrit", no criteria at fixed θ.
#   MODE "full": the devfun and its first evaluation only, a line per step (run it under a
#     time cap: a step that did not finish has no line).
# One JSON line per step on stdout. The CSV files are written by benchmarks.large (python -m
# benchmarks.large --data DIR).
suppressMessages({library(lme4); library(Matrix); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
path <- args[1]; mode <- args[2]
evals <- if (length(args) >= 3) as.integer(args[3]) else 3L
form <- y ~ x + (1 | subj) + (1 | item)
emit <- function(...) { cat(toJSON(list(...), auto_unbox = TRUE, digits = NA), "\n"); flush(stdout()) }
now <- function() proc.time()[["elapsed"]]
cpu <- function() { p <- proc.time(); p[["user.self"]] + p[["sys.self"]] }
t0 <- now()
data <- read.csv(path, stringsAsFactors = TRUE)
emit(step = "read", file = basename(path), rows = nrow(data), subj = nlevels(data$subj),
     item = nlevels(data$item), s = now() - t0)
t0 <- now(); c0 <- cpu()
devfun <- lmer(form, data, devFunOnly = TRUE)
emit(step = "devfun", s = now() - t0, cpu_s = cpu() - c0)
env <- environment(devfun)
start <- env$pp$theta
t0 <- now(); c0 <- cpu()
crit0 <- devfun(start)
first <- now() - t0
emit(step = "first_eval", theta = start, criterion = crit0, s = first, cpu_s = cpu() - c0)
if (mode == "scaled") {
  times <- c(first); cpus <- c()
  for (i in seq_len(max(0L, evals - 1L))) {
    t0 <- now(); c0 <- cpu(); devfun(start); times <- c(times, now() - t0); cpus <- c(cpus, cpu() - c0)
  }
  emit(step = "evals", s = times, median_s = median(times), cpu_s = cpus)
  if (!(length(args) >= 4 && args[4] == "nocrit")) {
    thetas <- list(c(0.5, 0.3), c(1, 1), c(0.2, 1.5), c(1.3, 0.05))
    crits <- sapply(thetas, function(th) devfun(th))
    emit(step = "criteria", theta = thetas, criterion = crits, REML = TRUE)
  }
  # CHOLMOD's fill on the whole system, as lme4 factors it (at the start θ)
  L <- env$pp$L()
  Lsp <- as(L, "CsparseMatrix")
  q <- nrow(Lsp)
  # the item block's Schur complement after eliminating the subjects: its pattern
  B <- fac2sparse(data$item) %*% t(fac2sparse(data$subj))
  S <- tcrossprod(B)
  nS <- nrow(S)
  emit(step = "fill", q = q, nnz_L = length(Lsp@x),
       nnz_L_stored = length(L@x), largest_supernode = max(diff(L@super)),
       supernodes = length(L@super) - 1L, schur_order = nS,
       schur_nnz_lower = (nnzero(S) + nS) / 2, schur_fill = nnzero(S) / nS^2)
  if (length(args) >= 4 && args[4] == "fit") {
    t0 <- now()
    fit <- lmer(form, data)
    emit(step = "fit", s = now() - t0, feval = fit@optinfo$feval, criterion = REMLcrit(fit),
         theta = unname(getME(fit, "theta")), beta = unname(fixef(fit)))
  }
}
