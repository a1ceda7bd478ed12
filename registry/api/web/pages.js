// Service detail pages, the services catalogue, the evaluation report and "your data".
import { allItems, api, download, siteApi } from "./api.js";
import { renderData } from "./cards.js";
import { barChart, payloadHistogram, queueMinutesPerZone, tonnesPerHour } from "./charts.js";
import { fmt, h, when } from "./dom.js";
import { SiteMap } from "./map.js";
import { trialsSection } from "./trials.js";

function table(rows, columns, caption) {
  if (!rows.length) return h("p", { class: "empty" }, `${caption}: none yet.`);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map(([, label]) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([key, , render]) => {
      const content = render ? render(row[key], row) : (/(_at|^at|_from|_to|ts)$/.test(key) ? when(row[key]) : fmt(row[key]));
      return h("td", { class: typeof content === "string" && content.length > 40 ? "long" : null }, content);
    }))))));
}

const dayAgo = () => new Date(Date.now() - 24 * 3600 * 1000).toISOString();

async function weightLoadingDetail(siteId, base) {
  const from = dayAgo();
  const to = new Date().toISOString();
  const q = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
  const [cycles, compliance] = await Promise.all([allItems(`${base}/cycles?${q}&limit=1000`, 10), api(`${base}/compliance?${q}`)]);
  const site = compliance.site;
  return [
    h("div", { class: "charts" },
      h("figure", {}, barChart(tonnesPerHour(cycles, from, to, undefined), { label: "Tonnes per hour, last 24 h", unit: "t" }),
        h("figcaption", {}, "Tonnes per hour, last 24 h")),
      h("figure", {}, payloadHistogram(cycles, "Payload distribution"),
        h("figcaption", {}, "Payload as % of rated against the bands"))),
    h("p", {}, site ? `10/10/20 over the last 24 h: ${site.compliant ? "compliant" : "not compliant"} (${site.loads} loads, mean ${fmt(site.rules.mean_not_above_rated.value_pct)} % of rated, ${fmt(100 * site.rules.share_over_110.value)} % over 110 %, ${site.rules.none_over_120.count} over 120 %)` : "No loads in the last 24 h."),
    table(cycles.slice(-50).reverse(), [["machine_id", "Machine"], ["loaded_at", "Loaded"], ["dumped_at", "Dumped"],
      ["payload_kg", "Payload kg"], ["payload_pct", "% of rated"], ["band", "Band"], ["load_zone", "Load zone"], ["dump_zone", "Dump zone"]],
    "Latest haul cycles"),
  ];
}

async function positioningDetail(siteId, base) {
  const q = `from=${encodeURIComponent(dayAgo())}`;
  const [events, heat, view] = await Promise.all([api(`${base}/zone-events?${q}&limit=50`), api(`${base}/heatmap?${q}&cell_m=25`),
    api(`${siteApi(siteId)}/view?refresh=true`)]);
  const map = new SiteMap(view.site, { label: `Where machines spent time on ${view.site.name} in the last 24 h` });
  map.addHeat(heat.cells, heat.cell_m);
  map.update(view.machines);
  return [h("figure", { class: "heatmap" }, map.element, h("figcaption", {}, "Where machines spent time in the last 24 h (25 m cells)")),
    table(events.items, [["machine_id", "Machine"], ["zone", "Zone"], ["zone_type", "Type"], ["entered_at", "Entered"], ["left_at", "Left"], ["dwell_s", "Dwell s"]], "Zone events")];
}

async function trafficDetail(siteId, base) {
  const q = `from=${encodeURIComponent(dayAgo())}`;
  const [events, queues] = await Promise.all([api(`${base}/proximity-events?${q}&limit=50`), allItems(`${base}/queues?${q}&limit=1000`, 5)]);
  return [h("figure", {}, barChart(queueMinutesPerZone(queues), { label: "Queue time per zone", unit: "min", empty: "No queues in the last 24 h" }),
    h("figcaption", {}, "Queue time per zone, last 24 h (minutes)")),
  table(events.items, [["at", "At"], ["machine_a", "Machine A"], ["machine_b", "Machine B"], ["min_distance_m", "Min distance m"], ["min_ttc_s", "Min TTC s"], ["level", "Level"]], "Proximity events")];
}

