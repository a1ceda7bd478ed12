"""MQTT topic contract v1: which topics ingest subscribes to and how ids come out of them."""

from __future__ import annotations

import re
from typing import NamedTuple

SHARE_GROUP = "sitepulse-ingest"
TELEMETRY_FILTER = "sites/+/machines/+/telemetry"
BIRTH_FILTER = "sites/+/machines/+/birth"
STATUS_FILTER = "sites/+/machines/+/status"
KINDS = ("telemetry", "birth", "status")
ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class TopicIds(NamedTuple):
    """Ids and message kind of a contract topic."""

    site_id: str
    machine_id: str
    kind: str


def telemetry_topic(site_id: str, machine_id: str) -> str:
    """Where a device publishes its samples."""
    return f"sites/{site_id}/machines/{machine_id}/telemetry"


def shared(topic_filter: str, group: str = SHARE_GROUP) -> str:
    """The MQTT v5 shared-subscription form, so N workers split one stream."""
    return f"$share/{group}/{topic_filter}"


def parse_topic(topic: str) -> TopicIds | str:
    """Ids from a contract topic, or a readable reason why the topic breaks the contract."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "sites" or parts[2] != "machines" or parts[4] not in KINDS:
        return (
            f"topic {topic[:200]!r} is not sites/{{site_id}}/machines/{{machine_id}}/telemetry|birth|status"
        )
    site_id, machine_id = parts[1], parts[3]
    for name, value in (("site_id", site_id), ("machine_id", machine_id)):
        if not ID_PATTERN.fullmatch(value):
            return f"topic {name} {value[:80]!r} is not 1-64 characters of A-Z a-z 0-9 _ . -"
    return TopicIds(site_id, machine_id, parts[4])
