"""Expressions -> Python source -> code objects, from the validated AST only.

Every expression of the pattern language has three-valued logic (SQL's TRUE, FALSE,
UNKNOWN). Instead of materialising UNKNOWN in boolean positions, a boolean expression
is compiled twice: `truth(e)` is Python that holds iff `e` is TRUE, `false(e)` holds
iff `e` is FALSE; `not e` swaps them. Values (`value(e)`) use `None` for null/unknown.

Rules that keep generated code boring and fenced in:
- constants only through `repr()` of int/float/str/bool/None (and tuples of them);
- user identifiers never become Python identifiers: fields become `v0, v1, ...`;
- the module runs with an empty `__builtins__` and the helpers of `cep.compiler.env`;
- the same pattern gives byte-identical source; compiled code is cached by its hash.
"""

from __future__ import annotations

import hashlib
import re
import types
from collections.abc import Iterable
from dataclasses import dataclass, field

from cep.compiler import env
from cep.dsl import ast
from cep.program import CompiledModule, ScoreCall

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CMP_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_CMP_NOT = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_CMP_FN = {"<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge"}
_ARITH_FN = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}
_SCALAR_FN = {
    "abs": "_abs", "round": "_round", "floor": "_floor", "ceil": "_ceil",
    "lower": "_lower", "upper": "_upper", "len": "_strlen", "coalesce": "_coalesce",
    "hour": "_hour", "weekday": "_weekday", "distance_km": "_distance_km",
}
_AGG_FN = {"sum": "_sum", "avg": "_avg", "min": "_min", "max": "_max",
           "distinct_count": "_distinct"}


def _lit(value: ast.Value) -> str:
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("non-finite float literal")
        return repr(value)
    raise TypeError(f"not an allowed constant: {type(value).__name__}")


@dataclass
class Module:
    """Collects the constants shared by all functions of one generated module."""

    consts: list[str] = field(default_factory=list)
    const_index: dict[str, str] = field(default_factory=dict)

    def const(self, src: str) -> str:
        name = self.const_index.get(src)
        if name is None:
            name = f"_C{len(self.consts)}"
            self.const_index[src] = name
            self.consts.append(f"{name} = {src}")
        return name


