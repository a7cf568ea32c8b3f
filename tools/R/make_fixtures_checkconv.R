# lme4 1.1-31's convergence checks (checkConv / checkHess) on given derivatives. Run from the
# repository root:
#   LC_ALL=C Rscript tools/R/make_fixtures_checkconv.R      (a second)
# Writes tests/fixtures/checkconv.json: for each case, the gradient, Hessian, coefficients,
# lower bounds and check settings fed to lme4:::checkConv, and what it returned (code,
# messages) and signalled (warnings and messages, in order).
suppressMessages({library(lme4); library(jsonlite)})

run_case <- function(name, gradient, hessian, coefs, lbound, grad = list(),
                     hess = list(), singular = list()) {
  ctrl <- lmerControl()$checkConv
  ctrl$check.conv.grad <- modifyList(ctrl$check.conv.grad, grad)
  ctrl$check.conv.hess <- modifyList(ctrl$check.conv.hess, hess)
  ctrl$check.conv.singular <- modifyList(ctrl$check.conv.singular, singular)
  derivs <- if (is.null(gradient)) NULL else list(gradient = gradient, Hessian = hessian)
  signalled <- list()
  res <- withCallingHandlers(
    tryCatch(lme4:::checkConv(derivs, coefs, ctrl, lbound),
             error = function(e) list(error = conditionMessage(e))),
    warning = function(w) {
      signalled[[length(signalled) + 1]] <<- list(kind = "warning", text = conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      signalled[[length(signalled) + 1]] <<- list(kind = "message",
                                                  text = sub("\n$", "", conditionMessage(m)))
      invokeRestart("muffleMessage")
    })
  list(name = name,
       gradient = if (is.null(gradient)) NULL else as.list(gradient),
       hessian = if (is.null(hessian)) NULL else lapply(seq_len(nrow(hessian)),
                                                       function(i) as.list(hessian[i, ])),
       coefs = as.list(coefs), lbound = as.list(lbound),
       grad = grad, hess = hess, singular = singular,
       is_null = is.null(res),
       error = if (is.null(res$error)) NULL else res$error,
       code = if (is.null(res$code)) list() else as.list(as.numeric(res$code)),
       messages = if (is.null(res$messages)) list() else as.list(as.character(unlist(res$messages))),
       signalled = signalled)
}

th <- c(0.9, 0.2)
lb <- c(0, 0)
cases <- list(
  run_case("ok", c(1e-5, -2e-5), diag(c(1, 2)), th, lb),
  run_case("no_derivs", NULL, NULL, th, lb),
  run_case("large_gradient", c(0.1, 0), diag(c(1, 1)), th, lb),
  run_case("large_gradient_scaled_small", c(0.1, 0.01), diag(c(1e4, 1e4)), th, lb),
  run_case("gradient_nonpd", c(0.1, 0), matrix(c(1, 2, 2, 1), 2), th, lb),
  run_case("na_gradient", c(NA, 0), diag(c(1, 1)), th, lb),
  run_case("negative_eigenvalue", c(0, 0), diag(c(1, -1)), th, lb),
  run_case("two_negative", c(0, 0, 0), diag(c(-1, -2, 3)), c(th, 1), c(lb, 0)),
  run_case("numerically_singular", c(0, 0), diag(c(1, 1e-8)), th, lb),
  run_case("very_large_eigenvalue", c(0, 0), diag(c(1e7, 1e5)), th, lb),
  run_case("large_ratio", c(0, 0), diag(c(1e5, 1e-2)), th, lb),
  run_case("both_large", c(0, 0), diag(c(1e7, 0.5)), th, lb),
  run_case("grad_and_hess", c(0.5, 0), diag(c(1e7, 0.5)), th, lb),
  run_case("nan_hessian", c(0, 0), matrix(c(1, NaN, NaN, 1), 2), th, lb),
  run_case("singular_fit", c(0, 0), diag(c(1, 1)), c(0, 0.2), lb),
  run_case("singular_fit_ignored", c(0.1, 0), diag(c(1, 1)), c(0, 0.2), lb,
           singular = list(action = "ignore")),
  run_case("singular_fit_warning", c(0, 0), diag(c(1, 1)), c(1e-5, 0.2), lb,
           singular = list(action = "warning")),
  run_case("singular_fit_no_derivs", NULL, NULL, c(0, 0.2), lb),
  run_case("correlation_not_bounded", c(0, 0, 0), diag(c(1, 2, 3)), c(1, -0.5, 0.5),
           c(0, -Inf, 0)),
  run_case("glmm_beta_bounds", c(0, 0, 0), diag(c(1, 2, 1e-9)), c(0.5, 1, -2),
           c(0, -Inf, -Inf)),
  run_case("grad_ignored", c(0.5, 0), diag(c(1e7, 0.5)), th, lb,
           grad = list(action = "ignore")),
  run_case("hess_ignored", c(0.5, 0), diag(c(1, -1)), th, lb,
           hess = list(action = "ignore")),
  run_case("grad_tol", c(0.01, 0), diag(c(1, 1)), th, lb, grad = list(tol = 0.05)),
  run_case("hess_tol", c(0, 0), diag(c(1, 1e-3)), th, lb, hess = list(tol = 1e-2)),
  run_case("rel_tol", c(1e-3, 0), diag(c(1, 1)), c(0.01, 0.2), lb,
           grad = list(relTol = 1e-2)),
  run_case("grad_stop", c(0.5, 0), diag(c(1, 1)), th, lb, grad = list(action = "stop")),
  run_case("hess_stop", c(0, 0), diag(c(1, -1)), th, lb, hess = list(action = "stop"))
)
write_json(list(lme4 = as.character(packageVersion("lme4")), cases = cases),
           "tests/fixtures/checkconv.json", auto_unbox = TRUE, digits = NA, pretty = TRUE,
           null = "null", na = "null")
