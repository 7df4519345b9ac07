"""State larger than memory (docs/engine.md): with `max_resident_keys` and a store,
keys beyond the bound leave Python memory and come back on their next event or timer.
Eviction must never change an alert: the golden inputs and the FlinkCEP corpus give
the same alerts, in the same order, with a resident bound of one key as without a
store; a restart from a store with evicted keys too; and each task evicts into its own
store."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_file, load_source
from cep.runtime import eviction
from cep.runtime.engine import Batch, Engine, EngineConfig
from cep.runtime.matcher import INF
from cep.runtime.state_codec import stored_timer
from cep.state import rocks
from cep.state.codec import STATE_PREFIX, TIMER_PREFIX
from cep.state.rocks import RocksStore
from cep.state.store import MemoryStore, StateStore

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
NAMES = sorted(d.name for d in GOLDEN.iterdir() if (d / "expected.json").is_file())
NOW_MS = 1_800_000_000_000


SLOW = """pattern slow {
  key k
  within 10s
  match a where type == "a" then b where type == "b"
  emit {} on timeout emit {}
}
"""


def golden_events(name: str) -> list[dict[str, Any]]:
    lines = (GOLDEN / name / "events.jsonl").read_text().splitlines()
    return [json.loads(ln) for ln in lines if ln.strip()]


def plans(name: str) -> list[Any]:
    return [compile_pattern(p) for p in load_file(ROOT / "patterns" / f"{name}.cep")]


def checkpoint(engine: Engine, store: StateStore) -> None:
    store.write_batch(engine.checkpoint())
    engine.checkpointed()


def run(make: Callable[[], Engine], batches: Sequence[list[dict[str, Any]]],
        store: StateStore | None = None, every: int = 1) -> list[dict[str, Any]]:
    """Alert records of the batches then finish(); with a store, a checkpoint after
    every `every` batches (0: never)."""
    engine = make()
    if store is not None:
        engine.use_store(store)
    return go_on(engine, batches, store, every)


def go_on(engine: Engine, batches: Sequence[list[dict[str, Any]]],
          store: StateStore | None = None, every: int = 1) -> list[dict[str, Any]]:
    """`run` with an engine already made (e.g. restored from `store`)."""
    out = []
    for i, batch in enumerate(batches):
        out += [a.record for a in engine.process(batch).alerts]
        if store is not None and every and i % every == every - 1:
            checkpoint(engine, store)
    out += [a.record for a in engine.finish().alerts]
    return out


def golden_engine(name: str, bound: int | None) -> Callable[[], Engine]:
    return lambda: Engine(plans(name), EngineConfig(max_resident_keys=bound),
                          now_ms=lambda: NOW_MS)


def resident(engine: Engine) -> int:
    return sum(p.keys for p in engine.snapshot().patterns)


@pytest.mark.parametrize("every", [1, 3, 0])
@pytest.mark.parametrize("name", NAMES)
def test_golden_alerts_are_identical_with_one_resident_key(
        name: str, every: int, tmp_path: Path) -> None:
    events = golden_events(name)
    batches = [[e] for e in events]
    want = run(golden_engine(name, None), batches)  # tests/golden checks these
    assert len(want) == len(json.loads((GOLDEN / name / "expected.json").read_text()))
    store = RocksStore(tmp_path / "db")
    try:
        got = run(golden_engine(name, 1), batches, store, every)
    finally:
        store.close()
    assert got == want


def test_keys_leave_memory_and_come_back(tmp_path: Path) -> None:
    """impossible_travel over many cards: at most the bound stays resident, the others
    are in the store (after a checkpoint) and come back for their second event."""
    (pat,) = load_file(ROOT / "patterns" / "impossible_travel.cep")
    plan = compile_pattern(pat)
    t0 = 1_763_712_000_000
    first = [{"id": f"a{i}", "ts": t0 + i, "type": "purchase", "card_id": f"c{i}",
              "channel": "pos", "country": "FR", "lat": 48.8, "lon": 2.3, "amount": 10,
              "status": "approved", "home_country": "FR"} for i in range(50)]
    second = [{**e, "id": f"b{i}", "ts": t0 + 60_000 + i, "country": "JP", "lat": 35.7,
               "lon": 139.7} for i, e in enumerate(first)]
    batches = [first[i:i + 10] for i in range(0, 50, 10)] + [second]

    def make(bound: int | None) -> Engine:
        return Engine([plan], EngineConfig(max_resident_keys=bound), now_ms=lambda: NOW_MS)

    want = run(lambda: make(None), batches)
    assert len(want) == 50
    store = RocksStore(tmp_path / "db")
    try:
        engine = make(5)
        engine.use_store(store)
        got = []
        for b in batches[:-1]:
            got += [a.record for a in engine.process(b).alerts]
            checkpoint(engine, store)
            assert resident(engine) == 5
        stats = engine.snapshot().patterns[0].stats
        assert stats["keys_evicted"] == 45
        assert sum(1 for _ in store.items(STATE_PREFIX)) == 50
        # one timer entry per stored key with a window (the newest event still waits
        # for the watermark: its key has none yet)
        timed = sum(1 for _, v in store.items(STATE_PREFIX) if stored_timer(v) < INF)
        assert timed >= 45
        assert sum(1 for _ in store.items(TIMER_PREFIX)) == timed
        got += [a.record for a in engine.process(batches[-1]).alerts]
        got += [a.record for a in engine.finish().alerts]
        assert engine.snapshot().patterns[0].stats["keys_loaded"] == 45
        checkpoint(engine, store)
        assert list(store.items(STATE_PREFIX)) == []  # every key finished and was deleted
        assert list(store.items(TIMER_PREFIX)) == []  # every timer entry was scanned
    finally:
        store.close()
    assert got == want


@pytest.mark.parametrize("slack", [4096, 0])
def test_an_evicted_keys_window_fires_at_the_same_watermark(
        slack: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`on timeout emit` of keys that are only in the store: the store's timer entries
    fire them at the right watermark, in the same order, with the same alerts (slack
    0: the heap forgets the timers of keys only in the store at once, so they come
    from the store's timer entries alone)."""
    monkeypatch.setattr(eviction, "HEAP_SLACK", slack)
    plan = compile_pattern(load_source(SLOW)[0])
    evs = [{"ts": 1000 * i, "k": f"k{i % 7}", "type": "a" if i < 14 else "b"}
           for i in range(30)]
    batches = [[e] for e in evs] + [[{"ts": 100_000, "k": "other", "type": "x"}]]

    def make(bound: int | None) -> Engine:
        return Engine([plan], EngineConfig(max_resident_keys=bound), now_ms=lambda: 0)

    want = run(lambda: make(None), batches)
    assert any(r["kind"] == "timeout" for r in want)
    for every in (1, 2, 0):
        store = MemoryStore()
        assert run(lambda: make(1), batches, store, every) == want
        if every:
            assert not [k for k, _ in store.items(TIMER_PREFIX)]


