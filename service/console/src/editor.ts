// The pattern editor: CodeMirror 6 with a tokenizer for the .cep language, live
// diagnostics from POST /patterns/validate, and completion of keywords, functions,
// stage and let names, models and field names (from recent events).

import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter,
  drawSelection, highlightSpecialChars,
} from "@codemirror/view";
import { EditorState } from "@codemirror/state";
import {
  StreamLanguage, HighlightStyle, syntaxHighlighting, bracketMatching, indentOnInput,
} from "@codemirror/language";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { tags as t } from "@lezer/highlight";
import { linter, lintGutter, lintKeymap, Diagnostic as CmDiagnostic } from "@codemirror/lint";
import { autocompletion, completionKeymap, CompletionContext, CompletionResult, Completion }
  from "@codemirror/autocomplete";
import { call, Diagnostic, Language } from "./api";

const SEVERITIES = new Set(["low", "medium", "high", "critical"]);

export function cepLanguage(keywords: Set<string>, functions: Set<string>) {
  return StreamLanguage.define<{ inString: false }>({
    name: "cep",
    startState: () => ({ inString: false }),
    token(stream) {
      if (stream.eatSpace()) return null;
      if (stream.match(/#.*/)) return "comment";
      if (stream.match(/"(?:[^"\\]|\\.)*"?/) || stream.match(/'(?:[^'\\]|\\.)*'?/)) {
        return "string";
      }
      if (stream.match(/[0-9]+(?:ms|s|m|h|d)(?![A-Za-z0-9_])/)) return "unit";
      if (stream.match(/[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/)) return "number";
      if (stream.match(/[A-Za-z_][A-Za-z0-9_]*/)) {
        const w = stream.current();
        if (w === "true" || w === "false" || w === "null") return "atom";
        if (SEVERITIES.has(w)) return "atom";
        if (keywords.has(w)) return "keyword";
        if (functions.has(w) && stream.peek() === "(") return "function";
        return "variableName";
      }
      if (stream.match(/==|!=|<=|>=|[<>+\-*/%=]/)) return "operator";
      if (stream.match(/[{}]/)) return "brace";
      stream.next();
      return null;
    },
    tokenTable: { function: t.function(t.variableName), unit: t.unit, brace: t.brace },
  });
}

const style = HighlightStyle.define([
  { tag: t.keyword, color: "#7b3fa0", fontWeight: "bold" },
  { tag: t.string, color: "#0a7d3b" },
  { tag: [t.number, t.unit], color: "#b25b00" },
  { tag: t.atom, color: "#0057b0" },
  { tag: t.comment, color: "#7a7a7a", fontStyle: "italic" },
  { tag: t.function(t.variableName), color: "#005f87" },
  { tag: t.operator, color: "#444" },
]);

/** Stage and let names the text defines (a cheap scan; the checker is the truth). */
export function definedNames(text: string): { stages: string[]; lets: string[] } {
  const stages = new Set<string>();
  const lets = new Set<string>();
  const body = text.replace(/#.*$/gm, "").replace(/"(?:[^"\\\n]|\\.)*"/g, '""');
  const m = body.split(/\bmatch\b/);
  if (m.length > 1) {
    const matchPart = m.slice(1).join(" ").split(/\b(?:emit|on\s+timeout)\b/)[0];
    const re = /(?:^|\bthen\s+any|\bthen|\bnext|\bnot)\s+([A-Za-z_][A-Za-z0-9_]*)/g;
    for (const x of matchPart.matchAll(re)) {
      if (!["not", "any", "where"].includes(x[1])) stages.add(x[1]);
    }
  }
  for (const x of body.matchAll(/\blet\s+([A-Za-z_][A-Za-z0-9_]*)/g)) lets.add(x[1]);
  return { stages: [...stages], lets: [...lets] };
}

/** Streams named in `from`, to prefer their fields. */
function streamsOf(text: string): string[] {
  const m = /\bfrom\s+([A-Za-z0-9_.,\s-]+?)\s*\n/.exec(text);
  return m ? m[1].split(",").map((s) => s.trim()).filter(Boolean) : [];
}

export function completions(lang: Language) {
  const kw = lang.keywords.map((k): Completion => ({ label: k, type: "keyword" }));
  const fn = lang.functions.map((f): Completion => ({
    label: f.name, type: "function", detail: f.kind, apply: f.name + "(",
  }));
  const models = Object.entries(lang.models).map(([m, feats]): Completion => ({
    label: m, type: "class", detail: "model: " + feats.join(", "),
  }));
  return (ctx: CompletionContext): CompletionResult | null => {
    const word = ctx.matchBefore(/[A-Za-z_][A-Za-z0-9_.]*/);
    if (!word && !ctx.explicit) return null;
    const from = word ? word.from : ctx.pos;
    const typed = word ? word.text : "";
    const text = ctx.state.doc.toString();
    const streams = streamsOf(text);
    const fieldSet = new Set<string>();
    const sources = streams.filter((s) => s in lang.fields);
    for (const s of (sources.length ? sources : Object.keys(lang.fields))) {
      for (const f of lang.fields[s]) fieldSet.add(f);
    }
    const { stages, lets } = definedNames(text);
    const dot = typed.lastIndexOf(".");
    if (dot >= 0) {
      // `stage.field`: complete the field part
      const options = [...fieldSet].map((f): Completion => ({ label: f, type: "property",
                                                              detail: "field" }));
      return { from: from + dot + 1, options, validFor: /^[A-Za-z0-9_.]*$/ };
    }
    const options: Completion[] = [
      ...kw, ...fn, ...models,
      ...stages.map((s): Completion => ({ label: s, type: "variable", detail: "stage" })),
      ...lets.map((s): Completion => ({ label: s, type: "variable", detail: "let" })),
      ...[...fieldSet].map((f): Completion => ({ label: f, type: "property",
                                                 detail: "field" })),
    ];
    return { from, options, validFor: /^[A-Za-z0-9_]*$/ };
  };
}

export function toCm(state: EditorState, d: Diagnostic): CmDiagnostic {
  const doc = state.doc;
  const pos = (line: number, col: number) => {
    const l = doc.line(Math.max(1, Math.min(line, doc.lines)));
    return Math.min(l.from + Math.max(0, col - 1), l.to);
  };
  let from = pos(d.line, d.column);
  let to = pos(d.end_line || d.line, d.end_column || d.column + 1);
  if (to <= from) {
    to = Math.min(from + 1, doc.length);
    if (to === from && from > 0) from -= 1;
  }
  return {
    from, to, severity: d.severity === "error" ? "error" : "warning",
    message: `${d.code}: ${d.message}` + (d.hint ? `\nhint: ${d.hint}` : ""),
    source: "cep",
  };
}

export interface EditorHandle {
  view: EditorView;
  setText(text: string): void;
  text(): string;
}

export function makeEditor(parent: HTMLElement, lang: Language,
                           onDiagnostics: (ds: Diagnostic[], ok: boolean,
                                           names: string[]) => void,
                           onChange: () => void): EditorHandle {
  const fnNames = new Set(lang.functions.map((f) => f.name));
  const validate = linter(async (view) => {
    const text = view.state.doc.toString();
    try {
      const r = await call<{ ok: boolean; diagnostics: Diagnostic[]; patterns: string[] }>(
        "POST", "/patterns/validate", text, "text/plain; charset=utf-8");
      if (view.state.doc.toString() !== text) return [];  // stale: the next run reports
      onDiagnostics(r.diagnostics, r.ok, r.patterns);
      return r.diagnostics.map((d) => toCm(view.state, d));
    } catch (e) {
      onDiagnostics([], false, []);
      return [];
    }
  }, { delay: 350 });
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: "",
      extensions: [
        // basicSetup without auto-closing brackets (typed text stays as typed)
        lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), history(),
        drawSelection(), indentOnInput(), bracketMatching(), highlightActiveLine(),
        keymap.of([...completionKeymap, ...lintKeymap, ...defaultKeymap, ...historyKeymap,
                   indentWithTab]),
        cepLanguage(new Set(lang.keywords), fnNames),
        syntaxHighlighting(style),
        autocompletion({ override: [completions(lang)], activateOnTyping: true }),
        validate,
        lintGutter(),
        EditorView.updateListener.of((u) => { if (u.docChanged) onChange(); }),
        EditorView.theme({ "&": { height: "100%" }, ".cm-scroller": { overflow: "auto" } }),
      ],
    }),
  });
  return {
    view,
    setText(text: string) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    text: () => view.state.doc.toString(),
  };
}
