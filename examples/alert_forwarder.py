"""An alert consumer application: follow `cep serve`'s alert stream and forward each
alert to a case file (JSONL) or a webhook, at least once, without duplicates.

    python examples/alert_forwarder.py --url http://127.0.0.1:8080 --out cases.jsonl
    python examples/alert_forwarder.py --webhook https://cases.example/api/alerts \\
        --severity high --state-dir var/forwarder

How it stays exact across crashes and restarts (its own and the service's):

1. it follows `GET /alerts/stream` (server-sent events) and, when it (re)connects,
   sends the id of the last alert it handled as `Last-Event-ID`; the service replays
   what it still has in its recent-alerts buffer after that id;
2. per alert, in this order: forward it (append + fsync to the case file, or POST to
   the webhook and retry until it answers 2xx) -> record its `alert_id` in
   `STATE_DIR/seen.txt` (append + fsync) -> save the event id in
   `STATE_DIR/last_event_id`;
3. an alert whose `alert_id` was seen already is skipped. `alert_id` is a hash of the
   pattern, its version, the key and the matched events: the same incident replayed
   (after a restart of the service, whose stream ids start again at 1, or after a
   reconnect) has the same id.

A crash between steps 2a and 2b forwards that alert again after the restart: at least
once, and at most once more. The webhook side can deduplicate on `alert_id` too.

Only `httpx` is needed; this file does not import the `cep` package.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

try:
    import orjson

    def loads(s: str) -> Any:
        return orjson.loads(s)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover - plain json works as well
    import json

    def loads(s: str) -> Any:
        return json.loads(s)

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


# ---------------------------------------------------------------- server-sent events


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str, str | None]]:
    """(event, data, id) for each event of a text/event-stream."""
    event, data, last_id = "", [], None
    for line in lines:
        if line == "":
            if data:
                yield event or "message", "\n".join(data), last_id
            event, data = "", []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            elif field == "id":
                last_id = value


# ---------------------------------------------------------------- durable state


class State:
    """The ids of forwarded alerts and the last stream id, in `directory`."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.seen_path = directory / "seen.txt"
        self.last_path = directory / "last_event_id"
        self.seen: set[str] = set()
        if self.seen_path.exists():
            self.seen = {x for x in self.seen_path.read_text().split() if x}
        self.last_event_id = (self.last_path.read_text().strip() or None
                              if self.last_path.exists() else None)
        self._seen_file = open(self.seen_path, "a")  # noqa: SIM115 - closed in close()

    def mark(self, alert_id: str) -> None:
        self._seen_file.write(alert_id + "\n")
        self._seen_file.flush()
        os.fsync(self._seen_file.fileno())
        self.seen.add(alert_id)

    def save_position(self, event_id: str) -> None:
        tmp = self.last_path.with_suffix(".tmp")
        tmp.write_text(event_id)
        os.replace(tmp, self.last_path)
        self.last_event_id = event_id

    def close(self) -> None:
        self._seen_file.close()


# ---------------------------------------------------------------- destinations


class CaseFile:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "ab")  # noqa: SIM115 - closed in close()

    def __call__(self, alert: dict[str, Any]) -> None:
        self._f.write(dumps(alert) + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


class Webhook:
    def __init__(self, url: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url
        self.client = httpx.Client(timeout=10)
        self.sleep = sleep

    def __call__(self, alert: dict[str, Any]) -> None:
        delay = 0.5
        while True:  # at least once: retry until the receiver took it
            try:
                r = self.client.post(self.url, content=dumps(alert),
                                     headers={"content-type": "application/json",
                                              "idempotency-key": alert["alert_id"]})
                if r.is_success:
                    return
                print(f"forwarder: webhook answered {r.status_code}; retrying",
                      file=sys.stderr)
            except httpx.TransportError as err:
                print(f"forwarder: webhook: {err}; retrying", file=sys.stderr)
            self.sleep(delay)
            delay = min(delay * 2, 30.0)

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------- the loop


def forward(
    url: str,
    state: State,
    deliver: Callable[[dict[str, Any]], None],
    *,
    filters: dict[str, str] | None = None,
    token: str | None = None,
    max_alerts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Follow the stream until `max_alerts` new alerts were forwarded (or forever).
    Returns the number forwarded."""
    forwarded = 0
    backoff = 1.0
    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(timeout=httpx.Timeout(10.0, read=60.0)) as http:
        while True:
            if state.last_event_id is not None:
                headers["Last-Event-ID"] = state.last_event_id
            try:
                with http.stream("GET", url.rstrip("/") + "/alerts/stream",
                                 params=filters or {}, headers=headers) as r:
                    r.raise_for_status()
                    backoff = 1.0
                    for event, data, event_id in sse_events(r.iter_lines()):
                        if event == "gap":
                            print(f"forwarder: the service no longer had some alerts: "
                                  f"{data}", file=sys.stderr)
                            continue
                        if event != "alert" or event_id is None:
                            continue
                        alert = loads(data)
                        if alert["alert_id"] not in state.seen:
                            deliver(alert)
                            state.mark(alert["alert_id"])
                            forwarded += 1
                        state.save_position(event_id)
                        if max_alerts is not None and forwarded >= max_alerts:
                            return forwarded
            except (httpx.TransportError, httpx.HTTPStatusError) as err:
                print(f"forwarder: {err}; reconnecting in {backoff:.0f}s", file=sys.stderr)
            sleep(backoff)
            backoff = min(backoff * 2, 30.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="the cep service")
    dest = ap.add_mutually_exclusive_group()
    dest.add_argument("--out", default="cases.jsonl", help="case file (JSONL)")
    dest.add_argument("--webhook", help="POST each alert (JSON) to this URL instead")
    ap.add_argument("--state-dir", default=".alert-forwarder",
                    help="where seen alert ids and the stream position are kept")
    ap.add_argument("--pattern")
    ap.add_argument("--severity")
    ap.add_argument("--key")
    ap.add_argument("--token", default=os.environ.get("CEP_API_TOKEN"))
    ap.add_argument("--max-alerts", type=int, help="stop after this many new alerts")
    args = ap.parse_args(argv)
    state = State(Path(args.state_dir))
    deliver: CaseFile | Webhook = Webhook(args.webhook) if args.webhook else CaseFile(
        Path(args.out))
    filters = {k: v for k in ("pattern", "severity", "key") if (v := getattr(args, k))}
    try:
        n = forward(args.url, state, deliver, filters=filters, token=args.token,
                    max_alerts=args.max_alerts)
        print(f"forwarder: {n} alerts forwarded", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        deliver.close()
        state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
