"""Per-site settings of the positioning service: every threshold in physical units, with a default.

Where a default is a SitePulse choice rather than a published figure it says so (docs/DOMAIN.md:
"make every such number a setting").
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from microservices.motion import MotionSettings


class PositioningSettings(BaseModel):
    """How positions are cleaned and how zone visits, activity and speeding are decided."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # read-only: every stage sees what the host validated

    min_dwell_s: float = Field(
        5.0, ge=0, le=600,
        description="a zone visit starts after this long inside the polygon and ends after this long outside "
                    "the polygon grown by border_margin_m (docs/DOMAIN.md: SitePulse default minimum dwell 5 s)")
    border_margin_m: float = Field(
        3.0, ge=0, le=50,
        description="the least hysteresis at zone borders: a machine leaves a zone only once outside the polygon "
                    "grown by this many metres, or by border_sigmas of its position's uncertainty where that is more "
                    "(3 m: about two standard deviations of plain GNSS error, docs/DOMAIN.md)")
    border_sigmas: float = Field(
        2.0, ge=0, le=10,
        description="zone hysteresis scaled to how well the position is known: a visit is confirmed only once the "
                    "machine is this many standard deviations of its position inside the polygon, and ends only "
                    "once it is this many outside it (never less than border_margin_m); the standard deviation is "
                    "the machine's estimated receiver noise, shrinking while it stands (microservices/receiver.py)")
    gnss_decorrelation_s: float = Field(
        20.0, gt=0, le=600,
        description="a standing machine's position is the mean of its fixes since it stopped; receiver errors "
                    "(multipath, atmosphere) decorrelate over about this long, so each such span of standing is "
                    "one more independent look at where it is")
    restricted_min_dwell_s: float = Field(
        2.0, ge=0, le=600,
        description="minimum time inside a restricted zone before an entry is reported (shorter than "
                    "min_dwell_s: a short cut through a blast area matters even when brief)")
    jump_window_s: float = Field(
        15.0, ge=2, le=120,
        description="time window (centred) over which a fix is compared with its neighbours; must exceed twice "
                    "the longest GNSS jump to reject (jumps of tens of metres last a few seconds)")
    jump_tolerance_m: float = Field(
        8.0, gt=0, le=500,
        description="a fix farther than this from where its neighbours put it (motion-compensated median) "
                    "is a jump; plain GNSS error is a few metres, jumps tens of metres (docs/DOMAIN.md)")
    jump_tolerance_s: float = Field(
        0.6, ge=0, le=10,
        description="extra jump tolerance per m/s of speed (metres per m/s): covers acceleration and braking "
                    "inside the window")
    max_speed_kmh: float = Field(
        90.0, gt=0, le=500,
        description="a fix that implies more than this speed both from the previous and to the next fix is "
                    "rejected as a spike")
    smooth_window_s: float = Field(
        5.0, ge=0, le=60,
        description="centred window of the motion-compensated median that smooths accepted fixes")
    gap_carry_s: float = Field(
        30.0, ge=0, le=3600,
        description="carry the last good fix through rejected or missing fixes for up to this long; longer "
                    "gaps count as no data (no time, no zone change)")
    moving_kmh: float = Field(
        1.0, ge=0, le=20,
        description="a machine with its engine on is moving at or above this speed, else idle; the speed is its own "
                    "while that agrees with its fixes over a noise-long baseline, else the fixes' over that baseline, "
                    "so a standing machine's GNSS jitter neither moves it nor adds distance "
                    "(microservices/ground_speed.py)")
    speeding_tolerance_kmh: float = Field(
        0.5, ge=0, le=50,
        description="speeding is a reported speed above the applicable limit plus this (SitePulse default)")
    speeding_min_s: float = Field(
        3.0, ge=0, le=600, description="speeding must last at least this long to be an event (SitePulse default)")
    path_corridor_m: float = Field(
        15.0, ge=0, le=200,
        description="a position within this distance of a haul-road centreline takes the nearest road's "
                    "speed limit (zone limits apply inside zones; the lower limit wins)")
    track_interval_s: float = Field(
        5.0, ge=1, le=600,
        description="one cleaned position (with its raw fix) is stored per machine per this many seconds, for "
                    "the live map, the heat map and the positions route")

    motion: MotionSettings = Field(
        # judged sample by sample against the centred 15-s track (smooth through stops and starts): wider
        # speed tolerance than the causal fusion of traffic awareness
        default_factory=lambda: MotionSettings(speed_tolerance_kmh=10.0, speed_tolerance_share=0.5),
        description="reported speed and heading are used only where they agree with the course and speed over "
                    "ground of the cleaned track (microservices/motion.py); else the track's")

    @property
    def lookahead_s(self) -> float:
        """How far behind a machine's newest sample its cleaned positions are final."""
        return self.jump_window_s / 2 + self.smooth_window_s / 2


Settings = PositioningSettings
