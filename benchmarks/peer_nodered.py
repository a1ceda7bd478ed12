"""SitePulse ingest side by side with Node-RED, same Mosquitto, same PostgreSQL, same messages, same run.

Three consumers subscribe with persistent QoS 1 sessions to the same live stream:
SitePulse ingest (one worker, ``python -m ingest``), a Node-RED flow that INSERTs each message as it
arrives, and a Node-RED flow whose function node batches rows (up to 1,000 or 200 ms) into one
multi-row ``INSERT ... SELECT FROM unnest(...)``. Both flows run in one Node-RED process
(deploy/nodered: ``npm ci`` there; node-red and pg are pinned in package-lock.json). Midway through
publishing, SitePulse's worker and the Node-RED process are killed with SIGKILL and restarted 2 s
later. Printed per consumer: msg/s (messages stored / seconds from the first publish to its last stored
row; bounded by the publisher's rate when a consumer keeps up), how long after the last publish it
caught up (or stalled: no new row for 15 s), and lost (published - distinct stored).

    .venv/bin/python benchmarks/peer_nodered.py --messages 20000
"""

# ruff: noqa: E402  (imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import orjson
import psycopg

from ingest.topics import TELEMETRY_FILTER, telemetry_topic
from simulators.outputs import publish_backlog
from sitepulse.embedded.broker import EmbeddedBroker
from sitepulse.embedded.postgres import EmbeddedPostgres
from sitepulse.migrations import upgrade

ROOT = Path(__file__).resolve().parents[1]
NODERED = ROOT / "deploy" / "nodered"
TABLES = {"nodered_insert": "per-message INSERT", "nodered_batch": "batched multi-row INSERT"}

INSERT_FN = """
const pool = global.get('pgPool');
const parts = msg.topic.split('/');
const body = Array.isArray(msg.payload) ? msg.payload : [msg.payload];
let chain = Promise.resolve();
for (const s of body) {
  chain = chain.then(() => pool.query(
    'INSERT INTO nodered_insert (site_id, machine_id, ts, seq, lat, lon, engine_on)'
    + ' VALUES ($1,$2,to_timestamp($3),$4,$5,$6,$7) ON CONFLICT DO NOTHING',
    [parts[1], parts[3], s.ts, s.seq, s.lat, s.lon, s.engine_on]));
}
chain.then(() => node.done()).catch(e => node.error(e, msg));
return;
"""

BATCH_FN = """
const pool = global.get('pgPool');
let buf = context.get('buf') || {site: [], machine: [], ts: [], seq: [], lat: [], lon: [], on: []};
const parts = msg.topic.split('/');
const body = Array.isArray(msg.payload) ? msg.payload : [msg.payload];
for (const s of body) {
  buf.site.push(parts[1]); buf.machine.push(parts[3]); buf.ts.push(s.ts); buf.seq.push(s.seq);
  buf.lat.push(s.lat); buf.lon.push(s.lon); buf.on.push(s.engine_on);
}
const flush = () => {
  const b = context.get('buf');
  context.set('buf', null);
  clearTimeout(context.get('timer')); context.set('timer', null);
  if (!b || !b.ts.length) return;
  pool.query('INSERT INTO nodered_batch (site_id, machine_id, ts, seq, lat, lon, engine_on)'
    + ' SELECT s, m, to_timestamp(t), q, a, o, e FROM unnest($1::text[], $2::text[], $3::float8[], $4::int8[],'
    + ' $5::float8[], $6::float8[], $7::bool[]) AS u(s, m, t, q, a, o, e) ON CONFLICT DO NOTHING',
    [b.site, b.machine, b.ts, b.seq, b.lat, b.lon, b.on]).catch(e => node.error(e));
};
context.set('buf', buf);
if (buf.ts.length >= 1000) flush();
else if (!context.get('timer')) context.set('timer', setTimeout(flush, 200));
return null;
"""


def flows(broker: EmbeddedBroker) -> list[dict]:
    """Two flows, each with its own persistent MQTT session (clean session off, QoS 1)."""
    nodes: list[dict] = []
    for name, code in (("nodered_insert", INSERT_FN), ("nodered_batch", BATCH_FN)):
        nodes += [
            {"id": f"tab_{name}", "type": "tab", "label": name},
            {"id": f"broker_{name}", "type": "mqtt-broker", "name": name, "broker": broker.host,
             "port": str(broker.port), "clientid": f"peer-{name}", "usetls": False, "protocolVersion": "4",
             "keepalive": "60", "cleansession": False, "autoConnect": True},
            {"id": f"in_{name}", "type": "mqtt in", "z": f"tab_{name}", "topic": TELEMETRY_FILTER, "qos": "1",
             "datatype": "json", "broker": f"broker_{name}", "nl": False, "rap": False, "inputs": 0,
             "wires": [[f"fn_{name}"]]},
            {"id": f"fn_{name}", "type": "function", "z": f"tab_{name}", "name": name, "func": code,
             "outputs": 1, "wires": [[]]},
        ]
    return nodes


