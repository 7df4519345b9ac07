"""Service benchmark: embedded ingestion through `POST /events` (NDJSON batches) and
hot-swap latency, against a real `cep serve` on 127.0.0.1 (its own process).

    python benchmarks/api.py [--events 200000] [--batch 5000] [--clients 4] [--swaps 10]

Phases:
  in-process   the same batches decoded and run by an Engine in this process: the
               ceiling for the service (no HTTP); printed beside the service's figures
  http-1       one client posting the batches one after the other
  http-N       N clients posting concurrently: the stream split by key into N
               partitions (each in time order, like Kafka partitions), batches of
               batch/N events
  hot-swap     while a client posts small batches continuously, the `probe` pattern
               (`time arrival`) is replaced --swaps times; per swap: the PUT's round
               trip, and the time from sending the PUT to the first alert of the new
               version (its `detected_at`, stamped by the engine loop)

Patterns: the example patterns that need no model (as benchmarks/engine.py), plus
`probe`. Events: `cep.synth.generate` (seeded). The number of requests is bounded:
events / batch per ingestion phase.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NO_MODEL = ["abandoned_checkout", "account_takeover", "card_testing", "decline_burst",
            "impossible_travel", "unpaid_order"]
DAY_MS = 86_400_000
PROBE = """pattern probe {
  time arrival
  match
    p where type == "probe"
  emit severity %s { v = 1 }
}
"""
SEVERITIES = ("low", "medium", "high", "critical")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def batches(events: list[dict[str, Any]], size: int, shift_ms: int = 0) -> list[bytes]:
    out = []
    for i in range(0, len(events), size):
        chunk = events[i:i + size]
        if shift_ms:
            chunk = [{**e, "ts": e["ts"] + shift_ms} for e in chunk]
        out.append(b"\n".join(orjson.dumps(e) for e in chunk) + b"\n")
    return out


def in_process(bodies: list[bytes]) -> tuple[float, int]:
    from cep.cli import compile_paths
    from cep.runtime.engine import Engine

    plans = compile_paths([str(ROOT / "patterns" / f"{p}.cep") for p in NO_MODEL])
    eng = Engine(plans)
    n = alerts = 0
    loads = orjson.loads
    t0 = time.perf_counter()
    for body in bodies:
        evs = [loads(x) for x in body.splitlines() if x]
        n += len(evs)
        alerts += len(eng.process(evs).alerts)
    return n / (time.perf_counter() - t0), alerts


class Server:
    """`cep serve` in a subprocess over a temporary directory."""

    def __init__(self, tmp: Path) -> None:
        pats = tmp / "patterns"
        pats.mkdir()
        for p in NO_MODEL:
            shutil.copy(ROOT / "patterns" / f"{p}.cep", pats)
        (pats / "probe.cep").write_text(PROBE % "low")
        self.port = free_port()
        config = tmp / "cep.toml"
        config.write_text(
            f'patterns_dir = "{pats}"\nmodels_dir = "{tmp / "models"}"\n'
            f'data_dir = "{tmp / "var"}"\nalerts_file = "{tmp / "out" / "alerts.jsonl"}"\n'
            f'dead_letters_file = "{tmp / "out" / "dead.jsonl"}"\n'
            f"[api]\nport = {self.port}\nmax_body_bytes = 67108864\nrecent_alerts = 100000\n"
        )
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CEP_")}
        self.log = open(tmp / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--config", str(config)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=tmp,
        )
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"cep serve exited: see {tmp / 'serve.log'}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("cep serve did not become ready")
            time.sleep(0.2)

    def stop(self) -> float:
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()
        return time.perf_counter() - t0


def by_key(events: list[dict[str, Any]], n: int) -> list[list[dict[str, Any]]]:
    """Split a time-ordered stream into n time-ordered partitions by key, like Kafka."""
    parts: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for e in events:
        k = e.get("card_id") or e.get("user_id") or e.get("order_id") or e.get("session_id")
        parts[zlib.crc32(str(k).encode()) % n].append(e)
    return parts


def post_all(url: str, parts: list[list[bytes]]) -> tuple[float, int, int]:
    """(seconds, accepted, alerts): one client thread per partition, posting its batches
    in order."""
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as c:
            for body in parts[i]:
                r = c.post("/events", content=body, params={"partition": f"p{i}"},
                           headers={"content-type": "application/x-ndjson"})
                r.raise_for_status()
                out = r.json()
                with lock:
                    results.append((out["accepted"], out["alerts"]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(parts))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    return dt, sum(a for a, _ in results), sum(b for _, b in results)


def batch_stats(url: str) -> tuple[float, float]:
    """(engine seconds, batches) so far, from the service's /metrics."""
    found = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("cep_batch_seconds_sum", "cep_batch_seconds_count"):
            found[name] = float(value)
    return found["cep_batch_seconds_sum"], found["cep_batch_seconds_count"]


