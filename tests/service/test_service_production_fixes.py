"""Items 7-11 of issue 14's "Why", each with a test that failed before the fix."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from service_helpers import SCORED, T0, manifest, model_bytes, upload

from cep.runtime.engine import Alert
from service.api.hub import AlertHub

Restart = Callable[..., TestClient]

PAIR_LIKE = """\
pattern pair {
  key k
  within 1m
  match a where type == "a" then b where type == "b"
}
"""


def test_embedded_mode_keeps_no_record_of_keys_that_came_and_went(
        make_client: Restart) -> None:
    """Why 7: `PatternRuntime.dirty` grew with every key in embedded mode (only
    checkpoints cleared it, and embedded mode never takes one)."""
    c = make_client()
    assert c.put("/patterns/pair", content=PAIR_LIKE).status_code == 201
    events = [{"k": f"k{i}", "type": t, "ts": T0 + i * 10 + (t == "b")}
              for i in range(2000) for t in ("a", "b")]
    events.append({"k": "flush", "type": "z", "ts": T0 + 10_000_000})
    r = c.post("/events", json=events)
    assert r.status_code == 200 and r.json()["alerts"] == 2000
    engine = c.app.state.service.loop.engine  # type: ignore[attr-defined]
    assert not engine.has_changes()  # no record of changed keys kept for a checkpoint
    assert c.delete("/patterns/pair").status_code == 200
    assert not engine.has_changes()  # nor of keys to delete


def test_deleted_pattern_of_the_directory_is_not_compiled_again_after_restart(
        make_client: Restart, tmp_path: Path) -> None:
    """Why 8: DELETE the pattern, DELETE the model it scores with, restart: the start
    failed with E273 because the deleted pattern's file was checked again."""
    data = model_bytes()
    d = tmp_path / "models" / "txn_risk"
    d.mkdir(parents=True)
    (d / "model.skops").write_bytes(data)
    (d / "manifest.json").write_bytes(manifest(data))
    (tmp_path / "patterns").mkdir()
    (tmp_path / "patterns" / "scored.cep").write_text(SCORED)
    c = make_client()
    assert [p["name"] for p in c.get("/patterns").json()["patterns"]] == ["scored"]
    assert c.delete("/patterns/scored").status_code == 200
    assert c.delete("/models/txn_risk").status_code == 200
    c.__exit__(None, None, None)
    c2 = make_client()  # raised PatternError (E273 unknown model txn_risk) before
    assert c2.get("/patterns").json()["patterns"] == []
    assert c2.get("/ready").status_code == 200


def test_one_large_batch_does_not_cut_off_a_fast_subscriber() -> None:
    """Why 9: a batch of more alerts than `max_pending` closed every SSE stream,
    because the backlog check counted the batch itself."""

    async def run() -> tuple[int, bool]:
        hub = AlertHub(100_000, None, max_pending=10_000)
        sub = hub.subscribe(asyncio.get_running_loop())
        hub.publish([Alert(None, "k", {"pattern": "p", "key": f"k{i}"})
                     for i in range(15_000)])
        await asyncio.sleep(0.05)
        got = await sub.get()
        return (0 if got is None else len(got)), sub.closed

    assert asyncio.run(run()) == (15_000, False)


def test_manifest_file_with_nul_or_bidi_override_is_a_clear_422(make_client: Restart) -> None:
    """Why 10: `"file": "model\\u0000.skops"` gave a 500; a name with a right-to-left
    override (reads as another file name) was accepted."""
    c = make_client()
    data = model_bytes()
    for bad in ("model\u0000.skops", "model\u202espoks.exe", "mod\u200bel.skops",
                "model\n.skops"):
        r = c.put("/models/txn_risk", files=upload(data, manifest(data, file=bad), bad))
        assert r.status_code == 422, (bad, r.status_code, r.text)
        assert "file must be a plain file name" in r.json()["detail"]
    assert c.get("/models").json()["models"] == []
    r = c.put("/models/txn_risk", files=upload(data, manifest(data, file="model-1.skops"),
                                               "model-1.skops"))
    assert r.status_code == 200, r.text
