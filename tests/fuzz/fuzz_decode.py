"""atheris harness for the MQTT payload decoder: ``python tests/fuzz/fuzz_decode.py -runs=20000``.

Every input must decode into stored rows and/or rejects with a one-line reason; anything else
(an exception, a sample both stored and rejected, a reason with a newline) is a crash atheris reports.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import atheris

with atheris.instrument_imports():
    from ingest.contract import Decoded, Decoder

TOPICS = ("sites/fz/machines/m1/telemetry", "sites/fz/machines/m1/birth", "sites/fz/machines/m1/status",
          "sites/fz/machines/m1/other", "sites//machines/m1/telemetry")
DECODER = Decoder(max_payload_bytes=4096)
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def one_input(data: bytes) -> None:
    if not data:
        return
    topic = TOPICS[data[0] % len(TOPICS)]
    payload = data[1:]
    out = Decoded()
    DECODER.decode_into(out, topic, payload, RECEIVED)
    handled = len(out.rows) + len(out.rejects) + len(out.births) + len(out.statuses)
    if topic.endswith("/telemetry"):
        assert handled >= 1, "a telemetry message was neither stored nor rejected"
    for reject in out.rejects:
        assert reject.reason and "\n" not in reject.reason, reject.reason
        assert reject.payload is not None
    for row in out.rows:
        assert row[0] == "fz" and row[1] == "m1", row[:2]


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
