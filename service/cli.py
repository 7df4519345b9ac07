"""The `cep` command: the engine's commands (cep/cli.py) plus the service's `serve` and
`alerts tail`. It lives here because the service depends on the engine, never the
other way round."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cep import cli as engine_cli


def cmd_serve(args: argparse.Namespace) -> int:
    from service.main import serve

    result: int = serve(args)
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
    p = sub.add_parser("serve", help="run the service (REST API; Kafka when configured)")
    p.add_argument("--config", default=os.environ.get("CEP_CONFIG"))
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("alerts", help="alert consumers")
    asub = p.add_subparsers(dest="alerts_command", required=True)
    t = asub.add_parser("tail", help="follow alerts (SSE stream or Kafka topic)")
    t.add_argument("--url", default="http://127.0.0.1:8080")
    t.add_argument("--kafka", help="bootstrap servers: read the alert topic instead")
    t.add_argument("--topic", default=None)
    t.add_argument("--pattern")
    t.add_argument("--key")
    t.add_argument("--severity")
    t.add_argument("-n", "--limit", type=int, default=None)
    t.set_defaults(fn=cmd_alerts)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    return engine_cli.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
