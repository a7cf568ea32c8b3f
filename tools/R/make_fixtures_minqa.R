# Every point minqa::bobyqa (1.2.5, Powell's Fortran) evaluates, on test problems and on lme4's
# glmer first-stage deviance functions, for tests/test_bobyqa_minqa.py: the Python port
# (lmeformula/bobyqa.py) must request the same points in the same order, given the same
# values. Run from the repository root:
#   LC_ALL=C Rscript tools/R/make_fixtures_minqa.R
# Writes tests/fixtures/minqa_bobyqa.json. Numbers are written as C99 hexadecimal ("%a"), so
# that Python reads back the same doubles (float.fromhex).
suppressPackageStartupMessages({
  library(jsonlite)
  library(minqa)
  library(lme4)
})
stopifnot(packageVersion("minqa") == "1.2.5", packageVersion("lme4") == "1.1.31")

hex <- function(x) ifelse(is.finite(x), sprintf("%a", x), as.character(x))

# minqa::bobyqa with every call of the objective recorded: the first is bobyqa()'s
# checkObj, the last its rval (the returned point), those between the Fortran's CALFUN
trace_bobyqa <- function(name, fn, par, lower = -Inf, upper = Inf, control = list(),
                         note = "") {
  xs <- list()
  fs <- numeric(0)
  traced <- function(x) {
    v <- fn(x)
    xs[[length(xs) + 1L]] <<- as.numeric(x)
    fs <<- c(fs, v)
    v
  }
  w <- character(0)
  res <- withCallingHandlers(bobyqa(par, traced, lower, upper, control),
                             warning = function(cond) {
                               w <<- c(w, conditionMessage(cond))
                               invokeRestart("muffleWarning")
                             })
  n <- length(par)
  stopifnot(length(fs) == res$feval + 2L)
  cat(sprintf("%-28s n=%d feval=%4d ierr=%d fval=%.10g\n", name, n, res$feval, res$ierr,
              res$fval))
  list(name = name, note = note, n = n, par0 = hex(par),
       lower = hex(rep_len(as.numeric(lower), n)), upper = hex(rep_len(as.numeric(upper), n)),
       control = control,
       points = lapply(xs, hex), values = hex(fs),
       par = hex(res$par), fval = hex(res$fval), feval = res$feval, ierr = res$ierr,
       msg = res$msg, warnings = w)
}

rosen <- function(x) {
  n <- length(x)
  sum(100 * (x[-1] - x[-n]^2)^2 + (1 - x[-n])^2)
}
quad_box <- function(x) {  # a convex quadratic whose minimum (2, -1, 0.5) is outside the box
  A <- matrix(c(3, 1, 0.5, 1, 2, 0.3, 0.5, 0.3, 1), 3)
  r <- x - c(2, -1, 0.5)
  sum(r * (A %*% r))
}
smooth7 <- function(x) sum((1:7) * (x - (1:7) / 4)^2) + sum(x)^2 / 10 + sum(x^4) / 20
smooth12 <- function(x) {  # coupled, with minima of some coordinates below their bounds
  i <- seq_along(x)
  sum(i * (x - cos(i))^2) + sum(diff(x)^2) / 2 + sum(x)^2 / 20 + sum(x^4) / 40
}
one_d <- function(x) (x - 3)^2 + sin(3 * x)
holes <- function(x) if (x[1] > 0.5) NA_real_ else if (x[2] < 0.3) Inf else rosen(x)
edge <- function(x) if (x[1] > 0.7) NA_real_ else rosen(x)

