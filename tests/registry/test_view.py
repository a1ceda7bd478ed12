"""The site view: geometry, machines from the last-value table, one card per enabled service, alerts, stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from ingest.columns import snap
from ingest.contract import RESOLUTION, Decoded, Decoder
from ingest.fleet import site_fleet
from ingest.writer import TelemetryWriter
from microservices.sdk import Card, CardContext, Outputs, Service
from registry.api import tickets
from registry.api.app import create_app
from registry.api.state import state_of
from registry.tokens import create_token
from registry.view import card_context, load_site_config, service_card
from sitepulse.settings import load_settings

ADMIN = "view-admin-token-0123456789abcdef0123456789"
SQUARE = [[18.0, 59.0], [18.002, 59.0], [18.002, 59.001], [18.0, 59.001]]
SITE = f"""
name: View pit
timezone: Europe/Stockholm
zones:
  - {{id: load-a, type: load, polygon: {SQUARE}}}
  - {{id: blast, type: restricted, polygon: [[18.003, 59.0], [18.004, 59.0], [18.004, 59.001]]}}
machines:
  - {{id: H1, kind: hauler, model: Volvo A30G, rated_payload_kg: 28000}}
  - {{id: L1, kind: loader, model: Volvo L220H}}
"""


class _Quiet(Service):
    def process(self, batch: Any, state: dict, settings: BaseModel) -> tuple[Outputs, dict]:
        return Outputs(), state


class Counter(_Quiet):
    name = "counter"
    summary = "A card that counts telemetry rows through the SDK's read"

    def card(self, site_id: str, read: Any, settings: BaseModel) -> Card:
        rows = read("SELECT count(*) AS n FROM telemetry WHERE site_id = %(s)s", {"s": site_id})
        return Card(title="Counter", metrics=[{"label": "rows", "value": rows["n"].iloc[0], "unit": ""}],
                    data={"histogram": {"edges_pct": [0, 50, 100], "counts": [1, 2]}, "ratio": float("nan")},
                    link="rows")


class Broken(_Quiet):
    name = "broken"
    summary = "A card whose query fails"

    def card(self, site_id: str, read: Any, settings: BaseModel) -> Card:
        read("SELECT * FROM no_such_table", {})
        raise AssertionError("unreachable")


class Plain(_Quiet):
    name = "plain"
    summary = "No card at all"


class Context(_Quiet):
    name = "context"
    summary = "A card written to the card contract: it says what its CardContext holds"

    def card(self, context: CardContext, settings: BaseModel) -> Card:
        return Card(title=context.site.name, data={
            "timezone": context.site.timezone, "zones": sorted(context.site.zones),
            "kinds": {m.id: m.kind for m in context.machines.values()}, "alerts": context.alert_count(5),
            "today": context.now.isoformat()})


@dataclass
class Client:
    client: TestClient
    admin: dict[str, str]
    manager: dict[str, str]


def write_samples(url: str, site: str, samples: dict[str, list[dict[str, Any]]]) -> None:
    """Store samples through the real ingest writer (which also upserts machine_last)."""
    writer = TelemetryWriter(url)
    writer.open()
    batch = Decoded()
    decoder = Decoder()
    for machine, items in samples.items():
        for sample in items:
            decoder.decode_into(batch, f"sites/{site}/machines/{machine}/telemetry", json.dumps(sample).encode(),
                                datetime.now(UTC))
    writer.write(batch)
    writer.close()


@pytest.fixture(scope="module")
def view_api(database_url: str, mqtt_broker: Any) -> Iterator[Client]:
    services: dict[str, Service] = {s.name: s for s in (Counter(), Broken(), Plain())}
    app = create_app(database_url, mqtt_broker.url, services=services, settings=load_settings(admin_token=ADMIN))
    with psycopg.connect(database_url, autocommit=True) as conn:
        manager = create_token(conn, "pit manager", ["pit"]).token
    now = time.time()
    write_samples(database_url, "pit", {
        "H1": [{"ts": now - 10 + i, "seq": i, "lat": 59.0005, "lon": 18.001 + i * 1e-5, "speed_kmh": 20.0,
                "heading_deg": 90.0, "payload_kg": 14000.0, "engine_on": True, "engine_hours": 100.5 + i / 3600,
                "fuel_used_l": 5000.0 + i} for i in range(10)],
        "L1": [{"ts": now - 5, "seq": 1, "lat": 59.0002, "lon": 18.0005, "speed_kmh": 0.0, "engine_on": True}],
    })
    with TestClient(app) as client:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        for site in ("pit", "other"):
            r = client.put(f"/api/v1/sites/{site}", content=SITE, headers={**admin, "Content-Type": "application/yaml"})
            assert r.status_code == 201, r.text
        for name in ("counter", "broken", "plain"):
            r = client.put(f"/api/v1/sites/pit/services/{name}", json={"enabled": True}, headers=admin)
            assert r.status_code == 200, r.text
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("INSERT INTO service_alerts (site_id, service, key, level, message) VALUES"
                         " ('pit', 'counter', 'k1', 'critical', 'H1 entered the blast area')")
        yield Client(client, admin, {"Authorization": f"Bearer {manager}"})


def test_view_composes_site_machines_cards_and_alerts(view_api: Client, database_url: str) -> None:
    r = view_api.client.get("/api/v1/sites/pit/view", headers=view_api.manager)
    assert r.status_code == 200, r.text
    view = r.json()
    site = view["site"]
    assert site["name"] == "View pit" and {z["id"] for z in site["zones"]} == {"load-a", "blast"}
    zone = next(z for z in site["zones"] if z["id"] == "load-a")
    assert zone["type"] == "load" and zone["colour"].startswith("#") and len(zone["xy"]) == 4
    assert site["bounds"]["max_x"] > site["bounds"]["min_x"]
    machines = {m["machine_id"]: m for m in view["machines"]}
    h1 = machines["H1"]
    assert h1["lon"] == pytest.approx(18.001 + 9e-5) and h1["state"] == "moving" and h1["kind"] == "hauler"
    assert h1["payload_pct"] == pytest.approx(50.0) and h1["model"] == "Volvo A30G" and h1["x"] is not None
    assert machines["L1"]["state"] == "idle"
    cards = {c["service"]: c for c in view["cards"]}
    assert set(cards) == {"counter", "broken", "plain"}
    assert cards["counter"]["metrics"][0]["value"] == 11 and cards["counter"]["data"]["ratio"] is None
    assert cards["counter"]["link"] == "/api/v1/sites/pit/counter/rows"
    assert cards["broken"]["status"] == "unavailable" and "no_such_table" in cards["broken"]["reason"]
    assert cards["plain"]["status"] == "ok" and cards["plain"]["metrics"] == []
    assert [a["message"] for a in view["alerts"]] == ["H1 entered the blast area"]
    assert view["ranges"]["today"]["from"] < view["ranges"]["today"]["to"]


def test_view_records_card_views_except_refreshes(view_api: Client, database_url: str) -> None:
    def views() -> int:
        state_of(view_api.client.app).usage.flush()
        with psycopg.connect(database_url) as conn:
            return conn.execute("SELECT count(*) FROM usage_events WHERE site_id = 'pit' AND action = 'card_view'"
                                ).fetchone()[0]
    before = views()
    assert view_api.client.get("/api/v1/sites/pit/view", headers=view_api.manager).status_code == 200
    assert views() == before + 2  # counter and plain; the unavailable card was not seen
    assert view_api.client.get("/api/v1/sites/pit/view?refresh=true", headers=view_api.manager).status_code == 200
    assert views() == before + 2


def test_view_is_site_scoped(view_api: Client) -> None:
    assert view_api.client.get("/api/v1/sites/other/view", headers=view_api.manager).status_code == 404
    assert view_api.client.get("/api/v1/sites/nowhere/view", headers=view_api.admin).status_code == 404
    assert view_api.client.get("/api/v1/sites/pit/view").status_code == 401


def test_machine_last_keeps_newest_and_known_fields(view_api: Client, database_url: str) -> None:
    now = time.time()
    write_samples(database_url, "pit", {"L1": [{"ts": now - 3600, "seq": 0, "lat": 1.0, "lon": 1.0},  # late
                                               {"ts": now, "seq": 2, "speed_kmh": 3.0}]})  # no position
    with psycopg.connect(database_url) as conn:
        lat, lon, speed, engine = conn.execute(
            "SELECT lat, lon, speed_kmh, engine_on FROM machine_last WHERE site_id = 'pit' AND machine_id = 'L1'"
        ).fetchone()
    on_grid = snap(59.0002, RESOLUTION["lat"]), snap(18.0005, RESOLUTION["lon"])  # as ingest stores them
    assert (lat, lon, speed, engine) == (*on_grid, 3.0, True)


def test_dashboard_and_static_assets_are_served(view_api: Client) -> None:
    page = view_api.client.get("/")
    assert page.status_code == 200 and "SitePulse" in page.text and "/static/app.js" in page.text
    for asset in ("app.js", "api.js", "map.js", "cards.js", "charts.js", "overview.js", "pages.js", "styles.css"):
        assert view_api.client.get(f"/static/{asset}").status_code == 200, asset
    me = view_api.client.get("/api/v1/me", headers=view_api.manager).json()
    assert me == {"name": "pit manager", "role": "site", "sites": ["pit"]}


def test_stream_needs_a_ticket_for_that_site(view_api: Client) -> None:
    r = view_api.client.post("/api/v1/sites/pit/stream/ticket", headers=view_api.manager)
    assert r.status_code == 200
    ticket = r.json()["ticket"]
    assert ADMIN not in r.text
    assert view_api.client.post("/api/v1/sites/other/stream/ticket", headers=view_api.manager).status_code == 404
    assert view_api.client.get(f"/api/v1/sites/other/stream?ticket={ticket}").status_code == 401
    assert view_api.client.get("/api/v1/sites/pit/stream?ticket=forged.sig").status_code == 401
    with view_api.client.stream("GET", f"/api/v1/sites/pit/stream?ticket={ticket}&max_s=1") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        body = "".join(stream.iter_text())
    events = [block for block in body.split("\n\n") if block.startswith("event:")]
    names = [e.split("\n")[0].removeprefix("event: ") for e in events]
    assert names[:2] == ["machines", "alerts"] and names[-1] == "bye"
    machines = json.loads(events[0].split("data: ", 1)[1])["machines"]
    assert {m["machine_id"] for m in machines} == {"H1", "L1"}


def test_tickets_expire_and_bind_to_site() -> None:
    key = tickets.new_key()
    ticket, expires = tickets.issue(key, "pit", "someone", now=1000.0)
    assert tickets.verify(key, ticket, "pit", now=1000.0 + 30) is not None
    assert tickets.verify(key, ticket, "pit", now=expires + 1) is None
    assert tickets.verify(key, ticket, "other", now=1000.0) is None
    assert tickets.verify(tickets.new_key(), ticket, "pit", now=1000.0) is None
    assert tickets.verify(key, "garbage", "pit") is None


def test_time_ranges_follow_site_timezone() -> None:
    from registry.view import time_ranges
    from sitepulse.sitefile import parse_site

    site = parse_site(SITE.encode(), source="test")
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 13:00 in Stockholm
    ranges = time_ranges(site, now)
    assert ranges["today"]["from"] == datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
    current = ranges["shifts"][0]
    assert current["name"] == "day" and current["from"] == datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
    assert ranges["shifts"][1]["name"] == "night" and ranges["shifts"][1]["to"] - ranges["shifts"][1]["from"] == \
        timedelta(hours=12)


def test_view_json_encodes_as_fastapi_would() -> None:
    """The view route encodes with orjson; the bytes must mean what FastAPI's default JSONResponse would send."""
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import JSONResponse

    from registry.api.routes.view import view_json

    view = {
        "generated_at": datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC),
        "ranges": {"today": {"from": datetime(2026, 11, 23, 0, 0, tzinfo=ZoneInfo("Europe/Stockholm"))}},
        "machines": [{"machine_id": "H1", "last_seen": datetime(2026, 11, 23, 11, 59, tzinfo=UTC), "x": 1.5,
                      "payload_kg": None, "stale": False, "rated": Decimal("28000.5"), "kinds": ("hauler",)}],
        "alerts": [{"id": 7, "data": {"caused_by": [1, 2]}, "at": None, "day": datetime(2026, 1, 2).date()}],
    }
    assert json.loads(view_json(view)) == json.loads(JSONResponse(jsonable_encoder(view)).body)


