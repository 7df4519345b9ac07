"""The shared prefilter (cep/runtime/shared_filter.py) against each pattern's own
prefilter, over the FlinkCEP corpus: every case's pattern runs beside the next case's
(two blocks in one shared loop, the same key field), and the engine must give exactly
the alerts, in the same order, that it gives when every pattern filters for itself.

`order by` is dropped from the texts (a pattern with `order by` keeps its own
prefilter): both sides run the same text, so this compares the filters only."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import orjson
from flinkdiff import case_alerts, to_cep

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.errors import PatternError
from cep.program import CompiledPattern

CORPUS = Path(__file__).parent / "corpus.jsonl"


def _plan(case: dict[str, Any], name: str) -> CompiledPattern | None:
    text = "\n".join(ln for ln in to_cep(case).splitlines() if "order by" not in ln)
    try:
        (pat,) = load_source(text.replace("pattern p {", f"pattern {name} {{", 1))
    except PatternError:
        return None
    return compile_pattern(pat)


def _run(plans: list[CompiledPattern], case: dict[str, Any]) -> list[bytes]:
    out = []
    for a in case_alerts(plans, case):
        r = dict(a.record)
        r.pop("detected_at", None)
        out.append(orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
    return out


def test_shared_prefilter_gives_what_each_pattern_gives_alone() -> None:
    cases = [json.loads(ln) for ln in CORPUS.read_text().splitlines() if ln.strip()]
    compared = 0
    different = []
    for case, other in zip(cases, cases[1:] + cases[:1], strict=True):
        p, q = _plan(case, "p"), _plan(other, "q")
        if p is None or q is None:
            continue
        assert p.filter_block is not None and q.filter_block is not None
        shared = _run([p, q], case)
        alone = _run([dataclasses.replace(x, filter_block=None) for x in (p, q)], case)
        compared += 1
        if shared != alone:
            different.append(case["id"])
    assert compared > 2000
    assert different == []
