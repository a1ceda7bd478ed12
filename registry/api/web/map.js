// The live site map on Leaflet (vendored, no CDN): zones and haul roads from the site file, machines on top,
// oriented by their course, with short trails; zone and machine labels never overlap (a collision pass after
// every zoom, pan and update hides the labels that would). No tile server is needed: a raster background is
// drawn only when the operator configures one (SITEPULSE_MAP_TILES_URL).
import * as L from "./vendor/leaflet/leaflet-src.esm.js";
import { fmt, h, when } from "./dom.js";

const STATE_COLOURS = { moving: "#1a7f37", idle: "#d08700", off: "#57606a", unknown: "#8c959f" };
const KIND_SHAPES = {  // pointing north (up) in a 24 x 24 box centred on 12,12
  hauler: "M 12 2 L 20 21 L 12 17 L 4 21 Z",
  loader: "M 12 3 L 20 10 V 21 H 4 V 10 Z",
  excavator: "M 12 2 L 21 12 L 12 22 L 3 12 Z",
};
const OTHER_SHAPE = "M 12 3 L 19 20 L 12 16 L 5 20 Z";
const TRAIL_POINTS = 40;         // about a minute of live updates
const COURSE_MIN_STEP_M = 3;     // a shorter displacement says nothing about the course (GNSS noise)
const HEADING_AGREES_DEG = 15;   // a reported heading this close to the course over ground is trusted (as motion.py)
const LABEL_GAP_PX = 2;

// Leaflet parses a string tooltip or popup as HTML: zone and road names come from site files (user text),
// so every tooltip gets an element whose text is set, never a string.
const text = (value) => h("span", { class: "tooltip-text" }, String(value ?? ""));

const angleDiff = (a, b) => Math.abs(((a - b + 540) % 360) - 180);

// Least-squares affine map from local metres (x east, y north) to lon/lat, fitted on the site's own vertices.
function xyToLonLat(site) {
  const pairs = [...site.zones, ...site.paths].flatMap((f) => (f.xy || []).map((xy, i) => [xy, (f.polygon || f.points)[i]]));
  const o = site.origin;
  if (pairs.length < 3) {
    const k = 180 / (Math.PI * 6371008.8);
    return (x, y) => [o.lon + (x * k) / Math.cos((o.lat * Math.PI) / 180), o.lat + y * k];
  }
  const solve = (target) => {  // normal equations for [a, b, c] in target = a x + b y + c
    const m = [[0, 0, 0], [0, 0, 0], [0, 0, 0]];
    const v = [0, 0, 0];
    for (const [[x, y], p] of pairs) {
      const row = [x, y, 1];
      for (let i = 0; i < 3; i += 1) { v[i] += row[i] * target(p); for (let j = 0; j < 3; j += 1) m[i][j] += row[i] * row[j]; }
    }
    for (let i = 0; i < 3; i += 1) {  // Gauss-Jordan with partial pivoting
      let p = i;
      for (let r = i + 1; r < 3; r += 1) if (Math.abs(m[r][i]) > Math.abs(m[p][i])) p = r;
      [m[i], m[p]] = [m[p], m[i]]; [v[i], v[p]] = [v[p], v[i]];
      for (let r = 0; r < 3; r += 1) {
        if (r === i) continue;
        const f = m[r][i] / m[i][i];
        for (let c = i; c < 3; c += 1) m[r][c] -= f * m[i][c];
        v[r] -= f * v[i];
      }
    }
    return v.map((value, i) => value / m[i][i]);
  };
  const lon = solve((p) => p[0]);
  const lat = solve((p) => p[1]);
  return (x, y) => [lon[0] * x + lon[1] * y + lon[2], lat[0] * x + lat[1] * y + lat[2]];
}

function area(xy) {
  let sum = 0;
  for (let i = 0; i < xy.length; i += 1) { const [x1, y1] = xy[i]; const [x2, y2] = xy[(i + 1) % xy.length]; sum += x1 * y2 - x2 * y1; }
  return Math.abs(sum / 2);
}

