"""Machines as state machines: haulers that run the haul cycle, loading units that fill them in passes.

A hauler goes parked -> warm-up -> (drive to a load zone, queue, spot) -> loading -> haul
loaded -> (queue at dump, spot) -> dumping -> return empty -> ... Its speed follows posted
limits, the road grade and its load (a power-limited model), and its driver keeps a gap to
the truck ahead, waits at a busy junction and queues at a busy loader or dump. Operators
sometimes speed, cut through a closed (restricted) area or run the junction.

Figures and their sources:
- Volvo A30G: rated payload 28,000 kg, empty ~24,100 kg, net power 265 kW, top speed 53 km/h
  (Volvo A30G product brochure). Volvo A40G: 39,000 kg, empty ~31,500 kg, 350 kW, 57 km/h
  (Volvo A40G brochure). Cat 773G: nominal payload 55.6 t, empty ~44 t, 578 kW gross,
  67 km/h (Caterpillar 773G spec sheet).
- Loaded haul 15-35 km/h, empty 25-50 km/h; a loader fills a 30-40 t hauler in 3-6 passes of
  25-40 s; dumping takes tens of seconds (docs/DOMAIN.md §Haul cycle).
- Rolling resistance of a maintained gravel haul road ~3 % (Caterpillar Performance Handbook,
  rolling resistance table: "firmly packed, maintained" 2-3.5 %).
- Diesel at load ~0.25 L/kWh (brake specific fuel consumption ~210 g/kWh at 0.84 kg/L);
  idling articulated hauler ~4-6 L/h, wheel loader working 18-25 L/h, 75-t class excavator
  ~35-40 L/h (typical OEM fuel-consumption guides).
- Bucket loads: Volvo L220H rock bucket ~5.5-6 m3, ~10 t of blasted rock at ~1.7 t/m3 loose;
  Volvo EC750E ~4.5-5 m3, ~8.5 t (Volvo brochures; loose rock densities from the Cat handbook).
- Payload policy: mean at or below rated, a minority above 110 %, almost none above 120 %
  (Caterpillar 10/10/20 policy, docs/DOMAIN.md §Payload management); the loading mix below honours it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

G = 9.81
ROLLING_RESISTANCE = 0.03
DRIVETRAIN_EFF = 0.75
BSFC_L_PER_KWH = 0.25


@dataclass(frozen=True)
class ModelSpec:
    """Physical parameters of one machine model."""

    rated_payload_kg: float
    empty_mass_kg: float = 0.0
    power_kw: float = 0.0
    max_empty_kmh: float = 50.0
    max_loaded_kmh: float = 35.0
    idle_lph: float = 5.0
    work_lph: float = 0.0  # loading units: fuel while working a pass cycle
    pass_s: tuple[float, float] = (25.0, 40.0)
    moves: bool = True  # wheel loaders drive between face and truck; excavators only swing


MODELS: dict[str, ModelSpec] = {
    "Volvo A30G": ModelSpec(28_000, 24_100, 265, max_empty_kmh=50, max_loaded_kmh=35, idle_lph=4.5),
    "Volvo A40G": ModelSpec(39_000, 31_500, 350, max_empty_kmh=50, max_loaded_kmh=35, idle_lph=5.5),
    "Cat 773G": ModelSpec(55_600, 44_000, 578, max_empty_kmh=50, max_loaded_kmh=35, idle_lph=9.0),
    "Volvo L220H": ModelSpec(10_000, idle_lph=6.0, work_lph=22.0, pass_s=(25.0, 40.0), moves=True),
    "Volvo EC750E": ModelSpec(8_500, idle_lph=9.0, work_lph=38.0, pass_s=(25.0, 33.0), moves=False),
}


def spec_for(model: str, kind: str, rated_payload_kg: float | None) -> ModelSpec:
    """The model's spec, or one scaled from the rated payload for a model we do not know."""
    known = MODELS.get(model)
    if known and (rated_payload_kg is None or abs(rated_payload_kg - known.rated_payload_kg) < 1):
        return known
    if kind == "hauler":
        rated = rated_payload_kg or 28_000.0
        base = known or MODELS["Volvo A30G"]
        return ModelSpec(rated, empty_mass_kg=0.86 * rated, power_kw=9.5 * rated / 1000,
                         max_empty_kmh=base.max_empty_kmh, max_loaded_kmh=base.max_loaded_kmh,
                         idle_lph=base.idle_lph)
    rated = rated_payload_kg or 10_000.0
    moves = kind != "excavator"
    base = known or MODELS["Volvo L220H" if moves else "Volvo EC750E"]
    return ModelSpec(rated, idle_lph=base.idle_lph, work_lph=base.work_lph, pass_s=base.pass_s, moves=moves)


