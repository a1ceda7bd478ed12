"""Benchmark: publish-to-alert latency of traffic-awareness's live alerts, through the whole live path.

    .venv/bin/python benchmarks/traffic_alerts.py [--machines 200] [--seconds 60] [--warmup 15]

Embedded Mosquitto and PostgreSQL, one ingest worker, the service runner with positioning and
traffic-awareness, a subscriber on ``sites/+/alerts/traffic``, and a publisher that drives ``--machines``
machines at 1 Hz in real time: pairs shuttle head-on along their own line 3 m apart (10 m/s, turning every
30 s), so every pair meets about twice a minute and each meeting is a critical encounter. Each alert
carries the sample times that let its instant be decided (``data.caused_by``); the publisher records the
wall time it published each (machine, ts), so latency = alert received - the later of the two publishes.
Prints count, p50, p90, p99 and max after ``--warmup`` seconds (the target: p99 <= 2 s).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

# run as a script, this folder comes first on sys.path and its ingest.py would shadow the ingest package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402

from ingest.worker import IngestWorker  # noqa: E402
from microservices.alerts import MqttPublisher  # noqa: E402
from microservices.positioning import Positioning  # noqa: E402
from microservices.runner import Runner  # noqa: E402
from microservices.traffic_awareness import TrafficAwareness  # noqa: E402
from sitepulse.embedded.broker import EmbeddedBroker  # noqa: E402
from sitepulse.embedded.postgres import EmbeddedPostgres  # noqa: E402
from sitepulse.geo import LocalFrame  # noqa: E402
from sitepulse.migrations import MigrationSource, upgrade  # noqa: E402
from sitepulse.settings import load_settings  # noqa: E402
from sitepulse.sitefile import SiteConfig  # noqa: E402
from sitepulse.sites import save_site  # noqa: E402

SITE = "bench"
FRAME = LocalFrame(59.3, 18.1)
SPEED = 10.0  # m/s
HALF = 150.0  # each machine shuttles between -HALF and +HALF metres


def positions(t: float, machines: int) -> list[tuple[str, float, float, float, float]]:
    """(machine, lon, lat, speed km/h, heading) of every machine at wall time t; pair k runs on y = 100 k."""
    out = []
    period = 4 * HALF / SPEED
    for m in range(machines):
        pair, side = divmod(m, 2)
        phase = (t + 7.3 * pair) % period
        x = -HALF + SPEED * phase if phase < period / 2 else HALF - SPEED * (phase - period / 2)
        heading = 90.0 if phase < period / 2 else 270.0
        if side:
            x, heading = -x, (heading + 180.0) % 360
        y = 100.0 * pair + (3.0 if side else 0.0)
        lon, lat = FRAME.to_lonlat(x, y)
        out.append((f"M{m:03d}", float(lon), float(lat), SPEED * 3.6, heading))
    return out


def publish(url_host: str, port: int, machines: int, seconds: float, sent: dict, stop: threading.Event) -> int:
    """Publish every machine's sample once a second (QoS 1), recording the wall time of each publish."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(0)
    client.connect(url_host, port)
    client.loop_start()
    seq = 0
    started = math.ceil(time.time())
    count = 0
    while not stop.is_set() and time.time() < started + seconds:
        tick = started + seq
        time.sleep(max(0.0, tick - time.time()))
        ts = datetime.fromtimestamp(tick, UTC).isoformat().replace("+00:00", "Z")
        for machine, lon, lat, speed, heading in positions(tick, machines):
            payload = orjson.dumps({"ts": ts, "seq": seq, "lat": lat, "lon": lon, "speed_kmh": speed,
                                    "heading_deg": heading, "engine_on": True})
            client.publish(f"sites/{SITE}/machines/{machine}/telemetry", payload, qos=1)
            sent[(machine, tick)] = time.time()
            count += 1
        seq += 1
    client.loop_stop()
    client.disconnect()
    return count


def subscribe(host: str, port: int, received: list) -> mqtt.Client:
    """Record (receive wall time, payload) of every traffic alert."""
    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-alerts")
    client.on_connect = lambda c, *_: (c.subscribe("sites/+/alerts/traffic", qos=1), ready.set())
    client.on_message = lambda _c, _u, msg: received.append((time.time(), orjson.loads(msg.payload)))
    client.connect(host, port)
    client.loop_start()
    if not ready.wait(10):
        raise RuntimeError("alert subscriber did not connect")
    return client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0, help="ignore alerts caused in the first seconds")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="traffic-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", fast_unsafe=True)
        broker = EmbeddedBroker(Path(tmp) / "mqtt")
        pg.start()
        broker.start()
        stop = threading.Event()
        runner = None
        threads: list[threading.Thread] = []
        try:
            database_url = pg.fresh_database("traffic_bench")
            with psycopg.connect(database_url, autocommit=True) as conn:
                upgrade(conn)
                upgrade(conn, [MigrationSource("traffic-awareness", Path(TrafficAwareness.migrations), 110)])
                save_site(conn, SITE, SiteConfig.model_validate({"name": "latency bench"}))
                for service in ("positioning", "traffic-awareness"):
                    conn.execute("INSERT INTO service_enablement (site_id, service, enabled, enabled_at) "
                                 "VALUES (%s, %s, true, now())", (SITE, service))
            settings = load_settings(database_url=database_url, mqtt_url=broker.url,
                                     ingest_client_id="bench-ingest")
            worker = IngestWorker(settings, stop, index=0)
            threads.append(threading.Thread(target=worker.run, name="ingest", daemon=True))
            publisher = MqttPublisher(broker.url)
            runner = Runner(database_url, {"positioning": Positioning(), "traffic-awareness": TrafficAwareness()},
                            publisher=publisher)
            received: list = []
            subscriber = subscribe(broker.host, broker.port, received)
            for thread in threads:
                thread.start()
            runner.start()
            time.sleep(1.0)
            sent: dict = {}
            started = time.time()
            count = publish(broker.host, broker.port, args.machines, args.seconds, sent, stop)
            time.sleep(3.0)  # let the last alerts arrive
            subscriber.loop_stop()
            subscriber.disconnect()
            latencies = []
            for at, alert in received:
                caused = (alert.get("data") or {}).get("caused_by") or {}
                times = [sent.get((m, round(datetime.fromisoformat(ts).timestamp()))) for m, ts in caused.items()]
                if len(times) == 2 and None not in times and min(times) >= started + args.warmup:
                    latencies.append(at - max(times))
            with psycopg.connect(database_url) as conn:
                replays = conn.execute("SELECT service, replays FROM service_checkpoints ORDER BY 1")\
                    .fetchall()
        finally:
            stop.set()
            if runner is not None:
                runner.stop()
            for thread in threads:
                thread.join(30)
            broker.stop()
            pg.stop()
    lat = np.array(latencies)
    print(f"{args.machines} machines at 1 Hz for {args.seconds:.0f} s: {count} samples published, "
          f"{len(received)} alerts received, {len(lat)} scored after a {args.warmup:.0f} s warm-up")
    if len(lat):
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        print(f"publish-to-alert latency: p50 {p50:.2f} s, p90 {p90:.2f} s, p99 {p99:.2f} s, max {lat.max():.2f} s "
              f"(target p99 <= 2 s: {'met' if p99 <= 2 else 'MISSED'})")
    print("runner checkpoints (service, replays):", replays)
    return 0 if len(lat) and np.percentile(lat, 99) <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
