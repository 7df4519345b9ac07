// Small SVG charts: sparklines for the health page, the backtest timeline.

import { svg, fmtTime } from "./dom";

export function sparkline(values: number[], width = 260, height = 60,
                          label = ""): SVGElement {
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`,
                            class: "spark", role: "img" });
  if (label) root.appendChild(svg("title", {}, label));
  const top = values.length ? Math.max(...values) : 0;
  const max = Math.max(1e-9, top);
  const pts = values.map((v, i) => {
    const x = values.length > 1 ? (i / (values.length - 1)) * (width - 4) + 2 : width / 2;
    const y = height - 4 - (Math.max(0, v) / max) * (height - 16);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  root.appendChild(svg("line", { x1: 0, y1: height - 3, x2: width, y2: height - 3,
                                 class: "axis" }));
  if (pts.length) root.appendChild(svg("polyline", { points: pts.join(" "), class: "line" }));
  root.appendChild(svg("text", { x: 2, y: 10, class: "max" }, `max ${fmt(top)}`));
  return root;
}

export function fmt(v: number): string {
  if (!isFinite(v)) return "–";
  if (v === 0) return "0";
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

export interface TimelineAlert { time: number; pattern: string; key: string; }
export interface TimelineIncident { start: number; end: number; label: string;
                                    detected: boolean; }

/** Labelled incidents as bands (green: detected, red: missed) and alerts as ticks. */
export function timeline(first: number, last: number, alerts: TimelineAlert[],
                         incidents: TimelineIncident[], width = 900): SVGElement {
  const height = 90;
  const span = Math.max(1, last - first);
  const x = (t: number) => 40 + ((t - first) / span) * (width - 60);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`,
                            class: "timeline", role: "img" });
  root.appendChild(svg("text", { x: 0, y: 22, class: "lane" }, "labels"));
  root.appendChild(svg("text", { x: 0, y: 62, class: "lane" }, "alerts"));
  for (const inc of incidents) {
    const x1 = x(inc.start);
    const w = Math.max(3, x(inc.end) - x1);
    const r = svg("rect", { x: x1, y: 10, width: w, height: 18,
                            class: inc.detected ? "incident hit" : "incident miss" });
    r.appendChild(svg("title", {}, `${inc.label} ${inc.detected ? "detected" : "missed"}`
                      + ` ${fmtTime(inc.start)}`));
    root.appendChild(r);
  }
  for (const a of alerts) {
    const l = svg("line", { x1: x(a.time), x2: x(a.time), y1: 46, y2: 70, class: "alert" });
    l.appendChild(svg("title", {}, `${a.pattern} ${a.key} ${fmtTime(a.time)}`));
    root.appendChild(l);
  }
  root.appendChild(svg("line", { x1: 40, x2: width - 20, y1: 76, y2: 76, class: "axis" }));
  root.appendChild(svg("text", { x: 40, y: 88, class: "tick" }, fmtTime(first)));
  root.appendChild(svg("text", { x: width - 20, y: 88, class: "tick end" }, fmtTime(last)));
  return root;
}
