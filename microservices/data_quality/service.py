"""The data-quality service: which sensor of which machine is broken, since when, and what that does.

``process`` adds each batch's per-sample evidence (``detect.py``) to per-machine time bins; every closed
bin is judged per sensor (heading, speed, position, payload, fuel, engine hours, clock), and
``confirm_bins`` consecutive bins with the same verdict change the sensor's status. Each change is one
row of ``data_quality.sensor_events`` (since when, evidence, effect on the services) and, when a sensor
goes bad, an alert. State per machine is small: a few seconds of fixes, the open bin's sums, the statuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from microservices.data_quality import detect
from microservices.data_quality.routes import router, site_card
from microservices.data_quality.settings import DataQualitySettings
from microservices.data_quality.wording import SENSOR_NAMES, describe, effect_of
from microservices.ground_speed import motion_over_ground
from microservices.sdk import (
    MEASURED_FIELDS,
    Batch,
    Card,
    CardContext,
    Kpi,
    Outputs,
    ReportRequest,
    ReportSection,
    Service,
)
from microservices.series import after_tail
from sitepulse.geo import LocalFrame

STATE_VERSION = 2  # 2: the motion walk's carry ("gm"), the payload's last change
FIELD_OF = {"heading": "heading", "speed": "speed", "position": "x", "payload": "payload", "fuel": "fuel",
            "hours": "hours"}
DEGRADED_HOURS_SQL = """
WITH e AS (
  SELECT ev.machine_id, ev.sensor, ev.status, ev.since,
         coalesce(lead(ev.since) OVER (PARTITION BY ev.machine_id, ev.sensor ORDER BY ev.since, ev.detected_at,
                                       ev.run_seq), l.ts::timestamptz, %(end)s::timestamptz) AS ended_at
  FROM data_quality.sensor_events ev
  LEFT JOIN jsonb_each_text(%(newest_samples)s::jsonb) l(machine_id, ts) ON l.machine_id = ev.machine_id
  WHERE ev.site_id = %(site_id)s AND ev.since < %(end)s)
SELECT (gs AT TIME ZONE 'UTC')::date AS day,
       sum(extract(epoch FROM least(e.ended_at, gs + interval '1 day', %(end)s::timestamptz)
                              - greatest(e.since, gs, %(start)s::timestamptz))) / 3600.0 AS value
FROM e JOIN generate_series(date_trunc('day', %(start)s::timestamptz), %(end)s::timestamptz, interval '1 day') gs
  ON e.since < gs + interval '1 day' AND e.ended_at > gs
