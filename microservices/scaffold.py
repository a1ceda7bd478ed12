"""``sitepulse services new NAME``: write a working plugin package a developer extends in minutes.

The package's service folder has the shape of every built-in one (README.md, __init__.py, service.py, detect.py,
settings.py, sample.yaml, routes.py, migrations/), and its test of ``process`` and of the sample config passes as
written.
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
readme = "$package/README.md"
requires-python = ">=3.11"
dependencies = ["sitepulse"]

[project.entry-points."sitepulse.microservices"]
$name = "$package:$cls"

[tool.setuptools.packages.find]
include = ["$package*"]

[tool.setuptools.package-data]
"*" = ["*.sql", "*.yaml"]
"""

INIT = '''\
"""$summary"""

from $package.service import $cls

__all__ = ["$cls"]
'''

SETTINGS = '''\
"""Per-site settings of $name: every threshold in physical units, with a default (sample.yaml lists them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """Per-site settings; every field has a default. Frozen: the host validates them, the service only reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    moving_threshold_kmh: float = Field(1.0, gt=0, description="speed above which a machine counts as moving")
'''

SAMPLE = """\
# Settings: per-site settings and their defaults; leave out any you don't change.
# speed above which a machine counts as moving
moving_threshold_kmh: 1.0
"""

DETECT = '''\
"""The logic of $name, pure: telemetry rows and settings in, table rows out (no database, no HTTP)."""

from __future__ import annotations

import pandas as pd

from $package.settings import Settings


def activity(rows: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Samples and moving samples per machine and minute (partial sums: queries add them up)."""
    minutes = rows.assign(
        window_start=rows["ts"].dt.floor("min"),
        moving=rows["speed_kmh"].fillna(0) > settings.moving_threshold_kmh,
    )
    return minutes.groupby(["machine_id", "window_start"], as_index=False).agg(
        samples=("ts", "size"), moving_samples=("moving", "sum"))
'''

SERVICE = '''\
"""$summary"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microservices.sdk import Batch, Card, CardContext, Kpi, Outputs, Service

from $package.detect import activity
from $package.settings import Settings


class $cls(Service[Settings]):
    """One focused service: how much of each minute every machine spends moving."""

    name = "$name"
    version = "0.1.0"
    summary = "$summary"
    author = "$author"
    consumes = ("speed_kmh",)
    tables = ("$schema.activity",)
    migrations = Path(__file__).parent / "migrations"
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
        """Count samples and moving samples per machine and minute (detect.py)."""
        out = Outputs()
        if batch.telemetry.empty:
            return out, state
        out.write("activity", activity(batch.telemetry, settings))
        return out, state

    def router(self) -> Any:
        from $package.routes import router  # FastAPI is imported only where the API runs

        return router

    def card(self, context: CardContext, settings: Settings) -> Card:
        from $package.routes import site_card

        return site_card(context)
'''

