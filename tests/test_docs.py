"""The documentation: the lme4 -> lmeformula table names every lme4 function, argument and
getME name (tests/fixtures/lme4_api.json, from tools/R/make_fixtures_docs.R) and every Python
spelling in it exists; the code examples of the guide pages run; mkdocs.yml's pages exist."""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from cases import FIXTURES

import lmeformula as lmf
from lmeformula.mermod import GETME_NAMES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API = json.loads((FIXTURES / "lme4_api.json").read_text())
TABLE = (DOCS / "lme4-to-lmeformula.md").read_text()
ROW = re.compile(r"^\| (?P<r>[^|]*?) \| (?P<py>[^|]*?) \| (?P<note>.*)\|$")


def _resolve(spelling: str) -> Any:
    """``lmf.a.b`` -> the object (importing submodules as needed); ``m.x`` -> the attribute
    of a fitted model."""
    if spelling.startswith("m."):
        return getattr(_model(), spelling[2:])
    assert spelling.startswith("lmf."), spelling
    obj: Any = lmf
    path = "lmeformula"
    for part in spelling[4:].split("."):
        path += "." + part
        obj = getattr(obj, part) if hasattr(obj, part) else importlib.import_module(path)
    return obj


def _sections() -> dict[str, list[tuple[str, str]]]:
    """Section heading -> (lme4 cell, Python cell) of each table row under it."""
    out: dict[str, list[tuple[str, str]]] = {}
    heading = ""
    for line in TABLE.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            out.setdefault(heading, [])
            continue
        m = ROW.match(line)
        if m and not set(m["r"]) <= set("-") and m["r"] not in ("lme4", "R"):
            out[heading].append((m["r"], m["py"]))
    return out


SECTIONS = _sections()


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_every_lme4_export_and_generic_is_listed_with_a_real_spelling() -> None:
    listed = {name for rows in (SECTIONS["Functions"],) for r, _ in rows for name in _ticked(r)}
    missing = [e for e in API["exports"] if e not in listed]
    assert not missing, f"lme4 exports missing from the table: {missing}"
    for heading in ("Functions",):
        for r, py in SECTIONS[heading]:
            for spelling in _ticked(py):
                assert _resolve(spelling) is not None, (r, spelling)
            assert _ticked(py) or py.strip() == "—", (r, py)


def test_every_argument_is_listed_under_its_function() -> None:
    for fn, args in API["arguments"].items():
        head = next((h for h in SECTIONS if h.startswith(f"`{fn}` →")), None)
        assert head is not None, f"no argument table for {fn}"
        rows = dict(SECTIONS[head])
        wanted = [a for a in args if a not in ("...",)]
        listed = {t for r in rows for t in _ticked(r)}
        assert set(wanted) <= listed, (fn, set(wanted) - listed)
        target = head.split("→", 1)[1].strip()
        if target == "—":
            assert all(py.strip() == "—" for py in rows.values()), fn
            continue
        params = set(inspect.signature(_resolve(target.strip("`"))).parameters)
        for r, py in rows.items():
            names = _ticked(py)
            assert names or py.strip() == "—", (fn, r, py)
            if names:
                assert names[0] in params, f"{fn}: {r} -> {names[0]} is not a parameter"


def test_every_getme_name_is_listed_and_accepted() -> None:
    rows = dict(SECTIONS["getME names"])
    listed = {t for r in rows for t in _ticked(r)}
    assert set(API["getME"]) <= listed
    m = _model()
    for r, py in rows.items():
        (name,) = _ticked(r)
        if py.strip() == "—":
            assert name not in GETME_NAMES
            continue
        assert name == "ALL" or name in GETME_NAMES, name
        assert lmf.getME(m, name) is not None


@functools.cache
def _model() -> lmf.LmerMod:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.lmer("Reaction ~ Days + (Days | Subject)", lmf.datasets.load("sleepstudy"))


GUIDES = [DOCS / "index.md", DOCS / "getting-started.md",
          *sorted((DOCS / "pipeline").glob("*.md"))]


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_guide_examples_run(page: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    namespace: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:
            exec(compile(block, str(page), "exec"), namespace)


def test_mkdocs_nav_pages_exist() -> None:
    text = (ROOT / "mkdocs.yml").read_text()
    pages = re.findall(r"(\S+\.md)\s*$", text, re.M)
    assert len(pages) > 15
    for page in pages:
        assert (DOCS / page).exists(), page
    for page in (DOCS / "api").glob("*.md"):  # every module the API pages render imports
        for target in re.findall(r"^::: (\S+)", page.read_text(), re.M):
            assert importlib.import_module(target).__doc__, target