const DETAILS = { "weight-loading": weightLoadingDetail, positioning: positioningDetail, "traffic-awareness": trafficDetail };

async function routesOf(name) {
  const schema = await fetch("/openapi.json").then((r) => r.json());
  const prefix = `/api/v1/sites/{site_id}/${name}/`;
  return Object.keys(schema.paths).filter((p) => p.startsWith(prefix));
}

export async function servicePage(main, siteId, name) {
  const base = `${siteApi(siteId)}/${encodeURIComponent(name)}`;
  const [view, catalogue] = await Promise.all([api(`${siteApi(siteId)}/view?refresh=true`), allItems("/api/v1/services?limit=1000", 2)]);
  const service = catalogue.find((item) => item.name === name);
  const card = view.cards.find((c) => c.service === name);
  const parts = [h("p", { class: "lead" }, service ? service.summary : "")];
  if (!card) {
    parts.push(h("p", { role: "status" }, "This service is not switched on for this site."));
  } else if (DETAILS[name]) {
    try { parts.push(...(await DETAILS[name](siteId, base))); } catch (err) { parts.push(h("p", { class: "error" }, err.message)); }
  } else {
    parts.push(...renderData(card.data));
    const routes = await routesOf(name);
    parts.push(h("h2", {}, "Its data"), h("ul", {}, routes.map((p) => h("li", {}, h("code", {}, p.replace("{site_id}", siteId))))));
  }
  if (card && card.status === "ok") {
    parts.splice(1, 0, h("dl", { class: "metrics" }, card.metrics.map((m) => h("div", { class: "metric" }, h("dt", {}, m.label), h("dd", {}, `${fmt(m.value)} ${m.unit || ""}`)))));
  }
  main.replaceChildren(h("h1", {}, service ? `${card ? card.title : name}` : name), ...parts);
}

export async function cataloguePage(main, siteId, me) {
  const draw = async () => {
    const items = await allItems("/api/v1/services?limit=1000", 2);
    const rows = items.map((item) => {
      const here = item.sites.find((x) => x.site_id === siteId) || { enabled: false, stage: null };
      const health = runnerCell(item, here, siteId, me, draw, status);
      const toggle = me.role === "admin" ? h("button", { type: "button", "data-service": item.name,
        onclick: async (event) => {
          event.target.disabled = true;
          try { await api(`${siteApi(siteId)}/services/${item.name}`, { method: "PUT", body: { enabled: !here.enabled } }); await draw(); } catch (err) { status.textContent = err.message; event.target.disabled = false; }
        } }, here.enabled ? "Disable" : "Enable") : null;
      return h("tr", {}, h("th", { scope: "row" }, h("a", { href: `#/sites/${encodeURIComponent(siteId)}/services/${item.name}` }, item.name)),
        h("td", {}, item.version), h("td", { class: "long" }, item.summary), h("td", {}, here.stage || "–"), h("td", {}, here.enabled ? "on" : "off"),
        health, h("td", {}, item.depends_on.join(", ") || "–"), me.role === "admin" ? h("td", {}, toggle) : null);
    });
    table_.replaceChildren(h("caption", {}, "Installed services and their stage on this site"),
      h("thead", {}, h("tr", {}, ["Service", "Version", "What it does", "Stage", "On", "Runner", "Needs"].map((c) => h("th", { scope: "col" }, c)),
        me.role === "admin" ? h("th", { scope: "col" }, "Switch") : null)), h("tbody", {}, rows));
  };
  const table_ = h("table", { class: "catalogue" });
  const status = h("p", { role: "status", class: "error" });
  main.replaceChildren(h("h1", {}, "Services"), status, h("div", { class: "table-wrap" }, table_));
  await draw();
  if (me.role === "admin") main.append(await decodersSection());
}

