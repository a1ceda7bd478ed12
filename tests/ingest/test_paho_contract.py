"""The private paho-mqtt internals ingest's receive and PUBACK paths rely on, pinned explicitly.

``ingest.consumer.LeanClient`` overrides paho's private ``Client._handle_publish`` and reads
``_in_packet``; ``_send_pubacks`` queues one coalesced PUBACK buffer through ``_packet_queue``. Both
fall back to paho's public path when the names are missing, so a paho release that changes them would
not break ingest, it would silently make it several times slower. pyproject.toml pins paho to the
tested range; this test fails loudly, naming what changed, when that pin is moved.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import paho.mqtt.client as mqtt
from packaging.requirements import Requirement
from paho.mqtt.enums import CallbackAPIVersion

from ingest.consumer import LeanClient

ROOT = Path(__file__).resolve().parents[2]
CHANGED = (
    "paho-mqtt {installed} changed a private name ingest.consumer relies on ({what}): check LeanClient and "
    "_send_pubacks against paho's _handle_publish/_packet_queue, then widen the pin in pyproject.toml"
)


def _pinned() -> Requirement:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(Requirement(d) for d in dependencies if Requirement(d).name == "paho-mqtt")


def test_paho_is_pinned_to_a_tested_minor_release() -> None:
    pin, installed = _pinned(), version("paho-mqtt")
    assert installed in pin.specifier, f"paho-mqtt {installed} is outside the pinned {pin.specifier}"
    # one minor release: a wider range could install internals nobody has checked
    assert {s.operator for s in pin.specifier} == {">=", "<"}, f"pin paho-mqtt as >=X.Y,<X.(Y+1), not {pin}"
    low = next(s.version for s in pin.specifier if s.operator == ">=").split(".")
    high = next(s.version for s in pin.specifier if s.operator == "<").split(".")
    assert high[0] == low[0] and int(high[1]) == int(low[1]) + 1, f"pin paho-mqtt to one minor release, not {pin}"


def test_the_private_paho_internals_ingest_overrides_are_there() -> None:
    installed = version("paho-mqtt")
    dispatch = inspect.getsource(mqtt.Client._packet_handle)
    assert "self._handle_publish()" in dispatch, CHANGED.format(
        installed=installed, what="_packet_handle no longer calls self._handle_publish()")
    assert list(inspect.signature(mqtt.Client._handle_publish).parameters) == ["self"], CHANGED.format(
        installed=installed, what="_handle_publish takes arguments")
    handler = inspect.getsource(mqtt.Client._handle_publish)
    reads = set(re.findall(r"_in_packet\[[\"'](\w+)[\"']\]", handler))
    assert {"command", "packet"} <= reads, CHANGED.format(
        installed=installed, what="_handle_publish no longer reads _in_packet['command'] and ['packet']")
    queue_params = list(inspect.signature(mqtt.Client._packet_queue).parameters)
    assert queue_params[:5] == ["self", "command", "packet", "mid", "qos"], CHANGED.format(
        installed=installed, what=f"_packet_queue{tuple(queue_params)}")
    client = LeanClient(CallbackAPIVersion.VERSION2, client_id="contract", protocol=mqtt.MQTTv5, manual_ack=True)
    assert {"command", "packet"} <= set(client._in_packet), CHANGED.format(installed=installed, what="_in_packet")
    assert client._protocol == mqtt.MQTTv5 and client._manual_ack is True, CHANGED.format(
        installed=installed, what="_protocol / _manual_ack")
    assert client._lean_ok, "LeanClient turned its lean path off on this paho"
