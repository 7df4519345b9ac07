"""The state store layout in Kafka mode, and loading the engine from it.

One RocksDB per process (`state_dir`), raw bytes, never pickle:

| key                                 | value                              | in changelog |
|-------------------------------------|------------------------------------|--------------|
| `s\\0<pattern>\\0<version>\\0<key>` | a key's runs, held matches, events | yes          |
| `m\\0engine`                        | watermarks, clock partitions, seqs | yes          |
| `o\\0<topic>\\0<partition>`         | next input offset to read (ASCII)  | yes          |
| `l\\0changelog`                     | next changelog offset (ASCII)      | no (local)   |

The first three kinds are written together, in one WriteBatch, by every checkpoint
(`service/checkpoint.py`), so state, input offsets and watermarks always agree. The
stored offsets are the source of truth for where to resume; offsets committed to the
consumer group follow them (at-least-once: afterwards; exactly-once: in the same
transaction as the changelog records of the same checkpoint).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from cep.runtime.clock import Clock
from cep.runtime.engine import ARRIVAL, Engine
from cep.state.codec import META_PREFIX, STATE_PREFIX
from cep.state.store import StateStore

log = logging.getLogger("cep.kafka")

OFFSET_PREFIX = b"o\x00"
LOCAL_PREFIX = b"l\x00"
CHANGELOG_POS_KEY = LOCAL_PREFIX + b"changelog"

TP = tuple[str, int]

# A partition assigned to us but not read yet holds its clock back, like a partition
# whose newest event is at the beginning of time (until it is idle).
_NOT_YET_READ = -(2**62) + 1


def offset_key(topic: str, partition: int) -> bytes:
    return OFFSET_PREFIX + topic.encode() + b"\x00" + str(partition).encode()


def parse_offset_key(k: bytes) -> TP:
    topic, partition = k[len(OFFSET_PREFIX):].rsplit(b"\x00", 1)
    return topic.decode(), int(partition)


def offset_puts(positions: Mapping[TP, int]) -> dict[bytes, bytes | None]:
    return {offset_key(t, p): str(off).encode() for (t, p), off in positions.items()}


def stored_offsets(store: StateStore) -> dict[TP, int]:
    return {parse_offset_key(k): int(v) for k, v in store.items(OFFSET_PREFIX)}


def changelog_position(store: StateStore) -> int | None:
    v = store.get(CHANGELOG_POS_KEY)
    return None if v is None else int(v)


def replicated_items(store: StateStore) -> Iterable[tuple[bytes, bytes]]:
    """Everything that belongs in the changelog (all but the local keys)."""
    for k, v in store.items():
        if not k.startswith(LOCAL_PREFIX):
            yield k, v


def has_engine_state(store: StateStore) -> bool:
    return any(True for _ in store.items(META_PREFIX)) or any(
        True for _ in store.items(STATE_PREFIX)
    )


def clear_store(store: StateStore) -> int:
    """Delete every key (one batch); returns how many there were."""
    keys = [k for k, _ in store.items()]
    if keys:
        store.write_batch(dict.fromkeys(keys))
    return len(keys)


# -- the engine


def reset_engine_state(engine: Engine) -> None:
    """Forget all per-key state, buffered events, timers and watermarks, keeping the
    loaded patterns (used to go back to the last checkpoint).

    The engine has no public API for this (see the report on issue 3); it clears the
    same fields `Engine.restore` fills."""
    for rt in engine.runtimes:
        rt.states.clear()
        rt.heap.clear()
        rt.timers.clear()
        rt.dirty.clear()
        fresh = getattr(rt, "fresh", None)  # events of a batch not drained yet (none between
        if fresh:                            # batches; cleared for safety)
            fresh.clear()
    engine.removed_keys.clear()
    for ck, c in list(engine.clocks.items()):
        engine.clocks[ck] = Clock(c.ooo_ms, c.idle_ms, c.now)


def load_engine(engine: Engine, store: StateStore) -> dict[str, int]:
    """Reset the engine and load the store's state into it."""
    reset_engine_state(engine)
    items = list(store.items(META_PREFIX)) + list(store.items(STATE_PREFIX))
    stats = engine.restore(items)
    touch_clock_partitions(engine)
    return stats


def touch_clock_partitions(engine: Engine) -> None:
    """After a restore: start every restored partition's idle timer now.

    `Clock.restore` brings back each partition's newest event time but not when it
    was last seen; a partition that never sends again would then count as active
    forever and hold the watermark back. Observing it with no event starts its idle
    timer, so it stops holding the others back after `idle_timeout`."""
    for ck, clock in engine.clocks.items():
        if ck == ARRIVAL:
            continue
        for p in clock.partitions():
            clock.observe(p, None)


def register_partitions(engine: Engine, stream_of: Any, tps: Iterable[TP]) -> int:
    """Make assigned partitions hold back the watermark of the clocks their stream's
    patterns use, until their first event (or until they are idle).

    Without this, a clock knows a partition only after its first batch: when one
    partition's records come first, the watermark would run ahead and the other
    partition's older (on-time) records would all be late."""
    n = 0
    for t, p in tps:
        stream = stream_of(t)
        cks = {rt.clock_key for rt in engine.runtimes if rt.applies(stream)} - {ARRIVAL}
        for ck in cks:
            clock = engine.clocks[ck]
            if (t, p) not in clock.partitions():
                clock.observe((t, p), _NOT_YET_READ)
                n += 1
    return n


def engine_signature(engine: Engine) -> tuple[Any, ...]:
    """Changes when patterns are added, replaced or removed."""
    return tuple((rt.name, rt.version, rt.draining) for rt in engine.runtimes)

