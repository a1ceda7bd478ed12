"""MQTT topic contract v1: which topics ingest subscribes to and how ids come out of them."""

from __future__ import annotations

import re
import zlib
from typing import NamedTuple

from sitepulse.settings import partition_spec

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


class Partition(NamedTuple):
    """Worker ``index`` of ``count`` partitioned workers: it takes the machines :func:`owner` gives it."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, topic: str) -> bool:
        return self.count <= 1 or owner(topic, self.count) == self.index


def parse_partition(text: str) -> Partition:
    """``"i/N"`` (0 <= i < N) as a Partition; ValueError with a readable reason otherwise."""
    specs = partition_spec(text)
    if len(specs) != 1:
        raise ValueError(f"{text[:40]!r} is one INDEX/COUNT, e.g. 0/3")
    return Partition(*specs[0])


def parse_partitions(text: str) -> tuple[Partition, ...]:
    """``"i/N"`` or, while the number of workers changes, ``"i/N,j/M"``: the worker stores what either owns."""
    return tuple(Partition(index, count) for index, count in partition_spec(text))


def site_filters(site_id: str) -> tuple[str, str, str]:
    """The telemetry, birth and status filters of one site (what a site-routed worker subscribes to)."""
    return tuple(f"sites/{site_id}/machines/+/{kind}" for kind in KINDS)  # type: ignore[return-value]


def assigned_sites(sites_text: str, partitions: tuple[Partition, ...]) -> tuple[str, ...]:
    """The sites of ``SITEPULSE_INGEST_SITES`` a worker subscribes to: positions INDEX, INDEX+COUNT, ... of the list.

    By position, not by hash, so N workers take sites evenly (a hash of 8 sites over 2 workers can give 6 and 2).
    With ``i/N,i/M`` (while the number of workers changes) the worker takes what either rule gives it. No
    partition: every site. ValueError with a readable reason for an id that is not a topic level.
    """
    sites = [s.strip() for s in sites_text.split(",") if s.strip()]
    if not sites:
        raise ValueError("names no site")
    for site in sites:
        if not ID_PATTERN.fullmatch(site):
            raise ValueError(f"site id {site[:80]!r} is not 1-64 characters of A-Z a-z 0-9 _ . -")
    if len(set(sites)) != len(sites):
        raise ValueError("names a site twice")
    if not partitions:
        return tuple(sites)
    return tuple(s for i, s in enumerate(sites) if any(p.count <= 1 or i % p.count == p.index for p in partitions))


def owner(topic: str, count: int) -> int:
    """Which of ``count`` partitioned workers owns a message: crc32 of its site and machine levels mod count.

    Stable across processes, hosts and Python versions (unlike ``hash``), and the same for a machine's
    telemetry, birth and status, so one worker sees everything of a machine in arrival order.
    """
    if count <= 1:
        return 0
    levels = topic.split("/", 4)
    key = f"{levels[1]}/{levels[3]}" if len(levels) >= 4 else topic
    return zlib.crc32(key.encode("utf-8", "replace")) % count


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
