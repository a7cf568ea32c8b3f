# lme4 1.1-31 on designs whose block 2 takes the sparse factor (lmeformula.pls.cholmod):
# an LMM whose terms after the first (most levels) are scalar, with >= 600 random effects in
# them and a sparse block 2 (students rating teachers of their own school, teachers nested
# in schools, an a:b grouping), with weights (some zero), NA rows, subset=, ML, offsets, a
# factor with many levels, a rank-deficient X, a singular fit, block 2 of ~700 (the dense
# engine) and ~2,000 (the large-block engine), and designs near the fill limit. Each case
# records lme4's theta, beta, criterion, feval, sigma, vcov, the criterion at fixed theta
# (devFunOnly = TRUE), fitted values and predictions on new data.
# Run from the repository root (about a minute):
#   LC_ALL=C Rscript tools/R/make_fixtures_sparse_block2.R
# Writes tests/fixtures/sparse_block2/data_<dataset>.json (the simulated data) and
# tests/fixtures/sparse_block2/<case>.json (lme4's answers). With DATA_ONLY=1 it writes the
# data alone.
suppressMessages({library(lme4); library(jsonlite)})
options(digits = 7, warn = 1)
out_dir <- "tests/fixtures/sparse_block2"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
source("tools/R/fixture_helpers.R")  # columns_of, collect
data_only <- nzchar(Sys.getenv("DATA_ONLY"))

num <- function(x) unname(as.numeric(x))
fingerprint <- function(v) {  # (make_fixtures.R's)
  v <- as.numeric(v); k <- seq_along(v)
  c(sum(v), sum(v * k), sum(v * (k %% 9973)))
}
write_json_file <- function(x, path)
  writeLines(toJSON(x, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), path)

# Students rating teachers of their own school. sizes: teachers per school (school k's
# teachers are t<offset + 1..sizes[k]>); each student belongs to one school (drawn with
# probability prob) and rates `ratings` teachers of it (with replacement). Columns: y, x,
# f (25 levels), w (weights), w0 (w with 2 % zero),
# off (an offset), yna and xna (y and x with NA), s (student), t (teacher), school, slot (a
# teacher's number within the school: school:slot is t).
simulate <- function(seed, sizes, nstudent, ratings = 3, prob = NULL, sd_t = 0.6,
                     sd_s = 0.8, sd_school = 0.5) {
  set.seed(seed)
  nschool <- length(sizes)
  school <- sample.int(nschool, nstudent, TRUE, prob = prob)
  student <- rep(seq_len(nstudent), each = ratings)
  n <- length(student)
  sch <- school[student]
  slot <- vapply(sizes[sch], function(k) sample.int(k, 1), 1L)
  teacher <- c(0, cumsum(sizes))[sch] + slot
  x <- round(rnorm(n), 3)
  f <- sample.int(25, n, TRUE)
  y <- 1 + 0.5 * x + rnorm(25, sd = 0.3)[f] + rnorm(nstudent, sd = sd_s)[student] +
    rnorm(sum(sizes), sd = sd_t)[teacher] + rnorm(nschool, sd = sd_school)[sch] + rnorm(n)
  w <- round(runif(n, 0.2, 3), 2)
  w0 <- w
  w0[sample.int(n, n %/% 50)] <- 0
  yna <- round(y, 3); yna[sample.int(n, 40)] <- NA
  xna <- x; xna[sample.int(n, 30)] <- NA
  data.frame(y = round(y, 3), x = x,
             f = factor(sprintf("f%02d", f)), w = w, w0 = w0, off = round(runif(n, -1, 1), 3),
             yna = yna, xna = xna,
             s = factor(sprintf("s%d", student)), t = factor(sprintf("t%d", teacher)),
             school = factor(sprintf("c%d", sch)), slot = factor(sprintf("k%d", slot)))
}

