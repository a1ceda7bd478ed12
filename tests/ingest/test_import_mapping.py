"""One mapping language for live and recorded data: the same options give the same rows and the same rejects from
a tracker's MQTT JSON (the mapped-json decoder) and from a file (the importer's column-wise conversion)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from decoders.history.convert import ChunkConverter
from decoders.history.mapping import FileMapping
from decoders.history.sources import _docs_chunk
from tests.decoders.helpers import decode, front_for, samples

OPTIONS = {
    "ts": "time",
    "ts_format": "%Y-%m-%d %H:%M:%S",
    "timezone": "America/Chicago",
    "absent": [-99],
    "booleans": {"true": ["t", "yes"], "false": ["f", "no"]},
    "fields": {"speed_kmh": {"path": "speed", "unit": "m/s"}, "payload_kg": {"path": "load", "unit": "t",
               "absent": ["n/a"]}, "engine_on": "ignition"},
    "position": {"path": "pos", "format": "wkt", "altitude": True},
    "extra": ["state", {"path": "auto", "type": "bool", "name": "autonomous"}],
}
READINGS = [
    {"id": "HX-01", "time": "2025-08-11 15:51:15", "pos": "POINT Z (-97.8353 33.2692 250.3)", "speed": 4.2,
     "load": 182.5, "ignition": "t", "state": "hauling", "auto": "yes"},
    {"id": "HX-01", "time": "2025-08-11 15:51:16", "pos": "POINT (-97.8 33.2)", "speed": "-99", "load": "n/a",
     "ignition": "no", "state": "loading", "auto": "f"},
    {"id": "HX-01", "time": "2025-08-11 15:51:17", "pos": "SRID=4326;POINT(-97.8 33.2)", "speed": 1, "load": -99,
     "ignition": None},
    {"id": "HX-01", "time": "2025-08-11 15:51:18", "state": 'say "hi", \\ then\ttab\nand é', "auto": "maybe"},
]
BAD = [
    ({"id": "HX-01", "time": "11/08/2025", "speed": 1}, "ts '11/08/2025' does not match"),
    ({"id": "HX-01", "time": "2025-08-11 15:51:18", "pos": "POLYGON ((1 2))"}, "position 'POLYGON ((1 2))' is not"),
    ({"id": "HX-01", "time": "2025-08-11 15:51:19", "ignition": "maybe"}, "engine_on is a string, not true or false"),
    ({"id": "HX-01", "time": "2025-08-11 15:51:20", "pos": "POINT (-97.8 93.2)"}, "lat 93.2 is outside -90..90"),
    ({"id": "HX-01", "time": "2025-08-11 15:51:21", "speed": "fast"}, "speed_kmh is a string, not a number"),
    ({"id": "HX-01", "time": "2025-08-11 15:51:22", "state": "a\x00b"}, "extra fields contain a NUL character"),
]


def live(readings: list[dict], options: dict = OPTIONS) -> tuple[list[dict], list[str]]:
    config = {"route": [{"decoder": "mapped-json", "site": "s", "topics": ["t/+/up"],
                         "options": {**options, "machine": "payload:id"}}]}
    out = decode(front_for(config), *[("t/x/up", orjson.dumps(r)) for r in readings])
    return samples(out), [r.reason for r in out.rejects]


def recorded(readings: list[dict], options: dict = OPTIONS) -> tuple[list[dict], list[str]]:
    mapping = FileMapping.model_validate({**options, "machine": "column:id"})
    converted = ChunkConverter(mapping, "s", "f.jsonl", "f.jsonl").convert(
        _docs_chunk(readings, list(range(1, len(readings) + 1))))
    rows = []
    for row in converted.block.rows():
        names = ("site_id", "machine_id", "ts", "seq", "received_at", "lat", "lon", "speed_kmh", "heading_deg",
                 "payload_kg", "fuel_used_l", "engine_hours", "engine_on", "extra")
        sample = {k: v for k, v in zip(names, row, strict=True) if v is not None and k not in ("received_at", "seq")}
        sample["ts"] = sample["ts"].timestamp()
        rows.append(sample)
    return rows, [r.reason.split(": ", 1)[1] for r in converted.rejects]


def parsed(row: dict) -> dict:
    return {**row, "extra": orjson.loads(row["extra"])} if "extra" in row else row


def test_the_same_mapping_gives_the_same_rows_live_and_from_a_file() -> None:
    live_rows, live_rejects = live(READINGS)
    file_rows, file_rejects = recorded(READINGS)
    assert live_rejects == file_rejects == []
    assert [parsed(r) for r in live_rows] == [parsed(r) for r in file_rows]
    file_rows = [parsed(r) for r in file_rows]
    first, second, third, fourth = file_rows
    assert first["ts"] == datetime(2025, 8, 11, 20, 51, 15, tzinfo=UTC).timestamp()  # 15:51 in Chicago (CDT)
    assert first["speed_kmh"] == pytest.approx(4.2 * 3.6, abs=2**-8) and first["payload_kg"] == 182500.0
    assert first["lat"] == pytest.approx(33.2692, abs=1e-6) and first["engine_on"] is True
    assert first["extra"] == {"state": "hauling", "autonomous": True, "alt_m": 250.3}
    assert "speed_kmh" not in second and "payload_kg" not in second and second["engine_on"] is False
    assert "payload_kg" not in third and "engine_on" not in third and third["lon"] == pytest.approx(-97.8, abs=1e-6)
    assert "extra" not in third  # nothing to keep: no empty object
    assert fourth["extra"] == {"state": 'say "hi", \\ then\ttab\nand é', "autonomous": "maybe"}  # not a word: kept


@pytest.mark.parametrize(("reading", "reason"), BAD)
def test_the_same_mapping_rejects_the_same_readings_for_the_same_reason(reading: dict, reason: str) -> None:
    _, live_rejects = live([reading])
    _, file_rejects = recorded([reading])
    assert len(live_rejects) == len(file_rejects) == 1
    assert reason in live_rejects[0] and reason in file_rejects[0], (live_rejects, file_rejects)


def test_without_a_timezone_a_time_without_an_offset_is_rejected_live_and_from_a_file() -> None:
    options = {"ts": "time", "fields": {"speed_kmh": "speed"}}
    readings = [{"id": "HX-01", "time": "2025-08-11 15:51:15", "speed": 1},
                {"id": "HX-01", "time": "2025-08-11 15:51:16+00", "speed": 2}]
    live_rows, live_rejects = live(readings, options)
    file_rows, file_rejects = recorded(readings, options)
    assert [r["speed_kmh"] for r in live_rows] == [r["speed_kmh"] for r in file_rows] == [2.0]
    assert live_rejects == file_rejects == ["ts '2025-08-11 15:51:15' has no UTC offset (RFC 3339 needs Z or +hh:mm)"]
