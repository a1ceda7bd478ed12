"""Weight loading's part of the shift report: tonnes by load and dump zone and material, payload bands, 10/10/20.

The site file has no material field: a load's material is read as the kind of the zone it was tipped in (crusher,
stockpile, dump), which is how quarries tell product from waste on their production sheets.
"""

from __future__ import annotations

import pandas as pd

from microservices.report_sections import Figure, ReportRequest, ReportSection, Table, bar_chart
from microservices.weight_loading.routes import _activity, _zones, compliance_table, kpi_table, load_cycles
from microservices.weight_loading.settings import WeightLoadingSettings

BANDS = (("under", "under 90 %"), ("target", "90-110 %"), ("over_110", "110-120 %"), ("over_120", "over 120 %"))


def sections(request: ReportRequest, settings: WeightLoadingSettings) -> list[ReportSection]:
    """One section: the period's production and payload compliance (empty figures when nothing was hauled)."""
    cycles = load_cycles(request.read, request.site_id, request.start, request.end)
    if cycles.empty:
        return [ReportSection("Production (weight loading)", figures=[Figure("Tonnes", 0, "t"),
                                                                      Figure("Loads", 0, "")],
                              notes=["No haul cycle finished in this period."], order=10)]
    activity = _activity(request.read, request.site_id, request.start, request.end,
                         sorted(cycles["machine_id"].unique()))
    site = kpi_table(cycles, activity, [], settings)[0]
    compliance = compliance_table(cycles.assign(site=request.site_id), ["site"], settings)[0]
    verdict = ("not judged" if compliance["compliant"] is None else
               "compliant" if compliance["compliant"] else "not compliant")
    figures = [Figure("Tonnes", site["tonnes"], "t"), Figure("Loads", site["loads"], ""),
               Figure("Tonnes per operating hour", site["tonnes_per_operating_hour"], "t/h"),
               Figure("Mean payload", site["mean_payload_pct"], "%"), Figure("10/10/20", verdict)]
    notes = [f"{site['loads_unweighed']} loads were found from the track without a weighing: counted as loads,"
             " not in tonnes."] if site["loads_unweighed"] else []
    bands = band_table(cycles)
    return [ReportSection(
        "Production (weight loading)", figures=figures,
        tables=[Table.of(by_zone(request, cycles), "Tonnes by load zone, dump zone and material"),
                Table.of(bands, "Payload bands (% of rated payload)"),
                Table.of(policy_table(cycles, settings), "10/10/20 payload policy per machine")],
        charts=[bar_chart("Loads per payload band", bands, "Band", ["Loads"])],
        notes=notes, order=10)]


def by_zone(request: ReportRequest, cycles: pd.DataFrame) -> pd.DataFrame:
    """Loads and tonnes per (load zone, dump zone, material), most tonnes first."""
    kinds = {z.id: z.kind for z in request.site.zones} if request.site is not None else {}
    load = _zones(request.site, cycles["load_lon"], cycles["load_lat"])
    dump = _zones(request.site, cycles["dump_lon"], cycles["dump_lat"])
    frame = pd.DataFrame({
        "Load zone": [request.zone_label(z) for z in load],
        "Dump zone": [request.zone_label(z) for z in dump],
        "Material": [kinds.get(z) or "unknown" for z in dump],
        "tonnes": cycles["payload_kg"].astype(float) / 1000,
    })
    grouped = frame.groupby(["Load zone", "Dump zone", "Material"], sort=True).agg(
        Loads=("tonnes", "size"), Tonnes=("tonnes", "sum")).reset_index()
    return grouped.sort_values("Tonnes", ascending=False, kind="stable")


def band_table(cycles: pd.DataFrame) -> pd.DataFrame:
    """Loads and their share per payload band, in band order; loads without a weighing as their own row."""
    counts = cycles["band"].fillna("unweighed").value_counts()
    rows = [(label, int(counts.get(band, 0))) for band, label in BANDS]
    if counts.get("unweighed", 0):
        rows.append(("not weighed", int(counts["unweighed"])))
    frame = pd.DataFrame(rows, columns=["Band", "Loads"])
    frame["Share %"] = 100 * frame["Loads"] / max(len(cycles), 1)
    return frame


def policy_table(cycles: pd.DataFrame, settings: WeightLoadingSettings) -> pd.DataFrame:
    """Per machine: loads, mean payload, share over 110 %, loads over 120 % and the verdict."""
    rows = []
    for item in compliance_table(cycles, ["machine_id"], settings):
        rules = item["rules"]
        rows.append({
            "Machine": item["machine_id"], "Loads": item["loads"],
            "Mean payload %": rules["mean_not_above_rated"]["value_pct"] if rules else None,
            "Over 110 % share": 100 * rules["share_over_110"]["value"] if rules else None,
            "Over 120 %": rules["none_over_120"]["count"] if rules else None,
            "10/10/20": "not judged" if rules is None else "pass" if item["compliant"] else "fail",
        })
    return pd.DataFrame(rows)
