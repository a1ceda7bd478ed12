// The alarms page: every alarm of the site with its state, filters by state, severity, machine and zone, one
// alarm's history with acknowledge (with a comment), comment and clear, and the site's notification rules.
import { allItems, api, siteApi } from "./api.js";
import { fmt, h, when } from "./dom.js";

const STATES = ["active", "acknowledged", "cleared"];
const LEVELS = ["info", "warning", "critical"];

function select(id, label, options, value = "") {
  return [h("label", { for: id }, label), h("select", { id, name: id },
    h("option", { value: "" }, "all"), options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)))];
}

function historyPanel(siteId, alarm, onChange) {
  const panel = h("section", { class: "card alarm-history", "data-testid": "alarm-history", "data-alert-id": alarm.id,
    "aria-labelledby": `alarm-${alarm.id}-title` });
  const status = h("p", { role: "status", class: "note" });
  const act = async (path, body, done) => {
    try { await api(`${siteApi(siteId)}/alerts/${alarm.id}/${path}`, { method: "POST", body }); status.textContent = done; await onChange(alarm.id); } catch (err) { status.textContent = err.message; }
  };
  const draw = async () => {
    const body = await api(`${siteApi(siteId)}/alerts/${alarm.id}/history`);
    const a = body.alert;
    const comment = h("input", { id: "alarm-comment", type: "text", maxlength: 2000, placeholder: "what is being done" });
    const actions = h("div", { class: "alarm-actions" }, h("label", { for: "alarm-comment" }, "Comment"), comment,
      a.acknowledged_at ? null : h("button", { type: "button", onclick: () => act("ack", { comment: comment.value || null }, "Acknowledged.") }, "Acknowledge"),
      h("button", { type: "button", onclick: () => (comment.value.trim() ? act("comments", { comment: comment.value }, "Comment added.") : (status.textContent = "Write a comment first.")) }, "Add comment"),
      a.cleared_at ? null : h("button", { type: "button", onclick: () => (comment.value.trim().length >= 3 ? act("clear", { reason: comment.value }, "Cleared.") : (status.textContent = "Say why it is cleared (in the comment).")) }, "Clear"));
    panel.replaceChildren(
      h("header", {}, h("h3", { id: `alarm-${alarm.id}-title` }, `Alarm ${a.id}: ${a.message}`), h("span", { class: `badge state-${a.state}` }, a.state)),
      h("p", { class: "note" }, `${a.level} · ${a.service} · ${a.machine_id || "no machine"}${a.zone ? ` · zone ${a.zone}` : ""}`),
      h("ol", { class: "timeline" }, body.items.map((e) => h("li", { "data-action": e.action },
        h("strong", {}, e.action), ` ${when(e.at)} by ${e.actor}`,
        e.comment ? h("q", {}, e.comment) : null,
        e.detail && e.detail.to ? h("span", { class: "note" }, ` to ${e.detail.to}${e.detail.delivered === false ? " (not delivered)" : ""}`) : null))),
      actions, status);
  };
  panel.refresh = draw;
  return panel;
}

