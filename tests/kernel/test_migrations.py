"""Migrations: applied in order, recorded, idempotent, flavour-specific files chosen."""

from pathlib import Path

import psycopg
import pytest

from sitepulse.errors import SitePulseError
from sitepulse.migrations import MigrationSource, database_flavor, read_migrations, upgrade


def _write(folder: Path, files: dict[str, str]) -> MigrationSource:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return MigrationSource("demo", folder)


def test_installed_owners_are_applied_and_recorded(db: psycopg.Connection) -> None:
    owners = {row[0] for row in db.execute("SELECT owner FROM sitepulse_migrations")}
    assert "ingest" in owners
    assert db.execute("SELECT to_regclass('machines')").fetchone()[0] == "machines"


def test_upgrade_applies_in_order_once(fresh_database_url: str, tmp_path: Path) -> None:
    source = _write(
        tmp_path / "m",
        {
            "0002_add_column.sql": "ALTER TABLE demo_things ADD COLUMN size int;",
            "0001_create.sql": "CREATE TABLE demo_things (id int PRIMARY KEY);",
        },
    )
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        assert upgrade(conn, [source]) == ["demo/0001_create", "demo/0002_add_column"]
        assert upgrade(conn, [source]) == []
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'demo_things'"
                " ORDER BY ordinal_position"
            )
        ]
        assert columns == ["id", "size"]


def test_flavour_file_matches_the_database(tmp_path: Path, db: psycopg.Connection) -> None:
    source = _write(
        tmp_path / "f",
        {
            "0001_t.postgres.sql": "CREATE TABLE IF NOT EXISTS plain_pg (id int);",
            "0001_t.timescaledb.sql": "SELECT create_hypertable('x', 'ts');",
        },
    )
    flavor = database_flavor(db)
    chosen = read_migrations(source, flavor)
    assert len(chosen) == 1 and chosen[0].sql.startswith("CREATE" if flavor == "postgres" else "SELECT")


def test_failed_migration_rolls_back_and_is_not_recorded(fresh_database_url: str, tmp_path: Path) -> None:
    source = _write(
        tmp_path / "bad",
        {
            "0001_half.sql": "CREATE TABLE half_done (id int); SELECT no_such_function();",
        },
    )
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            upgrade(conn, [source])
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        assert (
            conn.execute("SELECT count(*) FROM sitepulse_migrations WHERE owner = 'demo'").fetchone()[0] == 0
        )


def test_badly_named_file_is_a_clear_error(tmp_path: Path) -> None:
    source = _write(tmp_path / "n", {"create.sql": "SELECT 1;"})
    with pytest.raises(SitePulseError, match="0001_create_things.sql"):
        read_migrations(source, "postgres")
