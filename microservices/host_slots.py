"""Host slots: at most as many runners stepping on a host as it has cores.

Runner processes started beyond a host's cores (``run-services --workers N``, containers sharing a kernel, a
provider starting one more to be safe) time-slice their CPU-bound steps, and every switch evicts the other's
working set: four runners on two cores caught up 7-10 % slower than two (benchmarks/runner_scale.py). So a
runner's first worker holds one of the host's slots while it claims and steps pairs, and a runner without a slot
stands by, holding no lease. A runner's second worker (overlapping its database waits) steps only while the host
has fewer runners than cores: beyond that, two threads of one process take turns at the GIL at a cost.

Slots and presence are exclusive ``flock``s on files: the kernel drops them when their process dies, SIGKILL
included, so neither outlives its runner. They are per database (the directory is named after it), so
deployments that share a host, and tests, do not wait for each other.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import tempfile
import threading
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

POLL_S = 0.02  # how often a runner without a slot looks for a free one


def host_cores() -> int:
    """The cores this process may run on (its affinity: a container's cpuset, not the machine's count)."""
    return len(os.sched_getaffinity(0))


class HostSlots:
    """``count`` slots shared by the runners of one database on this host."""

    def __init__(self, database_url: str, count: int, root: Path | None = None) -> None:
        info = conninfo_to_dict(database_url)
        where = f"{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"
        root = root or Path(tempfile.gettempdir()) / f"sitepulse-runner-slots-{os.getuid()}"
        self.directory = root / hashlib.sha256(where.encode()).hexdigest()[:16]
        self.count = max(1, count)
        self.presence: tuple[int, Path] | None = None

    def acquire(self, stop: threading.Event) -> int | None:
        """Wait for a free slot and hold it; returns its descriptor (for ``release``), or None once ``stop`` is set."""
        self.directory.mkdir(parents=True, exist_ok=True)
        while not stop.is_set():
            for index in range(self.count):
                fd = os.open(self.directory / f"{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    os.close(fd)
            stop.wait(POLL_S)
        return None

    @staticmethod
    def release(fd: int) -> None:
        """Give the slot back (closing the descriptor drops its lock)."""
        os.close(fd)

    def join(self) -> None:
        """Count this runner as present on the host until ``leave`` (or its process ends)."""
        present = self.directory / "runners"
        present.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(present / f"{name}.new", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = present / f"{name}.lock"
        os.rename(present / f"{name}.new", path)  # locked before it is visible: never counted as dead
        self.presence = (fd, path)

    def leave(self) -> None:
        """No longer count this runner (its slot files stay: unlinking a locked file would let two hold it)."""
        if self.presence is not None:
            fd, path = self.presence
            path.unlink(missing_ok=True)
            os.close(fd)
            self.presence = None

    def runners(self) -> int:
        """Runners present on this host for this database (a dead runner's file is removed on the way)."""
        count = 0
        for path in (self.directory / "runners").glob("*.lock"):
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)  # nobody holds it: its runner is gone
            except BlockingIOError:
                count += 1
            finally:
                os.close(fd)
        return count
