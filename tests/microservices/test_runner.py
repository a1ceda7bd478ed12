"""The runner: own checkpoints, order-independent results, dependants never ahead, crashes isolated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from conftest import START, enable, make_samples
from sample_services import Broken, MachinesPerBucket, MachineTally, RunningCount

from evaluation.pipeline import arrival_orders, split
from evaluation.stored import catch_up_fully, insert_telemetry
from microservices import runner as runner_module
from microservices.runner import Runner, ServiceHost
from sitepulse.errors import SitePulseError
from tests.conftest import wait_until

OUTPUT = (
    "SELECT machine_id, ts, seq, n, cum_payload FROM running_count.samples"
    " WHERE site_id = %s ORDER BY 1, 2, 3"
)


def _table(conn: psycopg.Connection, site_id: str) -> list[tuple]:
    return conn.execute(OUTPUT, (site_id,)).fetchall()


def _expected(samples: pd.DataFrame) -> list[tuple]:
    """What RunningCount must produce: each machine's samples numbered in ts order, running sums."""
    rows = samples.drop_duplicates(["machine_id", "ts", "seq"]).sort_values(["machine_id", "ts", "seq"])
    rows = rows.assign(
        n=rows.groupby("machine_id").cumcount() + 1, cum=rows.groupby("machine_id")["payload_kg"].cumsum()
    )
    return [
        (m, t.to_pydatetime(), s, n, c)
        for m, t, s, n, c in rows[["machine_id", "ts", "seq", "n", "cum"]].itertuples(index=False, name=None)
    ]


def _feed(conn: psycopg.Connection, host: ServiceHost, site_id: str, chunks: list[pd.DataFrame]) -> None:
    for chunk in chunks:
        insert_telemetry(conn, chunk)
        catch_up_fully(conn, host, [site_id])


def test_results_do_not_depend_on_arrival_order(runner_db: str) -> None:
    samples = make_samples("x", machines=3, per_machine=120)
    host = ServiceHost(RunningCount())
    orders = arrival_orders(samples, window="30s", shuffled_parts=9, duplicated_parts=5, seeds=(11, 5, 2))
    with psycopg.connect(runner_db, autocommit=True) as conn:
        for site_id, chunks in orders.items():
            enable(conn, site_id, "running-count")
            _feed(conn, host, site_id, [c.assign(site_id=site_id) for c in chunks])
        expected = _expected(samples)
        for site_id in orders:
            assert _table(conn, site_id) == expected, site_id
        replays = dict(conn.execute("SELECT site_id, replays FROM service_checkpoints").fetchall())
    assert replays["in-order"] == 0
    assert replays["shuffled"] > 0 and replays["duplicated"] > 0


def test_site_wide_results_include_a_machine_whose_data_arrives_late(runner_db: str) -> None:
    samples = make_samples("x", machines=3, per_machine=200)
    host = ServiceHost(MachinesPerBucket())
    late_machine = samples.machine_id == "M02"
    query = "SELECT bucket, machines FROM machines_per_bucket.buckets WHERE site_id = %s ORDER BY bucket"
    with psycopg.connect(runner_db, autocommit=True) as conn:
        for site_id in ("in-order", "one-machine-late"):
            enable(conn, site_id, "machines-per-bucket")
        by_time = samples.sort_values(["ts", "machine_id"])
        _feed(conn, host, "in-order", [c.assign(site_id="in-order") for c in split(by_time, 8)])
        early = by_time[~late_machine.loc[by_time.index]]
        _feed(conn, host, "one-machine-late",
              [c.assign(site_id="one-machine-late") for c in [*split(early, 8), samples[late_machine]]])
        in_order = conn.execute(query, ("in-order",)).fetchall()
        assert {m for _, m in in_order} == {3}  # every finalised bucket saw all three machines
        assert conn.execute(query, ("one-machine-late",)).fetchall() == in_order


