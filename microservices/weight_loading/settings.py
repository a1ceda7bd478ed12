"""Per-site settings of weight loading: payload bands, the 10/10/20 limits and detection thresholds.

Every number that is a SitePulse default rather than a published rule is a setting here
(docs/DOMAIN.md: "make every such number a setting"). Fractions are of the hauler's rated payload.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class WeightLoadingSettings(BaseModel):
    """Settings of the weight-loading service for one site; every field has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- payload bands and the 10/10/20 policy (docs/DOMAIN.md §Payload management) ---------------
    under_fraction: float = Field(
        0.90, gt=0, le=2, description="below this fraction of rated payload a load is 'under' (SitePulse band)"
    )
    over_110_fraction: float = Field(
        1.10, gt=0, le=3, description="above this fraction a load is 'over_110' (10/10/20 rule 2 limit)"
    )
    over_120_fraction: float = Field(
        1.20, gt=0, le=3, description="above this fraction a load is 'over_120' (10/10/20 rule 3: never)"
    )
    max_share_over_110: float = Field(
        0.10, ge=0, le=1, description="10/10/20 rule 2: largest allowed share of loads above over_110_fraction"
    )
    target_fraction: float = Field(
        1.0, gt=0, le=2, description="payload an under-loaded trip should have carried, for the savings KPI"
    )
    rated_payload_kg: dict[str, float] = Field(
        default_factory=dict,
        description="per-machine rated payload overrides (kg); else the machine registry / birth message",
    )
    # --- cycle detection ------------------------------------------------------------------------
    empty_fraction: float = Field(
        0.15, gt=0, lt=1, description="smoothed payload below this fraction of rated = empty body (hysteresis low)"
    )
    loaded_fraction: float = Field(
        0.50, gt=0, lt=2, description="smoothed payload above this fraction of rated = loaded (hysteresis high)"
    )
    dumped_fraction: float = Field(
        0.05, gt=0, lt=1, description="raw payload below this fraction marks the end of a dump (dumped_at)"
    )
    step_fraction: float = Field(
        0.07, gt=0, lt=1, description="smallest payload rise that counts as one loader pass (fraction of rated)"
    )
    smooth_s: float = Field(5.0, gt=0, le=60, description="trailing rolling-median window for payload and speed (s)")
    moving_kmh: float = Field(3.0, gt=0, description="smoothed speed at or above this = the hauler is moving")
    min_drive_off_s: float = Field(
        8.0, gt=0, description="the hauler must keep moving this long for loading to count as finished (s)"
    )
    settle_after_s: float = Field(
        30.0, ge=0, description="after drive-off, samples this long still count toward the settled payload (s): "
        "on-board weighing reads the payload on the move, once the offset a standing truck's suspension holds "
        "(strut friction) has been released; the overload alert uses the first min_drive_off_s of them"
    )
    settle_max_kmh: float = Field(
        15.0, gt=0, description="only samples at or below this speed count toward the settled payload (faster, "
        "haul-road bounce swamps the weighing)"
    )
    standing_drift_fraction: float = Field(
        0.015, gt=0, lt=1, description="standing readings after the last pass further than this fraction of rated "
        "from the low-speed readings just after drive-off have drifted (a load cell creeps a few per cent while the "
        "truck stands: strut friction, temperature): only the rolling ones count, as on-board weighing systems "
        "read the payload on the move; closer, both count"
    )
    settle_before_s: float = Field(
        30.0, gt=0, description="at most this long before drive-off counts toward the settled payload (s)"
    )
    max_spot_s: float = Field(
        120.0, gt=0, description="load_start is at most this long before the first payload rise (s)"
    )
    dump_search_s: float = Field(
        180.0, gt=0, description="dump_start is searched at most this long before dumped_at (s)"
    )
    min_empty_s: float = Field(
        15.0, gt=0, description="an empty reading must last this long to end a cycle (shorter dips are merged)"
    )
    min_loaded_s: float = Field(
        60.0, gt=0, description="a loaded spell shorter than this (rise to dump) is not a haul cycle (s)"
    )
    cycle_gap_s: float = Field(
        600.0, gt=0, description="a hauler unseen this long may have finished a load, a haul or a dump unobserved "
        "(a shift's end, a dead modem, a history backlog): a cycle open across such a gap is dropped, never "
        "stitched from the pieces on either side (s)"
    )
    max_return_s: float = Field(
        3600.0, gt=0, description="a return (previous dump to this load start) longer than this is not counted (s)"
    )
    tare_min_fraction: float = Field(
        0.03, ge=0, lt=1, description="the empty body's median reading before the first pass, above this fraction "
        "of rated, is a zero offset taken off the load (on-board weighing is accurate to 1-3 % of rated)"
    )
    payload_sentinels: list[float] = Field(
        default_factory=lambda: [-99.0], description="payload values a weighing system sends for 'no reading' "
        "(read as absent, as is any reading below minus tare_min_fraction of rated: a load cell does not weigh "
        "tonnes below zero)"
    )
    # --- cycles from the track, for a hauler whose payload cannot show them (track.py) ------------------
    track_cycles: bool = Field(
        True, description="find a haul cycle from the track (a stop at a load zone, then at a tipping zone) "
        "where the payload readings over it are absent, stuck or implausible; its tonnes are unknown"
    )
    load_stop_min_s: float = Field(
        60.0, gt=0, description="a stop at a load zone this long can be a load (docs/DOMAIN.md: 3-6 passes of 25-40 s)"
    )
    dump_stop_min_s: float = Field(
        10.0, gt=0, description="a stop at a tipping zone this long can be a dump (payload falls in tens of seconds)"
    )
    dump_leave_s: float = Field(
        60.0, gt=0, description="stops at tipping zones less than this apart are one dump (a queue, then the tip)"
    )
    stop_position_s: float = Field(
        30.0, gt=0, description="where a hauler stopped: the median position over the stop's first seconds (s)"
    )
    zone_margin_m: float = Field(
        10.0, ge=0, le=200, description="a stop this close outside a zone counts as in it (GNSS error, spots at "
        "the zone's edge)"
    )
    loader_radius_m: float = Field(
        40.0, ge=0, le=200, description="a stop this close to a loading unit's mean fix (loader, excavator) counts "
        "as at a load area, for load areas not drawn in the site file (0: zones only): a wheel loader shuttles "
        "10-20 m between face and truck, and both antennas sit a machine length from the bucket"
    )
    payload_fault_share: float = Field(
        0.25, gt=0, le=1, description="a leg of the track the payload machine found no cycle in is a cycle when its "
        "payload was missing or out of range in at least this share of its samples (below 1 so the leg in which a "
        "fault begins or ends counts too), or stuck: not one change across the leg, its load or its dump (a "
        "quantised load cell repeats neighbouring values: that alone is no fault)"
    )
    payload_max_fraction: float = Field(
        2.5, gt=1, description="a payload reading above this fraction of rated is out of physical range"
    )
    max_sample_gap_s: float = Field(
        600.0, gt=0, description="counter deltas across a larger gap between samples count as operating time"
        " only up to the elapsed time"
    )

    @model_validator(mode="after")
    def _ordered(self) -> WeightLoadingSettings:
        if not self.under_fraction < self.over_110_fraction < self.over_120_fraction:
            raise ValueError("band limits must satisfy under_fraction < over_110_fraction < over_120_fraction")
        if not self.dumped_fraction <= self.empty_fraction < self.loaded_fraction:
            raise ValueError("thresholds must satisfy dumped_fraction <= empty_fraction < loaded_fraction")
        return self


def band_of(fraction: float, settings: WeightLoadingSettings) -> str:
    """The SitePulse payload band of a load (docs/DOMAIN.md: under < 90 % <= target <= 110 % < over_110 <= 120 %)."""
    if fraction < settings.under_fraction:
        return "under"
    if fraction <= settings.over_110_fraction:
        return "target"
    if fraction <= settings.over_120_fraction:
        return "over_110"
    return "over_120"
