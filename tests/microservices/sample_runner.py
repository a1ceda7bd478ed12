"""A runner process for tests: ``python sample_runner.py URL Class[,Class...] [LEASE_S]`` (sample_services' classes).

Steps read at most ``MAX_ROWS`` (env, default 25) rows, so a test sees a site's catch-up as many steps.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import sample_services  # noqa: E402

from microservices.pairs import LEASE_S  # noqa: E402
from microservices.runner import Runner  # noqa: E402


def main() -> None:
    url, classes = sys.argv[1], sys.argv[2].split(",")
    lease_s = float(sys.argv[3]) if len(sys.argv) > 3 else LEASE_S
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(threadName)s %(message)s")
    services = {s.name: s for s in (getattr(sample_services, c)() for c in classes)}
    Runner(url, services, max_rows=int(os.environ.get("MAX_ROWS", "25")), lease_s=lease_s, trace=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
