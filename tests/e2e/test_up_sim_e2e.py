"""`linewatch up --sim` end to end on the real Mosquitto: the simulated line feeds the whole
stack, and SQL holds every frame the simulator published (its ground truth) exactly once or
as a gap with a reason. Detection quality is not scored here: the model is the tiny test one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import edge_tinymodel as tiny
import pytest
from edge_stack import query
from helpers import wait_for
from history import PublisherLog, assert_ok, check_log, report, sqlite_rows

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = """
[[effects]]
kind = "defect_burst"
start = 2
end = 6
rate = 0.8
target = "line1/st1/*"

[[effects]]
kind = "new_family"
start = 5
share = 1.0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _records(truth: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in truth.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def test_up_with_the_sim_stores_every_published_frame_once(
    mosquitto_url: str, tmp_path: Path
) -> None:
    site = f"u{uuid.uuid4().hex[:10]}"
    worker = f"E{site}"
    db, truth, scenario = tmp_path / "lw.db", tmp_path / "truth.jsonl", tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    model = tiny.build(tmp_path / "model")
    edge = [sys.executable, "-m", "services.cli", "edge", "--id", worker, "--model-dir", str(model)]
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps([{"name": "edge", "argv": edge}]))
    env = {
        **os.environ,
        "LINEWATCH_MQTT_URL": mosquitto_url,
        "LINEWATCH_DB_URL": f"sqlite:///{db}",
        "LINEWATCH_DATA_DIR": str(tmp_path / "var"),
        "LINEWATCH_UP_COMPONENTS": str(extra),
        "LINEWATCH_STORE_NAME": site,
        "LINEWATCH_STORE_SITE": site,
        "LINEWATCH_CLUSTER_ID": f"c-{site}",
        "LINEWATCH_DISPATCHER_ID": f"dp-{site}",
        "LINEWATCH_WORKER_PREFIX": worker,
        "LINEWATCH_DISCOVER_TOPICS": json.dumps(
            [f"lw/v1/{site}/+/+/camera/+/frame", f"lw/v1/{site}/+/+/sensor/+"]
        ),
        "LINEWATCH_FEED_NAME": site,
        "LINEWATCH_FEED_PORT": str(_free_port()),
        "LINEWATCH_CAMERA_QUEUE": "256",
        "LINEWATCH_STATUS_S": "2",
    }
    sim = (
        f"--site {site} --duration 12 --fps 2 --size 96 --pool 3 --seed 5 --sensors 2 "
        f"--scenario {scenario} --truth {truth} --wait-for store,dispatch,edge"
    )
    out = (tmp_path / "up.out").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--without", "edge-W1", "--sim",
         "--sim-args", sim],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    logs = tmp_path / "var" / "log"
    try:
        end = wait_for(
            lambda: next((r for r in _records(truth) if r["kind"] == "end"), None),
            150, 0.5, what="the simulator's end record",
        )  # fmt: skip
        frames = [r for r in _records(truth) if r["kind"] == "frame"]
        readings = sum(1 for r in _records(truth) if r["kind"] == "reading")
        assert end["unacked"] == 0 and len(frames) == end["frames"] > 0

        def settled() -> bool:
            stored = query(db, "SELECT count(*) FROM frames WHERE site = ?", site)[0][0]
            gapped = query(db, "SELECT count(*) FROM gaps WHERE site = ?", site)[0][0]
            return stored + gapped >= len(frames) and stored_readings() >= readings

        def stored_readings() -> int:
            sql = "SELECT count(*) FROM sensor_readings WHERE stream LIKE ?"
            return int(query(db, sql, f"{site}/%")[0][0])

        wait_for(settled, 60, 0.5, what="every published frame accounted for in SQL")
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
    except BaseException:
        for f in sorted(logs.glob("*.log")) if logs.exists() else []:
            print(f"==== {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        out.close()
    assert "finished" in (logs / "up.log").read_text()  # the sim ran once, not restarted
    log = PublisherLog()
    for r in frames:
        log.record(r["stream"], r["seq"])
    histories = check_log(log, sqlite_rows(db))
    print(report(histories))
    assert_ok(histories, allowed_gaps={"missing", "shed", "failover", "unassigned"})
    assert stored_readings() == readings  # each exactly once
