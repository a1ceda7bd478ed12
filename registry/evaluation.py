"""Is each service worth keeping on each site? Adoption and value KPIs before/after, and a recommendation.

For every service switched on for a site (it has an ``enabled_at``), the days before the
switch are compared with the days after it, ``window_days`` each; the day of the switch
belongs to neither window and the current (partial) day is left out. For each value KPI
the service declares, its ``daily_sql`` gives one value per day; the difference of the
means after minus before gets a bootstrap interval over the daily values (resampling days
in each window independently; numpy, fixed seed, so the same data gives the same answer).
Adoption comes from usage events (who used it, on how many days, how often) and from the
service's alerts (share acknowledged). The recommendation follows the printed ``Rules``.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import psycopg

from ingest.fleet import newest_sample_times
from microservices.sdk import Kpi, Service
from registry.sharing import sharing_of
from registry.spreadsheet import InertCsvWriter
from registry.usage import ADOPTION_ACTIONS


@dataclass(frozen=True)
class Rules:
    """Thresholds of the evaluation; every one is printed beside the recommendation."""

    window_days: int = 14  # days compared on each side of the switch
    min_days: int = 5  # fewer days with a KPI value in a window: "insufficient data"
    confidence: float = 0.90  # family-wise over a service's KPIs (Bonferroni: each KPI at 1 - 0.10 / k)
    min_relative_change: float = 0.05  # smaller changes (share of the before mean) count as none
    min_active_share: float = 0.5  # adopted: used on at least this share of the days after the switch ...
    min_users: int = 1  # ... by at least this many distinct people or systems
    bootstrap_samples: int = 2000
    seed: int = 15143  # fixed: the same data always gives the same interval

    def describe(self) -> list[str]:
        """The rules in words, with this evaluation's thresholds."""
        pct = round(self.confidence * 100)
        return [
            f"KPI: compare {self.window_days} days before the switch-on day with up to {self.window_days} days after "
            "it (the switch-on day and today are left out); difference = mean after - mean before, with a "
            f"bootstrap interval over the daily values ({self.bootstrap_samples} resamples), {pct} % for all of a "
            f"service's k KPIs together (each KPI's interval at 1 - {1 - self.confidence:.2f} / k, Bonferroni), "
            "so declaring more KPIs does not raise more false alarms.",
            "KPI improved (worsened): its interval excludes 0 on the better (worse) side and the change is "
            f"at least {self.min_relative_change:.0%} of the before mean; fewer than {self.min_days} days with a "
            "value in either window: insufficient data.",
            f"Adopted: used (route call, card view or alert acknowledgement) on at least {self.min_active_share:.0%} "
            f"of the days after the switch, by at least {self.min_users} distinct user(s).",
            "scale: adopted, at least one KPI improved and none worsened.",
            "retire: no KPI improved, and either it is not adopted or a KPI worsened.",
            f"iterate: everything else (used without a clear KPI gain yet, a gain nobody uses, mixed results), and "
            f"always while fewer than {self.min_days} full days have passed since the switch.",
            "Caveat: before/after on one site is not a controlled experiment; production plans, weather and "
            "season move KPIs too. Read the intervals with the site's context and compare across sites.",
        ]


@dataclass(frozen=True)
class Windows:
    """The days compared: [before_start, before_end) and [after_start, after_end), as UTC dates."""

    enabled_day: date
    before_start: date
    before_end: date
    after_start: date
    after_end: date

    @property
    def after_days(self) -> int:
        return max(0, (self.after_end - self.after_start).days)

    def as_dict(self) -> dict[str, Any]:
        return {"before": {"from": self.before_start, "to": self.before_end},
                "after": {"from": self.after_start, "to": self.after_end, "days": self.after_days}}


