"""`linewatch sim` against the real Mosquitto: what arrives is exactly what the truth file says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

from broker.codecs import decode_input
from broker.messages import FrameIn, SensorIn
from broker.mqtt import MqttTransport
from broker.transport import Inbound

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = """
[[effects]]
kind = "defect_burst"
start = 0.5
end = 1.5
rate = 1.0
target = "line1/st1/*"

[[effects]]
kind = "camera_silent"
start = 1.0
end = 2.0
target = "line1/st2/cam1"

[[effects]]
kind = "sensor_spike"
start = 1.0
end = 1.5
magnitude = 30
target = "line1/st1/s1"
"""


def test_sim_publishes_what_its_truth_file_records(
    mosquitto_url: str, site_id: str, tmp_path: Path
) -> None:
    scenario, truth = tmp_path / "short.toml", tmp_path / "truth.jsonl"
    scenario.write_text(SCENARIO)
    got: list[FrameIn | SensorIn] = []
    lock = threading.Lock()

    def on_message(msg: Inbound) -> None:
        decoded = decode_input(msg.topic, msg.payload, msg.properties, msg.receipt)
        with lock:
            got.append(decoded)
        msg.ack()

    sub = MqttTransport(mosquitto_url, f"simcheck-{site_id}", clean_start=True)
    sub.subscribe(f"lw/v1/{site_id}/#", on_message)
    sub.start()
    try:
        env = {**os.environ, "LINEWATCH_MQTT_URL": mosquitto_url, "LINEWATCH_SIM_NAME": site_id}
        run = subprocess.run(
            [sys.executable, "-m", "services.cli", "sim", "--site", site_id, "--duration", "3",
             "--fps", "5", "--sensor-hz", "10", "--size", "96", "--pool", "2", "--seed", "3",
             "--scenario", str(scenario), "--truth", str(truth), "--progress", "1"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        records = [json.loads(line) for line in truth.read_text().splitlines()]
        expected = sum(1 for r in records if r["kind"] in ("frame", "reading"))

        def arrived() -> int:
            with lock:
                return sum(len(m.readings) if isinstance(m, SensorIn) else 1 for m in got)

        wait_for(lambda: arrived() >= expected, 15, 0.05, what=f"{expected} items")
    finally:
        sub.stop()
    assert "sim done" in run.stdout and "frames/s" not in run.stderr
    _check(records, got)


def _check(records: list[dict[str, Any]], got: list[FrameIn | SensorIn]) -> None:
    head, end = records[0], records[-1]
    assert head["kind"] == "run" and end["kind"] == "end" and end["unacked"] == 0
    frames = [r for r in records if r["kind"] == "frame"]
    readings = [r for r in records if r["kind"] == "reading"]
    assert all(r["acked"] for r in frames + readings)
    # 2 cameras at 5 fps for 3 s, less the silent one's second; 8 sensors at 10 Hz
    assert 22 <= len(frames) <= 26 and len(readings) == 8 * 10 * 3
    sent_frames = {(r["stream"], r["seq"]): r for r in frames}
    got_frames = Counter((m.stream.key, m.seq) for m in got if isinstance(m, FrameIn))
    assert set(got_frames) == set(sent_frames) and max(got_frames.values()) == 1
    for m in got:
        if isinstance(m, FrameIn):
            r = sent_frames[(m.stream.key, m.seq)]
            assert (m.part, len(m.image), m.width) == (r["part"], r["bytes"], 96)
    silent = head["cameras"][1]["stream"]  # line1/st2/cam1
    assert [r["kind"] for r in records if r.get("stream") == silent and "t" in r and
            r["kind"] != "frame"] == ["silent", "resumed"]  # fmt: skip
    seqs = [r["seq"] for r in frames if r["stream"] == silent]
    assert seqs == list(range(len(seqs)))  # a silent camera's counter does not jump
    burst = [r for r in frames if "defect_burst" in r["effects"]]
    assert burst and all(r["defect"] for r in burst)
    sent_values = Counter((r["stream"], r["value"]) for r in readings)
    got_values = Counter(
        (m.stream.key, reading.value)
        for m in got
        if isinstance(m, SensorIn)
        for reading in m.readings
    )
    assert got_values == sent_values
    keyed = {(m.stream.key, r.seq) for m in got if isinstance(m, SensorIn) for r in m.readings}
    assert None not in {seq for _, seq in keyed}  # MQTT v5: even bare numbers carry seq
    spikes = [r for r in readings if r["effects"] == ["sensor_spike"]]
    assert len(spikes) == 5 and all(r["stream"].endswith("/st1/sensor/s1") for r in spikes)
