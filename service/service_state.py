"""Everything the API handlers share, built by the app's lifespan (never at import).

`ServiceState.start` loads models (models directory, then the ones uploaded through the
API, minus the ones deleted through it), loads patterns (`Catalog.load_startup`),
builds the engine, the alert hub and the loop that owns the engine: the embedded loop,
or the Kafka runner (`service.kafka.runner.run_kafka`) in its own thread.

Handlers never touch the engine: `call(fn)` runs `fn(engine)` on the loop at the next
batch boundary and waits for its result.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import TYPE_CHECKING, TypeVar

from cep.errors import CepError
from cep.runtime.engine import Alert, Engine
from cep.scoring.registry import ModelRegistry
from cep.streams import StreamSchema
from service.api.hub import AlertHub
from service.build import engine_config, stream_schemas
from service.catalog import Catalog
from service.config import Settings
from service.control import Control
from service.embedded.loop import DeadLetterFile, EmbeddedLoop
from service.kafka import watchdog
from service.kafka.tasks import TaskTable
from service.kafka.watchdog import Progress
from service.metrics import ServiceMetrics, activate
from service.persist import ModelTombstones, PatternStore
from service.scoring import PinnedScorer

if TYPE_CHECKING:
    from service.kafka.control_follower import ControlFollower

log = logging.getLogger("cep.service")
T = TypeVar("T")


class EngineUnavailableError(CepError):
    """The engine loop is not running (starting, restoring state, or stopping)."""


class ServiceState:
    def __init__(self, settings: Settings, *, tick_s: float = 0.2,
                 call_timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.tick_s = tick_s
        self.call_timeout_s = call_timeout_s
        self.metrics = ServiceMetrics()
        self.registry = ModelRegistry()
        self.control = Control()
        data = settings.data_dir
        self.patterns_store = PatternStore(data / "patterns")
        self.uploaded_models_dir = data / "models"
        self.model_tombstones = ModelTombstones(data / "models-deleted.json")
        self.catalog = Catalog(self.patterns_store)
        self.hub = AlertHub(
            settings.api.recent_alerts,
            settings.alerts_file if settings.embedded else None,
            on_alerts=self.metrics.count_alerts,
        )
        self.scorer = PinnedScorer(self.registry, self.metrics.observe_scoring)
        self.loop: EmbeddedLoop | None = None
        self.stop_event = threading.Event()
        self.ready_event = threading.Event()
        # Kafka mode: the partition tasks this process runs (GET /tasks, /ready)
        self.tasks = TaskTable()
        self.progress: Progress | None = None  # Kafka mode: the runner's watchdog
        self._kafka_thread: threading.Thread | None = None
        self._kafka_error: BaseException | None = None
        self.requests = itertools.count(1)
        self.model_problems: dict[str, str] = {}
        self.inflight = asyncio.Semaphore(8)  # POST /events batches queued at once
        self.sse_heartbeat_s = 15.0
        self.started = False
        self.schemas: dict[str, StreamSchema] = {}  # declared stream schemas (at start)
        # Kafka mode: the control topic (changes shared by every instance of the group)
        self.follower: ControlFollower | None = None

    @property
    def mode(self) -> str:
        return "embedded" if self.settings.embedded else "kafka"

    # -- lifecycle

    def start(self) -> None:
        """Load models and patterns, build the engine, start its loop. Raises
        `PatternError` / `ConfigError` for a broken patterns directory or data."""
        if self.started:
            return
        self.started = True
        s = self.settings
        self._load_models()
        self.scorer.refresh()
        self.schemas = stream_schemas(s)
        entries = self.catalog.load_startup(s.patterns_dir, self.registry.feature_names(),
                                            self.schemas)
        if not s.embedded and s.kafka.share_changes:
            # the changes made through any instance's API, before the engine is built
            # and before /ready (service/kafka/control_follower.py)
            follower_mod = importlib.import_module("service.kafka.control_follower")
            self.follower = follower_mod.ControlFollower(self)
            self.follower.catch_up()
            # the start-up order, then the names the control topic added
            names = [e.name for e in entries]
            names += [e.name for e in self.catalog.entries() if e.name not in set(names)]
            entries = [e for e in map(self.catalog.get, names) if e is not None]
        # embedded mode never checkpoints: recording changed keys for checkpoint() would
        # only grow (issue 14: ~100 MB per million keys that came and went)
        engine = Engine([e.plan for e in entries], engine_config(s), scorer=self.scorer,
                        track_changes=not s.embedded)
        log.info("loaded %d patterns (%s), %d models", len(entries),
                 ", ".join(f"{e.name}@{e.version}" for e in entries) or "none",
                 len(self.registry.names()))
        self.hub.open()
        activate(self.metrics)
        if s.embedded:
            self.loop = EmbeddedLoop(
                engine, self.control, self._publish, self.metrics,
                DeadLetterFile(s.dead_letters_file), tick_s=self.tick_s,
            )
            self.loop.start()
            self.loop.ready.wait(5.0)
        else:
            k = s.kafka
            self.progress = Progress(k.stall_after_ms / 1000, k.wedged_after_ms / 1000)
            watchdog.activate(self.progress)
            self._start_kafka(engine)
            if self.follower is not None:
                self.follower.start()
        self.metrics.ready.set(1 if self.ready else 0)

    def stop(self) -> None:
        self.stop_event.set()
        if self.loop is not None:
            self.loop.stop()
        if self._kafka_thread is not None:
            self._kafka_thread.join(30.0)
        if self.follower is not None:
            self.follower.stop()
        self.hub.close()
        self.metrics.ready.set(0)
        activate(None)
        if self.progress is not None and watchdog.active() is self.progress:
            watchdog.activate(None)

    def _publish(self, alerts: list[Alert]) -> None:
        if not self.settings.embedded:
            # in Kafka mode an alert without `emit to` went to the alert topic: say so
            default = self.settings.kafka.alert_topic
            alerts = [a if a.topic is not None else Alert(default, a.key, a.record)
                      for a in alerts]
        self.hub.publish(alerts)
        self.metrics.recent_alerts.set(len(self.hub))

    def _load_models(self) -> None:
        problems: list[tuple[str, CepError]] = []
        if self.settings.models_dir.is_dir():
            problems += self.registry.load_dir(self.settings.models_dir)
        if self.uploaded_models_dir.is_dir():
            problems += self.registry.load_dir(self.uploaded_models_dir)
        for name in self.model_tombstones.names():
            if name in self.registry.names():
                self.registry.remove(name)
        for name, err in problems:
            log.warning("model %s not loaded: %s", name, err)
            self.model_problems[name] = str(err)

    def _start_kafka(self, engine: Engine) -> None:
        runner = importlib.import_module("service.kafka.runner")
        run_kafka: Callable[..., None] = runner.run_kafka

        def target() -> None:
            try:
                run_kafka(self.settings, engine, self.control, self._publish,
                          self.stop_event, self.ready_event, self.tasks)
            except BaseException as exc:
                log.exception("the Kafka runner stopped with an error")
                self._kafka_error = exc
            finally:
                self.ready_event.clear()

        self._kafka_thread = threading.Thread(target=target, name="cep-kafka", daemon=True)
        self._kafka_thread.start()

    # -- status

    @property
    def kafka_failed(self) -> bool:
        t = self._kafka_thread
        return t is not None and not t.is_alive() and not self.stop_event.is_set()

    @property
    def ready(self) -> bool:
        if self.loop is not None:
            return self.loop.ready.is_set() and self.loop.alive
        t = self._kafka_thread
        return t is not None and t.is_alive() and self.ready_event.is_set()

    def stalled(self) -> str | None:
        """Kafka mode: why the runner makes no progress although input waits, or None."""
        return None if self.progress is None else self.progress.stalled()

    def wedged(self) -> str | None:
        """Kafka mode: why the runner's loop counts as stuck (liveness), or None."""
        return None if self.progress is None else self.progress.wedged()

    def not_ready_reason(self) -> str:
        if self.stop_event.is_set():
            return "the service is stopping"
        if self._kafka_error is not None:
            return f"the Kafka runner failed: {self._kafka_error}"
        if self.settings.embedded:
            return "the engine loop is not running"
        restoring = self.tasks.restoring()
        if restoring:
            return f"restoring task(s) {', '.join(map(str, restoring))} from the changelog"
        return "the Kafka runner is starting (waiting for a partition assignment)"

    # -- the engine, through its loop

    def call(self, fn: Callable[[Engine], T], timeout: float | None = None) -> T:
        """Run `fn(engine)` on the engine's loop at the next batch boundary."""
        if not self.ready:
            raise EngineUnavailableError(self.not_ready_reason())
        fut = self.control.submit(fn)
        try:
            return fut.result(self.call_timeout_s if timeout is None else timeout)
        except FutureTimeoutError:
            if fut.cancel():
                raise EngineUnavailableError(
                    "the engine loop did not reach a batch boundary in time; retry"
                ) from None
            return fut.result()  # it started meanwhile: it will finish
