"""The service's `max_resident_keys` setting (cep.toml, CEP_MAX_RESIDENT_KEYS,
`cep serve --max-resident-keys`) reaches the engine, and a Kafka task's engine evicts
into its own store once `load_engine` gave it that store."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.runtime.engine import Batch, Engine
from cep.state.codec import STATE_PREFIX
from cep.state.rocks import RocksStore
from service.build import engine_config
from service.cli import build_parser
from service.config import Settings, load_settings
from service.kafka.store import load_engine
from service.main import settings_from_args

SRC = """pattern p {
  key k
  within 1h
  match a where t == "a" then b where t == "b"
  emit {}
}
"""


def test_default_keeps_every_key_in_memory() -> None:
    assert engine_config(Settings()).max_resident_keys is None


def test_toml_environment_and_command_line(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "cep.toml"
    toml.write_text("max_resident_keys = 5000\n")
    assert engine_config(load_settings(str(toml))).max_resident_keys == 5000
    monkeypatch.setenv("CEP_MAX_RESIDENT_KEYS", "70")
    assert engine_config(load_settings()).max_resident_keys == 70
    args = build_parser().parse_args(["serve", "--config", str(toml),
                                      "--max-resident-keys", "12"])
    assert engine_config(settings_from_args(args)).max_resident_keys == 12
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--max-resident-keys", "0"])


def test_zero_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_resident_keys"):
        Settings(max_resident_keys=0)


def test_load_engine_gives_the_task_engine_its_store(tmp_path: Path) -> None:
    settings = Settings(max_resident_keys=1)
    plan = compile_pattern(load_source(SRC)[0])
    t0 = 1_763_712_000_000
    engine = Engine([plan], engine_config(settings), now_ms=lambda: t0)
    store = RocksStore(tmp_path / "task-0")
    try:
        task = engine.open_task(0)
        load_engine(task, store)
        evs = [{"ts": t0 + i, "k": f"k{i}", "t": "a"} for i in range(5)]
        assert not task.process(Batch(evs, list(range(5)), task=0)).dead_letters
        assert sum(p.keys for p in task.snapshot().patterns) <= 2  # one + one buffered
        store.write_batch(task.checkpoint())
        task.checkpointed()
        assert len(list(store.items(STATE_PREFIX))) == 5
    finally:
        store.close()
