# Reference results for lmerTest 3.x (Satterthwaite) and pbkrtest 0.5 (Kenward-Roger) inference:
# coefficient tables, anova types I-III, contest, ls_means, difflsmeans, ranova, vcovAdj and
# the printed summaries.
# Run from the repository root:  LC_ALL=C Rscript tools/R/make_fixtures_lmertest.R
# Writes tests/fixtures/lmertest.json, and exports the data sets the models need that
# lmeformula.datasets lacks (ham, carrots from lmerTest; Orthodont, Oats from nlme) to
# lmeformula/datasets/data/ in the format of tools/R/export_datasets.R.
suppressMessages({library(lmerTest); library(pbkrtest); library(jsonlite)})
options(digits = 7, warn = 1)

# ---- data sets ----------------------------------------------------------------------------
export_dataset <- function(nm, d, pkg, out = "lmeformula/datasets/data") {
  cols <- lapply(names(d), function(v) {
    x <- d[[v]]
    type <- if (is.ordered(x)) "ordered" else if (is.factor(x)) "factor" else
      if (is.logical(x)) "logical" else if (is.integer(x)) "integer" else "numeric"
    res <- list(name = v, type = type)
    if (is.factor(x)) res$levels <- levels(x)
    res
  })
  meta <- list(name = nm, package = pkg, version = as.character(packageVersion(pkg)),
               R = R.version.string, nrow = nrow(d), columns = cols)
  writeLines(toJSON(meta, auto_unbox = TRUE, pretty = TRUE), file.path(out, paste0(nm, ".json")))
  con <- gzfile(file.path(out, paste0(nm, ".csv.gz")), "w")
  for (v in names(d)) if (is.double(d[[v]]))
    d[[v]] <- ifelse(is.na(d[[v]]), NA, sprintf("%.17g", d[[v]]))
  write.csv(d, con, row.names = FALSE, na = "NA")
  close(con)
}
data(ham, package = "lmerTest"); data(carrots, package = "lmerTest")
data(Orthodont, package = "nlme"); data(Oats, package = "nlme"); data(Machines, package = "nlme")
Orthodont <- as.data.frame(Orthodont); Oats <- as.data.frame(Oats)
Machines <- as.data.frame(Machines)
export_dataset("ham", ham, "lmerTest")
export_dataset("carrots", carrots, "lmerTest")
export_dataset("Orthodont", Orthodont, "nlme")
export_dataset("Oats", Oats, "nlme")

# cake without the cell recipe C x temperature 225: a rank-deficient X (lme4 drops a column)
cake_missing <- droplevels(subset(cake, !(recipe == "C" & temperature == "225")))
cake_missing$temperature <- factor(cake_missing$temperature, levels = levels(cake$temperature),
                                   ordered = TRUE)
rownames(cake_missing) <- NULL

# ---- helpers ------------------------------------------------------------------------------
catch <- function(expr) tryCatch(expr, error = function(e) list(error = conditionMessage(e)))
num <- function(x) { x <- unname(as.numeric(x)); x }
tab <- function(t) {
  d <- if (inherits(t, "ls_means")) structure(t, class = "data.frame") else as.data.frame(t)
  list(rownames = rownames(d), colnames = colnames(d),
       columns = lapply(as.list(d), function(x) if (is.numeric(x)) num(x) else as.character(x)))
}
mat <- function(m) {
  m <- as.matrix(m)
  list(rownames = rownames(m), colnames = colnames(m), values = unname(lapply(seq_len(nrow(m)),
       function(i) num(m[i, ]))))
}
text_of <- function(x) tryCatch(paste(capture.output(print(x)), collapse = "\n"),
                                error = function(e) NULL)
hyp <- function(a) lapply(attr(a, "hypotheses"), mat)

