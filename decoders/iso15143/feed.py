"""An OEM's ISO 15143-3 (AEMP 2.0) feed pulled over HTTP: fleet snapshot pages, then time series per machine.

Each poll follows the snapshot's ``Links rel="next"`` through every page, then, for each machine and each
configured time series (``Locations``, ``OperatingHours``...), asks for the window since that series' last
poll, page by page. The cursor (kept by the host, decoders/feeds.py) holds, per machine, the time of the
newest reading already taken of each element kind, and per machine and series the end of the last window, so
the next poll sends only what is new (and the database stores a reading met twice once: unique site,
machine, ts and seq, where seq is the set of element kinds in the sample). Credentials come from environment variables
named in the feed's options.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote, urljoin

import httpx
from pydantic import Field, field_validator

from decoders.feeds import FeedUnavailable
from decoders.iso15143.reader import Equipment, FeedFormatError, merge, read_document
from decoders.sdk import DecoderContext, DecoderPlugin, Route, StrictOptions, bad_id, emit_reject, emit_samples
from ingest.contract import Decoded

NAME = "iso15143-3"
MAX_PAGES = 1000
SERIES = ("Locations", "OperatingHours", "IdleOperatingHours", "FuelUsed", "Distance", "EngineCondition", "FaultCodes")
SeriesName = Literal["Locations", "OperatingHours", "IdleOperatingHours", "FuelUsed", "Distance", "EngineCondition",
                     "FaultCodes"]


class Iso15143Options(StrictOptions):
    """A feed's settings (decoders/iso15143/sample.toml is the commented example)."""

    url: str = Field(description="the first fleet snapshot page, e.g. https://oem.example/aemp/Fleet/1")
    name: str | None = Field(None, description="checkpoint key; default the URL")
    interval_s: float = Field(600.0, ge=1)
    format: Literal["json", "xml"] = "json"
    token_env: str | None = Field(None, description="environment variable holding a bearer token")
    username: str | None = None
    password_env: str | None = Field(None, description="environment variable holding the basic-auth password")
    machine_from: Literal["EquipmentID", "SerialNumber", "PIN"] = "EquipmentID"
    machine_ids: dict[str, str] = Field(default_factory=dict, description="OEM id -> SitePulse machine id")
    series: list[SeriesName] = Field(default_factory=list, description="time series pulled per machine")
    series_url: str = Field("{fleet}/Equipment/ID/{id}/{series}/{start}/{end}/1",
                            description="time-series URL; {fleet} is the snapshot URL up to /Fleet")
    since_hours: float = Field(24.0, gt=0, description="how far back the first time-series poll reaches")
    timeout_s: float = Field(30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or "/fleet" not in value.lower():
            raise ValueError("must be an http(s) URL of a fleet snapshot page (.../Fleet/1)")
        return value


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Iso15143Pull:
    """One feed: fetches pages with its credentials and turns them into samples of its site."""

    def __init__(self, route: Route) -> None:
        self.options: Iso15143Options = route.options
        self.site_id = route.site_id
        self.key = self.options.name or self.options.url
        self.interval_s = self.options.interval_s
        cut = self.options.url.lower().rfind("/fleet")
        self.fleet_url = self.options.url[: cut + len("/fleet")]

    def _client(self) -> httpx.Client:
        options = self.options
        headers = {"Accept": "application/xml" if options.format == "xml" else "application/json"}
        auth = None
        if options.token_env:
            token = os.environ.get(options.token_env)
            if not token:
                raise FeedUnavailable(f"environment variable {options.token_env} (the feed's token) is not set")
            headers["Authorization"] = f"Bearer {token}"
        elif options.username:
            password = os.environ.get(options.password_env or "", "")
            auth = httpx.BasicAuth(options.username, password)
        return httpx.Client(headers=headers, auth=auth, timeout=options.timeout_s, follow_redirects=True)

    def _get(self, client: httpx.Client, url: str, missing_ok: bool) -> bytes:
        """The body; b"" for a 404 where that means "no data" (a time-series window), else FeedUnavailable."""
        try:
            response = client.get(url)
        except httpx.HTTPError as exc:
            raise FeedUnavailable(f"GET {url}: {type(exc).__name__}: {exc}") from None
        if response.status_code == 404 and missing_ok:
            return b""
        if response.status_code >= 400:
            raise FeedUnavailable(f"GET {url}: HTTP {response.status_code}")
        return response.content

    def poll(self, out: Decoded, cursor: dict[str, Any]) -> dict[str, Any]:
        """Every snapshot page, then every configured time series since the last poll; the new cursor."""
        now = datetime.now(UTC)
        taken: dict[str, dict[str, str]] = {k: dict(v) for k, v in cursor.get("taken", {}).items()}
        windows: dict[str, str] = dict(cursor.get("windows", {}))
        machines: dict[str, str] = dict(cursor.get("machines", {}))  # OEM equipment id -> machine id
        with self._client() as client:
            for url, body, document in self._pages(client, out, self.options.url, now, missing_ok=False):
                for equipment in document.equipment:
                    machine = self._machine(out, url, body, now, equipment)
                    if machine is not None:
                        if equipment.equipment_id:
                            machines[equipment.equipment_id] = machine
                        self._emit(out, url, body, now, machine, equipment, taken, series=False)
            for equipment_id, machine in sorted(machines.items()):
                for series in self.options.series:
                    window = f"{equipment_id}/{series}"
                    start = windows.get(window) or _iso(now - timedelta(hours=self.options.since_hours))
                    first = self.options.series_url.format(fleet=self.fleet_url, id=quote(equipment_id, safe=""),
                                                           series=series, start=start, end=_iso(now))
                    for url, body, document in self._pages(client, out, first, now, missing_ok=True):
                        for equipment in document.equipment:
                            self._emit(out, url, body, now, machine, equipment, taken, series=True)
                    windows[window] = _iso(now)
        return {"taken": taken, "windows": windows, "machines": machines}

    def _pages(self, client: httpx.Client, out: Decoded, url: str | None, now: datetime, missing_ok: bool):
        """(url, body, document) of each page, following Links rel="next" (at most MAX_PAGES, never a loop)."""
        seen: set[str] = set()
        while url and url not in seen and len(seen) < MAX_PAGES:
            seen.add(url)
            body = self._get(client, url, missing_ok)
            if not body:
                return
            try:
                document = read_document(body)
            except FeedFormatError as exc:
                emit_reject(out, url, body, now, f"{NAME}: {exc}", "format", self.site_id)
                return
            yield url, body, document
            url = urljoin(url, document.next_url) if document.next_url else None

    def _machine(self, out: Decoded, url: str, body: bytes, now: datetime, equipment: Equipment) -> str | None:
        source = {"EquipmentID": equipment.equipment_id, "SerialNumber": equipment.serial_number,
                  "PIN": equipment.pin}[self.options.machine_from]
        if source is None:
            emit_reject(out, url, body, now, f"{NAME}: an Equipment entry has no {self.options.machine_from}",
                        "machine-id", self.site_id)
            return None
        machine = self.options.machine_ids.get(source)
        if machine is None:
            machine = source.rsplit(":", 1)[-1]  # SitePulse's own EquipmentID is site:machine
        why = bad_id(machine)
        if why:
            emit_reject(out, url, body, now, f"{NAME}: machine id {why} (map it in machine_ids)", "machine-id",
                        self.site_id)
            return None
        return machine

    def _emit(self, out: Decoded, url: str, body: bytes, now: datetime, machine: str, equipment: Equipment,
              taken: dict[str, dict[str, str]], series: bool) -> None:
        """The machine's new readings as samples; ``taken`` (per kind, the newest time taken) is updated.

        A snapshot repeats the newest reading of each kind until it changes: only later ones are new. A time
        series returns history: everything is new except the very reading already taken (a window boundary,
        or the snapshot's reading met again).
        """
        for problem in equipment.problems:
            emit_reject(out, url, body, now, f"{NAME}: {machine}: {problem}", "element", self.site_id, machine)
        newest = taken.setdefault(machine, {})
        before = dict(newest)  # several readings of one kind may share a time (two fault codes)
        fresh = []
        for reading in equipment.readings:
            seen = before.get(reading.family)
            seen_at = datetime.fromisoformat(seen) if seen else None
            if seen_at is not None and (reading.at == seen_at or (not series and reading.at < seen_at)):
                continue
            fresh.append(reading)
            if reading.family not in newest or reading.at > datetime.fromisoformat(newest[reading.family]):
                newest[reading.family] = reading.at.isoformat()
        if fresh:
            emit_samples(out, url, body, self.site_id, machine, now, merge(fresh))


class Iso15143Feed(DecoderPlugin):
    """Declaration: ISO 15143-3 (AEMP 2.0) fleet feeds pulled over HTTP."""

    name = NAME
    version = "0.1.0"
    summary = "ISO 15143-3 / AEMP 2.0 feeds over HTTP: fleet snapshot and time series, JSON or XML, checkpointed"
    transport = "http"
    Options = Iso15143Options

    def create(self, route: Route, context: DecoderContext) -> Iso15143Pull:
        return Iso15143Pull(route)