def test_a_card_gets_the_pages_site_machines_and_its_alert_count(view_api: Client, database_url: str) -> None:
    """The page hands every card the site file's view, the machines (site file updated by births) and a count of
    the card's service's alerts; a card written to the first contract (Counter) gets the same page's reader."""
    now = datetime(2026, 1, 5, 7, tzinfo=UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO machines (site_id, machine_id, kind, model) VALUES ('pit', 'D9', 'dozer', 'D9T')")
        conn.execute("INSERT INTO service_alerts (site_id, service, key, level, message) SELECT 'pit', 'context',"
                     " 'k' || i, 'warning', 'x' FROM generate_series(1, 7) i")
        try:
            loaded = load_site_config(conn, "pit")
            assert loaded is not None
            page = card_context(conn, "pit", loaded[0], now, site_fleet(conn, "pit"))
            card = service_card(conn, page, Context(), None)
            legacy = service_card(conn, page, Counter(), None)
        finally:
            conn.execute("DELETE FROM machines WHERE site_id = 'pit' AND machine_id = 'D9'")
            conn.execute("DELETE FROM service_alerts WHERE site_id = 'pit' AND service = 'context'")
    assert card["status"] == "ok" and card["title"] == "View pit"
    assert card["data"] == {"timezone": "Europe/Stockholm", "zones": ["blast", "load-a"],
                            "kinds": {"H1": "hauler", "L1": "loader", "D9": "dozer"}, "alerts": 5,
                            "today": "2026-01-05T07:00:00+00:00"}
    assert legacy["status"] == "ok" and legacy["metrics"][0]["value"] >= 11
