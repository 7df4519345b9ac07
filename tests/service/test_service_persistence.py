"""Hot-loaded patterns and models come back after a restart (a new app over the same
data directory); deletions and version numbers survive too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_helpers import (
    CARD_TESTING,
    PAIR,
    SCORED,
    T0,
    card_events,
    make_settings,
    manifest,
    model_bytes,
    upload,
)

from cep.errors import ConfigError
from service.service_state import ServiceState

Restart = Callable[..., TestClient]


def patterns(c: TestClient) -> dict[str, tuple[int, str]]:
    return {p["name"]: (p["version"], p["origin"]) for p in c.get("/patterns").json()["patterns"]}


def test_hot_loaded_pattern_and_model_come_back(make_client: Restart, tmp_path: Path) -> None:
    c = make_client()
    data = model_bytes()
    assert c.put("/models/txn_risk", files=upload(data, manifest(data))).status_code == 200
    assert c.put("/patterns/scored", content=SCORED).status_code == 201
    assert c.put("/patterns/pair", content=PAIR % "low").status_code == 201
    assert c.put("/patterns/pair", content=PAIR % "high").status_code == 200
    c.__exit__(None, None, None)
    assert (tmp_path / "var" / "patterns" / "pair.cep").read_text().startswith(
        "# cep-pattern: version=2 origin=api\n")
    assert (tmp_path / "var" / "models" / "txn_risk" / "manifest.json").exists()

    c2 = make_client()
    assert patterns(c2) == {"pair": (2, "api"), "scored": (1, "api")}
    assert c2.get("/patterns/pair").json()["source"] == PAIR % "high"
    assert [m["name"] for m in c2.get("/models").json()["models"]] == ["txn_risk"]
    r = c2.post("/events", json=[{"card_id": "c1", "amount": 5.0, "foreign": False, "ts": T0},
                                 {"card_id": "c2", "ts": T0 + 1}])
    assert r.json()["alerts"] == 1  # the scoring pattern runs with the restored model
    # versions continue
    assert c2.put("/patterns/pair", content=PAIR % "medium").json()["version"] == 3


def test_deleted_file_pattern_stays_deleted(make_client: Restart, tmp_path: Path) -> None:
    (tmp_path / "patterns").mkdir()
    (tmp_path / "patterns" / "card_testing.cep").write_text(CARD_TESTING)
    c = make_client()
    assert patterns(c) == {"card_testing": (1, "file")}
    assert c.delete("/patterns/card_testing").status_code == 200
    c.__exit__(None, None, None)
    c2 = make_client()
    assert patterns(c2) == {}
    assert c2.put("/patterns/card_testing", content=CARD_TESTING).json()["version"] == 2
    c2.__exit__(None, None, None)
    assert patterns(make_client()) == {"card_testing": (2, "api")}


def test_api_upload_wins_over_the_file(make_client: Restart, tmp_path: Path) -> None:
    (tmp_path / "patterns").mkdir()
    (tmp_path / "patterns" / "pair.cep").write_text(PAIR % "low")
    c = make_client()
    c.put("/patterns/pair", content=PAIR % "high")
    c.__exit__(None, None, None)
    c2 = make_client()
    assert patterns(c2) == {"pair": (2, "api")}
    assert "high" in c2.get("/patterns/pair").json()["source"]


def test_a_changed_file_gets_the_next_version(make_client: Restart, tmp_path: Path) -> None:
    (tmp_path / "patterns").mkdir()
    f = tmp_path / "patterns" / "pair.cep"
    f.write_text(PAIR % "low")
    make_client().__exit__(None, None, None)
    assert patterns(make_client()) == {"pair": (1, "file")}  # unchanged: same version
    f.write_text(PAIR % "high")
    assert patterns(make_client()) == {"pair": (2, "file")}
    f.unlink()
    assert patterns(make_client()) == {}
    f.write_text(PAIR % "high")
    assert patterns(make_client()) == {"pair": (3, "file")}


def test_deleted_directory_model_stays_deleted(make_client: Restart, tmp_path: Path) -> None:
    data = model_bytes()
    d = tmp_path / "models" / "txn_risk"
    d.mkdir(parents=True)
    (d / "model.skops").write_bytes(data)
    (d / "manifest.json").write_bytes(manifest(data))
    c = make_client()
    assert [m["name"] for m in c.get("/models").json()["models"]] == ["txn_risk"]
    assert c.delete("/models/txn_risk").status_code == 200
    c.__exit__(None, None, None)
    c2 = make_client()
    assert c2.get("/models").json()["models"] == []
    assert c2.put("/models/txn_risk", files=upload(data, manifest(data))).status_code == 200
    c2.__exit__(None, None, None)
    assert [m["name"] for m in make_client().get("/models").json()["models"]] == ["txn_risk"]


def test_a_foreign_file_in_the_data_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "var" / "patterns"
    d.mkdir(parents=True)
    (d / "x.cep").write_text(CARD_TESTING)
    state = ServiceState(make_settings(tmp_path))
    with pytest.raises(ConfigError, match="not written by the service"):
        state.start()
    state.stop()


def test_restart_with_alerts_in_flight_keeps_serving(make_client: Restart) -> None:
    c = make_client()
    c.put("/patterns/card_testing", content=CARD_TESTING)
    c.post("/events", json=card_events("c1", T0)[:2])
    c.__exit__(None, None, None)
    c2 = make_client()
    # partial matches live in memory in embedded mode: a restart starts them afresh
    r = c2.post("/events", json=[*card_events("c1", T0 + 100_000),
                                 {"card_id": "zz", "ts": T0 + 200_000}])
    assert r.json()["alerts"] == 1


def test_settings_paths(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    assert s.embedded and s.data_dir == tmp_path / "var"
