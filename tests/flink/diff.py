"""`make flink-diff`: random cases through the real FlinkCEP and through `cep`.

    python tests/flink/diff.py --seed 1 --count 500 [--record tests/flink/corpus.jsonl]
                               [--minimize] [--show 5]

Needs the oracle built by scripts/flink-oracle.sh (jars in .cache/flink/lib, classes in
.cache/flink/classes). With --record, writes every case with Flink's outcome as the
corpus that tests/flink/test_flink_corpus.py replays without a JVM. The last line
counts agreeing cases.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from flinkdiff import (
    as_json,
    flink_outcome,
    generate,
    minimize,
    oracle_json,
    run_cep,
    to_cep,
)

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "flink"
QUIET = False


def run_oracle(cases: list[dict[str, Any]], mode: str = "harness") -> list[dict[str, Any]]:
    """Run cases through FlinkOracle in one JVM (mode: harness or minicluster)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        src.write_text("".join(oracle_json(c) + "\n" for c in cases))
        cp = os.pathsep.join([str(CACHE / "lib" / "*"), str(CACHE / "classes")])
        subprocess.run(["java", "-Xmx2g", "-cp", cp, "FlinkOracle", str(src), str(dst), mode],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL if QUIET else None)
        results = [json.loads(ln) for ln in dst.read_text().splitlines()]
    by_id = {r["id"]: r for r in results}
    return [by_id[c["id"]] for c in cases]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--record", type=Path)
    ap.add_argument("--minimize", action="store_true")
    ap.add_argument("--show", type=int, default=5)
    args = ap.parse_args()
    cases = generate(args.seed, args.count)
    results = run_oracle(cases)
    agree = 0
    diffs = []
    records = []
    for case, res in zip(cases, results, strict=True):
        want = flink_outcome(res)
        got = run_cep(case)
        records.append({**case, "flink": as_json(want)})
        if want == got:
            agree += 1
        else:
            diffs.append((case, want, got))
    if args.record:
        args.record.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n"
                                       for r in records))
    for case, want, got in diffs[: args.show]:
        if args.minimize:
            def differs(cands: list[dict[str, Any]]) -> list[bool]:
                outs = run_oracle(cands)
                return [flink_outcome(o) != run_cep(c) for c, o in zip(cands, outs, strict=True)]
            case = minimize(case, differs)
            want = flink_outcome(run_oracle([case])[0])
            got = run_cep(case)
        print("--- difference", case["id"])
        print(to_cep(case).rstrip())
        print("events:", json.dumps(case["events"]), "batches:", case["batches"],
              "ooo:", case.get("ooo", 0))
        print("flink:", want)
        print("cep:  ", got)
    print(f"flink-diff: {agree} of {len(cases)} cases agree with FlinkCEP 1.20.1 "
          f"(seed {args.seed}, {len(diffs)} differ)")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
