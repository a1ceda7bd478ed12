"""``sitepulse api``: the HTTP API alone (contributed through the ``sitepulse.cli`` entry points)."""

from __future__ import annotations

from rich.console import Console

from sitepulse.logs import configured_settings
from sitepulse.runtime import check_api_port, open_runtime

console = Console(stderr=True)


def api() -> None:
    """Run the HTTP API (uses the configured or embedded database and broker)."""
    settings = configured_settings()
    check_api_port(settings)
    with open_runtime(settings, mqtt_user="api") as runtime:
        import uvicorn

        from registry.api.app import create_app

        runtime.announce(console, [f"API on http://{settings.api_host}:{settings.api_port}"])
        uvicorn.run(
            create_app(runtime.database_url, runtime.mqtt_url),
            host=settings.api_host,
            port=settings.api_port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
