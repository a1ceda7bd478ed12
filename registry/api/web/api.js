// The API client: the token lives in sessionStorage (gone when the tab closes) and goes in the
// Authorization header only; the live stream uses a one-minute ticket instead (see openStream).
const TOKEN_KEY = "sitepulse.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${token.get() || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch { /* not JSON */ }
    throw new ApiError(response.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return raw ? response : response.json();
}

export const siteApi = (siteId) => `/api/v1/sites/${encodeURIComponent(siteId)}`;

// All items of a paginated list, up to maxPages pages.
export async function allItems(path, maxPages = 10) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page += 1) {
    const sep = path.includes("?") ? "&" : "?";
    const url = cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path;
    const body = await api(url);
    items.push(...body.items);
    cursor = body.next_cursor;
    if (!cursor) break;
  }
  return items;
}

// Server-sent events for a site; reconnects with a fresh ticket when the stream ends or fails.
export function openStream(siteId, handlers) {
  let source = null;
  let closed = false;
  let retry = null;
  async function connect() {
    if (closed) return;
    try {
      const { ticket } = await api(`${siteApi(siteId)}/stream/ticket`, { method: "POST" });
      if (closed) return;
      source = new EventSource(`${siteApi(siteId)}/stream?ticket=${encodeURIComponent(ticket)}`);
      for (const [name, handler] of Object.entries(handlers)) {
        source.addEventListener(name, (event) => handler(JSON.parse(event.data)));
      }
      const again = () => { source.close(); if (!closed) retry = setTimeout(connect, 1500); };
      source.addEventListener("bye", again);
      source.onerror = again;
    } catch (error) {
      if (!closed) retry = setTimeout(connect, 5000);
    }
  }
  connect();
  return () => { closed = true; clearTimeout(retry); if (source) source.close(); };
}

export async function download(path, filename) {
  const response = await api(path, { raw: true });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
