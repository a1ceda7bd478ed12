// Playback: a shift (or any period up to 24 h) replayed on the site map. The period's tracks and events are fetched
// once (GET .../playback: delta-encoded integer columns, see registry/playback.py) and animated here: every machine
// is placed by interpolating between its two samples around the playback time, each frame, with no request.
// The events of the last few minutes of playback time are listed beside the map and highlighted on it.
// Keyboard: the slider takes arrows/PageUp/PageDown/Home/End; Space (or K) plays and pauses, J/L jump a minute.
import { api, siteApi } from "./api.js";
import { fmt, h } from "./dom.js";
import { L, SiteMap, STATE_COLOURS, machineIcon, tooltipText } from "./map.js";

const SPEEDS = [1, 2, 5, 10, 30, 60];
const EVENT_WINDOW_S = 300;   // events listed: those of the last five minutes of playback time
const EVENT_NOW_S = 30;       // ... of which these are "now" (highlighted on the map)
const STATE_NAMES = { m: "moving", i: "idle", o: "off", u: "unknown" };
const KIND_LABELS = { zone: "Zone entry", cycle: "Cycle", encounter: "Encounter", alarm: "Alarm" };

// The answer's columns back to absolute numbers: seconds from t0, degrees.
export function decodeTrack(machine) {
  const n = machine.t.length;
  const t = new Float64Array(n); const lat = new Float64Array(n); const lon = new Float64Array(n);
  let a = 0; let b = 0; let c = 0;
  for (let i = 0; i < n; i += 1) {
    a += machine.t[i]; b += machine.lat[i]; c += machine.lon[i];
    t[i] = a; lat[i] = b / 1e6; lon[i] = c / 1e6;
  }
  return { id: machine.id, t, lat, lon, s: machine.s };
}

// Index of the last sample at or before time (binary search; -1 before the first).
function sampleAt(t, time) {
  let lo = 0; let hi = t.length - 1;
  if (hi < 0 || time < t[0]) return -1;
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (t[mid] <= time) lo = mid; else hi = mid - 1; }
  return lo;
}

// Formatters made once per time zone: building one per call (toLocaleString with options) costs a frame's budget.
const formatters = new Map();
function formatter(timezone, kind) {
  const key = `${timezone}|${kind}`;
  if (!formatters.has(key)) {
    formatters.set(key, new Intl.DateTimeFormat("en-GB", kind === "clock" ? { timeZone: timezone, hour: "2-digit", minute: "2-digit", second: "2-digit" }
      : { timeZone: timezone, dateStyle: "short", timeStyle: "short" }));
  }
  return formatters.get(key);
}
const clock = (ms, timezone) => formatter(timezone, "clock").format(ms);
const dateTime = (ms, timezone) => formatter(timezone, "dateTime").format(ms);
const EVENTS_LISTED = 25;       // the newest of the window; older ones are a slider move away
const EVENT_REFRESH_MS = 250;   // while playing, the list and highlights follow at most four times a second

class Player {
  constructor(siteMap, data, kinds, timezone, onTime) {
    this.map = siteMap;
    this.data = data;
    this.timezone = timezone;
    this.onTime = onTime;
    this.time = 0;
    this.speed = 10;
    this.playing = false;
    this.frames = 0;  // counted for the benchmark (frames drawn while playing)
    this.layer = L.layerGroup().addTo(siteMap.map);
    this.tracks = data.machines.map(decodeTrack).map((track) => {
      const { icon, body } = machineIcon(kinds.get(track.id) || "other", "playback-machine");
      const marker = L.marker([track.lat[0], track.lon[0]], { icon, keyboard: false, title: track.id, alt: track.id }).addTo(this.layer);
      marker.bindTooltip(tooltipText(track.id), { direction: "right", offset: [10, 0] });
      const el = marker.getElement();
      el.dataset.machineId = track.id;
      return { ...track, marker, body, el, course: 0, shown: true, state: "" };
    });
    this.highlights = L.layerGroup().addTo(siteMap.map);
    this.tick = this.tick.bind(this);
    this.last = null;
  }

