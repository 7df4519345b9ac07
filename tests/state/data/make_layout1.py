"""How layout1_checkpoints.json was made: run with the code of cep before state layout 2
(main at b03880c) first on the path, e.g.

    git -C <repo> archive b03880c | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/state/data/make_layout1.py

Each golden input is cut in half (one event per batch), then one checkpoint: with every
key in memory ("memory") and with `max_resident_keys` 1 ("evicted": timer entries)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_file
from cep.runtime.engine import Engine, EngineConfig
from cep.state.store import MemoryStore

ROOT = Path(__file__).resolve().parents[3]
NOW_MS = 1_800_000_000_000


def main() -> None:
    cases: dict[str, Any] = {}
    golden = ROOT / "tests" / "golden"
    for name in sorted(d.name for d in golden.iterdir() if (d / "expected.json").is_file()):
        lines = (golden / name / "events.jsonl").read_text().splitlines()
        events = [json.loads(ln) for ln in lines if ln.strip()]
        plans = [compile_pattern(p) for p in load_file(ROOT / "patterns" / f"{name}.cep")]
        cut = len(events) // 2
        case: dict[str, Any] = {"cut": cut}
        for mode, bound in (("memory", None), ("evicted", 1)):
            eng = Engine(plans, EngineConfig(max_resident_keys=bound), now_ms=lambda: NOW_MS)
            store = MemoryStore()
            eng.use_store(store)
            for e in events[:cut]:
                eng.process([e])
            store.write_batch(eng.checkpoint())
            eng.checkpointed()
            case[mode] = [[base64.b64encode(k).decode(), base64.b64encode(v).decode()]
                          for k, v in store.items()]
        cases[name] = case
    out = {"written_by": "cep main at b03880c (state layout 1), tests/golden inputs cut "
                         "in half, one event per batch, now_ms 1800000000000; keys and "
                         "values base64",
           "cases": cases}
    (Path(__file__).parent / "layout1_checkpoints.json").write_text(
        json.dumps(out, indent=0) + "\n")


if __name__ == "__main__":
    main()
