"""Mapped JSON: paths, units, time formats, machine ids, batched readings, and one-line reasons."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from decoders.config import parse_entries
from decoders.discovery import discover_decoders
from sitepulse.cli import _app
from sitepulse.errors import ConfigError
from tests.decoders.helpers import decode, front_for, on_grid, samples

FOLDER = Path(__file__).parents[2] / "decoders" / "mapped_json"
SAMPLE_CONFIG = tomllib.loads((FOLDER / "sample.toml").read_text())
SINGLE = (FOLDER / "fixtures" / "tracker_single.json").read_bytes()
BATCH = (FOLDER / "fixtures" / "tracker_batch.json").read_bytes()


def batch_config() -> dict:
    config = orjson.loads(orjson.dumps(SAMPLE_CONFIG))
    options = config["route"][0]["options"]
    options.update(machine="payload:device.id", records="readings", ts_format="%d/%m/%Y %H:%M:%S")
    return config


def test_sample_config_maps_every_field_with_its_unit() -> None:
    out = decode(front_for(SAMPLE_CONFIG), ("trackers/HX-02/up", SINGLE))
    assert out.rejects == []
    (row,) = samples(out)
    assert row.pop("extra") == '{"rssi":-71}'
    assert row == pytest.approx({
        "site_id": "north-quarry", "machine_id": "HX-02", "ts": 1764900000.0, "lat": 59.3293, "lon": 18.0686,
        "speed_kmh": on_grid("speed_kmh", 8.5 * 3.6), "heading_deg": 270.0,
        "fuel_used_l": on_grid("fuel_used_l", 1520.25 * 3.785411784),
        "engine_hours": 1200.0, "payload_kg": 27400.0, "engine_on": True})


def test_batched_readings_keep_the_good_ones_and_reject_each_bad_one() -> None:
    out = decode(front_for(batch_config()), ("trackers/any/up", BATCH))
    rows = samples(out)
    assert [r["machine_id"] for r in rows] == ["HX-01", "HX-01"]
    start = datetime(2025, 12, 5, 2, tzinfo=UTC).timestamp()
    assert [r["ts"] for r in rows] == [start, start + 3]
    reasons = sorted(r.reason for r in out.rejects)
    assert reasons == ["sample 1: lat 91.5 is outside -90..90",
                       "sample 2: mapped-json: ts 'not a time' does not match '%d/%m/%Y %H:%M:%S'"]
    assert orjson.loads(next(r.payload for r in out.rejects if "sample 2" in r.reason))["time"] == "not a time"


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{", "mapped-json: not valid JSON"),
    (b'"text"', "mapped-json: payload is str; expected a reading object or an array of them"),
    (b"[]", "mapped-json: payload is an empty array"),
    (b'{"gps": {"lat": 10}}', "ts is missing"),
    (b'{"time": "soon", "gps": {"lat": 10}}', "mapped-json: ts 'soon' is not a number (epoch_ms)"),
    (b'{"time": 1764900000000, "gps": {"lat": "north"}}', "lat is a string, not a number"),
    (b'{"time": 1764900000000, "io": {"ignition": "maybe"}}', "engine_on is a string, not true or false"),
])
def test_bad_messages_are_rejected_with_one_readable_line(payload: bytes, reason: str) -> None:
    out = decode(front_for(SAMPLE_CONFIG), ("trackers/HX-02/up", payload))
    assert out.rows == [] and len(out.rejects) == 1
    assert out.rejects[0].reason.startswith(reason) and "\n" not in out.rejects[0].reason


def test_machine_id_that_breaks_the_id_rule_is_rejected() -> None:
    out = decode(front_for(SAMPLE_CONFIG), ("trackers/bad id!/up", SINGLE))
    assert out.rejects[0].code == "machine-id" and "'bad id!'" in out.rejects[0].reason


def test_native_topics_keep_their_decoder_and_unrouted_topics_are_rejected_by_the_contract() -> None:
    front = front_for(SAMPLE_CONFIG)
    native = orjson.dumps({"ts": 1764900000.0, "lat": 1.0})
    out = decode(front, ("sites/s1/machines/m1/telemetry", native), ("elsewhere/x", b"{}"))
    assert [r["machine_id"] for r in samples(out)] == ["m1"]
    assert out.rejects[0].reason.startswith("topic 'elsewhere/x' is not sites/")
    assert front.decoder_of("sites/s1/machines/m1/telemetry") == "native-json"
    assert front.decoder_of("trackers/a/up") == "mapped-json"


@pytest.mark.parametrize(("change", "message"), [
    ({"decoder": "nope"}, "route 1: decoder 'nope' is not installed"),
    ({"site": "bad site"}, "route 1 (mapped-json): site 'bad site' is not 1-64 characters"),
    ({"topics": ["sites/+/machines/+/telemetry"]}, "overlaps the native sites/... topics"),
    ({"options": {"fields": {"lat": {"path": "a", "unit": "furlong"}}}}, "fields.lat.unit 'furlong' is not one of"),
    ({"options": {"fields": {"altitude": "a"}}}, "options.fields.altitude"),
    ({"options": {"fields": {}, "machine": "topic:x"}}, "options.machine: Value error, must be topic:N"),
])
def test_config_mistakes_are_one_line_naming_the_entry(change: dict, message: str) -> None:
    entry = {"decoder": "mapped-json", "site": "s", "topics": ["t/+"], "options": {"fields": {"lat": "a"}}, **change}
    with pytest.raises(ConfigError) as caught:
        parse_entries({"route": [entry]}, Path("d.toml"), discover_decoders())
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_cli_prints_the_sample_or_the_reason(tmp_path: Path) -> None:
    config = FOLDER / "sample.toml"
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"time": 1764900000000, "gps": {"lat": 123}}')
    result = CliRunner().invoke(_app, ["decoders", "test", "--config", str(config), "--topic", "trackers/HX-9/up",
                                       "--payload", str(FOLDER / "fixtures" / "tracker_single.json"),
                                       "--payload", str(bad)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("sample (mapped-json) {") and '"machine_id":"HX-9"' in lines[0]
    assert lines[1] == "rejected (mapped-json) lat 123 is outside -90..90"
    result = CliRunner().invoke(_app, ["decoders", "test", "--config", str(config), "--payload", "{}"])
    assert result.exit_code != 0 and "give the message's --topic" in str(result.exception)
