"""One input with a declared stream (fields + epoch seconds) for every mode
(tests/service/test_every_mode_schemas.py, tests/integration/test_streams_kafka.py):
the same schema and time-unit dead letters, with the same details, everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from cep.backtest import StreamsSetup, run_backtest
from cep.cli import compile_paths
from cep.streams import TimeSpec, from_fields

T0_S = 1_700_000_000  # epoch SECONDS
FIELDS = {"card_id": "string", "type": "string", "amount": "number", "ts": "integer",
          "id": "string"}
PATTERN = """pattern big {
  key card_id
  match
    a where type == "purchase" and amount > 100
  emit { card = key, amount = a.amount }
}
"""
EVENTS: list[dict[str, Any]] = [
    {"id": "ok1", "card_id": "c1", "type": "purchase", "amount": 500.0, "ts": T0_S},
    {"id": "bad_amount", "card_id": "c1", "type": "purchase", "amount": "500", "ts": T0_S + 1},
    {"id": "no_card", "type": "purchase", "amount": 500.0, "ts": T0_S + 2},
    {"id": "millis", "card_id": "c2", "type": "purchase", "amount": 500.0, "ts": T0_S * 1000},
    {"id": "ok2", "card_id": "c3", "type": "purchase", "amount": 700.0, "ts": T0_S + 4},
    {"id": "end", "card_id": "zz", "type": "x", "amount": 0, "ts": T0_S + 3600},
]
LINES = [orjson.dumps(e) for e in EVENTS]
REASONS = [("schema", "stream 'transactions': field 'amount' is string, the schema says "
            "number"),
           ("schema", "stream 'transactions': required field 'card_id' is missing"),
           ("bad_time", "time field ts=1700000000000: 1700000000000 read as epoch seconds is "
            "not between 1990 and 2100; it looks like epoch milliseconds: declare "
            "time_unit = \"ms\" for the stream")]
MEASURES = [{"card": "c1", "amount": 500.0}, {"card": "c3", "amount": 700.0}]
TOML = """[streams.transactions]
time_unit = "s"
fields = { card_id = "string", type = "string", amount = "number", ts = "integer", id = "string" }
"""


def backtest(tmp: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "p.cep").write_text(PATTERN)
    events = tmp / "events.jsonl"
    events.write_bytes(b"\n".join(LINES) + b"\n")
    out, dead = tmp / "alerts.jsonl", tmp / "dead.jsonl"
    setup = StreamsSetup({"transactions": from_fields("transactions", FIELDS)},
                         time=TimeSpec("s"))
    run_backtest(compile_paths([str(tmp / "p.cep")]), [events], out=out, dead_out=dead,
                 streams=setup)
    return ([orjson.loads(x) for x in out.read_bytes().splitlines()],
            [orjson.loads(x) for x in dead.read_bytes().splitlines()])