class ExprCompiler:
    """Compiles expressions of one function body. Context decides what the current
    event is: 'event' (a dict `d`, with `ts`, `key`, `lets`) or 'match' (a completed
    or timed-out partial match `path`, with `key`, `ts` = alert time)."""

    def __init__(
        self,
        module: Module,
        stage_index: dict[str, int],
        let_index: dict[str, int],
        *,
        context: str = "event",
        measures: dict[str, str] | None = None,
        score_calls: list[ScoreCall] | None = None,
        inline_fields: bool = False,
    ) -> None:
        self.inline_fields = inline_fields  # read fields in place (inside comprehensions)
        self.module = module
        self.stage_index = stage_index
        self.stages = frozenset(stage_index)
        self.let_index = let_index
        self.lets = frozenset(let_index)
        self.context = context
        self.measures = measures if measures is not None else {}
        self.score_calls = score_calls if score_calls is not None else []
        self.fields: dict[tuple[str, ...], str] = {}
        self.bound: dict[int, str] = {}
        self.stage_cache: set[int] = set()
        self.touched: set[str] = set()  # field variables read since `inline_truth` began
        self._tmp = 0

    # ------------------------------------------------------------ helpers

    def _fresh(self, prefix: str = "_t") -> str:
        self._tmp += 1
        return f"{prefix}{self._tmp}"

    def _reuse(self, src: str) -> tuple[str, str]:
        """(first use, later uses) of a Python expression evaluated once."""
        if _IDENT.match(src):
            return src, src
        if _is_const(src):
            return f"({src})", f"({src})"
        t = self._fresh()
        return f"({t} := {src})", t

    def prologue(self) -> list[str]:
        # the event of a stage, looked up once per call: most often the head of the
        # path (the stage just before this one), else a walk back (`_one`)
        out = [f"_s{i} = path.ev if path is not None and path.stage == {i} else _one(path, {i})"
               for i in sorted(self.stage_cache)]
        for path, var in self.fields.items():
            if self.context == "event":
                src = self.field_read(path)
            else:
                src = f"_path(path.ev.data, {path!r})"
            out.append(f"{var} = {src}")
        return out

    def _field(self, path: tuple[str, ...]) -> str:
        if self.inline_fields:
            return self.field_read(path)
        var = self.fields.get(path)
        if var is None:
            var = f"v{len(self.fields)}"
            self.fields[path] = var
        self.touched.add(var)
        return var

    def field_read(self, path: tuple[str, ...]) -> str:
        """Python reading a field of the current event `d`."""
        return f"d.get({_lit(path[0])})" if len(path) == 1 else f"_path(d, {path!r})"

    def inline_truth(self, e: ast.Expr) -> tuple[str, frozenset[str], frozenset[int]]:
        """`truth(e)` for code written into another function with the other
        expressions of this compiler (shared field variables, distinct temporaries):
        the code, the field variables it reads, the stages whose `_s<i>` it reads."""
        self.touched = set()
        self.stage_cache = set()
        src = self.truth(e)
        return src, frozenset(self.touched), frozenset(self.stage_cache)

    def _stage_event(self, stage: int) -> str:
        """Python for the (single / last) event of a stage."""
        if stage in self.bound:
            return self.bound[stage]
        self.stage_cache.add(stage)
        return f"_s{stage}"

    # ------------------------------------------------------------ values

    def value(self, e: ast.Expr) -> str:
        if isinstance(e, ast.Literal):
            return _lit(e.value)
        if isinstance(e, ast.ListLit):
            if all(isinstance(i, ast.Literal) for i in e.items):
                items = ", ".join(_lit(i.value) for i in e.items)  # type: ignore[union-attr]
                return self.module.const(f"({items},)" if e.items else "()")
            return "[" + ", ".join(self.value(i) for i in e.items) + "]"
        if isinstance(e, ast.Ref):
            return self._ref(e)
        if isinstance(e, ast.Member):
            return self._member(e)
        if isinstance(e, ast.Call):
            return self._call(e)
        if isinstance(e, ast.Unary):
            if e.op == "-":
                return f"_neg({self.value(e.operand)})"
            return self._bool_value(e)
        if isinstance(e, ast.Binary):
            return self._arith(e)
        return self._bool_value(e)

    def _num(self, e: ast.Expr) -> tuple[str, str] | None:
        """For an operand that is a number whenever it is not null, by construction:
        (Python for its value when it is a number, a test that it is — "" when it
        always is). The current event's `ts` and a stage event's `.ts` (times are
        integers: cep/runtime/engine.py). None for anything else."""
        if not isinstance(e, ast.Ref) or self.context != "event":
            return None
        r = ast.resolve_ref(e.path, self.stages, self.lets)
        if r.kind == "special" and r.head == "ts":
            return "ts", ""
        if r.kind == "stage" and r.path == ("ts",) and "ts" not in self.lets:
            ev = self._stage_event(self.stage_index[r.head])
            if ev in self.bound.values():  # an element of a stage's events: never None
                return f"{ev}.ts", ""
            if _IDENT.match(ev):
                return f"{ev}.ts", f"{ev} is not None"
        return None

    def _operand(self, e: ast.Expr) -> tuple[str, str, str]:
        """(value when a number, the test that it is — "" when it always is, the value
        for the total helper) of an arithmetic operand; the test assigns what the
        other two read, so it is evaluated first."""
        if _is_num_lit(e):
            v = self.value(e)
            return v, "", v
        num = self._num(e)
        if num is not None:
            return num[0], num[1], self.value(e)
        t = self._fresh()
        return t, f"({t} := {self.value(e)}).__class__ in _NUM", t

    def _arith(self, e: ast.Binary) -> str:
        """Numbers take an inline fast path; anything else (null, strings, mismatches,
        division by zero) goes through the total helper."""
        fn = _ARITH_FN[e.op]
        op = e.op
        if self._num(e.left) is not None or self._num(e.right) is not None:
            (lf, lg, lv), (rf, rg, rv) = self._operand(e.left), self._operand(e.right)
            tests = [f"({g})" for g in (lg, rg) if g]
            if op in ("/", "%") and not (_is_num_lit(e.right) and e.right.value):  # type: ignore[union-attr]
                tests = [f"({' & '.join(tests)})" if tests else "", rf]
                tests = [t for t in tests if t]
                guard = " and ".join(tests)
            else:
                guard = " & ".join(tests)
            if not guard:
                return f"({lf} {op} {rf})"
            return f"({lf} {op} {rf} if {guard} else {fn}({lv}, {rv}))"
        lv, rv = self.value(e.left), self.value(e.right)
        if _is_num_lit(e.left) and _is_num_lit(e.right):
            return f"{fn}({lv}, {rv})"
        if _is_num_lit(e.right):
            if op in ("/", "%") and not e.right.value:  # type: ignore[union-attr]
                return f"{fn}({lv}, {rv})"
            first, later = self._reuse(lv)
            return f"({later} {op} {rv} if {first}.__class__ in _NUM else {fn}({later}, {rv}))"
        if _is_num_lit(e.left):
            first, later = self._reuse(rv)
            guard = f"{first}.__class__ in _NUM"
            if op in ("/", "%"):
                guard += f" and {later}"
            return f"({lv} {op} {later} if {guard} else {fn}({lv}, {later}))"
        a, b = self._fresh(), self._fresh()
        guard = f"(({a} := {lv}).__class__ in _NUM) & (({b} := {rv}).__class__ in _NUM)"
        if op in ("/", "%"):
            guard = f"({guard}) and {b}"
        return f"({a} {op} {b} if {guard} else {fn}({a}, {b}))"

    def _bool_value(self, e: ast.Expr) -> str:
        return f"(True if {self.truth(e)} else (False if {self.false(e)} else None))"

    def _ref(self, e: ast.Ref) -> str:
        if self.context == "match" and len(e.path) == 1 and e.path[0] in self.measures:
            return self.measures[e.path[0]]
        r = ast.resolve_ref(e.path, self.stages, self.lets)
        if r.kind == "special":
            return r.head  # `key` and `ts` are parameters of every generated function
        if r.kind == "let":
            base = f"lets[{self.let_index[r.head]}]"
            if self.context == "match":
                base = f"_evlet(path.ev, {self.let_index[r.head]})"
            return base if not r.path else f"_path({base}, {r.path!r})"
        if r.kind == "field":
            return self._field(r.path)
        return self._stage_value(self.stage_index[r.head], r.path)

    def _stage_value(self, stage: int, path: tuple[str, ...]) -> str:
        ev = self._stage_event(stage)
        if not path:
            return "None"  # a bare stage name is not a value (the checker rejects it)
        return self._event_value(ev, path)

    def _event_value(self, ev: str, path: tuple[str, ...]) -> str:
        if path[0] in self.lets:
            base = f"_evlet({ev}, {self.let_index[path[0]]})"
            return base if len(path) == 1 else f"_path({base}, {path[1:]!r})"
        first, later = self._reuse(ev)
        if path == ("ts",):
            return f"({later}.ts if {first} is not None else None)"
        if len(path) == 1:
            return f"({later}.data.get({_lit(path[0])}) if {first} is not None else None)"
        return f"_evf({ev}, {path!r})"

    def _stage_arg(self, e: ast.Expr) -> int:
        assert isinstance(e, ast.Ref) and e.path[0] in self.stages, "checker: stage argument"
        return self.stage_index[e.path[0]]

    def _member(self, e: ast.Member) -> str:
        obj = e.obj
        if isinstance(obj, ast.Call) and obj.name in ("first", "last"):
            stage = self._stage_arg(obj.args[0])
            if stage in self.bound:
                ev = self.bound[stage]
            elif obj.name == "last":
                ev = f"_one(path, {stage})"
            else:
                ev = f"_first(_stage(path, {stage}))"
            return self._event_value(ev, e.path)
        return f"_path({self.value(obj)}, {e.path!r})"

    def _call(self, e: ast.Call) -> str:
        name = e.name
        if name == "count":
            return f"_len(_stage(path, {self._stage_arg(e.args[0])}))"
        if name in _AGG_FN:
            arg = e.args[0]
            stage = _single_stage(arg, self.stages)
            if stage is None:
                return f"{_AGG_FN[name]}(({self.value(arg)},))"
            idx = self.stage_index[stage]
            var = self._fresh("_x")
            saved = self.bound.get(idx)
            self.bound[idx] = var
            inner = self.value(arg)
            if saved is None:
                del self.bound[idx]
            else:
                self.bound[idx] = saved
            return f"{_AGG_FN[name]}([{inner} for {var} in _stage(path, {idx})])"
        if name in ("first", "last"):
            return "None"  # used without a field; the checker rejects it
        if name == "exists":
            return f"({self.value(e.args[0])} is not None)"
        if name == "if":
            c, a, b = e.args
            return f"({self.value(a)} if {self.truth(c)} else {self.value(b)})"
        if name == "score":
            self.score_calls.append(
                ScoreCall(model=_model_name(e), features=e.kwargs, span=e.span)
            )
            return f"sc[{len(self.score_calls) - 1}]"
        fn = _SCALAR_FN[name]
        return f"{fn}({', '.join(self.value(a) for a in e.args)})"

    # ------------------------------------------------------------ booleans

    def truth(self, e: ast.Expr) -> str:
        return self._bool(e, True)

    def false(self, e: ast.Expr) -> str:
        return self._bool(e, False)

    def _bool(self, e: ast.Expr, want: bool) -> str:
        if isinstance(e, ast.BoolOp):
            a, b = self._bool(e.left, want), self._bool(e.right, want)
            joiner = "and" if (e.op == "and") == want else "or"
            return f"({a} {joiner} {b})"
        if isinstance(e, ast.Unary) and e.op == "not":
            return self._bool(e.operand, not want)
        if isinstance(e, ast.Literal):
            if e.value is True or e.value is False:
                return "True" if e.value is want else "False"
            return "False"
        if isinstance(e, ast.Compare):
            return self._compare(e, want)
        if isinstance(e, ast.Call) and e.name == "exists":
            v = self.value(e.args[0])
            return f"({v} is not None)" if want else f"({v} is None)"
        return f"(_truth({self.value(e)}) is {want})"

    def _compare(self, e: ast.Compare, want: bool) -> str:
        op: str = e.op
        left, right = e.left, e.right
        if isinstance(left, ast.Literal) and isinstance(right, ast.Literal):
            # constant comparison: the total helpers (no fast path to specialise)
            fn = {**_CMP_FN, "==": "_eq", "!=": "_ne", "in": "_in"}.get(op)
            if fn is not None:
                return f"({fn}({self.value(left)}, {self.value(right)}) is {want})"
            if op == "not in":
                return f"(_in({self.value(left)}, {self.value(right)}) is {not want})"
        if op in _CMP_FN:
            if _is_num_lit(left) and not _is_num_lit(right):
                left, right, op = right, left, _CMP_FLIP[op]
            if _is_num_lit(right):
                first, later = self._reuse(self.value(left))
                c = self.value(right)
                fast = op if want else _CMP_NOT[op]
                return (
                    f"({later} {fast} {c} if {first}.__class__ in _NUM "
                    f"else {_CMP_FN[op]}({later}, {c}) is {want})"
                )
            a, b = self._fresh(), self._fresh()
            lv, rv = self.value(left), self.value(right)
            fast = op if want else _CMP_NOT[op]
            return (
                f"({a} {fast} {b} if (({a} := {lv}).__class__ in _NUM) & "
                f"(({b} := {rv}).__class__ in _NUM) else {_CMP_FN[op]}({a}, {b}) is {want})"
            )
        if op in ("==", "!="):
            positive = (op == "==") == want  # True: test equality, False: inequality
            if _is_nonnull_lit(left) and not _is_nonnull_lit(right):
                left, right = right, left
            if _is_nonnull_lit(right):
                c = self.value(right)
                if positive:
                    return f"({self.value(left)} == {c})"
                first, later = self._reuse(self.value(left))
                return f"({first} is not None and {later} != {c})"
            a, b = self._fresh(), self._fresh()
            lv, rv = self.value(left), self.value(right)
            both = f"((({a} := {lv}) is not None) & (({b} := {rv}) is not None))"
            return f"({both} and {a} {'==' if positive else '!='} {b})"
        if op in ("in", "not in"):
            positive = (op == "in") == want
            if not isinstance(left, ast.Literal) and isinstance(right, ast.ListLit) and all(
                isinstance(i, ast.Literal) and i.value is not None for i in right.items
            ):
                c = self.value(right)
                first, later = self._reuse(self.value(left))
                test = "in" if positive else "not in"
                return f"({first} is not None and {later} {test} {c})"
            inner = f"_in({self.value(left)}, {self.value(right)})"
            return f"({inner} is {positive})"
        if op == "matches":
            assert isinstance(right, ast.Literal) and isinstance(right.value, str)
            rx = self.module.const(f"_re({_lit(right.value)})")
            return f"(_matches({self.value(left)}, {rx}) is {want})"
        fn = {"contains": "_contains", "starts with": "_starts_with", "ends with": "_ends_with"}[op]
        return f"({fn}({self.value(left)}, {self.value(right)}) is {want})"


