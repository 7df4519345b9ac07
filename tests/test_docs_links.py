"""No dangling references: every relative link of the README and docs/ names a file of
the repository, and nothing points at design documents that are not in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
OUTSIDE = ("pattern-language.md", "architecture.md", "shared/design")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_relative_links_resolve() -> None:
    broken = []
    for md in markdown_files():
        for target in LINK.findall(md.read_text("utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (md.parent / target).exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_nothing_refers_to_documents_outside_the_repository() -> None:
    files = [*markdown_files(), *(ROOT / "cep").rglob("*.py"), *(ROOT / "cep").rglob("*.lark"),
             *(ROOT / "service").rglob("*.py"), *(ROOT / "patterns").glob("*.cep"),
             *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    me = Path(__file__).resolve()
    found = [f"{p.relative_to(ROOT)}: {name}" for p in files if p.resolve() != me
             for name in OUTSIDE if name in p.read_text("utf-8")]
    assert found == []
