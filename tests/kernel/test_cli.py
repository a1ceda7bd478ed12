"""The CLI: settings printed masked, user errors as one line with exit 2, serve starts and stops."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from sitepulse.embedded.ports import free_port


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """A work folder outside pytest's temp tree: the embedded PostgreSQL runs as another user,
    and pytest resets its tree to owner-only whenever another pytest session starts."""
    folder = Path(tempfile.mkdtemp(prefix="sitepulse-cli-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITEPULSE_")}
    env.update(SITEPULSE_DATA_DIR=str(tmp_path / "data"), SITEPULSE_CONFIG_FILE=str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    env.update(extra)
    return env


def _run(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sitepulse", *args],
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_masks_secrets(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        "config",
        SITEPULSE_DATABASE_URL="postgresql://u:topsecret@db/x",
        SITEPULSE_ADMIN_TOKEN="admin-token-value",
    )
    assert result.returncode == 0
    assert "postgresql://u:****@db/x" in result.stdout
    assert "topsecret" not in result.stdout and "admin-token-value" not in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["db", "upgrade"],
            {"SITEPULSE_DATABASE_URL": "postgresql://u@127.0.0.1:1/x"},
            "SITEPULSE_DATABASE_URL: cannot connect to 127.0.0.1:1/x",
        ),
        (["config"], {"SITEPULSE_MQTT_URL": "redis://x"}, "SITEPULSE_MQTT_URL: scheme must be mqtt://"),
        (["serve"], {"SITEPULSE_DATABASE_URL": "not a url at all"}, "SITEPULSE_DATABASE_URL"),
    ],
)
def test_bad_configuration_is_one_line(tmp_path: Path, args: list[str], env: dict, expected: str) -> None:
    result = _run(tmp_path, *args, **env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_port_in_use_names_the_setting(tmp_path: Path, mqtt_broker) -> None:
    result = _run(tmp_path, "serve", SITEPULSE_API_PORT=str(mqtt_broker.port))
    assert result.returncode == 2
    assert f"SITEPULSE_API_PORT: port {mqtt_broker.port} on 127.0.0.1 is already in use" in result.stderr


def test_unreachable_broker_names_the_setting(tmp_path: Path, database_url: str) -> None:
    result = _run(
        tmp_path,
        "serve",
        SITEPULSE_DATABASE_URL=database_url,
        SITEPULSE_MQTT_URL=f"mqtt://127.0.0.1:{free_port()}",
        SITEPULSE_API_PORT=str(free_port()),
    )
    assert result.returncode == 2
    assert "SITEPULSE_MQTT_URL: cannot reach broker" in result.stderr


def _serve_until_ready(tmp_path: Path, **env: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sitepulse", "serve"],
        env=_env(tmp_path, SITEPULSE_API_PORT=str(port), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process, port
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.2)
    process.kill()
    pytest.fail("serve did not become ready in 60 s: " + process.communicate()[0])


def _stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


@pytest.mark.slow
def test_serve_with_no_environment_starts_embedded_servers(tmp_path: Path) -> None:
    process, port = _serve_until_ready(tmp_path)
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    output = _stop(process)
    assert "started PostgreSQL (embedded)" in output
    assert "started Mosquitto (embedded)" in output
    assert "storage plain PostgreSQL" in output and "run TimescaleDB in production" in output
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in processes  # neither server left running
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()


@pytest.mark.slow
def test_serve_with_urls_starts_neither(tmp_path: Path, database_url: str, mqtt_broker) -> None:
    process, _ = _serve_until_ready(
        tmp_path, SITEPULSE_DATABASE_URL=database_url, SITEPULSE_MQTT_URL=mqtt_broker.url
    )
    output = _stop(process)
    assert "(embedded)" not in output
    assert not (tmp_path / "data" / "postgres").exists()
    assert not (tmp_path / "data" / "mosquitto").exists()


@pytest.mark.slow
def test_serve_against_timescaledb_uses_hypertables_and_policies(
    tmp_path: Path, timescaledb_postgres, mqtt_broker
) -> None:
    url = timescaledb_postgres.fresh_database("serve_timescaledb")  # empty: serve migrates it
    process, _ = _serve_until_ready(tmp_path, SITEPULSE_DATABASE_URL=url, SITEPULSE_MQTT_URL=mqtt_broker.url)
    output = _stop(process)
    assert "storage TimescaleDB 2." in output and "telemetry hypertable" in output
    assert "compress after 7 days" in output and "drop after 400 days" in output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM timescaledb_information.hypertables"
                            " WHERE hypertable_name = 'telemetry'").fetchone()[0] == 1
        jobs = {name for (name,) in conn.execute("SELECT proc_name FROM timescaledb_information.jobs")}
        assert {"policy_compression", "policy_retention", "policy_refresh_continuous_aggregate"} <= jobs


def test_commands_come_from_entry_points_and_a_broken_one_costs_only_itself() -> None:
    """The kernel mounts what packages contribute (commands, group members, whole groups) and imports none."""
    from importlib.metadata import EntryPoint

    import typer
    from typer.testing import CliRunner

    from sitepulse.cli import build_app

    entries = [EntryPoint("config", "sitepulse.cli:config", "sitepulse.cli"),
               EntryPoint("services.list", "registry.cli:services_list", "sitepulse.cli"),
               EntryPoint("decoders", "decoders.cli:decoders_app", "sitepulse.cli"),
               EntryPoint("broken.thing", "no_such_package.cli:thing", "sitepulse.cli")]
    app = build_app(entries)
    runner = CliRunner()
    root = runner.invoke(app, ["--help"])
    assert root.exit_code == 0 and "config" in root.output and "decoders" in root.output
    assert "command 'broken.thing' from no_such_package.cli:thing is unavailable" in root.output
    assert "│ broken" not in root.output
    services = runner.invoke(app, ["services", "--help"])
    assert "Micro-services: list installed" in services.output and "list" in services.output
    assert isinstance(app, typer.Typer)


def test_the_kernel_cli_imports_no_package_of_ours() -> None:
    """Importing sitepulse.cli (which builds the command) loads packages only through entry points."""
    code = ("import sys, importlib.metadata as m; m.entry_points = lambda **kw: []; import sitepulse.cli;"
            "print(sorted({n.split('.')[0] for n in sys.modules} & {'ingest', 'microservices', 'registry',"
            " 'simulators', 'decoders', 'stack'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
