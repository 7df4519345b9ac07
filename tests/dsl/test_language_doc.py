"""docs/language.md is the language reference: every ```cep block parses and checks
clean, every block followed by ```jsonl events and ```alerts runs and gives exactly
those alerts, and the shipped patterns/ are the reference's examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cep.compiler.pipeline import compile_pattern
from cep.dsl import check, parse
from cep.dsl.codes import CODES
from cep.runtime.engine import Engine, EngineConfig, Result

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "language.md"
MODELS = {"txn_risk": ["amount", "hour", "foreign"]}
_BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in _BLOCK.findall(DOC.read_text("utf-8"))]


def cep_blocks() -> list[str]:
    return [body for lang, body in blocks() if lang == "cep"]


def worked() -> list[tuple[str, str, str]]:
    bs = blocks()
    return [
        (bs[i][1], bs[i + 1][1], bs[i + 2][1])
        for i in range(len(bs) - 2)
        if (bs[i][0], bs[i + 1][0], bs[i + 2][0]) == ("cep", "jsonl", "alerts")
    ]


def test_every_cep_block_parses_and_checks_clean() -> None:
    assert len(cep_blocks()) >= 6
    for source in cep_blocks():
        assert check(parse(source), models=MODELS) == [], source


def test_shipped_patterns_are_the_reference_examples() -> None:
    from_doc = {p.name: p for src in cep_blocks() for p in parse(src).patterns}
    files = sorted((ROOT / "patterns").glob("*.cep"))
    assert len(files) == 7
    for f in files:
        (copy,) = parse(f.read_text("utf-8")).patterns
        assert copy == from_doc[copy.name], f.name


@pytest.mark.parametrize("example", range(4))
def test_worked_examples_give_the_documented_alerts(example: int) -> None:
    examples = worked()
    assert len(examples) == 4
    source, events, expected = examples[example]
    (pattern,) = parse(source).patterns
    engine = Engine([compile_pattern(pattern)], EngineConfig(), now_ms=lambda: 0)
    result = Result()
    for line in events.splitlines():
        result.extend(engine.process([json.loads(line)]))
    result.extend(engine.finish())
    assert result.dead_letters == []
    got = [a.record["measures"] for a in result.alerts]
    assert got == [json.loads(x) for x in expected.splitlines()]


def test_every_function_and_connector_is_documented() -> None:
    from cep.dsl.check_exprs import FUNCTIONS

    text = DOC.read_text("utf-8")
    for name in FUNCTIONS:
        assert f"`{name}(" in text, name
    for word in ("`next`", "`then`", "`then any`", "`greedy`", "`consecutive`",
                 "`combinations`", "`until`", "`order by f, g`", "`time arrival`",
                 "`on timeout emit`", "`skip to first S`", "`let name = expr`"):
        assert word in text, word


def test_every_code_has_a_meaning_and_the_doc_names_the_families() -> None:
    text = DOC.read_text("utf-8")
    assert all(CODES.values())
    for family in ("E1xx", "E2xx", "W2xx", "E3xx"):
        assert family in text
