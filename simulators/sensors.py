"""Sensor realism: GNSS noise and jumps, payload noise and body bounce, device clock skew.

Services must cope with what real devices report, so the simulator never publishes true
values: positions carry a few metres of time-correlated GNSS error with occasional jumps of
tens of metres (docs/DOMAIN.md §Positioning), payload readings carry 1-3 % of rated noise while
standing and a larger bounce while a loaded body moves (docs/DOMAIN.md §Payload management).
Random numbers are drawn in blocks per machine so a run is fast and fully reproducible.

Real fleets are not one receiver and one load cell: ``RECEIVERS`` holds GNSS receiver classes (RTK,
SBAS, standalone) and ``LOAD_CELLS`` a real on-board weighing profile (quantised, drifting while
standing, sentinel readings, lag), both opt-in; ``MixedFleet`` gives each machine its own class, as a
real mixed fleet. The default ``SensorConfig()`` is the simulator's historical model, unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from sitepulse.errors import SitePulseError


@dataclass(frozen=True)
class SensorConfig:
    """Noise settings; defaults follow docs/DOMAIN.md's typical figures."""

    gnss_sigma_m: float = 1.5  # plain GNSS: "a few metres" per axis, slowly wandering
    gnss_tau_s: float = 20.0  # correlation time of the GNSS error (multipath/atmosphere drift)
    gnss_white_m: float = 0.3
    gnss_jump_rate: float = 0.001  # probability per second that a jump starts (so per sample at 1 Hz)
    gnss_jump_m: tuple[float, float] = (15.0, 60.0)  # "jumps of tens of metres"
    gnss_jump_s: tuple[float, float] = (1.0, 6.0)
    payload_noise_frac: float = 0.015  # of rated payload, standing (on-board weighing: 1-3 %)
    bounce_frac: float = 0.05  # of the carried payload, at speed, on a rough haul road
    bounce_tau_s: float = 1.5
    bounce_full_speed_kmh: float = 20.0
    bucket_noise_frac: float = 0.015  # loader bucket weighing, of rated bucket load
    speed_noise_kmh: float = 0.2
    heading_noise_deg: float = 1.0
    skew_max_s: float = 0.5
    # real load cells (LOAD_CELLS["real"]); the defaults switch each effect off
    payload_step_kg: float = 0.0  # reading resolution: a 60-t truck's cell reports in 100-kg steps
    payload_lag_s: float = 0.0  # time constant of the cell's own filter: the reading settles after a bucket
    payload_settle_frac: float = 0.0  # sd of the offset a standing reading drifts to, of the carried payload
    payload_sentinel_rate: float = 0.0  # probability per second of a sentinel reading (-99 or a negative value)
    gnss_class: str = ""  # the receiver class this config was made from ("" = the historical default)

    @classmethod
    def receiver(cls, name: str, *, white_m: float | None = None, load_cell: str | None = None,
                 **overrides: Any) -> SensorConfig:
        """A named GNSS receiver class (``RECEIVERS``), optionally with a load-cell profile and overrides.

        ``SensorConfig.receiver("standalone", white_m=1.5)`` is a standalone receiver with 1.5 m of white
        noise per axis on top of its drift and multipath jumps."""
        if name not in RECEIVERS:
            raise SitePulseError(f"receiver {name!r} is not one of {', '.join(RECEIVERS)}")
        fields = {**RECEIVERS[name], "gnss_class": name}
        if white_m is not None:
            fields["gnss_white_m"] = float(white_m)
        if load_cell is not None:
            fields.update(_load_cell(load_cell))
        return cls(**{**fields, **overrides})

    @property
    def gnss_noise_m(self) -> float:
        """Per-axis sd of the position error outside jumps (drift and white noise together)."""
        return math.hypot(self.gnss_sigma_m, self.gnss_white_m)


# GNSS receiver classes. Every class keeps the default multipath jumps (they come from pit walls and
# machines, not from the receiver) and differs in its slow drift and white noise, per axis:
# - rtk: carrier-phase fixed solution, about 2 cm (docs/DOMAIN.md: "a few centimetres");
# - sbas: satellite-based augmentation (EGNOS/WAAS), about 0.5 m, wandering slowly;
# - standalone: the most common receiver on construction equipment; a few metres of slow drift
#   (atmosphere, multipath) plus 1-2.5 m of white noise near pit walls (issue 30: 2.5 m is the bar).
RECEIVERS: dict[str, dict[str, float]] = {
    "rtk": {"gnss_sigma_m": 0.017, "gnss_white_m": 0.01, "gnss_tau_s": 20.0},
    "sbas": {"gnss_sigma_m": 0.4, "gnss_white_m": 0.3, "gnss_tau_s": 60.0},
    "standalone": {"gnss_sigma_m": 1.5, "gnss_white_m": 2.5, "gnss_tau_s": 20.0},
}
STANDALONE_WHITE_M = (1.0, 2.5)  # the range a mixed fleet's standalone receivers draw from