// The label anchor: the centroid of the polygon's area (falls back to the vertex mean for degenerate shapes).
function centroid(points) {
  let a = 0; let cx = 0; let cy = 0;
  for (let i = 0; i < points.length; i += 1) {
    const [x1, y1] = points[i]; const [x2, y2] = points[(i + 1) % points.length];
    const f = x1 * y2 - x2 * y1;
    a += f; cx += (x1 + x2) * f; cy += (y1 + y2) * f;
  }
  if (Math.abs(a) < 1e-12) return points.reduce((s, p) => [s[0] + p[0] / points.length, s[1] + p[1] / points.length], [0, 0]);
  return [cx / (3 * a), cy / (3 * a)];
}

const overlaps = (a, b) => a.left < b.right + LABEL_GAP_PX && b.left < a.right + LABEL_GAP_PX &&
  a.top < b.bottom + LABEL_GAP_PX && b.top < a.bottom + LABEL_GAP_PX;

export class SiteMap {
  // drawZones false: the zone editor draws its own editable polygons over roads and labels of its own.
  constructor(site, { background = null, label = null, drawZones = true } = {}) {
    this.site = site;
    this.toLonLat = xyToLonLat(site);
    this.element = h("div", { class: "site-map", "data-testid": "site-map", role: "region",
      "aria-label": label || `Map of ${site.name}: zones, haul roads and machines` });
    this.map = L.map(this.element, { zoomSnap: 0.25, attributionControl: Boolean(background), preferCanvas: false });
    if (background && background.tiles_url) {
      L.tileLayer(background.tiles_url, { attribution: background.attribution || "", maxZoom: 22 }).addTo(this.map);
    }
    const corners = [...site.zones.flatMap((z) => z.polygon), ...site.paths.flatMap((p) => p.points)].map(([lon, lat]) => [lat, lon]);
    this.bounds = corners.length ? L.latLngBounds(corners) : L.latLng(site.origin.lat, site.origin.lon).toBounds(1000);
    this.map.fitBounds(this.bounds);  // a view now, so layers get their elements; refitted once laid out
    this.map.createPane("heat").style.zIndex = 410;
    this.map.createPane("trails").style.zIndex = 420;
    this.zoneLayers = new Map();  // zone id -> its polygon (playback highlights zones entered)
    for (const zone of drawZones ? site.zones : []) {
      const ring = zone.polygon.map(([lon, lat]) => [lat, lon]);
      const layer = L.polygon(ring, { color: "#3d444d", weight: 1, fillColor: zone.colour, fillOpacity: 0.45, className: `zone zone-${zone.type}` })
        .bindTooltip(text(zoneTitle(zone)), { sticky: true })
        .addTo(this.map);
      layer.getElement().dataset.zone = zone.id;
      this.zoneLayers.set(zone.id, layer);
    }
    for (const path of site.paths) {
      const line = path.points.map(([lon, lat]) => [lat, lon]);
      L.polyline(line, { color: "#8c959f", weight: 5, opacity: 0.8, className: "road", pmIgnore: true }).bindTooltip(text(path.name), { sticky: true }).addTo(this.map);
    }
    this.labels = [];  // {marker, priority}: zone labels first (largest zone first), then machine labels
    const byArea = drawZones ? [...site.zones].sort((a, b) => area(b.xy) - area(a.xy)) : [];
    byArea.forEach((zone, i) => {
      const [lon, lat] = centroid(zone.polygon);
      const marker = L.marker([lat, lon], { interactive: false, keyboard: false, pmIgnore: true,
        icon: L.divIcon({ className: "map-label zone-label", html: h("span", {}, zone.name), iconSize: null }) }).addTo(this.map);
      marker.getElement().dataset.zone = zone.id;
      this.labels.push({ marker, priority: i });
    });
    this.nodes = new Map();
    this.fitted = false;
    this.map.on("zoomend moveend resize", () => this.placeLabels());
    // Leaflet needs the container's size: fit the site once it is laid out, and follow later resizes.
    this.resizer = new ResizeObserver(() => {
      if (!this.element.clientWidth) return;
      this.map.invalidateSize({ pan: false });
      if (!this.fitted) { this.fitted = true; this.map.fitBounds(this.bounds, { padding: [12, 12] }); }
      this.placeLabels();
    });
    this.resizer.observe(this.element);
  }

