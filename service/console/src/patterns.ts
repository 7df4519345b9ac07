// Patterns screen: the loaded patterns, the editor with live diagnostics, backtests,
// deploy with the version diff and draining, delete, history and roll back.

import { call, get, ApiError, Diagnostic, Language, PatternDetail, PatternSummary, AlertRecord }
  from "./api";
import { h, clear, byId, table, fmtTime } from "./dom";
import { makeEditor, EditorHandle } from "./editor";
import { diffLines } from "./diff";
import { timeline, fmt } from "./charts";
import { status, canChange } from "./shell";

interface Backtest {
  patterns: string[]; events: number; alerts: AlertRecord[]; alert_count: number;
  per_key: { pattern: string; key: string; alerts: number }[];
  dead_letters: { reason: string; detail: string }[];
  dead_letter_reasons: Record<string, number>;
  scores: Record<string, Record<string, number>>;
  incidents: { label: string; pattern: string; start: number; end: number;
               detected: boolean }[];
  comparisons: { pattern: string; deployed_version: number; deployed_alerts: number;
                 edited_alerts: number; gained: AlertRecord[]; lost: AlertRecord[];
                 gained_count: number; lost_count: number }[];
  first_ms: number | null; last_ms: number | null; elapsed_ms: number;
}

interface History {
  name: string; current_version: number | null;
  versions: { version: number; origin: string; loaded_at: string; source: string;
              current: boolean; draining: boolean }[];
}

const NEW_PATTERN = `pattern my_pattern {
  description "what it finds"
  from transactions
  key card_id
  within 10m
  match
    tiny{3,} where type == "purchase" and amount < 2.00
    then big where type == "purchase" and amount > 50 * avg(tiny.amount)
  emit severity high { card = key, amount = big.amount }
}
`;

export function keyText(k: unknown): string {
  return Array.isArray(k) ? k.map(String).join(",") : k === null || k === undefined ? ""
    : String(k);
}

export class PatternsView {
  editor!: EditorHandle;
  lastOk = false;
  alertsByPattern: Record<string, number> = {};
  prevAlerts: { at: number; counts: Record<string, number> } | null = null;
  ratePerMin: Record<string, number> = {};
  drainTimer: number | undefined;

  constructor(private lang: Language) {}

  mount(): void {
    this.editor = makeEditor(byId("editor"), this.lang,
      (ds, ok, names) => {
        this.showDiagnostics(ds, ok);
        // one pattern in the text: deploy it under its own name
        if (names.length === 1) byId<HTMLInputElement>("pattern-name").value = names[0];
      }, () => { byId("deploy-diff").hidden = true; });
    byId("pattern-new").addEventListener("click", () => this.open(null));
    byId("backtest-run").addEventListener("click", () => void this.backtest());
    byId("deploy").addEventListener("click", () => void this.prepareDeploy());
    byId("deploy-confirm").addEventListener("click", () => void this.deploy());
    byId("deploy-cancel").addEventListener("click", () => { byId("deploy-diff").hidden = true; });
    byId("delete").addEventListener("click", () => void this.remove());
    byId("sample-kind").addEventListener("change", () => {
      byId("sample-file").hidden = byId<HTMLSelectElement>("sample-kind").value !== "file";
    });
    this.open(null);
    void this.refresh();
  }

  name(): string {
    return byId<HTMLInputElement>("pattern-name").value.trim();
  }

  async refresh(): Promise<void> {
    try {
      const { patterns } = await get<{ patterns: PatternSummary[] }>("/patterns");
      const stats = await get<{ alerts_by_pattern: Record<string, number> }>("/stats");
      const now = performance.now();
      if (this.prevAlerts && now - this.prevAlerts.at > 500) {
        const minutes = (now - this.prevAlerts.at) / 60000;
        for (const [p, n] of Object.entries(stats.alerts_by_pattern)) {
          this.ratePerMin[p] = (n - (this.prevAlerts.counts[p] ?? 0)) / minutes;
        }
      }
      this.prevAlerts = { at: now, counts: stats.alerts_by_pattern };
      this.alertsByPattern = stats.alerts_by_pattern;
      this.renderList(patterns);
    } catch (e) {
      status(`cannot list patterns: ${(e as Error).message}`, true);
    }
  }

