"""Sparkplug B 3.0 as SitePulse samples: metric names mapped to fields, aliases from BIRTH, seq checked.

Topics ``spBv1.0/{group}/{NBIRTH|NDATA|NDEATH|DBIRTH|DDATA|DDEATH|NCMD|DCMD}/{edge}[/{device}]``. Per edge
node the decoder keeps what its NBIRTH and DBIRTHs declared (alias -> name, datatypes, bdSeq, devices) and
the last ``seq``. It never guesses: a DATA before its BIRTH, an unknown alias, or a ``seq`` that is not the
previous one + 1 (mod 256) makes that message a reject with the reason, sends one Rebirth NCMD (at most one
per edge node per ``rebirth_interval_s``), and every later DATA of that node is a reject until the new NBIRTH.
NDEATH with the NBIRTH's bdSeq, and DDEATH, set the machines ``offline``; births set them ``online``.
Metrics sharing a timestamp make one sample (``is_historical`` ones are simply older samples).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
from google.protobuf.message import DecodeError
from pydantic import Field

from decoders.sdk import (
    DecoderContext,
    DecoderPlugin,
    Publish,
    Route,
    StrictOptions,
    as_field,
    bad_id,
    emit_reject,
    emit_status,
)
from decoders.sparkplug.schema import Payload
from ingest.contract import Decoded
from ingest.fields import MEASURED_FIELDS

NAME = "sparkplug-b"
NAMESPACE = "spBv1.0"
MESSAGE_TYPES = ("NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH", "NCMD", "DCMD")
BD_SEQ = "bdSeq"
REBIRTH_METRIC = "Node Control/Rebirth"
BOOLEAN = 11
SIGNED_BITS = {1: 8, 2: 16, 3: 32, 4: 64}  # Int8..Int64
VALUE_FIELD = {**dict.fromkeys((1, 2, 3, 5, 6, 7), "int_value"), **dict.fromkeys((4, 8, 13), "long_value"),
               9: "float_value", 10: "double_value", 11: "boolean_value", **dict.fromkeys((12, 14, 15), "string_value")}
NO_VALUE = object()

FieldName = Literal[MEASURED_FIELDS]  # the telemetry fields (ingest/fields.py), as pydantic checks them


class MetricMap(StrictOptions):
    """A metric's SitePulse field: value = metric * scale + offset."""

    field: FieldName
    scale: float = 1.0
    offset: float = 0.0


class SparkplugOptions(StrictOptions):
    """A route's Sparkplug settings (decoders/sparkplug/sample.toml is the commented example)."""

    metrics: dict[str, FieldName | MetricMap] = Field(description="Sparkplug metric name -> SitePulse field")
    machine_ids: dict[str, str] = Field(default_factory=dict, description="edge node or device id -> machine id")
    node_is_machine: bool = Field(True, description="NBIRTH/NDATA metrics belong to a machine named after the node")
    unmapped: Literal["drop", "extra"] = Field("drop", description="metrics not in `metrics`: dropped or in extra")
    rebirth_interval_s: float = Field(5.0, ge=0, description="at most one Rebirth request per node this often")


@dataclass
class EdgeNode:
    """What one edge node's births declared, and where its sequence stands."""

    bd_seq: int | None = None
    seq: int = -1
    names: dict[tuple[str, int], str] = field(default_factory=dict)  # (device or "", alias) -> metric name
    types: dict[tuple[str, str], int] = field(default_factory=dict)  # (device or "", name) -> datatype
    devices: set[str] = field(default_factory=set)
    resolved: dict[str, dict[int, tuple[str, Any, int | None, str | None]]] = field(default_factory=dict)
    waiting: str | None = "no NBIRTH seen"  # why DATA is refused until the next NBIRTH; None once born
    rebirth_at: float = float("-inf")


def signed(value: int, datatype: int | None) -> int:
    """An Int8..Int64 metric's value from its unsigned wire form (8/16-bit or sign-extended to 32 bits)."""
    bits = SIGNED_BITS.get(datatype or 0)
    if bits:
        if value >= 1 << (bits - 1) and value < 1 << bits:
            value -= 1 << bits
        elif bits < 32 and value >= 1 << 31:  # sign-extended to 32 bits, as some edge nodes send Int8/Int16
            value -= 1 << 32
    return value