def _is_const(src: str) -> bool:
    return src in ("None", "True", "False") or bool(re.match(r"^-?[0-9]", src)) or (
        src[:1] in ("'", '"')
    )


def _is_num_lit(e: ast.Expr) -> bool:
    return isinstance(e, ast.Literal) and e.value.__class__ in (int, float)


def _is_nonnull_lit(e: ast.Expr) -> bool:
    return isinstance(e, ast.Literal) and e.value is not None


def _model_name(e: ast.Call) -> str:
    arg = e.args[0]
    assert isinstance(arg, ast.Ref), "checker: score's first argument is a model name"
    return ".".join(arg.path)


def _single_stage(e: ast.Expr, stages: frozenset[str]) -> str | None:
    for r in iter_refs(e):
        if r.path[0] in stages:
            return r.path[0]
    return None


def iter_refs(e: ast.Expr) -> Iterable[ast.Ref]:
    """Every Ref in an expression (score feature expressions included)."""
    stack: list[ast.Expr] = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, ast.Ref):
            yield x
        elif isinstance(x, ast.ListLit):
            stack.extend(x.items)
        elif isinstance(x, ast.Member):
            stack.append(x.obj)
        elif isinstance(x, ast.Call):
            stack.extend(x.args)
            stack.extend(v for _, v in x.kwargs)
        elif isinstance(x, ast.Unary):
            stack.append(x.operand)
        elif isinstance(x, (ast.Binary, ast.Compare, ast.BoolOp)):
            stack.append(x.left)
            stack.append(x.right)