  renderList(patterns: PatternSummary[]): void {
    const rows = patterns.map((p) => {
      const vs = p.versions ?? [];
      const draining = vs.filter((v) => v.draining).map((v) => `v${v.version}`).join(", ");
      const live = vs.reduce((s, v) => s + v.partial_matches, 0);
      const link = h("a", { href: "#", class: "pattern-link", "data-name": p.name,
                            onclick: (ev: Event) => { ev.preventDefault(); void this.open(p.name); } },
                     p.name);
      const rate = this.ratePerMin[p.name];
      return [link, `v${p.version}`, draining || "–", live, this.alertsByPattern[p.name] ?? 0,
              rate === undefined ? "–" : fmt(rate), p.origin];
    });
    const host = byId("pattern-list");
    clear(host);
    host.appendChild(rows.length ? table(["pattern", "version", "draining", "partial matches",
                                          "alerts", "alerts/min", "origin"], rows, "list")
      : h("p", { class: "muted" }, "No patterns loaded yet: write one and deploy it."));
  }

  async open(name: string | null): Promise<void> {
    byId("deploy-diff").hidden = true;
    clear(byId("backtest-results"));
    const nameInput = byId<HTMLInputElement>("pattern-name");
    if (name === null) {
      nameInput.value = "my_pattern";
      this.editor.setText(NEW_PATTERN);
      clear(byId("history"));
      return;
    }
    const p = await get<PatternDetail>(`/patterns/${encodeURIComponent(name)}`);
    nameInput.value = p.name;
    this.editor.setText(p.source);
    await this.showHistory(p.name);
  }

  showDiagnostics(ds: Diagnostic[], ok: boolean): void {
    this.lastOk = ok;
    const host = byId("diagnostics");
    clear(host);
    byId("validity").textContent = ok ? (ds.length ? "compiles, with warnings" : "compiles")
      : "does not compile";
    byId("validity").className = ok ? "ok" : "bad";
    for (const d of ds) {
      const li = h("li", { class: `diag ${d.severity}`, "data-line": d.line,
                           "data-column": d.column, "data-code": d.code },
        h("span", { class: "pos" }, `${d.line}:${d.column}`), " ",
        h("span", { class: "code" }, d.code), " ", h("span", { class: "msg" }, d.message));
      if (d.hint) li.appendChild(h("div", { class: "hint" }, `hint: ${d.hint}`));
      li.addEventListener("click", () => {
        const line = this.editor.view.state.doc.line(
          Math.min(d.line, this.editor.view.state.doc.lines));
        const pos = Math.min(line.from + d.column - 1, line.to);
        this.editor.view.dispatch({ selection: { anchor: pos }, scrollIntoView: true });
        this.editor.view.focus();
      });
      host.appendChild(li);
    }
  }

  async sample(): Promise<Record<string, unknown>> {
    const kind = byId<HTMLSelectElement>("sample-kind").value;
    const n = Math.max(1, Number(byId<HTMLInputElement>("sample-n").value) || 2000);
    if (kind !== "file") return { sample: kind, n };
    const f = byId<HTMLInputElement>("sample-file").files?.[0];
    if (!f) throw new Error("choose an events file (JSON array or JSON lines)");
    const text = await f.text();
    const trimmed = text.trim();
    let events: unknown[];
    if (trimmed.startsWith("[")) {
      events = JSON.parse(trimmed) as unknown[];
    } else {
      events = trimmed.split(/\r?\n/).filter((l) => l.trim()).map((l, i) => {
        try { return JSON.parse(l) as unknown; }
        catch { throw new Error(`line ${i + 1} of ${f.name} is not JSON`); }
      });
    }
    return { events };
  }

