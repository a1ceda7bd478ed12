"""The soak in its CI-short form: 1,000 machines at 1 Hz for 45 s with an ingest worker and the runner killed,
all three built-in services enabled.

``benchmarks/soak.py --minutes 10`` is the long run by hand; figures of both are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_soak_short_loses_nothing_and_memory_stays_flat() -> None:
    out = ROOT / "artifacts" / "soak-ci.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--minutes", "0.75",
                             "--fault-every", "10", "--json", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.exists(), result.stdout[-2000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["published"] >= 30_000, figures
    assert figures["lost"] == 0, figures
    assert set(figures["services"]) == {"positioning", "weight-loading", "traffic-awareness"}
    assert figures["services_failing"] == {}, figures["services_failing"]  # each service kept working
    assert figures["services_caught_up"], figures["lag_s"]
    assert len(figures["faults"]) >= 2, figures
    assert figures["growth_flagged"] == [], figures["memory"]  # judged in runs of 5 minutes or more
    assert all(m["rss_max_mb"] < 1024 for m in figures["memory"].values()), figures["memory"]
    assert result.returncode == 0, result.stderr[-3000:]
