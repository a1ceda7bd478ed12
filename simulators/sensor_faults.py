"""Sensor faults per machine: the ways one device on a mixed, old fleet reports wrong values.

Spec items of ``--faults`` (mixed freely with the network rates of ``faults.py``)::

    SENSOR=MODE[VALUE]:MACHINE[+MACHINE...][@FROM_S[-TO_S]]

    heading=stuck0:H-03          compass dead, reports 0 (aftermarket trackers without a compass do this)
    heading=stuck:H-03           frozen at the value it had when the fault began
    heading=absent:H-03          the field is missing from every sample
    heading=noisy30:H-03         +-30 degrees of uniform noise
    heading=offset180:H-03       mounted backwards
    speed=stuck0 | stuck | absent | offset-5 | noisy10
    position=implausible:H-02    GNSS multipath spikes: 1-4 samples 40-400 m off, about 2 per minute
    position=absent:H-02         no lat/lon
    payload=offset+2.5:H-05      zero offset in tonnes (reads 2.5 t when empty)
    payload=stuck | absent | stuck0
    fuel=stuck | implausible     counter frozen / counter jumping back and ahead by 100-500 l, twice a minute
    hours=stuck | implausible    engine-hour meter frozen / jumping
    clock=skew+30:H-04           device clock 30 s ahead of true time (negative: behind)
    clock=drift+60:H-04          device clock drifts 60 s per hour from the fault's start

``MACHINE`` may be ``*`` (every machine). ``@600`` starts the fault 600 simulated seconds in,
``@600-1800`` also ends it. Each fault is written to the ground truth as a ``sensor_fault`` record
(machine, sensor, mode, value, started_at, ended_at).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from sitepulse.errors import SitePulseError

SENSORS = ("heading", "speed", "position", "payload", "fuel", "hours", "clock")
MODES: dict[str, tuple[str, ...]] = {
    "heading": ("stuck", "absent", "noisy", "offset"),
    "speed": ("stuck", "absent", "noisy", "offset"),
    "position": ("implausible", "absent"),
    "payload": ("stuck", "absent", "offset"),
    "fuel": ("stuck", "implausible", "absent"),
    "hours": ("stuck", "implausible", "absent"),
    "clock": ("skew", "drift"),
}
FIELDS = {"heading": ("heading_deg",), "speed": ("speed_kmh",), "position": ("lat", "lon"),
          "payload": ("payload_kg",), "fuel": ("fuel_used_l",), "hours": ("engine_hours",)}
DEFAULT_VALUE = {("heading", "noisy"): 30.0, ("speed", "noisy"): 10.0, ("clock", "skew"): 30.0,
                 ("clock", "drift"): 60.0}
ITEM = re.compile(r"^(?P<sensor>[a-z_]+)=(?P<mode>[a-z]+)(?P<value>[+-]?\d+(\.\d+)?)?"
                  r":(?P<machines>[A-Za-z0-9_.*+-]+?)(@(?P<start>\d+(\.\d+)?)(-(?P<end>\d+(\.\d+)?))?)?$")


@dataclass(frozen=True)
class SensorFault:
    """One sensor of some machines going wrong from ``start_s`` (simulated seconds) to ``end_s``."""

    sensor: str
    mode: str
    value: float | None
    machines: tuple[str, ...]
    start_s: float = 0.0
    end_s: float | None = None

    def applies(self, machine_id: str) -> bool:
        return "*" in self.machines or machine_id in self.machines

    @property
    def spec(self) -> str:
        value = "" if self.value is None else f"{self.value:+g}" if self.mode in ("offset", "skew", "drift") \
            else f"{self.value:g}"
        when = "" if not self.start_s and self.end_s is None else \
            f"@{self.start_s:g}" + ("" if self.end_s is None else f"-{self.end_s:g}")
        return f"{self.sensor}={self.mode}{value}:{'+'.join(self.machines)}{when}"


def is_sensor_item(part: str) -> bool:
    """True when a ``--faults`` item names a sensor (``heading=...``) rather than a network rate."""
    return part.partition("=")[0].strip() in SENSORS


def parse_sensor_fault(part: str) -> SensorFault:
    """One ``SENSOR=MODE[VALUE]:MACHINES[@FROM[-TO]]`` item, or a one-line SitePulseError saying what is wrong."""
    m = ITEM.match(part.strip())
    sensor = part.partition("=")[0].strip()
    if m is None:
        raise SitePulseError(f"--faults: {part!r} is not SENSOR=MODE[VALUE]:MACHINE[+MACHINE][@FROM_S[-TO_S]] "
                             f"(e.g. heading=stuck0:H-03); modes of {sensor}: {', '.join(MODES[sensor])}")
    mode = m["mode"]
    if mode not in MODES[sensor]:
        raise SitePulseError(f"--faults: {sensor} has no mode {mode!r}; modes: {', '.join(MODES[sensor])}")
    value = float(m["value"]) if m["value"] is not None else DEFAULT_VALUE.get((sensor, mode))
    if mode == "offset" and value is None:
        raise SitePulseError(f"--faults: {part!r}: offset needs a value, e.g. {sensor}=offset+2.5:H-05")
    start = float(m["start"]) if m["start"] else 0.0
    end = float(m["end"]) if m["end"] else None
    if end is not None and end <= start:
        raise SitePulseError(f"--faults: {part!r}: the fault must end after it starts")
    return SensorFault(sensor, mode, value, tuple(m["machines"].split("+")), start, end)


def wrap180(a: float) -> float:
    return (a + 180.0) % 360.0 - 180.0


class SensorFaulter:
    """Applies one machine's sensor faults to its samples (dicts as the device would send them)."""

    def __init__(self, rng: np.random.Generator, faults: list[SensorFault], dt: float) -> None:
        self.rng = rng
        self.faults = faults
        self.dt = dt
        self.frozen: dict[str, float | None] = {}
        self.spike_left = 0
        self.spike = (0.0, 0.0)
        self.fuel_jump = 0.0
        self.hours_jump = 0.0

    def clock_offset(self, t: float) -> float:
        """Seconds the device clock is ahead of its usual skew at true time ``t``."""
        off = 0.0
        for f in self.faults:
            if f.sensor == "clock" and self._active(f, t):
                off += f.value if f.mode == "skew" else f.value * (t - f.start_s) / 3600.0
        return off

    def _active(self, f: SensorFault, t: float) -> bool:
        return t + 1e-9 >= f.start_s and (f.end_s is None or t < f.end_s)

    def apply(self, t: float, sample: dict, xy: tuple[float, float], to_lonlat) -> dict:
        """The sample as the faulty devices report it; ``xy`` is the reported local position."""
        out = sample
        for f in self.faults:
            if f.sensor == "clock":
                continue
            key = f"{f.sensor}:{f.mode}"
            if not self._active(f, t):
                self.frozen.pop(key, None)
                continue
            if out is sample:
                out = dict(sample)
            fields = FIELDS[f.sensor]
            if f.mode == "absent":
                for name in fields:
                    out.pop(name, None)
            elif f.mode == "stuck":
                name = fields[0]
                if key not in self.frozen:
                    self.frozen[key] = f.value if f.value is not None else out.get(name)
                if self.frozen[key] is not None:
                    out[name] = self.frozen[key]
            elif f.mode == "offset":
                name = fields[0]
                if name in out:
                    if f.sensor == "heading":
                        out[name] = round((out[name] + f.value) % 360.0, 1)
                    elif f.sensor == "payload":
                        out[name] = round(max(0.0, out[name] + f.value * 1000.0), 1)
                    else:
                        out[name] = round(max(0.0, out[name] + f.value), 1)
            elif f.mode == "noisy":
                name = fields[0]
                if name in out:
                    noise = float(self.rng.uniform(-f.value, f.value))
                    out[name] = round((out[name] + noise) % 360.0, 1) if f.sensor == "heading" \
                        else round(max(0.0, out[name] + noise), 1)
            elif f.mode == "implausible":
                self._implausible(f.sensor, out, xy, to_lonlat)
        return out

    def _implausible(self, sensor: str, out: dict, xy: tuple[float, float], to_lonlat) -> None:
        rng = self.rng
        if sensor == "position":
            if self.spike_left == 0 and rng.random() < 2.0 / 60.0 * self.dt:  # about 2 spikes a minute
                mag, ang = float(rng.uniform(40, 400)), float(rng.uniform(0, 2 * math.pi))
                self.spike = (mag * math.cos(ang), mag * math.sin(ang))
                self.spike_left = int(rng.integers(1, 5))
            if self.spike_left > 0 and "lat" in out:
                self.spike_left -= 1
                lon, lat = to_lonlat(xy[0] + self.spike[0], xy[1] + self.spike[1])
                out["lon"], out["lat"] = round(float(lon), 7), round(float(lat), 7)
        elif sensor in ("fuel", "hours"):
            name = FIELDS[sensor][0]
            scale = 500.0 if sensor == "fuel" else 200.0
            jump = self.fuel_jump if sensor == "fuel" else self.hours_jump
            if rng.random() < 1.0 / 30.0 * self.dt:  # a corrupt counter value about twice a minute
                jump = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 1.0) * scale)
            elif rng.random() < 0.3:
                jump = 0.0
            if sensor == "fuel":
                self.fuel_jump = jump
            else:
                self.hours_jump = jump
            if name in out and jump:
                out[name] = round(max(0.0, out[name] + jump), 4)
