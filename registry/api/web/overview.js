// Site overview: live map, alerts feed with acknowledge, one card per enabled service, charts over a time range.
import { allItems, api, openStream, siteApi } from "./api.js";
import { renderCard } from "./cards.js";
import { barChart, payloadHistogram, queueMinutesPerZone, tonnesPerHour } from "./charts.js";
import { fmt, h, when } from "./dom.js";
import { SiteMap, mapLegend } from "./map.js";

const CARD_REFRESH_MS = 15000;
const LIVE_WINDOW_MS = 2 * 3600 * 1000;

function alertItem(alert, siteId, onAck) {
  const comment = h("input", { type: "text", class: "ack-comment", maxlength: 2000, placeholder: "comment (optional)",
    "aria-label": `Comment on: ${alert.message}` });
  const button = h("button", { type: "button", class: "ack", "aria-label": `Acknowledge: ${alert.message}` }, "Acknowledge");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api(`${siteApi(siteId)}/alerts/${alert.id}/ack`, { method: "POST", body: { comment: comment.value.trim() || null } });
      onAck(alert.id);
    } catch (err) {
      button.disabled = false;
      button.textContent = `Retry (${err.message})`;
    }
  });
  const flags = [alert.cleared_at ? h("span", { class: "badge state-cleared" }, "cleared") : null,
    alert.escalation_level ? h("span", { class: "badge escalated" }, "escalated") : null];
  return h("li", { class: `alert level-${alert.level}`, "data-alert-id": alert.id },
    h("div", { class: "alert-head" }, h("strong", {}, alert.level), " ", ...flags, " ",
      h("span", { class: "note" }, `${alert.service} · ${when(alert.created_at)}`)),
    h("p", {}, alert.message), h("div", { class: "ack-row" }, comment, button));
}

function legend(site) {
  return h("ul", { class: "legend", "aria-label": "Map legend" }, mapLegend(site).map(([shape, colour, label]) =>
    h("li", {}, h("span", { class: `swatch ${shape}`, style: `background:${colour}` }), label)));
}

// Charts people would rather look at than read; each appears only when its service is on.
async function drawCharts(container, siteId, view, range) {
  const services = new Set(view.cards.map((c) => c.service));
  const q = `from=${encodeURIComponent(range.from)}&to=${encodeURIComponent(range.to)}`;
  const figures = [];
  if (services.has("weight-loading")) {
    const cycles = await allItems(`${siteApi(siteId)}/weight-loading/cycles?${q}&limit=1000`, 20);
    figures.push(h("figure", { "data-chart": "tonnes-per-hour" }, barChart(tonnesPerHour(cycles, range.from, range.to, view.site.timezone),
      { label: "Tonnes per hour", unit: "t" }), h("figcaption", {}, `Tonnes per hour (${fmt(cycles.reduce((a, c) => a + c.payload_kg, 0) / 1000)} t in ${cycles.length} loads)`)));
    figures.push(h("figure", { "data-chart": "payload-distribution" }, payloadHistogram(cycles, "Payload distribution against the bands"),
      h("figcaption", {}, "Payload as % of rated, with the 90 / 110 / 120 % band lines")));
  }
  if (services.has("traffic-awareness")) {
    try {
      const queues = await allItems(`${siteApi(siteId)}/traffic-awareness/queues?${q}&limit=1000`, 10);
      figures.push(h("figure", { "data-chart": "queue-time" }, barChart(queueMinutesPerZone(queues),
        { label: "Queue time per zone", unit: "min", empty: "No queues in this range" }), h("figcaption", {}, "Queue time per zone (minutes)")));
    } catch (err) {
      figures.push(h("p", { class: "note" }, `Queue times unavailable: ${err.message}`));
    }
  }
  container.replaceChildren(...(figures.length ? figures : [h("p", { class: "note" }, "Switch on weight loading or traffic awareness for charts.")]));
}

