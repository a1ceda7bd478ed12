"""Sensor realism: GNSS noise and jumps, payload noise and body bounce, device clock skew.

Services must cope with what real devices report, so the simulator never publishes true
values: positions carry a few metres of time-correlated GNSS error with occasional jumps of
tens of metres (DOMAIN.md, Positioning), payload readings carry 1-3 % of rated noise while
standing and a larger bounce while a loaded body moves (DOMAIN.md, Payload management).
Random numbers are drawn in blocks per machine so a run is fast and fully reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SensorConfig:
    """Noise settings; defaults follow DOMAIN.md's typical figures."""

    gnss_sigma_m: float = 1.5  # plain GNSS: "a few metres" per axis, slowly wandering
    gnss_tau_s: float = 20.0  # correlation time of the GNSS error (multipath/atmosphere drift)
    gnss_white_m: float = 0.3
    gnss_jump_rate: float = 0.001  # probability per sample that a jump starts
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
        elif u[0] < c.gnss_jump_rate:
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
        else:
            sigma = c.bucket_noise_frac * self.rated
            reading = payload + sigma * n[6] if payload > 0 else abs(0.2 * sigma * n[6])
        return float(x + ex), float(y + ey), float(spd), float(hdg), float(max(0.0, reading))