  draw() {
    for (const m of this.tracks) {
      const i = sampleAt(m.t, this.time);
      const visible = i >= 0 && this.time <= m.t[m.t.length - 1] + this.data.step_s * 2;
      if (visible !== m.shown) { m.el.classList.toggle("absent", !visible); m.shown = visible; }
      if (i < 0) continue;
      let lat = m.lat[i]; let lon = m.lon[i];
      const j = Math.min(i + 1, m.t.length - 1);
      if (j > i && m.t[j] > m.t[i]) {
        const f = Math.min(1, (this.time - m.t[i]) / (m.t[j] - m.t[i]));
        lat += (m.lat[j] - m.lat[i]) * f; lon += (m.lon[j] - m.lon[i]) * f;
        const dy = m.lat[j] - m.lat[i]; const dx = (m.lon[j] - m.lon[i]) * Math.cos((lat * Math.PI) / 180);
        if (Math.abs(dx) + Math.abs(dy) > 2e-6) m.course = ((Math.atan2(dx, dy) * 180) / Math.PI + 360) % 360;
      }
      m.marker.setLatLng([lat, lon]);
      m.at = [lat, lon];
      const state = STATE_NAMES[m.s[i]] || "unknown";
      if (state !== m.state) { m.state = state; m.el.dataset.state = state; m.body.setAttribute("fill", STATE_COLOURS[state] || STATE_COLOURS.unknown); }
      const course = Math.round(m.course / 5) * 5;  // 5-degree steps: a rotation written only when it shows
      if (course !== m.shownCourse) { m.shownCourse = course; m.body.setAttribute("transform", `rotate(${course} 12 12)`); }
    }
  }

  // Where each machine is drawn now (tests and the benchmark read this rather than the DOM).
  positions() {
    return Object.fromEntries(this.tracks.filter((m) => m.shown && m.at).map((m) => [m.id, m.at]));
  }

  seek(time) {
    this.time = Math.max(0, Math.min(this.data.duration_s, time));
    this.draw();
    this.onTime(this.time, true);
  }

  tick(now) {
    if (!this.playing) return;
    if (this.last !== null) {
      this.time = Math.min(this.data.duration_s, this.time + ((now - this.last) / 1000) * this.speed);
      this.draw();
      this.onTime(this.time);
      this.frames += 1;
      if (this.time >= this.data.duration_s) { this.pause(); return; }
    }
    this.last = now;
    requestAnimationFrame(this.tick);
  }

  play() { if (this.playing) return; if (this.time >= this.data.duration_s) this.time = 0; this.playing = true; this.last = null; this.onTime(this.time); requestAnimationFrame(this.tick); }
  pause() { this.playing = false; this.last = null; this.onTime(this.time, true); }

  destroy() { this.playing = false; this.layer.remove(); this.highlights.remove(); }
}

function eventItem(event, player, t0, timezone) {
  const jump = h("button", { type: "button", class: "link event-jump", "aria-label": `Go to ${clock(t0 + event.t * 1000, timezone)}: ${event.text}` },
    clock(t0 + event.t * 1000, timezone));
  jump.addEventListener("click", () => { player.pause(); player.seek(event.t); });
  return h("li", { class: `event kind-${event.kind} level-${event.level}`, "data-kind": event.kind, "data-t": event.t },
    jump, " ", h("span", { class: "badge" }, KIND_LABELS[event.kind] || event.kind), " ", h("span", { class: "event-text" }, event.text));
}

// Events of the moment: listed (newest first) and, for the last EVENT_NOW_S seconds, drawn on the map.
class EventPanel {
  constructor(player, siteMap, data, timezone) {
    this.player = player;
    this.map = siteMap;
    this.events = data.events;
    this.times = Float64Array.from(data.events.map((e) => e.t));
    this.t0 = data.t0_ms;
    this.timezone = timezone;
    this.list = h("ol", { class: "playback-events", "data-testid": "playback-events", "aria-live": "polite", "aria-label": "Events of this moment" });
    this.key = null;
    this.items = new Map();  // event index -> its list item, built once
    this.refreshed = 0;
  }

