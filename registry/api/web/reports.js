// The reports page: download the site's report for any period, see how scheduled reports were delivered (failures
// first and loud), and, for admins, manage the schedules: at each shift's end or daily at a local time, to e-mail
// addresses and/or a webhook. Everything from the API is set as text, never as markup.
import { api, download, siteApi } from "./api.js";
import { h, when } from "./dom.js";

const FORMATS = [["pdf", "PDF"], ["xlsx", "Excel (XLSX)"], ["csv", "CSV"]];
const TRIGGERS = [["shift_end", "at each shift's end"], ["daily", "daily at a local time"]];

function localInput(id, date) {
  const pad = (n) => String(n).padStart(2, "0");
  const value = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return h("input", { id, name: id, type: "datetime-local", value, required: true });
}

function downloadSection(siteId) {
  const now = new Date();
  const from = localInput("report-from", new Date(now.getTime() - 12 * 3600 * 1000));
  const to = localInput("report-to", now);
  const format = h("select", { id: "report-format", name: "report-format" }, FORMATS.map(([v, text]) => h("option", { value: v }, text)));
  const status = h("p", { role: "status", class: "note", "data-testid": "report-download-status" });
  const form = h("form", { class: "need-form", "aria-labelledby": "report-download-title" },
    h("h2", { id: "report-download-title" }, "Download a report"),
    h("p", { class: "note" }, "Any past period, as the services on this site report it (times in this browser's time zone)."),
    h("label", { for: "report-from" }, "From"), from, h("label", { for: "report-to" }, "To"), to,
    h("label", { for: "report-format" }, "Format"), format,
    h("button", { type: "submit" }, "Download report"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const start = new Date(from.value);
    const end = new Date(to.value);
    if (!(end > start)) { status.textContent = "The end must be after the start."; return; }
    status.textContent = "Preparing the report…";
    const q = `from=${encodeURIComponent(start.toISOString())}&to=${encodeURIComponent(end.toISOString())}&format=${format.value}`;
    try {
      await download(`${siteApi(siteId)}/reports?${q}`, `${siteId}-report.${format.value}`);
      status.textContent = "Report downloaded.";
    } catch (err) { status.textContent = err.message; }
  });
  return form;
}

