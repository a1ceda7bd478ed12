"""Device clocks corrected against arrival: a clock ahead is taken back, anything else is left as it is."""

from __future__ import annotations

import numpy as np
import pandas as pd

from microservices.clock import corrected_clocks

START = pd.Timestamp("2026-03-02T06:00:00Z")


def _machine(machine_id: str, seconds: int, lead_s, delay_s, seed: int = 1) -> pd.DataFrame:
    """1-Hz samples of one machine: stamped ``lead_s`` (a number or per-sample array) ahead of true time,
    arriving ``delay_s`` (idem) after it."""
    rng = np.random.default_rng(seed)
    true = START + pd.to_timedelta(np.arange(seconds), unit="s")
    jitter = pd.to_timedelta(rng.uniform(0, 0.4, seconds), unit="s")  # delivery delays vary
    return pd.DataFrame({"site_id": "s", "machine_id": machine_id, "seq": np.arange(seconds),
                         "ts": true + pd.to_timedelta(lead_s, unit="s"),
                         "received_at": true + pd.to_timedelta(delay_s, unit="s") + jitter, "true": true})


def _error_s(frame: pd.DataFrame) -> np.ndarray:
    return (frame["ts"] - frame["true"]).dt.total_seconds().to_numpy()


def test_a_clock_ahead_or_drifting_is_taken_back_to_arrival_and_the_rest_left_alone() -> None:
    drift = np.arange(3600) / 60.0  # gains 60 s an hour
    telemetry = pd.concat([
        _machine("AHEAD", 3600, 30.0, 0.1),
        _machine("DRIFT", 3600, drift, 0.1, seed=2),
        _machine("GOOD", 3600, 0.0, 0.1, seed=3),
        _machine("LATE", 3600, 0.0, 900.0, seed=4),  # buffered out of coverage, delivered 15 min late
        _machine("BEHIND", 3600, -20.0, 0.1, seed=5),  # looks exactly like a late delivery: not judged
    ], ignore_index=True).sort_values(["machine_id", "ts"], ignore_index=True)
    out = corrected_clocks(telemetry)
    by = {m: g for m, g in out.groupby("machine_id")}
    for machine in ("AHEAD", "DRIFT"):
        error = _error_s(by[machine])
        # at most the delivery delay late (0.1-0.5 s), never early by more than the drift of the window
        assert np.all((error > -0.6) & (error < 0.6)), machine
        pd.testing.assert_series_equal(by[machine]["device_ts"], telemetry.loc[
            telemetry["machine_id"] == machine, "ts"].set_axis(by[machine].index), check_names=False)
    for machine in ("GOOD", "LATE", "BEHIND"):
        original = telemetry.loc[telemetry["machine_id"] == machine, "ts"].to_numpy()
        np.testing.assert_array_equal(by[machine]["ts"].to_numpy(), original)
    assert out.groupby("machine_id")["ts"].is_monotonic_increasing.all()


def test_a_buffered_upload_borrows_the_offset_of_its_newest_samples() -> None:
    # 30 s ahead, out of coverage from 600 to 780 s, then the 180 buffered samples arrive together
    delay = np.full(1200, 0.1)
    delay[600:780] = 780.1 - np.arange(600, 780)
    out = corrected_clocks(_machine("BUFFERED", 1200, 30.0, delay))
    error = _error_s(out)
    assert np.all(np.abs(error[:600]) < 0.6) and np.all(np.abs(error[780:]) < 0.6)
    # each buffered sample's own lead says 30 s - its delay; what a clock can drift in between bounds the rest
    assert np.all((error[600:780] > -0.6) & (error[600:780] < 0.02 * 180 + 0.6))


def test_one_corrupt_timestamp_does_not_move_its_neighbours() -> None:
    lead = np.zeros(600)
    lead[301] = 3600.0  # one sample stamped an hour ahead, the second of its batch
    telemetry = _machine("GLITCH", 600, lead, 0.2)
    for batch in range(0, 600, 5):  # live 5-s batches: few samples to judge by
        part = corrected_clocks(telemetry.iloc[batch:batch + 5].sort_values("ts", ignore_index=True))
        np.testing.assert_allclose(_error_s(part[part["seq"] != 301]), 0.0)


def test_a_fleet_without_a_clock_ahead_costs_nothing() -> None:
    telemetry = pd.concat([_machine("A", 60, 0.0, 0.2), _machine("B", 60, -5.0, 1.0)], ignore_index=True)
    assert corrected_clocks(telemetry) is telemetry
    no_arrival = telemetry.assign(received_at=pd.NaT)
    assert corrected_clocks(no_arrival) is no_arrival


def test_the_runner_hands_services_corrected_times_and_the_health_check_the_devices_own(runner_db: str) -> None:
    """Through the real runner and database: stored samples of a clock 30 s ahead of their arrival."""
    import psycopg
    from conftest import enable
    from sample_services import RunningCount

    from evaluation.stored import catch_up_fully
    from ingest.partitions import Partitions
    from microservices.runner import ServiceHost

    class DeviceTimeCount(RunningCount):
        device_time = True

    samples = pd.concat([_machine("AHEAD", 120, 30.0, 0.2), _machine("GOOD", 120, 0.0, 0.2, seed=2)])
    rows = [(site, m, ts, int(seq), 1000.0, rec) for site in ("corrected", "device")
            for m, ts, seq, rec in samples[["machine_id", "ts", "seq", "received_at"]].itertuples(index=False)]
    with psycopg.connect(runner_db, autocommit=True) as conn:
        Partitions(enabled=True).ensure(conn, samples["ts"].min(), samples["ts"].max())
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO telemetry (site_id, machine_id, ts, seq, payload_kg, received_at) "
                            "VALUES (%s, %s, %s, %s, %s, %s)", rows)
        for site, service in (("corrected", RunningCount()), ("device", DeviceTimeCount())):
            enable(conn, site, "running-count")
            catch_up_fully(conn, ServiceHost(service), [site])
        seen = {site: pd.DataFrame(conn.execute(
            "SELECT machine_id, seq, ts FROM running_count.samples WHERE site_id = %s ORDER BY 1, 2",
            (site,)).fetchall(), columns=["machine_id", "seq", "ts"]) for site in ("corrected", "device")}
    truth = samples.sort_values(["machine_id", "seq"]).reset_index(drop=True)
    for site, expected in (("corrected", truth["true"]), ("device", truth["ts"])):
        error = (pd.to_datetime(seen[site]["ts"], utc=True) - expected).dt.total_seconds()
        assert len(error) == 240 and error.abs().max() < 0.6, site
