"""The weight-loading service: haul cycles and payload policy from each hauler's on-board weighing.

``process`` turns new telemetry into finished haul cycles (``weight_loading.cycles``), hourly
operating time and fuel per machine (``weight_loading.activity``) and a critical alert for a
load above 120 % of rated (Caterpillar 10/10/20 rule 3, docs/DOMAIN.md) while the hauler is still
at the loader. Detection lives in ``detect.py``; where a hauler's payload readings are absent, stuck or out of
range, its cycles come from the track (``track.py``: a stop at a load zone, then at a tipping zone) without a
payload. Routes and KPI queries in ``routes.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from microservices.ground_speed import speeds_of_runs
from microservices.sdk import Batch, Card, CardContext, Kpi, Outputs, ReportRequest, ReportSection, Service, SiteCache
from microservices.weight_loading import detect, track
from microservices.weight_loading.settings import WeightLoadingSettings
from sitepulse.geo import LocalFrame
from sitepulse.sitefile import SiteConfig

NS = detect.NS
STATE_VERSION = 5  # 5: the track walk carries whether a hauler was unseen for long (stops.INTS)
HAULING_KINDS = ("hauler", "other")  # machines that carry loads; loaders' bucket weights are passes
LOADING_KINDS = ("loader", "excavator")  # machines that fill them: a hauler standing beside one is loading
CYCLE_DAY = "(c.dumped_at AT TIME ZONE 'UTC')::date"

# Value KPI (README.md, "KPIs", the value formula): had every under-loaded trip carried the target payload, the same
# tonnes would have needed payload/target of a trip; the rest of the trip, and that share of its
# fuel (loaded leg plus return), would have been saved.
_SAVED = "GREATEST(0, 1 - c.payload_kg / (c.rated_payload_kg * {target}))"
TRIPS_SAVED_SQL = f"""
SELECT {CYCLE_DAY} AS day, sum({_SAVED.format(target="1.0")}) FILTER (WHERE c.band = 'under') AS value
FROM weight_loading.cycles c
WHERE c.site_id = %(site_id)s AND c.dumped_at >= %(start)s AND c.dumped_at < %(end)s
GROUP BY 1 ORDER BY 1
"""
FUEL_SAVED_SQL = f"""
SELECT {CYCLE_DAY} AS day,
       coalesce(sum((coalesce(c.fuel_used_l, 0) + coalesce(c.fuel_return_l, 0)) * {_SAVED.format(target="1.0")})
                FILTER (WHERE c.band = 'under'), 0) AS value
FROM weight_loading.cycles c
WHERE c.site_id = %(site_id)s AND c.dumped_at >= %(start)s AND c.dumped_at < %(end)s
GROUP BY 1 ORDER BY 1
"""
TONNES_PER_HOUR_SQL = """
WITH t AS (
  SELECT (dumped_at AT TIME ZONE 'UTC')::date AS day, sum(payload_kg) / 1000.0 AS tonnes
  FROM weight_loading.cycles
  WHERE site_id = %(site_id)s AND dumped_at >= %(start)s AND dumped_at < %(end)s AND payload_kg IS NOT NULL
  GROUP BY 1),
h AS (
  SELECT (a.hour AT TIME ZONE 'UTC')::date AS day, sum(a.engine_hours) AS hours
  FROM weight_loading.activity a
  WHERE a.site_id = %(site_id)s AND a.hour >= %(start)s AND a.hour < %(end)s
    AND a.machine_id IN (SELECT DISTINCT machine_id FROM weight_loading.cycles
                         WHERE site_id = %(site_id)s AND payload_kg IS NOT NULL)
  GROUP BY 1)
SELECT t.day, t.tonnes / NULLIF(h.hours, 0) AS value FROM t JOIN h USING (day) ORDER BY 1
"""
OVER_SHARE_SQL = """
SELECT (dumped_at AT TIME ZONE 'UTC')::date AS day,
       avg(CASE WHEN band IN ('over_110', 'over_120') THEN 1.0 ELSE 0.0 END) AS value
FROM weight_loading.cycles
WHERE site_id = %(site_id)s AND dumped_at >= %(start)s AND dumped_at < %(end)s AND payload_kg IS NOT NULL
GROUP BY 1 ORDER BY 1
"""
FUEL_PER_TONNE_SQL = """
SELECT (dumped_at AT TIME ZONE 'UTC')::date AS day,
       sum(coalesce(fuel_used_l, 0) + coalesce(fuel_return_l, 0)) / NULLIF(sum(payload_kg) / 1000.0, 0) AS value
