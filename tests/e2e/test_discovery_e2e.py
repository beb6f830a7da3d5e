"""A camera and a sensor nobody configured: published with mosquitto_pub, placed, inspected.

Real Mosquitto, the real store, dispatcher and edge worker processes (no ``--streams``, no
``LINEWATCH_STREAMS``): the dispatcher discovers the streams from their first input, places
them, holds that input until the new owner serves the stream and hands it over, so the very
first frame gets a verdict row.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from edge_stack import Proc, Watcher, ensure_fast_model, linewatch, query
from helpers import wait_for

from broker.topics import StreamRef, frame_topic, sensor_topic

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(mosquitto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    model = ensure_fast_model()
    tmp = tmp_path_factory.mktemp("discovery")
    site = f"d{uuid.uuid4().hex[:10]}"
    worker = f"D{site}"
    db = tmp / "history.db"
    env = {
        "LINEWATCH_MQTT_URL": mosquitto_url,
        "LINEWATCH_DB_URL": f"sqlite:///{db}",
        "LINEWATCH_DATA_DIR": str(tmp),
        "LINEWATCH_STORE_NAME": site,
        "LINEWATCH_STORE_SITE": site,
        "LINEWATCH_DISPATCHER_ID": f"dp-{site}",
        "LINEWATCH_WORKER_PREFIX": worker,
        "LINEWATCH_DISCOVER_TOPICS": json.dumps(
            [f"lw/v1/{site}/+/+/camera/+/frame", f"lw/v1/{site}/+/+/sensor/+"]
        ),
    }
    linewatch("db", "upgrade", env=env)
    procs = [
        Proc("store", ["store"], env, tmp).start(),
        Proc("dispatch", ["dispatch"], env, tmp).start(),
        Proc("edge", ["edge", "--id", worker, "--model-dir", str(model)], env, tmp).start(),
    ]
    watcher = Watcher(mosquitto_url, f"w-{site}").start([worker, f"store-{site}"])
    try:
        watcher.wait_online(worker)
        watcher.wait_online(f"store-{site}")
        # the dispatcher subscribes before its first decision: inputs published before it
        # listens reach nobody (MQTT keeps no QoS 0 copy for a subscriber that is not there)
        wait_for(
            lambda: query(db, "SELECT count(*) FROM dispatch_decisions")[0][0] >= 1,
            60,
            0.1,
            what="the dispatcher's first decision",
        )
        yield {"site": site, "db": db, "url": mosquitto_url, "procs": procs}
    except BaseException:
        for p in procs:
            print(p.name, p.tail())
        raise
    finally:
        watcher.stop()
        for p in reversed(procs):
            p.stop()


def _pub(url: str, topic: str, *payload: str) -> None:
    u = urlsplit(url)
    cmd = ["mosquitto_pub", "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 1883)]
    subprocess.run([*cmd, "-q", "1", "-t", topic, *payload], check=True, timeout=30)


def test_first_frame_of_an_unconfigured_camera_gets_a_verdict(stack: dict, tmp_path: Path) -> None:
    from edge.model.synthetic import render_frame

    jpg = tmp_path / "part.jpg"
    render_frame(77, 0, "bracket", None).save(jpg, format="JPEG", quality=92)
    cam = StreamRef.camera(stack["site"], "L9", "st9", "newcam")
    _pub(stack["url"], frame_topic(cam), "-f", str(jpg))
    sql = "SELECT frame_key, verdict FROM frames WHERE stream = ?"
    rows = wait_for(lambda: query(stack["db"], sql, cam.key), 60, 0.2, what="first frame row")
    assert len(rows) == 1 and rows[0][1] in ("ok", "defect", "anomaly")
    decisions = query(stack["db"], "SELECT trigger FROM dispatch_decisions")
    assert any(f"discover:{cam.key}" in t for (t,) in decisions), decisions
    assert query(stack["db"], "SELECT count(*) FROM gaps WHERE stream = ?", cam.key) == [(0,)]
    _pub(stack["url"], frame_topic(cam), "-f", str(jpg))  # now served directly
    wait_for(lambda: len(query(stack["db"], sql, cam.key)) == 2, 60, 0.2, what="second row")


def test_first_reading_of_an_unconfigured_sensor_is_stored(stack: dict) -> None:
    sensor = StreamRef.sensor(stack["site"], "L9", "st9", "temp9")
    _pub(stack["url"], sensor_topic(sensor), "-m", "23.5")
    sql = "SELECT value FROM sensor_readings WHERE stream = ?"
    rows = wait_for(lambda: query(stack["db"], sql, sensor.key), 60, 0.2, what="reading row")
    assert rows == [(23.5,)]