function rulesSection(siteId) {
  const list = h("div");
  const status = h("p", { role: "status", class: "note" });
  const draw = async () => {
    const { items } = await api(`${siteApi(siteId)}/alarm-rules`);
    list.replaceChildren(items.length ? h("div", { class: "table-wrap" }, h("table", { "data-testid": "alarm-rules" },
      h("caption", {}, "Notification rules of this site"),
      h("thead", {}, h("tr", {}, ["Rule", "From severity", "Service", "Tell", "Escalate after", "Escalate to", "Webhook", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, items.map((r) => h("tr", {}, h("td", {}, r.name), h("td", {}, r.min_level), h("td", {}, r.service || "all"), h("td", {}, r.notify),
        h("td", {}, r.escalate_after_s ? `${fmt(r.escalate_after_s / 60)} min` : "–"), h("td", {}, r.escalate_to || "–"), h("td", {}, r.webhook_url ? "yes" : "no"),
        h("td", {}, h("button", { type: "button", onclick: async () => { await api(`${siteApi(siteId)}/alarm-rules/${r.id}`, { method: "DELETE" }); await draw(); } }, "Remove")))))))
      : h("p", { class: "empty" }, "No notification rules yet: alarms are shown here and on the overview only."));
  };
  const field = (id, label, attrs = {}) => [h("label", { for: id }, label), h("input", { id, name: id, ...attrs })];
  const level = h("select", { id: "rule-level" }, LEVELS.map((l) => h("option", { value: l, selected: l === "critical" }, l)));
  const form = h("form", { class: "need-form", "aria-labelledby": "rule-title" }, h("h3", { id: "rule-title" }, "Add a rule"),
    field("rule-name", "Name", { required: true, maxlength: 100 }), h("label", { for: "rule-level" }, "From severity"), level,
    field("rule-service", "Only this service (empty: all)", { maxlength: 64 }), field("rule-notify", "Tell", { required: true, placeholder: "shift supervisor" }),
    field("rule-after", "Escalate after (minutes, empty: never)", { type: "number", min: 1, max: 10080 }), field("rule-to", "Escalate to", { placeholder: "site manager" }),
    field("rule-webhook", "Webhook URL (optional)", { type: "url" }), h("button", { type: "submit" }, "Add rule"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (id) => form.querySelector(`#${id}`).value.trim() || null;
    const after = value("rule-after");
    try {
      await api(`${siteApi(siteId)}/alarm-rules`, { method: "POST", body: { name: value("rule-name"), min_level: level.value,
        service: value("rule-service"), notify: value("rule-notify"), escalate_after_s: after ? Math.round(Number(after) * 60) : null,
        escalate_to: value("rule-to"), webhook_url: value("rule-webhook") } });
      form.reset();
      status.textContent = "Rule added.";
      await draw();
    } catch (err) { status.textContent = err.message; }
  });
  return { element: h("section", { "aria-labelledby": "rules-title" }, h("h2", { id: "rules-title" }, "Who is told"), list, form), draw };
}

export async function alarmsPage(main, siteId) {
  const [view, alarmed] = await Promise.all([api(`${siteApi(siteId)}/view?refresh=true`),
    allItems(`${siteApi(siteId)}/alerts?limit=1000`, 1)]);
  // every machine on the site, and any other that raised an alarm (a visitor, a machine since removed)
  const ids = [...new Set([...view.machines.map((m) => m.machine_id), ...alarmed.map((a) => a.machine_id).filter(Boolean)])];
  const machines = ids.sort().map((id) => [id, id]);
  const zones = view.site.zones.map((z) => [z.id, z.name]);
  const filters = h("form", { class: "filters", "aria-label": "Filter alarms" },
    select("f-state", "State", STATES.map((s) => [s, s])), select("f-level", "At least", LEVELS.map((l) => [l, l])),
    select("f-machine", "Machine", machines), select("f-zone", "Zone", zones));
  const listing = h("div", { "data-testid": "alarm-list" });
  const detail = h("div");
  const drawList = async () => {
    const params = new URLSearchParams({ limit: "100" });
    for (const [key, id] of [["state", "f-state"], ["level", "f-level"], ["machine_id", "f-machine"], ["zone", "f-zone"]]) {
      const value = filters.querySelector(`#${id}`).value;
      if (value) params.set(key, value);
    }
    const items = await allItems(`${siteApi(siteId)}/alerts?${params}`, 3);
    listing.replaceChildren(items.length ? h("div", { class: "table-wrap" }, h("table", { class: "alarms-table" },
      h("caption", {}, `${items.length} alarms, newest first`),
      h("thead", {}, h("tr", {}, ["Severity", "State", "Raised", "Machine", "Zone", "Alarm", "Acknowledged", "Cleared", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, items.map((a) => h("tr", { "data-alert-id": a.id, class: `level-${a.level} state-${a.state}` },
        h("td", {}, h("span", { class: `badge level-${a.level}` }, a.level)), h("td", {}, h("span", { class: `badge state-${a.state}` }, a.state),
          a.escalation_level ? h("span", { class: "badge escalated" }, "escalated") : null),
        h("td", {}, when(a.created_at)), h("td", {}, a.machine_id || "–"), h("td", {}, a.zone || "–"), h("td", { class: "long" }, a.message),
        h("td", { class: a.ack_comment ? "long" : null }, a.acknowledged_at ? `${a.acknowledged_by}${a.ack_comment ? `: “${a.ack_comment}”` : ""}` : "–"),
        h("td", { class: a.clear_reason ? "long" : null }, a.cleared_at ? `${when(a.cleared_at)}${a.clear_reason ? ` (${a.clear_reason})` : ""}` : "–"),
        h("td", {}, h("button", { type: "button", "aria-label": `History of alarm ${a.id}`, onclick: () => openHistory(a) }, "History")))))))
      : h("p", { class: "empty" }, "No alarms match."));
  };
  const openHistory = async (alarm) => {
    const panel = historyPanel(siteId, alarm, async () => { await drawList(); await panel.refresh(); });
    detail.replaceChildren(panel);
    await panel.refresh();
    panel.scrollIntoView({ block: "nearest" });
  };
  filters.addEventListener("change", () => drawList().catch((err) => listing.replaceChildren(h("p", { class: "error" }, err.message))));
  const rules = rulesSection(siteId);
  main.replaceChildren(h("h1", {}, "Alarms"),
    h("p", { class: "lead" }, "Every alarm of the site: active until someone acknowledges it, cleared when its condition is over. Unacknowledged alarms are escalated under the rules below."),
    filters, listing, detail, rules.element);
  await Promise.all([drawList(), rules.draw()]);
}
