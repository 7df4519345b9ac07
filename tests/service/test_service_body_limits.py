"""Bodies bounded before they are read (issue 14, item 5): authentication before the
body, a small limit for open endpoints, POST /events decoded as it arrives, dry-run
answers capped."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from live_server import live_server
from service_helpers import CARD_TESTING, TOKEN, card_events, make_settings

from service.api.app import create_app
from service.embedded.ingest import IncrementalDecoder, decode_body

T0 = 1_763_712_000_000


def _raw(url: str, head: bytes, body: bytes = b"", wait: float = 5.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        s.sendall(head + body)
        s.settimeout(wait)
        out = b""
        t0 = time.monotonic()
        while time.monotonic() - t0 < wait:  # the refusal closes the connection
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def test_protected_endpoint_without_token_is_refused_before_its_body(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, token=TOKEN, max_body_bytes=10_000_000),
                     tick_s=0.05)
    with live_server(app) as url:
        # 9 MB announced, nothing sent: the answer comes at once, from the headers
        for method, path in [("PUT", "/patterns/p"), ("POST", "/events"),
                             ("PUT", "/models/m"), ("DELETE", "/patterns/p"),
                             ("POST", "/patterns/p/rollback")]:
            t0 = time.monotonic()
            out = _raw(url, f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
                            f"Content-Length: 9000000\r\n\r\n".encode())
            assert out.startswith(b"HTTP/1.1 401"), (method, path, out[:100])
            assert time.monotonic() - t0 < 2
        out = _raw(url, b"PUT /patterns/p HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
                        b"Content-Length: 9000000\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 401") and b"wrong API token" in out


def test_open_endpoints_have_small_limits_also_for_chunked_bodies(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=10_000_000)

    def chunks(n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield b"y" * 4096

    r = client.request("GET", "/health", content=b"x" * 20_000)
    assert r.status_code == 413 and "16384 bytes" in r.json()["detail"]
    assert client.request("GET", "/health", content=chunks(10)).status_code == 413
    assert client.request("GET", "/health", content=b"x" * 100).status_code == 200
    for dry_run in ("/patterns/test", "/patterns/backtest"):
        r = client.post(dry_run, content=b"[" + b" " * 4_200_000 + b"]")
        assert r.status_code == 413, dry_run
    r = client.post("/patterns/validate", content=b"#" * 400_000)
    assert r.status_code == 413
    # the token-protected ones keep api.max_body_bytes (no token configured here)
    assert client.post("/events", content=b'{"ts": 1}' + b" " * 100_000).status_code == 200


def test_many_unfinished_bodies_to_health_do_not_grow_memory(tmp_path: Path) -> None:
    """150 connections each announcing a chunked body to GET /health: each is refused
    after the small limit, never read to its end."""
    app = create_app(make_settings(tmp_path), tick_s=0.05)
    with live_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        socks = []
        for _ in range(150):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"x" * 32_768
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            socks.append(s)
        answers = []
        for s in socks:
            s.settimeout(5)
            answers.append(s.recv(100))
            s.close()
    assert all(a.startswith(b"HTTP/1.1 413") for a in answers)


@pytest.mark.parametrize("seed", range(30))
def test_incremental_decoding_equals_decoding_the_whole_body(seed: int) -> None:
    rnd = random.Random(seed)
    lines = []
    for i in range(rnd.randint(0, 12)):
        kind = rnd.random()
        if kind < 0.6:
            lines.append(orjson.dumps({"i": i, "s": "x" * rnd.randint(0, 30)}))
        elif kind < 0.7:
            lines.append(b"")
        elif kind < 0.8:
            lines.append(b"not json")
        elif kind < 0.9:
            lines.append(b"[1, 2]")
        else:
            lines.append(b"  {")
    shape = rnd.random()
    if shape < 0.2:
        body = orjson.dumps([{"a": i} for i in range(5)] + [3])
    elif shape < 0.3:
        body = b'\n{\n  "a": 1,\n  "ts": 2\n}\n'
    else:
        body = b"\n".join(lines) + (b"\n" if rnd.random() < 0.5 else b"")
    dec = IncrementalDecoder(7)
    i = 0
    while i < len(body):
        n = rnd.randint(1, 20)
        dec.feed(body[i:i + n])
        i += n
    got, want = dec.finish(), decode_body(body, 7)
    assert (got.events, got.positions, got.received) == (
        want.events, want.positions, want.received)
    assert [(d.reason, d.position, d.detail) for d in got.dead_letters] == [
        (d.reason, d.position, d.detail) for d in want.dead_letters]


def test_dry_run_answer_is_capped_with_a_count_of_the_rest(
        make_client: Callable[..., TestClient]) -> None:
    from service.config import ApiConfig

    client = make_client(api=ApiConfig(max_body_bytes=1_000_000, max_test_alerts=3))
    events = []
    for i in range(5):
        events += card_events(f"c{i}", T0 + i * 1_000_000, prefix=f"i{i}-")
    events.append({"card_id": "zz", "ts": T0 + 10_000_000})
    r = client.post("/patterns/test", json={"source": CARD_TESTING, "events": events})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["alerts"]) == 3 and body["alerts_omitted"] == 2
    assert body["dead_letters_omitted"] == 0
