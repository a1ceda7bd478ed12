"""No secret reaches a log: database and broker passwords, the admin token, issued and rejected tokens.

``sitepulse api``, ``python -m ingest``, ``sitepulse run-services`` and ``sitepulse config`` run as
subprocesses at DEBUG level with passwords in both URLs; the API serves good and failing requests
(bad token, unknown site, validation error, a token issued and used); then everything the processes
printed is searched for each secret.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from sitepulse.embedded.ports import free_port, wait_for_port

DB_PASSWORD = "db-Pa55word-4-log-check"
MQTT_PASSWORD = "mqtt-Pa55word-4-log-check"
ADMIN = "sp_admin-token-4-log-check-0123456789"
WRONG = "sp_wrong-token-4-log-check-9876543210"


def _env(database_url: str, mqtt_url: str, workdir: Path, port: int) -> dict[str, str]:
    parts = urlsplit(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS sp_logcheck")
        conn.execute(f"CREATE ROLE sp_logcheck LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}'")
    db = urlunsplit((parts.scheme, f"sp_logcheck:{DB_PASSWORD}@{parts.hostname}:{parts.port}", parts.path, "", ""))
    broker = urlsplit(mqtt_url)
    mqtt = f"mqtt://ingest:{MQTT_PASSWORD}@{broker.hostname}:{broker.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITEPULSE_")}
    (workdir / "none.toml").write_text("")
    env.update({"SITEPULSE_DATABASE_URL": db, "SITEPULSE_MQTT_URL": mqtt, "SITEPULSE_ADMIN_TOKEN": ADMIN,
                "SITEPULSE_LOG_LEVEL": "DEBUG", "SITEPULSE_API_PORT": str(port),
                "SITEPULSE_DATA_DIR": str(workdir / "data"), "SITEPULSE_CONFIG_FILE": str(workdir / "none.toml"),
                "SITEPULSE_LOAD_SERVICES": "positioning,weight-loading"})
    return env


def _run_for(args: list[str], env: dict[str, str], seconds: float, log: Path) -> None:
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            time.sleep(seconds)
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _exercise_api(port: int) -> list[str]:
    base = f"http://127.0.0.1:{port}"
    admin = {"Authorization": f"Bearer {ADMIN}"}
    issued: list[str] = []
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/v1/sites", headers=admin).status_code == 200
        assert client.get("/api/v1/sites", headers={"Authorization": f"Bearer {WRONG}"}).status_code == 401
        assert client.get("/api/v1/sites/nowhere/view", headers=admin).status_code == 404
        assert client.get("/api/v1/sites?limit=banana", headers=admin).status_code == 422
        put = client.put("/api/v1/sites/logcheck", content="name: L\nzones: []\nmachines: []\n",
                         headers={**admin, "Content-Type": "application/yaml"})
        assert put.status_code in (200, 201), put.text
        token = client.post("/api/v1/tokens", headers=admin, json={"name": "log check", "sites": ["logcheck"]})
        assert token.status_code == 201, token.text
        issued.append(token.json()["token"])
        mine = {"Authorization": f"Bearer {issued[0]}"}
        assert client.get("/api/v1/sites/logcheck", headers=mine).status_code == 200
        assert client.put("/api/v1/sites/logcheck", content="name: x\n", headers={
            **mine, "Content-Type": "application/yaml"}).status_code == 403
        ticket = client.post("/api/v1/sites/logcheck/stream/ticket", headers=mine)
        if ticket.status_code == 200:
            issued.append(ticket.json()["ticket"])
            with client.stream("GET", f"/api/v1/sites/logcheck/stream?ticket={ticket.json()['ticket']}&max_s=1"):
                pass
    return issued


def test_no_secret_in_any_log_or_output(database_url: str, mqtt_broker: Any) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sitepulse-logcheck-"))
    port = free_port("127.0.0.1")
    env = _env(database_url, mqtt_broker.url, workdir, port)
    log = workdir / "all.log"
    with log.open("ab") as out:
        api = subprocess.Popen([sys.executable, "-m", "sitepulse", "api"], env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    try:
        assert wait_for_port("127.0.0.1", port, timeout=30), log.read_text()
        issued = _exercise_api(port)
    finally:
        api.terminate()
        api.wait(20)
    _run_for(["-m", "ingest"], env, 4, log)
    _run_for(["-m", "sitepulse", "run-services"], env, 4, log)
    config = subprocess.run([sys.executable, "-m", "sitepulse", "config"], env=env, capture_output=True, text=True,
                            timeout=60)
    output = log.read_text(errors="replace") + config.stdout + config.stderr
    shutil.rmtree(workdir, ignore_errors=True)
    assert "GET" in output or "API on" in output, "the API should have logged something"
    assert "sp_logcheck" in config.stdout, "config shows the user, so masking is what hides the password"
    for secret in (DB_PASSWORD, MQTT_PASSWORD, ADMIN, WRONG, *issued, ADMIN[3:], WRONG[3:]):
        assert secret not in output, f"a secret ({secret[:6]}...) appears in the logs"