  update(time, force = false) {
    const now = performance.now();
    if (!force && this.player.playing && now - this.refreshed < EVENT_REFRESH_MS) return;
    this.refreshed = now;
    const end = sampleAt(this.times, time) + 1;  // events at or before time
    let begin = end;
    while (begin > 0 && this.times[begin - 1] > time - EVENT_WINDOW_S) begin -= 1;
    let nowFrom = end;
    while (nowFrom > begin && this.times[nowFrom - 1] > time - EVENT_NOW_S) nowFrom -= 1;
    const key = `${begin}:${nowFrom}:${end}`;
    if (key === this.key) return;
    this.key = key;
    const from = Math.max(begin, end - EVENTS_LISTED);
    const shown = [];
    for (let i = end - 1; i >= from; i -= 1) {
      if (!this.items.has(i)) this.items.set(i, eventItem(this.events[i], this.player, this.t0, this.timezone));
      shown.push(this.items.get(i));
    }
    this.list.replaceChildren(...(shown.length ? shown : [h("li", { class: "note" }, "Nothing happened in the five minutes before this moment.")]));
    this.#highlight(this.events.slice(nowFrom, end));
  }

  #highlight(current) {
    this.player.highlights.clearLayers();
    const machines = new Set(current.flatMap((e) => e.machines));
    const zones = new Set(current.map((e) => e.zone).filter(Boolean));
    for (const m of this.player.tracks) m.el.classList.toggle("highlight", machines.has(m.id));
    for (const [id, layer] of this.map.zoneLayers) layer.getElement().classList.toggle("zone-highlight", zones.has(id));
    for (const e of current) {
      if (e.lat === null || e.lon === null) continue;
      L.circleMarker([e.lat, e.lon], { radius: 14, weight: 3, color: e.level === "critical" ? "#b42318" : e.level === "warning" ? "#9a6700" : "#0b5cad",
        fill: false, interactive: false, className: `event-mark kind-${e.kind}` }).addTo(this.player.highlights);
    }
  }
}

function periodPicker(view, onLoad) {
  const shifts = view.ranges.shifts;
  const select = h("select", { id: "playback-shift" },
    shifts.map((s, i) => h("option", { value: i }, s.label)), h("option", { value: "custom" }, "Another period…"));
  const from = h("input", { type: "datetime-local", id: "playback-from" });
  const to = h("input", { type: "datetime-local", id: "playback-to" });
  const custom = h("span", { class: "custom-period", hidden: true }, h("label", { for: "playback-from" }, "From "), from, h("label", { for: "playback-to" }, " to "), to);
  const load = h("button", { type: "submit" }, "Load");
  const form = h("form", { class: "range playback-period", "aria-label": "Period to replay" },
    h("label", { for: "playback-shift" }, "Shift "), select, custom, load);
  select.addEventListener("change", () => { custom.hidden = select.value !== "custom"; });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (select.value === "custom") {
      if (from.value && to.value) onLoad(new Date(from.value).toISOString(), new Date(to.value).toISOString());
    } else if (shifts.length) {
      const s = shifts[Number(select.value)];
      onLoad(s.from, new Date(Math.min(Date.parse(s.to), Date.now())).toISOString());
    }
  });
  return { element: form, submit: () => form.requestSubmit() };
}

