"""Weight loading on the sensors real haulers have (issue #30): any GNSS receiver, real load cells, 0.5-10 Hz, and
a site the service was not developed on. Scored against the simulator's ground truth with network faults on.

The issue's bar, at 2.5 m of white GNSS noise per axis and 1 Hz: cycles recall and precision >= 0.98, median
payload error <= 1 % of rated, bands right >= 95 %. A standalone receiver's jitter must not make a standing truck
drive off (the field trial took every payload while the truck still stood at the loader: 30-54 % error), and a
healthy load cell (100-kg steps, repeats, drift while standing, sentinels, lag) must be read as healthy and
settled.
"""

from __future__ import annotations

import pytest

from evaluation.weight_loading import score_run, simulated
from simulators.faults import parse_faults
from simulators.sensors import SensorConfig
from tests.microservices.weight_loading.conftest import FAULTS


@pytest.mark.parametrize(
    ("receiver", "white_m", "hz", "site", "seed"),
    [("standalone", 2.5, 1.0, "demo_quarry", 31), ("standalone", 2.5, 1.0, "copper_pit", 32),
     ("standalone", 1.5, 2.0, "copper_pit", 33), ("sbas", None, 0.5, "demo_quarry", 34),
     ("rtk", None, 1.0, "copper_pit", 35), ("standalone", 2.5, 10.0, "demo_quarry", 36)],
    ids=["standalone-2.5m-1hz", "standalone-2.5m-1hz-copper", "standalone-1.5m-2hz-copper", "sbas-0.5hz",
         "rtk-1hz-copper", "standalone-2.5m-10hz"],
)
def test_cycles_and_payloads_hold_on_real_receivers_and_load_cells(receiver: str, white_m: float | None, hz: float,
                                                                   site: str, seed: int) -> None:
    sensors = SensorConfig.receiver(receiver, white_m=white_m, load_cell="real")
    hours = 0.5 if hz >= 10 else 1.0
    telemetry, records, site_config, machines = simulated(seed, hours, hz=hz, faults=parse_faults(FAULTS),
                                                          sensors=sensors, site=site)
    score = score_run(f"{receiver} {white_m or ''} {hz:g} Hz {site}", telemetry, records, site_config, machines)
    print(score.line())
    assert score.true_cycles >= 10
    assert score.found_pct >= 98.0
    assert score.paired >= 0.98 * score.detected  # precision
    assert score.median_payload_error_pct <= 1.0
    assert score.band_agreement_pct >= 95.0
    # a healthy load cell is weighed: no cycle from the track without a payload
    assert score.pairs["det_payload_kg"].notna().all()
