"""The tick loop: moves the fleet, reads its sensors, injects faults, yields MQTT messages, records truth.

Everything is driven by a fixed time step (1/hz) and per-machine numpy Generators derived
from one master seed, so the same arguments give byte-identical messages and truth.

    sim = Simulation(load_site(), site_id="demo", duration_s=3600, seed=1)
    for msg in sim:              # Message(t, topic, payload, retain, kind, is_json)
        ...
    records = sim.truth_records()
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime

import numpy as np
import orjson

from simulators.faults import FaultConfig, FaultInjector
from simulators.machines import (
    Behaviour,
    Hauler,
    LoadingUnit,
    Machine,
    band,
    fuel_rate_lph,
    power_limited_speed,
    spec_for,
)
from simulators.sensor_faults import SensorFaulter
from simulators.sensors import FleetSensors, MixedFleet, SensorConfig, SensorModel, fleet_sensors, sensors_dict
from simulators.site import PROFILE_STEP_M, RoadNetwork, Route
from simulators.truth import (
    TruthRecorder,
    TruthSettings,
    dumps_records,
    iso_ms,
    settings_dict,
    sorted_records,
)
from sitepulse.errors import SitePulseError
from sitepulse.recording import Message
from sitepulse.sitefile import Machine as SiteMachine
from sitepulse.sitefile import MachineKind, SiteConfig, ZoneType

DEFAULT_START = "2026-01-05T06:00:00Z"
QUEUE_REGION_M = 150.0  # a hauler joins a zone's queue this far before the zone's access point
QUEUE_FIRST_M = 20.0  # first waiting place, before the access point
QUEUE_GAP_M = 25.0  # spacing of waiting places (an 11 m truck plus room)
MIN_GAP_M = 25.0  # drivers keep at least this much centre-to-centre distance to the truck ahead
SPOT_CLEAR_M = 60.0  # the next truck moves in once the previous one is this far out
JUNCTION_APPROACH_M = 70.0
JUNCTION_STOP_M = 35.0
JUNCTION_CLEAR_M = 30.0
BRAKE_COMFORT = 1.0  # m/s2, used to slow down ahead of a lower limit
BRAKE_STOP = 1.2
BRAKE_MAX = 2.5
ARRIVED_M = 0.5  # stopped this close to the end of its route, a truck has arrived (it brakes to 0.3 m short)


def parse_start(text: str | None) -> datetime:
    """Parse an RFC 3339 start time (``Z`` or offset); None gives the fixed file-output default."""
    text = text or DEFAULT_START
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SitePulseError(f"--start: {text!r} is not an RFC 3339 time like {DEFAULT_START}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _rng(seed: int, name: str, stream: int) -> np.random.Generator:
    """A Generator for one machine and purpose; independent of dict order and of other machines."""
    return np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(name.encode()), stream])


class ZoneServer:
    """The spots of a load or dump zone and the haulers waiting for one, first come first served."""

    def __init__(self, n_spots: int) -> None:
        self.holder: list[int | None] = [None] * n_spots
        self.waiting: list[int] = []
        self.leaving: set[int] = set()  # trucks pulling out: nobody pulls in until they are clear
        self.arriving: set[int] = set()  # trucks pulling in: nobody pulls out meanwhile

    def join(self, idx: int) -> None:
        self.waiting.append(idx)

    def position(self, idx: int) -> int:
        return self.waiting.index(idx)

    def try_assign(self, idx: int) -> int | None:
        if self.waiting and self.waiting[0] == idx and not self.leaving:
            for j, holder in enumerate(self.holder):
                if holder is None:
                    self.holder[j] = idx
                    self.waiting.pop(0)
                    self.arriving.add(idx)
                    return j
        return None


def fleet_from_site(site: SiteConfig, haulers: int | None) -> tuple[list[SiteMachine], list[SiteMachine]]:
    """Haulers (scaled to ``haulers`` by repeating the site's models) and loading units of a site."""
    hs = [m for m in site.machines if m.kind == MachineKind.hauler]
    units = [m for m in site.machines if m.kind in (MachineKind.loader, MachineKind.excavator)]
    if haulers is not None:
        if haulers < 0:
            raise SitePulseError("--machines must be zero or more")
        if not hs:
            hs = [SiteMachine(id="HX-01", kind=MachineKind.hauler, model="Volvo A30G",
                              rated_payload_kg=28000)]
        base = list(hs)
        out = base[:haulers]
        width = max(2, len(str(haulers)))
        k = 0
        while len(out) < haulers:
            src = base[k % len(base)]
            k += 1
            new_id = f"HX-{len(out) + 1:0{width}d}"
            while any(m.id == new_id for m in out + units):
                new_id += "x"
            out.append(SiteMachine(id=new_id, kind=MachineKind.hauler, model=src.model,
                                   rated_payload_kg=src.rated_payload_kg))
        hs = out
    return hs, units


class Simulation:
    """A simulated site run; iterate it for messages, then ask for the ground truth."""

    def __init__(self, site: SiteConfig, *, site_id: str = "demo", haulers: int | None = None,
                 hz: float = 1.0, duration_s: float = 3600.0, seed: int = 0,
                 start: datetime | str | None = None, faults: FaultConfig | None = None,
                 skew_max_s: float = 0.5, sensors: FleetSensors | str | None = None,
                 behaviour: Behaviour | None = None, truth_settings: TruthSettings | None = None,
                 warm_start: bool = True) -> None:
        if hz <= 0 or hz > 50:
            raise SitePulseError("--hz must be above 0 and at most 50")
        if duration_s < 0:
            raise SitePulseError("--duration must not be negative")
        self.site = site
        self.site_id = site_id
        self.hz = hz
        self.dt = 1.0 / hz
        self.duration = float(duration_s)
        self.n_ticks = int(math.floor(self.duration * hz + 1e-9))
        self.seed = int(seed)
        self.start = start if isinstance(start, datetime) else parse_start(start)
        self.start_epoch = self.start.timestamp()
        self.faults = faults or FaultConfig()
        self.sensor_cfg = resolve_sensors(sensors, skew_max_s)
        self.behaviour = behaviour or Behaviour()
        self.truth_settings = truth_settings or TruthSettings()
        self.warm_start = warm_start
        self.n_haulers = haulers
        self._build()
        self._done = False

    # ---- set-up -------------------------------------------------------------------------
    def _build(self) -> None:
        site = self.site
        load_zones = [z.id for z in site.zones if z.type == ZoneType.load]
        dump_zones = [z.id for z in site.zones if z.type == ZoneType.dump]
        if not load_zones or not dump_zones:
            raise SitePulseError("site file needs a load zone and a dump zone to simulate hauling")
        hs, units = fleet_from_site(site, self.n_haulers)
        # loading units: each belongs to a load zone (the machine's ``zone`` field, else round-robin)
        unit_zone: dict[str, str] = {}
        for k, u in enumerate(sorted(units, key=lambda m: m.id)):
            z = (u.model_extra or {}).get("zone")
            unit_zone[u.id] = z if z in load_zones else load_zones[k % len(load_zones)]
        for z in load_zones:  # a load zone without a loader gets a virtual wheel loader
            if z not in unit_zone.values():
                vid = f"LD-{z}"[:64]
                units.append(SiteMachine(id=vid, kind=MachineKind.loader, model="Volvo L220H",
                                         rated_payload_kg=10000))
                unit_zone[vid] = z
        per_zone = {z: sorted(u for u, uz in unit_zone.items() if uz == z) for z in load_zones}
        self.net = RoadNetwork(site, {z: len(v) for z, v in per_zone.items()})
        all_site = sorted(hs + units, key=lambda m: m.id)
        self.machines: list[Machine] = []
        self.haulers: list[Hauler] = []
        self.units: dict[str, list[LoadingUnit]] = {z: [] for z in load_zones}
        for i, sm in enumerate(all_site):
            kind = str(sm.kind)
            spec = spec_for(sm.model, kind, sm.rated_payload_kg)
            rng = _rng(self.seed, sm.id, 1)
            common = dict(id=sm.id, kind=kind, model=sm.model or "unknown", spec=spec, index=i, rng=rng)
            if kind == "hauler":
                m: Machine = Hauler(**common)
                self.haulers.append(m)
            else:
                z = unit_zone[sm.id]
                j = per_zone[z].index(sm.id)
                spot = self.net.spots[z][j]
                m = LoadingUnit(**common, zone=z, spot=j, face=spot.face, truck_side=spot.truck_side)
                m.x, m.y = spot.face
                m.engine_on = True
                self.units[z].append(m)
            m.fuel_l = m.fuel_start = round(float(rng.uniform(20_000, 200_000)), 1)
            m.engine_h = m.hours_start = round(float(rng.uniform(1_000, 12_000)), 1)
            self.machines.append(m)
        for z in load_zones:
            self.units[z].sort(key=lambda u: u.spot)
        self.servers = {z: ZoneServer(len(self.net.spots[z])) for z in load_zones + dump_zones}
        # haulers: spread over load zones by loading units, each load zone feeds one dump zone
        weights = {z: len(per_zone[z]) for z in load_zones}
        count = {z: 0 for z in load_zones}
        for h in self.haulers:
            z = min(load_zones, key=lambda zz: (count[zz] / weights[zz], load_zones.index(zz)))
            count[z] += 1
            h.load_zone = z
            h.dump_zone = dump_zones[load_zones.index(z) % len(dump_zones)]
        self.machine_sensors = [self.sensor_cfg.config_for(_rng(self.seed, m.id, 4))
                                if isinstance(self.sensor_cfg, MixedFleet) else self.sensor_cfg
                                for m in self.machines]
        self.sensors = [SensorModel(_rng(self.seed, m.id, 2), cfg, self.dt, m.spec.rated_payload_kg, m.kind)
                        for m, cfg in zip(self.machines, self.machine_sensors, strict=True)]
        self.injectors = [FaultInjector(_rng(self.seed, m.id, 3), self.faults, self.dt)
                          for m in self.machines]
        known = {m.id for m in self.machines}
        for f in self.faults.sensor_faults:
            missing = [mid for mid in f.machines if mid != "*" and mid not in known]
            if missing:
                raise SitePulseError(f"--faults: {f.spec}: no machine {missing[0]!r} on this site "
                                     f"(machines: {', '.join(sorted(known))})")
        self.faulters = [SensorFaulter(_rng(self.seed, m.id, 4), [f for f in self.faults.sensor_faults
                                                                  if f.applies(m.id)], self.dt)
                         if any(f.applies(m.id) for f in self.faults.sensor_faults) else None
                         for m in self.machines]
        self.locks: dict[int, int | None] = {n: None for n in self.net.junction_nodes}
        path_limits = {p.id: p.speed_limit_kmh for p in site.paths}
        self.path_index = {pid: k for k, pid in enumerate(sorted(path_limits))}
        self.truth = TruthRecorder(site, [m.id for m in self.machines], self.start_epoch, path_limits,
                                   dt=self.dt, settings=self.truth_settings)
        parking = [z.id for z in site.zones if z.type == ZoneType.parking]
        if self.warm_start or not parking:
            self._warm_start()
        else:
            slots = self.net.parking_slots(parking[0], len(self.haulers))
            for k, h in enumerate(self.haulers):
                h.x, h.y = slots[k]
                h.mode = "parked"
                h.slot = slots[k]
                h.t_next = k * 35.0 + float(h.rng.uniform(0, 10))

    def _warm_start(self) -> None:
        """Spread each zone group's haulers evenly over its cycle loop so the site is busy at once."""
        groups: dict[str, list[Hauler]] = {}
        for h in self.haulers:
            groups.setdefault(h.load_zone, []).append(h)
        for z in sorted(groups):
            group = groups[z]
            loaded = self.net.route(("spot", (z, 0)), group[0].dump_zone, 0)
            empty = self.net.route(("spot", (group[0].dump_zone, 0)), z, 0)
            loop = loaded.length + empty.length
            for k, h in enumerate(group):
                pos = loop * (k + 0.5) / len(group)
                h.engine_on = True
                if pos < loaded.length:
                    h.payload = self.behaviour.payload_fraction(h.rng) * h.spec.rated_payload_kg
                    self._start_trip(h, 0.0, "dump", ("spot", (z, 0)), warm_s=pos, route=loaded)
                else:
                    self._start_trip(h, 0.0, "load", ("spot", (h.dump_zone, 0)), warm_s=pos - loaded.length,
                                     route=empty)
                h.cycle = {}

    def _envelope(self, route: Route, factor: float) -> np.ndarray:
        """Highest speed (m/s) at each profile step that still slows to every lower limit ahead."""
        lim = np.minimum(route.limit * factor, 200.0) / 3.6
        s = np.arange(len(lim)) * PROFILE_STEP_M
        q = lim ** 2 + 2 * BRAKE_COMFORT * s
        suffix = np.minimum.accumulate(q[::-1])[::-1]
        return np.sqrt(np.maximum(suffix - 2 * BRAKE_COMFORT * s, 0.0))

    def _start_trip(self, h: Hauler, t: float, purpose: str, start: tuple, warm_s: float | None = None,
                    route: Route | None = None) -> None:
        zone = h.load_zone if purpose == "load" else h.dump_zone
        b = self.behaviour
        if route is None:
            a = self.net.access[start[1][0]] if start[0] == "spot" else None
            shortcut = a is not None and self.net.has_restricted_shortcut(a, self.net.access[zone])
            rogue = shortcut and h.rng.random() < b.p_restricted_trip
            route = self.net.route(start, zone, 0, allow_restricted=rogue)
        speeding = h.rng.random() < b.p_speeding_trip
        h.factor = float(h.rng.uniform(*(b.speeding_factor if speeding else b.compliant_factor)))
        h.route = route
        h.trip_start = start
        h.envelope = self._envelope(route, h.factor)
        h.purpose, h.zone, h.spot = purpose, zone, 0
        h.assigned = h.joined = False
        h.wait_from = None
        h.junction_ignore = {}
        for node in sorted(h.junction_hold):
            if self.locks.get(node) == h.index:
                self.locks[node] = None
        h.junction_hold = set()
        h.mode = "drive"
        h.s = 0.0
        h.leaving = (start[1][0], start[1][1]) if start[0] == "spot" and warm_s is None else None
        if h.leaving:
            self.servers[h.leaving[0]].leaving.add(h.index)
        if warm_s is not None:
            s = min(warm_s, max(0.0, route.access_s - QUEUE_REGION_M - 10))
            for _node, sj in route.junctions:
                if sj - JUNCTION_APPROACH_M - 10 < s < sj + JUNCTION_CLEAR_M + 10:
                    s = sj + JUNCTION_CLEAR_M + 10
            h.s = min(s, max(0.0, route.access_s - QUEUE_REGION_M - 10))
            h.speed = min(float(self._envelope_at(h)), 8.0)
        h.x, h.y, h.heading = route.position(h.s)

    def _envelope_at(self, h: Hauler) -> float:
        i = min(int(h.s / PROFILE_STEP_M), len(h.envelope) - 1)
        return float(h.envelope[i])

    # ---- the tick -----------------------------------------------------------------------
    def _occupancy(self) -> dict:
        occ: dict = {}
        for h in self.haulers:
            if h.route is not None and h.mode in ("drive", "loading", "ready", "dumping", "after_dump"):
                key, s_e, _pid, _k = h.route.edge_at(h.s)
                occ.setdefault(key, []).append((s_e, h.index))
        return occ

    def _leader_gap(self, h: Hauler, occ: dict) -> float | None:
        r: Route = h.route
        key, s_e, _pid, k = r.edge_at(h.s)
        best = None
        for s2, idx in occ.get(key, ()):
            if idx != h.index and (s2 > s_e or (s2 == s_e and idx < h.index)):
                gap = s2 - s_e
                best = gap if best is None else min(best, gap)
        if best is None and k + 1 < len(r.edges):
            nkey, s0, s1, _ = r.edges[k + 1]
            rest = (r.edges[k][2] - r.edges[k][1]) - s_e
            for s2, idx in occ.get(nkey, ()):
                if idx != h.index:
                    gap = rest + s2
                    best = gap if best is None else min(best, gap)
        return best

    def _truck_ahead_before(self, h: Hauler, occ: dict, s_junction: float) -> bool:
        """Whether another truck is on h's route between h and the junction at ``s_junction``.

        Without this check a truck reaching the approach as the junction frees up could take it while the
        truck ahead of it (stopped at the line, waiting its turn) still blocks its way: each waits for the
        other and the fleet gridlocks.
        """
        gap = self._leader_gap(h, occ)
        return gap is not None and gap < s_junction - h.s

    def _drive(self, h: Hauler, t: float, occ: dict) -> None:
        r: Route = h.route
        dt = self.dt
        server = self.servers[h.zone]
        if h.leaving and h.s > SPOT_CLEAR_M:
            z, j = h.leaving
            self.servers[z].holder[j] = None
            self.servers[z].leaving.discard(h.index)
            h.leaving = None
            if h.partner >= 0:
                self.machines[h.partner].partner = -1
                h.partner = -1
        if not h.joined and h.s >= r.access_s - QUEUE_REGION_M:
            server.join(h.index)
            h.joined = True
            if h.purpose == "dump" and h.cycle:
                h.cycle["dump_queue_start"] = t
        if h.joined and not h.assigned:
            j = server.try_assign(h.index)
            if j is not None:
                h.assigned, h.spot = True, j
                if j != 0:
                    h.route = r = self.net.route(h.trip_start, h.zone, j, allow_restricted=r.restricted)
                    h.envelope = self._envelope(r, h.factor)
                if h.purpose == "load":
                    unit = self.units[h.zone][j]
                    h.partner, unit.partner = unit.index, h.index
                if h.wait_from is not None:
                    if t - h.wait_from >= self.truth_settings.queue_min_s:
                        self.truth.add({"type": "queue", "machine_id": h.id, "zone": h.zone,
                                        "queued_from": self.truth.iso(h.wait_from),
                                        "queued_to": self.truth.iso(t), "_t": h.wait_from})
                    h.wait_from = None
        if h.assigned:
            s_stop = r.length
        elif h.joined:
            s_stop = r.access_s - QUEUE_FIRST_M - QUEUE_GAP_M * server.position(h.index)
        else:
            s_stop = r.length
        for node, sj in r.junctions:
            if h.s > sj + JUNCTION_CLEAR_M:
                if node in h.junction_hold:
                    h.junction_hold.discard(node)
                    if self.locks[node] == h.index:
                        self.locks[node] = None
                continue
            if h.s < sj - JUNCTION_APPROACH_M:
                break
            holder = self.locks[node]
            if holder is None and self._truck_ahead_before(h, occ, sj):
                holder = -1  # first come, first served: the truck ahead on this approach takes the junction first
            if holder is None or holder == h.index:
                self.locks[node] = h.index
                h.junction_hold.add(node)
            else:
                if node not in h.junction_ignore:
                    h.junction_ignore[node] = bool(h.rng.random() < self.behaviour.p_run_junction)
                if not h.junction_ignore[node] and h.s <= sj - JUNCTION_STOP_M + 1.0:
                    s_stop = min(s_stop, sj - JUNCTION_STOP_M)
            break
        gap = self._leader_gap(h, occ)
        if gap is not None:
            s_stop = min(s_stop, h.s + gap - MIN_GAP_M)
        i = min(int(h.s / PROFILE_STEP_M), len(h.envelope) - 1)
        grade = float(r.grade[i])
        v_cap = power_limited_speed(h.spec, h.payload, grade)
        v_stop = math.sqrt(2 * BRAKE_STOP * max(0.0, s_stop - h.s - 0.3))
        v_des = min(float(h.envelope[i]), v_cap, v_stop)
        loaded = h.payload > 0.3 * h.spec.rated_payload_kg
        a_max = 0.4 if loaded else 0.7
        v0 = h.speed
        v1 = max(0.0, v0 + min(max(v_des - v0, -BRAKE_MAX * dt), a_max * dt))
        ds = (v0 + v1) / 2 * dt
        if h.s + ds > s_stop:
            ds = max(0.0, s_stop - h.s)
            v1 = min(v1, ds / dt)
            if ds < 0.05:
                v1 = 0.0
        if v1 < 0.05 and v_des < 0.05:
            v1 = 0.0
        h.accel = (v1 - v0) / dt
        h.grade = grade
        h.speed = v1
        h.s += ds
        h.distance_m += ds
        h.x, h.y, hd = r.position(h.s)
        if ds > 0.01:
            h.heading = hd
        if h.joined and not h.assigned and v1 == 0.0 and h.wait_from is None:
            h.wait_from = t
        if h.assigned and h.s >= r.length - ARRIVED_M and v1 == 0.0:
            self._arrive(h, t)

    def _arrive(self, h: Hauler, t: float) -> None:
        self.servers[h.zone].arriving.discard(h.index)
        if h.purpose == "load":
            unit = self.units[h.zone][h.spot]
            unit.start_loading(h, t, self.behaviour)
            h.payload = 0.0
            h.cycle = {"machine_id": h.id, "loader_id": unit.id, "load_zone": h.zone, "load_start": t}
            h.mode = "loading"
        else:
            h.mode = "dumping"
            if h.cycle:
                h.cycle["dump_arrived_at"] = t
            h.dump_t0 = t + float(h.rng.uniform(*self.behaviour.dump_position_s))  # reverse to the tip edge
            h.dump_T = float(h.rng.uniform(*self.behaviour.dump_tip_s))  # payload falls to ~0
            h.dump_p0 = h.payload

    def _step_hauler(self, h: Hauler, t: float, occ: dict) -> None:
        dt = self.dt
        if h.mode == "parked":
            if t >= h.t_next:
                h.engine_on = True
                h.mode = "warmup"
                h.t_next = t + float(h.rng.uniform(20, 60))
        elif h.mode == "warmup":
            if t >= h.t_next:
                self._start_trip(h, t, "load", ("xy", h.slot))
        elif h.mode == "drive":
            self._drive(h, t, occ)
            return
        elif h.mode == "loading":
            unit = self.units[h.zone][h.spot]
            if unit.done_at is not None and unit.truck is h:
                h.cycle.update(loaded_at=unit.done_at, passes=len(unit.passes), payload_kg=sum(unit.passes))
                unit.truck = None
                h.mode = "ready"
                h.t_next = t + float(h.rng.uniform(*self.behaviour.depart_pause_s))  # operator signals, pull off
        elif h.mode == "ready":
            if t >= h.t_next and not self.servers[h.zone].arriving:
                h.cycle["haul_start"] = t
                self._start_trip(h, t, "dump", ("spot", (h.zone, h.spot)))
                h.speed = 0.0
                self._drive(h, t, occ)
                return
        elif h.mode == "dumping":
            if t >= h.dump_t0:
                if h.cycle and "dump_start" not in h.cycle:
                    h.cycle["dump_start"] = t
                f = min(1.0, (t - h.dump_t0) / h.dump_T)
                h.payload = h.dump_p0 * (1 - f * f * (3 - 2 * f))
                if f >= 1.0:
                    h.payload = 0.0
                    if h.cycle and "loaded_at" in h.cycle:
                        h.cycle.update(dumped_at=t, dump_zone=h.zone)
                        self._record_cycle(h)
                    h.cycle = {}
                    h.mode = "after_dump"
                    h.t_next = t + float(h.rng.uniform(*self.behaviour.after_dump_s))
        elif h.mode == "after_dump":
            if t >= h.t_next and not self.servers[h.zone].arriving:
                self._start_trip(h, t, "load", ("spot", (h.zone, h.spot)))
                h.speed = 0.0
                self._drive(h, t, occ)
                return
        h.speed = 0.0
        h.accel = 0.0
        _ = dt

    def _record_cycle(self, h: Hauler) -> None:
        c = h.cycle
        rated = h.spec.rated_payload_kg
        iso = self.truth.iso
        self.truth.add({
            "type": "cycle", "machine_id": h.id, "loader_id": c["loader_id"], "load_zone": c["load_zone"],
            "dump_zone": c["dump_zone"], "load_start": iso(c["load_start"]), "loaded_at": iso(c["loaded_at"]),
            "haul_start": iso(c["haul_start"]), "dump_queue_start": iso(c.get("dump_queue_start")),
            "dump_arrived_at": iso(c.get("dump_arrived_at")), "dump_start": iso(c["dump_start"]),
            "dumped_at": iso(c["dumped_at"]),
            "payload_kg": round(c["payload_kg"], 1), "rated_payload_kg": rated,
            "band": band(c["payload_kg"], rated), "passes": c["passes"], "_t": c["load_start"]})

    def _sample(self, m: Machine, sensor: SensorModel, t: float, lon: float, lat: float,
                spd: float, hdg: float, pay: float, clock_s: float = 0.0) -> dict:
        m.seq += 1
        return {
            "ts": iso_ms(self.start_epoch + t + sensor.skew_s + clock_s), "seq": m.seq - 1,
            "lat": round(lat, 7), "lon": round(lon, 7), "speed_kmh": round(spd, 1),
            "heading_deg": round(hdg, 1), "payload_kg": round(pay, 1), "fuel_used_l": round(m.fuel_l, 3),
            "engine_hours": round(m.engine_h, 4), "engine_on": m.engine_on,
        }

    def topic(self, machine_id: str, leaf: str) -> str:
        return f"sites/{self.site_id}/machines/{machine_id}/{leaf}"

    def __iter__(self) -> Iterator[Message]:
        return self.messages()

    def messages(self, progress=None) -> Iterator[Message]:
        """Yield every message of the run in send order; ``progress(ticks_done)`` is called now and then."""
        if self._done:
            raise RuntimeError("a Simulation runs once; create a new one")
        self._done = True
        ms = self.machines
        n = len(ms)
        for m in ms:
            birth = {"kind": m.kind, "model": m.model, "rated_payload_kg": m.spec.rated_payload_kg}
            yield Message(0.0, self.topic(m.id, "birth"), orjson.dumps(birth), True, "birth", True)
            yield Message(0.0, self.topic(m.id, "status"), b"online", True, "status", False)
        xs, ys = np.zeros(n), np.zeros(n)
        tx, ty, tv, th = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        partner = np.zeros(n, dtype=np.int64)
        pidx = np.zeros(n, dtype=np.int64)
        readings: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * n
        telem = [self.topic(m.id, "telemetry") for m in ms]
        status = [self.topic(m.id, "status") for m in ms]
        no_path = len(self.path_index)
        dt = self.dt
        for k in range(self.n_ticks + 1):
            t = k * dt
            if k > 0:
                for units in self.units.values():
                    for u in units:
                        u.step(t, dt)
                occ = self._occupancy()
                for h in self.haulers:
                    self._step_hauler(h, t, occ)
            for i, m in enumerate(ms):
                if k > 0 and m.engine_on:
                    if isinstance(m, Hauler):
                        rate = fuel_rate_lph(m.spec, m.payload, m.speed, m.accel, m.grade)
                    else:
                        rate = m.spec.work_lph if m.working else m.spec.idle_lph
                        m.distance_m += m.speed * dt
                    m.fuel_l += rate * dt / 3600.0
                    m.engine_h += dt / 3600.0
                    if m.speed < 0.05:
                        m.idle_s += dt
                tx[i], ty[i], tv[i], th[i] = m.x, m.y, m.speed, m.heading
                partner[i] = m.partner
                pid = ""
                if isinstance(m, Hauler) and m.route is not None and m.mode == "drive":
                    pid = m.route.edge_at(m.s)[2]
                pidx[i] = self.path_index.get(pid, no_path) if pid else no_path
                loaded_body = isinstance(m, Hauler) and m.payload > 0.3 * m.spec.rated_payload_kg
                nx, ny, spd, hdg, pay = self.sensors[i].read(m.x, m.y, m.speed, m.heading, m.payload,
                                                               loaded_body)
                xs[i], ys[i] = nx, ny
                readings[i] = (spd, hdg, pay)
            self.truth.tick(t, tx, ty, tv, th, partner, pidx)
            lons, lats = self.net.frame.to_lonlat(xs, ys)
            for i, m in enumerate(ms):
                spd, hdg, pay = readings[i]
                faulter = self.faulters[i]
                sample = self._sample(m, self.sensors[i], t, float(lons[i]), float(lats[i]), spd, hdg, pay,
                                      faulter.clock_offset(t) if faulter is not None else 0.0)
                if faulter is not None:
                    sample = faulter.apply(t, sample, (xs[i], ys[i]), self.net.frame.to_lonlat)
                out, change = self.injectors[i].process(t, sample)
                if change == "offline":
                    yield Message(t, status[i], b"offline", True, "status", False)
                elif change == "online":
                    yield Message(t, status[i], b"online", True, "status", False)
                for payload, is_json in out:
                    data = payload if isinstance(payload, bytes) else payload.encode()
                    yield Message(t, telem[i], data, False, "telemetry", is_json)
            if progress is not None and (k % 300 == 0 or k == self.n_ticks):
                progress(k)
        t_end = self.n_ticks * dt
        for i, _m in enumerate(ms):
            out, change = self.injectors[i].flush(t_end)
            if change == "online":
                yield Message(t_end, status[i], b"online", True, "status", False)
            for payload, is_json in out:
                data = payload if isinstance(payload, bytes) else payload.encode()
                yield Message(t_end, telem[i], data, False, "telemetry", is_json)
        for i, _m in enumerate(ms):
            yield Message(t_end, status[i], b"offline", True, "status", False)
        self.truth.finish()
        self.t_end = t_end

    # ---- ground truth -------------------------------------------------------------------
    def truth_records(self) -> list[dict]:
        """All ground-truth records (after the run), in file order; see simulators/README.md."""
        if not self._done or not hasattr(self, "t_end"):
            raise RuntimeError("run the simulation (iterate it) before asking for the truth")
        iso = self.truth.iso
        head = [{"type": "site", "site_id": self.site_id, "site_name": self.site.name, "start": iso(0.0),
                 "end": iso(self.t_end), "seed": self.seed, "settings": {
                     "hz": self.hz, "duration_s": self.duration, "haulers": len(self.haulers),
                     "faults": self.faults.as_dict(), "sensors": sensors_dict(self.sensor_cfg),
                     "behaviour": asdict(self.behaviour), "truth": settings_dict(self.truth_settings),
                     "warm_start": self.warm_start}}]
        for m, sensor in zip(self.machines, self.sensors, strict=True):
            rec = {"type": "machine", "machine_id": m.id, "kind": m.kind, "model": m.model,
                   "rated_payload_kg": m.spec.rated_payload_kg, "clock_skew_s": sensor.skew_s,
                   "distance_m": round(m.distance_m, 1), "fuel_used_l": round(m.fuel_l - m.fuel_start, 3),
                   "engine_hours": round(m.engine_h - m.hours_start, 4), "idle_s": round(m.idle_s, 1),
                   "gnss_jumps": sensor.jumps, "receiver": sensor.cfg.gnss_class or "default",
                   "gnss_noise_m": round(sensor.cfg.gnss_noise_m, 3), "payload_sentinels": sensor.sentinels}
            if isinstance(m, Hauler):
                rec.update(load_zone=m.load_zone, dump_zone=m.dump_zone)
            else:
                rec.update(load_zone=m.zone)
            head.append(rec)
        events = list(self.truth.records)
        tail = []
        totals = {"dropout": 0, "duplicate": 0, "reorder": 0, "malformed": 0, "wrong_type": 0}
        msgs = {"dropout": 0}
        live = 0
        samples = 0
        for m, inj in zip(self.machines, self.injectors, strict=True):
            c = inj.counts
            live += c.live_messages
            samples += c.dropout_samples
            for kind in totals:
                totals[kind] += getattr(c, kind)
            msgs["dropout"] += c.dropout_messages
            for f, u, ns in inj.dropouts:
                events.append({"type": "dropout", "machine_id": m.id, "offline_from": iso(f),
                               "online_at": iso(u), "samples": ns, "_t": f})
        for m in self.machines:
            for f in self.faults.sensor_faults:
                if f.applies(m.id) and f.start_s <= self.t_end:
                    events.append({"type": "sensor_fault", "machine_id": m.id, "sensor": f.sensor, "mode": f.mode,
                                   "value": f.value, "spec": f.spec, "started_at": iso(f.start_s),
                                   "ended_at": iso(f.end_s) if f.end_s is not None and f.end_s < self.t_end
                                   else None, "_t": f.start_s})
        for kind in ("dropout", "duplicate", "reorder", "malformed", "wrong_type"):
            rec = {"type": "fault", "kind": kind, "rate": getattr(self.faults, kind), "count": totals[kind],
                   "messages": msgs.get(kind, totals[kind]), "live_messages": live}
            if kind == "dropout":
                rec.update(unit="per machine-minute", samples=samples)
            else:
                rec.update(unit="per live telemetry message")
            tail.append(rec)
        cycles = [r for r in events if r["type"] == "cycle"]
        counts: dict[str, int] = {}
        for r in events:
            counts[r["type"]] = counts.get(r["type"], 0) + 1
        pay = [r["payload_kg"] / r["rated_payload_kg"] for r in cycles]
        tail.append({"type": "summary", "records": dict(sorted(counts.items())), "cycles": len(cycles),
                     "tonnes_moved": round(sum(r["payload_kg"] for r in cycles) / 1000, 1),
                     "mean_payload_pct": round(100 * float(np.mean(pay)), 2) if pay else None,
                     "bands": {b: sum(1 for r in cycles if r["band"] == b)
                               for b in ("under", "target", "over_110", "over_120")}})
        return sorted_records(head, events, tail)

    def write_truth(self, path) -> list[dict]:
        """Write the ground truth as JSON lines and return its records."""
        records = self.truth_records()
        with open(path, "wb") as fh:
            fh.write(dumps_records(records))
        return records


def resolve_sensors(sensors: FleetSensors | str | None, skew_max_s: float = 0.5) -> FleetSensors:
    """A fleet's sensors from a config, a MixedFleet, or a receiver class name ("rtk", "sbas", "standalone",
    "mixed"); ``skew_max_s`` other than the default 0.5 s overrides the config's clock skew."""
    if sensors is None:
        return SensorConfig(skew_max_s=skew_max_s)
    if isinstance(sensors, str):
        sensors = fleet_sensors(sensors)
    if skew_max_s != 0.5:
        if isinstance(sensors, MixedFleet):
            return sensors.with_skew(skew_max_s)
        return SensorConfig(**{**asdict(sensors), "skew_max_s": skew_max_s})
    return sensors


def simulate(site: SiteConfig, *, site_id: str = "demo", haulers: int | None = None, hz: float = 1.0,
             duration_s: float = 3600.0, seed: int = 0, start: datetime | str | None = None,
             faults: FaultConfig | None = None, skew_max_s: float = 0.5, **options) -> Simulation:
    """A ready-to-run Simulation (an iterator of Messages); call ``truth_records()`` after it ran."""
    return Simulation(site, site_id=site_id, haulers=haulers, hz=hz, duration_s=duration_s, seed=seed,
                      start=start, faults=faults, skew_max_s=skew_max_s, **options)
