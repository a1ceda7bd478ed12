// The co-creation lifecycle of the site on one page: needs (who raised them, votes, value/effort, comments),
// prioritised, in development, implemented, evaluated (latest verdict), retired; contributed services; and
// raising a need, voting and commenting from here (every change is audited by the API).
import { api, siteApi } from "./api.js";
import { fmt, h, when } from "./dom.js";

function needCard(siteId, need, redraw) {
  const details = h("div", { class: "need-details", hidden: true });
  const voteButton = h("button", { type: "button", class: "vote", "aria-pressed": need.voted ? "true" : "false",
    "aria-label": `${need.voted ? "Take back your vote for" : "Vote for"}: ${need.text}`,
    onclick: async () => { await api(`${siteApi(siteId)}/needs/${need.id}/vote`, { method: need.voted ? "DELETE" : "PUT" }); await redraw(); } },
  `▲ ${need.votes}`);
  const showDetails = async () => {
    const history = await api(`${siteApi(siteId)}/needs/${need.id}/history`);
    const text = h("textarea", { rows: 2, "aria-label": `Comment on: ${need.text}`, maxlength: 4000 });
    const status = h("p", { role: "status", class: "note" });
    const form = h("form", { class: "comment-form" }, text, h("button", { type: "submit" }, "Comment"), status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try { await api(`${siteApi(siteId)}/needs/${need.id}/comments`, { method: "POST", body: { text: text.value } }); await redraw(need.id); } catch (err) { status.textContent = err.message; }
    });
    details.replaceChildren(
      h("ol", { class: "comments" }, history.comments.map((c) => h("li", {}, h("strong", {}, c.author), ` ${when(c.at)}: `, c.text))),
      form,
      h("details", {}, h("summary", {}, "Changes"), h("ol", { class: "timeline" }, history.changes.map((c) =>
        h("li", {}, `${when(c.at)} ${c.action} by ${c.actor}`, c.action === "changed" ? h("span", { class: "note" },
          ` ${Object.entries(c.detail).map(([k, [a, b]]) => `${k}: ${fmt(a)} → ${fmt(b)}`).join(", ")}`) : null)))));
    details.hidden = false;
  };
  const toggle = h("button", { type: "button", class: "link", "aria-expanded": "false",
    onclick: async () => {
      if (details.hidden) { await showDetails(); toggle.setAttribute("aria-expanded", "true"); } else { details.hidden = true; toggle.setAttribute("aria-expanded", "false"); }
    } }, `${need.comments} comment${need.comments === 1 ? "" : "s"}`);
  const card = h("li", { class: "board-card need", "data-need-id": need.id },
    h("div", { class: "board-card-head" }, voteButton, h("p", {}, need.text)),
    h("p", { class: "note" }, `raised by ${need.raised_by} · value ${need.value_score}, effort ${need.effort} · priority ${fmt(need.priority, 2)}`),
    toggle, details);
  card.open = showDetails;
  return card;
}

function serviceCard(siteId, item) {
  const sites = item.sites_using;
  const evaluation = item.evaluation;
  return h("li", { class: "board-card service", "data-service": item.service },
    h("div", { class: "board-card-head" }, h("h4", {}, item.service), h("span", { class: "badge" }, item.stage)),
    h("p", { class: "note summary", title: item.summary }, item.summary),
    item.enabled_at ? h("p", {}, `${item.enabled ? "on" : "off"} here since ${when(item.enabled_at)}${item.enabled_by ? ` (by ${item.enabled_by})` : ""}`) : null,
    h("p", { class: "note" }, `runs on ${sites.count} site${sites.count === 1 ? "" : "s"}${sites.visible.length ? `: ${sites.visible.join(", ")}` : ""}`),
    item.contributed_by ? h("p", { class: "note" }, `contributed by ${item.contributed_by}`) : null,
    evaluation ? h("p", { class: `verdict rec-${evaluation.recommendation}` }, h("span", { class: "badge" }, evaluation.recommendation),
      ` after ${evaluation.after_days} day${evaluation.after_days === 1 ? "" : "s"}`,
      evaluation.improved.length ? ` · improved: ${evaluation.improved.join(", ")}` : "",
      evaluation.worsened.length ? ` · worsened: ${evaluation.worsened.join(", ")}` : "", " ",
      h("a", { href: `#/sites/${encodeURIComponent(siteId)}/evaluation`, "data-evaluation-link": item.service }, "evaluation")) : null,
    item.needs.length ? h("p", { class: "note" }, `answers: ${item.needs.map((n) => `“${n.text}” (▲ ${n.votes})`).join("; ")}`) : null,
    item.last_change ? h("p", { class: "note" }, `${item.last_change.to_stage} ${when(item.last_change.changed_at)} by ${item.last_change.changed_by}: ${item.last_change.reason}`) : null);
}