  async backtest(): Promise<void> {
    const out = byId("backtest-results");
    clear(out);
    out.appendChild(h("p", { class: "muted" }, "running…"));
    try {
      const body = { source: this.editor.text(), ...(await this.sample()) };
      const r = await call<Backtest>("POST", "/patterns/backtest", body);
      this.renderBacktest(r);
    } catch (e) {
      clear(out);
      out.appendChild(h("p", { class: "error", id: "backtest-error" }, errorText(e)));
    }
  }

  renderBacktest(r: Backtest): void {
    const out = byId("backtest-results");
    clear(out);
    out.appendChild(h("p", { id: "backtest-summary" },
      `${r.alert_count} alert${r.alert_count === 1 ? "" : "s"} from ${r.events} events `
      + `(${r.patterns.join(", ")}) in ${fmt(r.elapsed_ms)} ms`
      + (Object.keys(r.dead_letter_reasons).length ? "; dead letters: "
        + Object.entries(r.dead_letter_reasons).map(([k, v]) => `${k} ${v}`).join(", ") : "")));
    const scoreRows = Object.entries(r.scores).map(([p, s]) => [
      p, s.alerts, s.true_positives, pct(s.precision), s.incidents, s.detected, pct(s.recall)]);
    if (scoreRows.length) {
      out.appendChild(h("h4", {}, "Against the labels"));
      out.appendChild(table(["pattern", "alerts", "true positives", "precision",
                             "incidents", "detected", "recall"], scoreRows, "list scores"));
    }
    if (r.first_ms !== null && r.last_ms !== null) {
      out.appendChild(h("h4", {}, "Timeline: labelled incidents (detected / missed) and alerts"));
      out.appendChild(timeline(r.first_ms, r.last_ms,
        r.alerts.map((a) => ({ time: a.time, pattern: a.pattern, key: keyText(a.key) })),
        r.incidents));
    }
    for (const c of r.comparisons) {
      out.appendChild(h("h4", {}, `Compared with deployed ${c.pattern} v${c.deployed_version}`));
      out.appendChild(h("p", { class: "compare", "data-pattern": c.pattern },
        `deployed: ${c.deployed_alerts} alerts, edited: ${c.edited_alerts}; `
        + `gained ${c.gained_count}, lost ${c.lost_count}`));
      const rows = [
        ...c.gained.map((a) => ["gained", keyText(a.key), fmtTime(a.time), a.severity]),
        ...c.lost.map((a) => ["lost", keyText(a.key), fmtTime(a.time), a.severity]),
      ];
      if (rows.length) out.appendChild(table(["", "key", "time", "severity"], rows, "list"));
    }
    if (r.per_key.length) {
      out.appendChild(h("h4", {}, "Alerts per key"));
      out.appendChild(table(["pattern", "key", "alerts"],
        r.per_key.map((k) => [k.pattern, k.key, k.alerts]), "list per-key"));
    }
    if (r.alerts.length) {
      out.appendChild(h("h4", {}, `Alerts (first ${r.alerts.length})`));
      out.appendChild(table(["time", "pattern", "key", "severity", "measures"],
        r.alerts.slice(0, 100).map((a) => [fmtTime(a.time), a.pattern, keyText(a.key),
                                           a.severity, JSON.stringify(a.measures ?? {})]),
        "list backtest-alerts"));
    }
  }