FROM weight_loading.cycles
WHERE site_id = %(site_id)s AND dumped_at >= %(start)s AND dumped_at < %(end)s AND payload_kg IS NOT NULL
GROUP BY 1 ORDER BY 1
"""


def rated_payloads(machines: pd.DataFrame, settings: WeightLoadingSettings
                   ) -> tuple[dict[str, float], dict[str, str], set[str]]:
    """Rated payload per load-carrying machine (settings override the registry), machines skipped, and the
    loading units (docs/DOMAIN.md: loaders and excavators fill haulers in passes)."""
    rated: dict[str, float] = {}
    skipped: dict[str, str] = {}
    loaders: set[str] = set()
    columns = (machines[c].tolist() for c in ("machine_id", "kind", "rated_payload_kg"))
    for machine_id, kind, registered in zip(*columns, strict=True):
        if str(kind) in LOADING_KINDS:
            loaders.add(str(machine_id))
        if str(kind) not in HAULING_KINDS:
            continue
        value = settings.rated_payload_kg.get(machine_id, registered)
        if value is not None and value == value and float(value) > 0:
            rated[machine_id] = float(value)
        elif kind == "hauler":
            skipped[machine_id] = "hauler without a rated payload (site file, birth message or settings)"
    for machine_id, value in settings.rated_payload_kg.items():
        if machine_id not in rated and value > 0:
            rated[machine_id] = float(value)
            skipped.pop(machine_id, None)
    return rated, skipped, loaders


ZONE_TESTS: SiteCache[track.ZoneTest] = SiteCache()  # one prepared zone test per site file and margin


class WeightLoading(Service[WeightLoadingSettings]):
    """Haul cycles, payload bands and the 10/10/20 policy per machine and shift, with value KPIs."""

    name = "weight-loading"
    version = "0.1.0"
    summary = "Haul cycles and payload per load from on-board weighing; 10/10/20 overload policy; value KPIs"
    author = "SitePulse"
    depends_on = ()
    consumes = ("ts", "seq", "payload_kg", "speed_kmh", "lat", "lon", "fuel_used_l", "engine_hours")
    tables = ("weight_loading.cycles", "weight_loading.activity", "weight_loading.skipped_machines")
    migrations = Path(__file__).parent / "migrations"
    kpis = (
        Kpi("tonnes_per_operating_hour", "Tonnes moved per hauler engine hour", "t/h", True, TONNES_PER_HOUR_SQL),
        Kpi("overload_share", "Share of loads above 110 % of rated payload", "fraction", False, OVER_SHARE_SQL),
        Kpi("fuel_per_tonne", "Litres of hauler fuel per tonne moved (loaded leg and return)", "L/t", False,
            FUEL_PER_TONNE_SQL),
        Kpi("fuel_saved_if_at_target", "Fuel under-loaded trips wasted: saved had they carried the rated "
            "payload (value KPI)", "L", False, FUEL_SAVED_SQL),
        Kpi("trips_saved_if_at_target", "Trips under-loading added: saved had under-loaded trips carried "
            "the rated payload", "trips", False, TRIPS_SAVED_SQL),
    )

    def process(self, batch: Batch, state: dict[str, Any], settings: WeightLoadingSettings
                ) -> tuple[Outputs, dict]:
        """Detect finished haul cycles per hauler, hourly activity per machine, and overload alerts."""
        out = Outputs()
        state = dict(state) if state.get("v") == STATE_VERSION else {"v": STATE_VERSION}
        machines_state: dict[str, Any] = dict(state.get("m", {}))
        known_skipped: dict[str, str] = dict(state.get("skipped", {}))
        telemetry = batch.telemetry
        if telemetry.empty:
            return out, state
        rated, skipped, loaders = rated_payloads(batch.machines, settings)
        arrays = detect.batch_arrays(telemetry)
        machine = telemetry["machine_id"].to_numpy()
        slices = machine_slices(machine)
        activity, state["act"] = hourly_activity(arrays, slices, state.get("act", {}), settings)
        if activity is not None:
            out.write("activity", activity)
        registered = set(batch.machines["machine_id"]) if not batch.machines.empty else set()
        cycles: list[dict] = []
        haulers = [run for run in slices if run[0] in rated]
        if haulers:
            rated_of_row = np.full(len(machine), np.inf)
            for machine_id, lo, hi in haulers:
                rated_of_row[lo:hi] = rated[machine_id]
            arrays["p"] = detect.readable_payload(arrays["p"], rated_of_row, settings)
            frame = batch.site.frame if batch.site is not None and (batch.site.zones or batch.site.paths) else \
                LocalFrame(*state.setdefault("origin", [round(float(np.nanmedian(arrays["lat"])), 2),
                                                        round(float(np.nanmedian(arrays["lon"])), 2)]))
            arrays["v"], state["sog"] = fused_speed(arrays, haulers, frame, state.get("sog", {}))
        legs_of = self._track_legs(batch, state, arrays, slices, haulers, rated, loaders, settings)
        for machine_id, lo, hi in slices:
            if machine_id not in rated:
                reason = skipped.get(machine_id)
                if reason is None and machine_id not in registered and not np.isnan(arrays["p"][lo:hi]).all():
                    reason = "not in the machine registry (no site-file entry or birth message)"
                if reason and machine_id not in known_skipped:
                    known_skipped[machine_id] = reason
                    out.write("skipped_machines", [{"machine_id": machine_id, "reason": reason,
                                                    "first_seen": telemetry["ts"].iloc[lo]}])
                continue
            ms = machines_state.get(machine_id, {})
            prev_dump = ms.get("prev_dump")
            keep = ~np.isnan(arrays["p"][lo:hi])  # a sample without a payload reading says nothing here
            found: list[dict] = []
            if keep.any():
                new = {k: v[lo:hi][keep] for k, v in arrays.items()}
                buf = detect.merge_buffers(detect.buffer_from_state(ms.get("buf")), new)
                found, loads, ms = detect.advance(buf, {k: v for k, v in ms.items() if k != "buf"},
                                                  rated[machine_id], settings)
                for load in loads:
                    self._overload_alert(out, batch.site_id, machine_id, load, rated[machine_id], settings)
            if machine_id in legs_of:
                found, ms = track_cycles(found, prev_dump, ms, legs_of[machine_id], settings)
            made, last_dump = detect.cycle_rows(machine_id, found, rated[machine_id], prev_dump, settings)
            if found:
                ms["prev_dump"] = last_dump
            cycles.extend(made)
            machines_state[machine_id] = ms
        if cycles:
            out.write("cycles", detect.cycles_frame(cycles))
            self._clear_overloads(out, cycles)
        state["m"], state["skipped"] = machines_state, known_skipped
        return out, state

    def _track_legs(self, batch: Batch, state: dict[str, Any], arrays: dict[str, np.ndarray],
                    slices: list[tuple[str, int, int]], haulers: list[tuple[str, int, int]], rated: dict[str, float],
                    loaders: set[str], settings: WeightLoadingSettings) -> dict[str, list[dict]]:
        """Per hauler, the legs its track finished in this batch (none without usable load and tipping zones, or
        with ``track_cycles`` off). Updates the track's state and where the loading units stood."""
        if not settings.track_cycles:
            return {}
        zones = self._zone_test(batch.site, settings)
        if settings.loader_radius_m > 0 and batch.site is not None:  # where the loading units stand, by minute
            units = [run for run in slices if run[0] in loaders]
            if units:
                state["units"] = track.unit_positions(state.get("units", {}), units, arrays["t"], arrays["lon"],
                                                      arrays["lat"], batch.site.frame, int(arrays["t"].min()))
            zones = zones.with_units(state.get("units", {}), settings.loader_radius_m)
        if not zones.usable or not haulers:
            return {}
        legs, state["track"] = track.advance_all(haulers, arrays["t"], arrays["lat"], arrays["lon"], arrays["v"],
                                                 arrays["p"], arrays["fuel"], arrays["eh"],
                                                 [rated[m] for m, _, _ in haulers], state.get("track", {}), zones,
                                                 settings)
        return {m: found for (m, _, _), found in zip(haulers, legs, strict=True)}

    def _zone_test(self, site: SiteConfig | None, settings: WeightLoadingSettings) -> track.ZoneTest:
        """The site's load and tipping zones, prepared once per site file and margin."""
        margin = settings.zone_margin_m
        return ZONE_TESTS.get(site, lambda: track.ZoneTest(site, margin), margin)

    @staticmethod
    def _overload_alert(out: Outputs, site_id: str, machine_id: str, load: dict, rated: float,
                        settings: WeightLoadingSettings) -> None:
        """A load above the over_120 limit is reported at once, from the settled value at the loader."""
        fraction = load["payload_kg"] / rated
        if fraction <= settings.over_120_fraction:
            return
        start = pd.Timestamp(load["load_start"], unit="ns", tz="UTC")
        out.alert(
            f"{machine_id}:{start.isoformat()}:over120",
            f"{machine_id} loaded {load['payload_kg'] / 1000:.1f} t = {100 * fraction:.0f} % of rated "
            f"{rated / 1000:.1f} t (over {100 * settings.over_120_fraction:.0f} %): dump or report before hauling",
            level="critical",
            at=pd.Timestamp(load["known_at"], unit="ns", tz="UTC").to_pydatetime(),
            machine_id=machine_id,
            data={"site_id": site_id, "payload_kg": round(load["payload_kg"], 1), "rated_payload_kg": rated,
                  "payload_pct": round(100 * fraction, 1), "load_start": start.isoformat(),
                  "lat": load.get("load_lat"), "lon": load.get("load_lon")},
        )

    @staticmethod
    def _clear_overloads(out: Outputs, cycles: list[dict]) -> None:
        """An overload's alarm clears when the hauler dumped that load (its cycle finished). Every cycle ends its
        key: the alert came from the settled weight at the loader, which the cycle's final payload may not repeat
        (ending a key never raised changes nothing)."""
        for cycle in cycles:
            if cycle["dumped_at"] is not None:
                dumped = cycle["dumped_at"].to_pydatetime()
                out.clear(f"{cycle['machine_id']}:{cycle['load_start'].isoformat()}:over120", dumped,
                          f"{cycle['machine_id']} dumped the load at {dumped:%H:%M:%S} UTC")

    def router(self) -> Any:
        """Routes under /api/v1/sites/{site_id}/weight-loading/: cycles, kpis, compliance."""
        from microservices.weight_loading.routes import router

        return router

    def report(self, request: ReportRequest, settings: WeightLoadingSettings) -> list[ReportSection]:
        """This service's sections of the site's shift and daily reports (report.py beside this file)."""
        from microservices.weight_loading.report import sections

        return sections(request, settings)

    def card(self, context: CardContext, settings: WeightLoadingSettings) -> Card | None:
        """Today's tonnes, loads and 10/10/20 compliance, the worst offenders and a payload histogram."""
        from microservices.weight_loading.routes import site_card

        return site_card(context, settings)