class NodeRed:
    def __init__(self, workdir: Path, database_url: str) -> None:
        self.workdir = workdir
        self.env = {**os.environ, "NR_PGURL": database_url, "NR_FLOWS": str(workdir / "flows.json"),
                    "NR_PORT": "0"}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        red = NODERED / "node_modules" / "node-red" / "red.js"
        if not red.exists():
            raise SystemExit("error: Node-RED is not installed: run 'npm ci' in deploy/nodered")
        self.process = subprocess.Popen(["node", str(red), "--userDir", str(self.workdir), "--settings",
                                         str(NODERED / "settings.js")], env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=open(self.workdir / "nodered.log", "ab"))  # noqa: SIM115

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_sitepulse(database_url: str, broker: EmbeddedBroker) -> subprocess.Popen:
    env = {**os.environ, "SITEPULSE_DATABASE_URL": database_url, "SITEPULSE_MQTT_URL": broker.url,
           "SITEPULSE_INGEST_CLIENT_ID": "peer-sitepulse", "SITEPULSE_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "ingest"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def counts(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        out = {"sitepulse": conn.execute("SELECT count(DISTINCT (machine_id, seq)) FROM telemetry").fetchone()[0]}
        for table in TABLES:
            out[table] = conn.execute(f"SELECT count(DISTINCT (machine_id, seq)) FROM {table}").fetchone()[0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=1, help="samples per message")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the consumers")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sitepulse-peer-") as tmp:
        root = Path(tmp)
        pg = EmbeddedPostgres(root / "pg", fast_unsafe=False)
        broker = EmbeddedBroker(root / "mqtt")
        pg.start()
        broker.start()
        nodered: NodeRed | None = None
        worker: subprocess.Popen | None = None
        try:
            with psycopg.connect(pg.url, autocommit=True) as conn:
                upgrade(conn)
                for table in TABLES:
                    conn.execute(f"CREATE TABLE {table} (site_id text, machine_id text, ts timestamptz, seq bigint,"
                                 " lat float8, lon float8, engine_on bool, UNIQUE (site_id, machine_id, ts, seq))")
            (root / "flows.json").write_text(json.dumps(flows(broker)))
            nodered = NodeRed(root, pg.url)
            nodered.start()
            worker = start_sitepulse(pg.url, broker)
            time.sleep(8)  # Node-RED and the worker connect and subscribe (persistent sessions)
            expected = args.messages * args.samples
            done_at: dict[str, float] = {}
            base = time.time() - 3600
            started = time.perf_counter()

            def messages() -> Iterator[tuple[str, bytes]]:
                """The backlog; at its midpoint both consumers are SIGKILLed and started again."""
                nonlocal worker
                for i in range(args.messages):
                    body = [{"ts": round(base + i * 0.01 + k * 0.001, 3), "seq": i * args.samples + k,
                             "lat": -33.0 + (i % 97) * 1e-4, "lon": 151.0, "engine_on": True}
                            for k in range(args.samples)]
                    payload = orjson.dumps(body[0] if args.samples == 1 else body)
                    yield telemetry_topic("peer", f"m{i % 50:03d}"), payload
                    if i == args.messages // 2:
                        worker.send_signal(signal.SIGKILL)
                        nodered.kill()
                        worker.wait(10)
                        threading.Timer(2.0, nodered.start).start()
                        time.sleep(2.0)
                        worker = start_sitepulse(pg.url, broker)

            publish_backlog(messages(), broker.url, "peer-publisher")
            publish_s = time.perf_counter() - started
            last = counts(pg.url)
            last_change = {k: time.perf_counter() for k in last}
            while time.perf_counter() - started < args.timeout and len(done_at) < len(last):
                time.sleep(0.2)
                now = counts(pg.url)
                for key, value in now.items():
                    if value != last[key]:
                        last_change[key] = time.perf_counter()
                    if key not in done_at and (value >= expected or time.perf_counter() - last_change[key] > 15):
                        done_at[key] = last_change[key]
                last = now
            print(f"{args.messages} messages x {args.samples} sample(s), published in {publish_s:.1f} s;"
                  " consumers SIGKILLed and restarted at the midpoint")
            print(f"{'consumer':<34} {'msg/s':>8} {'caught up (s after publish)':>28} {'rows stored':>11} {'lost':>6}")
            labels = {"sitepulse": "SitePulse ingest (1 worker)",
                      **{k: f"Node-RED {v}" for k, v in TABLES.items()}}
            for key, label in labels.items():
                seconds = done_at.get(key, time.perf_counter()) - started
                behind = seconds - publish_s
                caught = f"{behind:.1f}" if last[key] >= expected else f"stalled {behind:.1f}"
                print(f"{label:<34} {last[key] / args.samples / seconds:>8,.0f} {caught:>28} {last[key]:>11,}"
                      f" {expected - last[key]:>6,}")
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(20)
            if nodered is not None:
                nodered.stop()
            broker.stop()
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
