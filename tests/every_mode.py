"""The same input for every mode (tests/service/test_every_mode.py,
tests/integration/test_every_mode_kafka.py): a pattern, input lines with every
dead-letter reason that does not depend on batching or the wall clock, and the
backtest's answer that every other mode must reproduce."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from cep.backtest import run_backtest
from cep.embedding import compile_paths

T0 = 1_700_000_000_000
PATTERN = """pattern card_testing {
  key card_id
  within 10m
  match
    tiny{3,} where type == "purchase" and amount < 2.00
    then big where type == "purchase" and amount > 100
  emit severity high { attempts = count(tiny), amount = big.amount }
}
"""


def purchase(i: str, ts: Any, amount: float, card: str | None = "c1") -> dict[str, Any]:
    e: dict[str, Any] = {"id": i, "ts": ts, "type": "purchase", "amount": amount}
    if card is not None:
        e["card_id"] = card
    if ts is None:
        del e["ts"]
    return e


# one line each: every reason that does not depend on batching or the wall clock
LINES: list[bytes] = [orjson.dumps(x) if not isinstance(x, bytes) else x for x in [
    purchase("t0", T0, 1.0),
    b"{not json",                                   # malformed (raw)
    b"[1, 2]",                                      # malformed (a JSON value)
    purchase("nt", None, 1.0),                      # missing_time
    purchase("bt", "yesterday", 1.0),               # bad_time
    purchase("nk", T0 + 500, 1.0, card=None),       # missing_key: would start a match
    {"id": "ik", "ts": T0 + 600, "type": "login"},  # no key, irrelevant: ignored
    purchase("t1", T0 + 1000, 1.5),
    purchase("t2", T0 + 2000, 0.5),
    purchase("big", T0 + 3000, 500.0),
    {"id": "end", "ts": T0 + 3_600_000, "type": "x", "card_id": "zz"},  # moves the watermark
]]
REASONS = ["malformed", "malformed", "missing_time", "bad_time", "missing_key"]


def comparable(rec: dict[str, Any]) -> tuple[Any, ...]:
    """A dead-letter record without its position (which names the source)."""
    assert set(rec) in ({"reason", "detail", "position", "event"},
                        {"reason", "detail", "position", "raw"}), rec
    return rec["reason"], rec["detail"], rec.get("event"), rec.get("raw")


def backtest(tmp_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "p.cep").write_text(PATTERN)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(LINES) + b"\n")
    out, dead = tmp_path / "alerts.jsonl", tmp_path / "dead.jsonl"
    run_backtest(compile_paths([str(tmp_path / "p.cep")]), [events], out=out, dead_out=dead)
    rows = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    dead_rows = [orjson.loads(x) for x in dead.read_bytes().splitlines()]
    assert [r["position"] for r in dead_rows] == [[str(events), n] for n in (2, 3, 4, 5, 6)]
    return rows, dead_rows