def fused_speed(arrays: dict[str, np.ndarray], haulers: list[tuple[str, int, int]], frame: LocalFrame,
                carried: dict[str, list]) -> tuple[np.ndarray, dict[str, list]]:
    """Haulers' speed over ground where their reported speed is missing or disagrees with the track (a stuck or
    dead speed signal would hide every drive-off); a healthy signal is used as reported. Steps are measured on
    the site frame's tangent plane (only steps count)."""
    return speeds_of_runs(haulers, arrays["t"], arrays["lon"], arrays["lat"], frame.metres_per_degree, arrays["v"],
                          carried)


def track_cycles(found: list[dict], prev_dump: dict | None, ms: dict[str, Any], legs: list[dict],
                 settings: WeightLoadingSettings) -> tuple[list[dict], dict[str, Any]]:
    """Add the legs of the track the payload could not show, as cycles without a payload.

    A leg the payload machine found a cycle in (in ``found``, or its last dump before this batch,
    ``prev_dump``) is that cycle; so is a leg whose load the payload machine saw and dumped later (its "dump" was
    a loaded wait in a tipping zone: a quantised cell reads the same value while the truck stands) or still holds
    loaded (the leg waits in ``ms["held"]`` until that load is dumped or lost). A leg without one whose payload
    readings were absent, stuck or out of range (``track.payload_unusable``) becomes a cycle with ``payload_kg``
    None, and the payload machine starts over after it (a reading stuck at a load would otherwise hold it loaded).
    """
    held = list(ms.get("held", []))
    if not legs and not held:
        return found, ms
    ms = {k: v for k, v in ms.items() if k != "held"}
    weighed = [c["dumped_at"] for c in found] + ([prev_dump["t"]] if prev_dump else [])
    slack = int(settings.dump_leave_s * NS)
    open_load = (ms.get("load") or {}).get("a") if ms.get("phase") in ("loading", "hauling") else None
    found = list(found)
    for leg in held + legs:
        if any(leg["load_start"] <= t <= leg["dumped_at"] + slack for t in weighed):
            continue  # the payload machine has this cycle, with its payload
        if track.payload_unusable(leg["evidence"], settings) is None:
            continue  # healthy readings that showed no load: an empty hauler stood at a loader and a dump

        def same_load(load_start: int, leg: dict = leg) -> bool:
            return leg["load_start"] - slack <= load_start <= leg["loaded_at"]

        if any(same_load(c["load_start"]) for c in found if c.get("payload_kg") is not None):
            continue  # weighed, dumped after this stop: the stop was a loaded wait, not a dump
        if open_load is not None and same_load(int(open_load)):
            ms.setdefault("held", []).append(leg)  # decided when the payload machine dumps or loses that load
            continue
        found.append({**leg, "payload_kg": None, "passes": None, "settle_samples": None})
        if int(ms.get("live", 0)) < leg["dumped_at"]:
            ms.update(phase="unknown", load=None, live=leg["dumped_at"], floor=leg["dumped_at"])
    found.sort(key=lambda c: c["dumped_at"])
    return found, ms