function needForm(siteId, redraw) {
  const text = h("textarea", { id: "need-text", required: true, rows: 2, maxlength: 4000 });
  const value = h("input", { id: "need-value", type: "number", min: 1, max: 10, value: 5, required: true });
  const effort = h("input", { id: "need-effort", type: "number", min: 1, max: 10, value: 5, required: true });
  const status = h("p", { role: "status" });
  const form = h("form", { class: "need-form", "aria-labelledby": "need-title" }, h("h2", { id: "need-title" }, "Raise a need"),
    h("label", { for: "need-text" }, "What does the site need?"), text,
    h("label", { for: "need-value" }, "Value (1-10)"), value, h("label", { for: "need-effort" }, "Effort (1-10)"), effort,
    h("button", { type: "submit" }, "Add need"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api(`${siteApi(siteId)}/needs`, { method: "POST", body: { text: text.value, value_score: Number(value.value), effort: Number(effort.value) } });
      text.value = "";
      status.textContent = "Added.";
      await redraw();
    } catch (err) { status.textContent = err.message; }
  });
  return form;
}

export async function lifecyclePage(main, siteId) {
  const board = h("div", { class: "board", "data-testid": "lifecycle-board" });
  const contributed = h("section", { "aria-labelledby": "contributed-title" });
  const draw = async (openNeed) => {
    const body = await api(`${siteApi(siteId)}/lifecycle`);
    board.replaceChildren(...body.columns.map((column) => h("section", { class: "board-column", "data-column": column.key,
      "aria-labelledby": `col-${column.key}` },
    h("h3", { id: `col-${column.key}` }, column.title, h("span", { class: "count" }, ` ${column.items.length}`)),
    h("p", { class: "note" }, column.description),
    h("ol", { class: "board-list" }, column.items.map((item) => (item.kind === "need" ? needCard(siteId, item, draw) : serviceCard(siteId, item)))))));
    contributed.replaceChildren(h("h2", { id: "contributed-title" }, "Contributed services"),
      body.contributed.length ? h("div", { class: "table-wrap" }, h("table", {}, h("caption", {}, "Services built with and by customers, and where they run"),
        h("thead", {}, h("tr", {}, ["Service", "Contributed by", "Shared", "Sites using it"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, body.contributed.map((c) => h("tr", {}, h("td", {}, c.service), h("td", {}, c.contributed_by), h("td", {}, c.shared ? "with everyone" : "not yet"),
          h("td", {}, `${c.sites_using.count}${c.sites_using.visible.length ? ` (${c.sites_using.visible.join(", ")})` : ""}`))))))
        : h("p", { class: "empty" }, "No contributed services yet."));
    if (openNeed) await board.querySelector(`[data-need-id="${openNeed}"]`)?.open();
  };
  main.replaceChildren(h("h1", {}, "Lifecycle"),
    h("p", { class: "lead" }, "From a need to a service that is kept, improved or retired: raise and vote for needs, follow each service through its stages, and see what the evaluation says."),
    board, needForm(siteId, draw), contributed);
  await draw();
}
