"""Service configuration: one `cep.toml` plus `CEP_...` environment overrides.

Nested settings use `__` in the environment (`CEP_KAFKA__EXACTLY_ONCE=true`); the two
most common have short forms: `CEP_API_TOKEN` and `CEP_KAFKA_BOOTSTRAP`.
Durations are written like in patterns (`5s`, `10m`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cep.durations import parse_duration
from cep.errors import ConfigError


def _ms(v: Any) -> int:
    try:
        return parse_duration(v)
    except ValueError as err:
        raise ValueError(str(err)) from None


class StreamConfig(BaseModel):
    """A named input stream: its Kafka topic, its time semantics and (optionally) its
    schema: `fields` (name -> type, `?` = optional) or `schema_file` (a JSON Schema).
    See docs/streams.md."""

    model_config = ConfigDict(extra="forbid")

    topic: str | None = None  # default: the stream's name
    time_field: str = "ts"
    time_unit: Literal["ms", "s", "us", "iso"] = "ms"  # how time_field is written
    assume_utc: bool = False  # ISO times without a zone are UTC (else dead letters)
    fields: dict[str, str] | None = None
    schema_file: Path | None = None
    max_out_of_orderness_ms: int = 0
    idle_timeout_ms: int = 30_000
    max_future_skew_ms: int = 3_600_000
    # Kafka mode: the field(s) the topic's records are partitioned by (docs/scale-out.md,
    # "Repartitioning"). Unset: by the key of every pattern that reads the stream (no
    # repartition). Set: patterns keyed otherwise read through a repartition topic;
    # "" or [] (keyless / round-robin producers): every keyed pattern does.
    partition_key: str | list[str] | None = None

    @field_validator("max_out_of_orderness_ms", "idle_timeout_ms", "max_future_skew_ms",
                     mode="before")
    @classmethod
    def _dur(cls, v: Any) -> int:
        return _ms(v)


class KafkaConfig(BaseModel):
    bootstrap_servers: str | None = None  # None: embedded mode (no Kafka)
    group_id: str = "cep"
    alert_topic: str = "cep.alerts"
    dead_letter_topic: str = "cep.dead-letters"
    exactly_once: bool = False
    transactional_id: str = "cep-0"
    changelog_topic: str = "cep.changelog"
    batch_size: int = 2000
    poll_timeout_ms: int = 100
    consumer: dict[str, str] = Field(default_factory=dict)  # extra librdkafka settings
    producer: dict[str, str] = Field(default_factory=dict)
    # -- Kafka runner (service/kafka/runner.py; docs/operations.md "Kafka mode")
    checkpoint_records: int = 100_000  # also checkpoint after this many input records
    tick_interval_ms: int = 200  # engine.tick() (idle watermarks, timers) at most this often
    auto_offset_reset: str = "earliest"  # partitions with no stored or committed offset
    create_topics: bool = True  # create missing alert / dead-letter / changelog topics
    # API pattern/model changes go to every instance of the group through the control
    # topic `<group_id>.control` (docs/scale-out.md); false: to the receiving one only
    share_changes: bool = True
    topic_partitions: int = 1  # partitions of topics the runner creates (not the changelog)
    transaction_timeout_ms: int = 60_000  # transaction.timeout.ms of the exactly-once producer
    recovery_timeout_ms: int = 300_000  # max time to catch the state store up from the changelog
    max_key_bytes: int = 4 * 1024  # larger record keys: dead letter key_too_large
    max_event_bytes: int = 256 * 1024  # larger record values: dead letter event_too_large
    max_state_bytes_per_key: int = 512 * 1024  # larger: the key's state is dropped (dead letter)
    max_dead_letter_bytes: int = 900 * 1024  # larger dead letters are written truncated
    stall_after_ms: int = 60_000  # input waiting, nothing committed this long: /ready 503
    stall_exit_ms: int = 300_000  # ... this long: the runner stops with an error (0: never)
    wedged_after_ms: int = 360_000  # the loop has not come round this long: /health 503

    @field_validator("tick_interval_ms", "transaction_timeout_ms", "recovery_timeout_ms",
                     "stall_after_ms", "stall_exit_ms", "wedged_after_ms", mode="before")
    @classmethod
    def _kdur(cls, v: Any) -> int:
        return _ms(v)


class ApiConfig(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None  # bearer token for every mutating endpoint
    max_body_bytes: int = 10 * 1024 * 1024  # authenticated PUT / DELETE / POST /events
    max_open_body_bytes: int = 16 * 1024  # requests to endpoints without a body (GET ...)
    max_test_body_bytes: int = 4 * 1024 * 1024  # dry runs: /patterns/test and /backtest (open)
    max_test_alerts: int = 1000  # POST /patterns/test answers at most this many alerts
    recent_alerts: int = 10_000
    compile_timeout_s: float = 10.0  # posted pattern text: compile time bound (a child process)
    compile_memory_mb: int = 1024  # ... and its address-space bound


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CEP_", env_nested_delimiter="__",
                                      extra="forbid")

    streams: dict[str, StreamConfig] = Field(default_factory=dict)
    default_stream: str = "events"  # events POSTed without a stream / topics not configured
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    patterns_dir: Path = Path("patterns")
    models_dir: Path = Path("models")
    data_dir: Path = Path("var")  # hot-loaded patterns/models are persisted here
    state_dir: Path = Path("var/state")  # RocksDB (Kafka mode)
    alerts_file: Path | None = Path("out/alerts.jsonl")
    # embedded mode: dead letters (decode errors, bad/missing time, late) as JSONL
    dead_letters_file: Path | None = Path("out/dead-letters.jsonl")
    checkpoint_interval_ms: int = 1000
    max_runs_per_key: int = 10_000
    # Kafka mode: keys per pattern version and task whose state stays in Python memory;
    # the least recently changed others wait in the task's RocksDB store and come back
    # on their next event or timer (CEP_MAX_RESIDENT_KEYS; docs/engine.md). None: all
    max_resident_keys: int | None = Field(default=None, ge=1)
    # BLAS/OpenMP threads per model call (CEP_SCORING_THREADS); 0 = one per core
    scoring_threads: int = Field(default=1, ge=0)

    @field_validator("checkpoint_interval_ms", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> int:
        return _ms(v)

    @property
    def embedded(self) -> bool:
        return not self.kafka.bootstrap_servers

    def stream_for_topic(self, topic: str) -> str:
        for name, s in self.streams.items():
            if (s.topic or name) == topic:
                return name
        return topic


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read `path` (TOML) if given, then apply CEP_... environment variables on top."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {p} not found") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{p}: invalid TOML: {err}") from None
    env = os.environ
    if env.get("CEP_API_TOKEN"):
        data.setdefault("api", {})["token"] = env["CEP_API_TOKEN"]
    if env.get("CEP_KAFKA_BOOTSTRAP"):
        data.setdefault("kafka", {})["bootstrap_servers"] = env["CEP_KAFKA_BOOTSTRAP"]
    data.update(overrides)
    try:
        # environment (CEP_X__Y) wins over the file: pydantic-settings merges init
        # values below env values when we pass the file as init kwargs
        settings = _EnvFirst(**data)
    except Exception as err:  # pydantic ValidationError: say which setting is wrong
        raise ConfigError(f"invalid configuration: {err}") from None
    return settings


class _EnvFirst(Settings):
    @classmethod
    def settings_customise_sources(
        cls, settings_cls: Any, init_settings: Any, env_settings: Any, dotenv_settings: Any,
        file_secret_settings: Any,
    ) -> tuple[Any, ...]:
        return (env_settings, init_settings)