@dataclass(frozen=True)
class Behaviour:
    """Operator habits, as probabilities; SitePulse defaults chosen to give services something to find."""

    p_under: float = 0.05  # a load below 90 % of rated (short last pass, sticky material)
    p_over_110: float = 0.06  # a load of 110-120 %
    p_over_120: float = 0.007  # a load above 120 % (the 10/10/20 policy says: never)
    target_mean: float = 0.985  # normal loads: mean as a fraction of rated
    target_sd: float = 0.04
    p_speeding_trip: float = 0.10  # a trip on which the driver exceeds posted limits
    speeding_factor: tuple[float, float] = (1.12, 1.35)
    compliant_factor: tuple[float, float] = (0.9, 0.98)  # most drivers stay a little under the limit
    p_restricted_trip: float = 0.04  # a trip that takes a short cut through a restricted zone
    p_run_junction: float = 0.04  # a junction passage where the driver does not wait his turn
    # (cumulative probability, fraction of rated) points of the load distribution; empty: the mix above
    payload_quantiles: tuple[tuple[float, float], ...] = ()
    depart_pause_s: tuple[float, float] = (5.0, 12.0)  # loaded, at the loader, after the last pass
    dump_position_s: tuple[float, float] = (5.0, 12.0)  # reverse and position at the tip edge
    dump_tip_s: tuple[float, float] = (20.0, 40.0)  # body up: payload falls to ~0 (docs/DOMAIN.md: tens of seconds)
    after_dump_s: tuple[float, float] = (4.0, 8.0)  # body down before driving off
    # pass times of one load scaled by a log-normal factor (digging conditions, operator): its median and
    # sigma; (1, 0) keeps each model's pass times as they are and draws nothing
    pass_time_scale: tuple[float, float] = (1.0, 0.0)

    def payload_fraction(self, rng: np.random.Generator) -> float:
        """Fraction of rated payload a loading operator puts on one truck."""
        u = rng.random()
        if self.payload_quantiles:
            probability, fraction = zip(*self.payload_quantiles, strict=True)
            return float(np.interp(u, probability, fraction))
        if u < self.p_over_120:
            return float(rng.uniform(1.205, 1.27))
        if u < self.p_over_120 + self.p_over_110:
            return float(rng.uniform(1.105, 1.195))
        if u < self.p_over_120 + self.p_over_110 + self.p_under:
            return float(rng.uniform(0.75, 0.895))
        return float(np.clip(rng.normal(self.target_mean, self.target_sd), 0.905, 1.095))


# Loads as a real fleet-management system recorded them: 9,208 weighed cycles of 57 Komatsu 930E trucks at
# an open-pit copper mine (shared/realdata/modular-dispatch-cycles, MIT), as quantiles of the payload over its
# median, taken as rated (the file names no rated payload; a 930E is rated about 290 t, the median is 298 t).
# The lowest 0.1 % (partial loads down to 9 t) is cut at 0.70. tests/simulators/test_calibration.py checks
# the profile against the file.
RECORDED_PAYLOAD_QUANTILES = ((0.0, 0.70), (0.01, 0.799), (0.05, 0.876), (0.10, 0.906), (0.25, 0.956),
                              (0.50, 1.0), (0.75, 1.037), (0.90, 1.074), (0.95, 1.094), (0.99, 1.124),
                              (0.999, 1.187), (1.0, 1.235))

