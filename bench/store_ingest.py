"""Sensor readings -> SQL benchmark: MQTT in (a separate publisher process), stored by
`linewatch store` in Postgres and SQLite, against a raw paho-mqtt subscriber in the same run.

    python bench/store_ingest.py [--mqtt-url mqtt://127.0.0.1:1883]
        [--pg-admin-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
        [--messages 400] [--per-message 200] [--trials 3]

Prints one JSON object. Bars: ``postgres_rows_per_s`` >= 20,000 and ``lost`` <= 0 (readings
published minus readings stored, over every trial on both engines).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _common import bar, emit, host_info, make_report, spread  # noqa: E402

# ---- the publisher (a separate process) ---------------------------------------------------


def publish(args: argparse.Namespace) -> int:
    """Publish ``messages`` ReadingsBatch messages on one sensor stream; print timings."""
    from broker.codecs import encode
    from broker.messages import ReadingsBatch, StoredReading
    from broker.mqtt import MqttTransport
    from broker.topics import StreamRef, readings_topic

    ref = StreamRef.sensor(args.site, "L1", "st1", args.sensor)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    payloads = []
    for m in range(args.messages):
        rs = tuple(
            StoredReading(
                key=f"{ref.key}#0:{m * args.per_message + i}",
                seq=m * args.per_message + i,
                value=20.0 + i % 13 * 0.01,
                ts=t0 + timedelta(milliseconds=m * args.per_message + i),
                unit="C",
            )
            for i in range(args.per_message)
        )
        payloads.append(encode(ReadingsBatch(stream=ref.key, worker="bench", readings=rs)))
    t = MqttTransport(args.mqtt_url, f"bench-pub-{uuid.uuid4().hex[:8]}", clean_start=True)
    t.start()
    topic = readings_topic(ref)
    start = time.time()
    handles = [t.publish(topic, p) for p in payloads]
    ok = all(h.wait(60) for h in handles)
    print(json.dumps({"start": start, "published_s": time.time() - start, "ok": ok}), flush=True)
    t.stop()
    return 0 if ok else 1


def run_publisher(mqtt_url: str, site: str, sensor: str, messages: int, per: int) -> float:
    """Start the publisher process; returns its wall-clock start time."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--publish",
            "--mqtt-url",
            mqtt_url,
            "--site",
            site,
            "--sensor",
            sensor,
            "--messages",
            str(messages),
            "--per-message",
            str(per),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    info = json.loads(out.stdout.strip().splitlines()[-1])
    if not info["ok"]:
        raise RuntimeError("publisher: broker did not confirm every publish")
    return float(info["start"])


# ---- the raw paho-mqtt subscriber ----------------------------------------------------------


