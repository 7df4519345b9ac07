"""load_source / load_file / load_paths: parse + check, one PatternError for all errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cep.dsl import check, load_file, load_paths, load_source, parse
from cep.errors import CepError, PatternError

TWO = """# two patterns
pattern first_one {
  key k
  match a emit { x = a.x }
}

pattern second_one { key k match b+ emit { n = count(b) } }
"""


def test_load_source_slices_each_pattern() -> None:
    a, b = load_source(TWO, "two.cep")
    assert a.source == "pattern first_one {\n  key k\n  match a emit { x = a.x }\n}"
    assert b.source == "pattern second_one { key k match b+ emit { n = count(b) } }"
    assert a.file == b.file == "two.cep"


def test_load_source_raises_every_error_at_once() -> None:
    source = "pattern p { match not a then b+ greedy combinations }\npattern p { match c }"
    with pytest.raises(PatternError) as info:
        load_source(source, "bad.cep")
    codes = [d.code for d in info.value.diagnostics]
    assert codes == ["E211", "E222", "E200"] or sorted(codes) == ["E200", "E211", "E222"]
    assert isinstance(info.value, CepError)
    assert "bad.cep:1:" in str(info.value) and "(and 2 more)" in str(info.value)


def test_load_source_raises_syntax_errors() -> None:
    with pytest.raises(PatternError) as info:
        load_source("pattern p { match a where }")
    assert info.value.diagnostics[0].code == "E100"


def test_warnings_do_not_fail_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cep.dsl"):
        (p,) = load_source("pattern p { match a emit { k = key } }")
    assert p.name == "p"
    assert "W290" in caplog.text


def test_models_are_checked() -> None:
    source = "pattern p { let r = score(m, f=x) match a }"
    assert load_source(source, models={"m": ["f"]})
    with pytest.raises(PatternError) as info:
        load_source(source, models={"m": ["f", "g"]})
    assert [d.code for d in info.value.diagnostics] == ["E275"]


def test_load_file_and_paths(tmp_path: Path) -> None:
    (tmp_path / "b.cep").write_text("pattern pb { match b }\n", "utf-8")
    (tmp_path / "a.cep").write_text(TWO, "utf-8")
    (tmp_path / "notes.txt").write_text("not a pattern", "utf-8")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c.cep").write_text("pattern pc { match c }\n", "utf-8")
    (p,) = load_file(tmp_path / "b.cep")
    assert p.file == str(tmp_path / "b.cep")
    names = [p.name for p in load_paths([tmp_path, sub / "c.cep"])]
    assert names == ["first_one", "second_one", "pb", "pc"]


def test_load_paths_collects_errors_of_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.cep").write_text("pattern p { match a where }\n", "utf-8")
    (tmp_path / "b.cep").write_text("pattern q { match not b }\n", "utf-8")
    (tmp_path / "c.cep").write_text("pattern q { match c }\n", "utf-8")
    with pytest.raises(PatternError) as info:
        load_paths([tmp_path])
    found = sorted((Path(d.file or "").name, d.code) for d in info.value.diagnostics)
    assert found == [("a.cep", "E100"), ("b.cep", "E211"), ("c.cep", "E200")]


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(PatternError) as info:
        load_file(tmp_path / "missing.cep")
    assert info.value.diagnostics[0].code == "E110"
    bad = tmp_path / "bad.cep"
    bad.write_bytes(b"pattern p {\n match a where x == '\xff' }")
    with pytest.raises(PatternError) as info:
        load_file(bad)
    d = info.value.diagnostics[0]
    assert (d.code, d.line, d.column) == ("E111", 2, 22)


def test_parse_and_check_are_reexported() -> None:
    assert check(parse("pattern p { match a }")) == []


def test_parse_accepts_utf8_bytes() -> None:
    assert parse("pattern p { match a where x == 'é' }".encode()).patterns[0].name == "p"
    with pytest.raises(PatternError) as info:
        parse(b"pattern p { match a where x == '\xff' }")
    assert info.value.diagnostics[0].code == "E111"
    with pytest.raises(PatternError) as info:
        parse(b"#" * (1024 * 1024))
    assert info.value.diagnostics[0].code == "E150"
