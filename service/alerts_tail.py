"""`cep alerts tail`: follow alerts and print them, one JSON object per line.

From the service's server-sent events (`--url`, default http://127.0.0.1:8080): the
filters (`--pattern`, `--key`, `--severity`) are applied by the server; on a broken
connection it reconnects with `Last-Event-ID`, so nothing is missed while the service
keeps the alerts in its recent buffer. With `--kafka BOOTSTRAP` it reads the alert
topic (`--topic`, default cep.alerts; several separated by commas) instead, from its
end, with a throwaway consumer group, and filters itself.

`-n N` exits after N alerts. Status messages go to stderr, alerts to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, TextIO

import httpx
import orjson

from service.api.sse import parse_sse

MAX_BACKOFF_S = 10.0
DEFAULT_RETRIES = 5  # failed connection attempts in a row before giving up


def tail(args: argparse.Namespace) -> int:
    out = sys.stdout
    limit = getattr(args, "limit", None)
    try:
        if getattr(args, "kafka", None):
            return tail_kafka(args, out, limit)
        return tail_sse(args.url, _filters(args), out, limit,
                        retries=getattr(args, "retries", DEFAULT_RETRIES))
    except KeyboardInterrupt:
        return 0


def _filters(args: argparse.Namespace) -> dict[str, str]:
    return {k: v for k in ("pattern", "key", "severity") if (v := getattr(args, k, None))}


def _print(out: TextIO, data: str) -> None:
    out.write(data + "\n")
    out.flush()


def tail_sse(
    url: str,
    filters: dict[str, str],
    out: TextIO,
    limit: int | None = None,
    *,
    last_id: str | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_reconnects: int | None = None,
    retries: int = DEFAULT_RETRIES,
) -> int:
    """Follow `url`/alerts/stream; returns the exit code. After `retries` failed
    connection attempts in a row it gives up (exit 1), naming the URL."""
    shown = 0
    retry_s = 2.0
    failures = 0
    connected = False
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(10.0, read=60.0))
    stream_url = url.rstrip("/") + "/alerts/stream"
    try:
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            try:
                with http.stream("GET", stream_url, params=filters, headers=headers) as r:
                    if r.status_code != 200:
                        r.read()
                        print(f"cep alerts tail: {stream_url}: HTTP {r.status_code}: "
                              f"{r.text[:300]}", file=sys.stderr)
                        if 400 <= r.status_code < 500:
                            return 1
                        raise httpx.TransportError(f"HTTP {r.status_code}")
                    failures = 0
                    if not connected:
                        print(f"cep alerts tail: following {stream_url}", file=sys.stderr)
                        connected = True
                    for ev in parse_sse(r.iter_lines()):
                        if ev.event == "retry" and ev.retry_ms is not None:
                            retry_s = ev.retry_ms / 1000
                        elif ev.event == "alert":
                            last_id = ev.id
                            _print(out, ev.data)
                            shown += 1
                            if limit is not None and shown >= limit:
                                return 0
                        elif ev.event == "gap":
                            print(f"cep alerts tail: alerts were missed (older than the "
                                  f"service's buffer): {ev.data}", file=sys.stderr)
                print("cep alerts tail: the stream ended; reconnecting", file=sys.stderr)
            except httpx.TransportError as err:
                failures += 1
                why = str(err) or type(err).__name__
                if failures > retries:
                    hint = "" if connected else (
                        " -- is `cep serve` running there? (start it, or pass --url)")
                    print(f"cep alerts tail: cannot reach {stream_url}: {why}; gave up after "
                          f"{failures} attempts{hint}", file=sys.stderr)
                    return 1
                print(f"cep alerts tail: cannot reach {stream_url}: {why}; retrying "
                      f"({failures}/{retries})", file=sys.stderr)
            if max_reconnects is not None:
                max_reconnects -= 1
                if max_reconnects < 0:
                    return 1
            sleep(min(MAX_BACKOFF_S, retry_s * max(1, failures)))
    finally:
        if own:
            http.close()


def _matches(rec: Any, filters: dict[str, str]) -> bool:
    from service.api.hub import key_text

    if not isinstance(rec, dict):
        return False
    if "pattern" in filters and rec.get("pattern") != filters["pattern"]:
        return False
    if "severity" in filters and rec.get("severity") != filters["severity"]:
        return False
    return "key" not in filters or key_text(rec.get("key")) == filters["key"]


def tail_kafka(args: argparse.Namespace, out: TextIO, limit: int | None) -> int:
    from confluent_kafka import Consumer, KafkaException

    topics = [t for t in (args.topic or "cep.alerts").split(",") if t]
    filters = _filters(args)
    consumer = Consumer({
        "bootstrap.servers": args.kafka,
        "group.id": f"cep-alerts-tail-{uuid.uuid4().hex[:12]}",
        "auto.offset.reset": "latest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    shown = 0
    try:
        consumer.subscribe(topics)
        print(f"cep alerts tail: following {', '.join(topics)} on {args.kafka}",
              file=sys.stderr)
        while True:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                print(f"cep alerts tail: {err}", file=sys.stderr)
                continue
            value = msg.value()
            try:
                rec = orjson.loads(value or b"")
            except orjson.JSONDecodeError:
                print(f"cep alerts tail: not JSON at {msg.topic()}[{msg.partition()}]@"
                      f"{msg.offset()}", file=sys.stderr)
                continue
            if not _matches(rec, filters):
                continue
            _print(out, orjson.dumps(rec).decode())
            shown += 1
            if limit is not None and shown >= limit:
                return 0
    finally:
        consumer.close()
