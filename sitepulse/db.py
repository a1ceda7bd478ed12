"""Database access for every process: connections and pools with one-line errors."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from sitepulse.errors import ConfigError

SETTING = "SITEPULSE_DATABASE_URL"


def describe(url: str) -> str:
    """host:port/dbname of a URL, without credentials, for messages."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


def connect(url: str, *, autocommit: bool = False, timeout: float = 5) -> psycopg.Connection:
    """Open one connection or raise a ConfigError naming the setting and the reason."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, int(timeout)))
    except psycopg.OperationalError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        reason = lines[0].removeprefix("connection failed: ") if lines else "connection failed"
        raise ConfigError(SETTING, f"cannot connect to {describe(url)}: {reason}") from None
    except psycopg.ProgrammingError as exc:
        raise ConfigError(SETTING, f"not a usable connection string: {exc}") from None


def make_pool(url: str, *, min_size: int = 1, max_size: int = 8, name: str = "sitepulse") -> ConnectionPool:
    """One pool per process; checks the server is reachable before returning."""
    connect(url).close()
    pool = ConnectionPool(url, min_size=min_size, max_size=max_size, name=name, open=False)
    pool.open(wait=True, timeout=10)
    return pool


def has_timescaledb(conn: psycopg.Connection) -> bool:
    """True when the timescaledb extension is installed in this database."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None
