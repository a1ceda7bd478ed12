"""ISO 15143-3 feeds: the tolerant reader on several OEM variants, and polls through a real HTTP server into
PostgreSQL with paging, credentials, time-series windows and a checkpoint that survives a restart; SitePulse's
own /aemp output read back."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient

from decoders.feeds import FeedHost, load_feeds
from decoders.iso15143.reader import FeedFormatError, merge, read_document
from ingest.contract import Decoded, Decoder
from ingest.writer import TelemetryWriter
from registry.api.app import create_app
from sitepulse.settings import load_settings
from tests.decoders.feed_server import FIXTURES, feed_server
from tests.decoders.helpers import on_grid

FEEDS = """
[[feed]]
decoder = "iso15143-3"
site = "{site}"
[feed.options]
url = "{base}/oem-a/Fleet/1"
token_env = "SP_TEST_TOKEN_A"
machine_ids = {{ "A30G-1001" = "HX-11" }}

[[feed]]
decoder = "iso15143-3"
site = "{site}"
[feed.options]
url = "{base}/oem-b/Fleet/1"
format = "xml"
username = "fleet"
password_env = "SP_TEST_PASSWORD_B"
series = ["Locations", "FaultCodes"]

[[feed]]
decoder = "iso15143-3"
site = "{site}"
[feed.options]
url = "{base}/oem-c/fleet/1"
format = "xml"

[[feed]]
decoder = "iso15143-3"
site = "{site}"
[feed.options]
url = "{base}/oem-d/Fleet/1"
machine_from = "SerialNumber"

[[feed]]
decoder = "iso15143-3"
site = "{site}"
[feed.options]
url = "{base}/oem-x/Fleet/1"

