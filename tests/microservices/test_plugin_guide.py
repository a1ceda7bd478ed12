"""The plugin in microservices/README.md works as printed: its files, taken from the guide, pass their own tests.

Why: the guide is how a developer writes a plugin with nothing but the repository; when the SDK changes under it
(an import moves, a field is renamed), this fails and the guide is corrected with the change, not after a reader
finds out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from microservices.sample_config import sample_config
from microservices.scaffold import new_service

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "microservices" / "README.md"
# the file each code block of the guide is, named in the paragraph before it ("`sitepulse_idle_time/detect.py`:")
BLOCK = re.compile(r"`((?:sitepulse_idle_time/[\w/]+|tests/test_\w+)\.(?:py|sql))`"  # the file's name,
                   r"(?:[^\n]|\n(?!\n))*?:\n\n"  # the rest of its paragraph, ending in a colon
                   r"```\w*\n(.*?)\n```", re.DOTALL)  # the block


def _guide_files() -> dict[str, str]:
    return {name: code + "\n" for name, code in BLOCK.findall(GUIDE.read_text(encoding="utf-8"))}


def test_the_guide_prints_every_file_of_its_plugin() -> None:
    assert sorted(_guide_files()) == [
        "sitepulse_idle_time/detect.py", "sitepulse_idle_time/migrations/0001_create_idle.sql",
        "sitepulse_idle_time/routes.py", "sitepulse_idle_time/service.py", "sitepulse_idle_time/settings.py",
        "tests/test_service.py"]


def test_the_guide_s_plugin_passes_its_own_tests_and_its_routes_import(tmp_path: Path) -> None:
    package = new_service("idle-time", tmp_path, summary="Idle time and idle fuel per machine and shift",
                          author="Acme Quarries")
    for old in (package / "sitepulse_idle_time" / "migrations").glob("*.sql"):
        old.unlink()  # the guide replaces the scaffold's migration
    for name, code in _guide_files().items():
        (package / name).write_text(code, encoding="utf-8")
    # as the guide says: sitepulse services sample-config idle-time > sitepulse_idle_time/sample.yaml
    sys.path.insert(0, str(package))
    try:
        from sitepulse_idle_time.settings import Settings
        (package / "sitepulse_idle_time" / "sample.yaml").write_text(sample_config(Settings()), encoding="utf-8")
    finally:
        sys.path.remove(str(package))
        for module in [m for m in sys.modules if m.startswith("sitepulse_idle_time")]:
            del sys.modules[module]
    env = {**os.environ, "PYTHONPATH": str(package)}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=package,
                           env=env, capture_output=True, text=True, timeout=180)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "4 passed" in tests.stdout
    routes = subprocess.run([sys.executable, "-c", "from sitepulse_idle_time import IdleTimeService as S;"
                             "assert S().router() is not None"], cwd=package, env=env, capture_output=True, text=True,
                            timeout=60)
    assert routes.returncode == 0, routes.stderr[-2000:]
    # the guide's card, handed a CardContext as the site view hands it (one hauler's idle minutes, one loader's)
    card = subprocess.run([sys.executable, "-c", """
from datetime import UTC, datetime
import pandas as pd
from microservices.sdk import CardContext, MachineView, SiteView
from sitepulse_idle_time import IdleTimeService as S
rows = pd.DataFrame({"machine_id": ["H1", "L1"], "idle_s": [600.0, 120.0], "on_s": [1200.0, 1200.0],
                     "litres": [2.0, 0.5]})
context = CardContext("pit", "idle-time", lambda q, p=None: rows, SiteView(), {
    "H1": MachineView("H1", "hauler", "", None), "L1": MachineView("L1", "loader", "", None)}, datetime.now(UTC))
card = S().card(context, S.Settings())
print(card.metrics[0]["value"], card.data)
"""], cwd=package, env=env, capture_output=True, text=True, timeout=60)
    assert card.returncode == 0, card.stderr[-2000:]
    assert card.stdout.strip() == "30.0 {'idle_minutes_by_machine': {'H1 (hauler)': 10, 'L1': 2}}"
