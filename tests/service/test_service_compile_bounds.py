"""Compile cost of posted pattern text is bounded (issue 14, item 4): nested quantified
groups are refused by the checker (validate says the same), and whatever compiles too
slowly runs out of its budget in a child process while the API keeps answering."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from live_server import live_server
from service_helpers import make_settings

from service.api.app import create_app
from service.config import ApiConfig

BOMB = "pattern risky { from s key k match a then (b{100} then c){100} }"
# under the NFA size limit one by one, slow to compile together
HEAVY = "".join(
    f"pattern p{i} {{ from s key k match a then (b{{1,24}} then c){{1,24}} then d }}\n"
    for i in range(12)
)


def test_bomb_is_refused_by_put_validate_and_test_with_a_position(
        client: TestClient) -> None:
    r = client.post("/patterns/validate", content=BOMB)
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is False
    [d] = [d for d in body["diagnostics"] if d["code"] == "E156"]
    assert (d["line"], d["column"]) == (1, BOMB.index("){100}") + 2)
    r = client.put("/patterns/risky", content=BOMB)
    assert r.status_code == 422 and "E156" in r.text
    r = client.post("/patterns/test", json={"source": BOMB, "events": []})
    assert r.status_code == 422 and "E156" in r.text


def test_compile_over_its_time_bound_is_refused_and_health_keeps_answering(
        tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api=ApiConfig(max_body_bytes=1_000_000,
                                                     compile_timeout_s=1.0))
    app = create_app(settings, tick_s=0.05)
    with live_server(app) as url:
        result: dict[str, httpx.Response] = {}

        def post() -> None:
            result["r"] = httpx.post(f"{url}/patterns/validate", content=HEAVY, timeout=60)

        t = threading.Thread(target=post)
        t0 = time.monotonic()
        t.start()
        health = []
        while t.is_alive():
            h0 = time.monotonic()
            health.append((httpx.get(f"{url}/health", timeout=5).status_code,
                           time.monotonic() - h0))
            time.sleep(0.1)
        t.join()
        elapsed = time.monotonic() - t0
    r = result["r"]
    assert r.status_code == 200
    assert r.json()["ok"] is False
    assert [d["code"] for d in r.json()["diagnostics"]] == ["E902"]
    assert elapsed < 5
    assert health and all(code == 200 and dt < 1 for code, dt in health)
