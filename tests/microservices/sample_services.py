"""Small services for testing the runner: order-sensitive on purpose, so a wrong replay shows."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from microservices.sdk import Batch, Outputs, Service
from sitepulse.migrations import MigrationSource

HERE = Path(__file__).parent / "sample_migrations"


class RunningCount(Service):
    """Numbers each machine's samples 1, 2, 3... in time order and keeps a running payload sum."""

    name = "running-count"
    summary = "Position of every sample in its machine's history"
    consumes = ("payload_kg",)
    tables = ("running_count.samples",)
    migrations = HERE / "running_count"

    def process(self, batch: Batch, state: dict, settings: object) -> tuple[Outputs, dict]:
        out = Outputs()
        rows = batch.telemetry[["machine_id", "ts", "seq", "payload_kg"]].copy()
        if rows.empty:
            return out, state
        counts, sums = state.get("n", {}), state.get("sum", {})
        rows["n"] = (
            rows.groupby("machine_id").cumcount() + 1 + rows["machine_id"].map(lambda m: counts.get(m, 0))
        )
        rows["cum_payload"] = rows.groupby("machine_id")["payload_kg"].cumsum() + rows["machine_id"].map(
            lambda m: sums.get(m, 0.0)
        )
        last = rows.groupby("machine_id").last()
        out.write("samples", rows[["machine_id", "ts", "seq", "n", "cum_payload"]])
        for machine, total in last["cum_payload"].items():
            if total > 50_000 and sums.get(machine, 0.0) <= 50_000:
                out.alert(f"{machine}:50t", f"{machine} passed 50 t", machine_id=machine)
        return out, {
            "n": {**counts, **last["n"].astype(int).to_dict()},
            "sum": {**sums, **last["cum_payload"].to_dict()},
        }


class SlowRunningCount(RunningCount):
    """RunningCount that takes its time, so a test can kill the runner mid-batch."""

    def process(self, batch: Batch, state: dict, settings: object) -> tuple[Outputs, dict]:
        time.sleep(float(os.environ.get("SLOW_SERVICE_DELAY_S", "0.2")))
        return super().process(batch, state, settings)


class MachineTally(Service):
    """Depends on running-count and checks it never sees telemetry its dependency has not processed."""

    name = "machine-tally"
    depends_on = ("running-count",)
    tables = ("machine_tally.tally",)
    migrations = HERE / "machine_tally"

    def process(self, batch: Batch, state: dict, settings: object) -> tuple[Outputs, dict]:
        out = Outputs()
        if batch.telemetry.empty:
            return out, state
        upstream = batch.read(
            "SELECT machine_id, ts, seq FROM running_count.samples WHERE site_id = %(site)s",
            {"site": batch.site_id},
        )
        seen = set(zip(upstream["machine_id"], upstream["ts"], upstream["seq"], strict=True))
        keys = zip(batch.telemetry["machine_id"], batch.telemetry["ts"], batch.telemetry["seq"], strict=True)
        missing = sum((m, t.to_pydatetime(), s) not in seen for m, t, s in keys)
        counts = batch.telemetry.groupby("machine_id").size()
        out.write(
            "tally",
            [
                {"machine_id": m, "samples": int(n), "missing_upstream": missing if i == 0 else 0}
                for i, (m, n) in enumerate(counts.items())
            ],
        )
        return out, state


class MachinesPerBucket(Service):
    """Site-wide: how many machines reported in each 10 s bucket, final once data is 30 s past it."""

    name = "machines-per-bucket"
    tables = ("machines_per_bucket.buckets",)
    migrations = HERE / "machines_per_bucket"
    BUCKET = pd.Timedelta(seconds=10)
    LAG = pd.Timedelta(seconds=30)

    def process(self, batch: Batch, state: dict, settings: object) -> tuple[Outputs, dict]:
        out = Outputs()
        rows = batch.telemetry
        if rows.empty:
            return out, state
        open_buckets = {pd.Timestamp(b): set(ms) for b, ms in state.get("open", {}).items()}
        for bucket, machines in rows.groupby(rows["ts"].dt.floor(self.BUCKET))["machine_id"]:
            open_buckets.setdefault(bucket, set()).update(machines)
        newest = max(pd.Timestamp(state["newest"]) if "newest" in state else rows["ts"].max(), rows["ts"].max())
        final = sorted(b for b in open_buckets if b + self.BUCKET + self.LAG < newest)
        if final:
            out.write("buckets", [{"bucket": b, "machines": len(open_buckets.pop(b))} for b in final])
            out.finalise((final[-1] + self.BUCKET).to_pydatetime())
        return out, {"newest": newest.isoformat(),
                     "open": {b.isoformat(): sorted(ms) for b, ms in open_buckets.items()}}


class Broken(Service):
    """Always raises: the runner must isolate it."""

    name = "broken"
    tables = ()

    def process(self, batch: Batch, state: dict, settings: object) -> tuple[Outputs, dict]:
        raise RuntimeError("this service is broken on purpose")


SOURCES = [
    MigrationSource("running-count", HERE / "running_count", 100),
    MigrationSource("machine-tally", HERE / "machine_tally", 101),
    MigrationSource("machines-per-bucket", HERE / "machines_per_bucket", 102),
]


class FailableSettings(BaseModel):
    fail: bool = False  # a site setting that makes every step of the site raise


class FailableCount(RunningCount, Service[FailableSettings]):
    """RunningCount whose steps raise on the sites whose settings say ``fail``: one site failing alone."""

    def process(self, batch: Batch, state: dict, settings: FailableSettings) -> tuple[Outputs, dict]:
        if settings.fail:
            raise RuntimeError(f"site {batch.site_id} fails on purpose")
        time.sleep(float(os.environ.get("SLOW_SERVICE_DELAY_S", "0")))
        return super().process(batch, state, settings)
