"""Sparkplug B message classes built at import from ``sparkplug_b.proto`` (no generated module to keep in step).

The .proto is a small proto2 subset (nested messages, optional/repeated scalar and message fields, one
oneof), so a few lines read it into a FileDescriptorProto; ``protobuf`` then provides the real parser and
serializer. A .proto outside that subset raises at import, loudly.
"""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PROTO = Path(__file__).with_name("sparkplug_b.proto")
_F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64, "int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64,
    "float": _F.TYPE_FLOAT, "double": _F.TYPE_DOUBLE, "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}
_TOKEN = re.compile(r"//[^\n]*|[A-Za-z_][A-Za-z0-9_.]*|\d+|\"[^\"]*\"|[{};=]")


def _tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text) if not t.startswith("//")]


def file_descriptor(text: str) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of a .proto in the supported subset."""
    tokens = _tokens(text)
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = tokens[pos]
        if expected is not None and token != expected:
            raise ValueError(f"{PROTO.name}: expected {expected!r}, found {token!r}")
        pos += 1
        return token

    proto = descriptor_pb2.FileDescriptorProto(name=PROTO.name, syntax="proto2")
    while pos < len(tokens):
        word = take()
        if word == "syntax":
            take("=")
            take()
            take(";")
        elif word == "package":
            proto.package = take()
            take(";")
        elif word == "message":
            _message(proto.message_type.add(), take, lambda: tokens[pos], f".{proto.package}")
        else:
            raise ValueError(f"{PROTO.name}: unsupported {word!r}")
    return proto


def _message(message: descriptor_pb2.DescriptorProto, take, peek, scope: str) -> None:
    message.name = take()
    full = f"{scope}.{message.name}"
    nested: set[str] = set()
    take("{")
    oneof: int | None = None
    while True:
        word = take()
        if word == "}":
            if oneof is None:
                return
            oneof = None
            continue
        if word == "message":
            nested.add(peek())
            _message(message.nested_type.add(), take, peek, full)
            continue
        if word == "oneof":
            oneof = len(message.oneof_decl)
            message.oneof_decl.add(name=take())
            take("{")
            continue
        label = _F.LABEL_OPTIONAL
        if word in ("optional", "repeated"):
            label = _F.LABEL_REPEATED if word == "repeated" else _F.LABEL_OPTIONAL
            word = take()
        field = message.field.add(name="", number=0, label=label)
        if word in SCALARS:
            field.type = SCALARS[word]
        else:
            field.type = _F.TYPE_MESSAGE
            field.type_name = f"{full}.{word}" if word in nested else f"{scope}.{word}"
        field.name = take()
        take("=")
        field.number = int(take())
        take(";")
        if oneof is not None:
            field.oneof_index = oneof


def _build() -> type:
    pool = descriptor_pool.DescriptorPool()
    proto = file_descriptor(PROTO.read_text())
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{proto.package}.Payload"))


Payload = _build()
Metric = Payload.Metric
