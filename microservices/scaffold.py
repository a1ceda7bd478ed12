"""``sitepulse services new NAME``: write a working plugin package a developer extends in minutes.

The package has the service (declaration, ``process``, a route, a card), its migration,
a README listing its settings and KPIs, and a test of ``process`` that passes as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from microservices.sdk import NAME_PATTERN
from sitepulse.errors import SitePulseError

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "sitepulse-$name"
version = "0.1.0"
description = "$summary"
requires-python = ">=3.11"
dependencies = ["sitepulse"]

[project.entry-points."sitepulse.microservices"]
$name = "$package.service:$cls"

[tool.setuptools.packages.find]
include = ["$package*"]

[tool.setuptools.package-data]
"*" = ["*.sql"]
"""

SERVICE = '''\
"""$summary"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fastapi import APIRouter
from pydantic import BaseModel, Field

from microservices.sdk import Batch, Card, Kpi, Outputs, PageDep, Service, ServiceRequestDep


class Settings(BaseModel):
    """Per-site settings; every field has a default."""

    moving_threshold_kmh: float = Field(1.0, gt=0, description="speed above which a machine counts as moving")


class $cls(Service):
    """One focused service: how much of each minute every machine spends moving."""

    name = "$name"
    version = "0.1.0"
    summary = "$summary"
    author = "$author"
    consumes = ("speed_kmh",)
    tables = ("$schema.activity",)
    migrations = Path(__file__).parent / "migrations"
    Settings = Settings
    kpis = (
        Kpi(
            name="moving_share", description="share of reported minutes spent moving", unit="%",
            higher_is_better=True,
            daily_sql=(
                "SELECT window_start::date AS day, 100.0 * sum(moving_samples) / nullif(sum(samples), 0) AS value"
                " FROM $schema.activity WHERE site_id = %(site_id)s"
                " AND window_start >= %(start)s AND window_start < %(end)s GROUP BY 1 ORDER BY 1"
            ),
        ),
    )

    def process(self, batch: Batch, state: dict, settings: Settings) -> tuple[Outputs, dict]:
        """Count samples and moving samples per machine and minute (partial sums; queries add them up)."""
        out = Outputs()
        rows = batch.telemetry
        if rows.empty:
            return out, state
        minutes = rows.assign(
            window_start=rows["ts"].dt.floor("min"),
            moving=rows["speed_kmh"].fillna(0) > settings.moving_threshold_kmh,
        )
        activity = minutes.groupby(["machine_id", "window_start"], as_index=False).agg(
            samples=("ts", "size"), moving_samples=("moving", "sum"))
        out.write("activity", activity)
        return out, state

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/activity")
        def activity(ctx: ServiceRequestDep, page: PageDep) -> dict:
            """Samples and moving samples per machine and minute, oldest first."""
            def read(after, limit):
                return ctx.rows(
                    "SELECT window_start, machine_id, sum(samples)::int AS samples,"
                    " sum(moving_samples)::int AS moving_samples FROM $schema.activity"
                    " WHERE site_id = %(site)s AND (%(after)s::timestamptz IS NULL"
                    "  OR (window_start, machine_id) > (%(after)s, %(after_machine)s))"
                    " GROUP BY window_start, machine_id ORDER BY window_start, machine_id LIMIT %(limit)s",
                    {"site": ctx.site_id, "after": after[0] if after else None,
                     "after_machine": after[1] if after else None, "limit": limit},
                )

            return page.fetch(read, window_start=datetime, machine_id=str)

        return router

    def card(self, site_id, read, settings) -> Card:
        totals = read(
            "SELECT coalesce(sum(samples), 0) AS samples, coalesce(sum(moving_samples), 0) AS moving"
            " FROM $schema.activity WHERE site_id = %(site)s", {"site": site_id})
        samples, moving = int(totals["samples"].iloc[0]), int(totals["moving"].iloc[0])
        share = round(100.0 * moving / samples, 1) if samples else None
        return Card(title="$title", metrics=[{"label": "moving", "value": share, "unit": "%"}],
                    link="activity")
'''