# Operator habits per profile. "default" gives services something to find (the historical model, which
# hundreds of tests rely on); "recorded" is calibrated against the real records above and issue 30's
# recorded 60-t trucks: loads spread as recorded, trucks pause 49-60 s loaded at the loader after the last
# pass before driving off, dumping (arrival at the tip to empty) takes about a minute (records: median
# 59 s, quartiles 47-72 s), and loading times spread as recorded (median about 37 s a pass, long right tail).
# simulators/README.md (Calibration) says what was compared and how.
BEHAVIOURS: dict[str, Behaviour] = {
    "default": Behaviour(),
    "recorded": Behaviour(payload_quantiles=RECORDED_PAYLOAD_QUANTILES, depart_pause_s=(49.0, 60.0),
                          dump_position_s=(15.0, 30.0), dump_tip_s=(25.0, 45.0), pass_time_scale=(1.15, 0.4)),
}


def band(payload_kg: float, rated_kg: float) -> str:
    """SitePulse payload band (docs/DOMAIN.md): under < 90 % <= target <= 110 % < over_110 <= 120 % < over_120."""
    f = payload_kg / rated_kg
    if f < 0.9:
        return "under"
    if f <= 1.1:
        return "target"
    if f <= 1.2:
        return "over_110"
    return "over_120"


def power_limited_speed(spec: ModelSpec, payload_kg: float, grade: float) -> float:
    """Highest steady speed (m/s) the engine can hold on this grade with this load."""
    mass = spec.empty_mass_kg + payload_kg
    loaded = payload_kg > 0.3 * spec.rated_payload_kg
    vmax = (spec.max_loaded_kmh if loaded else spec.max_empty_kmh) / 3.6
    resist = ROLLING_RESISTANCE + grade
    if resist > 0.005 and spec.power_kw > 0:
        vmax = min(vmax, DRIVETRAIN_EFF * spec.power_kw * 1000 / (mass * G * resist))
    if grade < -0.03 and loaded:  # retarder-limited descent with a load
        vmax = min(vmax, 25 / 3.6)
    return vmax


def fuel_rate_lph(spec: ModelSpec, payload_kg: float, speed: float, accel: float, grade: float) -> float:
    """Fuel burn in L/h from the power at the wheels: idle plus BSFC times tractive power."""
    mass = spec.empty_mass_kg + payload_kg
    force = mass * (G * (ROLLING_RESISTANCE + grade) + max(accel, 0.0))
    power_kw = min(spec.power_kw, max(0.0, force * speed / DRIVETRAIN_EFF / 1000))
    return spec.idle_lph + BSFC_L_PER_KWH * power_kw


@dataclass
class Machine:
    """State shared by every simulated machine."""

    id: str
    kind: str
    model: str
    spec: ModelSpec
    index: int
    rng: np.random.Generator
    x: float = 0.0
    y: float = 0.0
    speed: float = 0.0  # m/s
    heading: float = 0.0
    payload: float = 0.0  # true kg on the body / in the bucket
    engine_on: bool = False
    fuel_l: float = 0.0  # lifetime counter
    engine_h: float = 0.0
    fuel_start: float = 0.0
    hours_start: float = 0.0
    idle_s: float = 0.0
    distance_m: float = 0.0
    seq: int = 0
    partner: int = -1  # index of the machine it is meant to be close to (loader <-> truck being loaded)


@dataclass
class Hauler(Machine):
    """A hauler and its current cycle bookkeeping."""

    mode: str = "parked"
    route: object = None
    s: float = 0.0
    purpose: str = ""  # "load" or "dump" or ""
    zone: str = ""  # destination zone
    spot: int = -1
    assigned: bool = False
    joined: bool = False
    wait_from: float | None = None
    t_next: float = 0.0
    factor: float = 1.0
    envelope: np.ndarray = field(default_factory=lambda: np.zeros(0))
    junction_hold: set = field(default_factory=set)
    junction_ignore: dict = field(default_factory=dict)
    leaving: tuple | None = None  # (zone, spot) released once clear
    load_zone: str = ""
    dump_zone: str = ""
    cycle: dict = field(default_factory=dict)
    dump_p0: float = 0.0
    dump_t0: float = 0.0
    dump_T: float = 0.0
    path_id: str = ""
    trip_start: tuple = ()
    slot: tuple = (0.0, 0.0)
    accel: float = 0.0
    grade: float = 0.0


