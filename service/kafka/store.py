"""The state store layout in Kafka mode, and loading the engine from it.

One RocksDB per partition task (`state_dir/task-<n>`, docs/scale-out.md), raw bytes,
never pickle:

| key                                 | value                              | in changelog |
|-------------------------------------|------------------------------------|--------------|
| `s\\0<pattern>\\0<version>\\0<key>` | a key's runs, held matches, events | yes          |
| `m\\0engine`                        | watermarks, clock partitions, seqs | yes          |
| `t\\0<pattern>\\0<version>\\0<t><key>` | a stored key's timer (eviction) | yes          |
| `o\\0<topic>\\0<partition>`         | next input offset to read (ASCII)  | yes          |
| `c\\0commit`                        | checkpoint marker (ASCII sequence) | yes (last)   |
| `l\\0changelog`                     | next changelog offset (ASCII)      | no (local)   |

Timer entries (`cep/state/codec.py`) exist only with `max_resident_keys`. The first
four kinds are written together, in one WriteBatch, by every checkpoint
(`service/kafka/checkpoint.py`), so state, input offsets and watermarks always agree. The
stored offsets are the source of truth for where to resume; offsets committed to the
consumer group follow them (at-least-once: afterwards; exactly-once: in the same
transaction as the changelog records of the same checkpoint).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from pathlib import Path
from typing import Any

from cep.runtime.engine import Engine
from cep.runtime.records import KeyRoute
from cep.state.codec import META_PREFIX, STATE_PREFIX
from cep.state.store import StateStore

log = logging.getLogger("cep.kafka")

OFFSET_PREFIX = b"o\x00"
LOCAL_PREFIX = b"l\x00"
CHANGELOG_POS_KEY = LOCAL_PREFIX + b"changelog"
# the last record of every task checkpoint in the changelog: a restore applies the
# records before a marker only (at-least-once writes the changelog outside a
# transaction; a crash mid-checkpoint leaves records with no marker after them)
COMMIT_KEY = b"c\x00commit"

TASK_DIR = "task-{}"


def task_dir(state_dir: Path, task: int) -> Path:
    """The RocksDB directory of partition task `task`."""
    return state_dir / TASK_DIR.format(task)

TP = tuple[str, int]


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


def load_engine(engine: Engine, store: StateStore) -> dict[str, int]:
    """Reset the engine and load the store's state into it (restored partitions count
    as just seen: their idle timeout runs from now). The store becomes the engine's:
    with `max_resident_keys`, keys beyond it stay there (read one at a time, never all
    held at once) until their next event or timer."""
    engine.reset()
    engine.use_store(store)
    return engine.restore(chain(store.items(META_PREFIX), store.items(STATE_PREFIX)))


def register_partitions(engine: Engine, stream_of: Callable[[str], str],
                        tps: Iterable[tuple[Any, ...]],
                        route_of: Callable[[str], KeyRoute | None] = lambda t: None) -> int:
    """Make assigned partitions (`(topic, partition, ...)`: a repartition topic's are
    per source partition) hold back the watermark of the clocks their stream's patterns
    use (of a repartitioned stream: the patterns that read the partition's topic,
    `route_of`), until their first event (or until they are idle)."""
    by_topic: dict[str, list[tuple[Any, ...]]] = {}
    for tp in tps:
        by_topic.setdefault(tp[0], []).append(tp)
    return sum(engine.expect_partitions(stream_of(t), ps, route_of(t))
               for t, ps in by_topic.items())
