"""MkDocs hooks: bring the notebooks and the benchmark figure into the site from where they live
in the repository (nothing is copied into docs/), and list the notebooks in the navigation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXTRA = [ROOT / "benchmarks" / "results" / "scaling.png"]
# Sphinx roles in the docstrings (:class:`x`, :func:`x`), which mkdocstrings shows as text
SPHINX_ROLE = re.compile(r":(?:class|func|meth|data|attr|mod|obj|exc):(?=<code>)")


def _title(path: Path) -> str:
    stem = path.stem
    number, _, rest = stem.partition("_")
    words = rest.replace("_", " ") if number.isdigit() else stem.replace("_", " ")
    words = words[:1].upper() + words[1:]
    return f"{int(number)}. {words}" if number.isdigit() else words


def on_config(config: MkDocsConfig, **kwargs: Any) -> MkDocsConfig:
    if NOTEBOOKS and config.nav is not None:
        pages = [{_title(p): f"notebooks/{p.name}"} for p in NOTEBOOKS]
        config.nav.append({"Notebooks": pages})
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which converts the notebooks
def on_files(files: Files, config: MkDocsConfig, **kwargs: Any) -> Files:
    for path in [*NOTEBOOKS, *EXTRA]:
        if path.exists():
            files.append(File(path.relative_to(ROOT).as_posix(), src_dir=str(ROOT),
                              dest_dir=config.site_dir,
                              use_directory_urls=config.use_directory_urls))
    return files


def on_page_content(html: str, **kwargs: Any) -> str:
    return SPHINX_ROLE.sub("", html)