out <- list(
  trace_bobyqa("rosen2", rosen, c(-1.2, 1)),
  trace_bobyqa("rosen3_lower", rosen, c(-1.2, 1, 1.5), lower = c(-Inf, -Inf, 1.2)),
  trace_bobyqa("rosen5_lower0", rosen, c(0.5, 0.05, 0.2, 0.4, 0.15), lower = 0,
               note = "x0 within rhobeg of the bound 0: BOBYQA moves it"),
  trace_bobyqa("quad_box3", quad_box, c(0.5, 0.5, 0.5), lower = 0, upper = 1),
  trace_bobyqa("quad_box3_start_on_bounds", quad_box, c(0, 0.95, 1), lower = 0, upper = 1,
               note = "x0 on the lower bound, within rhobeg of the upper, on the upper"),
  trace_bobyqa("one_d", one_d, 1),
  trace_bobyqa("one_d_lower", function(x) (x + 1)^2, 2, lower = 0),
  trace_bobyqa("smooth7_theta_bounds", smooth7, rep(1, 7), lower = c(0, -Inf, 0, -Inf, -Inf, 0, 0)),
  trace_bobyqa("smooth12_bounds", smooth12, rep(0.5, 12),
               lower = rep(c(0, -Inf, 0), 4), upper = rep(c(Inf, Inf, 2), 4)),
  # (these three reach branches the others do not: BOBYQB's test at label 80 of a step
  # ending on a lower or an upper bound, and the replacement of the model by the least
  # Frobenius norm interpolant after three poor models, ITEST = 3)
  trace_bobyqa("expsum_lower_bound", function(x) sum(exp(x * c(1, 2, 3))) + sum(x)^2,
               c(1, 0.5, 0.8), lower = c(0, -0.1, 0.2)),
  trace_bobyqa("cubic_upper_bound", function(x) -sum(x^3) - sum(x), c(1, 1, 1), lower = 0,
               upper = 2),
  trace_bobyqa("steps_itest", function(x) sum(floor(8 * x)^2) / 64 + 0.01 * sum(x^2),
               c(1, 0.7, 0.4)),
  trace_bobyqa("rosen3_npt7", rosen, c(-1.2, 1, 1.5), control = list(npt = 7)),
  trace_bobyqa("rosen3_npt10", rosen, c(-1.2, 1, 1.5), control = list(npt = 10)),
  trace_bobyqa("rosen4_npt8", rosen, c(-1.2, 1, 0.5, 1.5), control = list(npt = 8)),
  trace_bobyqa("rosen2_controls", rosen, c(-1.2, 1),
               control = list(rhobeg = 0.5, rhoend = 1e-4, maxfun = 500)),
  trace_bobyqa("rosen2_maxfun", rosen, c(-1.2, 1), control = list(maxfun = 40)),
  trace_bobyqa("rosen3_maxfun_below_npt", rosen, c(-1.2, 1, 1.5), control = list(maxfun = 3)),
  trace_bobyqa("holes_nonfinite", holes, c(-1.2, 1),
               note = "NA and Inf values: minqa's calfun replaces them by the largest double"),
  trace_bobyqa("edge_nonfinite", edge, c(-1.2, 1),
               note = "NA beyond x1 = 0.7, where the minimum would be")
)

# lme4's glmer first stage: bobyqa over theta from pp$theta (x0 = 0 -> 0.001, lme4's "minor
# kludge"), lower = the deviance function's bounds, as optimizeGlmer(stage = 1) calls it
fixture_data <- function(path) {
  cols <- fromJSON(path, simplifyVector = FALSE)$columns
  d <- lapply(cols, function(col) {
    v <- unlist(lapply(col$values, function(e) if (is.null(e)) NA else e))
    if (col$type == "factor") factor(v, levels = unlist(col$levels))
    else if (col$type == "integer") as.integer(v)
    else if (col$type == "numeric") as.numeric(v)
    else v
  })
  names(d) <- vapply(cols, function(col) col$name, "")
  as.data.frame(d, stringsAsFactors = FALSE)
}
stage1 <- function(name, formula, data, family, note = "") {
  dfun <- glmer(formula, data, family, nAGQ = 0, devFunOnly = TRUE)
  rho <- environment(dfun)
  par <- rho$pp$theta + 0  # (a copy: pp$theta is the C++ object's memory)
  if (all(par == 0)) par[] <- 0.001
  tr <- trace_bobyqa(name, dfun, par, lower = rho$lower, note = note)
  tr$formula <- deparse(formula)
  tr
}
cbpp$obs <- seq_len(nrow(cbpp))
fx2 <- function(nm) file.path("tests/fixtures/glmer_fuzz2", paste0(nm, ".json"))
d1049 <- fixture_data(fx2("f_random_1049_bin_binary"))
d1022 <- fixture_data(fx2("f_random_1022_poi"))
dinv <- fixture_data(fx2("c_invgauss_log_nested"))
dlog <- fixture_data(fx2("a_logical_nagq0_crossed"))
set.seed(14)
dvec <- data.frame(f = factor(sample(letters[1:4], 2000, TRUE)),
                   g = factor(sample(1:40, 2000, TRUE)))
dvec$y <- rbinom(2000, 1, plogis(-0.3 + rnorm(40, sd = 0.8)[dvec$g] +
                                   c(0, 0.5, -0.4, 0.2)[dvec$f]))
