"""State larger than memory: one pattern version's keys beyond a resident bound leave
Python memory for the state store and come back on their next event or timer.

Private to `cep.runtime` (docs/engine.md, "State larger than memory"). An LRU over the
store, like Kafka Streams' record cache over RocksDB, with one difference: the store is
written only by checkpoints (state, input offsets and watermarks in one batch), so an
evicted key that changed since the last checkpoint cannot go to the store yet. It is
kept as its encoded bytes (`spilled`, a few hundred bytes instead of its objects) until
the next checkpoint writes it; after that it is only in the store.

A key is in exactly one place:

- resident: `PatternRuntime.states` (an `OrderedDict`, least recently changed first);
- spilled: `spilled[key]`, its encoded state, changed since the last checkpoint;
- stored: only in the store (not in `dirty`: the store holds its current state);
- gone: in `dirty` but neither resident nor spilled (the next checkpoint deletes it).

Keys with events waiting for the watermark (`nbuf > 0`) stay resident.

Timers. Every key written by a checkpoint with a pending deadline also gets a timer
entry in the store (`cep.state.codec.timer_key`: time, then key, so they sort in time
order) at the time its timer stands (`timer_at`: its `scheduled` time, which can be
before its deadline and orders the outputs of keys firing in one watermark step; the
state codec keeps it, so a key loaded back fires where it would have).
A window-only pattern's expiry queue (key states, not keys) is not used with eviction:
its timers go through the heap, which fires them the same way. The in-memory timer
heap keeps entries for resident and spilled keys; entries of keys that are only in
the store are dropped from it when it grows (`compact`). As the watermark passes,
`scan` reads the store's entries up to it and pushes them onto the heap, where the
engine's usual check (`ks.scheduled == time`, after loading the key) fires each once,
in the same (time, key) order as without eviction, or skips it when it is stale (the
key's timer moved or the key is gone).
Every entry scanned is deleted by the next checkpoint, so the store holds no entry at
or before the last watermark a checkpoint saw.
"""

from __future__ import annotations

import ctypes
import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from cep.runtime.matcher import INF, KeyState
from cep.runtime.pattern_runtime import timer_tie
from cep.runtime.state_codec import (
    decode_state,
    encode_state,
    has_buffered,
    parse_state_key,
    stored_timer,
)
from cep.state.codec import (
    TIMER_BIAS,
    deadline_value,
    key_json,
    parse_timer_key,
    state_prefix,
    timer_key,
    timer_prefix,
    timer_time,
)
from cep.state.store import StateStore

if TYPE_CHECKING:
    from cep.runtime.pattern_runtime import PatternRuntime

# the heap is compacted when it holds this many more timers than twice the keys in
# memory (resident or spilled)
HEAP_SLACK = 4096


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Give the C heap's free pages back to the OS. Evicted keys' objects are freed,
    but glibc keeps the freed pages resident (measured: 300k keys with 10k resident
    held 618 MB of RSS, 201 MB after `malloc_trim`), so the process would not shrink
    to what it holds. Called after a checkpoint has released evicted keys' bytes."""
    if _TRIM is not None:
        _TRIM(0)


def timer_at(ks: KeyState) -> float:
    """Where a key's timer stands: its `scheduled` time, which may be before its
    deadline (a timer is not moved when the deadline moves later) and orders the
    outputs of keys firing in the same watermark step; INF without a deadline."""
    return INF if ks.deadline == INF else min(ks.scheduled, ks.deadline)


