"""The engine's commands: check, backtest, generate, demo, dis.

The installed `cep` command is assembled in `service/cli.py`, which adds `serve` and
`alerts tail` to this parser: the engine never imports the service layer."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cep.durations import parse_duration as _parse_duration
from cep.embedding import compile_paths as compile_paths
from cep.embedding import compile_scoring as compile_scoring
from cep.embedding import load_models as load_models
from cep.embedding import scorer_for as scorer_for
from cep.errors import CepError, PatternError


def parse_duration(text: str) -> int:
    try:
        return _parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def project_dir(name: str) -> Path:
    """`patterns/` or `models/`: in the current directory, else beside the package
    (an editable install from a clone), else the examples installed with the package
    (`<prefix>/share/cep/NAME`, pyproject's data-files)."""
    candidates = [Path.cwd() / name, Path(__file__).resolve().parent.parent / name,
                  Path(sys.prefix) / "share" / "cep" / name]
    for path in candidates:
        if path.is_dir():
            return path
    return candidates[0]


# ---------------------------------------------------------------- commands


def declared_schemas(args: argparse.Namespace) -> dict[str, Any]:
    """Stream schemas from `--config cep.toml` ([streams.*] fields / schema_file) and
    `--schema FILE` (a JSON Schema, or a file written by --infer-schema)."""
    from cep.streams import load_schemas_file, read_streams_toml, schemas_from_table

    schemas: dict[str, Any] = {}
    if getattr(args, "config", None):
        base = Path(args.config).resolve().parent
        schemas.update(schemas_from_table(read_streams_toml(args.config), base))
    for f in getattr(args, "schema", None) or []:
        schemas.update(load_schemas_file(f))
    return schemas


def cmd_check(args: argparse.Namespace) -> int:
    from cep.dsl import load_paths

    if args.codes:
        from cep.dsl.codes import CODES

        for code, meaning in CODES.items():
            print(f"{code}  {meaning}")
        return 0
    if not args.paths:
        print("cep check: give pattern files or directories (or --codes)", file=sys.stderr)
        return 2
    registry = load_models(Path(args.models)) if args.models else None
    models = registry.feature_names() if registry is not None else None
    schemas = declared_schemas(args)
    try:
        patterns = load_paths(args.paths, models=models, schemas=schemas or None)
    except PatternError as err:
        print(err.format(), file=sys.stderr)
        n = len(err.diagnostics)
        print(f"{n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return 1
    for p in patterns:
        print(f"ok  {p.file}:{p.span.line}  {p.name}")
    if not schemas:
        print("note: no stream schema given: field names and types were not checked "
              "(--config cep.toml or --schema FILE; docs/streams.md)", file=sys.stderr)
    return 0


def parse_label_map(items: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        pattern, sep, label = item.partition("=")
        if not sep or not pattern or not label:
            raise CepError(f"--label-map {item!r}: write PATTERN=LABEL")
        out[pattern.strip()] = label.strip()
    return out


def cmd_backtest(args: argparse.Namespace) -> int:
    import json

    from cep.backtest import StreamsSetup, format_summary, run_backtest, summary_warnings
    from cep.streams import TimeSpec, read_streams_toml, times_from_table, write_schemas

    schemas = declared_schemas(args)
    label_map = parse_label_map(args.label_map)
    if label_map and not args.label_field:
        raise CepError("--label-map needs --label-field (the event field holding labels)")
    models_dir = Path(args.models) if args.models else project_dir("models")
    plans, scorer = compile_scoring(args.patterns, models_dir, schemas=schemas or None)
    unknown = sorted(set(label_map) - {p.name for p in plans})
    if unknown:
        raise CepError(f"--label-map names patterns that are not loaded: {', '.join(unknown)}")
    time_spec = TimeSpec(args.time_unit or "ms", args.assume_utc)
    if args.config and not args.time_unit:
        times = times_from_table(read_streams_toml(args.config))
        if len(set(times.values())) == 1:
            time_spec = next(iter(times.values()))
    if args.workers != 1:
        return _backtest_workers(args, plans, scorer)
    report = run_backtest(
        plans,
        args.events,
        out=args.out,
        dead_out=args.dead_letters,
        max_out_of_orderness_ms=args.max_out_of_orderness,
        label_field=args.label_field,
        label_map=label_map,
        scorer=scorer,
        progress=sys.stderr.isatty() and not args.quiet,
        streams=StreamsSetup(schemas, args.stream_field or None, time_spec),
        scoring_threads=args.scoring_threads,
    )
    if not args.quiet:
        print(format_summary(report), file=sys.stderr)
    else:
        for line in summary_warnings(report):
            print(line, file=sys.stderr)
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if args.infer_schema and report.observer is not None:
        Path(args.infer_schema).write_text(write_schemas(report.observer.schemas()))
        print(f"inferred schema of {len(report.observer.streams)} stream(s) written to "
              f"{args.infer_schema}", file=sys.stderr)
    return 0


def _backtest_workers(args: argparse.Namespace, plans: Any, scorer: Any) -> int:
    from cep.backtest import format_summary
    from cep.backtest_workers import run_backtest_sharded

    for flag, given in (("--max-out-of-orderness", args.max_out_of_orderness is not None),
                        ("--dead-letters", bool(args.dead_letters)),
                        ("--label-field", bool(args.label_field)),
                        ("--schema", bool(args.schema)), ("--config", bool(args.config)),
                        ("--time-unit", bool(args.time_unit)),
                        ("--infer-schema", bool(args.infer_schema)),
                        ("--report", bool(args.report))):
        if given:
            print(f"error: {flag} is not supported with --workers (docs: "
                  "cep/backtest_workers.py); run with one worker", file=sys.stderr)
            return 2
    try:
        report = run_backtest_sharded(plans, args.events, args.workers, out=args.out,
                                      scorer=scorer)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(format_summary(report), file=sys.stderr)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from cep.synth import generate, write_jsonl

    t0 = time.perf_counter()
    events = generate(args.events, seed=args.seed, n_keys=args.keys)
    n = write_jsonl(args.out, events)
    labelled = sum(1 for e in events if "label" in e)
    print(
        f"wrote {n:,} events ({labelled:,} in injected incidents) to {args.out} "
        f"in {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cep.backtest import format_summary, run_backtest
    from cep.synth import generate, write_jsonl

    patterns = Path(args.patterns) if args.patterns else project_dir("patterns")
    print(f"cep demo: {args.events:,} synthetic events (seed {args.seed}), "
          f"patterns from {patterns}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="cep-demo-") as tmp:
        events_path = Path(tmp) / "events.jsonl"
        t0 = time.perf_counter()
        write_jsonl(events_path, generate(args.events, seed=args.seed))
        print(f"  generated {args.events:,} events in {time.perf_counter() - t0:.1f}s (a "
              "temporary file, removed after the run; `cep generate --out events.jsonl` "
              "keeps them)", file=sys.stderr)
        out = Path(args.out) if args.out else Path("out") / "demo-alerts.jsonl"
        plans, scorer = compile_scoring([str(patterns)], project_dir("models"))
        report = run_backtest(plans, [events_path], out=out, label_field="label",
                              scorer=scorer, progress=sys.stderr.isatty(),
                              scoring_threads=args.scoring_threads)
    print(format_summary(report))
    print(f"\nalerts written to {out}")
    return 0


def cmd_dis(args: argparse.Namespace) -> int:
    plans, _ = compile_scoring([args.path], Path(args.models) if args.models else
                               project_dir("models"))
    shown = 0
    for plan in plans:
        if args.pattern and plan.name != args.pattern:
            continue
        shown += 1
        text = {i: t for i, t in enumerate(plan.cond_text)}
        print(f"# pattern {plan.name} (version {plan.version})")
        print(f"# skip {plan.skip_kind}; relevance: skip-safe={plan.skip_safe}")
        print(plan.nfa.dis(text))
        print()
        print(plan.module.source)
    if not shown:
        print(f"no pattern named {args.pattern!r} in {args.path}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- argument parsing


def scoring_threads(p: argparse.ArgumentParser) -> None:
    default = os.environ.get("CEP_SCORING_THREADS", "1")
    p.add_argument("--scoring-threads", type=_threads, default=_threads(default), metavar="N",
                   help="BLAS/OpenMP threads per model call (default: $CEP_SCORING_THREADS "
                        "or 1; 0 = the libraries' default of one per core)")


def _threads(text: str) -> int | None:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of threads: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("the number of threads cannot be negative")
    return n or None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cep", description="Complex event processing for fraud "
                                 "and anomaly detection (FlinkCEP semantics).")
    ap.add_argument("--version", action="version", version=f"cep {package_version()}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="check pattern files; non-zero exit on errors")
    p.add_argument("paths", nargs="*", help=".cep files or directories")
    p.add_argument("--models", help="model directory, to check score(...) features")
    p.add_argument("--config", help="cep.toml whose [streams.*] declare fields: check "
                   "field names and types against them")
    p.add_argument("--schema", action="append", metavar="FILE",
                   help="a stream schema (JSON Schema, or a file written by "
                   "`cep backtest --infer-schema`); repeatable")
    p.add_argument("--codes", action="store_true", help="list every diagnostic code")
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("backtest", help="run patterns over JSONL event files")
    p.add_argument("--patterns", nargs="+", required=True, help=".cep files or directories")
    p.add_argument("--events", nargs="+", required=True, help="JSONL files (.gz ok, - = stdin)")
    p.add_argument("--out", help="alerts as JSONL (default: stdout)")
    p.add_argument("--dead-letters", help="dead letters as JSONL (malformed, late, bad time)")
    p.add_argument("--max-out-of-orderness", type=parse_duration, default=None,
                   help="replay in file order with this lateness allowance (e.g. 5s)")
    p.add_argument("--label-field", help="event field with '<label>:<incident>' labels")
    p.add_argument("--label-map", action="append", metavar="PATTERN=LABEL",
                   help="score PATTERN against LABEL (default: its own name); repeatable")
    p.add_argument("--report", metavar="FILE", help="write the summary as JSON")
    p.add_argument("--models", help="model directory (default: ./models)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes, sharded by pattern key (same alerts, sorted by time)")
    scoring_threads(p)
    p.add_argument("--config", help="cep.toml: [streams.*] schemas and time units")
    p.add_argument("--schema", action="append", metavar="FILE",
                   help="a stream schema; events that violate it are dead letters (schema)")
    p.add_argument("--infer-schema", metavar="FILE",
                   help="write the fields and types the events carried, per stream, as JSON "
                   "Schema (use it with --schema / cep check --schema)")
    p.add_argument("--stream-field", default="stream",
                   help="event field naming its stream, for per-stream schemas (default: "
                   "stream)")
    p.add_argument("--time-unit", choices=["ms", "s", "us", "iso"],
                   help="how the time field is written (default: ms, or the config's)")
    p.add_argument("--assume-utc", action="store_true",
                   help="read ISO times without a zone as UTC (default: dead letters)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(fn=cmd_backtest)

    p = sub.add_parser("generate", help="seeded synthetic fraud events with labels")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keys", type=int, default=None, help="number of cards (default: events/10)")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_generate)

    p = sub.add_parser("demo", help="generate data, backtest the example patterns, summarise")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--patterns", help="pattern directory (default: ./patterns)")
    p.add_argument("--out", help="alerts file (default: out/demo-alerts.jsonl)")
    scoring_threads(p)
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("dis", help="show a pattern's NFA and generated code")
    p.add_argument("path")
    p.add_argument("--pattern")
    p.add_argument("--models")
    p.set_defaults(fn=cmd_dis)

    return ap


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cep")
    except PackageNotFoundError:
        return "unknown (not installed)"


def tune_gc() -> None:
    """The engine makes many small, acyclic objects (events, partial matches); Python's
    cyclic collector would otherwise keep re-scanning every live event. Collect less
    often, and never rescan what exists at startup (compiled patterns, models)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    args = (parser or build_parser()).parse_args(argv)
    if args.command in ("backtest", "demo", "serve"):
        tune_gc()
    try:
        code: int = args.fn(args)
    except PatternError as err:
        print(err.format(), file=sys.stderr)
        return 1
    except CepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