export async function playbackPage(main, siteId) {
  const [view, background] = await Promise.all([api(`${siteApi(siteId)}/view`), api("/api/v1/map-background")]);
  const timezone = view.site.timezone || "UTC";
  const siteMap = new SiteMap(view.site, { background, label: `Playback of ${view.site.name}: zones, haul roads and machines` });
  const kinds = new Map(view.machines.map((m) => [m.machine_id, m.kind]));
  const status = h("p", { class: "note", role: "status", "data-testid": "playback-status" }, "Pick a shift and load it.");
  const controls = h("div", { class: "playback-controls" });
  const events = h("div", { class: "playback-events-wrap" }, h("p", { class: "note" }, "Events appear here as the shift plays."));
  let player = null;

  async function load(from, to) {
    if (player) { player.destroy(); player = null; }
    status.textContent = "Loading the period…";
    controls.replaceChildren();
    const started = performance.now();
    let data;
    try {
      data = await api(`${siteApi(siteId)}/playback?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
    } catch (err) {
      status.textContent = `Could not load the period: ${err.message}`;
      return;
    }
    const panel = { update: () => {} };
    const slider = h("input", { type: "range", id: "playback-time", min: 0, max: data.duration_s, step: 1, value: 0, "aria-label": "Playback time" });
    const time = h("output", { for: "playback-time", class: "playback-clock", "data-testid": "playback-clock" });
    let shownSecond = -1;
    let shownPlaying = null;
    const onTime = (t, force = false) => {
      const second = Math.round(t);
      if (second !== shownSecond) {  // text and attributes change once per shift second, not every frame
        shownSecond = second;
        slider.value = String(second);
        time.textContent = clock(data.t0_ms + second * 1000, timezone);
        slider.setAttribute("aria-valuetext", dateTime(data.t0_ms + second * 1000, timezone));
      }
      panel.update(t, force);
      const playing = Boolean(player && player.playing);
      if (playing !== shownPlaying) {
        shownPlaying = playing;
        playButton.textContent = playing ? "Pause" : "Play";
        playButton.setAttribute("aria-pressed", String(playing));
        panel.update(t, true);
      }
    };
    const playButton = h("button", { type: "button", class: "play", "aria-pressed": "false" }, "Play");
    player = new Player(siteMap, data, kinds, timezone, onTime);
    const eventPanel = new EventPanel(player, siteMap, data, timezone);
    panel.update = (t, force) => eventPanel.update(t, force);
    const speed = h("select", { id: "playback-speed" }, SPEEDS.map((s) => h("option", { value: s, selected: s === player.speed }, `${s}x`)));
    speed.addEventListener("change", () => { player.speed = Number(speed.value); });
    playButton.addEventListener("click", () => (player.playing ? player.pause() : player.play()));
    slider.addEventListener("input", () => player.seek(Number(slider.value)));
    controls.replaceChildren(playButton, slider, time, h("label", { for: "playback-speed" }, "Speed "), speed,
      h("span", { class: "note" }, "Space plays/pauses, J/L jump a minute"));
    controls.onkeydown = (event) => {
      if (event.target.tagName === "SELECT") return;  // its own keys choose the speed
      if (event.target.tagName === "BUTTON" && (event.key === " " || event.key === "Enter")) return;  // a click already
      const keys = { " ": () => (player.playing ? player.pause() : player.play()), k: () => (player.playing ? player.pause() : player.play()),
        j: () => player.seek(player.time - 60), l: () => player.seek(player.time + 60) };
      const act = keys[event.key.toLowerCase()];
      if (act) { event.preventDefault(); act(); }
    };
    events.replaceChildren(h("h2", { id: "playback-events-heading" }, "At this moment"), eventPanel.list,
      h("p", { class: "note" }, `${data.events.length} events in the period${data.events_truncated ? " (the first 20,000 shown)" : ""}`));
    player.seek(0);
    const samples = data.machines.reduce((n, m) => n + m.t.length, 0);
    status.textContent = `${data.machines.length} machines, ${fmt(samples)} positions, ${data.events.length} events from ${dateTime(data.t0_ms, timezone)} ` +
      `to ${dateTime(data.t0_ms + data.duration_s * 1000, timezone)}, site time (${timezone}); loaded in ${fmt((performance.now() - started) / 1000)} s`;
    window.sitepulsePlayback = player;  // the benchmark reads frames and time
  }

  const picker = periodPicker(view, load);
  main.replaceChildren(
    h("h1", { class: "site-title" }, `${view.site.name}: playback`),
    h("div", { class: "overview playback" },
      h("section", { class: "map-panel", "aria-labelledby": "playback-heading" }, h("h2", { id: "playback-heading" }, "Replay a shift"),
        picker.element, siteMap.element, controls, status),
      h("aside", { class: "alerts-panel", "aria-labelledby": "playback-events-heading" }, events)));
  return () => { if (player) player.destroy(); siteMap.destroy(); };
}
