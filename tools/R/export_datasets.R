# Export lme4's example data sets for lmeformula.datasets.
# Run from the repository root:  LC_ALL=C Rscript tools/R/export_datasets.R
# Writes lmeformula/datasets/data/<name>.csv.gz (values) and <name>.json (column types and
# factor levels in R's order), so Python rebuilds the exact R column types.
suppressMessages({library(lme4); library(jsonlite)})
out <- "lmeformula/datasets/data"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
data(Machines, package = "nlme")
sets <- list(
  sleepstudy = sleepstudy, Dyestuff = Dyestuff, Dyestuff2 = Dyestuff2,
  Penicillin = Penicillin, Pastes = Pastes, cake = cake, InstEval = InstEval,
  VerbAgg = VerbAgg, Machines = as.data.frame(Machines), cbpp = cbpp,
  grouseticks = grouseticks, Arabidopsis = Arabidopsis
)
source_of <- c(Machines = "nlme")
for (nm in names(sets)) {
  d <- sets[[nm]]
  cols <- lapply(names(d), function(v) {
    x <- d[[v]]
    type <- if (is.ordered(x)) "ordered" else if (is.factor(x)) "factor" else
      if (is.logical(x)) "logical" else if (is.integer(x)) "integer" else "numeric"
    res <- list(name = v, type = type)
    if (is.factor(x)) res$levels <- levels(x)
    res
  })
  pkg <- if (nm %in% names(source_of)) source_of[[nm]] else "lme4"
  meta <- list(name = nm, package = pkg,
               version = as.character(packageVersion(pkg)),
               R = R.version.string, nrow = nrow(d), columns = cols)
  writeLines(toJSON(meta, auto_unbox = TRUE, pretty = TRUE),
             file.path(out, paste0(nm, ".json")))
  con <- gzfile(file.path(out, paste0(nm, ".csv.gz")), "w")
  # %.17g round-trips doubles exactly; factors are written as their labels
  for (v in names(d)) if (is.double(d[[v]]))
    d[[v]] <- ifelse(is.na(d[[v]]), NA, sprintf("%.17g", d[[v]]))
  write.csv(d, con, row.names = FALSE, na = "NA")
  close(con)
}