[[feed]]
decoder = "iso15143-3"
site = "{site}"
[feed.options]
name = "oem-a with a wrong token"
url = "{base}/oem-a/Fleet/1"
token_env = "SP_TEST_WRONG_TOKEN"
"""


def read(name: str) -> list:
    return read_document((FIXTURES / name).read_bytes()).equipment


def test_reader_reads_attributes_elements_cases_and_namespaces_alike() -> None:
    (cat,) = read("fleet_namespaced.xml")
    assert cat.equipment_id == "CAT745-77" and cat.pin == "CAT0745XK3T600077"
    assert merge(cat.readings) == [{"ts": "2026-12-05T09:59:00+00:00", "seq": 1 | 2 | 8 | 32 | 64, "lat": 59.3321,
                                    "lon": 18.0722, "engine_hours": 2200.75, "fuel_used_l": 45678.0,
                                    "engine_on": True, "fuel_remaining_pct": 62.0}]
    (jcb,) = read("fleet_prefixed_1.xml")
    assert merge(jcb.readings) == [{"ts": "2026-12-05T09:40:00+00:00", "seq": 1, "lat": 59.3331, "lon": 18.0732}]
    (jcb2,) = read("fleet_prefixed_2.xml")
    assert merge(jcb2.readings) == [{"ts": "2026-12-05T09:41:00+01:00", "seq": 2 | 32, "engine_hours": 512.5,
                                     "engine_on": False}]
    assert read_document((FIXTURES / "fleet_prefixed_1.xml").read_bytes()).next_url == "/oem-c/fleet/2"


def test_reader_converts_units_and_names_a_bad_element_without_losing_the_rest() -> None:
    (bell,) = read("fleet_lowercase.json")
    values = {s["seq"]: s for s in merge(bell.readings)}
    assert values[8 | 16]["fuel_used_l"] == pytest.approx(3785.411784)
    assert values[8 | 16]["odometer_km"] == pytest.approx(160.9344)
    assert values[1]["ts"] == "2026-12-05T09:30:00.250000+00:00"
    assert bell.problems == ["cumulativeoperatinghours: datetime 'yesterday' is not an ISO 8601 time"]


@pytest.mark.parametrize("body", [b"", b"hello", b"{", b"<Fleet>", b'{"Weather": {"Sun": 1}}', b"[1, 2]"])
def test_reader_refuses_what_is_not_an_aemp_document(body: bytes) -> None:
    with pytest.raises(FeedFormatError):
        read_document(body)


def _rows(url: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def test_feeds_poll_page_by_page_and_a_restart_neither_restores_nor_skips(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SP_TEST_TOKEN_A", "token-a")
    monkeypatch.setenv("SP_TEST_PASSWORD_B", "pw-b")
    monkeypatch.setenv("SP_TEST_WRONG_TOKEN", "token-b")
    count = "SELECT count(*) FROM telemetry WHERE site_id = 'oem-pit'"
    with feed_server() as server:
        path = tmp_path / "decoders.toml"
        path.write_text(FEEDS.format(site="oem-pit", base=server.base))
        settings = load_settings(database_url=database_url, decoders_file=path)
        host = FeedHost(database_url, load_feeds(settings))
        results = [host.poll(route, feed) for route, feed in host.feeds]
        assert results == [True, True, True, True, False, False]
        per_machine = dict(_rows(database_url, "SELECT machine_id, count(*) FROM telemetry"
                                               " WHERE site_id = 'oem-pit' GROUP BY 1"))
        assert per_machine == {"HX-11": 2, "L150H-2002": 1, "EC480-3003": 1, "CAT745-77": 5, "JCB-220X-9": 1,
                               "JCB-3CX-4": 1, "B45E5": 2}
        hx11 = _rows(database_url, "SELECT seq, lat, lon, engine_hours, fuel_used_l, engine_on, extra FROM telemetry"
                                   " WHERE machine_id = 'HX-11' ORDER BY ts")
        assert hx11 == [(2 | 4 | 8 | 16, None, None, 4321.5, on_grid("fuel_used_l", 98765.4), None,
                         {"idle_hours": 812.25, "odometer_km": 15432.1}),
                        (1 | 32, on_grid("lat", 59.3301), on_grid("lon", 18.0702), None, None, True, None)]
        faults = _rows(database_url, "SELECT extra FROM telemetry WHERE machine_id = 'CAT745-77' AND seq = 128")
        assert [f["codeidentifier"] for f in faults[0][0]["fault_codes"]] == ["SPN 110 FMI 0", "SPN 100 FMI 1"]
        cat_track = _rows(database_url, "SELECT ts, lat FROM telemetry WHERE machine_id = 'CAT745-77'"
                                        " AND lat IS NOT NULL ORDER BY ts")
        # series pages 1+2, snapshot once
        assert [r[1] for r in cat_track] == [on_grid("lat", v) for v in (59.32, 59.321, 59.322, 59.3321)]
        rejects = _rows(database_url, "SELECT reason, site_id FROM ingest_rejects WHERE site_id = 'oem-pit'")
        assert rejects == [("iso15143-3: B45E5: cumulativeoperatinghours: datetime 'yesterday' is not an ISO 8601"
                            " time", "oem-pit")]
        errors = dict(_rows(database_url, "SELECT feed, last_error FROM decoder_feed_checkpoints"
                                          " WHERE last_error IS NOT NULL"))
        assert errors == {"oem-a with a wrong token": f"GET {server.base}/oem-a/Fleet/1: HTTP 401",
                          f"{server.base}/oem-x/Fleet/1": f"GET {server.base}/oem-x/Fleet/1: HTTP 404"}
        stored = _rows(database_url, count)[0][0]
        first_windows = [p for p in server.requests if "/Locations/" in p]

        time.sleep(1.1)  # the next window ends a second later
        host.poll(*host.feeds[1])
        host = FeedHost(database_url, load_feeds(settings))  # a restart: only the database remembers
        assert [host.poll(route, feed) for route, feed in host.feeds[:4]] == [True] * 4
        assert _rows(database_url, count)[0][0] == stored
        assert len(_rows(database_url, "SELECT 1 FROM ingest_rejects WHERE site_id = 'oem-pit'")) == 1
        windows = [p.split("/Locations/")[1].split("/")[:2] for p in server.requests if "/Locations/" in p]
        assert len(first_windows) == 1 and len(windows) == 3
        assert windows[1][0] == windows[0][1] and windows[2][0] == windows[1][1]  # each starts where the last ended
        assert host.counters.stored_rows == 0 and host.counters.decoder_messages == {"iso15143-3": 4}

        page = orjson.loads(server.body("/oem-a/Fleet/1"))
        page["Fleet"]["Equipment"][0]["Location"] = {"datetime": "2026-12-05T10:05:00Z", "Latitude": 59.34,
                                                     "Longitude": 18.08}
        server.bodies["/oem-a/Fleet/1"] = orjson.dumps(page)
        host.poll(*host.feeds[0])
        assert _rows(database_url, count)[0][0] == stored + 1
        newest = _rows(database_url, "SELECT lat FROM machine_last WHERE machine_id = 'HX-11'")
        assert newest == [(on_grid("lat", 59.34),)]


def test_sitepulse_own_aemp_output_round_trips_through_a_feed(
    database_url: str, mqtt_broker, tmp_path: Path
) -> None:
    admin = "roundtrip-admin-token-0123456789abcdef"
    now = time.time() - 5
    writer, batch, decoder = TelemetryWriter(database_url), Decoded(), Decoder()
    writer.open()
    source = {"H1": {"ts": now, "lat": 59.31, "lon": 18.01, "engine_hours": 1234.56, "fuel_used_l": 9876.5,
                     "engine_on": True}, "D2": {"ts": now, "lat": 59.32, "lon": 18.02, "engine_on": False}}
    for machine, sample in source.items():
        decoder.decode_into(batch, f"sites/round/machines/{machine}/telemetry", json.dumps(sample).encode(),
                            datetime.now(UTC))
    writer.write(batch)
    writer.close()
    app = create_app(database_url, mqtt_broker.url, services={}, settings=load_settings(admin_token=admin))
    with TestClient(app) as client:
        answers = {fmt: client.get("/aemp/Fleet/1", headers={"Authorization": f"Bearer {admin}", "Accept": accept})
                   for fmt, accept in (("json", "application/json"), ("xml", "application/xml"))}
    for fmt, answer in answers.items():
        assert answer.status_code == 200, answer.text
        site = f"round-{fmt}"
        with feed_server() as server:
            server.bodies["/oem-a/Fleet/1"] = answer.content
            path = tmp_path / f"{fmt}.toml"
            path.write_text(f'[[feed]]\ndecoder = "iso15143-3"\nsite = "{site}"\n[feed.options]\n'
                            f'url = "{server.base}/oem-e/Fleet/1"\nformat = "{fmt}"\n')
            server.bodies["/oem-e/Fleet/1"] = answer.content
            host = FeedHost(database_url, load_feeds(load_settings(database_url=database_url, decoders_file=path)))
            assert host.poll(*host.feeds[0])
        got = {m: (ts.timestamp(), lat, lon, hours, fuel, on) for m, ts, lat, lon, hours, fuel, on in _rows(
            database_url, "SELECT machine_id, ts, lat, lon, engine_hours, fuel_used_l, engine_on FROM telemetry"
                          " WHERE site_id = %s AND machine_id IN ('H1', 'D2')", site)}
        assert got == {"H1": (pytest.approx(now), on_grid("lat", 59.31), on_grid("lon", 18.01),
                              on_grid("engine_hours", 1234.56), on_grid("fuel_used_l", 9876.5), True),
                       "D2": (pytest.approx(now), on_grid("lat", 59.32), on_grid("lon", 18.02), None, None, False)}, fmt
