"""The house's import rules: every module imports on its own, and imports run one way down the
pipeline (DESIGN.md's "one stage per module", issue 19).

``test_each_module_imports_alone`` imports every module of the package first thing in a fresh
process, which is where circular imports surface (an import circle that works in one order fails in
another).

``test_imports_run_down_the_pipeline`` reads every ``import`` with :mod:`ast` -- at module level,
inside functions and under ``if TYPE_CHECKING:`` -- and fails on any edge from a module to a module of
a LATER layer of :data:`LAYERS` unless that edge is in :data:`KNOWN_BACK_EDGES`. That list is a
ratchet: it records the back-edges main had when the test was written, and the test also fails when
one of them disappears, so that its entry is deleted and the edge cannot come back. Never add to it;
move the shared piece down the pipeline instead (a structure into the module that builds it, a
formatter into ``rformat``, a printer into the structure's ``__repr__``).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lmeformula"

# The layers, first (most fundamental) to last. A module may import modules of its own layer or of
# an earlier one; an import of a later layer is a back-edge. The pipeline of DESIGN.md is
#   formula -> transforms -> frame/modelmatrix -> reterms -> checks -> modular -> engine
#   -> optimize -> lmer -> mermod -> prediction/inference -> printing/plots -> cli
# read as data flow. As imports, three places differ from that reading, on purpose:
# - the engine (pls/) is numerics with no knowledge of formulas or fits (it imports only
#   errors); reterms builds lme4's structures from its term types (DESIGN.md: "reterms.py ... uses
#   pls' term types") and modular's mkLmerDevfun calls it, so it sits below reterms;
# - mermod defines the fitted-model class and lmer's mkMerMod builds one, so mermod sits below lmer
#   (as lme4 defines merMod before lmer);
# - the formulaic front end (pyformula/) builds the same frame and structures as the R-syntax
#   path and modular's lFormula dispatches to it, so it sits between checks and modular.
LAYERS: list[tuple[str, list[str]]] = [
    # shared foundations, no model knowledge: errors, argument checks, options, data-frame
    # conversion, R's number formatting, progress bars, the example data
    ("foundation", ["errors", "validate", "control", "glmercontrol", "dataframe", "rformat",
                    "generics", "progress", "datasets", "records"]),
    # the call's arguments, checked once (ModelCall): below the frame that reads them
    ("call", ["call"]),
    # R formula syntax: no numerics
    ("formula", ["formula", "formula.ast", "formula.limits", "formula.parser", "formula.terms",
                 "formula.bars"]),
    ("transforms", ["splines", "transforms"]),
    ("frame", ["frame", "modelmatrix"]),
    # the PLS engine and (issue 13) GLMM families and links: numerics only
    ("engine", ["pls", "pls.*", "families"]),
    ("reterms", ["reterms"]),
    ("checks", ["checks"]),
    # lFormula's result (LFormula, ParsedFormula): built by modular and by the front end
    ("lFormula result", ["lformula", "glformula"]),
    ("front end", ["pyformula", "pyformula.*"]),
    # lFormula/glFormula and the deviance functions (mkLmerDevfun; PIRLS for mkGlmerDevfun)
    ("modular", ["modular", "glmodular", "glmodular_formulaic", "pirls_constants", "pirls",
                 "pirls_batch"]),
    ("optimize", ["optimize", "neldermead", "bobyqa", "laplace_grad"]),
    # predict/simulate on new data: they read a fitted model through a small typed protocol
    # (prediction.FittedModel), so the model's predict/fitted/residuals call down into them
    ("prediction", ["prediction"]),
    ("fitted model", ["devcomp", "mermod", "glmermod"]),
    # the control argument as the printed call shows it (controlcall) and the fitters
    ("fit", ["controlcall", "lmer", "glmer", "lmlist"]),
    # everything computed from a fit: accessors, (issue 14) lmerTest's denominator degrees of
    # freedom, ICC/R²/influence, the GLMM profiles; then anova/profile/confint/bootstrap
    # the anova table type and the profile machinery that lmer's and glmer's inference share
    ("inference parts", ["anovatable", "profiling"]),
    ("after the fit", ["accessors", "parallel", "ddf", "ddf.*", "diagnostics", "glmmprofile"]),
    # anova/profile/confint/bootstrap dispatch to lmerTest's tables and to the GLMM profiles
    ("inference", ["inference", "allfit"]),
    # text, HTML, tidy tables and figures
    ("presentation", ["printing", "glmerprint", "html", "broom", "mpl", "plots",
                      "diagnostic_plots"]),
    # the package's face: its __init__, the command line, the statsmodels bridge
    ("entry points", ["", "glmm", "cli", "__main__", "compare", "compare.*"]),
]

# Back-edges allowed, each (importer, imported, kind) with kind "module" (runs at import),
# "function" (an import inside a function, run on call) or "type" (under TYPE_CHECKING, for
# annotations only). The fourteen of main when this test was written (22:20 UTC, 1 Dec 2026) are
# gone (issue 19): structures print themselves with rformat, LFormula lives below the front ends
# that build it, prediction reads a fitted model through a protocol, and the model's printed,
# HTML and lmerTest layouts are reached through lmeformula.generics. Keep it empty.
KNOWN_BACK_EDGES: set[tuple[str, str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    """Index of the module's layer in LAYERS (patterns: "x.*" a subpackage's modules, "x*" a
    prefix)."""
    for i, (_, members) in enumerate(LAYERS):
        for pattern in members:
            if pattern == module:
                return i
            if pattern.endswith(".*") and module.startswith(pattern[:-1]):
                return i
            if pattern.endswith("*") and not pattern.endswith(".*") and \
                    module.startswith(pattern[:-1]):
                return i
    raise AssertionError(
        f"module lmeformula.{module} has no layer: add it to LAYERS in tests/test_imports.py")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import
             ) -> list[str]:
    """The package modules an import statement names ("" is the package itself)."""
    if isinstance(node, ast.Import):
        return [a.name.removeprefix("lmeformula").lstrip(".") for a in node.names
                if a.name == "lmeformula" or a.name.startswith("lmeformula.")]
    if node.level:
        base = importer.split(".") if importer else []
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join([*base, *([node.module] if node.module else [])])
    elif node.module and (node.module == "lmeformula" or node.module.startswith("lmeformula.")):
        target = node.module.removeprefix("lmeformula").lstrip(".")
    else:
        return []
    out = []
    for alias in node.names:  # `from . import datasets` names a module, not an attribute
        sub = f"{target}.{alias.name}" if target else alias.name
        out.append(sub if sub in MODULES else target)
    return sorted(set(out))


def _imports(module: str) -> set[tuple[str, str]]:
    """(imported module, kind) for every import of the package in a module."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[tuple[str, str]] = set()

    def visit(node: ast.AST, kind: str) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in _resolve(module, path.name == "__init__.py", node):
                found.add((target, kind))
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body:
                visit(child, "type")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, "type" if kind == "type" else "function")
            else:
                visit(child, kind)

    visit(tree, "module")
    return found


