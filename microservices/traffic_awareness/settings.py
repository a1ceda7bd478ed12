"""Per-site settings of the traffic-awareness service: every threshold in physical units, with a default.

Defaults cite docs/DOMAIN.md §Traffic awareness and collision warning: warning when two moving
machines come within 20 m with time to collision under 8 s, critical within 10 m or under 4 s;
congestion when speed on a road segment drops below 50 % of its free-flow speed for more than
a minute. These are SitePulse defaults, not a standard (ISO 21815 and EMESRT L7/L8 describe
what a warning is for, not these numbers), so every one of them is a setting.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from microservices.motion import MotionSettings


class TrafficSettings(BaseModel):
    """How close encounters, queues and congestion are decided."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # read-only: every stage sees what the host validated

    warning_distance_m: float = Field(
        20.0, gt=0, le=200,
        description="warning when two moving machines are within this distance with time to collision under "
                    "warning_ttc_s (docs/DOMAIN.md: SitePulse default 20 m)")
    warning_ttc_s: float = Field(
        8.0, gt=0, le=60, description="time to collision below which a close pair warns (docs/DOMAIN.md default 8 s)")
    critical_distance_m: float = Field(
        10.0, gt=0, le=200, description="critical within this distance (docs/DOMAIN.md default 10 m)")
    critical_ttc_s: float = Field(
        4.0, gt=0, le=60, description="critical with time to collision under this (docs/DOMAIN.md default 4 s)")
    collision_radius_m: float = Field(
        6.0, gt=0, le=50,
        description="time to collision is the constant-velocity time until the two machines' centres come this "
                    "close (about the length of a hauler; SitePulse default)")
    min_closing_kmh: float = Field(
        1.0, ge=0, le=30,
        description="a pair closing in slower than this has no time to collision: the difference of two filtered "
                    "velocities is not known better (SitePulse default; within the 20 m warning distance it matters "
                    "only closer than 8 m, critical by distance anyway)")
    moving_min_kmh: float = Field(
        2.0, ge=0, le=30, description="both machines must move at least this fast for an encounter (docs/DOMAIN.md: "
                                      "'two moving machines'; SitePulse default 2 km/h)")
    merge_s: float = Field(
        3.0, ge=0, le=60, description="flagged moments of one pair closer together than this are one encounter")
    grid_s: float = Field(
        1.0, gt=0, le=10, description="positions of all machines are interpolated to common instants this far apart")
    max_gap_s: float = Field(
        5.0, gt=0, le=60, description="a machine's position is interpolated only between samples at most this far "
                                      "apart; across longer gaps it is unknown (no encounter can be decided)")
    silence_s: float = Field(
        15.0, gt=0, le=3600,
        description="a machine whose newest sample is this much older than the site's newest is treated as "
                    "silent and no longer holds back final results (its late data then causes a replay)")
    filter_window_s: float = Field(
        12.0, ge=0, le=60,
        description="GNSS jumps: fixes off the Kalman filter's prediction (beyond jump_gate_m and its 99.9 % bound) "
                    "are not used for up to half of this; fixes still off after that are where the machine is "
                    "(must exceed twice the longest jump; 0: every fix is used)")
    jump_gate_m: float = Field(
        10.0, gt=0, le=200,
        description="a fix closer than this to the Kalman filter's prediction is never a jump (docs/DOMAIN.md: plain "
                    "GNSS errs by a few metres, jumps by tens of metres; a receiver's own noise widens the gate)")
    lane_offset_m: float | None = Field(
        None, ge=-50, le=50,
        description="the site's lane layout, for map-matching: on a haul road, moving machines keep this far to "
                    "the right of the centreline (negative: left-hand traffic). A position within "
                    "lane_tolerance_m of its lane is snapped onto it, so two trucks passing in their lanes are as "
                    "far apart as the lanes are, not closer by the GNSS error (a few metres, docs/DOMAIN.md); "
                    "positions off their lane (a truck cutting across) and positions where roads meet are left as "
                    "measured. None: no map-matching")
    lane_tolerance_m: float = Field(
        4.5, ge=0, le=20, description="how far from its lane centre a position is still taken as in the lane "
                                      "(about three standard deviations of plain GNSS error per axis, docs/DOMAIN.md: "
                                      "a few metres)")
    loading_margin_m: float = Field(
        15.0, ge=0, le=200,
        description="a loading unit (loader, excavator) and a hauler both inside one load zone grown by this "
                    "margin are meant to be close (the hauler it is loading, spotting or pulling out)")
    queue_approach_m: float = Field(
        150.0, ge=0, le=2000,
        description="a hauler within this distance of a load or dump zone (or inside it) is at or approaching it; "
                    "stops there before the stop at which it is served are queueing")
    queue_stop_kmh: float = Field(
        1.0, ge=0, le=10, description="below this reported speed a hauler is standing (waiting or being served)")
    service_min_s: float = Field(
        15.0, ge=0, le=3600,
        description="a stop inside a load or dump zone shorter than this is not where the hauler is served "
                    "(loading takes minutes, tipping tens of seconds; a pause on the way out is shorter)")
    loading_pass_share: float = Field(
        0.1, gt=0, le=1,
        description="a hauler's payload rising by this share of its rated payload over its lowest reading at the zone "
                    "is a pass: loading has begun (a bucket is 15-30 % of a truck's load; a healthy scale's noise, "
                    "steps and drift while standing are a few per cent)")
    queue_min_s: float = Field(
        5.0, ge=0, le=3600, description="waits shorter than this are not queues (SitePulse default)")
    segment_length_m: float = Field(
        200.0, ge=20, le=5000, description="haul-road centrelines are split into congestion segments of this length")
    segment_corridor_m: float = Field(
        15.0, ge=1, le=200, description="a position within this distance of a centreline is on that road")
    congestion_share: float = Field(
        0.5, gt=0, le=1,
        description="a segment is congested while its mean speed is below this share of its free-flow speed "
                    "(docs/DOMAIN.md: SitePulse default 50 %)")
    congestion_min_s: float = Field(
        60.0, ge=0, le=3600, description="... for more than this long (docs/DOMAIN.md: more than a minute)")
    free_flow_percentile: float = Field(
        85.0, gt=0, le=100,
        description="free-flow speed of a segment: this percentile of the moving speeds observed on it, capped by "
                    "its posted limit (the 85th percentile is the traffic engineer's customary free-flow speed)")

    accel_sigma_ms2: float = Field(
        1.0, gt=0, le=20,
        description="the Kalman filter's process noise: how fast a machine's velocity can change, as the standard "
                    "deviation of its acceleration (a laden haul truck accelerates and brakes at up to about 1 m/s2 "
                    "in service, and turns at 1-2 m/s2 lateral)")
    reported_speed_error_kmh: float = Field(
        1.0, gt=0, le=20,
        description="error of a machine's own speed signal where it is trusted (wheel speed: under 1 km/h)")
    reported_heading_error_deg: float = Field(
        3.0, gt=0, le=90, description="error of a machine's own heading where it is trusted (a few degrees)")
    gnss_noise_m: float | None = Field(
        None, gt=0, le=50,
        description="white noise of the fleet's GNSS fixes per axis, metres (RTK 0.02, SBAS 0.5, standalone 1-3); "
                    "None: estimated per machine from its scatter while standing")

    motion: MotionSettings = Field(
        default_factory=MotionSettings,
        description="course and speed over ground from the track; reported heading and speed are used only where "
                    "they agree with it (microservices/motion.py)")

    @model_validator(mode="after")
    def _consistent(self) -> TrafficSettings:
        """Critical must be stricter than warning, or levels would be inverted."""
        if self.critical_distance_m > self.warning_distance_m:
            raise ValueError("critical_distance_m must not exceed warning_distance_m")
        if self.critical_ttc_s > self.warning_ttc_s:
            raise ValueError("critical_ttc_s must not exceed warning_ttc_s")
        return self

    @property
    def lookback_ms(self) -> int:
        """How much raw history per machine the causal filter and interpolation need."""
        # the earliest new sample's track velocity and trust verdict, and its displacement over the noise baseline
        # (the median over smooth_s at each end: up to baseline + 2 smooth back; 38 s broke split invariance)
        track = self.motion.track_window_s + self.motion.max_step_s + self.motion.trust_window_s
        baseline = self.motion.baseline_s + 2 * self.motion.smooth_s
        return int(round(max(track, baseline, self.max_gap_s) * 1000))


Settings = TrafficSettings
