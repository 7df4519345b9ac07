"""Produce JSON Lines events to Kafka (a dev/demo tool).

    python -m service.kafka.produce --topic transactions events.jsonl
    python -m service.kafka.produce --topic-field stream --key-field user_id events.jsonl.gz
    python -m service.kafka.produce --topic-field stream --key-field user_id \
        --key-field orders=order_id events.jsonl
    cep generate --events 100000 --out - | python -m service.kafka.produce --topic transactions -
    python -m service.kafka.produce --topic-field stream --create-topics 3 events.jsonl

Each line is sent as it is (the original bytes: a malformed line shows up as a dead
letter). `--key-field` sets the record key from a field, so that all events of a key
land in one partition (what several cep processes sharing a topic need, see
docs/operations.md); `--topic-field` picks the topic per event from a field (the
generator's `stream`), optionally with `--topic-prefix`. The bootstrap servers come
from `--bootstrap`, else `CEP_KAFKA_BOOTSTRAP`, else `--config`'s `kafka.bootstrap_servers`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
from confluent_kafka import Producer


def _lines(path: str) -> Iterator[bytes]:
    from cep.io.jsonl import open_binary

    with open_binary(path) as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def _field(line: bytes, name: str) -> Any:
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return d.get(name) if isinstance(d, dict) else None


def bootstrap_from(args: argparse.Namespace) -> str:
    if args.bootstrap:
        return str(args.bootstrap)
    env = os.environ.get("CEP_KAFKA_BOOTSTRAP", "").strip()
    if env:
        return env
    from service.config import load_settings

    s = load_settings(args.config)
    if not s.kafka.bootstrap_servers:
        raise SystemExit("no Kafka: give --bootstrap, CEP_KAFKA_BOOTSTRAP or --config")
    return s.kafka.bootstrap_servers


def parse_key_fields(items: list[str] | None) -> dict[str, str]:
    """`["user_id", "orders=order_id"]` -> {"": "user_id", "orders": "order_id"}."""
    out: dict[str, str] = {}
    for item in items or []:
        topic, sep, field = item.rpartition("=")
        if not field:
            raise SystemExit(f"--key-field {item!r}: write FIELD or TOPIC=FIELD")
        out[topic if sep else ""] = field
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m service.kafka.produce", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="JSONL files (.gz ok, - = stdin)")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--topic", help="send every event to this topic")
    where.add_argument("--topic-field", help="take each event's topic from this field")
    ap.add_argument("--topic-prefix", default="", help="prefix for --topic-field topics")
    ap.add_argument("--key-field", action="append", metavar="[TOPIC=]FIELD",
                    help="record key from this field (co-partitioning); TOPIC=FIELD for one "
                    "topic only; repeatable. Events without the field are counted and sent "
                    "without a key")
    ap.add_argument("--bootstrap", help="host:port (default: CEP_KAFKA_BOOTSTRAP / --config)")
    ap.add_argument("--config", default=os.environ.get("CEP_CONFIG"))
    ap.add_argument("--create-topics", type=int, metavar="PARTITIONS", default=0,
                    help="create missing topics with this many partitions (the dev broker "
                    "does not create topics on its own)")
    ap.add_argument("--rate", type=float, default=0.0, help="events per second (0: max)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    bootstrap = bootstrap_from(args)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "enable.idempotence": True, "compression.type": "lz4"})
    created: set[str] = set()

    def ensure(topic: str) -> None:
        if args.create_topics and topic not in created:
            from confluent_kafka.admin import AdminClient

            from service.kafka.io import ensure_topics

            for t in ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), [topic],
                                   partitions=args.create_topics):
                print(f"created topic {t} ({args.create_topics} partitions)", file=sys.stderr)
            created.add(topic)

    failures: list[str] = []
    key_fields = parse_key_fields(args.key_field)
    unkeyed: dict[str, int] = {}

    def report(err: Any, msg: Any) -> None:
        if err is not None and len(failures) < 10:
            failures.append(f"{msg.topic()}: {err}")

    t0 = time.monotonic()
    n = 0
    for path in args.files:
        for line in _lines(path):
            topic = args.topic
            if topic is None:
                v = _field(line, args.topic_field)
                if not isinstance(v, str) or not v:
                    failures.append(f"line without {args.topic_field}: skipped")
                    continue
                topic = args.topic_prefix + v
            ensure(topic)
            key = None
            field = key_fields.get(topic, key_fields.get(""))
            if field is not None:
                k = _field(line, field)
                if k is None:
                    unkeyed[topic] = unkeyed.get(topic, 0) + 1
                key = None if k is None else (k if isinstance(k, str) else orjson.dumps(k).decode())
            while True:
                try:
                    producer.produce(topic, line, key, on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.05)
            n += 1
            if args.rate > 0:
                ahead = n / args.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            if n % 10_000 == 0:
                producer.poll(0)
    left = producer.flush(60)
    dt = time.monotonic() - t0
    if not args.quiet:
        print(f"produced {n:,} events in {dt:.1f}s ({n / dt if dt else 0:,.0f}/s)",
              file=sys.stderr)
    for topic, count in sorted(unkeyed.items()):
        print(f"warning: {count:,} events to {topic} have no "
              f"{key_fields.get(topic, key_fields.get(''))!r} field: sent without a key "
              f"(use --key-field {topic}=FIELD with a field they have)", file=sys.stderr)
    for f in failures[:10]:
        print(f"error: {f}", file=sys.stderr)
    return 1 if failures or left else 0


if __name__ == "__main__":
    sys.exit(main())
