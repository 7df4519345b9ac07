"""The `cep` command: the engine's commands (cep/cli.py) plus the service's `serve` and
`alerts tail`. It lives here because the service depends on the engine, never the
other way round."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from cep import cli as engine_cli
from service import logs
from service.alerts_tail import DEFAULT_RETRIES
from service.stop_signal import StopSignal

log = logging.getLogger("cep.service")


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def cmd_serve(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, args.log_format)
    with StopSignal() as stop:  # before the imports and the start-up it covers
        log.debug("start-up: SIGTERM and SIGINT now stop the service cleanly")
        from service.main import serve

        result: int = serve(args, stop)
    return result


def cmd_alerts(args: argparse.Namespace) -> int:
    from service.alerts_tail import tail

    result: int = tail(args)
    return result


def build_parser() -> argparse.ArgumentParser:
    ap = engine_cli.build_parser()
    sub = next(
        a for a in ap._actions if isinstance(a, argparse._SubParsersAction)
    )
    p = sub.add_parser(
        "serve", help="run the service (REST API; Kafka when configured)",
        description="Run the engine behind the REST API: embedded (events over HTTP) "
        "without Kafka settings, else consuming the configured topics. Loads patterns/ "
        "and models/ of the current directory (docs/operations.md).")
    p.add_argument("--config", default=os.environ.get("CEP_CONFIG"), metavar="FILE",
                   help="cep.toml: streams, Kafka, API, directories (default: $CEP_CONFIG; "
                   "CEP_... environment variables override it)")
    p.add_argument("--host", default=None,
                   help="address to listen on (default: api.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port to listen on (default: api.port, 8080)")
    p.add_argument("--max-resident-keys", type=_positive, default=None, metavar="N",
                   help="Kafka mode: keys per pattern and task kept in memory; the others "
                   "wait in the task's RocksDB store (default: max_resident_keys in "
                   "cep.toml, else all; docs/engine.md)")
    p.add_argument("--log-level", choices=logs.LEVELS,
                   default=os.environ.get("CEP_LOG_LEVEL", "info"),
                   help="log level (default: $CEP_LOG_LEVEL or info)")
    p.add_argument("--log-format", choices=logs.FORMATS,
                   default=os.environ.get("CEP_LOG_FORMAT", "text"),
                   help="text, or json: one JSON object per line (default: $CEP_LOG_FORMAT "
                   "or text)")
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("alerts", help="alert consumers")
    asub = p.add_subparsers(dest="alerts_command", required=True)
    t = asub.add_parser("tail", help="follow alerts (SSE stream or Kafka topic)",
                        description="Print alerts as they come, one JSON object per line.")
    t.add_argument("--url", default="http://127.0.0.1:8080",
                   help="the service (default: http://127.0.0.1:8080)")
    t.add_argument("--kafka", metavar="BOOTSTRAP",
                   help="bootstrap servers: read the alert topic(s) instead")
    t.add_argument("--topic", default=None,
                   help="with --kafka: topics, comma-separated (default: cep.alerts)")
    t.add_argument("--pattern", help="only alerts of this pattern")
    t.add_argument("--key", help="only alerts of this key (composite keys as a,b)")
    t.add_argument("--severity", choices=["low", "medium", "high", "critical"],
                   help="only alerts of this severity")
    t.add_argument("-n", "--limit", type=int, default=None, help="exit after N alerts")
    t.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                   help="failed connection attempts in a row before giving up "
                   f"(default: {DEFAULT_RETRIES})")
    t.set_defaults(fn=cmd_alerts)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    return engine_cli.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
