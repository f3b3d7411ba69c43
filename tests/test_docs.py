"""The manual's references stay true: every test it cites exists, every benchmark it runs exists.

A figure or behaviour in the docs points at the test or benchmark behind it; when a test is
renamed or moved, the page must follow, or this fails.
"""

from __future__ import annotations

import re

import pytest
from conftest import REPO

PAGES = sorted((REPO / "docs").rglob("*.md")) + [REPO / "README.md"]
# tests/dir/test_x.py or tests/dir/test_x.py::test_name (optionally ::Class::name)
TEST_REF = re.compile(r"(tests/[\w/]+\.py)(?:::([\w:]+))?")
BENCH_REF = re.compile(r"(benchmarks/[\w/]+\.py)")
BARE_TEST = re.compile(r"`(test_\w+)`")


def _refs(pattern: re.Pattern) -> list[tuple[str, re.Match]]:
    return [
        (page.relative_to(REPO).as_posix(), m)
        for page in PAGES
        for m in pattern.finditer(page.read_text(encoding="utf-8"))
    ]


def _id(value) -> str:
    return value.group(0) if isinstance(value, re.Match) else str(value)


def test_docs_exist():
    assert (REPO / "mkdocs.yml").is_file() and len(PAGES) > 5


@pytest.mark.parametrize("page, match", _refs(TEST_REF), ids=_id)
def test_cited_test_exists(page, match):
    path = REPO / match.group(1)
    assert path.is_file(), f"{page} cites {match.group(1)}, which does not exist"
    if match.group(2):
        name = match.group(2).split("::")[-1].split("[")[0]
        assert re.search(rf"def {name}\b", path.read_text()), f"{page}: no {match.group(0)}"


@pytest.mark.parametrize("page, match", _refs(BENCH_REF), ids=_id)
def test_cited_benchmark_exists(page, match):
    assert (REPO / match.group(1)).is_file(), f"{page} runs {match.group(1)}, which is gone"


def test_bare_test_names_exist():
    """`test_x` named alone in a page must be a test somewhere under tests/."""
    sources = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    missing = [
        f"{page}: {m.group(1)}"
        for page, m in _refs(BARE_TEST)
        if not re.search(rf"def {m.group(1)}\b", sources)
    ]
    assert not missing, missing
