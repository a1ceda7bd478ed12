// One card per enabled service, drawn only from what the service declares in its card:
// title, metrics [{label, value, unit}], data (rendered by shape) and a link. A new plugin's card
// appears here without any change to this file.
import { barChart, histogram, PAYLOAD_BANDS } from "./charts.js";
import { fmt, h, when } from "./dom.js";

const MAP_KEYS = new Set(["zones", "machines"]);  // drawn on the site map instead

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;
const cell = (value) => (typeof value === "string" && ISO_TIME.test(value) ? when(value) : fmt(value));

function table(rows, caption) {
  const columns = Object.keys(rows[0] || {}).slice(0, 6);
  return h("div", { class: "table-wrap" }, h("table", { class: "mini" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.replaceAll("_", " "))))),
    h("tbody", {}, rows.slice(0, 6).map((row) => h("tr", {}, columns.map((c) => h("td", {}, cell(row[c]))))))));
}

function isHistogram(value) {
  if (!value || typeof value !== "object" || Array.isArray(value)) return null;
  const edgesKey = Object.keys(value).find((k) => k.startsWith("edges") && Array.isArray(value[k]));
  return edgesKey && Array.isArray(value.counts) && value[edgesKey].length === value.counts.length + 1 ? edgesKey : null;
}

function title(key) {
  const text = key.replaceAll("_", " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// Render card.data by shape: histograms, {label: number} maps as bars, lists of objects as tables.
export function renderData(data) {
  const parts = [];
  for (const [key, value] of Object.entries(data || {})) {
    if (MAP_KEYS.has(key)) {
      parts.push(h("p", { class: "note" }, `${Array.isArray(value) ? value.length : ""} ${key} shown on the map`));
      continue;
    }
    const edgesKey = isHistogram(value);
    if (edgesKey) {
      const pct = edgesKey.endsWith("pct");
      parts.push(h("figure", {}, histogram(value[edgesKey], value.counts,
        { label: title(key), unit: pct ? "%" : "", bands: pct ? PAYLOAD_BANDS : [] }), h("figcaption", {}, title(key))));
    } else if (Array.isArray(value) && value.length && typeof value[0] === "object") {
      parts.push(table(value, title(key)));
    } else if (Array.isArray(value)) {
      parts.push(h("p", { class: "note" }, `${title(key)}: ${value.length ? value.map((v) => fmt(v)).join(", ") : "none"}`));
    } else if (value && typeof value === "object") {
      const entries = Object.entries(value).filter(([, v]) => typeof v === "number");
      if (entries.length) {
        parts.push(h("figure", {}, barChart(entries.map(([label, v]) => ({ label, value: v })), { label: title(key) }),
          h("figcaption", {}, title(key))));
      }
    } else if (value !== null && value !== undefined) {
      parts.push(h("p", { class: "note" }, `${title(key)}: ${fmt(value)}`));
    }
  }
  return parts;
}

export function renderCard(card, siteId) {
  const body = card.status === "ok" ? [
    h("dl", { class: "metrics" }, card.metrics.map((m) => h("div", { class: "metric", "data-label": m.label },
      h("dt", {}, m.label), h("dd", {}, h("span", { class: "value" }, fmt(m.value)), m.unit ? ` ${m.unit}` : "")))),
    ...renderData(card.data),
  ] : [h("p", { class: "unavailable", role: "status" }, `Unavailable: ${card.reason}`)];
  return h("article", { class: `card ${card.status}`, "data-service": card.service, "aria-labelledby": `card-${card.service}` },
    h("header", {}, h("h3", { id: `card-${card.service}` }, card.title),
      h("a", { href: `#/sites/${encodeURIComponent(siteId)}/services/${encodeURIComponent(card.service)}` }, "Details")),
    body);
}