MIGRATION = """\
-- $name owns the schema $schema. Output tables carry site_id and run_seq (filled by the runner,
-- which deletes by run_seq when it replays after late samples).
CREATE SCHEMA IF NOT EXISTS $schema;

CREATE TABLE IF NOT EXISTS $schema.activity (
    site_id text NOT NULL,
    run_seq bigint NOT NULL,
    machine_id text NOT NULL,
    window_start timestamptz NOT NULL,
    samples integer NOT NULL,
    moving_samples integer NOT NULL
);
CREATE INDEX IF NOT EXISTS activity_run ON $schema.activity (site_id, run_seq);
CREATE INDEX IF NOT EXISTS activity_time ON $schema.activity (site_id, window_start, machine_id);
"""

TEST = '''\
"""$name: process() is pure, so a test is fixtures in, tables out."""

from datetime import UTC, datetime, timedelta

import pandas as pd

from microservices.sdk import Batch
from $package.service import $cls, Settings


def _batch(speeds: list[float]) -> Batch:
    start = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
    telemetry = pd.DataFrame({
        "machine_id": "H1", "ts": [start + timedelta(seconds=10 * i) for i in range(len(speeds))],
        "seq": range(len(speeds)), "speed_kmh": speeds,
    })
    return Batch(site_id="s", telemetry=telemetry, site=None, machines=pd.DataFrame(),
                 read=lambda q, p=None: pd.DataFrame())


def test_counts_moving_samples_per_minute() -> None:
    out, state = $cls().process(_batch([0, 0, 12, 20, 0, 0, 30, 31, 0]), {}, Settings())
    activity = out.frames()["activity"]
    assert activity["samples"].tolist() == [6, 3]
    assert activity["moving_samples"].tolist() == [2, 2]
    assert state == {}


def test_threshold_is_a_setting() -> None:
    out, _ = $cls().process(_batch([5, 5, 5]), {}, Settings(moving_threshold_kmh=10))
    assert out.frames()["activity"]["moving_samples"].sum() == 0
'''

README = """\
# $name

$summary

A SitePulse micro-service (plugin). Install it next to SitePulse and it appears in
`sitepulse services list`; enable it for a site with
`PUT /api/v1/sites/{site_id}/services/$name`.

```sh
pip install -e .
pytest tests
```

## Reads and writes
- telemetry fields: `speed_kmh`
- tables: `$schema.activity` (samples and moving samples per machine and minute)

## Settings (per site)
| setting | default | meaning |
|---|---|---|
| `moving_threshold_kmh` | 1.0 | speed above which a machine counts as moving |

## KPIs (evaluated before and after enablement)
| KPI | unit | better | meaning |
|---|---|---|---|
| `moving_share` | % | higher | share of reported minutes spent moving |

## Routes
- `GET /api/v1/sites/{site_id}/$name/activity?limit=&cursor=`
"""


def new_service(name: str, directory: Path, summary: str = "", author: str = "") -> Path:
    """Write the plugin package for ``name`` into ``directory/sitepulse-<name>``; returns that folder."""
    if not NAME_PATTERN.match(name):
        raise SitePulseError(f"service name {name!r} must be lower-case words joined by '-', e.g. idle-time")
    target = Path(directory) / f"sitepulse-{name}"
    if target.exists():
        raise SitePulseError(f"{target} already exists")
    package = "sitepulse_" + name.replace("-", "_")
    words = {
        "name": name, "package": package, "schema": name.replace("-", "_"),
        "cls": "".join(part.capitalize() for part in name.split("-")) + "Service",
        "summary": summary or f"{name.replace('-', ' ').capitalize()}: a SitePulse micro-service",
        "title": name.replace("-", " ").capitalize(), "author": author or "your team",
    }
    if re.search(r'["\\\\$]', words["summary"] + words["author"]):
        raise SitePulseError("summary and author may not contain quotes, backslashes or '$'")
    files = {
        "pyproject.toml": PYPROJECT, "README.md": README, f"{package}/__init__.py": '"""$summary"""\n',
        f"{package}/service.py": SERVICE, f"{package}/migrations/0001_create_activity.sql": MIGRATION,
        "tests/test_service.py": TEST,
    }
    for relative, template in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(words))
    return target