  // Hide every label that would overlap a label of higher priority (or leave the map); the rest stay visible.
  placeLabels() {
    if (!this.element.isConnected) return;
    const box = this.element.getBoundingClientRect();
    const placed = [];
    const ordered = [...this.labels, ...[...this.nodes.values()].map((n) => ({ marker: n.labelMarker, priority: 1e6 }))];
    for (const { marker } of ordered) {
      const el = marker.getElement();
      if (!el) continue;
      el.classList.remove("label-hidden");
      const r = el.firstChild.getBoundingClientRect();  // the text box; the marker itself is a point
      const inside = r.left >= box.left && r.right <= box.right && r.top >= box.top && r.bottom <= box.bottom;
      if (!inside || r.width === 0 || placed.some((p) => overlaps(p, r))) { el.classList.add("label-hidden"); continue; }
      placed.push(r);
    }
  }

  update(machines) {
    const seen = new Set();
    for (const m of machines) {
      if (m.lat === null || m.lon === null || m.lat === undefined || m.lon === undefined) continue;
      seen.add(m.machine_id);
      let node = this.nodes.get(m.machine_id);
      if (!node) { node = this.#machineNode(m); this.nodes.set(m.machine_id, node); }
      const last = node.trail[node.trail.length - 1];
      if (!last || last[0] !== m.lat || last[1] !== m.lon) {
        node.trail.push([m.lat, m.lon, m.x, m.y]);
        if (node.trail.length > TRAIL_POINTS) node.trail.shift();
      }
      node.course = this.#course(node, m);
      node.machine = m;
      node.marker.setLatLng([m.lat, m.lon]);
      node.labelMarker.setLatLng([m.lat, m.lon]);
      node.trailLine.setLatLngs(node.trail.map(([lat, lon]) => [lat, lon]));
      node.body.setAttribute("transform", `rotate(${(node.course ?? 0).toFixed(1)} 12 12)`);
      node.body.setAttribute("fill", STATE_COLOURS[m.state] || STATE_COLOURS.unknown);
      const el = node.marker.getElement();
      Object.assign(el.dataset, { x: m.x, y: m.y, state: m.state, course: node.course === null ? "" : node.course.toFixed(1) });
      el.classList.toggle("stale", Boolean(m.stale));
      el.classList.toggle("over", m.payload_pct !== null && m.payload_pct !== undefined && m.payload_pct > 110);
      el.title = `${m.machine_id}: ${m.state}`;
      if (node.marker.isPopupOpen()) node.marker.setPopupContent(this.#card(m, node.course));
    }
    for (const [id, node] of this.nodes) {
      if (!seen.has(id)) { node.marker.remove(); node.labelMarker.remove(); node.trailLine.remove(); this.nodes.delete(id); }
    }
    this.placeLabels();
  }

  // Course over ground from the trail where the machine moved far enough, the reported heading where it agrees
  // (smoother) or where the machine stands; the last known course otherwise.
  #course(node, m) {
    const heading = Number.isFinite(m.heading_deg) ? m.heading_deg : null;
    const [, , x1, y1] = node.trail[node.trail.length - 1];
    let overGround = null;
    for (let i = node.trail.length - 2; i >= 0 && Number.isFinite(x1); i -= 1) {
      const [, , x0, y0] = node.trail[i];
      if (Math.hypot(x1 - x0, y1 - y0) >= COURSE_MIN_STEP_M) { overGround = ((Math.atan2(x1 - x0, y1 - y0) * 180) / Math.PI + 360) % 360; break; }
    }
    if (overGround === null) return m.state === "moving" && heading !== null ? heading : (node.course ?? heading);
    return heading !== null && angleDiff(heading, overGround) <= HEADING_AGREES_DEG ? heading : overGround;
  }

  #card(m, course) {
    const payload = m.payload_kg === null || m.payload_kg === undefined ? "–" :
      `${fmt(m.payload_kg / 1000)} t${m.payload_pct === null ? "" : ` (${fmt(m.payload_pct, 0)} % of rated)`}`;
    return h("div", { class: "machine-card", "data-testid": "machine-card", "data-machine-id": m.machine_id },
      h("h3", {}, m.machine_id), h("p", { class: "note" }, `${m.kind}${m.model ? `, ${m.model}` : ""}`),
      h("dl", { class: "facts" },
        h("dt", {}, "State"), h("dd", {}, `${m.state}${m.stale ? " (no data for a while)" : ""}`),
        h("dt", {}, "Speed"), h("dd", {}, `${fmt(m.speed_kmh)} km/h`),
        h("dt", {}, "Course"), h("dd", {}, course === null ? "–" : `${fmt(course, 0)}°`),
        h("dt", {}, "Payload"), h("dd", {}, payload),
        h("dt", {}, "Last seen"), h("dd", {}, when(m.last_seen))));
  }

