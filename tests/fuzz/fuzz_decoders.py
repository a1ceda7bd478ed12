"""atheris harness for the decoders in front of ingest, by hand: ``python tests/fuzz/fuzz_decoders.py -runs=100000``.

The first byte picks the input family (mapped JSON, each Sparkplug B message kind, an ISO 15143-3 document), the
rest is the payload. Every input must end as samples, statuses or rejects with a one-line reason (Sparkplug
commands excepted); an exception or a multi-line reason is a crash atheris reports. Sparkplug state carries over
between inputs, as it does in a worker. CI runs the hypothesis property tests beside this file instead.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import atheris

with atheris.instrument_imports():
    from decoders.config import parse_entries
    from decoders.discovery import discover_decoders
    from decoders.front import build_front
    from decoders.iso15143.reader import FeedFormatError, read_document
    from decoders.mapped_json.decoder import MappedJsonDecoder  # noqa: F401 (instrumented before discovery)
    from decoders.sparkplug.decoder import SparkplugDecoder  # noqa: F401
    from ingest.contract import Decoded, Decoder

CONFIG = {"route": [
    {"decoder": "mapped-json", "site": "fz", "topics": ["fz/+/up"], "options": {
        "records": "r", "ts": "t", "ts_format": "epoch_ms", "fields": {"lat": "p.la", "engine_on": "ign"}}},
    {"decoder": "sparkplug-b", "site": "fz", "topics": ["spBv1.0/g/#"], "options": {
        "metrics": {"lat": "lat", "on": "engine_on"}}},
]}
PLUGINS = discover_decoders()
FRONT = build_front(Decoder(max_payload_bytes=4096), parse_entries(CONFIG, "fuzz.toml", PLUGINS), PLUGINS,
                    publish=lambda topic, payload: True)
TOPICS = ("fz/m1/up", "spBv1.0/g/NBIRTH/e", "spBv1.0/g/NDATA/e", "spBv1.0/g/DBIRTH/e/d", "spBv1.0/g/DDATA/e/d",
          "spBv1.0/g/NDEATH/e", "spBv1.0/g/DDEATH/e/d", "aemp")
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def one_input(data: bytes) -> None:
    if not data:
        return
    topic, payload = TOPICS[data[0] % len(TOPICS)], data[1:]
    if topic == "aemp":
        try:
            document = read_document(payload)
        except FeedFormatError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
        for equipment in document.equipment:
            assert all(p and "\n" not in p for p in equipment.problems)
        return
    out = Decoded()
    FRONT.decode_into(out, topic, payload, RECEIVED)
    for reject in out.rejects:
        assert reject.reason and "\n" not in reject.reason, reject.reason
    if topic == "fz/m1/up":
        assert len(out.rows) + len(out.rejects) >= 1, "a tracker message was neither stored nor rejected"


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