def raw_trial(mqtt_url: str, messages: int, per: int) -> float:
    """Rows/s a bare paho subscriber (QoS 1, acking each message) receives."""
    import paho.mqtt.client as mqtt

    from broker.config import MqttUrl

    site = f"bench{uuid.uuid4().hex[:8]}"
    got, done, last = [0], threading.Event(), [0.0]

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        got[0] += 1
        if got[0] >= messages:
            last[0] = time.time()
            done.set()

    u = MqttUrl.parse(mqtt_url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{site}-raw", protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.connect(u.host, u.port)
    c.loop_start()
    try:
        c.subscribe(f"lw/v1/{site}/+/+/sensor/+/readings", qos=1)[1]
        time.sleep(0.3)  # SUBACK before the publisher starts
        start = run_publisher(mqtt_url, site, "raw", messages, per)
        if not done.wait(120):
            raise RuntimeError(f"raw subscriber got {got[0]} of {messages}")
        return messages * per / (last[0] - start)
    finally:
        c.disconnect()
        c.loop_stop()


# ---- the store -----------------------------------------------------------------------------


class Store:
    """A fresh database at head and one `linewatch store` process for it."""

    def __init__(self, url: str, mqtt_url: str, workdir: Path) -> None:
        from services.store.engine import make_engine, upgrade

        self.site = f"bench{uuid.uuid4().hex[:8]}"
        self.name = f"{self.site}-w"
        upgrade(url)
        self.engine = make_engine(url)
        env = {
            **os.environ,
            "LINEWATCH_DB_URL": url,
            "LINEWATCH_MQTT_URL": mqtt_url,
            "LINEWATCH_STORE_SITE": self.site,
            "LINEWATCH_DATA_DIR": str(workdir),
            "LINEWATCH_RETENTION_INTERVAL_S": "0",
            "LINEWATCH_LOG_LEVEL": "WARNING",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "store", "run", "--name", self.name],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait(lambda: self._online(), 60, "store writer online")

    def _online(self) -> bool:
        from sqlalchemy import select

        from services.store import schema as s

        if self.proc.poll() is not None:
            raise RuntimeError(f"store writer exited with {self.proc.returncode}")
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(s.T_WORKERS.c.state).where(s.T_WORKERS.c.worker == f"store-{self.name}")
                ).scalar()
                is not None
            )

    @staticmethod
    def _wait(cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.01)

    def stored(self, stream: str) -> int:
        from sqlalchemy import func, select

        from services.store import schema as s

        t = s.T_READINGS
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(t).where(t.c.stream == stream)
                ).scalar_one()
            )

    def trial(self, mqtt_url: str, n: int, messages: int, per: int) -> tuple[float, int]:
        """(rows/s from the first publish to the last row committed, rows lost)."""
        sensor = f"b{n}"
        stream = f"{self.site}/L1/st1/sensor/{sensor}"
        want = messages * per
        start = run_publisher(mqtt_url, self.site, sensor, messages, per)
        deadline = time.time() + 120
        while (got := self.stored(stream)) < want and time.time() < deadline:
            time.sleep(0.01)
        end = time.time()
        return want / (end - start), want - got

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.engine.dispose()
        from broker.mqtt import MqttTransport

        t = MqttTransport(
            os.environ.get("_LW_BENCH_MQTT", "mqtt://127.0.0.1:1883"),
            f"store-{self.name}",
            clean_start=True,
        )
        t.start()
        t.publish(f"lw/v1/_sys/status/store-{self.name}", b"", retain=True).wait(5)
        t.stop()


def engine_trials(url: str, args: argparse.Namespace, workdir: Path) -> tuple[list[float], int]:
    store = Store(url, args.mqtt_url, workdir)
    try:
        rates, lost = [], 0
        store.trial(args.mqtt_url, 999, max(10, args.messages // 5), args.per_message)  # warm-up
        for n in range(args.trials):
            rate, missing = store.trial(args.mqtt_url, n, args.messages, args.per_message)
            rates.append(rate)
            lost += missing
        return rates, lost
    finally:
        store.close()


def fresh_pg(admin_url: str) -> tuple[str, Any]:
    import sqlalchemy as sa

    name = f"lwbench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{admin_url.rsplit('/', 1)[0]}/{name}", drop


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    p.add_argument(
        "--pg-admin-url",
        default=os.environ.get(
            "LINEWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    p.add_argument("--messages", type=int, default=400)
    p.add_argument("--per-message", type=int, default=200)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--site", help=argparse.SUPPRESS)
    p.add_argument("--sensor", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.publish:
        return publish(args)
    os.environ["_LW_BENCH_MQTT"] = args.mqtt_url
    host = host_info()
    raw = [raw_trial(args.mqtt_url, args.messages, args.per_message) for _ in range(args.trials)]
    pg_url, drop = fresh_pg(args.pg_admin_url)
    try:
        with tempfile.TemporaryDirectory(prefix="lw-bench-") as tmp:
            pg_rates, pg_lost = engine_trials(pg_url, args, Path(tmp))
            lite_rates, lite_lost = engine_trials(f"sqlite:///{tmp}/bench.db", args, Path(tmp))
    finally:
        drop()
    pg, lite, raw_best = max(pg_rates), max(lite_rates), max(raw)
    lost = pg_lost + lite_lost
    results = {
        "postgres_rows_per_s": round(pg),
        "sqlite_rows_per_s": round(lite),
        "raw_paho_rows_per_s": round(raw_best),
        "postgres_vs_raw_paho": round(pg / raw_best, 3),
        "sqlite_vs_raw_paho": round(lite / raw_best, 3),
        "lost": lost,
        "postgres_trials": [round(r) for r in pg_rates],
        "sqlite_trials": [round(r) for r in lite_rates],
        "raw_paho_trials": [round(r) for r in raw],
        "messages_per_trial": args.messages,
        "readings_per_message": args.per_message,
        "load_after": round(os.getloadavg()[0], 2),
    }
    bars = [bar("postgres_rows_per_s", pg, ">=", 20_000), bar("lost", lost, "<=", 0)]
    emit(make_report(results, bars, spread=spread(pg_rates), host=host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