def windows_for(enabled_at: datetime, as_of: datetime, window_days: int) -> Windows:
    """The before and after windows of a switch at ``enabled_at``, seen at ``as_of``."""
    day = enabled_at.astimezone(UTC).date()
    after_start = day + timedelta(days=1)
    after_end = max(after_start, min(after_start + timedelta(days=window_days), as_of.astimezone(UTC).date()))
    return Windows(day, day - timedelta(days=window_days), day, after_start, after_end)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def bootstrap_difference(before: np.ndarray, after: np.ndarray, *, samples: int, confidence: float,
                         seed: int) -> tuple[float, float, float]:
    """mean(after) - mean(before) and its percentile bootstrap interval, resampling each window's days."""
    rng = np.random.default_rng(seed)
    means_before = before[rng.integers(0, before.size, (samples, before.size))].mean(axis=1)
    means_after = after[rng.integers(0, after.size, (samples, after.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means_after - means_before, [tail, 100 - tail])
    return float(after.mean() - before.mean()), float(low), float(high)


def daily_values(conn: psycopg.Connection, kpi: Kpi, site_id: str, start: date, end: date) -> np.ndarray:
    """The KPI's value per day with one, ``start`` <= day < ``end``."""
    rows = kpi.daily(conn, site_id, _midnight(start), _midnight(end))
    return np.array([float(value) for _, value in rows if value is not None], dtype=float)


def compare_kpi(conn: psycopg.Connection, kpi: Kpi, site_id: str, windows: Windows, rules: Rules,
                confidence: float | None = None) -> dict[str, Any]:
    """One KPI before and after: means, difference, interval and a verdict (improved/worsened/no clear change)."""
    confidence = rules.confidence if confidence is None else confidence
    result: dict[str, Any] = {"name": kpi.name, "description": kpi.description, "unit": kpi.unit,
                              "higher_is_better": kpi.higher_is_better, "before": None, "after": None,
                              "difference": None, "relative_change": None, "interval": None,
                              "confidence": confidence, "verdict": "insufficient data"}
    try:
        with conn.transaction():  # a broken KPI query must not abort the whole evaluation
            before = daily_values(conn, kpi, site_id, windows.before_start, windows.before_end)
            after = daily_values(conn, kpi, site_id, windows.after_start, windows.after_end)
    except (psycopg.ProgrammingError, psycopg.DataError) as exc:
        return {**result, "verdict": "unavailable", "error": str(exc).strip().splitlines()[0]}
    result["before"] = {"mean": float(before.mean()) if before.size else None, "days": int(before.size)}
    result["after"] = {"mean": float(after.mean()) if after.size else None, "days": int(after.size)}
    if before.size < rules.min_days or after.size < rules.min_days:
        return result
    difference, low, high = bootstrap_difference(before, after, samples=rules.bootstrap_samples,
                                                 confidence=confidence, seed=rules.seed)
    base = abs(float(before.mean()))
    relative = difference / base if base > 1e-12 else None
    big_enough = abs(difference) >= rules.min_relative_change * base
    sign = 1 if kpi.higher_is_better else -1
    if big_enough and (low > 0 or high < 0):
        better = (low > 0) == (sign > 0)
        verdict = "improved" if better else "worsened"
    else:
        verdict = "no clear change"
    return {**result, "difference": difference, "relative_change": relative, "interval": [low, high],
            "verdict": verdict}


def adoption(conn: psycopg.Connection, site_id: str, service: str, windows: Windows) -> dict[str, Any]:
    """How much the service was used on the site in the after window, and how its alerts were handled."""
    start, end = _midnight(windows.after_start), _midnight(windows.after_end)
    users, active_days, views = conn.execute(
        "SELECT count(DISTINCT principal), count(DISTINCT (at AT TIME ZONE 'UTC')::date),"
        " count(*) FILTER (WHERE action IN ('api_call', 'card_view', 'trial_view'))"
        " FROM usage_events WHERE site_id = %s AND service = %s AND at >= %s AND at < %s AND action = ANY(%s)",
        (site_id, service, start, end, list(ADOPTION_ACTIONS)),
    ).fetchone() or (0, 0, 0)
    exports = conn.execute(
        "SELECT count(*) FROM usage_events WHERE site_id = %s AND service = %s AND at >= %s AND at < %s"
        " AND action = 'export'", (site_id, service, start, end)).fetchone()[0]
    delivered, acknowledged = conn.execute(
        "SELECT count(*), count(acknowledged_at) FROM service_alerts"
        " WHERE site_id = %s AND service = %s AND published_at >= %s AND published_at < %s",
        (site_id, service, start, end),
    ).fetchone() or (0, 0)
    days = windows.after_days
    return {"distinct_users": users, "active_days": active_days, "days": days,
            "active_share": active_days / days if days else None, "views": views,
            "views_per_day": views / days if days else None, "exports": exports, "alerts_delivered": delivered,
            "alerts_acknowledged": acknowledged, "ack_share": acknowledged / delivered if delivered else None}


SENSOR_OF_FIELD = {"heading_deg": "heading", "speed_kmh": "speed", "lat": "position", "lon": "position",
                   "payload_kg": "payload", "fuel_used_l": "fuel", "engine_hours": "hours", "ts": "clock"}
def degraded_inputs(conn: psycopg.Connection, site_id: str, service: Service, windows: Windows) -> dict[str, Any]:
    """Machine-hours in each window with a bad sensor the service reads (the data-quality service's findings)."""
    from microservices.data_quality.findings import degraded_hours_by_sensor

    sensors = sorted({SENSOR_OF_FIELD[f] for f in ("ts", *service.consumes) if f in SENSOR_OF_FIELD})
    result: dict[str, Any] = {"sensors": sensors, "before": {}, "after": {}, "after_machine_hours": 0.0}
    newest = newest_sample_times(conn, site_id)
    for side, start, end in (("before", windows.before_start, windows.before_end),
                             ("after", windows.after_start, windows.after_end)):
        hours = degraded_hours_by_sensor(conn, site_id, _midnight(start), _midnight(end), sensors, newest)
        if hours is None:
            return {**result, "available": False}
        result[side] = {sensor: round(value, 3) for sensor, value in hours.items()}
    result["after_machine_hours"] = round(sum(result["after"].values()), 3)
    return {**result, "available": True}


def recommend(use: dict[str, Any], kpis: list[dict[str, Any]], days: int, rules: Rules) -> tuple[str, list[str]]:
    """``scale``, ``iterate`` or ``retire`` and the reasons, by the rules in ``Rules.describe``."""
    improved = [k["name"] for k in kpis if k["verdict"] == "improved"]
    worsened = [k["name"] for k in kpis if k["verdict"] == "worsened"]
    share = use["active_share"] or 0.0
    adopted = share >= rules.min_active_share and use["distinct_users"] >= rules.min_users
    reasons = [
        f"{'adopted' if adopted else 'not adopted'}: used on {use['active_days']} of {days} days "
        f"({share:.0%}) by {use['distinct_users']} distinct user(s)",
        f"KPIs improved: {', '.join(improved) or 'none'}; worsened: {', '.join(worsened) or 'none'}"
        + ("" if kpis else " (the service declares no value KPI)"),
    ]
    if days < rules.min_days:
        return "iterate", [f"too early: {days} full day(s) since the switch, fewer than {rules.min_days}", *reasons]
    if adopted and improved and not worsened:
        return "scale", reasons
    if not improved and (not adopted or worsened):
        return "retire", reasons
    return "iterate", reasons


def cross_site(conn: psycopg.Connection, as_of: datetime, window_days: int) -> dict[str, dict[str, int]]:
    """Per service, across every site: how many have it switched on, live, and used in the last window."""
    since = as_of - timedelta(days=window_days)
    result: dict[str, dict[str, int]] = {}
    for service, enabled, live in conn.execute(
        "SELECT service, count(*) FILTER (WHERE enabled), count(*) FILTER (WHERE stage = 'live')"
        " FROM service_enablement GROUP BY service"
    ):
        result[service] = {"sites_enabled": enabled, "sites_live": live, "sites_active": 0}
    for service, active in conn.execute(
        "SELECT service, count(DISTINCT site_id) FROM usage_events WHERE service IS NOT NULL AND at >= %s"
        " AND at < %s AND action = ANY(%s) GROUP BY service", (since, as_of, list(ADOPTION_ACTIONS))
    ):
        result.setdefault(service, {"sites_enabled": 0, "sites_live": 0, "sites_active": 0})["sites_active"] = active
    return result


def evaluate(conn: psycopg.Connection, services: dict[str, Service], sites: list[str] | None = None, *,
             as_of: datetime | None = None, rules: Rules | None = None) -> list[dict[str, Any]]:
    """One evaluation per (site, service) ever switched on, for the given sites (None: every site)."""
    rules = rules or Rules()
    as_of = as_of or datetime.now(UTC)
    with conn.transaction():
        conn.execute("SET LOCAL TIME ZONE 'UTC'")  # daily_sql casts to date: days are UTC days
        switches = conn.execute(
            "SELECT site_id, service, enabled, stage, enabled_at FROM service_enablement"
            " WHERE enabled_at IS NOT NULL AND enabled_at < %(as_of)s AND service = ANY(%(names)s)"
            " AND (%(all)s OR site_id = ANY(%(sites)s)) ORDER BY site_id, service",
            {"as_of": as_of, "names": list(services), "all": sites is None, "sites": sites or []},
        ).fetchall()
        across = cross_site(conn, as_of, rules.window_days)
        credit = sharing_of(conn, services)
        items = []
        for site_id, name, enabled, stage, enabled_at in switches:
            service = services[name]
            windows = windows_for(enabled_at, as_of, rules.window_days)
            use = adoption(conn, site_id, name, windows)
            each = 1 - (1 - rules.confidence) / max(1, len(service.kpis))
            kpis = [compare_kpi(conn, kpi, site_id, windows, rules, each) for kpi in service.kpis]
            recommendation, reasons = recommend(use, kpis, windows.after_days, rules)
            inputs = degraded_inputs(conn, site_id, service, windows)
            if inputs["after_machine_hours"] > 0:  # not judged as if its inputs were good
                reasons.append(f"inputs degraded: {inputs['after_machine_hours']:.1f} machine-hours with a bad "
                               f"{'/'.join(inputs['after'])} sensor after the switch (data quality)")
                if recommendation == "retire":
                    recommendation = "iterate"
                    reasons.append("not retired on degraded inputs: fix the sensors, then evaluate again")
            items.append({
                "site_id": site_id, "service": name, "version": service.version,
                "contributed_by": credit[name].contributed_by, "enabled": enabled, "stage": stage,
                "enabled_at": enabled_at, "windows": windows.as_dict(), "adoption": use, "kpis": kpis,
                "recommendation": recommendation, "reasons": reasons, "degraded_inputs": inputs,
                "across_sites": across.get(name, {"sites_enabled": 0, "sites_live": 0, "sites_active": 0}),
            })
    return items


def evaluation_body(items: list[dict[str, Any]], as_of: datetime, rules: Rules) -> dict[str, Any]:
    """The JSON document: when, with which thresholds and rules, and the items."""
    return {"as_of": as_of, "window_days": rules.window_days, "rules": rules.describe(),
            "thresholds": asdict(rules), "items": items}


CSV_COLUMNS = ("site_id", "service", "stage", "enabled", "enabled_at", "recommendation", "distinct_users",
               "active_days", "days", "views_per_day", "alerts_delivered", "ack_share", "kpi", "unit",
               "higher_is_better", "before_mean", "after_mean", "difference", "interval_low", "interval_high",
               "verdict", "reasons")


def evaluation_csv(items: list[dict[str, Any]]) -> str:
    """One row per (site, service, KPI); a service without KPIs gets one row with the KPI columns empty."""
    buffer = io.StringIO()
    writer = InertCsvWriter(buffer)
    writer.writerow(CSV_COLUMNS)
    for item in items:
        use = item["adoption"]
        head = [item["site_id"], item["service"], item["stage"], item["enabled"], _iso(item["enabled_at"]),
                item["recommendation"], use["distinct_users"], use["active_days"], use["days"],
                _num(use["views_per_day"]), use["alerts_delivered"], _num(use["ack_share"])]
        reasons = " | ".join(item["reasons"])
        for kpi in item["kpis"] or [None]:
            if kpi is None:
                writer.writerow([*head, *[""] * 9, reasons])
                continue
            interval = kpi["interval"] or [None, None]
            writer.writerow([*head, kpi["name"], kpi["unit"], kpi["higher_is_better"],
                             _num((kpi["before"] or {}).get("mean")), _num((kpi["after"] or {}).get("mean")),
                             _num(kpi["difference"]), _num(interval[0]), _num(interval[1]), kpi["verdict"], reasons])
    return buffer.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