def metric_value(metric: Any, datatype: int | None) -> Any:
    """The metric's value as Python, signed integers restored; NO_VALUE for types SitePulse does not read."""
    if metric.is_null:
        return None
    kind = metric.WhichOneof("value")
    if kind is None or kind == "bytes_value":
        return NO_VALUE
    value = getattr(metric, kind)
    if kind == "float_value":  # a float32 on the wire: the value the device meant is its shortest decimal
        return float(str(np.float32(value)))  # (0.6, not the double 0.6000000238418579 that protobuf widens it to)
    return signed(value, datatype) if type(value) is int else value


def parse_topic(topic: str) -> tuple[str, tuple[str, str], str] | str:
    """(kind, (group, edge node), device or "") of a Sparkplug topic; "" for STATE and commands; else the reason."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == NAMESPACE and parts[1] == "STATE":
        return ""
    kind = parts[2] if len(parts) in (4, 5) and parts[0] == NAMESPACE else None
    if kind in ("NCMD", "DCMD"):
        return ""
    if kind not in MESSAGE_TYPES or (kind[0] == "D") != (len(parts) == 5) or not all(parts):
        return f"topic {topic[:200]!r} is not spBv1.0/GROUP/N*|D*/EDGE[/DEVICE]"
    return kind, (parts[1], parts[3]), parts[4] if len(parts) == 5 else ""


def rebirth_request() -> bytes:
    """NCMD payload asking an edge node to publish its NBIRTH and DBIRTHs again."""
    payload = Payload(timestamp=int(time.time() * 1000))
    payload.metrics.add(name=REBIRTH_METRIC, datatype=BOOLEAN, boolean_value=True)
    return payload.SerializeToString()


class SparkplugDecoder:
    """One route's edge nodes: state per (group, edge node), decoded message by message."""

    def __init__(self, route: Route, publish: Publish) -> None:
        options: SparkplugOptions = route.options
        self.site_id = route.site_id
        self.options = options
        self.fields = {
            name: (spec, 1.0, 0.0) if isinstance(spec, str) else (spec.field, spec.scale, spec.offset)
            for name, spec in options.metrics.items()
        }
        self.keep_unmapped = options.unmapped == "extra"
        self.publish = publish
        self.nodes: dict[tuple[str, str], EdgeNode] = {}
        self.rebirths_sent = 0
        self._topics: dict[str, tuple[str, tuple[str, str], str] | str] = {}
        self._machines: dict[str, str | tuple[str]] = {}

    # -- entry ----------------------------------------------------------------------------------------
    def decode(self, out: Decoded, topic: str, payload: bytes, received_at: datetime) -> None:
        """Decode one Sparkplug message; every path ends in samples, statuses, or a reject with a reason."""
        parsed = self._topics.get(topic)
        if parsed is None:
            parsed = self._topics[topic] = parse_topic(topic)
            if len(self._topics) > 100_000:
                self._topics.clear()
        if type(parsed) is not tuple:
            if parsed:
                self._reject(out, topic, payload, received_at, "topic", parsed)
            return  # "": host STATE and commands to edge nodes (our own rebirth requests among them)
        kind, key, device = parsed
        try:
            message = Payload.FromString(payload)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            self._reject(out, topic, payload, received_at, "not-protobuf",
                         f"{kind} is not a Sparkplug B protobuf payload ({str(exc)[:120] or 'truncated'})")
            return
        if kind == "NBIRTH":
            self._node_birth(out, topic, payload, received_at, key, message)
        elif kind == "NDEATH":
            self._node_death(out, topic, payload, received_at, key, message)
        else:
            self._in_session(out, topic, payload, received_at, key, kind, device, message)

    # -- message kinds --------------------------------------------------------------------------------
    def _node_birth(self, out: Decoded, topic: str, payload: bytes, received_at: datetime,
                    key: tuple[str, str], message: Any) -> None:
        node = EdgeNode(seq=message.seq if message.HasField("seq") else 0, waiting=None)
        for metric in message.metrics:
            if not metric.HasField("name"):
                self._refuse(out, topic, payload, received_at, key, "birth-metric",
                             "NBIRTH has a metric without a name")
                return
            if metric.HasField("alias"):
                node.names[("", metric.alias)] = metric.name
            node.types[("", metric.name)] = metric.datatype
            if metric.name == BD_SEQ:
                value = metric_value(metric, metric.datatype)
                node.bd_seq = value if type(value) is int else None
        self.nodes[key] = node
        machine = self._node_machine(key)
        if machine is not None and type(machine) is str:
            emit_status(out, self.site_id, machine, "online", received_at)
        self._samples(out, topic, payload, received_at, key, node, "", message)

    def _node_death(self, out: Decoded, topic: str, payload: bytes, received_at: datetime,
                    key: tuple[str, str], message: Any) -> None:
        bd_seq = next((metric_value(m, m.datatype or 8) for m in message.metrics if m.name == BD_SEQ), None)
        node = self.nodes.get(key)
        if node is None or node.waiting == "edge node is offline (NDEATH)":
            self._reject(out, topic, payload, received_at, "death-unmatched",
                         f"NDEATH (bdSeq {bd_seq}) of an edge node not online here; nothing to mark offline")
            return
        if node.bd_seq is not None and bd_seq != node.bd_seq:
            self._reject(out, topic, payload, received_at, "death-stale",
                         f"NDEATH bdSeq {bd_seq} is not the current NBIRTH's {node.bd_seq}: an old session's, ignored")
            return
        machines = [self._node_machine(key)] + [self._device_machine(d) for d in sorted(node.devices)]
        for machine in machines:
            if machine is not None and type(machine) is str:
                emit_status(out, self.site_id, machine, "offline", received_at)
        self.nodes[key] = EdgeNode(waiting="edge node is offline (NDEATH)")

    def _in_session(self, out: Decoded, topic: str, payload: bytes, received_at: datetime,
                    key: tuple[str, str], kind: str, device: str, message: Any) -> None:
        node = self.nodes.get(key)
        if node is None:
            node = self.nodes[key] = EdgeNode()
        if node.waiting is not None:
            self._refuse(out, topic, payload, received_at, key, "before-birth",
                         f"{kind} refused until the edge node's next NBIRTH ({node.waiting})")
            return
        seq = message.seq if message.HasField("seq") else None
        expected = (node.seq + 1) % 256
        if seq != expected:
            got = "none" if seq is None else seq
            self._refuse(out, topic, payload, received_at, key, "seq-gap",
                         f"{kind} seq {got} where {expected} was due: messages missing or out of order")
            return
        node.seq = seq
        if kind == "DBIRTH":
            for metric in message.metrics:
                if not metric.HasField("name"):
                    self._refuse(out, topic, payload, received_at, key, "birth-metric",
                                 f"DBIRTH of {device!r} has a metric without a name")
                    return
            node.resolved.pop(device, None)  # a device re-birth may bind its aliases anew
            for metric in message.metrics:
                if metric.HasField("alias"):
                    node.names[(device, metric.alias)] = metric.name
                node.types[(device, metric.name)] = metric.datatype
            node.devices.add(device)
            machine = self._device_machine(device)
            if type(machine) is str:
                emit_status(out, self.site_id, machine, "online", received_at)
        elif device and device not in node.devices:
            self._refuse(out, topic, payload, received_at, key, "before-birth",
                         f"{kind} of device {device!r} before its DBIRTH")
            return
        if kind == "DDEATH":
            node.devices.discard(device)
            machine = self._device_machine(device)
            if type(machine) is str:
                emit_status(out, self.site_id, machine, "offline", received_at)
            return
        self._samples(out, topic, payload, received_at, key, node, device, message)

    # -- samples --------------------------------------------------------------------------------------
    def _samples(self, out: Decoded, topic: str, payload: bytes, received_at: datetime, key: tuple[str, str],
                 node: EdgeNode, device: str, message: Any) -> None:
        """Mapped metric values grouped by timestamp into samples of the device's (or node's) machine.

        Hot path: proto2 defaults stand for "absent" where Sparkplug gives them no meaning (an empty name, a
        0 timestamp or datatype), so a metric costs few protobuf calls; an alias is resolved once per session.
        """
        machine = self._device_machine(device) if device else self._node_machine(key)
        if machine is None:
            return  # node-level metrics of a gateway that is not itself a machine
        if type(machine) is not str:
            self._reject(out, topic, payload, received_at, "machine-id", f"machine id {machine[0]}")
            return
        default_ms = message.timestamp or int(received_at.timestamp() * 1000)
        by_time: dict[int, dict[str, Any]] = {}
        last_ms, sample = -1, {}
        fields, keep = self.fields, self.keep_unmapped
        resolved = node.resolved.get(device)
        if resolved is None:
            resolved = node.resolved[device] = {}
        for metric in message.metrics:
            name = metric.name
            if name:
                datatype = node.types.get((device, name))
                entry = (name, fields.get(name), datatype, VALUE_FIELD.get(datatype))
            else:
                alias = metric.alias
                entry = resolved.get(alias)
                if entry is None:
                    if alias == 0 and not metric.HasField("alias"):
                        self._reject(out, topic, payload, received_at, "no-metric-name",
                                     "a metric has neither a name nor an alias", machine)
                        return
                    name = node.names.get((device, alias))
                    if name is None:
                        self._refuse(out, topic, payload, received_at, key, "unknown-alias",
                                     f"metric alias {alias} is not in the births of {device or 'the edge node'}")
                        return
                    datatype = node.types.get((device, name))
                    entry = resolved[alias] = (name, fields.get(name), datatype, VALUE_FIELD.get(datatype))
            target = entry[1]
            if target is None and not keep:
                continue
            expected = entry[3]  # the value field the birth's datatype names: HasField is cheaper than WhichOneof
            if metric.is_null:  # null even if a value is set beside it
                value = None
            elif expected is not None and metric.HasField(expected):
                value = getattr(metric, expected)
            else:
                kind = metric.WhichOneof("value")
                if kind is None or kind == "bytes_value":
                    continue
                value = getattr(metric, kind)
            if type(value) is int:
                value = signed(value, metric.datatype or entry[2])
            ms = metric.timestamp or default_ms
            if ms != last_ms:
                sample = by_time.get(ms)
                if sample is None:
                    sample = by_time[ms] = {"ts": ms / 1000}
                last_ms = ms
            if target is None:
                sample[entry[0]] = value
                continue
            field_name, scale, offset = target
            if type(value) is not float:
                value = as_field(field_name, value)
            if scale != 1.0 or offset != 0.0:
                if type(value) is float:
                    value = value * scale + offset
            sample[field_name] = value
        if by_time:
            out.add_samples(topic, payload, self.site_id, machine, received_at, list(by_time.values()))

    # -- helpers --------------------------------------------------------------------------------------
    def _node_machine(self, key: tuple[str, str]) -> str | tuple[str] | None:
        return self._machine(key[1]) if self.options.node_is_machine else None

    def _device_machine(self, device: str) -> str | tuple[str]:
        return self._machine(device)

    def _machine(self, sparkplug_id: str) -> str | tuple[str]:
        found = self._machines.get(sparkplug_id)
        if found is None:
            machine = self.options.machine_ids.get(sparkplug_id, sparkplug_id)
            why = bad_id(machine)
            found = (why + " (map it in machine_ids)",) if why else machine
            if len(self._machines) < 100_000:
                self._machines[sparkplug_id] = found
        return found

    def _reject(self, out: Decoded, topic: str, payload: bytes, received_at: datetime, code: str, reason: str,
                machine: str | None = None) -> None:
        emit_reject(out, topic, payload, received_at, f"{NAME}: {reason}", code, self.site_id, machine)

    def _refuse(self, out: Decoded, topic: str, payload: bytes, received_at: datetime, key: tuple[str, str],
                code: str, reason: str) -> None:
        """Reject, stop trusting the node's state until its next NBIRTH, and ask it for one."""
        node = self.nodes.setdefault(key, EdgeNode())
        if node.waiting is None:
            node.waiting = reason
        now = time.monotonic()
        asked = ""
        if now - node.rebirth_at >= self.options.rebirth_interval_s:
            node.rebirth_at = now
            sent = self.publish(f"{NAMESPACE}/{key[0]}/NCMD/{key[1]}", rebirth_request())
            self.rebirths_sent += bool(sent)
            asked = "; rebirth requested" if sent else "; rebirth could not be requested (no broker session)"
        else:
            asked = "; rebirth already requested"
        self._reject(out, topic, payload, received_at, code, reason + asked)


class SparkplugB(DecoderPlugin):
    """Declaration: Sparkplug B 3.0 edge nodes and devices."""

    name = NAME
    version = "0.1.0"
    summary = "Sparkplug B 3.0 (protobuf): births, aliases, seq, deaths, rebirth requests; metrics mapped to fields"
    transport = "mqtt"
    Options = SparkplugOptions

    def create(self, route: Route, context: DecoderContext) -> SparkplugDecoder:
        return SparkplugDecoder(route, context.publish)