@pytest.mark.parametrize("bulk", [False, True])
@pytest.mark.parametrize("name", ["impossible_travel", "card_testing", "unpaid_order"])
def test_restart_from_a_store_with_evicted_keys(name: str, bulk: bool, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Half the input, a checkpoint, the process gone; a new engine restores from the
    store (most keys stay there) and reads the rest: the alerts of the uninterrupted
    run. (`bulk`: every checkpoint is written as an ingested table file.)"""
    if bulk:
        monkeypatch.setattr(rocks, "BULK_PUTS", 1)
    events = golden_events(name)
    batches = [[e] for e in events]
    want = run(golden_engine(name, None), batches)
    cut = len(batches) // 2
    got: list[dict[str, Any]] = []
    store = RocksStore(tmp_path / "db")
    try:
        engine = golden_engine(name, 1)()
        engine.use_store(store)
        for b in batches[:cut]:
            got += [a.record for a in engine.process(b).alerts]
        checkpoint(engine, store)
    finally:
        store.close()
    del engine
    store = RocksStore(tmp_path / "db")
    try:
        engine = golden_engine(name, 1)()
        engine.use_store(store)
        stats = engine.restore(store.items())
        assert stats["keys"] >= 1
        if name == "impossible_travel":  # two keys left in the store, read when needed
            assert stats["keys_in_store"] == 2
        got += go_on(engine, batches[cut:], store)
    finally:
        store.close()
    assert got == want


def test_timeouts_of_keys_left_in_the_store_by_a_restart(tmp_path: Path) -> None:
    """Keys restored into the store only (beyond the bound) time out from the store's
    timer entries, at the same watermark as without a restart."""
    plan = compile_pattern(load_source(SLOW)[0])
    first = [[{"ts": 1000 * i, "k": f"k{i}", "type": "a"}] for i in range(8)]
    rest = [[{"ts": 10_500, "k": "k1", "type": "b"}], [{"ts": 13_000, "k": "z", "type": "x"}],
            [{"ts": 16_500, "k": "z", "type": "x"}], [{"ts": 60_000, "k": "z", "type": "x"}]]

    def make(bound: int | None) -> Engine:
        return Engine([plan], EngineConfig(max_resident_keys=bound), now_ms=lambda: 0)

    want = run(lambda: make(None), first + rest)
    assert sum(r["kind"] == "timeout" for r in want) == 7
    store = RocksStore(tmp_path / "db")
    try:
        got: list[dict[str, Any]] = []
        engine = make(1)
        engine.use_store(store)
        for b in first:
            got += [a.record for a in engine.process(b).alerts]
        checkpoint(engine, store)
        engine = make(1)  # a new process
        engine.use_store(store)
        engine.reset()
        stats = engine.restore(store.items())
        assert stats["keys_in_store"] == 6
        assert resident(engine) == 2
        got += go_on(engine, rest, store)
    finally:
        store.close()
    assert got == want


def test_restore_of_a_store_written_without_timer_entries(tmp_path: Path) -> None:
    """A store written with every key in memory (no timer entries) restored with a
    bound: the keys left in the store still time out, and the next checkpoint writes
    their timer entries."""
    plan = compile_pattern(load_source(SLOW)[0])
    evs = [[{"ts": 1000 * i, "k": f"k{i}", "type": "a"}] for i in range(6)]
    tail = [[{"ts": 50_000, "k": "z", "type": "x"}]]

    def make(bound: int | None) -> Engine:
        return Engine([plan], EngineConfig(max_resident_keys=bound), now_ms=lambda: 0)

    want = run(lambda: make(None), evs + tail)
    assert len(want) == 6
    store = MemoryStore()
    plain = make(None)
    plain.use_store(store)  # no bound: no eviction, no timer entries
    for b in evs:
        plain.process(b)
    checkpoint(plain, store)
    assert not list(store.items(TIMER_PREFIX))
    engine = make(2)
    engine.use_store(store)
    stats = engine.restore(store.items())
    # two under the bound and the newest (its event waits for the watermark) loaded
    assert stats["keys_in_store"] == 3
    checkpoint(engine, store)
    assert len(list(store.items(TIMER_PREFIX))) == 5
    got = [a.record for a in engine.process(tail[0]).alerts]
    got += [a.record for a in engine.finish().alerts]
    assert got == want


def test_each_task_evicts_into_its_own_store(tmp_path: Path) -> None:
    (pat,) = load_file(ROOT / "patterns" / "impossible_travel.cep")
    plan = compile_pattern(pat)
    t0 = 1_763_712_000_000
    engine = Engine([plan], EngineConfig(max_resident_keys=2), now_ms=lambda: NOW_MS)
    stores = {t: RocksStore(tmp_path / f"task-{t}") for t in (0, 1)}
    try:
        for t, store in stores.items():
            engine.open_task(t).use_store(store)
        for t in (0, 1):
            evs = [{"id": f"{t}-{i}", "ts": t0 + i, "type": "purchase",
                    "card_id": f"t{t}-c{i}", "channel": "pos", "country": "FR", "lat": 48.8,
                    "lon": 2.3, "amount": 10, "status": "approved", "home_country": "FR"}
                   for i in range(10)]
            engine.process(Batch(evs, [("tx", t, i) for i in range(10)], partition=t,
                                 task=t))
        for t, store in stores.items():
            checkpoint(engine.task(t), store)
            keys = [k.decode(errors="replace") for k, _ in store.items(STATE_PREFIX)]
            assert len(keys) == 10
            assert all(f'"t{t}-c' in k for k in keys)  # only its own task's keys
            assert resident(engine.task(t)) == 2
    finally:
        for store in stores.values():
            store.close()


def _corpus() -> list[dict[str, Any]]:
    path = ROOT / "tests" / "flink" / "corpus.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def test_flink_corpus_alerts_are_identical_with_one_resident_key() -> None:
    """Every FlinkCEP corpus case (tests/flink), fed in its batches, with one resident
    key and a checkpoint after every batch: the same alert records in the same order
    as without a store."""
    from tests.flink.flinkdiff import to_cep

    differ = []
    evicted = 0
    for case in _corpus():
        try:
            (pat,) = load_source(to_cep(case))
        except Exception:
            continue
        plan = compile_pattern(pat)
        evs = [{**e, "i": i} for i, e in enumerate(case["events"])]
        batches = []
        start = 0
        for end in case["batches"]:
            batches.append(evs[start:end])
            start = end

        def make(bound: int | None, plan: Any = plan, case: dict[str, Any] = case) -> Engine:
            cfg = EngineConfig(max_out_of_orderness_ms=case.get("ooo", 0),
                               max_resident_keys=bound)
            return Engine([plan], cfg, now_ms=lambda: 0)

        want = run(lambda: make(None), batches)
        store = MemoryStore()
        got = run(lambda: make(1), batches, store, 1)
        if got != want:
            differ.append(case["id"])
        evicted += len({e["k"] for e in case["events"]}) > 1
    assert not differ, differ[:10]
    assert evicted > 100  # cases with two keys: one of them was evicted


def test_has_buffered_reads_the_top_level_field_only() -> None:
    """A restore leaves a key in the store only when it holds no buffered events; an
    event with a field named `buf` must not fool the check."""
    from cep.runtime.matcher import Ev, KeyState, Node, Run
    from cep.runtime.state_codec import encode_state, has_buffered

    ev = Ev(5, 1, {"buf": [], "x": '"buf":[]'}, None, 0)
    ks = KeyState("k")
    ks.runs = [Run(1, Node(0, ev, None), 5, 1, 5, 1)]
    assert not has_buffered(encode_state(ks, []))
    ks.nbuf = 1
    assert has_buffered(encode_state(ks, [(7, Ev(6, 0, {"buf": []}, None, 1))]))
    assert has_buffered(b'{"other":"layout"}')
