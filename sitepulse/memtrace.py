"""A debugging aid for memory growth: ``SITEPULSE_MEMTRACE=DIR`` makes a role report where its memory goes.

    SITEPULSE_MEMTRACE=/tmp/mem SITEPULSE_MEMTRACE_EVERY_S=60 sitepulse run-services

Every ``SITEPULSE_MEMTRACE_EVERY_S`` seconds (default 60) the role appends one JSON line to
``DIR/<role>-<pid>.jsonl``: RSS, glibc's heap figures (``mallinfo2``: bytes in use by malloc, bytes free
inside its arenas, bytes in mmapped blocks) and, with ``SITEPULSE_MEMTRACE_FRAMES`` > 0 (default 0),
what ``tracemalloc`` traces: the total and the 12 source lines (1 frame) or call stacks (more frames) whose
traced memory grew most since the first report. tracemalloc slows a busy process several times over and
comparing snapshots of millions of objects takes long: start with RSS and glibc's figures.

Reading them: objects that pile up raise glibc's bytes in use (and show in tracemalloc's lines); RSS that
grows while bytes in use stay flat is the allocator holding freed memory (fragmentation), not a leak.

Off unless the variable is set; not a setting, because nothing in production should depend on it.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sitepulse import heap

ENV_DIR = "SITEPULSE_MEMTRACE"
ENV_EVERY = "SITEPULSE_MEMTRACE_EVERY_S"
ENV_FRAMES = "SITEPULSE_MEMTRACE_FRAMES"
TOP = 12


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_figures() -> dict[str, float]:
    """glibc's view of the heap in MB: in use by malloc, free inside its arenas, in mmapped blocks."""
    libc = heap.libc()
    mallinfo2 = getattr(libc, "mallinfo2", None) if libc is not None else None  # glibc 2.33 and later
    if mallinfo2 is None:
        return {}
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {"malloc_in_use_mb": info.uordblks / 2**20, "malloc_free_mb": info.fordblks / 2**20,
            "malloc_arena_mb": info.arena / 2**20, "malloc_mmap_mb": info.hblkhd / 2**20}


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_parts() -> dict[str, float]:
    """RSS split into anonymous memory (the heaps) and file-backed pages (code of loaded libraries), MB."""
    parts = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("RssAnon:", "RssFile:")):
                parts[line.split(":")[0].lower().replace("rss", "rss_") + "_mb"] = int(line.split()[1]) / 1024
    return parts


def pymalloc_figures() -> dict[str, float]:
    """Python's small-object allocator (objects up to 512 bytes, in 1 MB arenas that glibc does not see), MB.

    ``sys._debugmallocstats`` writes to file descriptor 2, which is pointed at a temporary file meanwhile
    (another thread's stderr output in that instant lands there too: a debugging aid's price).
    """
    wanted = {"arenas * ": "pymalloc_arenas_mb", "# bytes in allocated blocks": "pymalloc_in_use_mb"}
    with tempfile.TemporaryFile("w+") as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        figures = {}
        for line in sink:  # "3 arenas * 1048576 bytes/arena = 3,145,728", "# bytes in allocated blocks = ..."
            name, _, value = line.partition("=")
            key = next((k for marker, k in wanted.items() if marker in name), None)
            if key and key not in figures:
                figures[key] = int(value.strip().replace(",", "")) / 2**20
    return figures


def report(base: tracemalloc.Snapshot | None, started: float) -> tuple[dict[str, Any], tracemalloc.Snapshot | None]:
    """One report line, and the snapshot later reports compare with."""
    figures = {**rss_parts(), **heap_figures(), **pymalloc_figures()}
    line: dict[str, Any] = {"t_s": round(time.monotonic() - started, 1), "rss_mb": round(rss_mb(), 1),
                            **{k: round(v, 1) for k, v in figures.items()}}
    if not tracemalloc.is_tracing():
        return line, base
    line["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    if base is None:
        return line, snapshot
    line["grew"] = [{"kb": round(stat.size_diff / 1024, 1), "count": stat.count_diff,
                     "where": stat.traceback.format(most_recent_first=True)[::2][:6]}
                    for stat in snapshot.compare_to(base, "lineno" if tracemalloc.get_traceback_limit() == 1
                                                    else "traceback")[:TOP]]
    return line, base


def start_from_env(role: str) -> threading.Thread | None:
    """Start reporting if ``SITEPULSE_MEMTRACE`` is set; returns the reporting thread."""
    directory = os.environ.get(ENV_DIR)
    if not directory:
        return None
    every = float(os.environ.get(ENV_EVERY, "60"))
    frames = int(os.environ.get(ENV_FRAMES, "0"))
    path = Path(directory) / f"{role}-{os.getpid()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames > 0:
        tracemalloc.start(frames)
    started = time.monotonic()

    def loop() -> None:
        base = None
        while True:
            time.sleep(every)
            line, base = report(base, started)
            with path.open("a") as out:
                out.write(json.dumps(line) + "\n")

    thread = threading.Thread(target=loop, name="memtrace", daemon=True)
    thread.start()
    return thread
