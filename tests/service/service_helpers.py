"""Shared pieces of the service tests: settings in a temporary directory, pattern
texts, a tiny skops model with its manifest, a live uvicorn server."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from service.config import ApiConfig, Settings

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_700_000_000_000  # event times in the past (2023): never "future_timestamp"

CARD_TESTING = """\
pattern card_testing {
  description "tiny purchases, then a big one"
  key card_id
  within 10m
  match
    tiny{3,} where type == "purchase" and amount < 2.00
    then big where type == "purchase" and amount > 50 * avg(tiny.amount)
  emit severity high {
    attempts = count(tiny)
    amount   = big.amount
  }
}
"""

PAIR = """\
pattern pair {
  key k
  within 1h
  match
    a where type == "a"
    then b where type == "b"
  emit severity %s { n = key }
}
"""

SCORED = """\
pattern scored {
  key card_id
  let risk = score(txn_risk, amount=amount, hour=hour(ts), foreign=foreign)
  match
    hit where risk > 0.0
  emit severity medium { risk = hit.risk }
}
"""

BROKEN = """\
pattern broken {
  key card_id
  match
    a where amount > > 3
  emit { x = 1 }
}
"""


def make_settings(tmp: Path, *, token: str | None = None, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "patterns_dir": tmp / "patterns",
        "models_dir": tmp / "models",
        "data_dir": tmp / "var",
        "alerts_file": tmp / "out" / "alerts.jsonl",
        "dead_letters_file": tmp / "out" / "dead-letters.jsonl",
        "api": ApiConfig(token=token, max_body_bytes=kw.pop("max_body_bytes", 1_000_000)),
    }
    values.update(kw)
    return Settings(**values)


def card_events(card: str, t: int, prefix: str = "e") -> list[dict[str, Any]]:
    """One card-testing incident: three tiny purchases and a big one, from time t."""
    amounts = [1.0, 1.5, 0.5, 900.0]
    return [
        {"id": f"{prefix}{i}", "card_id": card, "type": "purchase", "amount": a,
         "ts": t + i * 1000}
        for i, a in enumerate(amounts)
    ]


def ndjson(events: list[Any]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


# ---------------------------------------------------------------- a model


@cache
def model_bytes() -> bytes:
    import numpy as np
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    x = np.column_stack([rng.lognormal(3, 1, 200), rng.integers(0, 24, 200),
                         (rng.random(200) < 0.2).astype(float)])
    y = (x[:, 0] > 40).astype(int)
    with threadpool_limits(1):
        model = LogisticRegression(max_iter=500).fit(x, y)
    data: bytes = skops.io.dumps(model)
    return data


def manifest(data: bytes, name: str = "txn_risk", **extra: Any) -> bytes:
    m: dict[str, Any] = {
        "name": name,
        "version": 1,
        "file": "model.skops",
        "sha256": hashlib.sha256(data).hexdigest(),
        "features": [
            {"name": "amount", "type": "float"},
            {"name": "hour", "type": "int"},
            {"name": "foreign", "type": "bool"},
        ],
        "output": "proba",
    }
    m.update(extra)
    return orjson.dumps(m)


def upload(data: bytes, man: bytes, filename: str = "model.skops") -> dict[str, Any]:
    return {"model": (filename, data, "application/octet-stream"),
            "manifest": ("manifest.json", man, "application/json")}


# ---------------------------------------------------------------- a live server
