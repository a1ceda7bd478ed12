"""A scaffolded plugin passes its own test, is discovered once installed, runs, and serves its route."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from microservices.scaffold import new_service
from sitepulse.errors import SitePulseError

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p for p in (ROOT / "microservices").iterdir() if (p / "__init__.py").exists())

END_TO_END = """
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
from fastapi.testclient import TestClient

from microservices.discovery import discover_services
from microservices.runner import ServiceHost
from evaluation.stored import catch_up_fully, insert_telemetry
from registry.api.app import create_app
from sitepulse.migrations import upgrade
from sitepulse.settings import load_settings

url, token = {url!r}, "scaffold-admin-token-0123456789"
services = discover_services()
service = services["idle-time"]
start = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
with psycopg.connect(url, autocommit=True) as conn:
    upgrade(conn)
    conn.execute("INSERT INTO sites (site_id, config) VALUES ('pit', '{{}}')")
    conn.execute("INSERT INTO service_enablement (site_id, service, enabled) VALUES ('pit', 'idle-time', true)")
    insert_telemetry(conn, pd.DataFrame({{
        "site_id": "pit", "machine_id": "H1", "seq": range(12),
        "ts": [start + timedelta(seconds=10 * i) for i in range(12)],
        "speed_kmh": [0.0, 0, 5, 5, 5, 0, 0, 0, 9, 9, 0, 0]}}))
    rows = catch_up_fully(conn, ServiceHost(service), ["pit"])
app = create_app(url, {mqtt!r}, services=services, settings=load_settings(admin_token=token))
with TestClient(app) as client:
    page = client.get("/api/v1/sites/pit/idle-time/activity", headers={{"Authorization": "Bearer " + token}})
print(json.dumps({{"names": sorted(services), "rows": rows, "status": page.status_code, "body": page.json()}},
                 default=str))
"""


def _shape(folder: Path) -> set[str]:
    """A folder's files and subfolders (``migrations/``), without Python's caches."""
    return {p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if p.name != "__pycache__"}


def test_scaffold_writes_the_shape_every_built_in_service_folder_has(tmp_path: Path) -> None:
    plugin = new_service("idle-time", tmp_path)
    scaffolded = _shape(plugin / "sitepulse_idle_time")
    assert scaffolded == {"README.md", "__init__.py", "service.py", "detect.py", "settings.py", "routes.py",
                          "sample.yaml", "migrations/"}
    assert [p.name for p in SERVICES] == ["data_quality", "positioning", "traffic_awareness", "weight_loading"]
    for folder in SERVICES:
        shape = _shape(folder)
        assert scaffolded <= shape, f"{folder.name} lacks {sorted(scaffolded - shape)}"
        # beyond the common files only the service's own modules (positioning/cli.py, logic split out of detect.py)
        assert all(name.endswith(".py") for name in shape - scaffolded), folder.name
        assert sorted((folder / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql")), folder.name
        assert sorted((ROOT / "tests" / "microservices" / folder.name).glob("test_*.py")), folder.name
    assert sorted((plugin / "sitepulse_idle_time" / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))
    assert sorted(p.name for p in (plugin / "tests").iterdir()) == ["test_service.py"]


def test_the_generated_test_catches_a_process_that_is_not_incremental(tmp_path: Path) -> None:
    """A service that drops each batch's first sample agrees with itself on one batch, not on two: the generated
    test must say so, naming the incremental check (and pass on the service as generated: see the e2e test)."""
    package = new_service("idle-time", tmp_path)
    service = package / "sitepulse_idle_time" / "service.py"
    service.write_text(service.read_text().replace("activity(batch.telemetry, settings)",
                                                   "activity(batch.telemetry.iloc[1:], settings)"))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
                          "-k", "incremental"], cwd=package, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "1 failed" in run.stdout, run.stdout + run.stderr
    assert "test_process_is_incremental_two_batches_give_what_one_gives" in run.stdout


def test_scaffold_refuses_bad_names_and_existing_folders(tmp_path: Path) -> None:
    with pytest.raises(SitePulseError, match="lower-case words"):
        new_service("Idle_Time", tmp_path)
    new_service("idle-time", tmp_path)
    with pytest.raises(SitePulseError, match="already exists"):
        new_service("idle-time", tmp_path)


@pytest.mark.slow
def test_scaffolded_plugin_is_discovered_runs_and_serves_its_route(
    tmp_path: Path, fresh_database_url: str, mqtt_broker
) -> None:
    package = new_service("idle-time", tmp_path, summary="Idle minutes per machine", author="Acme Quarries")
    own_test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                              cwd=package, capture_output=True, text=True, timeout=120)
    assert own_test.returncode == 0, own_test.stdout + own_test.stderr

    site_packages = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site_packages), str(package)],
        capture_output=True, text=True, timeout=180)
    assert install.returncode == 0, install.stderr

    script = tmp_path / "e2e.py"
    script.write_text(textwrap.dedent(END_TO_END.format(url=fresh_database_url, mqtt=mqtt_broker.url)))
    env = {**os.environ, "PYTHONPATH": str(site_packages)}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "idle-time" in report["names"]
    assert report["rows"] == 12
    assert report["status"] == 200
    items = report["body"]["items"]
    assert [(i["samples"], i["moving_samples"]) for i in items] == [(6, 3), (6, 2)]

    listed = subprocess.run([sys.executable, "-m", "sitepulse", "services", "list"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert "idle-time" in listed.stdout
