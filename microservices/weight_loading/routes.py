"""HTTP routes of weight loading (cycles, KPIs, 10/10/20 compliance) and the site-view card.

Cross-machine and calendar logic lives here, in queries, not in ``process``: shifts come from
the site file (site time zone, a shift may wrap midnight), zones from ``sitepulse.zones`` and
only when the positioning service is enabled for the site (else null, per the HTTP contract).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Query

from microservices.sdk import Card, CardContext
from microservices.sdk_routes import PageDep, ServiceRequest, ServiceRequestDep, TimeRangeDep, service_request
from microservices.shifts import shifts_at
from microservices.weight_loading.settings import WeightLoadingSettings
from sitepulse.sitefile import DEFAULT_SHIFTS, SiteConfig
from sitepulse.sites import load_site
from sitepulse.zones import ZoneIndex

router = APIRouter()
WeightLoadingRequestDep = Annotated[ServiceRequest[WeightLoadingSettings], Depends(service_request)]  # site settings

CYCLE_COLUMNS = (
    "machine_id, load_start, loaded_at, haul_start, dump_start, dumped_at, payload_kg, rated_payload_kg, "
    "payload_pct, band, passes, load_s, haul_s, dump_s, return_s, fuel_used_l, fuel_return_l, engine_hours, "
    "load_lat, load_lon, dump_lat, dump_lon, payload_source"
)
OVER = ("over_110", "over_120")


def _zones(site: SiteConfig | None, lon: pd.Series, lat: pd.Series) -> list[str | None]:
    """Zone id of each position (None where unknown or outside every zone)."""
    if site is None or not site.zones or lon.empty:
        return [None] * len(lon)
    lon_a, lat_a = lon.astype(float).to_numpy(), lat.astype(float).to_numpy()
    ok = np.isfinite(lon_a) & np.isfinite(lat_a)
    out = np.full(len(lon_a), None, dtype=object)
    if ok.any():
        out[ok] = ZoneIndex(site).zone_ids(lon_a[ok], lat_a[ok])
    return out.tolist()


TIME_COLUMNS = ("load_start", "loaded_at", "haul_start", "dump_start", "dumped_at", "hour")
FLOAT_COLUMNS = ("payload_kg", "rated_payload_kg", "payload_pct", "fuel_used_l", "fuel_return_l", "engine_hours")


def _utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Times as UTC datetimes and numbers as floats, whatever the session time zone and driver types."""
    for column in frame.columns:
        if column in TIME_COLUMNS:
            frame[column] = pd.to_datetime(frame[column], utc=True)
        elif column in FLOAT_COLUMNS:
            frame[column] = frame[column].astype(float)
    return frame


def _json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: times as RFC 3339 UTC, NaN as null."""
    out = frame.astype(object).where(frame.notna(), None)
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            out[column] = [None if v is None else pd.Timestamp(v).isoformat() for v in out[column]]
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
            for row in out.to_dict(orient="records")]


@router.get("/cycles")
def cycles(ctx: ServiceRequestDep, page: PageDep, period: TimeRangeDep,
           machine_id: Annotated[str | None, Query(max_length=64, description="only this machine")] = None
           ) -> dict[str, Any]:
    """Haul cycles ordered by loaded_at: the contract's fields plus segment durations, passes and fuel."""
    where = ["site_id = %(site_id)s"]
    params: dict[str, Any] = {"site_id": ctx.site_id}
    if period.start is not None:
        where.append("loaded_at >= %(start)s")
        params["start"] = period.start
    if period.end is not None:
        where.append("loaded_at < %(end)s")
        params["end"] = period.end
    if machine_id is not None:
        where.append("machine_id = %(machine_id)s")
        params["machine_id"] = machine_id

    def read(after: tuple[Any, ...] | None, limit: int) -> list[dict[str, Any]]:
        params["limit"] = limit
        if after is not None:
            where.append("(loaded_at, machine_id) > (%(after_t)s, %(after_m)s)")
            params["after_t"], params["after_m"] = after
        frame = _utc(ctx.frame(f"SELECT {CYCLE_COLUMNS} FROM weight_loading.cycles WHERE {' AND '.join(where)} "
                               "ORDER BY loaded_at, machine_id LIMIT %(limit)s", params))
        if not frame.empty and "positioning" in ctx.enabled:
            site = load_site(ctx.conn, ctx.site_id)
            frame["load_zone"] = _zones(site, frame["load_lon"], frame["load_lat"])
            frame["dump_zone"] = _zones(site, frame["dump_lon"], frame["dump_lat"])
        else:
            frame["load_zone"] = None
            frame["dump_zone"] = None
        return ctx.named(_json_rows(frame), "load_zone", "dump_zone")

    return page.fetch(read, loaded_at=datetime, machine_id=str)