def hot_swaps(url: str, events: list[dict[str, Any]], swaps: int) -> list[tuple[float, float]]:
    """Per swap: (PUT round trip s, PUT sent -> first alert of the new version s)."""
    stop = threading.Event()
    small = batches(events, 500, shift_ms=3 * DAY_MS)
    probe = b'{"type":"probe","ts":0}\n'

    def poster() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            i = 0
            while not stop.is_set():
                body = small[i % len(small)] if i < len(small) else b""
                c.post("/events", content=body + probe, params={"partition": "swap"})
                i += 1

    th = threading.Thread(target=poster)
    th.start()
    out = []
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            time.sleep(0.5)
            for k in range(swaps):
                last = c.get("/alerts", params={"limit": 1}).json()["last_id"]
                t_sent = time.time()
                t0 = time.perf_counter()
                r = c.put("/patterns/probe", content=PROBE % SEVERITIES[(k + 1) % 4])
                rtt = time.perf_counter() - t0
                r.raise_for_status()
                version = r.json()["version"]
                first = None
                while first is None:
                    got = c.get("/alerts", params={"pattern": "probe", "since": last,
                                                   "limit": 10_000}).json()["alerts"]
                    for env in got:
                        if env["alert"]["pattern_version"] == version:
                            first = env["alert"]["detected_at"]
                            break
                    if got:
                        last = got[-1]["id"]
                    time.sleep(0.005)
                detected = datetime.fromisoformat(first.replace("Z", "+00:00")).timestamp()
                out.append((rtt, max(0.0, detected - t_sent)))
                time.sleep(0.1)
    finally:
        stop.set()
        th.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--swaps", type=int, default=10)
    args = ap.parse_args()

    from cep.synth import generate

    events = generate(args.events, seed=args.seed, n_keys=args.keys)
    bodies1 = batches(events, args.batch)
    per_client = max(1, args.batch // args.clients)
    parts = by_key(events, args.clients)
    # each partition's first event, posted alone and in time order before the timed run:
    # the clock then knows every partition (a partition it has not seen yet does not hold
    # the watermark back, so its first events could be late)
    firsts = sorted((part[0]["ts"], i) for i, part in enumerate(parts))
    warmup = [(f"p{i}", batches(parts[i][:1], 1, shift_ms=DAY_MS + 3_600_000)[0])
              for _, i in firsts]
    bodies2 = [batches(part[1:], per_client, shift_ms=DAY_MS + 3_600_000) for part in parts]
    size_mb = sum(len(b) for b in bodies1) / 1e6
    # the generated events stay alive for the hot-swap phase: keep the cyclic GC from
    # walking them during the in-process run (the server process does not hold them)
    gc.collect()
    gc.freeze()
    base_eps, base_alerts = in_process(bodies1)

    with tempfile.TemporaryDirectory(prefix="cep-bench-api-") as tmp:
        t0 = time.perf_counter()
        server = Server(Path(tmp))
        startup = time.perf_counter() - t0
        try:
            b0 = batch_stats(server.url)
            dt1, acc1, al1 = post_all(server.url, [bodies1])
            b1 = batch_stats(server.url)
            for partition, body in warmup:
                httpx.post(server.url + "/events", content=body,
                           params={"partition": partition}).raise_for_status()
            dtn, accn, aln = post_all(server.url, bodies2)
            accn += len(warmup)
            swaps = hot_swaps(server.url, events, args.swaps)
        finally:
            shutdown = server.stop()

    n = len(events)
    engine_s, nbatches = b1[0] - b0[0], b1[1] - b0[1]
    print(f"cep service benchmark: {n:,} events ({size_mb:.1f} MB NDJSON), "
          f"{args.keys:,} keys, seed {args.seed}, batches of {args.batch:,} "
          f"({len(bodies1)} requests per phase); python {sys.version.split()[0]}")
    print(f"{'phase':<14}{'events/s':>12}{'seconds':>10}{'accepted':>11}{'alerts':>8}")
    print(f"{'in-process':<14}{base_eps:>12,.0f}{n / base_eps:>10.2f}{n:>11,}{base_alerts:>8,}")
    print(f"{'http-1':<14}{n / dt1:>12,.0f}{dt1:>10.2f}{acc1:>11,}{al1:>8,}")
    nn = n - len(warmup)
    print(f"{'http-' + str(args.clients):<14}{nn / dtn:>12,.0f}{dtn:>10.2f}{accn:>11,}"
          f"{aln:>8,}")
    print(f"\nhttp-1 / in-process: {base_eps / (n / dt1):.2f}x the time; in http-1 the "
          f"service's engine loop was busy {engine_s:.2f} s of {dt1:.2f} s "
          f"({engine_s / nbatches * 1000:.0f} ms per batch of {args.batch:,}); the rest is "
          f"HTTP, decoding and the client")
    rtts = [r for r, _ in swaps]
    firsts = [f for _, f in swaps]
    print(f"hot swap ({len(swaps)} swaps under load): PUT round trip median "
          f"{statistics.median(rtts) * 1000:.0f} ms (max {max(rtts) * 1000:.0f}); "
          f"PUT sent -> first alert of the new version median "
          f"{statistics.median(firsts) * 1000:.0f} ms (max {max(firsts) * 1000:.0f})")
    print(f"server start-up (imports, compile, ready) {startup:.1f} s; SIGTERM -> exit "
          f"{shutdown:.1f} s")


if __name__ == "__main__":
    main()
