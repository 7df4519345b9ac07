// Health at a glance: the service's own figures (GET /stats, the same numbers as
// /metrics), polled every 2 s, as small charts of the last few minutes.

import { get } from "./api";
import { h, clear, byId } from "./dom";
import { sparkline, fmt } from "./charts";

interface Stats {
  taken_ms: number; events_in: number; alerts: number; partial_matches: number;
  pending_timers: number; watermark_lag_s: Record<string, number>;
  scoring: Record<string, { calls: number; seconds: number }>;
  dead_letters: Record<string, number>;
}

const KEEP = 90;

export class HealthView {
  prev: Stats | null = null;
  prevAt = 0;
  series = new Map<string, number[]>();
  timer: number | undefined;

  mount(): void {
    void this.poll();
    this.timer = window.setInterval(() => {
      if (document.visibilityState === "visible") void this.poll();
    }, 2000);
  }

  push(name: string, v: number): void {
    const s = this.series.get(name) ?? [];
    s.push(v);
    if (s.length > KEEP) s.shift();
    this.series.set(name, s);
  }

  async poll(): Promise<void> {
    let s: Stats;
    try { s = await get<Stats>("/stats"); } catch { return; }
    const now = performance.now();
    if (this.prev) {
      const dt = Math.max(0.001, (now - this.prevAt) / 1000);
      this.push("events/s", (s.events_in - this.prev.events_in) / dt);
      this.push("alerts/s", (s.alerts - this.prev.alerts) / dt);
      for (const [m, f] of Object.entries(s.scoring)) {
        const p = this.prev.scoring[m];
        const calls = f.calls - (p?.calls ?? 0);
        this.push(`scoring ms/call · ${m}`,
                  calls > 0 ? ((f.seconds - (p?.seconds ?? 0)) / calls) * 1000 : 0);
      }
    }
    const lags = Object.values(s.watermark_lag_s);
    this.push("watermark lag s", lags.length ? Math.max(...lags) : 0);
    this.push("live partial matches", s.partial_matches);
    this.push("pending timers", s.pending_timers);
    this.prev = s;
    this.prevAt = now;
    this.render(s);
  }

  render(s: Stats): void {
    const host = byId("health-charts");
    clear(host);
    for (const [name, values] of this.series) {
      const last = values[values.length - 1] ?? 0;
      host.appendChild(h("figure", { class: "chart", "data-name": name },
        h("figcaption", {}, h("span", {}, name), " ", h("b", {}, fmt(last))),
        sparkline(values, 260, 60, name)));
    }
    const dl = Object.entries(s.dead_letters);
    byId("health-dead").textContent = dl.length
      ? "dead letters: " + dl.map(([k, v]) => `${k} ${v}`).join(", ") : "no dead letters";
  }
}
