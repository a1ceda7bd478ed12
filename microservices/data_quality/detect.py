"""Sensor health from telemetry: per-sample checks against the track and physics, counted per time bin.

Every check is vectorised over a batch sorted by (machine, time). Each sample is compared with what the
machine's own track and physics allow, and with the rest of the fleet for the clock; the results are summed per
machine and ``bin_s`` time bin (bins aligned to absolute time, so any split of the telemetry gives the same sums).
A closed bin is then judged per sensor: ok, one of the bad statuses, or no evidence (standing still,
too few samples). ``service.py`` turns runs of judged bins into findings.

Positions are judged as their receiver allows (``microservices.ground_speed``'s walk, noise from
``microservices.receiver``): a reported speed against the displacement over a 20-s baseline, a reported heading
against that displacement's direction, moving or standing by the machine's own trusted speed, so metres of
white GNSS jitter (a standalone receiver) at 0.5-10 Hz do not make a healthy sensor look broken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from microservices.data_quality.settings import DataQualitySettings
from microservices.ground_speed import GroundMotion
from microservices.motion import MotionSettings, angle_diff
from microservices.series import KEY_SPAN

NS_PER_MS = 1_000_000
SENSORS = ("heading", "speed", "position", "payload", "fuel", "hours", "clock")
# per-sample evidence summed per bin (column order of the sum matrix)
SUM_FIELDS = (
    "n",
    "h_missing", "h_moving", "h_unchanged", "h_turns", "h_rough", "h_course_rough",
    "h_checked", "h_agree", "h_sin", "h_cos",
    "s_missing", "s_moving", "s_unchanged", "s_rough", "s_checked", "s_agree", "s_diff", "s_diff2", "s_track",
    "p_missing", "p_spikes",
    "y_missing", "y_moving", "y_unchanged", "y_empty", "y_empty_high", "y_empty_sum",
    "f_missing", "f_jumps", "f_running", "f_incr", "f_run_s",
    "e_missing", "e_jumps", "e_running", "e_incr", "e_run_s",
    "c_n", "c_ahead", "c_queued",
)
MAX_FIELDS = ("f_idle", "e_idle")  # longest time without a counter step while the engine runs (s)
LAST_FIELDS = ("heading", "speed", "payload")  # the value at the end of the bin (evidence)
MIN_RATE_S = 1.0  # rates of change are taken over at least a second (at 10 Hz a sensor's noise is not a swing)
S = {name: i for i, name in enumerate(SUM_FIELDS)}
M = {name: i for i, name in enumerate(MAX_FIELDS)}
TAIL_S = 8.0  # seconds of fixes carried per machine: the track velocity's window plus a step


@dataclass
class Bins:
    """Closed and open bins of one batch: who, which bin, and the summed evidence."""

    machine: np.ndarray  # machine id per bin
    bin: np.ndarray  # bin index (t // bin_ms)
    sums: np.ndarray  # bins x SUM_FIELDS
    maxes: np.ndarray  # bins x MAX_FIELDS
    last: np.ndarray  # bins x LAST_FIELDS


def float_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A telemetry column as floats, NaN where missing or where the column is absent."""
    if name not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(float)


def previous_in_group(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The previous row's value within the same group (NaN for a group's first row)."""
    prev = np.r_[np.nan, values[:-1]]
    first = np.r_[True, group[1:] != group[:-1]]
    return np.where(first, np.nan, prev)


def last_present(group: np.ndarray, t: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the most recent EARLIER present value of the same group and its time (NaN where none)."""
    n = len(values)
    index = np.where(np.isfinite(values), np.arange(n), -1)
    prev = np.r_[-1, np.maximum.accumulate(index)[:-1]] if n else index
    ok = prev >= 0
    p = np.clip(prev, 0, max(n - 1, 0))
    ok &= group[p] == group
    return np.where(ok, values[p], np.nan), np.where(ok, t[p], -1)