# Load-cell profiles. "ideal" is the historical model (continuous readings, white noise and bounce);
# "real" is what a real on-board weighing system reports (issue 30, recorded 60-t trucks): 100-kg steps,
# so neighbouring samples repeat; an internal filter (readings settle seconds after a bucket and bounce
# is damped); a standing reading that drifts by a few per cent; now and then -99 or another negative
# sentinel instead of a value.
LOAD_CELLS: dict[str, dict[str, float]] = {
    "ideal": {},
    "real": {"payload_step_kg": 100.0, "payload_lag_s": 4.0, "payload_settle_frac": 0.02,
             "payload_sentinel_rate": 0.002, "payload_noise_frac": 0.002, "bounce_frac": 0.012},
}


def _load_cell(name: str) -> dict[str, float]:
    if name not in LOAD_CELLS:
        raise SitePulseError(f"load cell {name!r} is not one of {', '.join(LOAD_CELLS)}")
    return LOAD_CELLS[name]


@dataclass(frozen=True)
class MixedFleet:
    """Each machine draws its receiver class (``shares``), as on a real fleet of mixed age and make.

    Standalone receivers draw their white noise from ``standalone_white_m``; ``load_cell`` and ``overrides``
    apply to every machine."""

    shares: tuple[tuple[str, float], ...] = (("rtk", 0.25), ("sbas", 0.25), ("standalone", 0.5))
    standalone_white_m: tuple[float, float] = STANDALONE_WHITE_M
    load_cell: str | None = None
    overrides: tuple[tuple[str, Any], ...] = ()

    def config_for(self, rng: np.random.Generator) -> SensorConfig:
        """One machine's sensors, drawn with its own generator (independent of the fleet's order)."""
        names = [name for name, _ in self.shares]
        weights = np.array([w for _, w in self.shares], dtype=float)
        name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        white = float(rng.uniform(*self.standalone_white_m)) if name == "standalone" else None
        return SensorConfig.receiver(name, white_m=white, load_cell=self.load_cell, **dict(self.overrides))

    def with_skew(self, skew_max_s: float) -> MixedFleet:
        return replace(self, overrides=(*[o for o in self.overrides if o[0] != "skew_max_s"],
                                        ("skew_max_s", skew_max_s)))

    def as_dict(self) -> dict[str, Any]:
        return {"mixed": True, "shares": dict(self.shares), "standalone_white_m": list(self.standalone_white_m),
                "load_cell": self.load_cell, "overrides": dict(self.overrides)}


FleetSensors = SensorConfig | MixedFleet


def fleet_sensors(receiver: str | None = None, load_cell: str | None = None, **overrides: Any) -> FleetSensors:
    """The sensors of a fleet from names: ``receiver`` one of RECEIVERS or "mixed" (None: the default model),
    ``load_cell`` one of LOAD_CELLS (None: "ideal")."""
    if receiver == "mixed":
        if load_cell is not None:
            _load_cell(load_cell)
        return MixedFleet(load_cell=load_cell, overrides=tuple(overrides.items()))
    if receiver is None:
        return SensorConfig(**{**(_load_cell(load_cell) if load_cell else {}), **overrides})
    return SensorConfig.receiver(receiver, load_cell=load_cell, **overrides)


def sensors_dict(sensors: FleetSensors) -> dict[str, Any]:
    """The fleet's sensor settings as the ground truth's site record lists them."""
    return sensors.as_dict() if isinstance(sensors, MixedFleet) else asdict(sensors)


SETTLE_TAU_S = 10.0  # a standing reading approaches its new offset over about this long
STANDING_MS = 0.3  # below this true speed a truck stands (its suspension settles)


