"""The ``sitepulse ingest`` command (mounted by the kernel CLI; no app of its own here)."""

from __future__ import annotations

from typing import Annotated

import typer

from ingest.worker import run_workers
from sitepulse.settings import get_settings


def ingest(
    workers: Annotated[int, typer.Option(min=1, help="worker processes sharing the MQTT subscription")] = 1,
) -> None:
    """Consume telemetry from MQTT into PostgreSQL until SIGTERM/Ctrl-C (acks only after commit)."""
    run_workers(get_settings(), workers)