inference <- function(m, reml) {
  p <- length(fixef(m))
  res <- list(
    fixef = as.list(fixef(m)), sigma = sigma(m), theta = num(getME(m, "theta")),
    vcov = mat(vcov(m)),
    vcov_varpar = mat(m@vcov_varpar),
    jac = lapply(m@Jac_list, function(J) lapply(seq_len(nrow(J)), function(i) num(J[i, ]))),
    coef_satterthwaite = tab(summary(m)$coefficients),
    coef_lme4 = tab(summary(m, ddf = "lme4")$coefficients),
    summary_satterthwaite = text_of(summary(m)),
    anova_lme4 = text_of(anova(m, ddf = "lme4"))
  )
  for (type in c("1", "2", "3")) {
    a <- anova(m, type = type)
    res[[paste0("anova", type, "_satterthwaite")]] <- c(tab(a), list(text = text_of(a),
                                                                       hypotheses = hyp(a)))
  }
  # contrasts: two rows of the identity, and a difference of the second and last coefficient
  L2 <- diag(p)[2:min(3, p), , drop = FALSE]
  Ld <- matrix(0, 1, p); Ld[1, 2] <- 1
  if (p > 2) Ld[1, p] <- -1 else Ld[1, 1] <- 0.5
  rhs2 <- rep_len(c(1, -1), nrow(L2))
  res$contest <- list(L2 = mat(L2), Ld = mat(Ld),
    joint_sat = tab(contest(m, L2)), rows_sat = tab(contest(m, L2, joint = FALSE)),
    diff_sat = tab(contest(m, Ld, joint = FALSE)),
    rhs_sat = tab(contest(m, Ld, rhs = 1, joint = FALSE)),
    joint_rhs_sat = tab(suppressWarnings(contest(m, L2, rhs = rhs2))))
  lsm <- catch(ls_means(m))
  if (is.null(lsm$error)) {
    res$ls_means <- c(tab(lsm), list(terms = names(attr(lsm, "hypotheses")),
                                     hypotheses = hyp(lsm), text = text_of(lsm)))
    dl <- difflsmeans(m)
    res$difflsmeans <- c(tab(dl), list(terms = names(attr(dl, "hypotheses"))))
  } else res$ls_means <- lsm
  rr <- ranova(m)
  res$ranova <- c(tab(rr), list(text = text_of(rr)))
  if (reml) {
    res$coef_kr <- tab(summary(m, ddf = "Kenward-Roger")$coefficients)
    res$summary_kr <- text_of(summary(m, ddf = "Kenward-Roger"))
    for (type in c("1", "2", "3")) {
      a <- anova(m, type = type, ddf = "Kenward-Roger")
      res[[paste0("anova", type, "_kr")]] <- c(tab(a), list(text = text_of(a)))
    }
    res$contest$joint_kr <- tab(contest(m, L2, ddf = "Kenward-Roger"))
    res$contest$rows_kr <- tab(contest(m, L2, joint = FALSE, ddf = "Kenward-Roger"))
    res$contest$rhs_kr <- tab(contest(m, Ld, rhs = 1, joint = FALSE, ddf = "Kenward-Roger"))
    res$contest$joint_rhs_kr <- tab(suppressWarnings(contest(m, L2, rhs = rhs2,
                                                             ddf = "Kenward-Roger")))
    if (is.null(lsm$error)) res$ls_means_kr <- tab(ls_means(m, ddf = "Kenward-Roger"))
  } else {
    res$kr_error <- catch(summary(m, ddf = "Kenward-Roger"))$error
    res$kr_anova_error <- catch(anova(m, ddf = "Kenward-Roger"))$error
    res$kr_contest_error <- catch(contest(m, L2, ddf = "Kenward-Roger", joint = FALSE))$error
  }
  va <- vcovAdj(m)  # refits by REML for an ML fit
  res$vcovAdj <- mat(as.matrix(va))
  res$vcovAdj_W <- mat(as.matrix(attr(va, "W")))
  res
}

specs <- list(
  sleepstudy_reml = list(f = Reaction ~ Days + (Days | Subject), data = "sleepstudy", REML = TRUE),
  sleepstudy_ml = list(f = Reaction ~ Days + (Days | Subject), data = "sleepstudy", REML = FALSE),
  cake = list(f = angle ~ recipe * temperature + (1 | recipe:replicate), data = "cake",
              REML = TRUE),
  cake_sum = list(f = angle ~ recipe * temperature + (1 | recipe:replicate), data = "cake",
                  REML = TRUE, contrasts = list(recipe = "contr.sum")),
  cake_missing = list(f = angle ~ recipe * temperature + (1 | replicate), data = "cake_missing",
                      REML = TRUE),
  ham = list(f = Informed.liking ~ Product * Information * Gender + (1 | Consumer) +
               (1 | Consumer:Product), data = "ham", REML = TRUE),
  carrots = list(f = Preference ~ sens2 + Homesize + (1 + sens2 | Consumer) + (1 | Product),
                 data = "carrots", REML = TRUE),
  orthodont = list(f = distance ~ age * Sex + (age | Subject), data = "Orthodont", REML = TRUE),
  machines = list(f = score ~ Machine + (1 | Worker/Machine), data = "Machines", REML = TRUE),
  oats = list(f = yield ~ nitro * Variety + (1 | Block/Variety), data = "Oats", REML = TRUE),
  oats_ml = list(f = yield ~ nitro * Variety + (1 | Block/Variety), data = "Oats", REML = FALSE)
)
datasets <- list(sleepstudy = sleepstudy, cake = cake, cake_missing = cake_missing, ham = ham,
                 carrots = carrots, Orthodont = Orthodont, Machines = Machines, Oats = Oats)

out <- list(versions = list(R = R.version.string,
                            lme4 = as.character(packageVersion("lme4")),
                            lmerTest = as.character(packageVersion("lmerTest")),
                            pbkrtest = as.character(packageVersion("pbkrtest"))))
# cake_missing's data, for the tests (it is not a data set of the package)
out$cake_missing_rows <- which(!(cake$recipe == "C" & cake$temperature == "225"))
for (nm in names(specs)) {
  s <- specs[[nm]]
  dd <- datasets[[s$data]]
  # the call names the formula and the data, so that the summaries print them
  call <- if (is.null(s$contrasts))
    substitute(lmer(F, data = D, REML = R), list(F = s$f, D = as.name(s$data), R = s$REML)) else
    substitute(lmer(F, data = D, REML = R, contrasts = C),
               list(F = s$f, D = as.name(s$data), R = s$REML, C = s$contrasts))
  m <- eval(call, envir = list2env(datasets, parent = asNamespace("lmerTest")))
  cat(nm, "\n")
  out$models[[nm]] <- c(list(formula = paste(deparse(s$f, width.cutoff = 500), collapse = ""),
                             data = s$data, REML = s$REML,
                             contrasts = if (is.null(s$contrasts)) NULL else s$contrasts),
                        inference(m, s$REML))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", null = "null", pretty = FALSE),
           "tests/fixtures/lmertest.json")