WHERE e.status <> 'ok' AND e.ended_at > %(start)s
GROUP BY 1 ORDER BY 1
"""


class DataQuality(Service[DataQualitySettings]):
    """Sensor health per machine and sensor: ok, stuck, absent, implausible, offset, clock skew."""

    name = "data-quality"
    version = "0.1.0"
    summary = ("Sensor health per machine: stuck, absent, implausible, offset sensors and skewed clocks, since "
               "when, with evidence and what it does to the other services")
    author = "SitePulse"
    depends_on = ()
    consumes = ("ts", *MEASURED_FIELDS)
    tables = ("data_quality.sensor_events",)
    migrations = Path(__file__).parent / "migrations"
    device_time = True  # judges the device clocks: their own timestamps, not the arrival-corrected ones
    kpis = (Kpi("degraded_machine_hours", "Machine-hours with at least one bad sensor (per sensor, summed)", "h",
                False, DEGRADED_HOURS_SQL, inputs=("newest_samples",)),)  # a finding lasts to the newest sample

    def process(self, batch: Batch, state: dict[str, Any], settings: DataQualitySettings) -> tuple[Outputs, dict]:
        """Add the batch's evidence to each machine's bins; judge closed bins; emit status changes."""
        out = Outputs()
        telemetry = batch.telemetry
        state = dict(state) if state.get("v") == STATE_VERSION else {"v": STATE_VERSION, "m": {}}
        if telemetry.empty:
            return out, state
        machines_state: dict[str, Any] = dict(state["m"])
        frame = self._frame(batch, state, telemetry)
        rows, new = self._rows(telemetry, machines_state, frame)
        if not new.any():
            return out, state
        rated, kinds = self._registry(batch.machines)
        fresh = rows[new]
        # motion as the receiver allows, carried across batches (the new rows only: the walk carries its windows)
        ground, state["gm"] = motion_over_ground(
            fresh["machine_id"].to_numpy(object), fresh["t"].to_numpy(np.int64), fresh["x"].to_numpy(float),
            fresh["y"].to_numpy(float), fresh["speed"].to_numpy(float), state.get("gm", {}),
            detect.motion_settings(settings), fresh["heading"].to_numpy(float))
        sums, maxes, last, counters = detect.sample_evidence(rows, new, machines_state, rated, settings, ground)
        machine = fresh["machine_id"].to_numpy(object)
        bin_ms = int(round(settings.bin_s * 1000))
        bins = detect.bins_of(machine, fresh["t"].to_numpy(np.int64), sums[new], maxes[new], last[new], bin_ms)
        peers = self._reported(fresh, kinds)
        events: list[dict[str, Any]] = []
        starts = np.flatnonzero(np.r_[True, bins.machine[1:] != bins.machine[:-1]]) if len(bins.bin) else []
        stops = np.r_[starts[1:], len(bins.bin)] if len(bins.bin) else []
        for lo, hi in zip(starts, stops, strict=True):
            machine_id = str(bins.machine[lo])
            ms = machines_state.get(machine_id) or {"status": {}, "run": {}, "ring": [], "spikes": [], "seen": []}
            ms = dict(ms)
            seen = sorted(set(ms.get("seen", [])) | peers["own"].get(machine_id, set()))
            ms["seen"] = seen
            sensors_known = set(seen) | peers["kind"].get(kinds.get(machine_id, ""), set())
            closed = self._close_bins(ms, bins, lo, hi)
            for bin_id, s, mx, lst in closed:
                self._judge_bin(out, events, batch.site_id, machine_id, ms, bin_id, s, mx, lst,
                                rated.get(machine_id), sensors_known, settings, bin_ms)
            ms.update(counters.get(machine_id, {}))
            machines_state[machine_id] = ms
        self._keep_tails(rows, machines_state)
        if events:
            out.write("sensor_events", pd.DataFrame(events))
        state["m"] = machines_state
        return out, state

    # --- rows ----------------------------------------------------------------------------------

    @staticmethod
    def _frame(batch: Batch, state: dict[str, Any], telemetry: pd.DataFrame) -> LocalFrame:
        if batch.site is not None and (batch.site.zones or batch.site.paths):
            return batch.site.frame
        if "origin" not in state:
            fixes = telemetry.dropna(subset=["lat", "lon"])
            first = fixes.iloc[0] if not fixes.empty else {"lat": 0.0, "lon": 0.0}
            state["origin"] = [round(float(first["lat"]), 2), round(float(first["lon"]), 2)]
        return LocalFrame(*state["origin"])

    @staticmethod
    def _rows(telemetry: pd.DataFrame, machines_state: dict[str, Any], frame: LocalFrame
              ) -> tuple[pd.DataFrame, np.ndarray]:
        """Each machine's carried tail plus its new samples (newer than the tail), sorted by machine and time."""
        fresh = telemetry.dropna(subset=["ts"])
        x, y = frame.to_xy(detect.float_column(fresh, "lon"), detect.float_column(fresh, "lat"))
        engine = fresh["engine_on"] if "engine_on" in fresh else pd.Series(np.nan, index=fresh.index)
        running = pd.to_numeric(engine.map({True: 1.0, False: 0.0}), errors="coerce").to_numpy(float)
        received = fresh["received_at"] if "received_at" in fresh else pd.Series(pd.NaT, index=fresh.index)
        received_ms = pd.to_datetime(received, utc=True).to_numpy("datetime64[ns]").astype(np.int64) // 1_000_000
        received_ms = np.where(pd.isna(received).to_numpy(), np.nan, received_ms.astype(float))
        new = pd.DataFrame({
            "machine_id": fresh["machine_id"].to_numpy(object),
            "t": fresh["ts"].to_numpy("datetime64[ns]").astype(np.int64) // detect.NS_PER_MS,
            "received": received_ms, "x": np.round(x, 3), "y": np.round(y, 3),
            "heading": detect.float_column(fresh, "heading_deg"), "speed": detect.float_column(fresh, "speed_kmh"),
            "payload": detect.float_column(fresh, "payload_kg"), "fuel": detect.float_column(fresh, "fuel_used_l"),
            "hours": detect.float_column(fresh, "engine_hours"), "running": running, "new": True})
        tails = [(m, ms["tail"]) for m, ms in machines_state.items() if ms.get("tail")]
        carried = None
        if tails:
            carried = pd.DataFrame({
                "machine_id": np.concatenate([[m] * len(tail["t"]) for m, tail in tails]).astype(object),
                **{c: np.concatenate([np.asarray(tail[c], float) for _, tail in tails]) for c in TAIL_COLUMNS},
                "new": False})
            carried["t"] = np.concatenate([np.asarray(tail["t"], np.int64) for _, tail in tails])
        rows = after_tail(carried, new)
        return rows, rows["new"].to_numpy(bool)

    @staticmethod
    def _registry(machines: pd.DataFrame) -> tuple[dict[str, float], dict[str, str]]:
        rated: dict[str, float] = {}
        kinds: dict[str, str] = {}
        if machines.empty:
            return rated, kinds
        for machine_id, kind, value in zip(machines["machine_id"], machines["kind"], machines["rated_payload_kg"],
                                           strict=True):
            kinds[str(machine_id)] = str(kind)
            if value is not None and value == value and float(value) > 0:
                rated[str(machine_id)] = float(value)
        return rated, kinds

    @staticmethod
    def _reported(fresh: pd.DataFrame, kinds: dict[str, str]) -> dict[str, dict[str, set[str]]]:
        """Sensors each machine reported in this batch, and per machine kind (a field its peers send)."""
        present = pd.DataFrame({s: np.isfinite(fresh[c].to_numpy(float)) for s, c in FIELD_OF.items()})
        present["machine_id"] = fresh["machine_id"].to_numpy(object)
        any_present = present.groupby("machine_id").any()
        own = {str(m): {s for s in FIELD_OF if row[s]} for m, row in any_present.iterrows()}
        kind: dict[str, set[str]] = {}
        for machine_id, sensors in own.items():
            kind.setdefault(kinds.get(machine_id, ""), set()).update(sensors)
        return {"own": own, "kind": kind}

    @staticmethod
    def _keep_tails(rows: pd.DataFrame, machines_state: dict[str, Any]) -> None:
        """The last few seconds of each machine's samples: the track velocity and the 'previous' values."""
        t = rows["t"].to_numpy(np.int64)
        machine = rows["machine_id"].to_numpy(object)
        newest = pd.Series(t).groupby(machine).transform("max").to_numpy()
        keep = t > newest - int(detect.TAIL_S * 1000)
        kept = rows[keep]
        for machine_id, part in kept.groupby("machine_id", sort=False):
            ms = machines_state.setdefault(str(machine_id), {"status": {}, "run": {}, "ring": [], "spikes": [],
                                                               "seen": []})
            tail: dict[str, list] = {"t": part["t"].astype(np.int64).tolist()}
            for c in TAIL_COLUMNS:
                values = part[c].to_numpy(float)
                tail[c] = [None if v != v else float(v) for v in values]
            ms["tail"] = tail

    # --- bins and verdicts ---------------------------------------------------------------------

    @staticmethod
    def _close_bins(ms: dict[str, Any], bins: detect.Bins, lo: int, hi: int
                    ) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """Merge this batch's bins of one machine with its open bin; return the bins now closed, in order."""
        items = [(int(bins.bin[i]), bins.sums[i].copy(), bins.maxes[i].copy(), bins.last[i].copy())
                 for i in range(lo, hi)]
        held = ms.get("open")
        if held is not None:
            opened = (int(held["bin"]), np.array(held["sum"], float), np.array(held["max"], float),
                      np.array([np.nan if v is None else v for v in held["last"]], float))
            if items and items[0][0] == opened[0]:
                b, s, mx, lst = items[0]
                merged_last = np.where(np.isfinite(lst), lst, opened[3])
                items[0] = (b, s + opened[1], np.maximum(mx, opened[2]), merged_last)
            elif items and items[0][0] > opened[0]:
                items.insert(0, opened)
            else:  # older than the open bin (late rows the runner did not replay): counted in the open bin
                b, s, mx, lst = opened
                for _, s2, mx2, _ in items:
                    s, mx = s + s2, np.maximum(mx, mx2)
                items = [(b, s, mx, lst)]
        last = items[-1]
        ms["open"] = {"bin": last[0], "sum": [float(v) for v in last[1]], "max": [float(v) for v in last[2]],
                      "last": [None if v != v else float(v) for v in last[3]]}
        return items[:-1]

    def _judge_bin(self, out: Outputs, events: list[dict[str, Any]], site_id: str, machine_id: str,
                   ms: dict[str, Any], bin_id: int, s: np.ndarray, mx: np.ndarray, lst: np.ndarray,
                   rated: float | None, known: set[str], settings: DataQualitySettings, bin_ms: int) -> None:
        """One closed bin's verdict per sensor, through the confirm rule into status changes."""
        spikes = [*ms.get("spikes", []), int(s[detect.S["p_spikes"]])][-settings.spike_bins:]
        ms["spikes"] = spikes
        ring = list(ms.get("ring", []))
        if s[detect.S["c_n"]] >= settings.min_samples:
            ring = [*ring, [bin_id * bin_ms + bin_ms / 2, float(s[detect.S["c_ahead"]] / s[detect.S["c_n"]]),
                            float(s[detect.S["c_queued"]] / s[detect.S["c_n"]])]]
            ring = ring[-settings.drift_bins:]
        ms["ring"] = ring
        steps = dict(ms.get("steps", {}))
        now = ms.get("status", {})
        jumps = {p: [*ms.get("jumps", {}).get(p, []), int(s[detect.S[f"{p}_jumps"]])][-settings.spike_bins:]
                 for p in ("f", "e")}
        ms["jumps"] = jumps
        verdicts = {
            "heading": detect.judge_heading(s, lst, settings, "heading" in known),
            "speed": detect.judge_speed(s, lst, settings, "speed" in known),
            "position": detect.judge_position(s, sum(spikes), settings, "position" in known,
                                              now.get("position", "ok")),
            "payload": detect.judge_payload(s, lst, rated, settings, "payload" in known, now.get("payload", "ok")),
            "fuel": detect.judge_counter(s, mx, "f", steps.get("f"), settings, "fuel" in known, sum(jumps["f"]),
                                         now.get("fuel", "ok")),
            "hours": detect.judge_counter(s, mx, "e", steps.get("e"), settings, "hours" in known, sum(jumps["e"]),
                                          now.get("hours", "ok")),
            "clock": detect.judge_clock(ring, settings) if s[detect.S["c_n"]] >= settings.min_samples else None,
        }
        frozen = dict(ms.get("frozen", {}))  # [moving, unchanged] samples per bin of the last spike_bins bins
        for sensor, prefix, column, shown in (("heading", "h", 0, "{:.0f} deg"), ("speed", "s", 1, "{:.1f} km/h"),
                                              ("payload", "y", 2, "{:.0f} kg")):
            window = [*frozen.get(prefix, []), [float(s[detect.S[f"{prefix}_moving"]]),
                                                float(s[detect.S[f"{prefix}_unchanged"]])]][-settings.spike_bins:]
            frozen[prefix] = window
            verdict = verdicts[sensor]
            # frozen readings outweigh a bin judged ok on other evidence (a frozen heading agrees with a straight
            # road, a frozen payload reads an empty body near zero)
            if now.get(sensor, "ok") != "stuck" and (verdict is None or verdict.status in ("ok", "stuck")):
                value = float(lst[column])
                verdicts[sensor] = detect.stuck_over_window(window, s, prefix, value, shown.format(value),
                                                            settings) or verdict
        ms["frozen"] = frozen
        for prefix in ("f", "e"):  # the counter's usual time between steps, learned while it is ok
            sensor = "fuel" if prefix == "f" else "hours"
            incr, run_s = s[detect.S[f"{prefix}_incr"]], s[detect.S[f"{prefix}_run_s"]]
            verdict = verdicts[sensor]
            if verdict is not None and verdict.status == "ok" and incr >= 2:
                step = run_s / incr
                old = steps.get(prefix)
                steps[prefix] = round(step if old is None else 0.8 * old + 0.2 * step, 3)
        ms["steps"] = steps
        status, run = dict(ms.get("status", {})), dict(ms.get("run", {}))
        since: dict[str, int] = dict(ms.get("since", {}))  # when each sensor's current status began (its alert key)
        start_ms, end_ms = bin_id * bin_ms, (bin_id + 1) * bin_ms
        for sensor, verdict in verdicts.items():
            if verdict is None:
                continue
            current = status.get(sensor, "ok")
            if verdict.status == current:
                run.pop(sensor, None)
                continue
            pending = run.get(sensor)
            if pending is None or pending[0] != verdict.status:
                pending = [verdict.status, 0, start_ms]
            pending[1] += 1
            if pending[1] < settings.confirm_bins and not verdict.windowed:
                run[sensor] = pending
                continue
            run.pop(sensor, None)
            status[sensor] = verdict.status
            self._change(out, events, site_id, machine_id, sensor, verdict, pending[2], end_ms, current)
            if current != "ok" and sensor in since:  # the finding's alarm clears: the sensor is ok or otherwise now
                was = pd.Timestamp(since[sensor], unit="ms", tz="UTC")
                now_since = pd.Timestamp(pending[2], unit="ms", tz="UTC")
                out.clear(f"{machine_id}:{sensor}:{current}:{was.isoformat()}", now_since.to_pydatetime(),
                          f"{machine_id}: {SENSOR_NAMES[sensor]} {verdict.status} from {now_since:%H:%M} UTC")
            since[sensor] = pending[2]
        ms["status"], ms["run"], ms["since"] = status, run, since

    @staticmethod
    def _change(out: Outputs, events: list[dict[str, Any]], site_id: str, machine_id: str, sensor: str,
                verdict: detect.Verdict, since_ms: int, at_ms: int, before: str) -> None:
        since = pd.Timestamp(since_ms, unit="ms", tz="UTC")
        detected = pd.Timestamp(at_ms, unit="ms", tz="UTC")
        bad = verdict.status != "ok"
        effect = effect_of(sensor, verdict.status, machine_id, verdict.value) if bad else \
            f"{SENSOR_NAMES[sensor]} of {machine_id} is used again"
        what = describe(sensor, verdict.status, verdict.value) if bad else f"{SENSOR_NAMES[sensor]} ok again"
        events.append({"machine_id": machine_id, "sensor": sensor, "status": verdict.status,
                       "value": verdict.value, "since": since, "detected_at": detected,
                       "evidence": verdict.evidence or f"was {before}", "effect": effect})
        if bad:
            out.alert(f"{machine_id}:{sensor}:{verdict.status}:{since.isoformat()}",
                      f"{machine_id}: {what} since {since:%H:%M} UTC — {effect}",
                      level="warning", at=detected.to_pydatetime(), machine_id=machine_id,
                      data={"site_id": site_id, "sensor": sensor, "status": verdict.status, "value": verdict.value,
                            "since": since.isoformat(), "evidence": verdict.evidence})

    def router(self) -> Any:
        """Routes under /api/v1/sites/{site_id}/data-quality: findings (bare path) and machines."""
        return router

    def report(self, request: ReportRequest, settings: DataQualitySettings) -> list[ReportSection]:
        """This service's sections of the site's shift and daily reports (report.py beside this file)."""
        from microservices.data_quality.report import sections

        return sections(request, settings)

    def card(self, context: CardContext, settings: DataQualitySettings) -> Card | None:
        """Open findings, one line each: 'HX-07: heading stuck at 0 deg since 09:14 — positions used instead'."""
        return site_card(context)


TAIL_COLUMNS = ("x", "y", "heading", "speed", "payload", "fuel", "hours", "running", "received")
