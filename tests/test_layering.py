"""The dependency rules (README "Layout": cep/ never imports service/; cep.runtime never
loads lark), checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_engine_never_imports_the_service() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in imports(p) if m.split(".")[0] == "service")
        for p in (ROOT / "cep").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_runtime_never_imports_the_language_front_end() -> None:
    bad = {"lark", "cep.dsl"}
    offenders = {
        str(p.relative_to(ROOT)): sorted(
            m for m in imports(p) if m in bad or m.startswith(("lark.", "cep.dsl."))
        )
        for p in (ROOT / "cep" / "runtime").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
