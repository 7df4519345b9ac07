"""The state codec (cep/runtime/state_codec.py): layout 2 keeps every field and every
shared node and event of a key's state; state written in layout 1 (by cep before
issue 11, in stores and changelog topics) still restores and goes on to the same
alerts."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_file
from cep.runtime.engine import Engine, EngineConfig
from cep.runtime.matcher import INF, Ev, KeyState, Node, Run
from cep.runtime.state_codec import (
    _encode_walk,
    decode_state,
    encode_state,
    has_buffered,
    stored_timer,
)
from cep.state.codec import STATE_PREFIX
from cep.state.rocks import RocksStore
from cep.state.store import MemoryStore, StateStore

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
# checkpoints written by cep main at b03880c, state layout 1 (how: data/make_layout1.py)
LAYOUT1 = json.loads((Path(__file__).parent / "data" / "layout1_checkpoints.json").read_text())
NOW_MS = 1_800_000_000_000


def _shared_state() -> tuple[KeyState, list[tuple[int, Ev]]]:
    """Three runs and a held match sharing path prefixes; a buffered event that is
    also on a path; positions, lets, a float deadline, a timer before it."""
    e1 = Ev(10, 1, {"type": "a", "n": 1, "nested": {"x": [1, 2.5, None]}}, None, ("t", 0, 5))
    e2 = Ev(20, 2, {"type": "b"}, {"total": 3.5}, 7)
    e3 = Ev(30, 3, {"type": "c", "big": 2**70}, None, None)
    root = Node(0, e1, None)
    mid = Node(1, e2, root)
    ks = KeyState(("k", 1))
    ks.runs = [Run(2, Node(1, e3, mid), 10, 1, 30, 3), Run(1, mid, 10, 1, 20, 2),
               Run(0, None, 0, 0, 0, 0)]
    ks.held = [Run(9, Node(2, e3, root), 10, 1, 31, 2)]
    ks.deadline = 1000.5
    ks.scheduled = 900
    buffered = [(40, e3), (41, Ev(35, 4, {"type": "d"}, None, 0))]
    ks.nbuf = 2
    return ks, buffered


def _nodes(n: Node | None) -> list[tuple[int, int, Any]]:
    out = []
    while n is not None:
        out.append((n.stage, n.ev.seq, n.ev.data))
        n = n.prev
    return out


def _runs(runs: list[Run]) -> list[Any]:
    return [(r.state, r.start_ts, r.start_seq, r.time, r.n, _nodes(r.path)) for r in runs]


def test_layout2_round_trip_keeps_fields_and_sharing() -> None:
    ks, buffered = _shared_state()
    blob = encode_state(ks, buffered)
    assert blob.startswith(b"[2,2,")  # layout 2, two buffered events
    got, got_buf = decode_state(("k", 1), blob)
    assert got.key == ("k", 1)
    assert _runs(got.runs) == _runs(ks.runs) == _runs(got.runs)
    assert _runs(got.held) == [(9, 10, 1, 31, 2, [(2, 3, {"type": "c", "big": float(2**70)}),
                                                  (0, 1, ks.runs[0].path.prev.prev.ev.data)])]
    assert (got.deadline, got.scheduled, got.nbuf) == (1000.5, 900, 2)
    assert [(a, e.ts, e.seq, e.lets, e.pos) for a, e in got_buf] == [
        (40, 30, 3, None, None), (41, 35, 4, None, 0)]
    e1 = got.runs[0].path.prev.prev.ev
    assert e1.pos == ("t", 0, 5) and got.runs[0].path.prev.ev.lets == {"total": 3.5}
    # shared nodes and events stay shared: one object each, as before encoding
    assert got.runs[0].path.prev is got.runs[1].path
    assert got.held[0].path.prev is got.runs[1].path.prev
    assert got.runs[0].path.ev is got.held[0].path.ev is got_buf[0][1]
    assert got.runs[2].path is None
    assert has_buffered(blob) and stored_timer(blob) == 900


def test_layout2_without_deadline_or_buffered_events() -> None:
    ks = KeyState("k")
    ks.runs = [Run(1, Node(0, Ev(5, 1, {}, None, 0), None), 5, 1, 5, 1)]
    blob = encode_state(ks, [])
    got, buf = decode_state("k", blob)
    assert (got.deadline, got.scheduled, buf) == (INF, INF, [])
    assert not has_buffered(blob) and stored_timer(blob) == INF


@pytest.mark.parametrize("data", [{"a": 1, "s": "x"}, {"big": 2**70}])
def test_the_one_event_shortcut_writes_the_bytes_of_the_general_encoder(
        data: dict[str, Any]) -> None:
    ks = KeyState("k")
    ks.runs = [Run(3, Node(1, Ev(5, 9, data, {"l": 2}, ("p", 1)), None), 5, 9, 6, 1)]
    ks.deadline, ks.scheduled = 100, 90
    blob = encode_state(ks, [])
    assert blob == _encode_walk(ks, [])
    got, _ = decode_state("k", blob)
    assert _runs(got.runs) == _runs(ks.runs) == [
        (3, 5, 9, 6, 1, [(1, 9, {"big": 2.0**70} if "big" in data else data)])]
    assert got.runs[0].path.ev.pos == ("p", 1) and got.runs[0].path.ev.lets == {"l": 2}


def test_an_unknown_layout_is_an_error_not_an_empty_state() -> None:
    with pytest.raises(ValueError, match="unknown state layout"):
        decode_state("k", b"[3,0,null,null,[],[],[],[],[]]")


def test_layout1_values_decode_like_their_layout2_encoding() -> None:
    """Every state value of the layout-1 checkpoints decodes; re-encoded (layout 2)
    and decoded again it is the same state."""
    n = 0
    for case in LAYOUT1["cases"].values():
        for k64, v64 in case["memory"] + case["evicted"]:
            k, v = base64.b64decode(k64), base64.b64decode(v64)
            if not k.startswith(STATE_PREFIX):
                continue
            assert v.startswith(b"{")  # layout 1
            ks, buf = decode_state("k", v)
            again, buf2 = decode_state("k", encode_state(ks, buf))
            assert _runs(again.runs) == _runs(ks.runs) and _runs(again.held) == _runs(ks.held)
            assert (again.deadline, again.scheduled, again.nbuf) == (
                ks.deadline, ks.scheduled, ks.nbuf)
            assert [(a, e.seq) for a, e in buf2] == [(a, e.seq) for a, e in buf]
            assert has_buffered(v) == bool(buf)
            assert stored_timer(v) == (INF if ks.deadline == INF
                                       else min(ks.deadline, ks.scheduled))
            n += 1
    assert n >= 20


def _records(engine: Engine, batches: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for b in batches:
        out += [a.record for a in engine.process(b).alerts]
    return out + [a.record for a in engine.finish().alerts]


@pytest.mark.parametrize("written", ["memory", "evicted"])
@pytest.mark.parametrize("bound", [None, 1])
@pytest.mark.parametrize("name", sorted(LAYOUT1["cases"]))
def test_a_layout1_checkpoint_restores_to_the_same_alerts(
        name: str, bound: int | None, written: str, tmp_path: Path) -> None:
    """A store holding a checkpoint written by cep before layout 2 (every key in
    memory, or with `max_resident_keys` 1: timer entries) restores into this engine,
    with and without a resident bound, and the rest of the input gives the alerts of
    the uninterrupted run."""
    case = LAYOUT1["cases"][name]
    plans = [compile_pattern(p) for p in load_file(ROOT / "patterns" / f"{name}.cep")]
    lines = (GOLDEN / name / "events.jsonl").read_text().splitlines()
    batches = [[json.loads(ln)] for ln in lines if ln.strip()]
    make: Callable[[], Engine] = lambda: Engine(  # noqa: E731
        plans, EngineConfig(max_resident_keys=bound), now_ms=lambda: NOW_MS)
    want = _records(make(), batches)
    first = make()
    before = []
    for b in batches[:case["cut"]]:
        before += [a.record for a in first.process(b).alerts]
    store: StateStore = RocksStore(tmp_path / "db") if bound else MemoryStore()
    try:
        store.write_batch({base64.b64decode(k): base64.b64decode(v)
                           for k, v in case[written]})
        engine = make()
        engine.use_store(store)
        stats = engine.restore(store.items())
        assert stats["keys"] == sum(1 for k, _ in case[written]
                                    if base64.b64decode(k).startswith(STATE_PREFIX))
        after = _records(engine, batches[case["cut"]:])
        # the next checkpoint rewrites the restored keys it changed in layout 2
        store.write_batch(engine.checkpoint())
        engine.checkpointed()
        assert all(v.startswith(b"[2,") for _, v in store.items(STATE_PREFIX))
    finally:
        store.close()
    assert before + after == want
    assert want  # the case has alerts to compare
