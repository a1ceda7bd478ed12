"""Host slots: no more runners stepping than slots, a dead runner's slot free at once, one set per database; and
the runners present on the host counted exactly."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from microservices.host_slots import HostSlots

URL = "postgresql://sitepulse@127.0.0.1:5433/site_a"


def _stop_after(seconds: float) -> threading.Event:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return stop


def test_a_runner_waits_for_a_free_slot_and_takes_it_when_one_is_given_back(tmp_path: Path) -> None:
    first, second = HostSlots(URL, 2, tmp_path), HostSlots(URL, 2, tmp_path)
    held = [first.acquire(threading.Event()), first.acquire(threading.Event())]
    assert None not in held
    began = time.monotonic()
    assert second.acquire(_stop_after(0.3)) is None  # both taken: it waits, holding nothing, until stopped
    assert time.monotonic() - began >= 0.25
    first.release(held.pop())
    assert second.acquire(_stop_after(5)) is not None


def test_a_killed_runners_slot_and_presence_are_gone_at_once(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, threading, time\nfrom pathlib import Path\n"
         "from microservices.host_slots import HostSlots\n"
         f"slots = HostSlots({URL!r}, 1, Path({str(tmp_path)!r}))\n"
         "slots.join()\nslots.acquire(threading.Event())\nprint('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        slots = HostSlots(URL, 1, tmp_path)
        assert slots.acquire(_stop_after(0.2)) is None
        assert slots.runners() == 1
        holder.kill()
        holder.wait(10)
        began = time.monotonic()
        assert slots.acquire(_stop_after(5)) is not None
        assert time.monotonic() - began < 1
        assert slots.runners() == 0 and not list((slots.directory / "runners").iterdir())  # its file removed
    finally:
        holder.kill()


def test_runners_present_are_counted_until_they_leave(tmp_path: Path) -> None:
    first, second = HostSlots(URL, 2, tmp_path), HostSlots(URL, 2, tmp_path)
    first.join()
    second.join()
    assert first.runners() == second.runners() == 2
    second.leave()
    assert first.runners() == 1
    first.leave()
    assert first.runners() == 0


def test_each_database_has_its_own_slots(tmp_path: Path) -> None:
    here, there = HostSlots(URL, 1, tmp_path), HostSlots(URL.replace("site_a", "site_b"), 1, tmp_path)
    assert here.acquire(threading.Event()) is not None
    assert there.acquire(_stop_after(2)) is not None
    assert HostSlots(URL.replace("sitepulse@", "other:secret@"), 1, tmp_path).directory == here.directory