def test_a_late_sample_of_a_clock_running_ahead_replays_what_was_final(runner_db: str) -> None:
    """M02's clock runs 120 s ahead and its second 100 s are stored after everything else: in device time
    they lie past the final buckets, in corrected time (what the service saw) inside them."""
    samples = make_samples("x", machines=3, per_machine=200)
    samples["received_at"] = samples["ts"] + pd.Timedelta(seconds=0.2)
    ahead = samples.machine_id == "M02"
    samples.loc[ahead, "ts"] += pd.Timedelta(seconds=120)
    held_back = ahead & (samples.seq >= 100)
    host = ServiceHost(MachinesPerBucket())
    query = "SELECT bucket, machines FROM machines_per_bucket.buckets WHERE site_id = %s ORDER BY bucket"
    by_arrival = samples.sort_values(["received_at", "machine_id"])
    with psycopg.connect(runner_db, autocommit=True) as conn:
        for site_id in ("clock-in-order", "clock-late"):
            enable(conn, site_id, "machines-per-bucket")
        _feed(conn, host, "clock-in-order", [c.assign(site_id="clock-in-order") for c in split(by_arrival, 8)])
        early = by_arrival[~held_back.loc[by_arrival.index]]
        _feed(conn, host, "clock-late",
              [c.assign(site_id="clock-late") for c in [*split(early, 8), samples[held_back]]])
        in_order = conn.execute(query, ("clock-in-order",)).fetchall()
        assert len(in_order) >= 14 and {m for _, m in in_order} == {3}  # corrected: M02 in its true buckets
        assert conn.execute(query, ("clock-late",)).fetchall() == in_order


def test_two_services_keep_their_own_checkpoints(runner_db: str) -> None:
    samples = make_samples("pit", machines=2, per_machine=50)
    counting, tally = ServiceHost(RunningCount()), ServiceHost(MachineTally())
    with psycopg.connect(runner_db, autocommit=True) as conn:
        enable(conn, "pit", "running-count", "machine-tally")
        insert_telemetry(conn, samples)
        assert catch_up_fully(conn, counting, ["pit"]) == 100
        assert counting.catch_up(conn) == 0  # nothing new: nothing processed twice
        more = make_samples("pit", machines=2, per_machine=80).iloc[50:]
        insert_telemetry(conn, more[more.machine_id == "M00"])
        assert tally.catch_up(conn) == 100  # its own checkpoint: only what running-count has done
        assert catch_up_fully(conn, counting, ["pit"]) == 30
        assert catch_up_fully(conn, tally, ["pit"]) == 30
        processed = dict(conn.execute("SELECT service, rows_processed FROM service_checkpoints").fetchall())
        assert processed == {"running-count": 130, "machine-tally": 130}


def test_dependant_never_runs_ahead_of_its_dependency(runner_db: str) -> None:
    samples = make_samples("pit", machines=3, per_machine=60).sample(frac=1, random_state=1)
    counting, tally = ServiceHost(RunningCount()), ServiceHost(MachineTally())
    with psycopg.connect(runner_db, autocommit=True) as conn:
        enable(conn, "pit", "running-count", "machine-tally")
        for index, chunk in enumerate(split(samples, 6)):
            insert_telemetry(conn, chunk)
            tally.catch_up(conn)  # before its dependency: must not see this chunk
            if index % 2:
                counting.catch_up(conn)
        catch_up_fully(conn, counting, ["pit"])
        catch_up_fully(conn, tally, ["pit"])
        missing, total = conn.execute(
            "SELECT sum(missing_upstream), sum(samples) FROM machine_tally.tally WHERE site_id = 'pit'"
        ).fetchone()
    assert missing == 0
    assert total == len(samples)