@dataclass
class LoadingUnit(Machine):
    """A wheel loader or excavator serving one spot of a load zone."""

    zone: str = ""
    spot: int = 0
    face: tuple[float, float] = (0.0, 0.0)
    truck_side: tuple[float, float] = (0.0, 0.0)
    truck: Hauler | None = None
    passes: list[float] = field(default_factory=list)
    pass_i: int = 0
    pass_t0: float = 0.0
    pass_T: float = 30.0
    tipped: float = 0.0
    tipped_pass: int = -1
    done_at: float | None = None
    working: bool = False
    pass_scale: float = 1.0

    def start_loading(self, truck: Hauler, t: float, behaviour: Behaviour) -> None:
        """Plan the passes for this truck: total from the operator's habits, split over full buckets."""
        rated = truck.spec.rated_payload_kg
        total = behaviour.payload_fraction(self.rng) * rated
        n = max(1, math.ceil(total / (1.08 * self.spec.rated_payload_kg)))
        shares = self.rng.dirichlet(np.full(n, 25.0))
        self.passes = [float(p) for p in total * shares]
        median, sigma = behaviour.pass_time_scale
        self.pass_scale = median * (float(np.exp(sigma * self.rng.standard_normal())) if sigma > 0 else 1.0)
        self.truck = truck
        self.pass_i = 0
        self.pass_t0 = t
        self.pass_T = float(self.rng.uniform(*self.spec.pass_s)) * self.pass_scale
        self.tipped = 0.0
        self.tipped_pass = -1
        self.done_at = None
        self.working = True

    def step(self, t: float, dt: float) -> None:
        """Advance the pass cycle: fill at the face, carry, tip into the truck, return."""
        px, py = self.x, self.y
        if not self.working or self.truck is None:
            self.payload = 0.0
            target = self.face  # idle: go back to the face at walking pace and wait there
            d = math.hypot(target[0] - px, target[1] - py)
            if self.spec.moves and d > 0.01:
                f = min(1.0, 3.0 * dt / d)
                self.x, self.y = px + f * (target[0] - px), py + f * (target[1] - py)
        else:
            T = self.pass_T
            tau = t - self.pass_t0
            m = self.passes[self.pass_i]
            fill, carry, tip = 0.35 * T, 0.6 * T, 0.6 * T + 4.0
            if tau < fill:
                self.payload = m * tau / fill
                target = self.face
            elif tau < carry:
                self.payload = m
                f = (tau - fill) / (carry - fill)
                target = (self.face[0] + f * (self.truck_side[0] - self.face[0]),
                          self.face[1] + f * (self.truck_side[1] - self.face[1]))
            elif tau < tip:
                f = (tau - carry) / (tip - carry)
                self.payload = m * (1 - f)
                self.truck.payload = self.tipped + m * f
                target = self.truck_side
            else:
                if self.tipped_pass < self.pass_i:
                    self.tipped += m
                    self.tipped_pass = self.pass_i
                    self.truck.payload = self.tipped
                self.payload = 0.0
                f = min(1.0, (tau - tip) / max(1.0, T - tip))
                target = (self.truck_side[0] + f * (self.face[0] - self.truck_side[0]),
                          self.truck_side[1] + f * (self.face[1] - self.truck_side[1]))
                if self.pass_i == len(self.passes) - 1:
                    self.done_at = t
                    self.working = False
                    target = (px, py)
                elif tau >= T:
                    self.pass_i += 1
                    self.pass_t0 = t
                    self.pass_T = float(self.rng.uniform(*self.spec.pass_s)) * self.pass_scale
            if self.spec.moves:
                self.x, self.y = target
        d = math.hypot(self.x - px, self.y - py)
        self.speed = d / dt
        if d > 0.05:
            self.heading = math.degrees(math.atan2(self.x - px, self.y - py)) % 360.0
