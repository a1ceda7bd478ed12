// The live site map: zones and haul roads in the site's local metres (x east, y north), machines on top.
// SVG y grows downwards, so every point is drawn at (x, -y). No tiles: the site file is the map.
import { fmt, s } from "./dom.js";

const STATE_COLOURS = { moving: "#1a7f37", idle: "#d08700", off: "#57606a", unknown: "#8c959f" };
const KIND_SHAPES = {
  hauler: "M 0 -1.3 L 0.9 1 L -0.9 1 Z",
  loader: "M -0.9 -0.9 H 0.9 V 0.9 H -0.9 Z",
  excavator: "M 0 -1.1 L 1 0 L 0 1.1 L -1 0 Z",
};

export class SiteMap {
  constructor(site) {
    const b = site.bounds;
    const pad = Math.max(b.max_x - b.min_x, b.max_y - b.min_y) * 0.04 + 10;
    this.size = Math.max(b.max_x - b.min_x, b.max_y - b.min_y) / 70;  // machine symbol size in metres
    this.svg = s("svg", {
      viewBox: `${b.min_x - pad} ${-(b.max_y + pad)} ${b.max_x - b.min_x + 2 * pad} ${b.max_y - b.min_y + 2 * pad}`,
      role: "img", "aria-labelledby": "map-title", class: "site-map", preserveAspectRatio: "xMidYMid meet",
      "data-testid": "site-map",
    });
    this.svg.append(s("title", { id: "map-title", text: `Map of ${site.name}: zones and machines` }));
    const zones = s("g", { class: "zones" });
    for (const zone of site.zones) {
      const points = zone.xy.map(([x, y]) => `${x},${-y}`).join(" ");
      zones.append(s("polygon", { points, fill: zone.colour, class: `zone zone-${zone.type}`, "data-zone": zone.id },
        s("title", { text: `${zone.name} (${zone.type})${zone.speed_limit_kmh ? `, limit ${zone.speed_limit_kmh} km/h` : ""}` })));
    }
    const roads = s("g", { class: "roads" });
    for (const path of site.paths) {
      roads.append(s("polyline", { points: path.xy.map(([x, y]) => `${x},${-y}`).join(" "), class: "road",
        "stroke-width": this.size * 0.5 }, s("title", { text: path.name })));
    }
    const labels = s("g", { class: "zone-labels" });
    for (const zone of site.zones) {
      const cx = zone.xy.reduce((a, p) => a + p[0], 0) / zone.xy.length;
      const cy = zone.xy.reduce((a, p) => a + p[1], 0) / zone.xy.length;
      labels.append(s("text", { x: cx, y: -cy, "font-size": this.size * 1.6, class: "zone-label", text: zone.name }));
    }
    this.machineLayer = s("g", { class: "machines" });
    this.svg.append(zones, roads, labels, this.machineLayer);
    this.nodes = new Map();
  }

  update(machines) {
    const seen = new Set();
    for (const m of machines) {
      if (m.x === null || m.y === null || m.x === undefined) continue;
      seen.add(m.machine_id);
      let node = this.nodes.get(m.machine_id);
      if (!node) {
        node = this.#machineNode(m);
        this.nodes.set(m.machine_id, node);
        this.machineLayer.append(node.group);
      }
      const heading = Number.isFinite(m.heading_deg) ? m.heading_deg : 0;
      node.group.setAttribute("transform", `translate(${m.x} ${-m.y})`);
      node.body.setAttribute("transform", `scale(${this.size}) rotate(${heading})`);
      node.body.setAttribute("fill", STATE_COLOURS[m.state] || STATE_COLOURS.unknown);
      node.group.dataset.x = m.x;
      node.group.dataset.y = m.y;
      node.group.dataset.state = m.state;
      node.group.classList.toggle("stale", Boolean(m.stale));
      const load = m.payload_pct === null || m.payload_pct === undefined ? null : Math.max(0, Math.min(130, m.payload_pct));
      node.load.setAttribute("r", load === null || load < 5 ? 0 : this.size * 0.45 * Math.sqrt(load / 100));
      node.load.setAttribute("class", `load ${load !== null && load > 110 ? "over" : ""}`);
      node.title.textContent = `${m.machine_id} (${m.kind}${m.model ? `, ${m.model}` : ""}): ${m.state}, ` +
        `${fmt(m.speed_kmh)} km/h, payload ${m.payload_kg === null ? "–" : `${fmt(m.payload_kg / 1000)} t`}` +
        `${m.payload_pct === null ? "" : ` (${fmt(m.payload_pct, 0)} % of rated)`}`;
    }
    for (const [id, node] of this.nodes) {
      if (!seen.has(id)) { node.group.remove(); this.nodes.delete(id); }
    }
  }

  #machineNode(m) {
    const title = s("title");
    const body = s("path", { d: KIND_SHAPES[m.kind] || "M 0 0 m -0.8 0 a 0.8 0.8 0 1 0 1.6 0 a 0.8 0.8 0 1 0 -1.6 0",
      class: "machine-body", "stroke-width": 0.15 });
    const load = s("circle", { cx: 0, cy: 0, r: 0, class: "load" });
    const label = s("text", { x: this.size * 1.3, y: -this.size * 0.6, "font-size": this.size * 1.3, class: "machine-label",
      text: m.machine_id });
    const group = s("g", { class: `machine kind-${m.kind}`, "data-machine-id": m.machine_id, tabindex: 0 },
      title, body, load, label);
    return { group, body, load, title };
  }
}

export function mapLegend(site) {
  const types = [...new Map(site.zones.map((z) => [z.type, z.colour])).entries()];
  return [
    ...types.map(([type, colour]) => ["span", colour, type]),
    ...Object.entries(STATE_COLOURS).filter(([k]) => k !== "unknown").map(([state, colour]) => ["dot", colour, state]),
  ];
}
