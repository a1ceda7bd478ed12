"""Replay recorded telemetry files (JSON lines or Parquet) back to MQTT, byte for byte.

Recorded runs are the fixtures of integration tests and demos: replaying publishes the same
topics and payload bytes in the same order, paced by the recorded send times / speedup.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from simulators.outputs import PublishStats, publish_live
from sitepulse.errors import SitePulseError
from sitepulse.recording import Message, read_messages


def replay_file(path: str | Path, mqtt_url: str, speedup: float = 1.0,
                stop_event: threading.Event | None = None,
                on_message: Callable[[Message], None] | None = None) -> PublishStats:
    """Publish every message of a telemetry file to the broker; speedup 0 means as fast as possible."""
    if not Path(path).is_file():
        raise SitePulseError(f"{path}: no such telemetry file")
    messages = read_messages(path)
    return publish_live(messages, mqtt_url, speedup=speedup, stop_event=stop_event, on_message=on_message)
