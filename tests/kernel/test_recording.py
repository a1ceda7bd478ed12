"""The telemetry file (sitepulse/recording.py): what ``simulate --out`` writes is read back byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitepulse.errors import SitePulseError
from sitepulse.recording import Message, read_messages, write_messages

MESSAGES = [
    Message(0.0, "sites/s/machines/H1/birth", b'{"kind":"hauler","rated_payload_kg":90000}', True, "birth", True),
    Message(0.5, "sites/s/machines/H1/telemetry", b'{"ts":"2026-01-05T06:00:00Z","speed_kmh":12.5}', False,
            "telemetry", True),
    Message(1.25, "sites/s/machines/H1/telemetry", b'{"ts": broken', False, "telemetry", False),
    Message(2.0, "sites/s/machines/H1/status", b"offline", True, "status", False),
]


@pytest.mark.parametrize("name", ["r.jsonl", "r.parquet"])
def test_messages_come_back_as_written(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert write_messages(iter(MESSAGES), path) == len(MESSAGES)
    assert list(read_messages(path)) == MESSAGES


@pytest.mark.parametrize(("name", "text", "message"), [
    ("missing.jsonl", None, "no such telemetry file"),
    ("bad.jsonl", '{"t": 0, "topic": "a", "payload": 1}\nnot json\n', r"bad.jsonl:2: not a SitePulse telemetry line"),
    ("bad.parquet", "not parquet", "not a SitePulse Parquet telemetry file"),
])
def test_a_file_that_is_not_one_is_one_clear_line(tmp_path: Path, name: str, text: str | None, message: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(SitePulseError, match=message):
        list(read_messages(path))


def test_only_the_two_formats_are_written(tmp_path: Path) -> None:
    with pytest.raises(SitePulseError, match=r"use a \.jsonl or \.parquet file name"):
        write_messages(iter(MESSAGES), tmp_path / "r.csv")