  #machineNode(m) {
    const { icon, body } = machineIcon(m.kind);
    const marker = L.marker([m.lat, m.lon], { icon, keyboard: true, title: m.machine_id, riseOnHover: true, alt: m.machine_id })
      .addTo(this.map);
    marker.getElement().dataset.machineId = m.machine_id;
    marker.getElement().setAttribute("aria-label", `Machine ${m.machine_id}: open its card`);
    marker.bindPopup(() => this.#card(this.nodes.get(m.machine_id).machine, this.nodes.get(m.machine_id).course),
      { minWidth: 180, autoPanPadding: [10, 10] });
    const labelMarker = L.marker([m.lat, m.lon], { interactive: false, keyboard: false,
      icon: L.divIcon({ className: "map-label machine-label", html: h("span", {}, m.machine_id), iconSize: null }) }).addTo(this.map);
    const trailLine = L.polyline([], { pane: "trails", color: STATE_COLOURS.moving, weight: 2, opacity: 0.55,
      className: "trail", interactive: false }).addTo(this.map);
    return { marker, labelMarker, trailLine, body, trail: [], course: null, machine: m };
  }

  // A heat layer of local-metre cells [{ix, iy, seconds}] (the positioning service's heat map).
  addHeat(cells, cellM) {
    const max = Math.max(1, ...cells.map((c) => c.seconds));
    for (const c of cells) {
      const [lon0, lat0] = this.toLonLat(c.ix * cellM, c.iy * cellM);
      const [lon1, lat1] = this.toLonLat((c.ix + 1) * cellM, (c.iy + 1) * cellM);
      L.rectangle([[lat0, lon0], [lat1, lon1]], { pane: "heat", stroke: false, fillColor: "#d7263d",
        fillOpacity: 0.15 + 0.7 * (c.seconds / max), className: "heat-cell" })
        .bindTooltip(text(`${fmt(c.seconds / 60)} machine-minutes`)).addTo(this.map);
    }
  }

  destroy() {
    this.resizer.disconnect();
    this.map.remove();
  }
}

export const zoneTitle = (zone) => `${zone.name || zone.id} (${zone.type})${zone.speed_limit_kmh ? `, limit ${zone.speed_limit_kmh} km/h` : ""}`;

// A machine's marker icon: its kind's shape pointing north (rotate ``body`` for the course), coloured by state.
export function machineIcon(kind, extraClass = "") {
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "24");
  svg.setAttribute("height", "24");
  svg.setAttribute("aria-hidden", "true");
  const body = document.createElementNS(svgNs, "path");
  body.setAttribute("d", KIND_SHAPES[kind] || OTHER_SHAPE);
  body.setAttribute("class", "machine-body");
  svg.append(body);
  const icon = L.divIcon({ className: `machine kind-${kind} ${extraClass}`.trim(), html: svg, iconSize: [24, 24], iconAnchor: [12, 12] });
  return { icon, body };
}

export { L, STATE_COLOURS, text as tooltipText };

export function mapLegend(site) {
  const types = [...new Map(site.zones.map((z) => [z.type, z.colour])).entries()];
  return [
    ...types.map(([type, colour]) => ["span", colour, type]),
    ...Object.entries(STATE_COLOURS).filter(([k]) => k !== "unknown").map(([state, colour]) => ["dot", colour, state]),
  ];
}