datasets <- list(
  # 70 schools of 10 teachers (700 in block 2), 1,800 students: the dense engine's path
  schools = simulate(1, rep(10, 70), 1800),
  # no teacher variation: lme4's teacher theta at 0 (the seed chosen so that it is, with
  # the schools' variation in y and without it in y0)
  flat = simulate(16, rep(10, 70), 1800, sd_t = 0),
  # 200 schools of 10 teachers (2,000 in block 2), 4,000 students: the large-block engine
  large = simulate(3, rep(10, 200), 4000),
  # two schools of unequal size, students rating 8 teachers: block 2's factor (AMD's order)
  # near the fill limit (0.6 of a dense triangle): below it, at it, above it
  fill_below = simulate(4, c(500, 200), 1500, ratings = 8, prob = c(500, 200)),
  fill_edge = simulate(5, c(530, 170), 1500, ratings = 8, prob = c(530, 170)),
  fill_above = simulate(6, c(550, 150), 1500, ratings = 8, prob = c(550, 150)),
  # the same for the large-block engine: 1,600 teachers in two schools
  large_fill_below = simulate(8, c(1200, 400), 2300, ratings = 8, prob = c(1200, 400)),
  large_fill_above = simulate(9, c(1300, 300), 2300, ratings = 10, prob = c(1300, 300)),
  # one school of 620 teachers, 700 students rating 30 each: block 2's pattern itself above
  # the limit
  pattern_dense = simulate(7, 620, 700, ratings = 30)
)
flat0 <- simulate(16, rep(10, 70), 1800, sd_t = 0, sd_school = 0)
stopifnot(identical(flat0$t, datasets$flat$t), identical(flat0$s, datasets$flat$s))
datasets$flat$y0 <- flat0$y
# the columns the plain designs use
datasets$large <- datasets$large[c("y", "x", "w", "yna", "xna", "s", "t", "school")]
datasets$flat <- datasets$flat[c("y", "y0", "x", "s", "t", "school")]
for (nm in c("fill_below", "fill_edge", "fill_above", "pattern_dense", "large_fill_below",
            "large_fill_above"))
  datasets[[nm]] <- datasets[[nm]][c("y", "x", "s", "t")]
# the data's columns, factors as 1-based codes into their levels (a third of the size of
# their labels); numerics as they are (NA as null)
compact_columns <- function(d) {
  lapply(names(d), function(nm) {
    x <- d[[nm]]
    if (is.factor(x)) list(name = nm, type = "factor", levels = levels(x),
                           codes = as.integer(x))
    else list(name = nm, type = "numeric", values = as.numeric(x))
  })
}
for (nm in names(datasets))
  write_json_file(list(name = nm, columns = compact_columns(datasets[[nm]])),
                  file.path(out_dir, paste0("data_", nm, ".json")))
if (data_only) quit(save = "no")

# new data: rows of the data (known levels) and rows with a new student and a new teacher
newdata_of <- function(d) {
  nd <- d[c(1, 2, 3, 50, 400), ]
  extra <- d[c(5, 6), ]
  extra$s <- "s_new"
  extra$t <- "t_new"
  nd <- rbind(data.frame(lapply(nd, function(x) if (is.factor(x)) as.character(x) else x)),
              data.frame(lapply(extra, function(x) if (is.factor(x)) as.character(x) else x)))
  nd
}

