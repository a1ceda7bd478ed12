"""Render ``artifacts/reliability.json`` (+ soak and fuzz figures) into docs/RELIABILITY.md.

    .venv/bin/python tests/reliability/report.py      # after the reliability, soak and fuzz tests ran

Figures are read from ``artifacts/`` (what the tests just wrote, git-ignored) and otherwise from
``docs/figures/`` (tracked: long runs by hand, and the test figures the document quotes, copied there
so that a later render on a fresh clone shows the same rows).

Replaces the text between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` markers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
FIGURES = ROOT / "docs" / "figures"
DOC = ROOT / "docs" / "RELIABILITY.md"
ORDER = ["broker-restart", "broker-restart-3-workers", "broker-restart-3-workers-shared", "postgres-down-30s",
         "ingest-worker-sigkill", "runner-sigkill", "partition-20s", "device-offline-1h"]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _load(name: str) -> dict:
    return _read(ARTIFACTS / name) or _read(FIGURES / name)


def scenarios_table() -> str:
    data = {**_read(FIGURES / "reliability.json").get("scenarios", {}),  # scenarios run now replace kept ones
            **_read(ARTIFACTS / "reliability.json").get("scenarios", {})}
    lines = ["| scenario | messages in | samples in | stored | rejected | lost | derived rows | derived missing "
             "| derived extra | telemetry = reference | recovery | run | what happened |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for name in [n for n in ORDER if n in data] + sorted(set(data) - set(ORDER)):
        s = data[name]
        recovery = "-" if s["recovery_s"] is None else f"{s['recovery_s']} s"
        if s["lost"]:
            recovery = "never (lost)"
        lines.append(
            f"| {name} | {s['messages_in']:,} | {s['samples_in']:,} | {s['stored']:,} | {s['rejected']:,} "
            f"| **{s['lost']:,}** | {s['derived_rows']:,} | {s['derived_missing']:,} | {s['derived_duplicated']:,} "
            f"| {'yes' if s['telemetry_identical'] else 'no'} | {recovery} | {s['seconds']} s | {s['notes']} |")
    return "\n".join(lines)


SOAKS = (("CI (0.75 min, faults every 10 s)", "soak-ci.json"),
         ("by hand (60 min, runner never killed)", "soak-60min.json"),
         ("by hand (8 min, runner never killed; after the state and step-speed fixes)",
          "soak-8min-three-services.json"))


def _memory(name: str, m: dict) -> str:
    second = m.get("slope_second_half_mb_per_min")
    slopes = f"{m['slope_mb_per_min']}" + (f"; 2nd half {second}" if second is not None else "")
    return f"{name} {m['rss_first_mb']} -> {m['rss_last_mb']} ({slopes})"


def soak_table() -> str:
    rows = ["| run | services | published | stored | lost | msg/s | faults | lag p50 / max (s) "
            "| RSS first -> last MB (slope MB/min after warm-up; over its 2nd half) |",
            "|---|---|---:|---:|---:|---:|---|---|---|"]
    for label, name in SOAKS:
        s = _load(name)
        if not s:
            continue
        services = ", ".join(s.get("services", ["positioning", "weight-loading"]))
        failing = s.get("services_failing") or {}
        if failing:
            services += " (**failing: " + "; ".join(f"{k}: {v[:160]}" for k, v in sorted(failing.items())) + "**)"
        lag = "; ".join(f"{k} {v['p50']} / {v['max']}" for k, v in sorted(s["lag_s"].items()))
        mem = "; ".join(_memory(k, v) for k, v in sorted(s["memory"].items()))
        faults = f"{len(s['faults'])}: {', '.join(s['faults'])}" if len(s["faults"]) <= 12 else (
            f"{len(s['faults'])}: {', '.join(s['faults'][:6])}, ... {s['faults'][-1]}")
        rows.append(f"| {label}, {s['machines']:,} machines | {services} | {s['published']:,} | {s['stored']:,} "
                    f"| **{s['lost']}** | {s['throughput_msg_s']:,} | {faults} | {lag} | {mem} |")
    return "\n".join(rows)


def fuzz_line() -> str:
    f = _load("fuzz.json")
    return f"atheris: {f['runs']:,} runs, {f['seeds']} seeds, final status `{f['last_status']}`" if f else ""


def render() -> None:
    text = DOC.read_text()
    for name, body in (("scenarios", scenarios_table()), ("soak", soak_table()), ("fuzz", fuzz_line())):
        text = re.sub(rf"(<!-- figures:{name} -->\n).*?(<!-- /figures:{name} -->)",
                      lambda m, body=body: m[1] + (body + "\n" if body else "") + m[2], text, flags=re.S)
    DOC.write_text(text)


if __name__ == "__main__":
    render()
