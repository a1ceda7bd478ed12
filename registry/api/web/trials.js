// Trials on history on the Evaluation page: what a service would have found on the site's recorded telemetry,
// beside what the site had (registry/trials.py). Every value is text: nothing from the API is parsed as markup.
import { api, siteApi } from "./api.js";
import { fmt, h, when } from "./dom.js";

function rows(caption, head, body) {
  return h("div", { class: "table-wrap" }, h("table", {}, h("caption", {}, caption),
    h("thead", {}, h("tr", {}, head.map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, body.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell)))))));
}

function trialCard(trial) {
  const alerts = Object.entries(trial.alerts || {});
  return h("article", { class: "card trial", "data-trial-id": trial.id, "data-service": trial.service },
    h("header", {}, h("h3", {}, `${trial.service}: trial ${trial.id}`), h("span", { class: "badge", "data-testid": "trial-status" }, trial.status)),
    h("p", {}, `${when(trial.period_from)} to ${when(trial.period_to)} · ${fmt(trial.samples, 0)} samples · by ${trial.requested_by}`),
    trial.status === "running" ? h("p", { role: "status" }, `Running: up to ${when(trial.progress_at)}`) : null,
    trial.error ? h("p", { class: "error", role: "alert" }, trial.error) : null,
    rows("What it found", ["Table", "Rows"], Object.entries(trial.found || {}).map(([t, n]) => [t, fmt(n, 0)])),
    h("p", {}, alerts.length ? `Alerts it would have raised: ${alerts.map(([level, n]) => `${n} ${level}`).join(", ")}` : "No alert it would have raised."),
    (trial.examples || []).length ? h("details", {}, h("summary", {}, "The alerts, as they would have read"),
      h("ul", {}, trial.examples.map((a) => h("li", {}, `${when(a.at)} ${a.level}: ${a.message}`)))) : null,
    rows("KPIs over the period (daily mean)", ["KPI", "Unit", "Trial", "The site had"],
      (trial.kpis || []).map((k) => [k.name, k.unit, fmt(k.trial_mean, 3), fmt(k.site_mean, 3)])));
}

export async function trialsSection(siteId) {
  const body = await api(`${siteApi(siteId)}/trials`);
  return h("section", { "aria-labelledby": "trials-title", "data-testid": "trials" },
    h("h2", { id: "trials-title" }, "Trials on history"),
    h("p", { class: "note" }, "What a service would have found on this site's recorded telemetry, before it was switched on: its results kept apart, no alert raised. Start one with `sitepulse services trial` or the API."),
    h("div", { class: "cards" }, body.items.length ? body.items.map(trialCard) : [h("p", {}, "No trial on this site yet.")]));
}