# args: lmer's further arguments as R text (REML, weights, offset, subset, na.action)
run_case <- function(name, dataset, formula, args = list(), refits = FALSE) {
  d <- datasets[[dataset]]
  call <- sprintf("lmer(%s, data = d", formula)
  for (a in names(args)) call <- paste0(call, ", ", a, " = ", args[[a]])
  call <- paste0(call, ")")
  t0 <- proc.time()[["elapsed"]]
  r <- collect(eval(parse(text = call)))
  elapsed <- proc.time()[["elapsed"]] - t0
  m <- r$fit
  stopifnot(!is.null(m))
  reml <- isREML(m)
  theta <- num(getME(m, "theta"))
  devfun <- eval(parse(text = sub("\\)$", ", devFunOnly = TRUE)", call)))
  probes <- list(theta, theta * 0.5 + 0.05, theta * 1.7, replace(theta, length(theta), 0),
                 rep(1, length(theta)))
  nd <- newdata_of(d)
  fv <- fitted(m)
  rows <- sort(unique(c(1:40, seq(41, length(fv), by = 97), head(which(is.na(fv)), 10))))
  # predictions on new data with an offset argument need it in the new data (offset = off)
  out <- list(
    name = name, dataset = dataset, formula = formula, args = args, call = call,
    warnings = as.list(r$warnings),
    theta = theta, theta_names = names(getME(m, "theta")), beta = num(fixef(m)),
    fixef_names = names(fixef(m)), sigma = sigma(m), REML = reml,
    crit = if (reml) REMLcrit(m) else deviance(m), feval = m@optinfo$feval,
    crit_finite = is.finite(if (reml) REMLcrit(m) else deviance(m)),
    nobs = nobs(m), ngrps = as.list(ngrps(m)), isSingular = isSingular(m),
    q = nrow(getME(m, "Zt")), p = ncol(getME(m, "X")),
    vcov = unname(as.matrix(vcov(m))),
    dev_at = lapply(probes, function(th) list(theta = th, value = devfun(th))),
    # fitted values and population predictions at some rows (1-based positions in R's
    # vectors, NA rows of na.exclude among them): the whole vectors would be megabytes
    rows = rows,
    # and whole, as tests/cases.py's fingerprints (sum, and weighted by position and by
    # position modulo 9973): the fitted values (NA rows of na.exclude left out) and the
    # conditional modes b
    fitted_fingerprint = fingerprint(na.omit(num(fv))),
    b_fingerprint = fingerprint(as.vector(getME(m, "b"))),
    fitted = num(fitted(m))[rows],
    predict_population = num(predict(m, re.form = NA))[rows],
    newdata = columns_of(nd),
    predict_newdata = num(predict(m, newdata = nd, allow.new.levels = TRUE))
  )
  if (refits) {
    # refit to a new response (from the fit's theta) and refitML (minqa's bobyqa from the
    # REML theta): other starts, the same sparse path (REML = 1 in refit's response module:
    # see intercept_only below)
    y2 <- round(model.response(model.frame(m)) + 0.3 * d$x - 0.2 * as.numeric(d$school), 3)
    r2 <- refit(m, y2)
    rml <- refitML(m)
    out$refit <- list(newresp = y2, theta = num(getME(r2, "theta")), beta = num(fixef(r2)),
                      crit = REMLcrit(r2), feval = r2@optinfo$feval, sigma = sigma(r2))
    out$refitML <- list(theta = num(getME(rml, "theta")), beta = num(fixef(rml)),
                        crit = deviance(rml), feval = rml@optinfo$feval, sigma = sigma(rml))
  }
  write_json_file(out, file.path(out_dir, paste0(name, ".json")))
  cat(sprintf("%-22s q=%d feval=%d theta=%s %.1fs %s\n", name, out$q, out$feval,
              paste(signif(theta, 4), collapse = ","), elapsed,
              paste(r$warnings, collapse = "; ")))
}

## the cases -----------------------------------------------------------------------------------
S <- "(1 | s) + (1 | t)"
run_case("schools_reml", "schools", paste("y ~ x +", S))
# refit and refitML: intercept-only, because lme4 1.1-31's refit of a REML fit builds its
# response module with REML = isREML(object), i.e. 1, where lmer gives p (the number of
# fixed effects): with p > 1 its refit optimises and reports the REML criterion with n - 1
# in place of n - p (schools_reml's refit: 20689.137 where its own devFunOnly function gives
# 20687.214 at the same theta). With p = 1 the two agree
run_case("intercept_only", "schools", paste("y ~ 1 +", S), refits = TRUE)
run_case("schools_ml", "schools", paste("y ~ x +", S), list(REML = "FALSE"))
# lme4's other optimizers
run_case("nelder_mead", "schools", paste("y ~ x +", S),
         list(control = 'lmerControl(optimizer = "Nelder_Mead")'))
