"""Finding 2 end to end: a real edge worker process on Mosquitto, one camera flooded with bombs."""

# Good frames at 20/s on one camera, decode bombs at 10/s on another of the same worker:
# every bomb is dead-lettered, the good camera's publish -> verdict p95 stays within 2x the
# baseline measured first in the same run, and the worker process's RSS (from /proc) stays
# under 600 MB. 3 s of flood by default; LINEWATCH_FLOOD_FULL=1 floods for the 30 s.

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bombs
import edge_tinymodel as tiny
import numpy as np
import pytest
from edge_stack import Proc
from helpers import wait_for

from broker.codecs import decode_output
from broker.mqtt import MqttTransport
from broker.topics import StreamRef, dead_letter_topic, frame_topic, verdict_topic
from broker.transport import Inbound

pytestmark = pytest.mark.integration
FULL = os.environ.get("LINEWATCH_FLOOD_FULL") == "1"


class Probe:
    def __init__(self, url: str, site: str) -> None:
        self.good = StreamRef.camera(site, "l1", "s1", "good")
        self.evil = StreamRef.camera(site, "l1", "s1", "evil")
        self.sent: dict[int, float] = {}
        self.lat: dict[int, float] = {}
        self.dead: list[str] = []
        self.lock = threading.Lock()
        self.t = MqttTransport(url, f"bomb-probe-{site}", clean_start=True)
        self.t.subscribe(verdict_topic(self.good), self._verdict)
        self.t.subscribe(dead_letter_topic("edge"), self._dead)

    def _verdict(self, m: Inbound) -> None:
        v = decode_output(m.topic, m.payload)
        with self.lock:
            seq = getattr(v, "seq", None)
            if seq in self.sent:
                self.lat[seq] = time.monotonic() - self.sent[seq]
        m.ack()

    def _dead(self, m: Inbound) -> None:
        d = decode_output(m.topic, m.payload)
        with self.lock:
            if getattr(d, "topic", "") == frame_topic(self.evil):
                self.dead.append(d.reason)  # type: ignore[attr-defined]
        m.ack()

    def phase(
        self, seq0: int, seconds: float, bomb_rate: float, rss: list[float], pid: int
    ) -> range:
        good = tiny.frame("good", seed=1, size=64)
        kinds = [
            bombs.progressive_jpeg(6000, 500),
            bombs.png_bomb(6320),
            bombs.progressive_jpeg(4000, 500),
            bombs.png_bomb(4000),
        ]
        start, n, b = time.monotonic(), 0, 0
        while (now := time.monotonic() - start) < seconds:
            if n <= now * 20:
                with self.lock:
                    self.sent[seq0 + n] = time.monotonic()
                self.t.publish(frame_topic(self.good), good, properties={"seq": str(seq0 + n)})
                n += 1
            if bomb_rate and b <= now * bomb_rate:
                self.t.publish(frame_topic(self.evil), kinds[b % len(kinds)])
                b += 1
                rss.append(_rss_mb(pid))
            time.sleep(0.005)  # pacing the publisher, not waiting for a result
        return range(seq0, seq0 + n)

    def p95(self, seqs: range) -> float:
        wait_for(lambda: all(s in self.lat for s in seqs), 60, what="every good verdict")
        return float(np.percentile([self.lat[s] for s in seqs], 95))


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture()
def worker(mosquitto_url: str, site_id: str, tmp_path: Path) -> Iterator[tuple[Proc, Probe]]:
    model = tiny.build(tmp_path / "model")
    probe = Probe(mosquitto_url, site_id)
    probe.t.start()
    streams = f"{probe.good.key},{probe.evil.key}"
    env = {
        "LINEWATCH_MQTT_URL": mosquitto_url,
        "LINEWATCH_DATA_DIR": str(tmp_path),
        "LINEWATCH_MAX_WAIT_MS": "5",
    }
    proc = Proc(
        "edge",
        ["edge", "--id", f"bomb-{site_id}", "--streams", streams, "--model-dir", str(model)],
        env,
        tmp_path,
    ).start()
    try:
        status = f"lw/v1/_sys/status/bomb-{site_id}"
        seen: list[str] = []

        def on_status(m: Inbound) -> None:
            seen.append(m.topic)
            m.ack()

        watcher = MqttTransport(mosquitto_url, f"bomb-w-{site_id}", clean_start=True)
        watcher.subscribe(status, on_status)
        watcher.start()
        try:
            wait_for(lambda: seen or not proc.alive(), 60, what="the worker's birth")
        finally:
            watcher.stop()
        assert proc.alive(), proc.tail()
        yield proc, probe
    finally:
        proc.stop()
        probe.t.stop()


def test_bomb_flood_on_a_real_worker(worker: tuple[Proc, Probe]) -> None:
    proc, probe = worker
    rss: list[float] = []
    probe.p95(probe.phase(0, 2.0, 0, rss, proc.pid))  # warm-up
    base = probe.p95(probe.phase(1000, 3.0, 0, rss, proc.pid))
    flood = probe.phase(100_000, 30.0 if FULL else 3.0, 10.0, rss, proc.pid)
    p95 = probe.p95(flood)
    sent = len(rss)
    wait_for(lambda: len(probe.dead) >= sent, 30, what="every bomb dead-lettered")
    print(
        f"real worker bomb flood: {sent} bombs, p95 base {base * 1e3:.1f} ms, flood "
        f"{p95 * 1e3:.1f} ms, worker RSS max {max(rss):.0f} MB, reasons {set(probe.dead)}"
    )
    assert set(probe.dead) <= {"image_too_large", "decode_budget"}
    assert p95 <= 2 * max(base, 0.010)
    assert max(rss) <= 600
    assert proc.alive(), proc.tail()