  async prepareDeploy(): Promise<void> {
    const name = this.name();
    const panel = byId("deploy-diff");
    const body = byId("deploy-diff-body");
    clear(body);
    let old = "";
    let version = "new pattern";
    try {
      const p = await get<PatternDetail>(`/patterns/${encodeURIComponent(name)}`);
      old = p.source;
      version = `v${p.version} → v${p.version + 1}`;
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) { status(errorText(e), true); return; }
    }
    byId("deploy-diff-title").textContent = `Deploy ${name}: ${version}`;
    const pre = h("pre", { class: "diff" });
    for (const line of diffLines(old, this.editor.text())) {
      pre.appendChild(h("div", { class: line.op === "+" ? "add" : line.op === "-" ? "del" : "same" },
                        `${line.op} ${line.text}`));
    }
    body.appendChild(pre);
    panel.hidden = false;
  }

  async deploy(): Promise<void> {
    const name = this.name();
    byId("deploy-diff").hidden = true;
    try {
      const r = await call<{ version: number; previous_version: number | null; draining: number[] }>(
        "PUT", `/patterns/${encodeURIComponent(name)}`, this.editor.text(),
        "text/plain; charset=utf-8");
      status(`deployed ${name} v${r.version}` + (r.draining.length
        ? `; draining v${r.draining.join(", v")}` : ""));
      await this.refresh();
      await this.showHistory(name);
      this.watchDraining(name);
    } catch (e) {
      status(errorText(e), true);
    }
  }

  watchDraining(name: string): void {
    window.clearInterval(this.drainTimer);
    const host = byId("drain-status");
    const tick = async () => {
      try {
        const p = await get<PatternDetail>(`/patterns/${encodeURIComponent(name)}`);
        const dr = (p.versions ?? []).filter((v) => v.draining);
        host.textContent = dr.length
          ? dr.map((v) => `v${v.version} draining: ${v.partial_matches} partial matches, `
                     + `${v.pending_timers} timers`).join("; ")
          : `${name} v${p.version} runs alone (nothing draining)`;
        if (!dr.length) window.clearInterval(this.drainTimer);
      } catch { window.clearInterval(this.drainTimer); }
    };
    void tick();
    this.drainTimer = window.setInterval(() => void tick(), 1000);
  }

  async remove(): Promise<void> {
    const name = this.name();
    if (!window.confirm(`Unload ${name}? Its partial matches are dropped.`)) return;
    try {
      const r = await call<{ dropped_partial_matches: number }>(
        "DELETE", `/patterns/${encodeURIComponent(name)}`);
      status(`deleted ${name}; dropped ${r.dropped_partial_matches} partial matches`);
      await this.refresh();
      await this.showHistory(name);
    } catch (e) {
      status(errorText(e), true);
    }
  }

  async showHistory(name: string): Promise<void> {
    const host = byId("history");
    clear(host);
    let hist: History;
    try {
      hist = await get<History>(`/patterns/${encodeURIComponent(name)}/history`);
    } catch { return; }
    host.appendChild(h("h4", {}, `Versions of ${name}`));
    const rows = hist.versions.map((v) => {
      const actions = h("span", {});
      actions.appendChild(h("button", { class: "small", onclick: () => {
        this.editor.setText(v.source); status(`v${v.version} in the editor (not deployed)`);
      } }, "open"));
      if (!v.current) {
        actions.appendChild(h("button", { class: "small mutating rollback",
                                          "data-version": v.version,
                                          onclick: () => void this.rollback(name, v.version) },
                              "roll back"));
      }
      return [`v${v.version}`, v.current ? "current" : v.draining ? "draining" : "",
              v.origin, v.loaded_at, actions];
    });
    host.appendChild(table(["version", "", "origin", "loaded", ""], rows, "list"));
    canChange();
  }

  async rollback(name: string, version: number): Promise<void> {
    try {
      const r = await call<{ version: number }>(
        "POST", `/patterns/${encodeURIComponent(name)}/rollback`, { version });
      status(`rolled ${name} back to the text of v${version} (now v${r.version})`);
      await this.open(name);
      await this.refresh();
      this.watchDraining(name);
    } catch (e) {
      status(errorText(e), true);
    }
  }
}

function pct(x: number | undefined): string {
  return x === undefined ? "" : `${(x * 100).toFixed(1)}%`;
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 401) return "this needs the API token: enter it at the top right";
    const body = e.body as { diagnostics?: Diagnostic[] } | null;
    const ds = body?.diagnostics ?? [];
    return e.detail + ds.map((d) => `\n${d.line}:${d.column} ${d.message}`).join("");
  }
  return (e as Error).message ?? String(e);
}
