"""Command line: ``python -m lmeformula lformula|fit FORMULA --data NAME_OR_CSV``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from . import datasets
from .errors import LmeFormulaError

__all__ = ["main"]


def _load_data(spec: str) -> pd.DataFrame:
    if spec in datasets.list():
        return datasets.load(spec)
    path = Path(spec)
    if path.suffix in (".csv", ".gz") and path.is_file():
        try:
            return pd.read_csv(path)
        except (OSError, UnicodeDecodeError, EOFError, pd.errors.ParserError,
                pd.errors.EmptyDataError) as err:  # gzip.BadGzipFile is an OSError
            raise LmeFormulaError(f"--data {spec!r} could not be read as CSV: "
                                  f"{type(err).__name__}: {err}") from None
    raise LmeFormulaError(
        f"--data {spec!r} is neither a packaged data set ({', '.join(datasets.list())}) "
        "nor an existing CSV file"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lmeformula",
                                     description="lme4's lFormula and lmer from the shell.")
    sub = parser.add_subparsers(dest="command", required=True)
    lf = sub.add_parser("lformula", help="print the model structures lme4's lFormula builds")
    fit = sub.add_parser("fit", help="fit a linear mixed model and print lme4's summary")
    for p in (lf, fit):
        p.add_argument("formula", help='lme4 formula, e.g. "Reaction ~ Days + (Days | Subject)"')
        p.add_argument("--data", required=True, help="packaged data set name or a CSV file")
        p.add_argument("--ml", action="store_true", help="use ML instead of REML")
        p.add_argument("--width", type=int, default=80, help="output width")
        p.add_argument("--syntax", choices=("R", "formulaic"), default="R",
                       help="formula syntax: R (default; never evaluates Python) or formulaic "
                            "(evaluates the formula's Python expressions: trusted formulas "
                            "only)")
    fit.add_argument("--json", action="store_true", help="print the fit as JSON")
    fit.add_argument("--confint", choices=["Wald", "profile", "boot"],
                     help="also print confidence intervals by this method")
    fit.add_argument("--nsim", type=int, default=500, help="bootstrap replicates")
    fit.add_argument("--seed", type=int, default=None, help="bootstrap seed")
    fit.add_argument("--jobs", type=int, default=1,
                     help="worker processes for the bootstrap (-1: one per CPU)")
    fit.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bars on stderr (default: when stdout is a terminal)")
    sub.add_parser("datasets", help="list the packaged data sets")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
        if args.command == "datasets":
            print("\n".join(datasets.list()))
            return 0
        data = _load_data(args.data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.command == "lformula":
                from .lformula import format_lformula
                from .modular import lFormula

                print(format_lformula(lFormula(args.formula, data, REML=not args.ml,
                                               syntax=args.syntax), width=args.width))
            else:
                from .lmer import lmer
                from .mermod import LmerMod

                name = args.data if args.data in datasets.list() else Path(args.data).stem
                progress = sys.stdout.isatty() if args.progress is None else args.progress
                model = lmer(args.formula, data, REML=not args.ml, data_name=name,
                             syntax=args.syntax, progress=progress)
                # lmer returns a deviance function only with devFunOnly=True, never here
                assert isinstance(model, LmerMod)
                if args.json:
                    print(json.dumps(model.to_dict(), indent=2))
                else:
                    print(model.summary())
                if args.confint:
                    from .inference import confint

                    table = confint(model, method=args.confint, nsim=args.nsim, rng=args.seed,
                                    n_jobs=args.jobs, progress=progress)
                    print()
                    print(table.to_string())
        for w in caught:
            print(f"Warning: {w.message}", file=sys.stderr)
    except (ValueError, TypeError, KeyError, RecursionError, MemoryError) as err:
        # every error in one line, whatever its message
        text = " ".join(str(err).split()) or type(err).__name__
        print(f"Error: {text}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`... | head`): stop quietly, as Unix tools do, and keep
        # Python's exit-time flush of stdout from raising again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
