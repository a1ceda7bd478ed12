// Zones drawn on the map: an admin adds, reshapes, drags and deletes the site's zones with Leaflet-Geoman
// (vendored) and sets each zone's kind, name and speed limit in the list beside the map (keyboard-usable); saving
// sends them all (PUT .../zones) and the server checks them as it checks an uploaded site file, then stores them
// as a new version. The version history is listed below, each earlier version restorable. Site tokens see the
// zones and the history, read-only. Every name shown is set as text (zone names are user text).
import { api, siteApi } from "./api.js";
import { h, when } from "./dom.js";
import { L, SiteMap, tooltipText, zoneTitle } from "./map.js";

const ZONE_TYPES = ["load", "dump", "road", "parking", "restricted", "workshop"];
const TYPE_COLOURS = { load: "#f2b134", dump: "#8c6239", road: "#b0b7bf", parking: "#4f8fe6", restricted: "#d7263d", workshop: "#7e57c2" };

// Geoman is a classic script extending a global L: give it a mutable copy of Leaflet's module exports (the same
// classes map.js uses), then load it once, before the editor's map is created so the map gets its `pm` handler.
let geoman = null;
function loadGeoman() {
  if (!geoman) {
    window.L = { ...L };
    document.head.append(h("link", { rel: "stylesheet", href: "/static/vendor/leaflet-geoman/leaflet-geoman.css" }));
    geoman = import("./vendor/leaflet-geoman/leaflet-geoman.min.js");
  }
  return geoman;
}

const ring = (layer) => layer.getLatLngs()[0].map((p) => [Number(p.lng.toFixed(7)), Number(p.lat.toFixed(7))]);
const changeText = (changes) => ["added", "changed", "removed"].filter((k) => (changes[k] || []).length)
  .map((k) => `${k} ${changes[k].join(", ")}`).join("; ") || "no zone changed";

class ZoneEditor {
  constructor(siteMap, config, canEdit, onDirty) {
    this.map = siteMap.map;
    this.canEdit = canEdit;
    this.onDirty = onDirty;
    this.rows = [];  // {zone, layer, element}
    this.list = h("ol", { class: "zone-list", "data-testid": "zone-list", "aria-label": "Zones" });
    for (const zone of config.zones) {
      const layer = this.#polygon(zone.polygon.map(([lon, lat]) => [lat, lon]), zone.type);
      layer.getElement().dataset.zone = zone.id;
      this.add(zone, layer);
    }
    if (canEdit) {
      this.map.pm.setGlobalOptions({ allowSelfIntersection: false, snappable: true });
      this.map.pm.addControls({ position: "topleft", drawMarker: false, drawCircleMarker: false, drawPolyline: false, drawCircle: false,
        drawText: false, cutPolygon: false, rotateMode: false, drawRectangle: true, drawPolygon: true, editMode: true, dragMode: true, removalMode: true });
      this.map.on("pm:create", ({ layer }) => {
        const zone = { id: null, name: `New zone ${this.rows.length + 1}`, type: "load", kind: "load", speed_limit_kmh: null };
        this.#style(layer, zone.type);
        const row = this.add(zone, layer);
        row.element.querySelector("input.zone-name").focus();
        row.element.querySelector("input.zone-name").select();
        this.onDirty();
      });
      this.map.on("pm:remove", ({ layer }) => { const row = this.rows.find((r) => r.layer === layer); if (row) this.remove(row, false); });
    }
  }