def last_increase(group: np.ndarray, t: np.ndarray, increased: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """Per row, the time of the group's latest counter increase at or before it (``carried``: per row, the
    group's last increase before the batch, -1 where none)."""
    key = np.where(increased, t, carried).astype(np.int64) + 1
    packed = group.astype(np.int64) * KEY_SPAN + np.where(key > 0, key, 0)
    return np.maximum.accumulate(packed) - group.astype(np.int64) * KEY_SPAN - 1


def fleet_ahead_s(machine: np.ndarray, t_ms: np.ndarray, received_ms: np.ndarray, neighbours: int) -> np.ndarray:
    """How far each sample's timestamp is ahead of its arrival, against the fleet arriving at the same time.

    lag = arrival - timestamp; the fleet's lag is the median over the samples around it in arrival order
    (``neighbours`` per machine); a device ahead of the fleet (or of arrival itself) is ahead by
    max(fleet lag, 0) - lag. In real time that is clock error; in a replay all clocks move alike.
    """
    n = len(t_ms)
    if n == 0:
        return np.zeros(0)
    lag = (received_ms - t_ms) / 1000.0
    order = np.argsort(received_ms, kind="stable")
    machines = max(1, len(np.unique(machine)))
    window = max(3, neighbours * machines) | 1
    ref_sorted = pd.Series(lag[order]).rolling(window, center=True, min_periods=1).median().to_numpy()
    ref = np.empty(n)
    ref[order] = ref_sorted
    return np.maximum(ref, 0.0) - lag


def motion_settings(settings: DataQualitySettings) -> MotionSettings:
    """The walk's settings with this service's speed tolerances and spike speed."""
    return MotionSettings(max_speed_kmh=settings.max_speed_kmh, speed_tolerance_kmh=settings.speed_tolerance_kmh,
                          speed_tolerance_share=settings.speed_tolerance_share)


def _on_rows(values: np.ndarray, new: np.ndarray, fill: float | bool) -> np.ndarray:
    """Per-new-row values spread over all rows (``fill`` on the carried tail's)."""
    out = np.full(len(new), fill, dtype=np.asarray(values).dtype if len(values) else type(fill))
    out[new] = values
    return out


def _queued(group: np.ndarray, t: np.ndarray, received: np.ndarray, span: int = 5) -> np.ndarray:
    """Per row: did the machine's samples since ``span`` samples before (fewer at its start) arrive in under half
    the time they took? Then they waited in a queue (judged over a few samples: one fast arrival is jitter)."""
    n = len(t)
    if n == 0:
        return np.zeros(0, bool)
    index = np.arange(n)
    first = np.maximum.accumulate(np.where(np.r_[True, group[1:] != group[:-1]], index, 0))
    before = np.maximum(index - span, first)
    took = (t - t[before]).astype(float)
    with np.errstate(invalid="ignore"):
        return (took > 0) & (received - received[before] < took / 2)


def sample_evidence(rows: pd.DataFrame, new: np.ndarray, state_prev: dict[str, dict], rated: dict[str, float],
                    settings: DataQualitySettings, ground: GroundMotion
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Per-sample evidence matrices (sums, maxes) for the new rows and the carried values per machine.

    ``rows``: carried tail + new samples, sorted by machine and t, columns machine_id, t (ms), received
    (ms), x, y, heading, speed, payload, fuel, hours, running (float 1/0/NaN). ``ground``: the walk's motion of
    the new rows (``ground_speed.motion_over_ground`` with this service's carry and ``motion_settings``).
    """
    machine = rows["machine_id"].to_numpy(object)
    ids, group = np.unique(machine, return_inverse=True)
    t = rows["t"].to_numpy(np.int64)
    x, y = rows["x"].to_numpy(float), rows["y"].to_numpy(float)
    heading, speed = rows["heading"].to_numpy(float), rows["speed"].to_numpy(float)
    payload = rows["payload"].to_numpy(float)
    payload = np.where(payload < 0, np.nan, payload)  # -99 and other negative sentinels: no reading
    fuel, hours = rows["fuel"].to_numpy(float), rows["hours"].to_numpy(float)
    motion = motion_settings(settings)
    # moving: by the machine's own trusted speed, else by its displacement over the baseline above the noise
    fused_kmh = _on_rows(ground.speed_kmh, new, np.nan)
    standing = _on_rows(ground.standing, new, True)
    moving = ~standing & (np.nan_to_num(fused_kmh) >= settings.moving_kmh)
    base_kmh = _on_rows(ground.base_kmh, new, np.nan)
    noise_m = _on_rows(ground.noise_m, new, np.nan)
    out = np.zeros((len(rows), len(SUM_FIELDS)))
    mx = np.zeros((len(rows), len(MAX_FIELDS)))

    def put(name: str, values: np.ndarray) -> None:
        out[:, S[name]] = np.nan_to_num(np.asarray(values, float))

    out[:, S["n"]] = 1.0
    # heading: missing, repeated while moving, against the course over ground
    has_h = np.isfinite(heading)
    prev_h = previous_in_group(group, heading)
    put("h_missing", ~has_h)
    h_moving = moving & has_h & np.isfinite(prev_h)
    put("h_moving", h_moving)
    put("h_unchanged", h_moving & (heading == prev_h))
    prev_t = previous_in_group(group, t.astype(float))
    gap_s = (t - prev_t) / 1000.0
    per_s = np.maximum(gap_s, MIN_RATE_S)
    # against the course over ground as the receiver allows: the direction of the displacement over the baseline
    # (where it is well above the noise) and the direction the reported heading (and speed) make over the same span
    course_base = _on_rows(ground.course_base_deg, new, np.nan)
    course_reported = _on_rows(ground.course_reported_deg, new, np.nan)
    # roughness: the heading's changes between the samples where that course is known (once a second at most)
    # against the course's own changes over the same time: turns turn both, a noisy compass only itself (the
    # short-window track's course would be rougher than any compass under metres of GNSS jitter)
    known = np.isfinite(course_base)
    prev_base, base_t = last_present(group, t, np.where(known, course_base, np.nan))
    heading_then, _ = last_present(group, t, np.where(known, heading, np.nan))
    base_gap_s = (t - base_t) / 1000.0
    turns = known & has_h & moving & np.isfinite(prev_base) & np.isfinite(heading_then) & (base_t >= 0) \
        & (base_gap_s <= 5) & (np.nan_to_num(base_kmh) >= settings.check_kmh)
    base_per_s = np.maximum(base_gap_s, MIN_RATE_S)
    with np.errstate(invalid="ignore", divide="ignore"):
        put("h_turns", turns)
        put("h_rough", np.where(turns, angle_diff(heading, heading_then) / base_per_s, 0.0))
        put("h_course_rough", np.where(turns, angle_diff(course_base, prev_base) / base_per_s, 0.0))
    h_checked = has_h & np.isfinite(course_base) & np.isfinite(course_reported) \
        & (np.nan_to_num(base_kmh) >= settings.check_kmh)
    diff = np.radians(((course_reported - course_base + 180.0) % 360.0) - 180.0)
    put("h_checked", h_checked)
    put("h_agree", h_checked & (angle_diff(course_reported, course_base) <= settings.heading_tolerance_deg))
    put("h_sin", np.where(h_checked, np.sin(diff), 0.0))
    put("h_cos", np.where(h_checked, np.cos(diff), 0.0))
    # speed: the same, against the track speed
    has_s = np.isfinite(speed)
    prev_s = previous_in_group(group, speed)
    put("s_missing", ~has_s)
    s_moving = moving & has_s & np.isfinite(prev_s)
    put("s_moving", s_moving)
    put("s_unchanged", s_moving & (speed == prev_s))
    with np.errstate(invalid="ignore", divide="ignore"):
        rough = np.abs(speed - prev_s) / per_s
    put("s_rough", np.where(s_moving & (t - prev_t > 0) & (t - prev_t <= 5000), rough, 0.0))
    # against the speed of the displacement over the baseline: the reported speed's mean over the same span, with
    # the walk's tolerance (this service's physical tolerance plus the receiver's noise over the baseline)
    reported_base = _on_rows(ground.base_reported_kmh, new, np.nan)
    s_checked = has_s & _on_rows(ground.speed_checked, new, False) & (np.nan_to_num(base_kmh) >= settings.moving_kmh)
    sdiff = np.where(s_checked, reported_base - base_kmh, 0.0)
    put("s_checked", s_checked)
    put("s_agree", s_checked & _on_rows(ground.speed_agrees, new, False))
    put("s_diff", sdiff)
    put("s_diff2", sdiff * sdiff)
    put("s_track", np.where(s_checked, base_kmh, 0.0))
    # position: missing, or a step no machine can drive (a spike's edge)
    has_p = np.isfinite(x) & np.isfinite(y)
    px, pt = last_present(group, t, np.where(has_p, x, np.nan))
    py, _ = last_present(group, t, np.where(has_p, y, np.nan))
    dt = (t - pt) / 1000.0
    with np.errstate(invalid="ignore", divide="ignore"):
        step_kmh = np.hypot(x - px, y - py) / dt * 3.6
    put("p_missing", ~has_p)
    # a step no machine drives even with the receiver's jitter on both fixes, judged over at least a second
    # whatever the rate (at 10 Hz 2.5 m of white noise alone is a 300 km/h step, and a plain receiver's jump of
    # 20 m an impossible one that 1-s fixes would not show)
    with np.errstate(invalid="ignore", divide="ignore"):
        allowed_m = settings.max_speed_kmh / 3.6 * np.maximum(dt, MIN_RATE_S) \
            + motion.noise_sigmas * np.nan_to_num(noise_m, nan=0.0) * np.sqrt(2.0)
    put("p_spikes", has_p & (pt >= 0) & (dt > 0) & (dt <= motion.max_step_s)
        & (step_kmh / 3.6 * dt > allowed_m))
    # payload: missing, frozen for minutes while it must change, off zero while empty. A quantised load cell
    # repeats its value between neighbouring samples half the time: normal. Frozen is the same value through
    # payload_frozen_s while the machine moves (a loaded body bounces; an empty one reads its noise); exactly 0
    # (a dead band may hold an empty body there) only through payload_zero_frozen_s, a haul cycle: a load missed
    has_y = np.isfinite(payload)
    prev_y = previous_in_group(group, payload)
    rated_row = np.array([rated.get(m, np.nan) for m in ids], float)[group]
    put("y_missing", ~has_y)
    y_moving = moving & has_y & np.isfinite(prev_y)
    changed = has_y & np.isfinite(prev_y) & (payload != prev_y)
    carried_chg = np.array([state_prev.get(m, {}).get("y_chg", -1) for m in ids], np.int64)[group]
    # a machine's first reading starts the clock (a reading stuck from the start is frozen too)
    first_y = np.zeros(len(t), bool)
    seen = has_y & (carried_chg < 0)
    if seen.any():
        rows_y = np.flatnonzero(seen)
        first_y[rows_y[np.r_[True, group[rows_y][1:] != group[rows_y][:-1]]]] = True
    chg_t = last_increase(group, t, changed | first_y, carried_chg)
    limit_ms = np.where(payload == 0.0, settings.payload_zero_frozen_s, settings.payload_frozen_s) * 1000
    frozen = y_moving & (chg_t >= 0) & (t - chg_t >= limit_ms)
    put("y_moving", y_moving)
    put("y_unchanged", frozen)
    empty = has_y & np.isfinite(rated_row) & (payload < settings.empty_fraction * rated_row)
    put("y_empty", empty)
    put("y_empty_high", empty & (payload > settings.zero_tolerance_fraction * rated_row))
    put("y_empty_sum", np.where(empty, payload, 0.0))
    # counters: missing, jumping (backwards or faster than physics), standing still while the engine runs
    running = rows["running"].to_numpy(float)
    running = np.where(np.isfinite(running), running > 0, moving)
    carried: dict[str, np.ndarray] = {}
    for prefix, values, rate_per_s, slack in (("f", fuel, settings.max_fuel_lph / 3600.0, settings.counter_slack),
                                              ("e", hours, 1.0 / 3600.0, settings.counter_slack / 10.0)):
        has = np.isfinite(values)
        last, last_t = last_present(group, t, values)
        step_s = (t - last_t) / 1000.0
        delta = values - last
        known = has & np.isfinite(last) & (last_t >= 0)
        jump = known & ((delta < -slack) | (delta > rate_per_s * np.maximum(step_s, 0.0) * 1.05 + slack))
        increased = known & (delta > 0) & ~jump
        carried_inc = np.array([state_prev.get(m, {}).get(f"{prefix}_inc", -1) for m in ids], np.int64)[group]
        inc_t = last_increase(group, t, increased, carried_inc)
        run_ok = running & has
        idle = np.where(run_ok & (inc_t >= 0), (t - inc_t) / 1000.0, 0.0)
        put(f"{prefix}_missing", ~has)
        put(f"{prefix}_jumps", jump)
        put(f"{prefix}_running", run_ok)
        put(f"{prefix}_incr", increased & running)
        put(f"{prefix}_run_s", np.where(known & running & (step_s > 0) & (step_s <= 60), step_s, 0.0))
        mx[:, M[f"{prefix}_idle"]] = idle
        carried[f"{prefix}_inc"] = inc_t
    # clock: timestamps ahead of arrival or of the fleet; a late delivery says nothing about the clock. Samples
    # arriving faster than half their pace were queued (a device's buffer, ingest draining a history backlog, a
    # replay): they are compared with the fleet's queued samples only, and live ones with live ones, so a backlog
    # does not make the machines arriving live look ahead by the backlog's delay
    received = rows["received"].to_numpy(float)
    queued = _queued(group, t, received)
    ahead = np.full(len(rows), np.nan)
    arrived = new & np.isfinite(received)
    for usable in (arrived & queued, arrived & ~queued):
        if usable.any():
            ahead[usable] = fleet_ahead_s(machine[usable], t[usable], received[usable], settings.fleet_neighbours)
    prompt = np.isfinite(ahead) & (ahead >= -settings.clock_tolerance_s)
    put("c_n", prompt)
    put("c_ahead", np.where(prompt, ahead, 0.0))
    put("c_queued", prompt & queued)
    carried["y_chg"] = chg_t
    last_of = {m: {k: int(v[i]) for k, v in carried.items()}
               for m, i in zip(ids, np.r_[np.flatnonzero(group[1:] != group[:-1]), len(group) - 1], strict=True)}
    return out, mx, np.column_stack([heading, speed, payload]), last_of


def bins_of(machine: np.ndarray, t: np.ndarray, sums: np.ndarray, maxes: np.ndarray, last: np.ndarray,
            bin_ms: int) -> Bins:
    """Sum the new rows' evidence per (machine, bin); rows sorted by machine then time."""
    if len(t) == 0:
        return Bins(np.zeros(0, object), np.zeros(0, np.int64), np.zeros((0, len(SUM_FIELDS))),
                    np.zeros((0, len(MAX_FIELDS))), np.zeros((0, len(LAST_FIELDS))))
    b = t // bin_ms
    starts = np.flatnonzero(np.r_[True, (machine[1:] != machine[:-1]) | (b[1:] != b[:-1])])
    ends = np.r_[starts[1:], len(t)] - 1
    return Bins(machine[starts], b[starts], np.add.reduceat(sums, starts, axis=0),
                np.maximum.reduceat(maxes, starts, axis=0), last[ends])


@dataclass(frozen=True)
class Verdict:
    """What one closed bin says about one sensor: a status ('ok' or bad), a value and the evidence."""

    status: str
    value: float | None = None
    evidence: str = ""
    # counted over the last spike_bins bins already (spikes, counter jumps): consecutive bins would share that
    # evidence, so a second bad bin confirms nothing more and the finding opens at once
    windowed: bool = False


def _share(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def _absent(s: np.ndarray, missing: float, what: str, st: DataQualitySettings) -> Verdict | None:
    """'absent' when the field is missing from most of the bin's samples."""
    n = s[S["n"]]
    if n >= st.min_samples and _share(missing, n) >= st.absent_share:
        return Verdict("absent", None, f"no {what} in {missing:.0f} of {n:.0f} samples")
    return None


def _stuck(s: np.ndarray, prefix: str, value: float, shown: str, st: DataQualitySettings) -> Verdict | None:
    """'stuck' when the reading stayed unchanged through most of the samples taken while moving."""
    moving, unchanged = s[S[f"{prefix}_moving"]], s[S[f"{prefix}_unchanged"]]
    if moving >= st.min_samples and _share(unchanged, moving) >= st.stuck_share:
        return Verdict("stuck", value, f"{shown} in {unchanged:.0f} of {moving:.0f} moving samples")
    return None


def stuck_over_window(window: list[list[float]], s: np.ndarray, prefix: str, value: float, shown: str,
                      st: DataQualitySettings) -> Verdict | None:
    """'stuck' from the moving samples of the last ``spike_bins`` bins (``window``: [moving, unchanged] per bin,
    this one last) when this bin's own are stuck too: a machine that drives a few seconds between long stops
    never fills ``confirm_bins`` bins in a row, but as many moving samples frozen are the same evidence."""
    moving, unchanged = s[S[f"{prefix}_moving"]], s[S[f"{prefix}_unchanged"]]
    total_moving = sum(w[0] for w in window)
    total_unchanged = sum(w[1] for w in window)
    if moving > 0 and _share(unchanged, moving) >= st.stuck_share \
            and total_moving >= st.confirm_bins * st.min_samples \
            and _share(total_unchanged, total_moving) >= st.stuck_share:
        return Verdict("stuck", value, f"{shown} in {total_unchanged:.0f} of {total_moving:.0f} moving samples "
                                       f"within {st.spike_bins * st.bin_s:.0f} s", windowed=True)
    return None


def judge_heading(s: np.ndarray, last: np.ndarray, st: DataQualitySettings, peers: bool) -> Verdict | None:
    if absent := _absent(s, s[S["h_missing"]], "heading", st):
        return absent if peers else None
    if stuck := _stuck(s, "h", float(last[0]), f"{last[0]:.0f} deg", st):
        return stuck
    turns = s[S["h_turns"]]
    rough = _share(s[S["h_rough"]] - s[S["h_course_rough"]], turns)
    if turns >= st.min_samples and rough > st.heading_roughness_deg_s:
        return Verdict("implausible", round(rough, 1), f"reported heading swings {rough:.0f} deg per second more "
                                                       f"than the course over ground while driving (noisy)")
    checked = s[S["h_checked"]]
    if checked < st.min_samples:
        return None
    agree = _share(s[S["h_agree"]], checked)
    if agree >= st.agree_share:
        return Verdict("ok")
    resultant = np.hypot(s[S["h_sin"]], s[S["h_cos"]]) / checked
    mean = float(np.degrees(np.arctan2(s[S["h_sin"]], s[S["h_cos"]])))
    if resultant >= st.offset_consistency and abs(mean) > st.heading_tolerance_deg:
        return Verdict("offset", round(mean, 1), f"{mean:+.0f} deg from the course over ground in {checked:.0f} "
                                                 f"checks (agrees in {100 * agree:.0f} %)")
    return Verdict("implausible", round(100 * agree, 1), f"agrees with the course over ground in "
                                                         f"{100 * agree:.0f} % of {checked:.0f} checks (noisy)")


def judge_speed(s: np.ndarray, last: np.ndarray, st: DataQualitySettings, peers: bool) -> Verdict | None:
    if absent := _absent(s, s[S["s_missing"]], "speed", st):
        return absent if peers else None
    if stuck := _stuck(s, "s", float(last[1]), f"{last[1]:.1f} km/h", st):
        return stuck
    moving = s[S["s_moving"]]
    checked = s[S["s_checked"]]
    if checked < st.min_samples:
        return None
    mean = s[S["s_diff"]] / checked
    spread = float(np.sqrt(max(s[S["s_diff2"]] / checked - mean * mean, 0.0)))
    track = s[S["s_track"]] / checked
    if abs(mean) > st.speed_offset_kmh + st.speed_offset_share * track and spread < abs(mean):
        return Verdict("offset", round(float(mean), 1), f"{mean:+.1f} km/h from the track speed (spread "
                                                         f"{spread:.1f}) in {checked:.0f} checks")
    agree = _share(s[S["s_agree"]], checked)
    rough = _share(s[S["s_rough"]], moving)
    if moving >= st.min_samples and rough > st.speed_roughness_kmh_s:
        return Verdict("implausible", round(rough, 1), f"reported speed jumps {rough:.1f} km/h per second on "
                                                       f"average while moving (noisy)")
    if agree < st.agree_share:
        return Verdict("implausible", round(100 * agree, 1), f"agrees with the track speed in {100 * agree:.0f} % "
                                                             f"of {checked:.0f} checks (spread {spread:.1f} km/h)")
    return Verdict("ok")


def judge_position(s: np.ndarray, spikes: int, st: DataQualitySettings, peers: bool,
                   current: str = "ok") -> Verdict | None:
    if absent := _absent(s, s[S["p_missing"]], "position", st):
        return absent if peers else None
    n = s[S["n"]]
    if spikes >= st.spike_count:
        return Verdict("implausible", float(spikes), f"{spikes} fixes faster than {st.max_speed_kmh:.0f} km/h "
                                                     f"from the one before within {st.spike_bins * st.bin_s:.0f} s "
                                                     f"(multipath spikes)", windowed=True)
    if current == "implausible" and spikes > 0:  # spikes come and go: ok again only after a quiet spell
        return None
    if n - s[S["p_missing"]] >= st.min_samples:
        return Verdict("ok")
    return None


def judge_payload(s: np.ndarray, last: np.ndarray, rated: float | None, st: DataQualitySettings,
                  peers: bool, current: str = "ok") -> Verdict | None:
    if absent := _absent(s, s[S["y_missing"]], "payload", st):
        return absent if peers else None
    if stuck := _stuck(s, "y", float(last[2]), f"{last[2]:.0f} kg", st):
        return stuck
    moving = s[S["y_moving"]]
    empty = s[S["y_empty"]]
    if rated and empty >= st.min_samples:
        if _share(s[S["y_empty_high"]], empty) >= 0.5:  # the median empty reading is off zero
            mean = s[S["y_empty_sum"]] / empty
            return Verdict("offset", round(float(mean), 1), f"reads {mean / 1000:.1f} t ({100 * mean / rated:.0f} % "
                                                             f"of rated) while empty, in {empty:.0f} samples")
        return Verdict("ok")
    if moving >= st.min_samples and current != "offset":  # a loaded body says nothing about the zero
        return Verdict("ok")
    return None


def judge_counter(s: np.ndarray, mx: np.ndarray, prefix: str, typical_step_s: float | None,
                  st: DataQualitySettings, peers: bool, jumps: int = 0, current: str = "ok") -> Verdict | None:
    """``jumps``: the counter's jumps in the last ``spike_bins`` bins (a corrupt value jumps out and back)."""
    label, unit = ("fuel counter", "l") if prefix == "f" else ("engine-hour meter", "h")
    if absent := _absent(s, s[S[f"{prefix}_missing"]], label, st):
        return absent if peers else None
    if jumps >= st.counter_jumps:
        return Verdict("implausible", float(jumps),
                       f"{label} jumped {jumps} times within {st.spike_bins * st.bin_s:.0f} s (backwards or faster "
                       f"than the engine can run)", windowed=True)
    if current == "implausible" and jumps > 0:
        return None
    running = s[S[f"{prefix}_running"]]
    if running < st.min_samples:
        return None
    idle = float(mx[M[f"{prefix}_idle"]])
    limit = max(st.counter_stuck_s, st.counter_stuck_factor * (typical_step_s or 0.0))
    if idle >= limit:
        return Verdict("stuck", round(idle, 1), f"{label} has not risen for {idle:.0f} s with the engine running "
                                                f"(limit {limit:.0f} s)")
    return Verdict("ok")


def judge_clock(ring: list[list[float]], st: DataQualitySettings) -> Verdict | None:
    """From the newest bins' mean lead over arrival (``ring``: [bin middle ms, mean ahead s, share queued]).

    A drift is fitted only over bins that arrived live: a queue drains many times faster than its samples were
    taken, so a few milliseconds of delivery jitter there read as seconds of clock error (a replay published as
    fast as the broker takes it made a healthy loader "drift" 58 s/h). A queued clock is judged by its lead alone.
    """
    if not ring:
        return None
    ahead = ring[-1][1]
    live = [r for r in ring[-st.drift_bins:] if len(r) < 3 or r[2] < 0.5]
    if len(live) >= st.drift_bins:
        t = np.array([r[0] for r in ring[-st.drift_bins:]]) / 3.6e6
        a = np.array([r[1] for r in ring[-st.drift_bins:]])
        tc = t - t.mean()
        denom = float((tc * tc).sum())
        if denom > 0:
            slope = float((tc * (a - a.mean())).sum() / denom)
            residual = a - a.mean() - slope * tc
            se = float(np.sqrt((residual * residual).sum() / max(len(a) - 2, 1) / denom))
            change = slope * float(t[-1] - t[0])
            # gaining only: a clock falling behind looks exactly like a growing delivery delay
            if slope >= st.drift_s_per_h and slope >= 6 * se and change >= st.drift_min_change_s:
                return Verdict("skew", round(slope, 1), f"clock drifting {slope:+.0f} s/h against arrival "
                                                        f"(now {ahead:+.1f} s)")
    if ahead >= st.clock_tolerance_s:
        return Verdict("skew", round(ahead, 1), f"timestamps {ahead:.1f} s ahead of arrival")
    return Verdict("ok")
