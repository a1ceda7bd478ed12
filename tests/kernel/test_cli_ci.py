"""What keeps CI reproducible and bounded: derandomized property tests, a time limit on every test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[2]


def test_property_tests_draw_the_same_examples_on_every_run() -> None:
    assert settings.default.derandomize is True
    assert settings.default.database is None


def test_every_test_has_a_time_limit(request: pytest.FixtureRequest) -> None:
    assert float(request.config.getini("timeout")) > 0
    assert request.node.get_closest_marker("timeout") is None  # this one runs under the default


def test_make_test_runs_the_fast_tests_then_the_slow_ones_and_ci_fails_on_any_failure() -> None:
    recipe = re.search(r"^test:.*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    steps = [line.strip() for line in recipe.splitlines() if line.strip().startswith("$(BIN)/pytest")]
    assert steps == ['$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)',
                     "$(BIN)/pytest -m slow -n 2 --dist loadfile $(PYTEST_ARGS)"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().endswith("make test") and "exit 0" not in ci
