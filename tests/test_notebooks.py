"""The teaching notebooks: committed as built, executed with their figures, and run cleanly.

Every ``notebooks/nb_*.py`` source is one notebook (see ``notebooks/build.py``); these tests
pick up new sources without an edit here.
"""

from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_notebooks_build", NOTEBOOK_DIR / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


BUILD = _build_module()
SOURCES = BUILD.sources()
IDS = [s.name.removesuffix(".ipynb") for s in SOURCES]


def _figures(nb: nbformat.NotebookNode) -> list[bytes]:
    return [base64.b64decode(out["data"]["image/png"])
            for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    return [f"{out.get('ename')}: {out.get('evalue')}"
            for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def test_the_six_notebooks_are_sources() -> None:
    names = {s.name for s in SOURCES}
    assert {f"0{i}" for i in range(1, 7)} <= {n[:2] for n in names}
    # Every committed notebook comes from a source (none is orphaned or hand-edited).
    assert {p.name for p in NOTEBOOK_DIR.glob("*.ipynb")} == names


def test_no_agg_backend() -> None:
    """Figures are shown inline: no notebook switches matplotlib to a non-interactive backend."""
    for src in SOURCES:
        for _, text in src.cells:
            assert 'use("Agg")' not in text and "use('Agg')" not in text, src.name


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_committed_notebook_is_what_build_writes(src: Any) -> None:
    """Code and text cells of the committed notebook equal the source's (run build.py)."""
    committed = nbformat.read(src.path, as_version=4)
    built = BUILD.notebook(src)
    assert [(c.cell_type, c.source) for c in committed.cells] == \
        [(c.cell_type, c.source) for c in built.cells], \
        f"{src.path.name} is stale: run `python notebooks/build.py --execute {src.name}`"


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_committed_notebook_carries_its_figures(src: Any) -> None:
    """The committed notebook was executed: every code cell has run, without an error, and
    it shows at least MIN_FIGURES figures as PNG of a modest size."""
    nb = nbformat.read(src.path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), \
        f"{src.path.name} was not executed: run `python notebooks/build.py --execute`"
    assert not _errors(nb)
    figures = _figures(nb)
    assert len(figures) >= src.min_figures
    for png in figures:
        assert png.startswith(b"\x89PNG")
        assert len(png) < 400_000  # PNG at a sensible DPI keeps the repository small


@pytest.mark.slow
@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_notebook_executes(src: Any) -> None:
    """The notebook as build.py writes it runs top to bottom from a clean kernel."""
    nb = BUILD.execute(BUILD.notebook(src))
    assert not _errors(nb)
    assert len(_figures(nb)) >= src.min_figures


def test_sources_are_validated(tmp_path: Path) -> None:
    bad = tmp_path / "nb_99_bad.py"
    bad.write_text('NAME = "99_bad.ipynb"\nCELLS = [("python", "1 + 1")]\n')
    with pytest.raises(ValueError, match="CELLS"):
        BUILD._load(bad)
    bad.write_text('NAME = "99_bad"\nCELLS = []\n')
    with pytest.raises(ValueError, match="NAME"):
        BUILD._load(bad)


def test_split_stream_outputs_are_joined() -> None:
    """Re-executing a notebook gives the same outputs however the kernel split its prints."""
    from nbformat.v4 import new_output

    outs = [new_output("stream", name="stdout", text="a\n"),
            new_output("stream", name="stdout", text="b\n"),
            new_output("stream", name="stderr", text="w\n"),
            new_output("stream", name="stdout", text="c\n")]
    merged = BUILD._merge_streams(outs)
    assert [(o["name"], o["text"]) for o in merged] == [("stdout", "a\nb\n"), ("stderr", "w\n"),
                                                        ("stdout", "c\n")]
