"""docker-compose.yml runs two service runners that share the work (no partition or id to set per runner)."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def test_compose_runs_two_identical_runners() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    runners = {name: s for name, s in services.items() if s.get("command") == ["run-services"]}
    assert len(runners) == 2, sorted(runners)
    first, second = runners.values()
    assert first["environment"] == second["environment"]  # nothing per runner: the leases split the pairs
