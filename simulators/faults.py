"""Fault injection: the ways real site telemetry goes wrong, each switchable and rated.

Units of the ``--faults`` spec
(e.g. ``dropout=0.01,duplicate=0.02,reorder=0.01,malformed=0.005,wrong_type=0.005``):

- ``duplicate``, ``reorder``, ``malformed``, ``wrong_type``: probability per live telemetry
  message (a single-sample message sent in real time; array uploads after a dropout are
  never altered). ``reorder`` holds a message back for ``reorder_delay_s`` (2-10 s) so it
  arrives after younger samples; ``duplicate`` sends the identical payload twice.
- ``dropout``: probability per machine-minute that the device goes offline for
  ``dropout_minutes`` (x0.5-1.5, default 3 min). It buffers its samples and, when back,
  uploads them as JSON arrays of up to ``upload_chunk`` samples.
- extra keys ``dropout_minutes``, ``reorder_delay_s`` (max delay), ``upload_chunk`` tune them.
- sensor faults per machine, e.g. ``heading=stuck0:H-03,payload=offset+2.5:H-05@600``: see
  ``simulators/sensor_faults.py`` for every sensor and mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import orjson

from simulators.sensor_faults import SENSORS, SensorFault, is_sensor_item, parse_sensor_fault
from sitepulse.errors import SitePulseError

RATE_KINDS = ("dropout", "duplicate", "reorder", "malformed", "wrong_type")


@dataclass(frozen=True)
class FaultConfig:
    """Fault rates (see the module doc for units); all zero means a perfect network."""

    dropout: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    malformed: float = 0.0
    wrong_type: float = 0.0
    dropout_minutes: float = 3.0
    reorder_delay_s: float = 10.0
    upload_chunk: int = 60
    sensor_faults: tuple[SensorFault, ...] = ()

    def as_dict(self) -> dict[str, float | list[str]]:
        out: dict = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sensor_faults"}
        out["sensor_faults"] = [f.spec for f in self.sensor_faults]
        return out


def parse_faults(spec: str | None) -> FaultConfig:
    """Parse ``kind=rate,...``; ``none``/empty gives no faults, ``default`` a moderate mix."""
    if spec is None or spec.strip().lower() in ("", "none", "off"):
        return FaultConfig()
    if spec.strip().lower() == "default":
        return FaultConfig(dropout=0.005, duplicate=0.01, reorder=0.01, malformed=0.002, wrong_type=0.002)
    values: dict[str, float] = {}
    sensor_faults: list[SensorFault] = []
    names = {f.name for f in fields(FaultConfig)} - {"sensor_faults"}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if is_sensor_item(part):
            sensor_faults.append(parse_sensor_fault(part))
            continue
        key, sep, raw = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise SitePulseError(f"--faults: {part!r} is not KIND=RATE, KIND one of {', '.join(RATE_KINDS)}"
                                 " (or dropout_minutes, reorder_delay_s, upload_chunk), nor "
                                 f"SENSOR=MODE:MACHINE with SENSOR one of {', '.join(SENSORS)}")
        try:
            value = float(raw)
        except ValueError:
            raise SitePulseError(f"--faults: {key} needs a number, got {raw.strip()!r}") from None
        if key in RATE_KINDS and not 0.0 <= value <= 1.0:
            raise SitePulseError(f"--faults: {key}={value} is not a probability between 0 and 1")
        if key not in RATE_KINDS and value <= 0:
            raise SitePulseError(f"--faults: {key} must be positive")
        values[key] = int(value) if key == "upload_chunk" else value
    return FaultConfig(**values, sensor_faults=tuple(sensor_faults))


def _malformed(text: bytes, r: float) -> str:
    """A payload a parser must reject, always valid UTF-8 so it can be stored and replayed."""
    s = text.decode()
    if r < 0.4:
        return s[: max(1, int(len(s) * (0.3 + r)))]  # truncated in flight
    if r < 0.6:
        return s.replace('"lat":', '"lat":NaN,"x":', 1)  # not JSON
    if r < 0.8:
        return "\ufffd\ufffd" + s[5:]  # garbled start
    return ""  # empty payload


WRONG_TYPE_FIELDS = ("lat", "lon", "speed_kmh", "payload_kg", "seq", "engine_on", "ts")


def _wrong_type(sample: dict, r: float) -> dict:
    """The same sample with one field of the wrong JSON type."""
    out = dict(sample)
    name = WRONG_TYPE_FIELDS[int(r * len(WRONG_TYPE_FIELDS)) % len(WRONG_TYPE_FIELDS)]
    v = out.get(name)
    if name == "engine_on":
        out[name] = "yes" if v else "no"
    elif name == "ts":
        out[name] = True
    elif name == "seq":
        out[name] = str(v)
    else:
        out[name] = f"{v}"
    return out


@dataclass
class FaultCounts:
    """What one machine's injector did, for the ground truth's fault records."""

    dropout: int = 0
    dropout_messages: int = 0
    dropout_samples: int = 0
    duplicate: int = 0
    reorder: int = 0
    malformed: int = 0
    wrong_type: int = 0
    live_messages: int = 0


class FaultInjector:
    """Applies the configured faults to one machine's stream; returns (send_time, payload, is_json)."""

    def __init__(self, rng: np.random.Generator, config: FaultConfig, dt: float) -> None:
        self.rng = rng
        self.cfg = config
        self.dt = dt
        self.p_drop_tick = 1.0 - (1.0 - config.dropout) ** (dt / 60.0) if config.dropout > 0 else 0.0
        self.counts = FaultCounts()
        self.offline_until: float | None = None
        self.offline_from = 0.0
        self.buffer: list[dict] = []
        self.delayed: list[tuple[float, int, bytes]] = []  # (release time, order, payload)
        self._order = 0
        self.dropouts: list[tuple[float, float, int]] = []  # (offline_from, online_at, samples)
        self._u = np.empty((0, 0))
        self._i = 0

    def _draw(self) -> np.ndarray:
        if self._i >= len(self._u):
            self._u = self.rng.random((512, 8))
            self._i = 0
        row = self._u[self._i]
        self._i += 1
        return row

    @property
    def offline(self) -> bool:
        return self.offline_until is not None

    def process(self, t: float, sample: dict) -> tuple[list[tuple[bytes | str, bool]], str | None]:
        """Faulted messages to send at ``t`` for this sample, plus a status change ('online'/'offline')."""
        c = self.cfg
        u = self._draw()
        out: list[tuple[bytes | str, bool]] = []
        status = None
        if self.offline_until is not None:
            self.buffer.append(sample)
            if t + 1e-9 >= self.offline_until:
                status = "online"
                samples = len(self.buffer)
                for i in range(0, samples, c.upload_chunk):
                    out.append((orjson.dumps(self.buffer[i:i + c.upload_chunk]), True))
                    self.counts.dropout_messages += 1
                self.counts.dropout_samples += samples
                self.dropouts.append((self.offline_from, t, samples))
                self.buffer = []
                self.offline_until = None
            return self._release(t, out), status
        if self.p_drop_tick and u[0] < self.p_drop_tick:
            minutes = c.dropout_minutes * (0.5 + u[1])
            self.offline_from = t
            self.offline_until = t + max(self.dt, round(minutes * 60.0 / self.dt) * self.dt)
            self.counts.dropout += 1
            self.buffer = [sample]
            return self._release(t, out), "offline"
        self.counts.live_messages += 1
        if u[2] < c.wrong_type:
            sample = _wrong_type(sample, u[7])
            self.counts.wrong_type += 1
        text: bytes | str = orjson.dumps(sample)
        is_json = True
        if u[3] < c.malformed:
            text = _malformed(text, u[7])
            is_json = False
            self.counts.malformed += 1
        copies = 2 if u[4] < c.duplicate else 1
        if copies == 2:
            self.counts.duplicate += 1
        if u[5] < c.reorder:
            self.counts.reorder += 1
            delay = 2.0 + (max(c.reorder_delay_s, 2.0) - 2.0) * u[6]
            for _ in range(copies):
                self._order += 1
                self.delayed.append((t + max(self.dt, math.floor(delay / self.dt) * self.dt), self._order,
                                     (text, is_json)))
        else:
            out.extend([(text, is_json)] * copies)
        return self._release(t, out), status

    def _release(self, t: float, out: list) -> list:
        if self.delayed:
            due = [d for d in self.delayed if d[0] <= t + 1e-9]
            if due:
                self.delayed = [d for d in self.delayed if d[0] > t + 1e-9]
                out.extend(d[2] for d in sorted(due, key=lambda d: (d[0], d[1])))
        return out

    def flush(self, t: float) -> tuple[list[tuple[bytes | str, bool]], str | None]:
        """Everything held back at the end of a run: delayed messages, an unfinished dropout's buffer."""
        out = [d[2] for d in sorted(self.delayed, key=lambda d: (d[0], d[1]))]
        self.delayed = []
        status = None
        if self.offline_until is not None:
            status = "online"
            for i in range(0, len(self.buffer), self.cfg.upload_chunk):
                out.append((orjson.dumps(self.buffer[i:i + self.cfg.upload_chunk]), True))
                self.counts.dropout_messages += 1
            self.counts.dropout_samples += len(self.buffer)
            self.dropouts.append((self.offline_from, t, len(self.buffer)))
            self.buffer = []
            self.offline_until = None
        return out, status
