"""A load cell off zero (reads 2.5 t when empty): the empty level is taken off each load."""

from __future__ import annotations

from evaluation import weight_loading as score
from microservices.weight_loading.settings import WeightLoadingSettings
from simulators.faults import parse_faults


def test_a_zero_offset_is_taken_off_the_loads() -> None:
    telemetry, records, site, machines = score.simulated(1, 0.75, faults=parse_faults("payload=offset+2.5:*"))
    tared = score.score_run("tared", telemetry, records, site, machines)
    raw = score.score_run("raw", telemetry, records, site, machines,
                          settings=WeightLoadingSettings(tare_min_fraction=0.99))
    assert tared.found_pct == 100 and tared.spurious_pct == 0
    assert tared.median_payload_error_pct < 1.0 < raw.median_payload_error_pct  # 2.5 t is 6-9 % of rated
    assert tared.band_agreement_pct > raw.band_agreement_pct
