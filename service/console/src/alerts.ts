// Live alerts over server-sent events (EventSource resumes with Last-Event-ID by
// itself), with filters; an alert opens to its events and measures. Dead letters by
// reason.

import { get, AlertRecord } from "./api";
import { h, clear, byId, table, fmtTime, json } from "./dom";
import { keyText } from "./patterns";
import { status } from "./shell";

interface Envelope { id: number; topic: string | null; alert: AlertRecord }

const MAX_SHOWN = 500;

export class AlertsView {
  source: EventSource | null = null;
  seen = new Set<string>();
  alerts: AlertRecord[] = [];

  mount(): void {
    byId("alert-filter-apply").addEventListener("click", () => void this.connect());
    byId("dead-refresh").addEventListener("click", () => void this.deadLetters());
    void this.connect();
  }

  filters(): URLSearchParams {
    const q = new URLSearchParams();
    for (const f of ["pattern", "key", "severity"]) {
      const v = byId<HTMLInputElement>(`alert-filter-${f}`).value.trim();
      if (v) q.set(f, v);
    }
    return q;
  }

  async connect(): Promise<void> {
    this.source?.close();
    this.seen.clear();
    this.alerts = [];
    clear(byId("alert-list"));
    clear(byId("alert-detail"));
    const q = this.filters();
    let recent: { alerts: Envelope[]; last_id: number };
    try {
      recent = await get<{ alerts: Envelope[]; last_id: number }>(
        `/alerts?${q.toString()}&limit=100`);
    } catch (e) {
      status(`cannot read alerts: ${(e as Error).message}`, true);
      return;
    }
    for (const env of recent.alerts) this.add(env.alert);
    q.set("after", String(recent.last_id));
    const es = new EventSource(`/alerts/stream?${q.toString()}`);
    this.source = es;
    const state = byId("stream-state");
    es.onopen = () => { state.textContent = "live"; state.className = "ok"; };
    es.onerror = () => { state.textContent = "reconnecting…"; state.className = "bad"; };
    es.addEventListener("alert", (ev) => {
      this.add(JSON.parse((ev as MessageEvent<string>).data) as AlertRecord);
    });
    es.addEventListener("gap", (ev) => {
      const g = JSON.parse((ev as MessageEvent<string>).data) as { from: number; to: number };
      byId("alert-list").prepend(h("li", { class: "gap" },
        `alerts ${g.from}–${g.to} left the service's buffer before this page saw them`));
    });
  }

  add(a: AlertRecord): void {
    if (this.seen.has(a.alert_id)) return;  // deduplicate on alert_id
    this.seen.add(a.alert_id);
    this.alerts.push(a);
    const li = h("li", { class: `alert sev-${a.severity}`, "data-pattern": a.pattern,
                         "data-alert-id": a.alert_id, tabindex: 0 },
      h("span", { class: "time" }, fmtTime(a.time)), " ",
      h("span", { class: "sev" }, a.severity), " ",
      h("b", {}, a.pattern), ` v${a.pattern_version} `,
      h("span", { class: "key" }, keyText(a.key)),
      a.kind !== "match" ? h("span", { class: "kind" }, ` (${a.kind})`) : null);
    li.addEventListener("click", () => this.open(a, li));
    li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") this.open(a, li); });
    const list = byId("alert-list");
    list.prepend(li);
    while (list.children.length > MAX_SHOWN) list.lastChild?.remove();
    byId("alert-count").textContent = `${this.seen.size} alerts`;
  }

  open(a: AlertRecord, li: HTMLElement): void {
    for (const x of document.querySelectorAll("#alert-list li.selected")) {
      x.classList.remove("selected");
    }
    li.classList.add("selected");
    const d = byId("alert-detail");
    clear(d);
    d.appendChild(h("h3", {}, `${a.pattern} v${a.pattern_version} · ${keyText(a.key)}`));
    d.appendChild(h("p", {}, `${a.kind}, severity ${a.severity}, at ${fmtTime(a.time)}`
      + (a.window ? `; window ${fmtTime(a.window.start)} – ${fmtTime(a.window.end)}` : "")));
    d.appendChild(h("h4", {}, "Measures"));
    d.appendChild(table(["measure", "value"], Object.entries(a.measures ?? {})
      .map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]), "list measures"));
    for (const [stage, evs] of Object.entries(a.events ?? {})) {
      d.appendChild(h("h4", {}, `Stage ${stage} (${evs.length} event${evs.length === 1 ? "" : "s"})`));
      const cols = [...new Set(evs.flatMap((e) => Object.keys(e)))];
      d.appendChild(table(cols, evs.map((e) => cols.map((c) => {
        const v = e[c];
        return v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v);
      })), "list events"));
    }
    d.appendChild(h("details", {}, h("summary", {}, "JSON"), h("pre", {}, json(a))));
  }

  async deadLetters(): Promise<void> {
    const host = byId("dead-letters");
    try {
      const r = await get<{ reasons: Record<string, number>;
        dead_letters: { source: string; reason: string; detail: string; event: unknown }[] }>(
        "/dead-letters/recent?limit=50");
      clear(host);
      const reasons = Object.entries(r.reasons);
      host.appendChild(reasons.length
        ? table(["reason", "dead letters"], reasons, "list reasons")
        : h("p", { class: "muted" }, "No dead letters."));
      if (r.dead_letters.length) {
        host.appendChild(table(["source", "reason", "detail", "event"],
          r.dead_letters.slice().reverse().map((x) => [x.source, x.reason, x.detail,
            typeof x.event === "string" ? x.event : JSON.stringify(x.event)]), "list"));
      }
    } catch (e) {
      host.textContent = `cannot read dead letters: ${(e as Error).message}`;
    }
  }
}
