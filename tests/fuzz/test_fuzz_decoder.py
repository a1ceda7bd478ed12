"""Runs the atheris harness of the payload decoder for a fixed number of iterations (CI-bounded).

Seeded with real payloads (simulator samples, arrays, births, statuses, malformed JSON) so the
fuzzer starts from the contract's shapes. Needs atheris from PyPI (a clang-built manylinux wheel;
3.0.0 installs on CPython 3.11 x86_64): skipped with that message when it cannot be imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
RUNS = int(os.environ.get("SITEPULSE_FUZZ_RUNS", "20000"))
SEEDS = [
    b'\x00{"ts": "2026-01-05T06:00:00Z", "seq": 1, "lat": 59.3, "lon": 18.1, "speed_kmh": 12.5, "engine_on": true}',
    b'\x00[{"ts": 1767592800, "seq": 2}, {"ts": "bad"}, {"ts": 1767592801, "lat": 91}]',
    b'\x01{"kind": "hauler", "model": "A30G", "rated_payload_kg": 28000}',
    b"\x02online",
    b'\x00{"ts": 1767592800, "payload_kg": -1, "extra": {"a": [1, 2]}}',
    b"\x00{not json",
]


def test_atheris_fuzzes_the_payload_decoder_without_a_crash() -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        pytest.skip("atheris is not installed: pip install atheris (needs a manylinux wheel for this Python)")
    corpus = Path(tempfile.mkdtemp(prefix="sitepulse-fuzz-"))
    for i, seed in enumerate(SEEDS):
        (corpus / f"seed{i}").write_bytes(seed)
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    result = subprocess.run(
        [sys.executable, str(HERE / "fuzz_decode.py"), f"-runs={RUNS}", "-max_len=2048", "-seed=1",
         f"-artifact_prefix={corpus}/", str(corpus)],
        capture_output=True, text=True, timeout=240, env=env, cwd=corpus,
    )
    shutil.rmtree(corpus, ignore_errors=True)
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
    assert result.returncode == 0, tail
    assert f"Done {RUNS} runs" in result.stderr, tail
    report = HERE.parents[1] / "artifacts" / "fuzz.json"
    report.parent.mkdir(exist_ok=True)
    cov = [line for line in result.stderr.splitlines() if line.startswith("#") and "cov:" in line]
    report.write_text(json.dumps({"runs": RUNS, "last_status": cov[-1] if cov else "", "seeds": len(SEEDS)}))
