"""``sitepulse site credentials SITE``: the MQTT user and password a site's devices use on the embedded broker.

Made on first use (kept in the embedded data directory, 0600) and taken by a running ``serve``/``demo`` broker at once
(SIGHUP): a new site's fleet can connect without a restart. A configured broker (``SITEPULSE_MQTT_URL``) has its
own operator and files (production: ``scripts/compose_secrets.py``), so the command refuses to invent accounts for it.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from sitepulse.db import connect
from sitepulse.embedded.broker import listener_address, reload_broker, wait_until_accepted, with_user
from sitepulse.embedded.mqtt_accounts import BrokerAccounts, device_user
from sitepulse.errors import ConfigError, SitePulseError
from sitepulse.runtime import open_runtime
from sitepulse.settings import get_settings
from sitepulse.sites import check_site_id, site_exists

err = Console(stderr=True)


def site_credentials(site: Annotated[str, typer.Argument(help="site id whose devices connect")]) -> None:
    """Print the embedded broker's user and password for a site's devices (made on first use)."""
    settings = get_settings()
    if settings.mqtt_url:
        raise ConfigError("SITEPULSE_MQTT_URL", "names a broker of its own: its operator gives each site's devices"
                          " their credentials (docker compose: scripts/compose_secrets.py --sites ...)")
    check_site_id(site)
    with open_runtime(settings, broker=False) as runtime, connect(runtime.database_url) as conn:
        if not site_exists(conn, site):
            raise SitePulseError(f"site {site!r} not found: load its site file first (sitepulse site load {site} FILE)")
    folder = (settings.data_dir / "mosquitto").absolute()
    user, password = device_user(site), BrokerAccounts(folder).ensure_site(site)
    address = listener_address(folder)
    typer.echo(f"user: {user}\npassword: {password}")
    if address is not None:
        typer.echo(f"url: {with_user(f'mqtt://{address[0]}:{address[1]}', user, password)}")
    rules = f"publish under sites/{site}/machines/+/(telemetry|birth|status) only, read sites/{site}/alerts/#"
    if reload_broker(folder) and address is not None:
        taken = wait_until_accepted(with_user(f"mqtt://{address[0]}:{address[1]}", user, password))
        err.print(f"devices of site {site} may {rules}; the running broker " + (
            "takes them now" if taken else "did not take them yet: see its mosquitto.log"), highlight=False)
    else:
        err.print(f"devices of site {site} may {rules}; the embedded broker takes them when `sitepulse serve` or"
                  " `demo` next starts", highlight=False)