// The runner's health of this service on this site: ok, or failing with its attempts, next retry, and (admins)
// the error and a button that retries now instead of after the back-off.
function runnerCell(item, here, siteId, me, draw, status) {
  const pair = here.health;
  if (!pair) return h("td", { "data-runner": "none" }, item.health && here.enabled ? "waiting" : "not run yet");
  if (pair.status !== "failing") {
    const done = here.progress;
    return h("td", { "data-runner": pair.status }, pair.status, done && done.data_until
      ? h("span", { class: "note", "data-progress": "" }, ` · processed up to ${when(done.data_until)} (${fmt(done.rows_processed, 0)} rows)`) : null);
  }
  const parts = [h("strong", {}, `failing (${pair.failures} attempts)`)];
  if (pair.retry_at) parts.push(h("br"), `next retry ${new Date(pair.retry_at).toLocaleTimeString()}`);
  if (pair.last_error) parts.push(h("br"), h("code", { class: "error" }, pair.last_error));
  if (me.role === "admin") {
    parts.push(h("br"), h("button", { type: "button", "data-retry": item.name, onclick: async (event) => {
      event.target.disabled = true;
      try {
        await api(`/api/v1/services/${encodeURIComponent(item.name)}/sites/${encodeURIComponent(siteId)}/retry`, { method: "POST" });
        await draw();
      } catch (err) { status.textContent = err.message; event.target.disabled = false; }
    } }, "Retry now"));
  }
  return h("td", { class: "failing", "data-runner": "failing" }, parts);
}

// What the ingest workers' decoders (decoders/README.md) received and refused, over every worker.
async function decodersSection() {
  const body = await api("/api/v1/ingest/decoders");
  const reasons = (rejects) => Object.entries(rejects).map(([code, n]) => `${code}: ${n}`).join(", ") || "–";
  return h("section", { "aria-labelledby": "decoders-title", "data-testid": "decoders" },
    h("h2", { id: "decoders-title" }, "Data in: decoders"),
    body.items.length
      ? table(body.items, [["decoder", "Decoder"], ["messages", "Messages"], ["rejected", "Rejected"],
        ["rejects", "Rejects by reason", reasons]], "Messages per decoder since each ingest worker started")
      : h("p", {}, "No decoder in use: every machine publishes SitePulse's own JSON."));
}

const interval = (k) => (k.interval ? `${fmt(k.difference, 3)} [${fmt(k.interval[0], 3)}, ${fmt(k.interval[1], 3)}]` : "–");
const side = (v) => (v && v.mean !== null ? `${fmt(v.mean, 3)} (${v.days} d)` : `– (${v ? v.days : 0} d)`);

export async function evaluationPage(main, siteId) {
  const [body, trials] = await Promise.all([api(`/api/v1/evaluation?site_id=${encodeURIComponent(siteId)}`), trialsSection(siteId)]);
  const items = body.items.map((item) => {
    const use = item.adoption;
    const w = item.windows;
    return h("article", { class: `card eval rec-${item.recommendation}`, "data-service": item.service },
      h("header", {}, h("h3", {}, item.service), h("span", { class: "badge", "data-testid": "recommendation" }, item.recommendation || "–")),
      h("p", {}, `Stage ${item.stage || "–"}, ${item.enabled ? "on" : "off"} since ${when(item.enabled_at)}${item.contributed_by ? `, contributed by ${item.contributed_by}` : ""}`),
      h("p", { class: "note" }, `Before: ${w.before.from} to ${w.before.to} · after: ${w.after.from} to ${w.after.to} (${w.after.days} days)`),
      h("dl", { class: "metrics" }, [["Users", use.distinct_users], ["Active days", `${use.active_days} of ${use.days}`],
        ["Views", use.views], ["Alerts acknowledged", `${use.alerts_acknowledged} of ${use.alerts_delivered}`], ["Exports", use.exports]]
        .map(([label, value]) => h("div", { class: "metric" }, h("dt", {}, label), h("dd", {}, fmt(value))))),
      table(item.kpis || [], [["name", "KPI"], ["unit", "Unit"], ["before", "Before", side], ["after", "After", side],
        ["difference", "Change [interval]", (_, k) => interval(k)], ["verdict", "Verdict"]], `Value KPIs, ${fmt(100 * (body.thresholds ? body.thresholds.confidence : 0.9), 0)} % intervals for all KPIs together`),
      h("ul", {}, item.reasons.map((r) => h("li", {}, r))));
  });
  main.replaceChildren(h("h1", {}, "Evaluation"), h("p", { class: "lead" }, `Per service: is it used, did its KPIs move since it was switched on (${body.window_days}-day windows), and what to do next.`),
    h("div", { class: "cards eval-list" }, items.length ? items : [h("p", {}, "No services evaluated on this site yet.")]),
    trials,
    h("details", {}, h("summary", {}, "How the recommendation is made"), h("ul", {}, body.rules.map((r) => h("li", {}, r)))));
}