function deliveriesSection(siteId) {
  const section = h("section", { "aria-labelledby": "deliveries-title", "data-testid": "report-deliveries" });
  const draw = async () => {
    const { items } = await api(`${siteApi(siteId)}/report-deliveries?limit=50`);
    const failed = items.filter((d) => d.status === "failed");
    section.replaceChildren(h("h2", { id: "deliveries-title" }, "Deliveries"),
      failed.length ? h("p", { class: "error", role: "alert", "data-testid": "failed-deliveries" },
        `${failed.length} of the latest ${items.length} report deliveries failed: the last to ${failed[0].target}, ${failed[0].error || "no reason given"}.`) : null,
      items.length ? h("div", { class: "table-wrap" }, h("table", {},
        h("caption", {}, "Latest report deliveries, newest first"),
        h("thead", {}, h("tr", {}, ["When", "Period", "To", "Status", "Tries", "Opened", "Why it failed"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, items.map((d) => h("tr", { class: d.status === "failed" ? "failed" : null, "data-status": d.status },
          h("td", {}, when(d.at)), h("td", {}, d.label), h("td", {}, `${d.channel}: ${d.target}`),
          h("td", {}, h("span", { class: `badge state-${d.status === "failed" ? "active" : "cleared"}` }, d.status)),
          h("td", {}, String(d.attempts)), h("td", {}, d.opens ? `${d.opens}×, first ${when(d.first_opened_at)}` : "not yet"),
          h("td", { class: "long" }, d.error || "–"))))))
        : h("p", { class: "empty" }, "No report has been sent from this site yet."));
  };
  section.refresh = draw;
  return section;
}

function schedulesSection(siteId, onChange) {
  const list = h("div");
  const status = h("p", { role: "alert", class: "error", "data-testid": "schedule-status" });
  const draw = async () => {
    const { items } = await api(`${siteApi(siteId)}/report-schedules`);
    list.replaceChildren(items.length ? h("div", { class: "table-wrap" }, h("table", { "data-testid": "report-schedules" },
      h("caption", {}, "Report schedules of this site"),
      h("thead", {}, h("tr", {}, ["Name", "When", "Formats", "E-mail to", "Webhook", "On", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, items.map((s) => h("tr", { "data-schedule-id": s.id },
        h("td", {}, s.name), h("td", {}, s.trigger === "daily" ? `daily at ${s.daily_at} (site time)` : "at each shift's end"),
        h("td", {}, s.formats.join(", ")), h("td", { class: "long" }, s.emails.join(", ") || "–"), h("td", { class: "long" }, s.webhook_url || "–"),
        h("td", {}, s.enabled ? "yes" : "no"),
        h("td", {}, h("button", { type: "button", "aria-label": `Remove schedule ${s.name}`, onclick: async () => {
          try { await api(`${siteApi(siteId)}/report-schedules/${s.id}`, { method: "DELETE", raw: true }); await draw(); } catch (err) { status.textContent = err.message; }
        } }, "Remove")))))))
      : h("p", { class: "empty" }, "No schedules yet: reports are sent only when you add one."));
  };
  const field = (id, label, attrs = {}) => [h("label", { for: id }, label), h("input", { id, name: id, ...attrs })];
  const trigger = h("select", { id: "schedule-trigger" }, TRIGGERS.map(([v, text]) => h("option", { value: v }, text)));
  const formats = h("fieldset", {}, h("legend", {}, "Formats"), FORMATS.map(([v, text]) => h("label", {},
    h("input", { type: "checkbox", name: "schedule-format", value: v, checked: v === "pdf" }), ` ${text} `)));
  const form = h("form", { class: "need-form", "aria-labelledby": "schedule-title" }, h("h3", { id: "schedule-title" }, "Add a schedule"),
    field("schedule-name", "Name", { required: true, maxlength: 120, placeholder: "Shift report to the office" }),
    h("label", { for: "schedule-trigger" }, "Send"), trigger,
    field("schedule-time", "Local time (daily)", { type: "time", value: "18:00" }),
    field("schedule-emails", "E-mail to (comma-separated)", { type: "text", placeholder: "manager@quarry.example, office@quarry.example" }),
    field("schedule-webhook", "Webhook URL (optional)", { type: "url", placeholder: "https://…" }),
    formats, h("button", { type: "submit" }, "Add schedule"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (id) => form.querySelector(`#${id}`).value.trim();
    const body = {
      name: value("schedule-name"), trigger: trigger.value,
      daily_at: trigger.value === "daily" ? value("schedule-time") : null,
      emails: value("schedule-emails").split(/[,;\s]+/).filter(Boolean),
      webhook_url: value("schedule-webhook") || null,
      formats: [...form.querySelectorAll("input[name=schedule-format]:checked")].map((c) => c.value),
    };
    try {
      await api(`${siteApi(siteId)}/report-schedules`, { method: "POST", body });
      status.textContent = "";
      form.reset();
      await draw();
      if (onChange) await onChange();
    } catch (err) { status.textContent = err.message; }
  });
  return [h("section", { "aria-labelledby": "schedules-title" }, h("h2", { id: "schedules-title" }, "Schedules"), list, form, status), draw];
}

export async function reportsPage(main, siteId, me) {
  const deliveries = deliveriesSection(siteId);
  const parts = [h("h1", {}, "Reports"),
    h("p", { class: "lead" }, "The shift and daily reports of this site: production, machine hours, traffic and data quality, from the services switched on here."),
    downloadSection(siteId), deliveries];
  let drawSchedules = null;
  if (me && me.role === "admin") {
    const [section, draw] = schedulesSection(siteId, deliveries.refresh);
    parts.push(section);
    drawSchedules = draw;
  }
  main.replaceChildren(...parts);
  await Promise.all([deliveries.refresh(), drawSchedules ? drawSchedules() : null]);
}