  #polygon(latlngs, type) {
    const layer = L.polygon(latlngs, { color: "#3d444d", weight: 1, fillOpacity: 0.45, className: "zone editable-zone" }).addTo(this.map);
    this.#style(layer, type);
    return layer;
  }

  #style(layer, type) {
    layer.setStyle({ fillColor: TYPE_COLOURS[type] || "#8c959f", fillOpacity: 0.45, color: "#3d444d", weight: 1 });
  }

  add(zone, layer) {
    const row = { zone: { ...zone }, layer, element: null, moved: false };
    const id = `zone-${this.rows.length}-${Math.random().toString(36).slice(2, 7)}`;
    const name = h("input", { type: "text", class: "zone-name", id: `${id}-name`, value: zone.name || "", maxlength: 200, required: true, disabled: !this.canEdit });
    const type = h("select", { class: "zone-type", id: `${id}-type`, disabled: !this.canEdit },
      ZONE_TYPES.map((t) => h("option", { value: t, selected: t === zone.type }, t)));
    const limit = h("input", { type: "number", class: "zone-limit", id: `${id}-limit`, min: 1, max: 200, step: 1, inputmode: "numeric",
      value: zone.speed_limit_kmh ?? "", disabled: !this.canEdit });
    const title = h("span", { class: "zone-title" }, zoneTitle(zone));
    const show = h("button", { type: "button", class: "link", "aria-label": `Show ${zone.name || zone.id || "the new zone"} on the map` }, "Show");
    const del = h("button", { type: "button", class: "link danger", hidden: !this.canEdit, "aria-label": `Delete ${zone.name || zone.id || "the new zone"}` }, "Delete");
    const refresh = () => {
      row.zone.name = name.value.trim();
      if (type.value !== row.zone.type) { row.zone.type = type.value; row.zone.kind = type.value; }
      row.zone.speed_limit_kmh = limit.value === "" ? null : Number(limit.value);
      title.textContent = zoneTitle({ ...row.zone, id: row.zone.id || "new" });
      layer.setTooltipContent(tooltipText(title.textContent));
      this.#style(layer, row.zone.type);
    };
    for (const input of [name, type, limit]) for (const kind of ["input", "change"]) input.addEventListener(kind, () => { refresh(); this.onDirty(); });
    show.addEventListener("click", () => { this.map.fitBounds(layer.getBounds(), { padding: [40, 40], maxZoom: 18 }); this.#flash(row); });
    del.addEventListener("click", () => this.remove(row, true));
    layer.bindTooltip(tooltipText(zoneTitle({ ...zone, id: zone.id || "new" })), { sticky: true });
    layer.on("click", () => { this.#flash(row); if (this.canEdit) name.focus(); });
    layer.on("pm:edit pm:dragend pm:markerdragend", () => { row.moved = true; this.onDirty(); });
    row.element = h("li", { class: "zone-row", "data-zone": zone.id || "" },
      h("div", { class: "zone-row-head" }, title, " ", show, " ", del),
      h("div", { class: "zone-fields" },
        h("label", { for: name.id }, "Name"), name,
        h("label", { for: type.id }, "Kind"), type,
        h("label", { for: limit.id }, "Speed limit (km/h)"), limit));
    this.rows.push(row);
    this.list.append(row.element);
    return row;
  }

  remove(row, fromList) {
    if (fromList) row.layer.remove();
    row.element.remove();
    this.rows = this.rows.filter((r) => r !== row);
    this.onDirty();
  }

  #flash(row) {
    for (const r of this.rows) r.element.classList.toggle("selected", r === row);
    row.element.scrollIntoView({ block: "nearest" });
  }

  zones() {
    // an outline not touched goes back as stored (the map's 7 decimals would make every zone look "changed")
    return this.rows.map(({ zone, layer, moved }) => ({ id: zone.id || null, name: zone.name, type: zone.type, kind: zone.kind || null,
      speed_limit_kmh: zone.speed_limit_kmh, polygon: zone.polygon && !moved ? zone.polygon : ring(layer) }));
  }
}

function versionTable(items, current, canEdit, onRestore) {
  return h("table", { class: "versions", "data-testid": "site-versions" },
    h("caption", { class: "note" }, "Every saved version of the site file, newest first"),
    h("thead", {}, h("tr", {}, ["Version", "Saved", "By", "How", "Zones", "Note", ""].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, items.map((v) => {
      const restore = canEdit && v.version !== current
        ? h("button", { type: "button", class: "link", "aria-label": `Restore version ${v.version}`, onclick: () => onRestore(v.version) }, "Restore") : "";
      return h("tr", { "data-version": v.version }, h("td", {}, v.version === current ? `${v.version} (current)` : String(v.version)),
        h("td", {}, when(v.created_at)), h("td", {}, v.created_by || "–"), h("td", {}, v.source), h("td", {}, changeText(v.changes)),
        h("td", {}, v.note || ""), h("td", {}, restore));
    })));
}

export async function zonesPage(main, siteId, me) {
  const canEdit = Boolean(me && me.role === "admin");
  if (canEdit) await loadGeoman();
  const [view, site, versions, background] = await Promise.all([api(`${siteApi(siteId)}/view`), api(siteApi(siteId)),
    api(`${siteApi(siteId)}/versions`), api("/api/v1/map-background")]);
  const siteMap = new SiteMap(view.site, { background, drawZones: false, label: `Zones of ${view.site.name}${canEdit ? ": draw, reshape, drag or delete them" : ""}` });
  const status = h("p", { role: "status", class: "note", "data-testid": "zones-status" },
    canEdit ? "Draw with the tools on the map; set each zone's name, kind and limit in the list." : "Only an admin may change the zones.");
  const problems = h("p", { role: "alert", class: "error", "data-testid": "zones-error" });
  const note = h("input", { type: "text", id: "zones-note", maxlength: 500, placeholder: "what changed and why (optional)" });
  const save = h("button", { type: "button", class: "save-zones", disabled: true }, "Save as a new version");
  const editor = new ZoneEditor(siteMap, site.config, canEdit, () => { save.disabled = false; status.textContent = "Unsaved changes."; });
  let version = site.version;
  const history = h("div", { class: "table-wrap" });
  const drawHistory = (items) => history.replaceChildren(versionTable(items, version, canEdit, restore));

  async function restore(number) {
    problems.textContent = "";
    try {
      const restored = await api(`${siteApi(siteId)}/versions/${number}/restore`, { method: "POST" });
      status.textContent = `Version ${number} restored as version ${restored.version}.`;
      window.dispatchEvent(new HashChangeEvent("hashchange"));  // the router draws the page again, restored
    } catch (err) {
      problems.textContent = `Could not restore version ${number}: ${err.message}`;
    }
  }

  save.addEventListener("click", async () => {
    problems.textContent = "";
    const unnamed = editor.rows.find((r) => !r.zone.name);
    if (unnamed) { problems.textContent = "Every zone needs a name."; unnamed.element.querySelector("input.zone-name").focus(); return; }
    save.disabled = true;
    status.textContent = "Saving…";
    try {
      const saved = await api(`${siteApi(siteId)}/zones`, { method: "PUT", body: { zones: editor.zones(), base_version: version, note: note.value.trim() || null } });
      version = saved.version;
      editor.rows.forEach((row, i) => {  // the server's answer, in the order sent: ids given, outlines as stored
        const stored = saved.config.zones[i];
        Object.assign(row.zone, { id: stored.id, polygon: stored.polygon });
        row.moved = false;
        row.element.dataset.zone = stored.id;
        row.layer.getElement().dataset.zone = stored.id;
      });
      note.value = "";
      status.textContent = `Saved as version ${saved.version} (${changeText(saved.changes)}). Services use it from their next batch on; results already computed are kept.` +
        (saved.warnings.length ? ` Repaired: ${saved.warnings.join("; ")}` : "");
      drawHistory((await api(`${siteApi(siteId)}/versions`)).items);
    } catch (err) {
      save.disabled = false;
      status.textContent = "Not saved.";
      problems.textContent = err.message;
    }
  });

  drawHistory(versions.items);
  main.replaceChildren(
    h("h1", { class: "site-title" }, `${view.site.name}: zones`),
    h("div", { class: "overview zones-editor" },
      h("section", { class: "map-panel", "aria-labelledby": "zones-heading" }, h("h2", { id: "zones-heading" }, "Zones on the map"), siteMap.element,
        canEdit ? h("div", { class: "save-row" }, h("label", { for: "zones-note" }, "Note "), note, save) : "", status, problems),
      h("aside", { class: "alerts-panel", "aria-labelledby": "zone-list-heading" }, h("h2", { id: "zone-list-heading" }, "Zones"), editor.list)),
    h("section", { "aria-labelledby": "versions-heading" }, h("h2", { id: "versions-heading" }, "Versions"), history));
  return () => siteMap.destroy();
}
