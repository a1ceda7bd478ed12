"""``sitepulse demo --history-days N``: weeks of history through the real pipeline before the live quarry starts.

The simulator publishes one shift a day (simulators/history.py) to the broker at full speed; ingest stores it
and the service runner processes it as it would live data. Then the switches are dated as the simulated truth
says (weight loading and traffic awareness switched on at the switch day, positioning on from the start), and the
site manager's use of the services on those days is recorded (a card view a day each, an export of the cycles
every third day), so the Evaluation page has something to judge.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

CATCH_UP_TIMEOUT_S = 600.0


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console)


def _services_behind(conn, site_id: str) -> list[str]:
    """Enabled services whose checkpoint has not yet passed the newest stored telemetry row of the site."""
    from ingest.reader import newest_xid
    from microservices.progress import read_watermark
    from registry.enablement import site_enablements

    newest = newest_xid(conn, site_id)
    if newest is None:
        return []
    behind = []
    for service, enablement in site_enablements(conn, site_id).items():
        mark = read_watermark(conn, service, site_id) if enablement.enabled else None
        if enablement.enabled and (mark is None or mark.xmin <= newest):
            behind.append(service)
    return behind


def _wait_for_ingest(database_url: str, mqtt_url: str, site_id: str, day: list, stop: threading.Event,
                     progress: Progress, task: int, timeout_s: float = 180.0) -> bool:
    """Publish the history's first telemetry message until ingest has stored it: messages sent before ingest has
    subscribed would be lost (it is stored once however often it is sent: ingest drops duplicates)."""
    from ingest.reader import has_sample
    from simulators.outputs import publish_live
    from sitepulse.db import connect

    probe = next(m for m in day if m.kind == "telemetry")
    machine, first_ts = probe.topic.split("/")[3], json.loads(probe.payload)[0]["ts"]
    deadline = time.monotonic() + timeout_s
    with connect(database_url, autocommit=True) as conn:
        while not has_sample(conn, site_id, machine, first_ts):
            if stop.is_set() or time.monotonic() > deadline:
                return False
            progress.update(task, note="waiting for ingest to subscribe")
            publish_live([probe], mqtt_url, speedup=0, stop_event=stop, client_id=f"sitepulse-history-{site_id}")
            stop.wait(1.0)
    return True


def backfill_history(database_url: str, mqtt_url: str, site_id: str, days: int, stop: threading.Event,
                     console: Console, seed: int = 0) -> bool:
    """Publish ``days`` past shifts, wait for the services to process them, then date the switches and the
    manager's use as the simulated truth says; False when stopped or the services did not catch up in time."""
    from ingest.reader import stored_rows
    from simulators.history import EFFECT_SERVICE, NULL_SERVICE, HistoryPlan, as_arrays, history_simulations
    from simulators.outputs import publish_live
    from simulators.site import load_site
    from sitepulse.db import connect

    plan = HistoryPlan(days=days, switch_day=days // 2, seed=seed)
    site = load_site()
    today = datetime.now(UTC).date()
    t0 = time.monotonic()
    with _progress(console) as progress:
        task = progress.add_task("history: publishing shifts", total=days, note="")
        messages = 0
        for index, sim in history_simulations(site, site_id, plan, today):
            if stop.is_set():
                return False
            day = list(as_arrays(sim.messages()))
            if index == 0 and not _wait_for_ingest(database_url, mqtt_url, site_id, day, stop, progress, task):
                return False
            stats = publish_live(day, mqtt_url, speedup=0, stop_event=stop, client_id=f"sitepulse-history-{site_id}")
            messages += stats.messages
            progress.update(task, advance=1, note=f"{plan.day(index, today)} · {messages:,} messages")
        waiting = progress.add_task("history: services processing", total=None, note="")
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        with connect(database_url, autocommit=True) as conn:
            while behind := _services_behind(conn, site_id):
                if stop.is_set():
                    return False
                if time.monotonic() > deadline:
                    console.print(f"[yellow]history:[/] {', '.join(behind)} still processing after "
                                  f"{CATCH_UP_TIMEOUT_S:.0f} s; the Evaluation page fills in as they catch up")
                    break
                rows = stored_rows(conn, site_id)
                progress.update(waiting, note=f"{rows:,} rows stored · waiting for {', '.join(behind)}")
                time.sleep(1.0)
            progress.update(waiting, total=1, completed=1, note="done")
            _record_truth(conn, site_id, plan, today)
    console.print(f"history: {days} days ({plan.shift_s / 60:.0f}-min shift a day at {plan.hz:g} Hz, {messages:,} "
                  f"messages of up to 10 samples) through the pipeline in {time.monotonic() - t0:.0f} s; "
                  f"{EFFECT_SERVICE} and {NULL_SERVICE} switched on {plan.switched_on_at(today):%Y-%m-%d}")
    return True


def _record_truth(conn, site_id: str, plan, today) -> None:
    """Date the switches and the history's alarms as simulated and record the site manager's use of the services."""
    from registry.alarms import acknowledge_history
    from registry.enablement import set_enabled_at
    from registry.needs import list_needs
    from registry.usage import UsageEvent, write_events
    from simulators.history import EFFECT_SERVICE, NULL_SERVICE

    first = datetime.combine(plan.day(0, today), plan.shift_start_utc, tzinfo=UTC)
    set_enabled_at(conn, site_id, first)
    set_enabled_at(conn, site_id, plan.switched_on_at(today), [EFFECT_SERVICE, NULL_SERVICE])
    if any(need.text == DEMO_NEEDS[0][0] for need in list_needs(conn, site_id)):
        return  # the demo ran before on this database: its use and needs are recorded already
    events = []
    for day in range(plan.days):
        at = first + timedelta(days=day, hours=2)
        events += [UsageEvent(at, site_id, name, "demo site manager", "card_view")
                   for name in ("positioning", EFFECT_SERVICE, NULL_SERVICE)]
        if day % 3 == 0:
            events.append(UsageEvent(at + timedelta(minutes=5), site_id, EFFECT_SERVICE, "demo site manager", "export"))
    write_events(conn, events)
    # the history's alarms were delivered when they happened, and the manager acknowledged six in seven of them
    acknowledge_history(conn, site_id, datetime.combine(today, datetime.min.time(), tzinfo=UTC),
                        "demo site manager", "seen, spoke to the driver")
    _seed_needs(conn, site_id, first)


DEMO_NEEDS = (  # (text, raised by, value, effort, answering service, voters)
    ("Know which trucks leave the loader overloaded, before they reach the ramp", "site manager", 9, 3,
     "weight-loading", ("site manager", "shift supervisor", "maintenance lead")),
    ("Fewer near-misses between haulers at the central junction", "HSE officer", 8, 5, "traffic-awareness",
     ("HSE officer", "shift supervisor")),
    ("Warn when a hauler's tyre pressure drops", "maintenance lead", 6, 6, None, ("maintenance lead",)),
    ("Daily production report by material to the office at 18:00", "site manager", 5, 2, None, ()),
)


def _seed_needs(conn, site_id: str, first: datetime) -> None:
    """The needs that started the demo's services (and two still open), with votes and a comment."""
    from registry.needs import add_comment, add_need, set_vote

    for text, by, value, effort, service, voters in DEMO_NEEDS:
        need = add_need(conn, site_id, text, by, value, effort, service, raised_at=first - timedelta(days=7))
        for voter in voters:
            set_vote(conn, site_id, need.id, voter, True)
        if service == "weight-loading":
            add_comment(conn, site_id, need.id, "shift supervisor", "two rear axles replaced this quarter")