def test_a_dependant_waiting_for_its_dependency_does_not_read_the_backlog(
        runner_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 32's catch-up: a dependant woken before its dependency moved read the site's whole backlog only to drop
    it (0.8 s of CPU per wake for an hour of 25 machines); it now reads once the dependency has processed rows."""
    reads: list[dict] = []
    read = runner_module.read_new_telemetry
    monkeypatch.setattr(runner_module, "read_new_telemetry", lambda conn, **kw: reads.append(kw) or read(conn, **kw))
    samples = make_samples("pit", machines=3, per_machine=60)
    tally = ServiceHost(MachineTally())
    with psycopg.connect(runner_db, autocommit=True) as conn:
        enable(conn, "pit", "running-count", "machine-tally")
        insert_telemetry(conn, samples)
        assert not any(tally.step(conn, "pit").progressed for _ in range(3))
        assert reads == []
        ServiceHost(RunningCount()).catch_up(conn)
        reads.clear()
        catch_up_fully(conn, tally, ["pit"])
        total = conn.execute("SELECT sum(samples) FROM machine_tally.tally WHERE site_id = 'pit'").fetchone()[0]
    assert reads and total == len(samples)


def test_a_crashing_service_does_not_stop_the_others(runner_db: str) -> None:
    samples = make_samples("pit", machines=2, per_machine=40)
    runner = Runner(runner_db, {"broken": Broken(), "running-count": RunningCount()})
    with psycopg.connect(runner_db, autocommit=True) as conn:
        enable(conn, "pit", "broken", "running-count")
        runner.start()
        try:
            insert_telemetry(conn, samples)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                health = dict(conn.execute("SELECT service, status FROM service_health").fetchall())
                if len(_table(conn, "pit")) == len(samples) and health.get("broken") == "failing":
                    break
                time.sleep(0.1)
        finally:
            runner.stop()
        assert _table(conn, "pit") == _expected(samples)
        status, error = conn.execute(
            "SELECT status, last_error FROM service_health WHERE service = 'broken'"
        ).fetchone()
        assert status == "failing" and "broken on purpose" in error
        assert (
            conn.execute("SELECT status FROM service_health WHERE service = 'running-count'").fetchone()[0]
            == "ok"
        )


class InfiniteState(RunningCount):
    """Keeps a float('inf') in its state, as a service tracking 'time to collision: never' might."""

    def process(self, batch, state, settings):  # noqa: ANN001, ANN201 - the SDK's signature
        out, new = super().process(batch, state, settings)
        return out, {**new, "min_ttc": float("inf")}


def test_a_state_json_cannot_hold_is_refused_with_a_sentence_naming_the_service(runner_db: str) -> None:
    """NaN/Infinity are not JSON: the step fails as a whole (nothing written) and says what to change."""
    samples = make_samples("pit", machines=2, per_machine=5)
    host = ServiceHost(InfiniteState())
    with psycopg.connect(runner_db, autocommit=True) as conn:
        enable(conn, "pit", "running-count")
        insert_telemetry(conn, samples)
        with pytest.raises(SitePulseError, match="running-count: its state for site pit holds NaN or Infinity"):
            host.catch_up(conn, ["pit"])
        assert _table(conn, "pit") == []  # the step's transaction rolled back
        assert conn.execute("SELECT count(*) FROM service_snapshots").fetchone()[0] == 0


def test_rewind_from_a_time_recomputes_the_same_results(runner_db: str) -> None:
    samples = make_samples("pit", machines=2, per_machine=90)
    host = ServiceHost(RunningCount(), max_rows=40)
    with psycopg.connect(runner_db, autocommit=True) as conn:
        enable(conn, "pit", "running-count")
        insert_telemetry(conn, samples)
        catch_up_fully(conn, host, ["pit"])
        before = _table(conn, "pit")
        host.rewind(conn, START + pd.Timedelta(seconds=60))
        assert _table(conn, "pit") == before == _expected(samples)


RUNNER_SCRIPT = """
import sys, threading
sys.path.insert(0, {tests!r})
from sample_services import SlowRunningCount
from microservices.runner import Runner
runner = Runner({url!r}, {{"running-count": SlowRunningCount()}}, max_rows=25, lease_s=2)
runner.start()
threading.Event().wait()
"""


def _start_runner(tmp_path: Path, url: str) -> subprocess.Popen:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(RUNNER_SCRIPT.format(tests=str(Path(__file__).parent), url=url)))
    env = {**os.environ, "SLOW_SERVICE_DELAY_S": "0.05"}
    return subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )



@pytest.mark.parametrize("kill_after_rows", [30, 160])
def test_killed_mid_batch_loses_nothing_and_counts_nothing_twice(
    runner_db: str, tmp_path: Path, kill_after_rows: int
) -> None:
    samples = make_samples("pit", machines=4, per_machine=60)
    with psycopg.connect(runner_db, autocommit=True) as conn:
        enable(conn, "pit", "running-count")
        insert_telemetry(conn, samples)
        first = _start_runner(tmp_path, runner_db)
        try:
            assert wait_until(lambda: len(_table(conn, "pit")) >= kill_after_rows, 30)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            done_before_kill = len(_table(conn, "pit"))
            assert done_before_kill < len(samples)
            second = _start_runner(tmp_path, runner_db)
            assert wait_until(lambda: len(_table(conn, "pit")) >= len(samples), 60)
            time.sleep(0.3)  # anything extra (a double count) would show up now
        finally:
            for process in (first, locals().get("second")):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait(10)
        assert _table(conn, "pit") == _expected(samples)


def test_a_process_that_returns_no_outputs_is_refused_naming_the_service() -> None:
    class NoOutputs(Broken):
        name = "no-outputs"

        def process(self, batch, state, settings):  # type: ignore[no-untyped-def]
            return [], state

    with pytest.raises(TypeError, match=r"no-outputs\.process must return \(Outputs, state\), got <class 'list'>"):
        runner_module.call_process(NoOutputs(), None, {}, None)  # type: ignore[arg-type]
