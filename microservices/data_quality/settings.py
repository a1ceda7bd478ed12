"""Per-site settings of data quality: how much evidence makes a sensor bad, in physical units.

Every threshold is relative (a share of the checks, a share of rated payload) or physical (a speed no
site machine reaches, a counter that must move while the engine runs), so it holds for other fleets and
noise levels; none is fitted to the simulator. Defaults are SitePulse's, documented in the README.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DataQualitySettings(BaseModel):
    """Settings of the data-quality service for one site; every field has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bin_s: float = Field(
        20.0, ge=5, le=600, description="evidence is counted per machine in time bins of this many seconds; each "
                                        "closed bin is judged ok, bad or without evidence")
    confirm_bins: int = Field(
        2, ge=1, le=20, description="consecutive bad bins before a finding opens (and ok bins before it closes): "
                                    "one odd bin is not a broken sensor")
    min_samples: int = Field(
        10, ge=1, le=10_000, description="a bin with fewer samples (or checks) than this says nothing")
    absent_share: float = Field(
        0.9, gt=0, le=1, description="a field missing from at least this share of a bin's samples is absent")
    stuck_share: float = Field(
        0.9, gt=0, le=1, description="a value repeated exactly from the previous sample in at least this share "
                                     "of the samples while the machine moves is stuck (a live sensor's reading "
                                     "moves: noise, vibration, turns, bounce)")
    moving_kmh: float = Field(
        5.0, gt=0, le=50, description="the track (consecutive fixes) at or above this speed means the machine moves")
    check_kmh: float = Field(
        12.0, gt=0, le=80, description="the reported heading is checked against the course over ground only at or "
                                       "above this track speed (a 0.5-m GNSS step error is 7 degrees at 4 m/s)")
    heading_tolerance_deg: float = Field(
        20.0, gt=0, le=90, description="a reported heading within this of the course over ground agrees")
    agree_share: float = Field(
        0.7, gt=0, le=1, description="a heading or speed agreeing with the track in fewer than this share of the "
                                     "checks in a bin is offset or implausible")
    offset_consistency: float = Field(
        0.9, gt=0, le=1, description="a disagreeing heading whose differences to the course point one way "
                                     "(mean resultant length at least this) is offset (mounted wrongly), else "
                                     "implausible (noisy)")
    speed_tolerance_kmh: float = Field(
        4.0, ge=0, le=50, description="a reported speed within this of the track speed ...")
    speed_tolerance_share: float = Field(
        0.25, ge=0, le=2, description="... plus this share of the track speed agrees")
    speed_offset_kmh: float = Field(
        3.0, ge=0, le=50, description="a mean difference (reported - track) beyond this ...")
    speed_offset_share: float = Field(
        0.05, ge=0, le=1, description="... plus this share of the mean track speed, with a small spread, is an "
                                      "offset speed signal")
    heading_roughness_deg_s: float = Field(
        8.0, gt=0, le=180, description="a reported heading that swings more than this per second on average beyond "
                                       "the course over ground's own changes, at or above check_kmh, is noisy (a "
                                       "real turn turns the course too; GNSS noise only makes the course rougher)")
    speed_roughness_kmh_s: float = Field(
        3.0, gt=0, le=100, description="a reported speed changing by more than this per second on average while "
                                       "moving is noisy (a hauler's mean acceleration is well under 1 km/h/s; "
                                       "judged on the signal alone, whatever the GNSS noise)")
    max_speed_kmh: float = Field(
        120.0, gt=0, le=400, description="a fix this fast from the previous one is a GNSS spike (no site machine "
                                         "moves so fast)")
    spike_count: int = Field(
        3, ge=1, le=100, description="this many spike edges ...")
    spike_bins: int = Field(
        4, ge=1, le=60, description="... within this many bins make the position implausible (plain GNSS jumps a "
                                    "few times an hour; a multipath antenna several times a minute); also the "
                                    "window in which confirm_bins x min_samples frozen moving samples are stuck")
    payload_frozen_s: float = Field(
        60.0, gt=0, le=3600, description="a payload reading unchanged for this long while the machine moves is "
                                          "frozen (a loaded body bounces, an empty one reads its noise); repeats "
                                          "between neighbouring samples are normal for a quantised load cell")
    payload_zero_frozen_s: float = Field(
        300.0, gt=0, le=7200, description="a payload reading of exactly 0 (an empty body in a load cell's dead band) "
                                          "is frozen only when unchanged this long while moving: about a haul "
                                          "cycle, so it missed a load")
    empty_fraction: float = Field(
        0.12, gt=0, lt=1, description="payload readings below this share of rated count as the body or bucket "
                                      "being empty, where a zero offset shows: half the smallest loader pass (a "
                                      "hauler is filled in 3-6 passes, docs/DOMAIN.md)")
    zero_tolerance_fraction: float = Field(
        0.02, gt=0, lt=1, description="a median empty reading above this share of rated is off zero (on-board "
                                      "weighing is accurate to 1-3 % of rated, docs/DOMAIN.md; noise around a true "
                                      "zero keeps the median below it)")
    max_fuel_lph: float = Field(
        400.0, gt=0, le=5000, description="the fuel counter may rise at most this fast (the largest quarry "
                                          "machines burn under 300 l/h); faster, or backwards, is implausible")
    counter_slack: float = Field(
        1.0, ge=0, le=100, description="counter changes within this (litres; hours / 10) are resolution, not jumps")
    counter_jumps: int = Field(
        2, ge=1, le=100, description="this many counter jumps within spike_bins bins make a counter implausible "
                                     "(one corrupt value jumps out and back; a single reset is one jump)")
    counter_stuck_s: float = Field(
        60.0, gt=0, le=86_400, description="a fuel or engine-hour counter that has not risen for this long "
                                           "while the engine runs ...")
    counter_stuck_factor: float = Field(
        5.0, ge=1, le=100, description="... and for this many times its usual time between steps (a 0.1-h "
                                       "meter steps every 6 minutes) is stuck")
    clock_tolerance_s: float = Field(
        5.0, gt=0, le=3600, description="a device clock this far ahead of arrival (or of the rest of the fleet "
                                        "arriving at the same time) is skewed")
    drift_s_per_h: float = Field(
        20.0, gt=0, le=3600, description="a device clock whose offset changes at least this fast (a quartz clock "
                                         "drifts about 0.1 s an hour) is drifting")
    drift_min_change_s: float = Field(
        0.5, gt=0, le=3600, description="... and gains at least this much over the fit (less is network jitter)")
    drift_bins: int = Field(
        4, ge=3, le=60, description="bins over which the clock drift is fitted")
    fleet_neighbours: int = Field(
        3, ge=1, le=100, description="the fleet's arrival lag at a sample is the median over this many samples "
                                     "per machine around it in arrival order")
