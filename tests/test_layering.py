"""The dependency rules (README "Layout": cep/ never imports service/; cep.runtime never
loads lark), checked on the source."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
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


def loaded_after(imports: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with `prefixes` that a fresh interpreter has loaded after
    `import <imports>` (transitively, whatever imports them)."""
    code = (f"import json, sys, {imports}; print(json.dumps(sorted(m for m in sys.modules "
            f"if m.startswith({prefixes!r}))))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    names: list[str] = json.loads(out.stdout)
    return names


def test_the_runtime_loads_neither_the_front_end_nor_the_compiler() -> None:
    runtime = "cep.runtime, cep.runtime.engine, cep.runtime.driver, cep.runtime.records"
    assert loaded_after(runtime, ("lark", "cep.dsl", "cep.compiler")) == []
    # `import cep` (the embedding API) stays light until a compiler name is used
    assert loaded_after("cep", ("lark", "cep.dsl", "cep.compiler")) == []


def test_the_state_store_never_loads_the_runtime() -> None:
    assert loaded_after("cep.state, cep.state.store, cep.state.codec, cep.state.rocks",
                        ("cep.runtime", "cep.compiler", "cep.dsl", "lark")) == []


def test_the_layering_check_sees_transitive_imports() -> None:
    # cep.compiler.pipeline imports cep.dsl only through its own imports: still seen
    assert "cep.dsl.parser" in loaded_after("cep.compiler.pipeline", ("cep.dsl",))


def test_runtime_never_imports_the_language_front_end() -> None:
    bad = {"lark", "cep.dsl"}
    offenders = {
        str(p.relative_to(ROOT)): sorted(
            m for m in imports(p) if m in bad or m.startswith(("lark.", "cep.dsl."))
        )
        for p in (ROOT / "cep" / "runtime").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


# ------------------------------------------------------------------ a closed engine

RUNTIME = ROOT / "cep" / "runtime"
# modules of cep.runtime that only the runtime itself imports (the engine's insides)
PRIVATE_MODULES = {"cep.runtime.pattern_runtime", "cep.runtime.matcher", "cep.runtime.keys",
                   "cep.runtime.alerts", "cep.runtime.state_codec", "cep.runtime.eviction"}
PRIVATE_NAMES = {"cep.runtime.clock": {"Clock"}}  # public there: wall_ms only


def runtime_private_names() -> set[str]:
    """Every `_name` the runtime defines: attributes set on `self`, methods, slots."""
    names: set[str] = set()
    for p in RUNTIME.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name) and node.value.id == "self"):
                names.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)  # __slots__ entries
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def engine_insides_touched(source: str, filename: str, private: set[str]) -> list[str]:
    """`x._name` (x not self/cls) for a private name of the runtime, and imports of the
    runtime's private modules or names."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if (isinstance(node, ast.Attribute) and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{filename}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in PRIVATE_MODULES:
                found.append(f"{filename}:{node.lineno}: from {node.module}")
            bad = PRIVATE_NAMES.get(node.module, set()) & {a.name for a in node.names}
            if bad:
                found.append(f"{filename}:{node.lineno}: {node.module}.{sorted(bad)}")
        elif isinstance(node, ast.Import):
            found += [f"{filename}:{node.lineno}: import {a.name}" for a in node.names
                      if a.name in PRIVATE_MODULES]
    return found


def test_nothing_outside_the_runtime_touches_engine_insides() -> None:
    private = runtime_private_names()
    assert {"_runtimes", "_clocks", "_wm", "_removed"} <= private
    files = [p for p in (ROOT / "cep").rglob("*.py") if RUNTIME not in p.parents]
    files += list((ROOT / "service").rglob("*.py"))
    found = [f for p in files
             for f in engine_insides_touched(p.read_text(), str(p.relative_to(ROOT)), private)]
    assert found == []


def test_the_insides_check_finds_what_the_service_used_to_do() -> None:
    private = runtime_private_names()
    old = (
        "from cep.runtime.clock import Clock\n"
        "from cep.runtime.matcher import KeyState\n"
        "engine._clocks[ck] = Clock(c.ooo_ms, c.idle_ms, c.now)\n"
        "clock._wm = now\n"
        "self._wm = 1\n"  # an object's own private attributes are its business
    )
    assert len(engine_insides_touched(old, "old.py", private)) == 4