run_case("minqa_bobyqa", "schools", paste("y ~ x +", S, "+ (1 | school)"),
         list(control = 'lmerControl(optimizer = "bobyqa")'))
run_case("three_terms", "schools", paste("y ~ x +", S, "+ (1 | school)"))
run_case("interaction_group", "schools", "y ~ x + (1 | s) + (1 | school:slot)")
run_case("weights", "schools", paste("y ~ x +", S), list(weights = "w"))
# zero weights: lme4's criterion is Inf at every theta (log(0) in the weights' log
# determinant), so BOBYQA stops after a few evaluations where its path of Inf leaves it
run_case("weights_some_zero", "schools", paste("y ~ x +", S), list(weights = "w0"))
run_case("na_omit", "schools", paste("yna ~ xna +", S))
run_case("na_exclude_ml", "schools", paste("yna ~ xna +", S),
         list(na.action = "na.exclude", REML = "FALSE"))
run_case("subset", "schools", paste("y ~ x +", S), list(subset = "x > -1"))
run_case("factor_25_levels", "schools", paste("y ~ f + x +", S))
run_case("offset_arg", "schools", paste("y ~ x +", S), list(offset = "off"))
run_case("offset_term_weights_ml", "schools", paste("y ~ x + offset(off) +", S),
         list(weights = "w", REML = "FALSE"))
# a column collinear with the intercept and x: lme4 drops it
run_case("rank_deficient", "schools", paste("y ~ x + I(2 * x - 1) +", S))
# a vector first term (block 1), block 2 scalar
run_case("vector_first_term", "schools", "y ~ x + (1 + x | s) + (1 | t)")
# a 25-level factor crossing everything: 25 dense rows in block 2, as X's
run_case("crossed_small_factor", "schools", paste("y ~ x +", S, "+ (1 | f)"))
# scalar slopes in block 2: x's values in Z, two scalar terms on one factor (1,400 effects)
run_case("slope_term", "schools", "y ~ x + (1 | s) + (0 + x | t)")
run_case("double_bar", "schools", "y ~ x + (1 | s) + (x || t)")
run_case("school_slope", "schools", paste("y ~ x +", S, "+ (0 + x | school)"))
# school/slot: (1 | slot:school) + (1 | school)
run_case("nested_slash", "schools", "y ~ x + (1 | s) + (1 | school/slot)", list(REML = "FALSE"))
run_case("singular_teacher", "flat", paste("y0 ~ x +", S))
run_case("singular_three", "flat", paste("y ~ x +", S, "+ (1 | school)"))
run_case("large_reml", "large", paste("y ~ x +", S))
run_case("large_three_ml", "large", paste("y ~ x +", S, "+ (1 | school)"), list(REML = "FALSE"))
run_case("large_weights_na", "large", paste("yna ~ xna +", S), list(weights = "w"))
# the large engine with two scalar terms on one factor (3,990 effects in block 2), a scalar
# slope beside the schools, subset= with weights
run_case("large_double_bar", "large", "y ~ x + (1 | s) + (x || t)")
run_case("large_slope_school", "large", "y ~ x + (1 | s) + (0 + x | t) + (1 | school)")
run_case("large_subset_weights", "large", paste("y ~ x +", S),
         list(subset = "x > -1", weights = "w"))
run_case("fill_below", "fill_below", paste("y ~ x +", S))
run_case("fill_edge", "fill_edge", paste("y ~ x +", S))
run_case("fill_above", "fill_above", paste("y ~ x +", S))
run_case("pattern_dense", "pattern_dense", paste("y ~ x +", S))
run_case("large_fill_below", "large_fill_below", paste("y ~ x +", S))
run_case("large_fill_above", "large_fill_above", paste("y ~ x +", S))
