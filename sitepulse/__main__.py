"""Allow ``python -m sitepulse`` (used by ``serve`` to start its child processes)."""

from sitepulse.cli import app

app()
