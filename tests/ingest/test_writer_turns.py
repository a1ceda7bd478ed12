"""Two writers side by side (the worker's committers): commits in arrival order, no deadlock on shared keys."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import orjson
import psycopg

from ingest import writer as writer_module
from ingest.contract import Decoded, Decoder
from ingest.topics import telemetry_topic
from ingest.writer import TelemetryWriter, prepare

NOW = time.time() - 600


def _batch(site: str, seqs: range, model: str) -> Decoded:
    decoder, batch, received = Decoder(), Decoded(), datetime.now(UTC)
    samples = [{"ts": NOW + s, "seq": s, "lat": -33.0, "lon": 151.0} for s in seqs]
    decoder.decode_into(batch, telemetry_topic(site, "m1"), orjson.dumps(samples), received)
    birth = orjson.dumps({"kind": "hauler", "model": model})
    decoder.decode_into(batch, f"sites/{site}/machines/m1/birth", birth, received)
    batch.finish()
    prepare(batch)
    return batch


class Turns:
    """The worker's ordering: batch k may finish its transaction once batch k-1 has."""

    def __init__(self) -> None:
        self.next = 0
        self.cond = threading.Condition()
        self.waited_out = 0

    def of(self, seq: int) -> writer_module.Turn:
        def wait(timeout: float | None) -> bool:
            with self.cond:
                ok = self.cond.wait_for(lambda: self.next == seq, timeout)
                self.waited_out += not ok
                return ok
        return wait

    def done(self, seq: int) -> None:
        with self.cond:
            self.next = seq + 1
            self.cond.notify_all()


def test_a_later_batch_holding_an_earlier_ones_keys_steps_back_and_order_is_kept(
    fresh_database_url: str, monkeypatch
) -> None:
    """Batch 1 copies first rows that batch 0 also holds (a re-delivery): batch 0's COPY waits on them,
    batch 1 waits for batch 0's turn; batch 1 must roll back, let batch 0 commit, then store only what is
    new. The birth of batch 1 (model B) must win, as it arrived last."""
    monkeypatch.setattr(writer_module, "TURN_WAIT_S", 0.5)
    site = "turns"
    first, second = _batch(site, range(0, 200), "A"), _batch(site, range(100, 300), "B")
    writers = [TelemetryWriter(fresh_database_url), TelemetryWriter(fresh_database_url)]
    turns = Turns()
    results: dict[int, writer_module.WriteResult] = {}
    errors: list[BaseException] = []
    second_copied = threading.Event()

    def commit(seq: int, batch: Decoded) -> None:
        try:
            if seq == 0:
                assert second_copied.wait(10)  # batch 1's rows are in (uncommitted) before batch 0 copies
            wait = turns.of(seq)

            def turn(timeout: float | None) -> bool:
                second_copied.set()
                return wait(timeout)

            results[seq] = writers[seq].write(batch, turn)
            turn(None)
            turns.done(seq)
        except BaseException as exc:
            errors.append(exc)
            second_copied.set()

    threads = [threading.Thread(target=commit, args=(seq, batch)) for seq, batch in ((0, first), (1, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for w in writers:
        w.close()
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "writers deadlocked"
    assert turns.waited_out >= 1  # batch 1 really had to step back
    assert (results[0].stored, results[0].duplicates) == (200, 0)
    assert (results[1].stored, results[1].duplicates) == (100, 100)
    with psycopg.connect(fresh_database_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT seq) FROM telemetry").fetchone() == (300, 300)
        assert conn.execute("SELECT model FROM machines WHERE site_id = %s", (site,)).fetchone()[0] == "B"