glmm <- list(
  stage1("glmer_cbpp_herd", cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp,
         binomial),
  stage1("glmer_cbpp_herd_obs",
         cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs), cbpp, binomial),
  stage1("glmer_fuzz2_f_random_1049", s ~ x + z + (x | g) + (1 | k), d1049,
         binomial(link = "probit"),
         note = "tests/fixtures/glmer_fuzz2/f_random_1049_bin_binary.json (LME4_STOPS_SHORT)"),
  stage1("glmer_fuzz2_f_random_1022", s ~ x * f + offset(log(expo)) + (x | g) + (1 | k),
         d1022, poisson),
  stage1("glmer_fuzz2_c_invgauss", yi ~ x + (1 | g/h), dinv,
         inverse.gaussian(link = "log")),
  stage1("glmer_fuzz2_a_logical", ok ~ x + site + (1 | g) + (0 + x | site), dlog, binomial),
  stage1("glmer_vector_10_theta", y ~ f + (0 + f | g), dvec, binomial,
         note = "a 4 x 4 covariance matrix: 10 theta")
)
# the same first stage twice more, in this session: minqa's RESCUE evaluates at an undefined
# point, so a path through it could differ between runs
again <- stage1("glmer_fuzz2_f_random_1049", s ~ x + z + (x | g) + (1 | k), d1049,
                binomial(link = "probit"))
cat("f_random_1049 run again: same points:", identical(again$points, glmm[[3]]$points), "\n")

# lme4's own fits: every call of minqa::bobyqa that lmer and glmer make, traced at its entry
# (its objective wrapped) and exit; optimizer = "bobyqa" in lmer (sleepstudy, Penicillin)
# and in both glmer stages (cbpp: the second stage with optwrap's adj settings rhobeg = 2e-4,
# rhoend = 2e-7 over (theta, beta)), and glmer's default first stage (cbpp with two terms,
# grouseticks with three)
.rec <- new.env()
.rec$runs <- list()
trace("bobyqa", where = asNamespace("minqa"), print = FALSE, tracer = quote({
  .f0 <- fn
  .i <- length(.rec$runs) + 1L
  .rec$runs[[.i]] <- list(x = list(), f = numeric(0), par0 = as.numeric(par) + 0,
                          lower = rep_len(as.numeric(lower), length(par)),
                          upper = rep_len(as.numeric(upper), length(par)), control = control)
  fn <- function(x, ...) {
    v <- .f0(x, ...)
    .rec$runs[[.i]]$x[[length(.rec$runs[[.i]]$x) + 1L]] <- as.numeric(x)
    .rec$runs[[.i]]$f <- c(.rec$runs[[.i]]$f, v)
    v
  }
}), exit = quote(.rec$runs[[.i]]$res <- returnValue()))
lme4_runs <- function(name, expr, note = "") {
  .rec$runs <- list()
  suppressWarnings(force(expr))
  lapply(seq_along(.rec$runs), function(i) {
    r <- .rec$runs[[i]]
    res <- r$res
    nm <- if (length(.rec$runs) > 1) paste0(name, "_stage", i) else name
    cat(sprintf("%-28s n=%d feval=%4d ierr=%d fval=%.10g\n", nm, length(r$par0), res$feval,
                res$ierr, res$fval))
    stopifnot(length(r$f) == res$feval + 2L)
    list(name = nm, note = note, n = length(r$par0), par0 = hex(r$par0), lower = hex(r$lower),
         upper = hex(r$upper), control = r$control[c("rhobeg", "rhoend")[
           c("rhobeg", "rhoend") %in% names(r$control)]],
         points = lapply(r$x, hex), values = hex(r$f), par = hex(res$par),
         fval = hex(res$fval), feval = res$feval, ierr = res$ierr, msg = res$msg,
         warnings = character(0))
  })
}
lme4fits <- c(
  lme4_runs("lmer_sleepstudy_bobyqa",
            lmer(Reaction ~ Days + (Days | Subject), sleepstudy,
                 control = lmerControl(optimizer = "bobyqa"))),
  lme4_runs("lmer_penicillin_bobyqa",
            lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin,
                 control = lmerControl(optimizer = "bobyqa"))),
  lme4_runs("glmer_cbpp_bobyqa",
            glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial,
                  control = glmerControl(optimizer = "bobyqa"))),
  lme4_runs("glmer_cbpp_herd_obs_default",
            glmer(cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs), cbpp,
                  binomial)),
  lme4_runs("glmer_grouseticks_default",
            glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION),
                  grouseticks, poisson))
)
untrace("bobyqa", where = asNamespace("minqa"))

res <- list(minqa = as.character(packageVersion("minqa")),
            lme4 = as.character(packageVersion("lme4")), cases = c(out, glmm, lme4fits))
writeLines(toJSON(res, auto_unbox = TRUE, null = "null", digits = NA),
           "tests/fixtures/minqa_bobyqa.json")