class Eviction:
    """One pattern version's bound on resident keys, over one state store."""

    __slots__ = ("bound", "cursor", "index_puts", "lru", "rt", "scanned", "spilled",
                 "state_pfx", "store", "timer_pfx")

    def __init__(self, rt: PatternRuntime, store: StateStore, bound: int) -> None:
        self.rt = rt
        self.store = store
        self.bound = max(1, bound)
        self.lru: OrderedDict[Any, KeyState] = OrderedDict(rt.states)
        rt.states = self.lru
        if rt.queue is not None:
            # A window-only pattern's timer queue holds key states, which would keep
            # evicted keys in memory and miss their timers: with eviction its timers
            # are the heap's (keys, not states), which fires them the same way.
            rt.queue = rt.matcher.queue = None
            for key, ks in self.lru.items():
                if ks.deadline < INF:
                    ks.scheduled = ks.deadline
                    heapq.heappush(rt.timers, (ks.deadline, timer_tie(key), key))
        self.spilled: dict[Any, tuple[bytes, float]] = {}  # key -> (state, timer_at)
        self.timer_pfx = timer_prefix(rt.name, rt.version)
        self.state_pfx = state_prefix(rt.name, rt.version)
        self.cursor = -INF  # store timers with a deadline <= cursor were scanned
        self.scanned: list[bytes] = []  # timer entries scanned: deleted at checkpoint
        # timer entries of a store written without them (restore): put at checkpoint
        self.index_puts: dict[bytes, bytes] = {}

    # -- keys

    def get(self, key: Any) -> KeyState | None:
        """A key's state, loaded back into memory when it was evicted."""
        ks = self.lru.get(key)
        if ks is not None:
            return ks
        return self.load(key)

    def load(self, key: Any) -> KeyState | None:
        rt = self.rt
        spilled = self.spilled.pop(key, None)
        if spilled is not None:
            blob: bytes | None = spilled[0]
        elif key in rt.dirty:
            return None  # gone since the last checkpoint (the store has it still)
        else:
            blob = self.store.get(self.state_pfx + key_json(key))
        if blob is None:
            return None
        ks, buffered = decode_state(key, blob)
        rt.stats["keys_loaded"] += 1
        rt.load_key(key, ks, buffered)
        return ks

    def touch(self, key: Any) -> None:
        """The key changed: it becomes the most recently used."""
        if key in self.lru:
            self.lru.move_to_end(key)

    def forget(self, key: Any) -> bool:
        """Drop one key wherever it is (the caller marks it dirty)."""
        found = self.spilled.pop(key, None) is not None
        if not found and key not in self.lru and key not in self.rt.dirty:
            found = self.store.get(self.state_pfx + key_json(key)) is not None
        return found

    def evict(self) -> int:
        """Move the least recently changed keys out of memory until at most `bound`
        remain (keys with buffered events stay). Returns how many left."""
        lru = self.lru
        over = len(lru) - self.bound
        if over <= 0:
            return 0
        rt = self.rt
        dirty = rt.dirty
        busy: list[tuple[Any, KeyState]] = []
        n = 0
        for _ in range(len(lru)):
            if n >= over:
                break
            key, ks = lru.popitem(last=False)
            if ks.nbuf:
                busy.append((key, ks))
                continue
            if key in dirty:
                self.spilled[key] = (encode_state(ks, []), timer_at(ks))
            n += 1
        for key, ks in busy:
            lru[key] = ks
        rt.stats["keys_evicted"] += n
        self.compact()
        return n

    def compact(self) -> None:
        """Drop heap timers of keys that are only in the store (the store's timer
        entries stand for them), once they outnumber the others."""
        timers = self.rt.timers
        if self.index_puts or len(timers) <= 2 * (len(self.lru) + len(self.spilled)) + HEAP_SLACK:
            return
        lru, spilled = self.lru, self.spilled
        timers[:] = [e for e in timers if e[2] in lru or e[2] in spilled]
        heapq.heapify(timers)

    # -- timers

    def scan(self, watermark: float) -> None:
        """Push the store's timer entries with cursor < deadline <= watermark onto the
        heap (the engine's timer loop then fires or skips each)."""
        if watermark <= self.cursor:
            return
        cursor = self.cursor
        pfx = self.timer_pfx
        start = None if cursor == -INF else pfx + timer_time(cursor)
        timers = self.rt.timers
        for k, v in self.store.items(pfx, start):
            floor, key = parse_timer_key(pfx, k)
            if floor > watermark:
                break
            d = orjson.loads(v)
            if d <= cursor or d > watermark:
                continue
            heapq.heappush(timers, (d, timer_tie(key), key))
            self.scanned.append(k)
        self.cursor = watermark

    # -- checkpoints

    def checkpoint(self, puts: dict[bytes, bytes | None],
                   buffered: dict[Any, list[Any]]) -> set[Any]:
        """Add this pattern version's changes to `puts`; the keys taken."""
        rt = self.rt
        tpfx, spfx = self.timer_pfx, self.state_pfx
        for k in self.scanned:
            puts[k] = None
        puts.update(self.index_puts)
        lru, spilled, dirty = rt.states, self.spilled, rt.dirty
        waiting = buffered.get
        # the resident keys that changed, in LRU order when most did (memory order:
        # see `in_memory_order`); then the spilled ones in the order they left
        if len(dirty) >= len(lru):
            resident = [k for k in lru if k in dirty]
        else:
            resident = [k for k in dirty if k in lru]
        bias = TIMER_BIAS
        for key in resident:
            ks = lru[key]
            kj = key_json(key)
            puts[spfx + kj] = encode_state(ks, waiting(key, ()))
            d = ks.deadline
            if d < INF:
                d = min(ks.scheduled, d)  # timer_at(ks)
                # timer_key(...) and deadline_value(d), inline: 2 calls per key less
                puts[tpfx + (int(d // 1) + bias).to_bytes(8, "big") + kj] = str(d).encode()
        n = len(resident)
        for key, (blob, d) in spilled.items():
            if key in dirty:  # (always: only changed keys are spilled)
                n += 1
                kj = key_json(key)
                puts[spfx + kj] = blob
                if d < INF:
                    puts[tpfx + (int(d // 1) + bias).to_bytes(8, "big") + kj] = str(d).encode()
        if n < len(dirty):  # gone since the last checkpoint: deleted
            for key in dirty:
                if key not in lru and key not in spilled:
                    puts[spfx + key_json(key)] = None
        return set(rt.dirty)

    def checkpointed(self, keys: set[Any], scanned: int, index: int) -> int:
        """The puts of `checkpoint` are durable; how many spilled keys were released."""
        spilled = self.spilled
        n = len(spilled)
        for key in keys:
            spilled.pop(key, None)
        del self.scanned[:scanned]
        if index:
            self.index_puts.clear()
        return n - len(spilled)

    def restored(self, key: Any, blob: bytes, indexed: bool) -> bool:
        """Restore one stored key: load it (True) while under the bound or when it has
        buffered events; else leave it in the store. For a store written without
        timer entries (`indexed` False) the key's timer entry is written by the next
        checkpoint and, until then, kept on the heap."""
        if len(self.lru) < self.bound or has_buffered(blob):
            ks, buffered = decode_state(key, blob)
            self.rt.load_key(key, ks, buffered)
            d = timer_at(ks)
            if not indexed and d < INF:
                self.index_puts[timer_key(self.timer_pfx, d, key)] = deadline_value(d)
            return True
        if not indexed:
            d = stored_timer(blob)
            if d < INF:
                self.index_puts[timer_key(self.timer_pfx, d, key)] = deadline_value(d)
                heapq.heappush(self.rt.timers, (d, timer_tie(key), key))
        return False

    def stored_entries(self) -> Iterable[bytes]:
        """Every store key of this pattern version (its state and timer entries)."""
        for pfx in (self.state_pfx, self.timer_pfx):
            for k, _ in self.store.items(pfx):
                yield k

    def idle(self) -> bool:
        """No key spilled or stored (beyond those the next checkpoint deletes)."""
        if self.spilled:
            return False
        rt = self.rt
        return all(parse_state_key(k)[2] in rt.dirty for k, _ in self.store.items(self.state_pfx))

    def clear(self) -> None:
        self.spilled.clear()
        self.scanned.clear()
        self.index_puts.clear()
        self.cursor = -INF
