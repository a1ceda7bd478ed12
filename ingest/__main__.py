"""``python -m ingest [--workers N]``: run ingest from SITEPULSE_* variables (tests start it this way)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ingest.worker import run_workers
from sitepulse.errors import SitePulseError
from sitepulse.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    """Parse --workers, run, and print user errors as one line."""
    parser = argparse.ArgumentParser(prog="python -m ingest")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("SITEPULSE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        run_workers(get_settings(), args.workers)
    except SitePulseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
