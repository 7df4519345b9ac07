"""`make flink-diff`: random cases through the real FlinkCEP and through `cep`.

    python tests/flink/diff.py --seed 1 --count 500 [--record tests/flink/corpus.jsonl]
                               [--minimize] [--show 5] [--mode harness|minicluster]

Needs the oracle built by scripts/flink-oracle.sh (jars in .cache/flink/lib, classes in
.cache/flink/classes). With --record, writes every case with Flink's outcome as the
corpus that tests/flink/test_flink_corpus.py replays without a JVM (cases the oracle
could not finish in time are left out). The last line counts agreeing cases.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from flinkdiff import (
    Outcome,
    as_json,
    explain,
    flink_outcome,
    generate,
    minimize,
    oracle_json,
    run_cep,
    to_cep,
    without_stage_windows,
)

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "flink"
QUIET = True


def run_oracle(cases: list[dict[str, Any]], mode: str = "harness") -> list[dict[str, Any]]:
    """Run cases through FlinkOracle in one JVM (mode: harness or minicluster)."""
    if not cases:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        src.write_text("".join(oracle_json(c) + "\n" for c in cases))
        cp = os.pathsep.join([str(CACHE / "lib" / "*"), str(CACHE / "classes")])
        subprocess.run(["java", "-Xmx3g", "-cp", cp, "FlinkOracle", str(src), str(dst), mode, "10"],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL if QUIET else None)
        results = [json.loads(ln) for ln in dst.read_text().splitlines()]
    by_id = {r["id"]: r for r in results}
    return [by_id[c["id"]] for c in cases]


def verdicts(cases: list[dict[str, Any]], mode: str = "harness"
             ) -> list[tuple[str, Outcome, Outcome, Outcome | None]]:
    """Per case: (verdict, Flink's outcome, cep's outcome, control outcome); verdict is
    agree, a documented difference (flinkdiff.explain), oracle-timeout or DIFFERENT."""
    wants = [flink_outcome(r) for r in run_oracle(cases, mode)]
    gots = [run_cep(c) for c in cases]
    need = [i for i, c in enumerate(cases) if wants[i] != gots[i]
            and without_stage_windows(c) is not c]
    ctl_res = run_oracle([without_stage_windows(cases[i]) for i in need], mode)
    controls: dict[int, Outcome] = {i: flink_outcome(r) for i, r in zip(need, ctl_res,
                                                                         strict=True)}
    out = []
    for i, case in enumerate(cases):
        want, got, ctl = wants[i], gots[i], controls.get(i)
        if want == got:
            v = "agree"
        elif want == [("oracle-timeout",)]:
            v = "oracle-timeout"
        else:
            v = explain(case, want, got, ctl) or "DIFFERENT"
        out.append((v, want, got, ctl))
    return out


def crosscheck(cases: list[dict[str, Any]], n: int) -> int:
    """The harness mode against jobs on a local MiniCluster, on the first n cases
    without `then any` / `combinations` (whose explosions the MiniCluster mode has no
    time limit for)."""
    sample = [c for c in cases if '"then_any"' not in json.dumps(c)
              and "combinations" not in json.dumps(c)][:n]
    a = [flink_outcome(r) for r in run_oracle(sample, "harness")]
    b = [flink_outcome(r) for r in run_oracle(sample, "minicluster")]
    same = sum(x == y for x, y in zip(a, b, strict=True))
    for c, x, y in zip(sample, a, b, strict=True):
        if x != y:
            print("--- modes differ", c["id"], "\nharness:    ", x, "\nminicluster:", y)
    print(f"flink-diff: {same} of {len(sample)} cases give the same outcome in the operator "
          "harness and on a MiniCluster")
    return 0 if same == len(sample) else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--record", type=Path)
    ap.add_argument("--minimize", action="store_true")
    ap.add_argument("--show", type=int, default=5)
    ap.add_argument("--mode", default="harness", choices=["harness", "minicluster"])
    ap.add_argument("--crosscheck", type=int, default=0,
                    help="run N cases in both oracle modes and compare Flink's outcomes")
    args = ap.parse_args()
    cases = generate(args.seed, args.count)
    if args.crosscheck:
        return crosscheck(cases, args.crosscheck)
    results = verdicts(cases, args.mode)
    tally = Counter(v for v, *_ in results)
    if args.record:
        lines = []
        for case, (v, want, _, ctl) in zip(cases, results, strict=True):
            if v == "oracle-timeout":
                continue
            rec = {**case, "flink": as_json(want), "expect": v}
            if ctl is not None and v == "stage-window":
                rec["control"] = as_json(ctl)
            lines.append(json.dumps(rec, separators=(",", ":")) + "\n")
        args.record.write_text("".join(lines))
    shown = 0
    for case, (v, want, got, _) in zip(cases, results, strict=True):
        if v != "DIFFERENT" or shown >= args.show:
            continue
        shown += 1
        if args.minimize:
            def differs(cands: list[dict[str, Any]]) -> list[bool]:
                return [x[0] == "DIFFERENT" for x in verdicts(cands, args.mode)]
            case = minimize(case, differs)
            _, want, got, _ = verdicts([case], args.mode)[0]
        print("--- difference", case["id"])
        print(to_cep(case).rstrip())
        print("events:", json.dumps(case["events"]), "batches:", case["batches"],
              "ooo:", case.get("ooo", 0))
        print("flink:", want)
        print("cep:  ", got)
    documented = {k: n for k, n in tally.items() if k not in ("agree", "DIFFERENT")}
    print(f"flink-diff: seed {args.seed}: {len(cases)} cases; documented differences "
          f"{json.dumps(documented, sort_keys=True)}; unexplained {tally['DIFFERENT']}")
    print(f"flink-diff: {tally['agree']} of {len(cases)} cases agree with FlinkCEP 1.20.1")
    return 0 if not tally["DIFFERENT"] else 1


if __name__ == "__main__":
    sys.exit(main())
