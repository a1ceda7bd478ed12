"""The compiled trailing payload median gives the service's results exactly as the whole-array one did.

Issue #30's throughput bar: weight loading's trailing median became a compiled sliding window (the largest share of
a small batch's cost). This runs the service on a fault-laden stream (network faults, a standalone receiver, payload
stuck, offset and absent, reported speed stuck and absent) with each of the two and compares every table it writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from evaluation.pipeline import run_in_chunks
from evaluation.weight_loading import DEFAULT_FAULTS, simulated
from microservices.weight_loading import WeightLoading, detect
from simulators.faults import parse_faults
from tests.microservices.weight_loading.test_detect import _whole_array_trailing_median

SENSOR_FAULTS = ("payload=stuck:HX-03,payload=offset+2.5:HX-04,payload=absent:HX-05@300-900,speed=stuck:HX-06,"
                 "speed=absent:HX-07@200-1200")


@pytest.fixture(scope="module")
def stream() -> tuple[pd.DataFrame, Any, pd.DataFrame]:
    """Telemetry, site (the demo quarry) and machine registry of 24 simulated minutes."""
    telemetry, _, site, machines = simulated(7, 0.4, faults=parse_faults(f"{DEFAULT_FAULTS},{SENSOR_FAULTS}"),
                                             sensors="standalone")
    return telemetry, site, machines


@pytest.mark.parametrize("chunk", ["10s", "10min"])
def test_compiled_trailing_median_gives_the_same_cycles_and_activity(stream, monkeypatch, chunk: str) -> None:
    telemetry, site, machines = stream
    compiled = run_in_chunks(WeightLoading(), telemetry, site=site, chunk=chunk, machines=machines)
    monkeypatch.setattr(detect, "trailing_median", _whole_array_trailing_median)
    reference = run_in_chunks(WeightLoading(), telemetry, site=site, chunk=chunk, machines=machines)
    assert set(compiled) == set(reference) and len(reference["cycles"]) >= 10
    assert reference["cycles"]["payload_kg"].isna().any() and reference["cycles"]["payload_kg"].notna().any()
    for table in reference:
        pd.testing.assert_frame_equal(compiled[table], reference[table], check_exact=True)
    assert np.isfinite(compiled["activity"]["engine_hours"]).all()