def _back_edges() -> set[tuple[str, str, str]]:
    edges = set()
    for module in MODULES:
        for target, kind in _imports(module):
            if target != module and _layer(target) > _layer(module):
                edges.add((module, target, kind))
    return edges


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_the_import_reader_sees_every_kind() -> None:
    # the reader itself: module-level, function-level and TYPE_CHECKING imports, relative and
    # absolute, and `from . import submodule`
    printing = _imports("printing")
    assert ("formula.ast", "function") in printing
    assert ("rformat", "module") in printing
    assert ("mermod", "type") in _imports("plots")  # under TYPE_CHECKING
    assert ("pyformula", "function") in _imports("modular")
    assert ("datasets", "module") in _imports("cli")  # from . import datasets
    assert ("errors", "module") in _imports("formula.parser")  # from ..errors import
    assert ("pls.terms", "module") in _imports("pls")  # a package's __init__
    # and the layers put a known back-edge the wrong way round
    assert _layer("printing") > _layer("reterms")
    assert _layer("mermod") > _layer("prediction")


def test_imports_run_down_the_pipeline() -> None:
    edges = _back_edges()
    new = sorted(edges - KNOWN_BACK_EDGES)
    gone = sorted(KNOWN_BACK_EDGES - edges)

    def show(es: list[tuple[str, str, str]]) -> str:
        return "\n".join(f"  lmeformula.{a or '__init__'} -> lmeformula.{b or '__init__'} ({k})"
                         for a, b, k in es)

    assert not new, ("imports running back up the pipeline (move the shared piece down, see "
                     "LAYERS in tests/test_imports.py):\n" + show(new))
    assert not gone, ("these back-edges are gone: delete them from KNOWN_BACK_EDGES so they "
                      "stay gone:\n" + show(gone))


# __main__ runs the command line when imported; the CLI tests call lmeformula.cli.main instead
_IMPORTABLE = sorted(m for m in MODULES if m != "__main__")

_FORK_SCRIPT = textwrap.dedent("""
    import importlib, os, sys, traceback
    modules = sys.argv[1:]
    # Third-party packages are imported once here and shared by the forked children, which keeps
    # the test fast; no module of lmeformula is, so each child imports the package from nothing.
    for name in ("numpy", "scipy.sparse", "scipy.linalg", "scipy.stats", "scipy.optimize",
                 "pandas", "formulaic", "narwhals", "nlopt", "statsmodels.api",
                 "matplotlib", "matplotlib.pyplot"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    assert not any(m == "lmeformula" or m.startswith("lmeformula.") for m in sys.modules)
    failed = 0
    for module in modules:
        pid = os.fork()
        if pid == 0:
            try:
                importlib.import_module(module)
            except BaseException:
                print(f"FAILED {module}", flush=True)
                traceback.print_exc()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    print(f"{len(modules) - failed} imported, {failed} failed")
""")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fresh-process import check forks")
def test_each_module_imports_alone() -> None:
    env = {**os.environ, "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent),
                                          os.environ.get("PYTHONPATH", "")])}
    names = [f"lmeformula.{m}" if m else "lmeformula" for m in _IMPORTABLE]
    res = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, *names], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "FAILED" not in res.stdout, res.stdout + res.stderr
    assert f"{len(names)} imported, 0 failed" in res.stdout, res.stdout + res.stderr


# Import cycles left, each as the sorted modules of one strongly connected component of the
# import graph (module-level and in-function imports; TYPE_CHECKING ones are annotations only).
# Keep it empty: a cycle inside a layer is two modules that cannot be read or tested apart.
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def _cycles() -> set[tuple[str, ...]]:
    """The import graph's strongly connected components of more than one module (Tarjan)."""
    graph = {m: sorted({t for t, kind in _imports(m) if kind != "type" and t != m and t in MODULES})
             for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    cycles = _cycles()
    new = sorted(cycles - KNOWN_CYCLES)
    assert not new, ("modules importing each other (move the shared piece into a module both "
                     "can import):\n" + "\n".join("  " + " <-> ".join(c) for c in new))
    assert not KNOWN_CYCLES - cycles, "a known cycle is gone: delete it from KNOWN_CYCLES"
