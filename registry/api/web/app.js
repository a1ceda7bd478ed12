// SitePulse dashboard: hash routes, login with a token, site picker, and the site's pages.
import { api, ApiError, siteApi, token } from "./api.js";
import { h } from "./dom.js";
import { alarmsPage } from "./alarms.js";
import { overviewPage } from "./overview.js";
import { lifecyclePage } from "./lifecycle.js";
import { cataloguePage, dataPage, evaluationPage, servicePage } from "./pages.js";
import { reportsPage } from "./reports.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let cleanup = null;  // the current page's teardown (live stream, timers)
export const session = { me: null };

function setPage(...children) {
  main.replaceChildren(...children);
  main.focus({ preventScroll: true });
}

function loginPage(message) {
  nav.hidden = true;
  who.replaceChildren();
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true,
    "aria-describedby": "token-help" });
  const error = h("p", { class: "error", role: "alert", id: "login-error" }, message || "");
  const form = h("form", { class: "login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in to SitePulse"),
    h("label", { for: "token" }, "Access token"), input,
    h("p", { id: "token-help", class: "note" }, "Paste the token your provider gave you. It is kept only in this browser tab."),
    h("button", { type: "submit" }, "Sign in"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    token.set(input.value.trim());
    try {
      session.me = await api("/api/v1/me");
      location.hash = "#/sites";
      route();
    } catch (err) {
      token.clear();
      error.textContent = err.status === 401 ? "That token is not valid (or was revoked)." : err.message;
    }
  });
  setPage(form);
  input.focus();
}

function siteNav(siteId, active) {
  const base = `#/sites/${encodeURIComponent(siteId)}`;
  const links = [["overview", "Overview", base], ["catalogue", "Services", `${base}/catalogue`],
    ["alarms", "Alarms", `${base}/alarms`], ["reports", "Reports", `${base}/reports`], ["evaluation", "Evaluation", `${base}/evaluation`], ["lifecycle", "Lifecycle", `${base}/lifecycle`],
    ["data", "Your data", `${base}/data`]];
  nav.replaceChildren(h("ul", {}, links.map(([key, label, href]) =>
    h("li", {}, h("a", { href, "aria-current": key === active ? "page" : null }, label)))));
  nav.hidden = false;
}

function showWho() {
  who.replaceChildren(h("span", {}, `${session.me.name} (${session.me.role})`),
    h("button", { type: "button", class: "link", onclick: () => { token.clear(); session.me = null; location.hash = "#/login"; } },
      "Sign out"));
}

async function sitesPage() {
  nav.hidden = true;
  const body = await api("/api/v1/sites?limit=1000");
  if (body.items.length === 1 && !session.me.role.startsWith("admin")) {
    location.hash = `#/sites/${encodeURIComponent(body.items[0].site_id)}`;
    return;
  }
  setPage(h("section", { class: "sites", "aria-labelledby": "sites-title" },
    h("h1", { id: "sites-title" }, "Your sites"),
    body.items.length ? h("ul", { class: "site-list" }, body.items.map((site) => h("li", {},
      h("a", { href: `#/sites/${encodeURIComponent(site.site_id)}` }, site.name || site.site_id),
      h("span", { class: "note" }, ` ${site.machines} machines, ${site.zones} zones`))))
      : h("p", {}, "No sites yet: load a site file with PUT /api/v1/sites/{site_id}.")));
}

export function notFound(message) {
  nav.hidden = true;
  setPage(h("section", { class: "not-found", role: "alert", "data-testid": "not-found" },
    h("h1", {}, "Not found"), h("p", {}, message), h("p", {}, h("a", { href: "#/sites" }, "Back to your sites"))));
}

const ROUTES = [
  [/^#\/sites\/([^/]+)$/, (id) => overviewPage(main, id), "overview"],
  [/^#\/sites\/([^/]+)\/services\/([^/]+)$/, (id, name) => servicePage(main, id, name), "catalogue"],
  [/^#\/sites\/([^/]+)\/catalogue$/, (id) => cataloguePage(main, id, session.me), "catalogue"],
  [/^#\/sites\/([^/]+)\/alarms$/, (id) => alarmsPage(main, id), "alarms"],
  [/^#\/sites\/([^/]+)\/reports$/, (id) => reportsPage(main, id, session.me), "reports"],
  [/^#\/sites\/([^/]+)\/evaluation$/, (id) => evaluationPage(main, id), "evaluation"],
  [/^#\/sites\/([^/]+)\/(?:lifecycle|needs)$/, (id) => lifecyclePage(main, id), "lifecycle"],
  [/^#\/sites\/([^/]+)\/data$/, (id) => dataPage(main, id), "data"],
];

export async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const hash = location.hash || "#/sites";
  if (!token.get()) { loginPage(); return; }
  try {
    if (!session.me) session.me = await api("/api/v1/me");
    showWho();
    if (hash === "#/login") { loginPage(); return; }
    if (hash === "#/sites" || hash === "#/" || hash === "#") { await sitesPage(); return; }
    for (const [pattern, render, key] of ROUTES) {
      const match = hash.match(pattern);
      if (!match) continue;
      const ids = match.slice(1).map(decodeURIComponent);
      await api(`${siteApi(ids[0])}`);  // 404 for a site this token may not see, before drawing anything
      siteNav(ids[0], key);
      main.replaceChildren(h("p", { class: "loading" }, "Loading…"));
      cleanup = (await render(...ids)) || null;
      return;
    }
    notFound(`There is no page at ${hash.slice(1)}.`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { token.clear(); session.me = null; loginPage("Your token is no longer valid."); return; }
    if (err instanceof ApiError && err.status === 404) { notFound(err.message); return; }
    setPage(h("p", { class: "error", role: "alert" }, `Something went wrong: ${err.message}`));
  }
}

window.addEventListener("hashchange", route);
route();