def machine_slices(machine: np.ndarray) -> list[tuple[str, int, int]]:
    """(machine_id, start, stop) of each machine's contiguous rows in a batch sorted by machine."""
    if len(machine) == 0:
        return []
    starts = np.flatnonzero(np.concatenate([[True], machine[1:] != machine[:-1]]))
    stops = np.concatenate([starts[1:], [len(machine)]])
    return [(str(machine[a]), int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def hourly_activity(arrays: dict[str, np.ndarray], slices: list[tuple[str, int, int]], saved: dict[str, Any],
                    settings: WeightLoadingSettings) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """Engine hours and fuel per machine and clock hour from counter deltas; an hour is written once closed (None
    while none closed: most batches, and an empty frame cost a 10-s batch a tenth of its time).

    ``arrays`` are the batch's (``detect.batch_arrays``: times, engine hours, fuel), ``slices`` its machines' rows.
    Deltas are summed as integers (micro-hours, millilitres) so any split of the telemetry gives
    the same sums; the open hour of each machine stays in the state until a later sample arrives.
    """
    t, eh, fuel = arrays["t"], arrays["eh"], arrays["fuel"]
    prev_t, prev_eh, prev_fuel = np.roll(t, 1), np.roll(eh, 1), np.roll(fuel, 1)
    for machine_id, lo, _ in slices:  # each machine's previous sample comes from the state
        last = saved.get(machine_id, {}).get("last")
        prev_t[lo], prev_eh[lo], prev_fuel[lo] = (last[0], _nan(last[1]), _nan(last[2])) if last else \
            (t[lo], np.nan, np.nan)
    gap = (t - prev_t) / NS
    usable = (gap > 0) & (gap <= settings.max_sample_gap_s)
    with np.errstate(invalid="ignore"):
        d_eh = np.where(usable, np.clip(eh - prev_eh, 0, gap / 3600 + 0.001), 0)
        d_fuel = np.where(usable, np.clip(fuel - prev_fuel, 0, None), 0)
    hour = (t // (3600 * NS)) * 3600 * NS
    units = np.stack([np.round(np.nan_to_num(d_eh) * 1e6), np.round(np.nan_to_num(d_fuel) * 1e3),
                      np.ones(len(t))]).astype(np.int64)
    starts = np.zeros(len(t), bool)  # a group per machine and clock hour
    starts[[lo for _, lo, _ in slices]] = True
    starts[1:] |= hour[1:] != hour[:-1]
    group = np.flatnonzero(starts)
    sums = np.add.reduceat(units, group, axis=1) if len(t) else units
    closed: list[list] = []
    state: dict[str, Any] = dict(saved)
    ends = np.searchsorted(group, [hi for _, _, hi in slices])  # each machine's groups: up to the next one's
    first = 0
    for (machine_id, _lo, hi), last_group in zip(slices, ends.tolist(), strict=True):
        records = [[int(hour[group[g]]), *(int(v) for v in sums[:, g])] for g in range(first, last_group)]
        first = last_group
        open_row = saved.get(machine_id, {}).get("open")
        if open_row is not None:
            if open_row[0] == records[0][0]:
                records[0] = [open_row[0], *(a + b for a, b in zip(open_row[1:], records[0][1:], strict=True))]
            elif open_row[0] < records[0][0]:
                records.insert(0, list(open_row))
        closed.extend([machine_id, *r] for r in records[:-1])
        state[machine_id] = {"open": records[-1], "last": [int(t[hi - 1]), _json(eh[hi - 1]), _json(fuel[hi - 1])]}
    if not closed:
        return None, state
    machine_ids, hours, micro_hours, millilitres, samples = zip(*closed, strict=True)
    return pd.DataFrame({"machine_id": list(machine_ids),
                         "hour": pd.to_datetime(np.array(hours, np.int64), unit="ns", utc=True),
                         "engine_hours": np.array(micro_hours, np.int64) / 1e6,
                         "fuel_l": np.array(millilitres, np.int64) / 1e3,
                         "samples": np.array(samples, np.int64)}), state


def _nan(value: Any) -> float:
    return np.nan if value is None else float(value)


def _json(value: Any) -> float | None:
    return None if value is None or value != value else float(value)