def is_event_local(e: ast.Expr, stages: frozenset[str]) -> bool:
    """True if the expression reads only the current event (fields, lets, key, ts)."""
    stack: list[ast.Expr] = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, ast.Ref):
            if x.path[0] in stages:
                return False
        elif isinstance(x, ast.Call):
            if x.name in ast.AGGREGATES or x.name == "score":
                return False
            stack.extend(x.args)
        elif isinstance(x, ast.ListLit):
            stack.extend(x.items)
        elif isinstance(x, ast.Member):
            stack.append(x.obj)
        elif isinstance(x, ast.Unary):
            stack.append(x.operand)
        elif isinstance(x, (ast.Binary, ast.Compare, ast.BoolOp)):
            stack.append(x.left)
            stack.append(x.right)
    return True


def conjuncts(e: ast.Expr) -> list[ast.Expr]:
    if isinstance(e, ast.BoolOp) and e.op == "and":
        return conjuncts(e.left) + conjuncts(e.right)
    return [e]


def and_all(parts: list[ast.Expr]) -> ast.Expr:
    if not parts:
        return ast.Literal(True)
    out = parts[0]
    for p in parts[1:]:
        out = ast.BoolOp("and", out, p)
    return out


def or_all(parts: list[ast.Expr]) -> ast.Expr:
    if not parts:
        return ast.Literal(False)
    if any(isinstance(p, ast.Literal) and p.value is True for p in parts):
        return ast.Literal(True)
    out = parts[0]
    for p in parts[1:]:
        out = ast.BoolOp("or", out, p)
    return out


