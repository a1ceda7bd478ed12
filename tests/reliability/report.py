"""Render ``artifacts/reliability.json`` (+ soak and fuzz figures) into docs/RELIABILITY.md.

    .venv/bin/python tests/reliability/report.py      # after the reliability, soak and fuzz tests ran

Replaces the text between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` markers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
DOC = ROOT / "docs" / "RELIABILITY.md"
ORDER = ["broker-restart", "postgres-down-30s", "ingest-worker-sigkill", "runner-sigkill", "partition-20s",
         "device-offline-1h"]


def _load(name: str) -> dict:
    try:
        return json.loads((ARTIFACTS / name).read_text())
    except (OSError, ValueError):
        return {}


def scenarios_table() -> str:
    data = _load("reliability.json").get("scenarios", {})
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


def soak_table() -> str:
    rows = ["| run | machines | published | stored | lost | msg/s | faults | lag p50 / max (s) "
            "| RSS first -> last MB (slope MB/min after warm-up) |", "|---|---:|---:|---:|---:|---:|---|---|---|"]
    for label, name in (("CI (0.75 min, faults every 10 s)", "soak-ci.json"),
                        ("by hand (10 min, faults every 60 s)", "soak-10min.json"),
                        ("by hand (6 min, runner never killed)", "soak-6min-runner-alive.json")):
        s = _load(name)
        if not s:
            continue
        lag = "; ".join(f"{k} {v['p50']} / {v['max']}" for k, v in sorted(s["lag_s"].items()))
        mem = "; ".join(f"{k} {v['rss_first_mb']} -> {v['rss_last_mb']} ({v['slope_mb_per_min']})"
                        for k, v in sorted(s["memory"].items()))
        rows.append(f"| {label} | {s['machines']:,} | {s['published']:,} | {s['stored']:,} | **{s['lost']}** "
                    f"| {s['throughput_msg_s']:,} | {len(s['faults'])}: {', '.join(s['faults'])} | {lag} | {mem} |")
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
