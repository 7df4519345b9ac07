"""Pieces behind the console: the bundle is built from the committed source, the
dry-run comparison, the recent-input memory and the pattern history."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cep.runtime.records import DeadLetter
from service.dry_run import diff, incidents, per_key, signature
from service.pattern_history import PatternHistory
from service.recent import RecentInput

CONSOLE = Path(__file__).resolve().parents[2] / "service" / "console"


def test_the_committed_bundle_was_built_from_the_committed_source() -> None:
    """`npm run build` writes static/source.sha256 (stamp.mjs); a source change
    committed without rebuilding fails here. Rebuild: docs/console.md."""
    files = ["package.json", "package-lock.json",
             *sorted(f"src/{p.name}" for p in (CONSOLE / "src").glob("*.ts"))]
    h = hashlib.sha256()
    for f in files:
        h.update(f.encode() + b"\0" + (CONSOLE / f).read_bytes() + b"\0")
    assert (CONSOLE / "static" / "source.sha256").read_text().strip() == h.hexdigest()
    assert (CONSOLE / "static" / "console.js").stat().st_size > 100_000


def test_the_bundle_never_sets_inner_html_from_our_code() -> None:
    for ts in (CONSOLE / "src").glob("*.ts"):
        text = ts.read_text()
        assert "innerHTML" not in text and "outerHTML" not in text, ts.name
        assert "insertAdjacentHTML" not in text and "document.write" not in text, ts.name


def alert(key: str, start: int, n: int, pattern: str = "p") -> dict[str, object]:
    return {"pattern": pattern, "kind": "match", "key": key, "alert_id": f"{key}{n}",
            "window": {"start": start, "end": start + n},
            "events": {"a": [{"id": f"{key}{i}", "ts": start + i} for i in range(n)]}}


def test_the_same_detection_is_the_same_key_and_match_start() -> None:
    # a version that needs 3 events instead of 5 finds the same detection on key x
    assert signature(alert("x", 10, 3)) == signature(alert("x", 10, 5))
    assert signature(alert("x", 10, 3)) != signature(alert("x", 11, 3))
    assert signature(alert("x", 10, 3)) != signature(alert("y", 10, 3))
    assert signature(alert("x", 10, 3)) != signature(alert("x", 10, 3, pattern="q"))
    gained, lost = diff([alert("x", 10, 3), alert("y", 20, 3)],
                        [alert("x", 10, 5), alert("z", 30, 5)])
    assert [a["key"] for a in gained] == ["y"]
    assert [a["key"] for a in lost] == ["z"]


def test_per_key_counts_most_first_and_joins_composite_keys() -> None:
    alerts = [alert("b", 1, 1), alert("a", 2, 1), alert("b", 3, 1),
              {"pattern": "p", "key": ["u", "c"]}]
    assert per_key(alerts) == [{"pattern": "p", "key": "b", "alerts": 2},
                               {"pattern": "p", "key": "a", "alerts": 1},
                               {"pattern": "p", "key": "u,c", "alerts": 1}]


def test_incidents_of_the_patterns_under_test_with_their_span() -> None:
    events = [{"id": "1", "ts": 5, "label": "p:1"}, {"id": "2", "ts": 9, "label": "p:1"},
              {"id": "3", "ts": 7, "label": "p:2"}, {"id": "4", "ts": 8, "label": "q:1"},
              {"id": "5", "ts": 1}, "not an object"]
    hit = {"pattern": "p", "events": {"a": [{"id": "2", "ts": 9}]}}  # label looked up by id
    assert incidents(events, "label", "ts", [hit], ["p"]) == [
        {"label": "p:1", "pattern": "p", "start": 5, "end": 9, "detected": True},
        {"label": "p:2", "pattern": "p", "start": 7, "end": 7, "detected": False},
    ]


def test_recent_input_is_bounded_and_keeps_the_newest() -> None:
    r = RecentInput(max_events=3, max_dead=2)
    r.add_events("a", [1, 2])
    r.add_events("b", [3, 4, 5, 6, 7])  # a batch larger than the memory keeps its tail
    assert r.events() == [5, 6, 7] and r.sources() == {"b": 3}
    r.add_events("a", [8])
    assert r.events("b") == [6, 7] and r.events(limit=1) == [8]
    r.add_dead("a", [DeadLetter(b"\xffbad", ("http", 1, 1), "malformed", "not JSON"),
                     DeadLetter({"x": 1}, None, "missing_time"),
                     DeadLetter({"x": 2}, None, "late")])
    dead = r.dead()
    assert [d["reason"] for d in dead] == ["missing_time", "late"]
    assert r.dead("late")[0]["event"] == {"x": 2}
    r.add_dead("a", [DeadLetter(b"\xffbad", None, "malformed")])
    assert r.dead("malformed")[0]["event"] == "\ufffdbad"  # bytes shown as text


def test_pattern_history_keeps_every_version_once(tmp_path: Path) -> None:
    h = PatternHistory(tmp_path / "hist")
    h.record("p", 1, "file", "2026-01-01T00:00:00Z", "pattern p { v1 }")
    h.record("p", 2, "api", "2026-01-02T00:00:00Z", "pattern p { v2 }")
    h.record("p", 1, "api", "2026-01-03T00:00:00Z", "something else")  # never rewritten
    (tmp_path / "hist" / "p" / "junk.cep").write_text("not ours")
    vs = h.versions("p")
    assert [(v.version, v.origin, v.source) for v in vs] == [
        (1, "file", "pattern p { v1 }"), (2, "api", "pattern p { v2 }")]
    got = h.get("p", 2)
    assert got is not None and got.loaded_at == "2026-01-02T00:00:00Z"
    assert h.get("p", 3) is None and h.versions("q") == []