def local_part(e: ast.Expr, stages: frozenset[str]) -> ast.Expr:
    """The conjuncts of a condition that read only the current event: implied by it."""
    return and_all([c for c in conjuncts(e) if is_event_local(c, stages)])


# ---------------------------------------------------------------- assembling a module


@dataclass(frozen=True)
class FunctionSource:
    name: str
    lines: tuple[str, ...]
    source_line: int  # the pattern line this function was generated from
    what: str


class SourceBuilder:
    """Collects functions, emits the module text and maps its lines back to patterns."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.module = Module()
        self.functions: list[FunctionSource] = []

    def add(self, name: str, params: str, body: list[str], source_line: int, what: str) -> None:
        lines = [f"def {name}({params}):"] + ["    " + ln for ln in body]
        self.functions.append(FunctionSource(name, tuple(lines), source_line, what))

    def add_factory(
        self, name: str, params: str, inner: list[tuple[str, str, list[str], str]],
        returns: str, source_line: int,
        origins: dict[str, list[tuple[int, str] | None]] | None = None,
    ) -> None:
        """`def name(params):` defining the `inner` functions (name, params, body, what)
        and returning `returns`: the inner functions close over the factory's
        parameters (values the caller passes, instead of globals of the module).
        `origins[fname][i]`: (pattern line, what) of body line i when it is not the
        function's own (code written in from elsewhere, e.g. a condition)."""
        self.functions.append(FunctionSource(name, (f"def {name}({params}):",), source_line,
                                             f"{name} header"))
        for fname, fparams, body, what in inner:
            lines = [f"    def {fname}({fparams}):"] + ["        " + ln for ln in body]
            marks = (origins or {}).get(fname)
            if not marks:
                self.functions.append(FunctionSource(fname, tuple(lines), source_line, what))
                continue
            # one span per run of lines with the same origin (a blank line between
            # spans is still inside the function)
            spans: list[tuple[tuple[int, str], list[str]]] = []
            for ln, mark in zip(lines, [None, *marks], strict=True):
                origin = mark or (source_line, what)
                if spans and spans[-1][0] == origin:
                    spans[-1][1].append(ln)
                else:
                    spans.append((origin, [ln]))
            self.functions.extend(FunctionSource(fname, tuple(ls), line, w)
                                  for (line, w), ls in spans)
        self.functions.append(FunctionSource(name, (f"    return {returns}",), source_line,
                                             f"{name} result"))

    def render(self) -> tuple[str, list[tuple[int, int, int, str]]]:
        out = [f"# generated by cep for pattern {self.title!r}; deterministic, do not edit"]
        out.extend(self.module.consts)
        spans: list[tuple[int, int, int, str]] = []
        prev = None
        for fn in self.functions:
            if not (prev is not None and fn.name == prev.name and fn.lines[0].startswith(" ")
                    and not fn.lines[0].lstrip().startswith(("def ", "return "))):
                out.append("")  # a new function (not the next span of the same one)
            prev = fn
            first = len(out) + 1
            out.extend(fn.lines)
            spans.append((first, len(out), fn.source_line, fn.what))
        return "\n".join(out) + "\n", spans


_CODE_CACHE: dict[str, types.CodeType] = {}


def build_module(builder: SourceBuilder, pattern_file: str | None) -> CompiledModule:
    source, spans = builder.render()
    digest = hashlib.sha256(source.encode()).hexdigest()
    filename = f"<cep:{builder.title}:{digest[:12]}>"
    code = _CODE_CACHE.get(digest)
    if code is None:
        code = compile(source, filename, "exec")
        _CODE_CACHE[digest] = code
    ns = env.make_namespace()
    exec(code, ns)
    return CompiledModule(source, filename, ns, tuple(spans), pattern_file)
