"""A card's context read on its own: what the site view builds once per page, for one card (tests, scripts).

The SDK's ``CardContext`` is a plain record so a plugin's card imports no database code; this module fills it
through the owners' functions: the site file (``sitepulse.sites``), the devices' births (``ingest.fleet``) and the
alert count (``microservices.alerts``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial

import psycopg

from ingest.fleet import births as fleet_births
from microservices.alerts import alert_count
from microservices.frames import frame_reader
from microservices.sdk import CardContext, SiteView
from sitepulse.sites import load_site


def load_card_context(conn: psycopg.Connection, site_id: str, service: str, *, site: SiteView | None = None,
                      births: Iterable[tuple[str, str | None, str | None, float | None]] | None = None,
                      now: datetime | None = None) -> CardContext:
    """The context of ``service``'s card at ``site_id``; ``site`` and ``births`` when the caller already has them
    (the site view: the page's site file and fleet), else read; ``now`` defaults to the current time."""
    view = site if site is not None else SiteView.of(load_site(conn, site_id))
    machines = view.with_births(fleet_births(conn, site_id) if births is None else births)
    return CardContext(site_id, service, frame_reader(conn), view, machines, now or datetime.now(UTC),
                       partial(alert_count, conn, site_id))
