// Hand-drawn SVG charts (no library): bars over categories or hours, and histograms with band lines.
import { fmt, h, s } from "./dom.js";

const W = 520;
const H = 200;
const M = { top: 14, right: 12, bottom: 34, left: 48 };

function frame(label) {
  return s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart" }, s("title", { text: label }));
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  return Math.ceil(value / step) * step;
}

function yAxis(svg, max, unit) {
  const plotH = H - M.top - M.bottom;
  for (let i = 0; i <= 4; i += 1) {
    const v = (max * i) / 4;
    const y = M.top + plotH - (plotH * i) / 4;
    svg.append(s("line", { x1: M.left, x2: W - M.right, y1: y, y2: y, class: "grid" }),
      s("text", { x: M.left - 6, y: y + 4, class: "tick", "text-anchor": "end", text: fmt(v, 1) }));
  }
  if (unit) svg.append(s("text", { x: 4, y: M.top - 2, class: "tick", text: unit }));
}

// Bars: [{label, value, title?}]; empty data shows a message instead of an empty frame.
export function barChart(bars, { label, unit = "", empty = "No data in this range" } = {}) {
  if (!bars.length) return h("p", { class: "empty" }, empty);
  const svg = frame(label);
  const max = niceMax(Math.max(...bars.map((b) => b.value)));
  yAxis(svg, max, unit);
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const slot = plotW / bars.length;
  const every = Math.ceil(bars.length / 12);
  bars.forEach((bar, i) => {
    const height = (plotH * bar.value) / max;
    const x = M.left + i * slot + slot * 0.12;
    svg.append(s("rect", { x, y: M.top + plotH - height, width: slot * 0.76, height, class: "bar" },
      s("title", { text: bar.title || `${bar.label}: ${fmt(bar.value)} ${unit}` })));
    if (i % every === 0) {
      svg.append(s("text", { x: x + slot * 0.38, y: H - M.bottom + 14, class: "tick", "text-anchor": "middle",
        text: bar.label }));
    }
  });
  return svg;
}

// A histogram over edges (n+1 values) with vertical band lines [{at, label}].
export function histogram(edges, counts, { label, unit = "", bands = [] } = {}) {
  if (!counts.length || counts.every((c) => !c)) return h("p", { class: "empty" }, "No loads in this range");
  const svg = frame(label);
  const max = Math.max(4, niceMax(Math.max(...counts)));
  yAxis(svg, max, "loads");
  const lo = edges[0];
  const hi = edges[edges.length - 1];
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const xOf = (v) => M.left + (plotW * (v - lo)) / (hi - lo);
  counts.forEach((count, i) => {
    const x0 = xOf(edges[i]);
    const x1 = xOf(edges[i + 1]);
    const height = (plotH * count) / max;
    svg.append(s("rect", { x: x0 + 1, y: M.top + plotH - height, width: Math.max(0, x1 - x0 - 2), height, class: "bar" },
      s("title", { text: `${edges[i]}–${edges[i + 1]} ${unit}: ${count} loads` })));
  });
  for (let i = 0; i < edges.length; i += Math.ceil(edges.length / 9)) {
    svg.append(s("text", { x: xOf(edges[i]), y: H - M.bottom + 14, class: "tick", "text-anchor": "middle",
      text: `${edges[i]}${unit}` }));
  }
  for (const band of bands) {
    if (band.at < lo || band.at > hi) continue;
    const x = xOf(band.at);
    svg.append(s("line", { x1: x, x2: x, y1: M.top, y2: M.top + plotH, class: `band ${band.kind || ""}` }),
      s("text", { x: x + 3, y: M.top + 10, class: "band-label", text: band.label }));
  }
  return svg;
}

// Bin values into a histogram's counts.
export function binned(values, edges) {
  const counts = new Array(edges.length - 1).fill(0);
  for (const v of values) {
    if (v === null || v === undefined) continue;
    let i = edges.findIndex((e, k) => k < edges.length - 1 && v >= e && v < edges[k + 1]);
    if (i < 0) i = v < edges[0] ? 0 : counts.length - 1;  // outliers land in the end bins
    counts[i] += 1;
  }
  return counts;
}

export const PAYLOAD_BANDS = [
  { at: 90, label: "90 %", kind: "target" },
  { at: 110, label: "110 %", kind: "over" },
  { at: 120, label: "120 %", kind: "never" },
];

// Tonnes loaded per hour from `from` to `to` (ISO), one bar per hour (at most 72), labelled in the site's zone.
export function tonnesPerHour(cycles, from, to, timeZone) {
  const start = Date.parse(from);
  const hours = Math.min(72, Math.max(1, Math.ceil((Date.parse(to) - start) / 3600000)));
  const first = Math.floor(start / 3600000) * 3600000;
  const tonnes = new Array(hours).fill(0);
  for (const c of cycles) {
    const i = Math.floor((Date.parse(c.loaded_at) - first) / 3600000);
    if (i >= 0 && i < hours) tonnes[i] += c.payload_kg / 1000;
  }
  const label = (ms) => new Date(ms).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", timeZone });
  return cycles.length ? tonnes.map((value, i) => ({ label: label(first + i * 3600000), value })) : [];
}

// Payload as % of rated, 50-140 % in 5 % bins, with the 10/10/20 band lines.
export function payloadHistogram(cycles, label) {
  const edges = Array.from({ length: 19 }, (_, i) => 50 + i * 5);
  return histogram(edges, binned(cycles.map((c) => c.payload_pct), edges), { label, unit: "%", bands: PAYLOAD_BANDS });
}

// Minutes haulers queued per zone (an open queue counts up to now).
export function queueMinutesPerZone(queues) {
  const perZone = new Map();
  for (const item of queues) {
    const end = item.queued_to ? Date.parse(item.queued_to) : Date.now();
    perZone.set(item.zone, (perZone.get(item.zone) || 0) + Math.max(0, end - Date.parse(item.queued_from)) / 60000);
  }
  return [...perZone].map(([label, value]) => ({ label, value }));
}
