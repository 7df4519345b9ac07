"""`/models`: upload through the safe loader, list, delete; scoring patterns use them."""

from __future__ import annotations

import hashlib
import pickle

import orjson
from fastapi.testclient import TestClient
from service_helpers import SCORED, T0, manifest, model_bytes, upload


def test_upload_list_get_and_score(client: TestClient) -> None:
    data = model_bytes()
    r = client.put("/models/txn_risk", files=upload(data, manifest(data)))
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["name"] == "txn_risk" and info["loaded_version"] == 1
    assert [f["name"] for f in info["features"]] == ["amount", "hour", "foreign"]
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert [m["name"] for m in client.get("/models").json()["models"]] == ["txn_risk"]
    assert client.get("/models/txn_risk").json()["output"] == "proba"
    # a pattern may now score with it
    assert client.put("/patterns/scored", content=SCORED).status_code == 201
    assert client.get("/models/txn_risk").json()["used_by"] == ["scored"]
    r = client.post("/events", json=[
        {"card_id": "c1", "amount": 500.0, "foreign": True, "ts": T0},
        {"card_id": "c2", "amount": 1.0, "foreign": False, "ts": T0 + 1},
    ])
    assert r.json()["alerts"] == 1
    (env,) = client.get("/alerts").json()["alerts"]
    assert 0.0 < env["alert"]["measures"]["risk"] <= 1.0
    # uploading again bumps the loaded version
    r = client.put("/models/txn_risk", files=upload(data, manifest(data, version=2)))
    assert (r.json()["version"], r.json()["loaded_version"]) == (2, 2)


def test_pickles_are_refused_with_the_reason(client: TestClient) -> None:
    data = pickle.dumps({"not": "a model"})
    r = client.put("/models/txn_risk", files=upload(data, manifest(data)))
    assert r.status_code == 422
    assert "pickle" in r.json()["detail"].lower()
    r = client.put("/models/txn_risk", files=upload(
        data, manifest(data, file="model.pkl"), filename="model.pkl"))
    assert r.status_code == 422
    assert "pickle" in r.json()["detail"].lower()
    assert client.get("/models").json()["models"] == []


def test_bad_manifest_sha_and_name(client: TestClient) -> None:
    data = model_bytes()
    r = client.put("/models/txn_risk", files=upload(data, b"{not json"))
    assert r.status_code == 422 and "manifest" in r.json()["detail"]
    r = client.put("/models/txn_risk", files=upload(data, manifest(data, sha256="0" * 64)))
    assert r.status_code == 422 and "sha256" in r.json()["detail"]
    r = client.put("/models/other", files=upload(data, manifest(data)))
    assert r.status_code == 422 and "uploaded as 'other'" in r.json()["detail"]
    r = client.put("/models/txn_risk", files={"model": ("m", data)})
    assert r.status_code == 422  # the manifest part is missing


def test_delete_and_in_use(client: TestClient) -> None:
    data = model_bytes()
    client.put("/models/txn_risk", files=upload(data, manifest(data)))
    client.put("/patterns/scored", content=SCORED)
    r = client.delete("/models/txn_risk")
    assert r.status_code == 409 and "scored@1" in r.json()["detail"]
    # a model whose features no longer fit the pattern is refused too
    other = orjson.loads(manifest(data))
    other["features"] = [{"name": "amount", "type": "float"}, {"name": "hour", "type": "int"},
                         {"name": "abroad", "type": "bool"}]
    r = client.put("/models/txn_risk", files=upload(data, orjson.dumps(other)))
    assert r.status_code == 409
    assert r.json()["diagnostics"][0]["code"] in ("E274", "E275")
    assert client.delete("/patterns/scored").status_code == 200
    assert client.delete("/models/txn_risk").status_code == 200
    assert client.get("/models").json()["models"] == []
    assert client.delete("/models/txn_risk").status_code == 404
    assert client.get("/models/txn_risk").status_code == 404
