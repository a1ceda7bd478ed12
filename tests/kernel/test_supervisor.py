"""The one process supervisor: a child that dies is restarted, and stop ends every child."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from sitepulse.supervisor import Child, Supervisor
from tests.conftest import wait_until


def test_a_killed_child_is_restarted_and_stop_ends_them_all() -> None:
    supervisor = Supervisor(grace_s=5)
    supervisor.add_function("sleeper", time.sleep, 120)  # a spawned Python function, as ingest's workers
    supervisor.children.append(Child("shell", lambda: subprocess.Popen(["sleep", "120"])))  # as sub-commands
    watcher = threading.Thread(target=supervisor.run, daemon=True)
    watcher.start()
    assert wait_until(lambda: all(c.process is not None and c.process.poll() is None for c in supervisor.children))
    first = {c.name: c.process.pid for c in supervisor.children}
    for child in supervisor.children:
        os.kill(child.process.pid, signal.SIGKILL)
    assert wait_until(lambda: all(c.process is not None and c.process.pid != first[c.name]
                                 and c.process.poll() is None for c in supervisor.children))
    processes = [c.process for c in supervisor.children]
    supervisor.stopping.set()
    watcher.join(10)
    assert not watcher.is_alive()
    assert all(p.poll() is not None for p in processes)  # SIGTERM reached each
