"""Hot-load across instances: propose changes to the control topic, apply what it says.

- **Start** (`catch_up`, before the engine is built and before `/ready`): create the
  control topic if missing, read it to its end, and apply the final state of every
  pattern and model it names to the catalog and the model registry (models first,
  then patterns, then model removals). The engine is then built from the catalog.
- **Follow** (a thread): read the records written since, in offset order; each one
  that advances its name (`control_topic.advances`) is applied through the same code
  path as a local change (`service.hotload`): checked, persisted, and swapped in by the
  engine's loop at a batch boundary. Every instance, the writer too, applies a change
  only when it reads it here.
- **Propose** (API threads): the receiving instance has already refused a bad change
  (it never reaches the topic); the change is written with the version it leads to
  (the name's current version + 1 for a put) and the API waits until this instance has
  read and applied it. A put refused because another instance's record took that
  version first is proposed again with the next version; a delete refused because the
  pattern or model changed meanwhile is answered with a conflict.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Any

from cep.errors import CepError
from cep.runtime.engine import Engine
from service.api.compile_guard import CompileBudgetExceeded, CompileBusy
from service.hotload import (
    ModelConflictError,
    apply_model_delete,
    apply_model_put,
    apply_pattern_delete,
    apply_pattern_put,
    bounded_compile,
)
from service.kafka.control_topic import (
    ControlLog,
    ControlRecord,
    ControlTopicError,
    advances,
    final_states,
    new_record,
)
from service.service_state import EngineUnavailableError, ServiceState

log = logging.getLogger("cep.control")

PROPOSE_ATTEMPTS = 5


class ControlWaitError(EngineUnavailableError):
    """A change could not be written to the control topic, or was written but not
    applied here in time (HTTP 503)."""


@dataclass(frozen=True)
class Outcome:
    """What this instance did with one control record."""

    status: str  # "applied" | "refused" (did not advance its name) | "failed" (invalid here)
    offset: int
    result: Any = None  # PatternPut | PatternRemoved | Model | bool (model removed)
    current: tuple[int, bool] = (0, True)  # the name's state when refused
    error: str = ""


def instance_id(svc: ServiceState) -> str:
    """`group.instance.id` when set (stable per instance by definition), else an id
    kept in `DATA_DIR/instance-id`."""
    gid = svc.settings.kafka.consumer.get("group.instance.id")
    if gid:
        return str(gid)
    path = svc.settings.data_dir / "instance-id"
    try:
        return path.read_text().strip() or _new_id(path)
    except FileNotFoundError:
        return _new_id(path)


def _new_id(path: Any) -> str:
    ident = uuid.uuid4().hex[:12]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ident + "\n")
    return ident


class ControlFollower:
    def __init__(self, svc: ServiceState) -> None:
        self.svc = svc
        self.topic_log = ControlLog(svc.settings)
        self.topic = self.topic_log.topic
        self.instance = instance_id(svc)
        self.model_states: dict[str, tuple[int, bool]] = {}
        self.applied = 0  # records applied since start (catch-up included)
        self.refused = 0
        self.failed: dict[int, str] = {}  # offset -> why it could not be applied here
        self._waiting: dict[str, Future[Outcome]] = {}
        self._waiting_lock = threading.Lock()
        self._propose_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ state

    def pattern_state(self, name: str) -> tuple[int, bool]:
        entry = self.svc.catalog.get(name)
        if entry is not None:
            return (entry.version, False)
        return (self.svc.catalog.next_version(name) - 1, True)

    def model_state(self, name: str) -> tuple[int, bool]:
        return self.model_states.get(name, (0, name not in self.svc.registry.names()))

    def state_of(self, rec: ControlRecord) -> tuple[int, bool]:
        return self.pattern_state(rec.name) if rec.kind == "pattern" else self.model_state(
            rec.name)

    # ------------------------------------------------------------------ start

    def catch_up(self) -> None:
        """Read the topic to its end and apply the final state of each name (no
        engine yet: the engine is built from the catalog afterwards)."""
        self.topic_log.ensure()
        records = self.topic_log.read_to_end()
        finals = final_states(rec for _, rec in records)
        offsets = {id(rec): off for off, rec in records}
        ordered = sorted(finals.values(), key=lambda r: (
            0 if r.kind == "model" and not r.deleted else 2 if r.kind == "model" else 1,
            offsets[id(r)]))
        for rec in ordered:
            if not advances(rec, self.state_of(rec)):
                if rec.kind == "pattern" and rec.state < self.state_of(rec):
                    log.warning("pattern %s: this instance's data directory has version %d, "
                                "newer than the control topic's %d; keeping it",
                                rec.name, self.state_of(rec)[0], rec.version)
                continue
            self._apply(offsets[id(rec)], rec, None)
        log.info("control topic %s read to offset %d: %d record(s), %d change(s) applied; "
                 "patterns now %s", self.topic, self.topic_log.position, len(records),
                 self.applied, ", ".join(f"{e.name}@{e.version}"
                                         for e in self.svc.catalog.entries()) or "none")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="cep-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join(10)
        self.topic_log.close()

    def _follow(self) -> None:
        stop = self.svc.stop_event
        while not stop.is_set():
            try:
                for offset, rec in self.topic_log.poll(0.5):
                    self._apply(offset, rec, self._run)
            except Exception:  # never let the thread die: log, wait, go on
                log.exception("following the control topic %s", self.topic)
                stop.wait(1.0)

    def _run(self, fn: Callable[[Engine], Any]) -> Any:
        """`fn(engine)` on the engine's loop at its next batch boundary (also while the
        runner waits for its first assignment: its loop runs pending changes)."""
        svc = self.svc
        while True:
            if svc.stop_event.is_set() or svc.kafka_failed:
                raise ControlWaitError("the service is stopping")
            fut = svc.control.submit(fn)
            try:
                return fut.result(5.0)
            except FutureTimeoutError:
                if not fut.cancel():
                    return fut.result()

    # ------------------------------------------------------------------ apply

    def _apply(self, offset: int, rec: ControlRecord,
               run: Callable[[Callable[[Engine], Any]], Any] | None) -> None:
        current = self.state_of(rec)
        if not advances(rec, current):
            self.refused += 1
            log.info("control %d: %s %s %s version %d (from %s) refused: this name is at "
                     "version %d%s (an earlier record took it)", offset, rec.op, rec.kind,
                     rec.name, rec.version, rec.instance, current[0],
                     ", deleted" if current[1] else "")
            self._resolve(rec, Outcome("refused", offset, current=current))
            return
        try:
            result = self._change(rec, run)
        except (CepError, ModelConflictError, CompileBudgetExceeded, CompileBusy,
                UnicodeDecodeError) as exc:
            why = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
            self.failed[offset] = why
            log.error("control %d: %s %s %s version %d (from %s) cannot be applied on this "
                      "instance: %s", offset, rec.op, rec.kind, rec.name, rec.version,
                      rec.instance, why)
            self._resolve(rec, Outcome("failed", offset, error=why))
            return
        self.applied += 1
        log.info("control %d: %s %s %s version %d (from %s) applied", offset, rec.op,
                 rec.kind, rec.name, rec.version, rec.instance)
        self._resolve(rec, Outcome("applied", offset, result=result))

    def _change(self, rec: ControlRecord,
                run: Callable[[Callable[[Engine], Any]], Any] | None) -> Any:
        svc = self.svc
        if rec.kind == "pattern":
            if rec.deleted:
                removed = apply_pattern_delete(svc, rec.name, run)
                svc.catalog.note_version(rec.name, rec.version)
                svc.patterns_store.delete(rec.name, rec.version)
                return removed
            body = rec.source.encode("utf-8")
            bounded_compile(svc, body)  # as for text posted to this instance
            return apply_pattern_put(svc, rec.name, body, rec.version, run)
        if rec.deleted:
            removed_model = apply_model_delete(svc, rec.name, run)
            self.model_states[rec.name] = rec.state
            return removed_model
        model = apply_model_put(svc, rec.name, rec.model, rec.manifest, run)
        self.model_states[rec.name] = rec.state
        return model

    def _resolve(self, rec: ControlRecord, outcome: Outcome) -> None:
        with self._waiting_lock:
            fut = self._waiting.pop(rec.request, None)
        if fut is not None:
            fut.set_result(outcome)

    # ------------------------------------------------------------------ propose

    def propose(self, make: Callable[[], ControlRecord], *, retry: bool,
                timeout_s: float = 30.0) -> Outcome:
        """Write the record `make()` builds and wait until this instance applied (or
        refused) it. With `retry`, a refused record is built and written again."""
        with self._propose_lock:
            for _ in range(PROPOSE_ATTEMPTS):
                rec = make()
                fut: Future[Outcome] = Future()
                with self._waiting_lock:
                    self._waiting[rec.request] = fut
                try:
                    offset = self.topic_log.write(rec)
                except BaseException as exc:
                    with self._waiting_lock:
                        self._waiting.pop(rec.request, None)
                    if isinstance(exc, ControlTopicError):
                        raise ControlWaitError(f"{exc}; look (GET) before you retry") from None
                    raise
                try:
                    out = fut.result(timeout_s)
                except FutureTimeoutError:
                    with self._waiting_lock:
                        self._waiting.pop(rec.request, None)
                    raise ControlWaitError(
                        f"the change was written to the control topic {self.topic} (offset "
                        f"{offset}) but this instance did not apply it within "
                        f"{timeout_s:.0f}s; it is applied when the engine's loop comes "
                        "round (see GET /patterns)") from None
                if out.status != "refused" or not retry:
                    return out
                log.info("control %d refused; proposing %s %s again", offset, rec.kind,
                         rec.name)
            return out

    def pattern_put(self, name: str, source: str) -> ControlRecord:
        return new_record("pattern", name, "put", self.pattern_state(name)[0] + 1,
                          self.instance, source=source)

    def pattern_delete(self, name: str, version: int) -> ControlRecord:
        return new_record("pattern", name, "delete", version, self.instance)

    def model_put(self, name: str, data: bytes, manifest: bytes) -> ControlRecord:
        return new_record("model", name, "put", self.model_state(name)[0] + 1, self.instance,
                          manifest=manifest, model=data)

    def model_delete(self, name: str) -> ControlRecord:
        return new_record("model", name, "delete", self.model_state(name)[0], self.instance)
