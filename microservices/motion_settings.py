"""How much a machine's reported motion may differ from its track before the track wins, in physical units.

Its own module so the compiled walk (``ground_speed.py``) and the fusion (``motion.py``) both read it without
importing each other; ``microservices.motion`` re-exports it for services and plugins.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MotionSettings(BaseModel):
    """How much the reported motion may differ from the track before the track wins (physical units)."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # read-only: every stage sees what the host validated

    track_window_s: float = Field(
        5.0, gt=0, le=60, description="the typical step speed is the median over this many seconds before each "
                                      "sample (a GNSS jump spoils only the two steps into and out of it, outvoted "
                                      "by the rest)")
    step_tolerance_kmh: float = Field(
        8.0, gt=0, le=200, description="a step whose speed differs from the typical one by more than this ...")
    step_tolerance_share: float = Field(
        0.5, ge=0, le=10, description="... plus this share of the typical speed is a jump's edge and not used")
    predict_window_s: float = Field(
        0.5, gt=0, le=60, description="course and speed over ground: median of the usable steps over this many "
                                      "seconds: short, so the course lags turns little")
    max_step_s: float = Field(
        5.0, gt=0, le=120, description="consecutive fixes further apart than this give no track step")
    min_track_kmh: float = Field(
        4.0, ge=0, le=50, description="below this track speed the course over ground is noise (plain GNSS wanders "
                                      "a few metres): the reported heading cannot be checked and is kept")
    heading_tolerance_deg: float = Field(
        15.0, gt=0, le=180, description="a reported heading further than this from the course over ground is "
                                        "not used")
    speed_tolerance_kmh: float = Field(
        4.0, ge=0, le=100, description="a reported speed may differ from the track speed by this much ...")
    speed_tolerance_share: float = Field(
        0.25, ge=0, le=5, description="... plus this share of the track speed before the track speed is used")
    trust_window_s: float = Field(
        20.0, gt=0, le=600, description="a reported heading or speed is trusted while most of its checks in this "
                                        "many seconds before the sample agreed with the track (a healthy compass "
                                        "differs from the lagging track only in turns; a dead one almost always)")
    trust_share: float = Field(
        0.9, gt=0, le=1, description="... at least this share of them (a compass off by +-30 degrees agrees "
                                     "with the track in about 80 % of checks: too noisy to predict with)")
    trust_min_checks: int = Field(
        3, ge=1, le=600, description="with fewer checks in the window (standing, slow, just started) the "
                                     "reported value is used only where it agrees right now")
    speed_trust_share: float = Field(
        0.5, gt=0, le=1, description="a reported speed is trusted while at least this share of its checks in the "
                                     "trust window agreed (a standing machine's plain-GNSS track wanders a few "
                                     "km/h; a stuck or dead speed signal disagrees with a moving track nearly always)")
    max_speed_kmh: float = Field(
        120.0, gt=0, le=400, description="track steps faster than this are GNSS spikes, not motion")
    baseline_s: float = Field(
        20.0, ge=2, le=120, description="positions confirm motion only over this baseline: the displacement over "
                                        "it is checked against the distance the reported speed covered, and "
                                        "against the receiver's noise (metres of jitter cancel over 20 s, not 1 s)")
    smooth_s: float = Field(
        13.0, ge=1, le=30, description="each end of the baseline is the median of the per-second mean fixes over "
                                      "this many seconds (a GNSS jump shorter than half of it is outvoted)")
    min_baseline_s: float = Field(
        5.0, ge=1, le=60, description="where the history is shorter than the baseline (a new machine, after a gap) "
                                      "the check uses what there is once it spans this much, with the wider "
                                      "tolerance of the shorter baseline")
    noise_sigmas: float = Field(
        3.5, gt=0, le=20, description="a displacement over the baseline within this many noise standard "
                                      "deviations (per axis, times sqrt 2) is jitter: the machine stands")
    standing_kmh: float = Field(
        0.5, ge=0, le=10, description="a trusted reported speed at or below this is standing")
    precise_noise_m: float = Field(
        0.4, ge=0, le=5, description="with position noise under this (per axis) 1-s steps resolve speed within "
                                     "the speed tolerance, so an untrusted speed is replaced by the short-window "
                                     "track; noisier receivers by the speed over the baseline")
