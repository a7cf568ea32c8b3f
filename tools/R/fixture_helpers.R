# Helpers shared by the fixture scripts that write simulated data and lme4's answers
# (make_fixtures_sweep.R, make_fixtures_fuzz.R). Sourced from the repository root:
#   source("tools/R/fixture_helpers.R")

# the data's columns with R's types (factor levels kept), as the tests rebuild them
columns_of <- function(d) {
  lapply(names(d), function(nm) {
    x <- d[[nm]]
    if (is.factor(x)) list(name = nm, type = if (is.ordered(x)) "ordered" else "factor",
                           levels = levels(x), values = as.character(x))
    else if (is.logical(x)) list(name = nm, type = "logical", values = x)
    else if (is.character(x)) list(name = nm, type = "character", values = x)
    else if (is.integer(x)) list(name = nm, type = "integer", values = x)
    else list(name = nm, type = "numeric", values = as.numeric(x))
  })
}

# fit with warnings and messages collected; returns list(fit=, warnings=, error=)
collect <- function(expr) {
  msgs <- character(0)
  res <- tryCatch(withCallingHandlers(expr, warning = function(w) {
    msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(w) {
    msgs <<- c(msgs, paste("message:", trimws(conditionMessage(w))))
    invokeRestart("muffleMessage") }),
    error = function(e) structure(list(msg = conditionMessage(e)), class = "err"))
  msgs <- unique(msgs)
  if (inherits(res, "err")) list(fit = NULL, warnings = msgs, error = res$msg)
  else list(fit = res, warnings = msgs, error = NULL)
}
