"""The README can be followed top to bottom twice: every file its commands create is
ignored by git, every section that runs something says what state it leaves and how to
reset it, the Kafka section does not pick up the REST section's uploaded patterns, and
the produce example keys each stream by a field it has."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from cep.synth import generate
from service.config import Settings
from service.kafka.produce import parse_key_fields

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text("utf-8")
BASH = re.compile(r"```bash\n(.*?)```", re.S)


def sections() -> dict[str, str]:
    parts = re.split(r"^## ", README, flags=re.M)
    return {p.splitlines()[0]: p for p in parts[1:]}


def created_files() -> set[str]:
    out: set[str] = set()
    for block in BASH.findall(README):
        out.update(re.findall(r"cat > (\S+) <<", block))
        out.update(f for f in re.findall(r"--(?:out|infer-schema) (\S+)", block)
                   if f not in ("/dev/null", "-"))
    return out


def ignored() -> list[str]:
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def test_files_the_readme_creates_are_ignored() -> None:
    files = created_files()
    assert {"night_spender.cep", "events.ndjson", "events.jsonl", "kafka-demo.toml",
            "sample.jsonl", "schema.json", "big_spend.cep"} <= files
    rules = ignored()
    for f in files:
        assert f"/{f}" in rules or f in rules, f"{f} is created by the README but not ignored"
    assert "/var/" in rules and "/out/" in rules


def test_each_section_that_runs_something_says_its_state_and_reset() -> None:
    for title, text in sections().items():
        if not BASH.search(text) or title in ("Commands",):
            continue
        if title.startswith("What `cep demo` does") or title in ("Performance", "Development"):
            continue
        assert "**State:**" in text, f"section {title!r} does not say which state it leaves"
        if "**State:** none new" not in text:
            assert "**Reset:**" in text, f"section {title!r} does not say how to reset"


def test_kafka_section_has_its_own_state_directory() -> None:
    (kafka,) = [t for n, t in sections().items() if n.startswith("Run it against Kafka")]
    toml = re.search(r"cat > kafka-demo.toml <<'TOML'\n(.*?)TOML\n", kafka, re.S)
    assert toml is not None
    settings = Settings(**tomllib.loads(toml.group(1)))
    default = Settings()
    assert settings.data_dir != default.data_dir and settings.state_dir != default.state_dir


def test_produce_example_keys_each_stream_by_a_field_it_has() -> None:
    (kafka,) = [t for n, t in sections().items() if n.startswith("Run it against Kafka")]
    cmd = re.search(r"python -m service.kafka.produce (.*?)&", kafka, re.S)
    assert cmd is not None
    argv = shlex.split(cmd.group(1).replace("\\\n", " "))
    keys = parse_key_fields([argv[i + 1] for i, a in enumerate(argv) if a == "--key-field"])
    assert keys
    events = generate(5000, seed=7)
    streams = {e["stream"] for e in events}
    assert streams == {"transactions", "logins", "account_events", "orders", "sessions"}
    for e in events:
        field = keys.get(e["stream"], keys.get(""))
        assert field is not None and e.get(field) is not None, (e["stream"], field)