ROUTES = '''\
"""The HTTP routes of $name (mounted at /api/v1/sites/{site_id}/$name/) and its site-view card."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from microservices.sdk import Card, CardContext
from microservices.sdk_routes import PageDep, ServiceRequestDep

router = APIRouter()


@router.get("/activity")
def activity(ctx: ServiceRequestDep, page: PageDep) -> dict[str, Any]:
    """Samples and moving samples per machine and minute, oldest first."""
    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
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


def site_card(context: CardContext) -> Card:
    """The share of samples spent moving, for the site view (``context``: the site, its machines, a reader)."""
    totals = context.read(
        "SELECT coalesce(sum(samples), 0) AS samples, coalesce(sum(moving_samples), 0) AS moving"
        " FROM $schema.activity WHERE site_id = %(site)s", {"site": context.site_id})
    samples, moving = int(totals["samples"].iloc[0]), int(totals["moving"].iloc[0])
    share = round(100.0 * moving / samples, 1) if samples else None
    return Card(title="$title", metrics=[{"label": "moving", "value": share, "unit": "%"}], link="activity")
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
"""$name: process() is pure, so a test is fixtures in, tables out; sample.yaml is the settings' defaults."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import json

import pandas as pd
from microservices.sdk import Batch, load_sample, sample_config

from $package import $cls
from $package.settings import Settings

FOLDER = Path(__file__).resolve().parents[1] / "$package"


def _batch(speeds: list[float], first: int = 0) -> Batch:
    """One machine's samples every 10 s from 06:00 (``first``: the index of the first sample)."""
    start = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
    telemetry = pd.DataFrame({
        "machine_id": "H1", "ts": [start + timedelta(seconds=10 * (first + i)) for i in range(len(speeds))],
        "seq": range(first, first + len(speeds)), "speed_kmh": speeds,
    })
    return Batch(site_id="s", telemetry=telemetry, site=None, machines=pd.DataFrame(),
                 read=lambda q, p=None: pd.DataFrame())


def test_counts_moving_samples_per_minute() -> None:
    out, state = $cls().process(_batch([0, 0, 12, 20, 0, 0, 30, 31, 0]), {}, Settings())
    activity = out.frames()["activity"]
    assert activity["samples"].tolist() == [6, 3]
    assert activity["moving_samples"].tolist() == [2, 2]
    assert state == {}


def _totals(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """What the tables say, however the rows were split (the routes sum per machine and minute)."""
    rows = pd.concat(frames, ignore_index=True)
    return rows.groupby(["machine_id", "window_start"])[["samples", "moving_samples"]].sum()


def test_process_is_incremental_two_batches_give_what_one_gives() -> None:
    """The runner hands telemetry in batches of any size and replays after late samples: rows A then B must
    say what A+B at once says, with the state carried between (as JSON, the way the runner stores it)."""
    speeds = [0, 0, 12, 20, 0, 0, 30, 31, 0]
    whole, _ = $cls().process(_batch(speeds), {}, Settings())
    for cut in range(1, len(speeds)):
        first, state = $cls().process(_batch(speeds[:cut]), {}, Settings())
        state = json.loads(json.dumps(state))
        second, _ = $cls().process(_batch(speeds[cut:], first=cut), state, Settings())
        parts = [out.frames()["activity"] for out in (first, second) if "activity" in out.frames()]
        pd.testing.assert_frame_equal(_totals(parts), _totals([whole.frames()["activity"]]), check_dtype=False)


def test_threshold_is_a_setting() -> None:
    out, _ = $cls().process(_batch([5, 5, 5]), {}, Settings(moving_threshold_kmh=10))
    assert out.frames()["activity"]["moving_samples"].sum() == 0


def test_sample_config_lists_every_setting_with_its_default() -> None:
    text = (FOLDER / "sample.yaml").read_text()
    assert load_sample(text, Settings) == Settings()
    assert text == sample_config(Settings()), "write it again: sitepulse services sample-config $name"
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

## How it works (files)
| file | job |
|---|---|
| `service.py` | the declaration (name, tables, KPIs) and `process`: telemetry in, rows out |
| `detect.py` | the logic, pure: `activity(rows, settings)` |
| `settings.py` | the per-site `Settings` (below) |
| `sample.yaml` | every setting with its default and meaning (`sitepulse services sample-config $name`) |
| `routes.py` | the HTTP routes and the site-view card |
| `migrations/` | the schema `$schema`, applied in order |

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

# The shape of a service folder, the same for every built-in service (tests/microservices/test_scaffold.py).
SERVICE_FOLDER = {
    "README.md": README, "__init__.py": INIT, "service.py": SERVICE, "detect.py": DETECT, "settings.py": SETTINGS,
    "sample.yaml": SAMPLE, "routes.py": ROUTES, "migrations/0001_create_activity.sql": MIGRATION,
}


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
        "pyproject.toml": PYPROJECT, "tests/test_service.py": TEST,
        **{f"{package}/{relative}": template for relative, template in SERVICE_FOLDER.items()},
    }
    for relative, template in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(words))
    return target
