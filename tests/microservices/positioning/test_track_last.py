"""positioning.track_last, the live map's last-value table: always the newest track point of each machine,
through COPY and INSERT, out-of-order points, the runner's delete-and-replay, updates and truncation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from microservices.positioning import Positioning
from microservices.runner import delete_outputs_after

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
COLUMNS = ("site_id", "run_seq", "machine_id", "ts", "lat", "lon", "speed_kmh", "state", "zone", "jump", "carried")


def _row(site: str, run: int, machine: str, seconds: int, state: str = "moving", zone: str | None = None) -> tuple:
    return (site, run, machine, T0 + timedelta(seconds=seconds), 59.3 + seconds * 1e-6, 18.1, 20.0, state, zone,
            False, False)


def _copy(conn: psycopg.Connection, rows: list[tuple]) -> None:
    with conn.cursor().copy(f"COPY positioning.track ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _last(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT site_id, machine_id, ts, lat, state, zone FROM positioning.track_last"
                        " ORDER BY 1, 2").fetchall()


def _truth(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT DISTINCT ON (site_id, machine_id) site_id, machine_id, ts, lat, state, zone"
                        " FROM positioning.track ORDER BY site_id, machine_id, ts DESC").fetchall()


def test_track_last_is_the_newest_point_per_machine(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        _copy(conn, [_row("s1", 1, "A", s) for s in (0, 5, 10)] + [_row("s1", 1, "B", 0), _row("s2", 1, "A", 3)])
        assert _last(conn) == _truth(conn) and len(_last(conn)) == 3
        assert _last(conn)[0][2] == T0 + timedelta(seconds=10)

        conn.execute(f"INSERT INTO positioning.track ({', '.join(COLUMNS)}) VALUES"
                     f" ({', '.join(['%s'] * len(COLUMNS))})", _row("s1", 2, "A", 7))  # late, older point
        assert _last(conn)[0][2] == T0 + timedelta(seconds=10)

        _copy(conn, [_row("s1", 3, "A", 15, "idle", "load-a"), _row("s1", 3, "B", 20, "idle", "crusher")])
        assert [(r[1], r[4], r[5]) for r in _last(conn)[:2]] == [("A", "idle", "load-a"), ("B", "idle", "crusher")]

        # the runner's replay: delete what steps after 1 wrote, then write the new results
        delete_outputs_after(conn, Positioning(), "s1", 1)
        assert _last(conn) == _truth(conn) and _last(conn)[0][2] == T0 + timedelta(seconds=10)
        _copy(conn, [_row("s1", 2, "A", 12, "off")])
        assert _last(conn) == _truth(conn) and _last(conn)[0][4] == "off"

        conn.execute("UPDATE positioning.track SET zone = 'parking' WHERE site_id = 's1' AND machine_id = 'A'"
                     " AND ts = %s", (T0 + timedelta(seconds=12),))
        assert _last(conn) == _truth(conn) and _last(conn)[0][5] == "parking"

        conn.execute("DELETE FROM positioning.track WHERE site_id = 's1' AND machine_id = 'B'")
        assert _last(conn) == _truth(conn) and [r[:2] for r in _last(conn)] == [("s1", "A"), ("s2", "A")]

        conn.execute("DELETE FROM positioning.track WHERE ts < %s", (T0 + timedelta(seconds=5),))  # old points
        assert _last(conn) == _truth(conn) == [_truth(conn)[0]]

        conn.execute("TRUNCATE positioning.track")
        assert _last(conn) == []