# --- shifts, KPIs and compliance -------------------------------------------------------------


def assign_shifts(ts: pd.Series, site: SiteConfig | None) -> tuple[pd.Series, pd.Series]:
    """Shift name and shift date (local date the shift started) of each UTC time; wrap-around shifts allowed."""
    shifts = site.shifts if site is not None and site.shifts else DEFAULT_SHIFTS
    stamps = pd.DatetimeIndex(pd.to_datetime(ts, utc=True))
    names, dates = shifts_at(stamps, site.timezone if site is not None else "UTC", shifts)
    start_day = pd.Series(dates, index=ts.index).where(~pd.isna(names))
    return pd.Series(names, index=ts.index), start_day.dt.strftime("%Y-%m-%d")


def _period(period: Any, default_days: int = 7) -> tuple[datetime, datetime]:
    end = period.end or pd.Timestamp.now(tz="UTC").to_pydatetime()
    start = period.start or end - timedelta(days=default_days)
    return start, end


def load_cycles(frame: Callable[..., pd.DataFrame], site_id: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Cycles whose dump finished in [start, end)."""
    return _utc(frame(
        f"SELECT {CYCLE_COLUMNS} FROM weight_loading.cycles WHERE site_id = %(site_id)s "
        "AND dumped_at >= %(start)s AND dumped_at < %(end)s ORDER BY dumped_at, machine_id",
        {"site_id": site_id, "start": start, "end": end},
    ))


def kpi_table(cycles_frame: pd.DataFrame, activity: pd.DataFrame, keys: list[str],
              settings: WeightLoadingSettings) -> list[dict[str, Any]]:
    """The KPIs of docs/DOMAIN.md per group, plus the value KPI (fuel and trips saved had under-loads been at target).

    saved share of an under-loaded trip = 1 - payload / (target_fraction x rated): moving the same
    tonnes at target needs that much less of a trip; fuel saved = that share x the trip's fuel
    (loaded leg plus the return that preceded it).
    """
    c = cycles_frame.copy()
    if c.empty:
        return []
    c["weighed"] = c["payload_kg"].notna()  # a cycle found from the track alone has no payload to judge
    c["frac"] = c["payload_kg"] / c["rated_payload_kg"]
    c["fuel_trip"] = c["fuel_used_l"].fillna(0) + c["fuel_return_l"].fillna(0)
    share = (1 - c["payload_kg"] / (settings.target_fraction * c["rated_payload_kg"])).clip(lower=0)
    c["saved_trips"] = np.where(c["band"] == "under", share, 0.0)
    c["saved_fuel"] = c["saved_trips"] * c["fuel_trip"]
    grouped = c.groupby(keys, sort=True) if keys else [((), c)]
    hours = activity.groupby(keys)["engine_hours"].sum() if keys and not activity.empty else None
    out = []
    for key, part in grouped:
        key = key if isinstance(key, tuple) else (key,)
        weighed = part[part["weighed"]]
        tonnes = weighed["payload_kg"].sum() / 1000
        if keys:
            op_hours = float(hours.get(key if len(key) > 1 else key[0], 0.0)) if hours is not None else 0.0
        else:
            op_hours = float(activity["engine_hours"].sum()) if not activity.empty else 0.0
        fuel = part["fuel_trip"].sum()
        share = (lambda mask: round(float(mask.mean()), 4)) if len(weighed) else (lambda mask: None)
        all_weighed = len(weighed) == len(part)  # else tonnes and tonnes per hour are those of the weighed loads
        out.append({
            **dict(zip(keys, key, strict=True)),
            "tonnes": round(tonnes, 3),
            "loads": len(part),
            "loads_unweighed": len(part) - len(weighed),
            "operating_hours": round(op_hours, 3),
            "tonnes_per_operating_hour": round(tonnes / op_hours, 3) if op_hours > 0 and all_weighed else None,
            "mean_payload_pct": round(100 * weighed["frac"].mean(), 2) if len(weighed) else None,
            "under_share": share(weighed["band"] == "under"),
            "over_110_share": share(weighed["band"].isin(OVER)),
            "over_120_share": share(weighed["band"] == "over_120"),
            "fuel_l": round(fuel, 3),
            "fuel_per_tonne_l": round(weighed["fuel_trip"].sum() / tonnes, 4) if tonnes > 0 else None,
            "trips_saved_if_at_target": round(part["saved_trips"].sum(), 3),
            "fuel_saved_if_at_target_l": round(part["saved_fuel"].sum(), 3),
        })
    return out


def _activity(frame: Callable[..., pd.DataFrame], site_id: str, start: datetime, end: datetime,
              machines: list[str]) -> pd.DataFrame:
    """Engine hours per machine and hour of the load-carrying machines in the period."""
    rows = frame(
        "SELECT machine_id, hour, engine_hours FROM weight_loading.activity WHERE site_id = %(site_id)s "
        "AND hour >= %(start)s AND hour < %(end)s AND machine_id = ANY(%(machines)s)",
        {"site_id": site_id, "start": start, "end": end, "machines": machines},
    )
    if rows.empty:
        return pd.DataFrame(columns=["machine_id", "hour", "engine_hours"])
    return _utc(rows)


@router.get("/kpis")
def kpis(ctx: WeightLoadingRequestDep, period: TimeRangeDep,
         group: Annotated[Literal["machine", "shift", "site"], Query(description="machine, shift or site")] = "site"
         ) -> dict[str, Any]:
    """Tonnes, loads, tonnes per operating hour, payload shares, fuel per tonne and the value KPI per group."""
    start, end = _period(period)
    settings = ctx.settings
    c = load_cycles(ctx.frame, ctx.site_id, start, end)
    act = _activity(ctx.frame, ctx.site_id, start, end, sorted(c["machine_id"].unique()) if not c.empty else [])
    keys: list[str] = []
    if group == "machine":
        keys = ["machine_id"]
    elif group == "shift":
        site = load_site(ctx.conn, ctx.site_id)
        keys = ["shift_date", "shift"]
        if not c.empty:
            c["shift"], c["shift_date"] = assign_shifts(c["dumped_at"], site)
        if not act.empty:
            act["shift"], act["shift_date"] = assign_shifts(act["hour"], site)
    return {"from": start.isoformat(), "to": end.isoformat(), "group": group,
            "items": kpi_table(c, act, keys, settings)}


def policy_rules(loads: int, mean: float, share_over_110: float, top: float, over_120: int,
                 settings: WeightLoadingSettings) -> dict[str, Any]:
    """The 10/10/20 rules from a group's figures: mean <= rated, <= 10 % of loads over 110 %, none over 120 %."""
    rules = {
        "mean_not_above_rated": {"value_pct": round(100 * mean, 2), "limit_pct": 100.0, "pass": mean <= 1.0},
        "share_over_110": {"value": round(share_over_110, 4), "limit": settings.max_share_over_110,
                           "pass": share_over_110 <= settings.max_share_over_110},
        "none_over_120": {"count": over_120, "max_pct": round(100 * top, 2),
                          "limit_pct": round(100 * settings.over_120_fraction, 2), "pass": over_120 == 0},
    }
    return {"loads": loads, "rules": rules, "compliant": all(r["pass"] for r in rules.values())}


def compliance_table(c: pd.DataFrame, keys: list[str], settings: WeightLoadingSettings) -> list[dict[str, Any]]:
    """The 10/10/20 rules per group of cycles."""
    if c.empty:
        return []
    c = c.assign(frac=c["payload_kg"] / c["rated_payload_kg"])
    out = []
    for key, all_loads in c.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        part = all_loads[all_loads["frac"].notna()]
        unweighed = len(all_loads) - len(part)
        if part.empty:  # the policy cannot be judged without a measured payload: say so, invent nothing
            out.append({**dict(zip(keys, key, strict=True)), "loads": 0, "loads_unweighed": unweighed,
                        "rules": None, "compliant": None})
            continue
        out.append({**dict(zip(keys, key, strict=True)), **policy_rules(
            len(part), float(part["frac"].mean()), float((part["frac"] > settings.over_110_fraction).mean()),
            float(part["frac"].max()), int((part["frac"] > settings.over_120_fraction).sum()), settings),
            "loads_unweighed": unweighed})
    return out


@router.get("/compliance")
def compliance(ctx: WeightLoadingRequestDep, period: TimeRangeDep) -> dict[str, Any]:
    """Caterpillar's 10/10/20 payload policy (docs/DOMAIN.md) per machine and per shift, with each rule's numbers."""
    start, end = _period(period)
    settings = ctx.settings
    c = load_cycles(ctx.frame, ctx.site_id, start, end)
    if not c.empty:
        c["shift"], c["shift_date"] = assign_shifts(c["dumped_at"], load_site(ctx.conn, ctx.site_id))
        c["site"] = ctx.site_id
    return {
        "from": start.isoformat(), "to": end.isoformat(),
        "limits": {"over_110_fraction": settings.over_110_fraction, "over_120_fraction": settings.over_120_fraction,
                   "max_share_over_110": settings.max_share_over_110},
        "site": (compliance_table(c, ["site"], settings) or [None])[0],
        "machines": compliance_table(c, ["machine_id"], settings),
        "shifts": compliance_table(c, ["shift_date", "shift"], settings),
    }


# --- the site-view card ----------------------------------------------------------------------


# One pass over today's cycles (index range on cycles_site_time) for both the per-machine figures and the payload
# histogram: GROUPING(machine_id) = 1 marks a histogram row, 0 a machine's row.
_CARD = """
    SELECT GROUPING(machine_id) AS per_bin, machine_id, bin, count(payload_kg) AS loads, count(*) AS all_loads,
           sum(payload_kg) AS kg,
           avg(frac) AS mean, avg((frac > %(o110)s)::int) AS share_over_110, sum((frac > %(o120)s)::int) AS over_120,
           max(frac) AS top
    FROM (SELECT machine_id, payload_kg, payload_kg / rated_payload_kg AS frac,
                 CASE WHEN 100 * payload_kg / rated_payload_kg = 140 THEN 16
                      ELSE width_bucket(100 * payload_kg / rated_payload_kg, 60, 140, 16) END AS bin
          FROM weight_loading.cycles
          WHERE site_id = %(site_id)s AND dumped_at >= %(start)s AND dumped_at < %(end)s) c
    GROUP BY GROUPING SETS ((machine_id), (bin)) ORDER BY per_bin, machine_id, bin"""


def site_card(ctx: CardContext, settings: WeightLoadingSettings) -> Card:
    """Today's (site time zone) tonnes, loads and compliance, the worst offenders and a payload histogram.

    Aggregated in the database (per machine, one pass over today's cycles), so the card's cost does not
    grow with the number of loads moved to the client, nor with history.
    """
    now, tz = ctx.now, ZoneInfo(ctx.site.timezone)
    midnight = datetime.combine(now.astimezone(tz).date(), time(), tz).astimezone(ZoneInfo("UTC"))
    params = {"site_id": ctx.site_id, "start": midnight, "end": now + timedelta(seconds=1),
              "o110": settings.over_110_fraction, "o120": settings.over_120_fraction}
    grouped = ctx.read(_CARD, params)
    per_bin = grouped["per_bin"].astype(int) == 1 if not grouped.empty else pd.Series(dtype=bool)
    machines = grouped[~per_bin] if not grouped.empty else grouped
    unweighed = int((machines["all_loads"] - machines["loads"]).sum()) if not machines.empty else 0
    machines = machines[machines["loads"] > 0] if not machines.empty else machines  # the weighed loads only
    loads = int(machines["loads"].sum()) if not machines.empty else 0
    tonnes = float(machines["kg"].astype(float).sum() / 1000) if loads else 0.0
    if loads:
        weights = machines["loads"].astype(float)
        site_rules = policy_rules(
            loads, float((machines["mean"].astype(float) * weights).sum() / loads),
            float((machines["share_over_110"].astype(float) * weights).sum() / loads),
            float(machines["top"].astype(float).max()), int(machines["over_120"].sum()), settings)
        status = "compliant" if site_rules["compliant"] else "not compliant"
    else:
        status = "not judged: no weighed loads" if unweighed else "no loads"
    per_machine = [{"machine_id": r.machine_id, **policy_rules(int(r.loads), float(r.mean), float(r.share_over_110),
                                                                float(r.top), int(r.over_120), settings)}
                   for r in machines.itertuples(index=False)]
    offenders = sorted(per_machine, key=lambda r: (-r["rules"]["none_over_120"]["count"],
                                                  -r["rules"]["share_over_110"]["value"],
                                                  -r["rules"]["mean_not_above_rated"]["value_pct"]))
    worst = [{"machine_id": r["machine_id"], "loads": r["loads"],
              "over_120": r["rules"]["none_over_120"]["count"], "share_over_110": r["rules"]["share_over_110"]["value"],
              "mean_payload_pct": r["rules"]["mean_not_above_rated"]["value_pct"]}
             for r in offenders if not r["compliant"]][:5]
    edges = list(range(60, 145, 5))
    counts = [0] * (len(edges) - 1)
    for row in grouped[per_bin].itertuples(index=False) if not grouped.empty else ():
        if pd.notna(row.bin) and 1 <= int(row.bin) <= len(counts):
            counts[int(row.bin) - 1] = int(row.loads)
    return Card(
        title="Weight loading",
        metrics=[{"label": "Tonnes today", "value": round(tonnes, 1), "unit": "t"},
                 {"label": "Loads today", "value": loads + unweighed, "unit": "loads"},
                 {"label": "10/10/20 today", "value": status, "unit": ""},
                 *([{"label": "Loads without a weighing today", "value": unweighed, "unit": "loads"}]
                   if unweighed else [])],
        data={"worst_offenders": worst,
              "payload_histogram": {"edges_pct": edges, "counts": counts}},
        link="cycles",
    )