class SensorModel:
    """Turns one machine's true state into what its devices report, tick by tick."""

    BLOCK = 512

    def __init__(self, rng: np.random.Generator, config: SensorConfig, dt: float,
                 rated_kg: float, kind: str) -> None:
        self.rng = rng
        self.cfg = config
        self.dt = dt
        self.rated = rated_kg
        self.kind = kind
        self.skew_s = round(float(rng.uniform(-config.skew_max_s, config.skew_max_s)), 3) \
            if config.skew_max_s > 0 else 0.0
        self.phi_g = math.exp(-dt / config.gnss_tau_s)
        self.phi_b = math.exp(-dt / config.bounce_tau_s)
        self.gx = float(rng.normal(0, config.gnss_sigma_m))
        self.gy = float(rng.normal(0, config.gnss_sigma_m))
        self.bounce = 0.0
        self.jump_left = 0
        self.jump = (0.0, 0.0)
        self.jumps = 0
        self._i = self.BLOCK
        self._n = np.empty((0, 0))
        self._u = np.empty((0, 0))
        self.jump_p = config.gnss_jump_rate * dt  # the rate is per second: the same jumps per hour at any Hz
        # a real load cell's extras draw from their own generator, made only when used, so a run without
        # them is byte-identical to the historical model
        extras = config.payload_settle_frac > 0 or config.payload_sentinel_rate > 0
        self.cell = np.random.default_rng(int(rng.integers(2 ** 63))) if extras and kind == "hauler" else None
        self.lag_a = 1.0 - math.exp(-dt / config.payload_lag_s) if config.payload_lag_s > 0 else 1.0
        self.settle_a = 1.0 - math.exp(-dt / SETTLE_TAU_S)
        self.settle = 0.0
        self.settle_target = 0.0
        self.standing = False
        self.filtered: float | None = None
        self.sentinels = 0

    def _draw(self) -> tuple[np.ndarray, np.ndarray]:
        if self._i >= self.BLOCK:
            self._n = self.rng.standard_normal((self.BLOCK, 8))
            self._u = self.rng.random((self.BLOCK, 4))
            self._i = 0
        row, u = self._n[self._i], self._u[self._i]
        self._i += 1
        return row, u

    def read(self, x: float, y: float, speed_ms: float, heading: float, payload: float,
             loaded_body: bool) -> tuple[float, float, float, float, float]:
        """Reported x, y (local metres), speed km/h, heading and payload for one sample."""
        c = self.cfg
        n, u = self._draw()
        k = math.sqrt(1 - self.phi_g ** 2) * c.gnss_sigma_m
        self.gx = self.phi_g * self.gx + k * n[0]
        self.gy = self.phi_g * self.gy + k * n[1]
        ex, ey = self.gx + c.gnss_white_m * n[2], self.gy + c.gnss_white_m * n[3]
        if self.jump_left > 0:
            self.jump_left -= 1
        elif u[0] < self.jump_p:
            lo, hi = c.gnss_jump_m
            mag = lo + (hi - lo) * u[1]
            ang = 2 * math.pi * u[2]
            self.jump = (mag * math.cos(ang), mag * math.sin(ang))
            lo_s, hi_s = c.gnss_jump_s
            self.jump_left = max(1, int(round((lo_s + (hi_s - lo_s) * u[3]) / self.dt)))
            self.jumps += 1
        if self.jump_left > 0:
            ex += self.jump[0]
            ey += self.jump[1]
        v_kmh = speed_ms * 3.6
        spd = max(0.0, v_kmh + c.speed_noise_kmh * n[4]) if v_kmh > 0.05 else 0.0
        hdg = (heading + c.heading_noise_deg * n[5]) % 360.0
        if self.kind == "hauler":
            sigma = c.payload_noise_frac * self.rated
            kb = math.sqrt(1 - self.phi_b ** 2)
            amp = c.bounce_frac * payload * min(1.0, v_kmh / c.bounce_full_speed_kmh) if loaded_body else 0.0
            self.bounce = self.phi_b * self.bounce + kb * n[7] * amp if amp > 0 else 0.0
            reading = payload + sigma * n[6] + self.bounce
            if self.cell is not None or self.lag_a < 1.0 or c.payload_step_kg > 0:
                return (float(x + ex), float(y + ey), float(spd), float(hdg),
                        self._load_cell(reading, payload, speed_ms))
        else:
            sigma = c.bucket_noise_frac * self.rated
            reading = payload + sigma * n[6] if payload > 0 else abs(0.2 * sigma * n[6])
        return float(x + ex), float(y + ey), float(spd), float(hdg), float(max(0.0, reading))

    def _load_cell(self, raw: float, payload: float, speed_ms: float) -> float:
        """What a real on-board weighing system reports for a raw reading: drift while standing, its own
        filter's lag, its resolution, and now and then a sentinel instead of a value."""
        c, cell = self.cfg, self.cell
        if cell is not None and c.payload_settle_frac > 0:
            standing = speed_ms < STANDING_MS
            if standing and not self.standing:  # a new stop: the suspension settles to a new offset
                self.settle_target = float(cell.normal(0.0, c.payload_settle_frac))
            elif not standing:
                self.settle_target = 0.0
            self.standing = standing
            self.settle += self.settle_a * (self.settle_target - self.settle)
            raw += payload * self.settle
        self.filtered = raw if self.filtered is None else self.filtered + self.lag_a * (raw - self.filtered)
        reading = max(0.0, self.filtered)
        if c.payload_step_kg > 0:
            reading = round(reading / c.payload_step_kg) * c.payload_step_kg
        if cell is not None and c.payload_sentinel_rate > 0 and cell.random() < c.payload_sentinel_rate * self.dt:
            self.sentinels += 1
            step = max(c.payload_step_kg, 1.0)
            return -99.0 if cell.random() < 0.5 else -step * float(cell.integers(1, 50))
        return float(reading)
