"""Keeping a long-running process's heap from holding freed memory (glibc only; elsewhere a no-op).

The service runner's memory in use is flat, but after bursts (a catch-up after PostgreSQL was away, a
restart's backlog) glibc keeps the freed pages in its arenas, one arena per thread that ever allocated,
so RSS rises step by step with each new high-water mark (docs/RELIABILITY.md, "Soak"). Two remedies:

- :func:`limit_arenas` caps the number of malloc arenas (``mallopt(M_ARENA_MAX)``), so service threads
  share freed memory instead of each keeping its own; call it before the threads start. The
  ``MALLOC_ARENA_MAX`` environment variable, when set, wins.
- :func:`trim` returns free pages of every arena to the system (``malloc_trim(0)``, which since glibc
  2.8 also releases whole free pages inside an arena), at most once per ``min_interval_s``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from functools import cache
from typing import Any

M_ARENA_MAX = -8  # glibc's mallopt parameter number


@cache
def libc() -> Any:
    """glibc, loaded once with the prototypes used here and in sitepulse.memtrace; None elsewhere."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        lib.malloc_trim.argtypes = [ctypes.c_size_t]
        lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return lib
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None


def limit_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``count`` unless MALLOC_ARENA_MAX is set; True if applied."""
    lib = libc()
    if lib is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(lib.mallopt(M_ARENA_MAX, count))


_lock = threading.Lock()
_last = 0.0


def trim(min_interval_s: float = 30.0) -> bool:
    """Give free heap pages back to the system, unless another call did so within ``min_interval_s``."""
    global _last
    lib = libc()
    if lib is None:
        return False
    with _lock:
        now = time.monotonic()
        if now - _last < min_interval_s:
            return False
        _last = now
    lib.malloc_trim(0)
    return True