export async function dataPage(main, siteId) {
  const [use, log] = await Promise.all([api(`${siteApi(siteId)}/data-use`), api(`${siteApi(siteId)}/access-log?limit=50`)]);
  const from = h("input", { type: "date", id: "export-from", value: new Date(Date.now() - 86400000).toISOString().slice(0, 10) });
  const to = h("input", { type: "date", id: "export-to", value: new Date(Date.now() + 86400000).toISOString().slice(0, 10) });
  const status = h("p", { role: "status" });
  const exportButton = (label, path, name, format) => h("button", { type: "button", onclick: async () => {
    status.textContent = `Preparing ${label}…`;
    const q = `from=${encodeURIComponent(new Date(from.value).toISOString())}&to=${encodeURIComponent(new Date(to.value).toISOString())}&format=${format}`;
    try { await download(`${siteApi(siteId)}/export/${path}?${q}`, `${siteId}-${name}.${format}`); status.textContent = `${label} downloaded.`; } catch (err) { status.textContent = err.message; }
  } }, label);
  const services = use.items.map((item) => h("article", { class: "card" },
    h("header", {}, h("h3", {}, item.service), h("span", { class: "badge" }, item.stage || "")),
    h("p", {}, item.summary),
    h("dl", { class: "facts" },
      h("dt", {}, "Reads these telemetry fields"), h("dd", {}, item.telemetry_fields_read.join(", ") || "none"),
      h("dt", {}, "Reads outputs of"), h("dd", {}, item.reads_outputs_of.join(", ") || "no other service"),
      h("dt", {}, "Writes these tables"), h("dd", {}, item.tables_written.join(", ") || "none"),
      h("dt", {}, "On since"), h("dd", {}, `${when(item.enabled_at)} by ${item.enabled_by || "–"}`)),
    h("div", { class: "exports" }, item.tables_written.flatMap((t) => {
      const table_ = t.split(".")[1];
      return ["csv", "parquet"].map((f) => exportButton(`${table_} (${f.toUpperCase()})`, `${item.service}/${table_}`, `${item.service}-${table_}`, f));
    }))));
  main.replaceChildren(h("h1", {}, "Your data"),
    h("p", { class: "lead" }, "What each service on this site reads and writes, who looked at what, and your data to take away."),
    h("section", { "aria-labelledby": "export-title" }, h("h2", { id: "export-title" }, "Export"),
      h("label", { for: "export-from" }, "From "), from, h("label", { for: "export-to" }, " to "), to, " ",
      exportButton("Telemetry (CSV)", "telemetry", "telemetry", "csv"), exportButton("Telemetry (Parquet)", "telemetry", "telemetry", "parquet"), status),
    h("section", { "aria-labelledby": "use-title" }, h("h2", { id: "use-title" }, "Services using your data"), h("div", { class: "cards" }, services)),
    h("section", { "aria-labelledby": "log-title" }, h("h2", { id: "log-title" }, "Access log"),
      table(log.items, [["at", "When"], ["principal", "Who"], ["action", "What"], ["service", "Service"], ["detail", "Detail", (v) => (v ? Object.entries(v).map(([k, x]) => `${k}: ${x}`).join(", ") : "")]], "Latest 50 events")));
}