function rangePicker(view, onChange) {
  const shifts = view.ranges.shifts;
  const select = h("select", { id: "shift", "aria-label": "Shift" }, shifts.map((s, i) => h("option", { value: i }, s.label)));
  const from = h("input", { type: "datetime-local", id: "custom-from", "aria-label": "From" });
  const to = h("input", { type: "datetime-local", id: "custom-to", "aria-label": "To" });
  const apply = h("button", { type: "button" }, "Apply");
  const radios = ["live", "today", "shift", "custom"].map((mode) => h("label", {},
    h("input", { type: "radio", name: "range", value: mode, checked: mode === "live" }), ` ${mode[0].toUpperCase()}${mode.slice(1)}`));
  const fieldset = h("fieldset", { class: "range" }, h("legend", {}, "Time range"), radios, select, from, to, apply);
  const current = () => fieldset.querySelector("input[name=range]:checked").value;
  const compute = () => {
    const mode = current();
    const now = new Date();
    if (mode === "live") return { mode, from: new Date(now - LIVE_WINDOW_MS).toISOString(), to: now.toISOString() };
    if (mode === "today") return { mode, from: view.ranges.today.from, to: now.toISOString() };
    if (mode === "shift" && shifts.length) { const s = shifts[select.value]; return { mode, from: s.from, to: s.to }; }
    if (mode === "custom" && from.value && to.value) return { mode, from: new Date(from.value).toISOString(), to: new Date(to.value).toISOString() };
    return null;
  };
  fieldset.addEventListener("change", () => { const r = compute(); if (r && current() !== "custom") onChange(r); });
  apply.addEventListener("click", () => { const r = compute(); if (r) onChange(r); });
  return { element: fieldset, compute };
}

export async function overviewPage(main, siteId) {
  const [view, background] = await Promise.all([api(`${siteApi(siteId)}/view`), api("/api/v1/map-background")]);
  const map = new SiteMap(view.site, { background });
  map.update(view.machines);
  const feed = h("ol", { class: "alerts", "aria-live": "polite", "data-testid": "alerts" });
  const alertCount = h("span", { class: "count" });
  let openAlerts = view.alerts;
  const acked = new Set();
  const drawAlerts = () => {
    const shown = openAlerts.filter((a) => !acked.has(a.id));
    alertCount.textContent = `(${shown.length})`;
    feed.replaceChildren(...(shown.length ? shown.map((a) => alertItem(a, siteId, (id) => { acked.add(id); drawAlerts(); }))
      : [h("li", { class: "note" }, "Nothing needs attention now.")]));
  };
  drawAlerts();
  const machineSummary = h("p", { class: "note", "data-testid": "machine-summary" });
  const summarise = (machines) => {
    const count = (state) => machines.filter((m) => m.state === state).length;
    machineSummary.textContent = `${machines.length} machines: ${count("moving")} moving, ${count("idle")} idle, ${count("off")} off · updated ${when(new Date())}`;
  };
  summarise(view.machines);
  const cards = h("div", { class: "cards", "data-testid": "cards" }, view.cards.map((c) => renderCard(c, siteId)));
  const charts = h("div", { class: "charts", "data-testid": "charts" });
  let range = null;
  const picker = rangePicker(view, (r) => { range = r; drawCharts(charts, siteId, view, r).catch((e) => charts.replaceChildren(h("p", { class: "error" }, e.message))); });
  range = picker.compute();
  drawCharts(charts, siteId, view, range).catch((e) => charts.replaceChildren(h("p", { class: "error" }, e.message)));

  main.replaceChildren(
    h("h1", { class: "site-title" }, view.site.name),
    h("div", { class: "overview" },
      h("section", { class: "map-panel", "aria-labelledby": "map-heading" }, h("h2", { id: "map-heading" }, "Site map"), map.element, legend(view.site), machineSummary),
      h("aside", { class: "alerts-panel", "aria-labelledby": "alerts-heading" }, h("h2", { id: "alerts-heading" }, "Needs attention ", alertCount), feed,
        h("p", { class: "note" }, h("a", { href: `#/sites/${encodeURIComponent(siteId)}/alarms` }, "All alarms and their history")))),
    h("section", { "aria-labelledby": "charts-heading" }, h("div", { class: "section-head" }, h("h2", { id: "charts-heading" }, "Trends"), picker.element), charts),
    h("section", { "aria-labelledby": "cards-heading" }, h("h2", { id: "cards-heading" }, "Services on this site"), cards));

  const stop = openStream(siteId, {
    machines: (data) => { map.update(data.machines); summarise(data.machines); },
    alerts: (data) => { openAlerts = data.alerts; drawAlerts(); },
    gone: () => { location.hash = "#/sites"; },
  });
  const timer = setInterval(async () => {
    try {
      const fresh = await api(`${siteApi(siteId)}/view?refresh=true`);
      cards.replaceChildren(...fresh.cards.map((c) => renderCard(c, siteId)));
      if (range && range.mode === "live") {
        range = picker.compute();
        await drawCharts(charts, siteId, fresh, range);
      }
    } catch { /* the stream keeps the map live; cards retry next time */ }
  }, CARD_REFRESH_MS);
  return () => { stop(); clearInterval(timer); map.destroy(); };
}
