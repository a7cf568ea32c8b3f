"""Write the teaching notebooks: ``python notebooks/build.py [--execute] [NAME ...]``.

The notebooks are kept as Python sources here so that they are reviewed as code. Every file
``notebooks/nb_*.py`` is one notebook and defines

* ``NAME`` — the notebook's file name, e.g. ``"07_glmer.ipynb"``;
* ``CELLS: list[tuple[str, str]]`` — ``("md" | "code", source)`` pairs, in order. Leading and
  trailing blank lines of a source are dropped, so ``r\"\"\"`` strings can start on their own
  line; ``from nbcommon import SETUP`` gives the shared first code cell;
* ``MIN_FIGURES: int`` (optional, default 0) — how many figures (``image/png`` outputs) the
  executed notebook must show; ``tests/test_notebooks.py`` checks it.

Adding a notebook is adding one ``nb_*.py`` file; this script needs no edit. Without
``--execute`` the cells are written without outputs; with it each notebook is run top to bottom
in a fresh kernel (the package must be importable: ``export PYTHONPATH=$PWD``) and written with
its outputs, so that the figures are visible on GitHub and without a kernel. Positional
arguments restrict the run to notebooks whose ``NAME`` or source file name contains them.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


@dataclass(frozen=True)
class NotebookSource:
    """One ``nb_*.py`` file, loaded."""

    source: Path
    name: str
    cells: list[tuple[str, str]]
    min_figures: int

    @property
    def path(self) -> Path:
        return HERE / self.name


def _load(path: Path) -> NotebookSource:
    # The sources import nbcommon from this folder.
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location(f"_notebook_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    name, cells = getattr(module, "NAME", None), getattr(module, "CELLS", None)
    if not isinstance(name, str) or not name.endswith(".ipynb"):
        raise ValueError(f"{path.name}: NAME must be a notebook file name such as '07_x.ipynb'")
    if not isinstance(cells, list) or not all(
            isinstance(c, tuple) and len(c) == 2 and c[0] in ("md", "code")
            and isinstance(c[1], str) for c in cells):
        raise ValueError(f"{path.name}: CELLS must be a list of ('md' | 'code', source) pairs")
    return NotebookSource(path, name, cells, int(getattr(module, "MIN_FIGURES", 0)))


def sources() -> list[NotebookSource]:
    """Every ``nb_*.py`` of this folder, in file-name order; notebook names must be unique."""
    found = [_load(p) for p in sorted(HERE.glob("nb_*.py"))]
    names = [s.name for s in found]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"two nb_*.py sources write the same notebook: {duplicated}")
    return found


def notebook(src: NotebookSource) -> nbformat.NotebookNode:
    """The notebook of one source, without outputs."""
    nb = new_notebook()
    nb.cells = [new_markdown_cell(text.strip("\n")) if kind == "md"
                else new_code_cell(text.strip("\n")) for kind, text in src.cells]
    # Stable cell ids (nbformat draws random ones): a rebuild changes only what changed.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def _merge_streams(outputs: list[nbformat.NotebookNode]) -> list[nbformat.NotebookNode]:
    """Join consecutive outputs of one stream: how the kernel splits printed text into
    messages depends on timing, and the committed notebook should not."""
    merged: list[nbformat.NotebookNode] = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and prev is not None
                and prev.get("output_type") == "stream" and prev.get("name") == out.get("name")):
            prev["text"] = prev["text"] + out["text"]
        else:
            merged.append(out)
    return merged


def execute(nb: nbformat.NotebookNode, timeout: int = 600) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel, in this folder; raises on an error."""
    import nbclient

    # No timing metadata: re-executing an unchanged notebook should change nothing but the
    # figures' bytes, if those.
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     record_timing=False,
                                     resources={"metadata": {"path": str(HERE)}})
    client.execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = _merge_streams(cell.outputs)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def build(run: bool = False, only: list[str] | None = None) -> list[Path]:
    """Write (and with ``run``, execute) the notebooks; returns the paths written."""
    paths = []
    for src in sources():
        if only and not any(o in src.name or o in src.source.name for o in only):
            continue
        nb = notebook(src)
        if run:
            nb = execute(nb)
        nbformat.write(nb, src.path)
        paths.append(src.path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true",
                        help="run each notebook and keep its outputs (figures included)")
    parser.add_argument("only", nargs="*", help="build only notebooks whose name contains this")
    args = parser.parse_args(argv)
    for p in build(args.execute, args.only):
        print(p.relative_to(HERE.parent))


if __name__ == "__main__":
    main()
