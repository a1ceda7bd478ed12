"""Independent scoring runs on every core: each is a whole simulation, and a test needs several."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def run_in_parallel(function: Callable[..., Any], calls: list[dict[str, Any]]) -> list[Any]:
    """``function(**call)`` for each call, in order, in spawned processes (the test process runs threads)."""
    workers = min(len(calls), os.cpu_count() or 1)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(function, **call) for call in calls]
        return [future.result() for future in futures]
