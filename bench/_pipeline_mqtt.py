"""MQTT half of bench/pipeline.py: store + edge worker processes and a separate publisher.

Run as a script it is the publisher process:
``_pipeline_mqtt.py publish --url U --site S --frames DIR --mode closed|open ...``
and prints one JSON line with what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CAMERAS = ("c0", "c1")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            vals[key] = int(rest.split()[0]) / 1024
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)


class SqlCounter(threading.Thread):
    """Polls the stored verdict count, remembering when each count was first seen."""

    def __init__(self, db: Path, site: str) -> None:
        super().__init__(daemon=True)
        self.db, self.site = db, site
        self.samples: list[tuple[float, int]] = []
        self.stop_ev = threading.Event()

    def count(self) -> int:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return int(
                con.execute("SELECT count(*) FROM frames WHERE site = ?", (self.site,)).fetchone()[
                    0
                ]
            )
        finally:
            con.close()

    def run(self) -> None:
        while not self.stop_ev.wait(0.05):
            try:
                self.samples.append((time.time(), self.count()))
            except sqlite3.Error:
                continue

    def reached(self, n: int, timeout: float = 60) -> float:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for t, c in self.samples:
                if c >= n:
                    return t
            time.sleep(0.05)
        raise RuntimeError(
            f"only {self.samples[-1][1] if self.samples else 0} of {n} verdicts stored"
        )


def _wait_online(url: str, worker: str, timeout: float = 180) -> None:
    from broker.codecs import decode_output
    from broker.mqtt import MqttTransport
    from broker.topics import worker_status_topic

    seen = threading.Event()
    t = MqttTransport(url, f"bench-watch-{uuid.uuid4().hex[:8]}", clean_start=True)

    def on(m: Any) -> None:
        if decode_output(m.topic, m.payload).state in ("online", "heartbeat"):  # type: ignore[attr-defined]
            seen.set()
        m.ack()

    t.subscribe(worker_status_topic(worker), on)
    t.start()
    try:
        if not seen.wait(timeout):
            raise RuntimeError(f"{worker} did not come online in {timeout} s")
    finally:
        t.stop()


def _publisher(
    url: str,
    site: str,
    frames_dir: Path,
    mode: str,
    seconds: float,
    rate: float = 0.0,
    window: int = 16,
) -> dict[str, Any]:
    res = subprocess.run(
        [
            sys.executable,
            __file__,
            "publish",
            "--url",
            url,
            "--site",
            site,
            "--frames",
            str(frames_dir),
            "--mode",
            mode,
            "--seconds",
            str(seconds),
            "--rate",
            str(rate),
            "--window",
            str(window),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 180,
        cwd=ROOT,
    )
    if res.returncode != 0:
        raise RuntimeError(f"publisher failed: {res.stderr[-2000:]}")
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def run(
    model_path: Path,
    frames: list[bytes],
    url: str,
    seconds: float,
    single_ms: float,
    trials: int = 3,
    raw_trial: Callable[[float], float] | None = None,
    window: int = 32,
) -> dict[str, Any]:
    """Start store + worker, measure closed-loop throughput (``window`` frames in flight)
    then half-load latency."""
    tmp = Path(tempfile.mkdtemp(prefix="lw-bench-mqtt-"))
    site = f"bench{uuid.uuid4().hex[:8]}"
    worker = f"B{site}"
    db = tmp / "history.db"
    frames_dir = tmp / "frames"
    frames_dir.mkdir()
    for i, data in enumerate(frames):
        (frames_dir / f"{i:04d}.jpg").write_bytes(data)
    env = {
        **os.environ,
        "LINEWATCH_MQTT_URL": url,
        "LINEWATCH_DB_URL": f"sqlite:///{db}",
        "LINEWATCH_DATA_DIR": str(tmp),
        "LINEWATCH_STORE_NAME": site,
        "LINEWATCH_STORE_SITE": site,
        "LINEWATCH_CAMERA_QUEUE": "64",
    }
    subprocess.run(_cli("db", "upgrade"), env=env, cwd=ROOT, check=True, capture_output=True)
    streams = ",".join(f"{site}/L1/st1/{c}" for c in CAMERAS)
    procs = []
    try:
        with (tmp / "store.log").open("wb") as fh:
            procs.append(
                subprocess.Popen(
                    _cli("store"), env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT
                )
            )
        with (tmp / "edge.log").open("wb") as fh:
            edge = subprocess.Popen(
                _cli("edge", "--id", worker, "--streams", streams, "--model-dir", str(model_path)),
                env=env,
                cwd=ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
            procs.append(edge)
        _wait_online(url, worker)
        _wait_online(url, f"store-{site}")
        return _measure(url, site, db, frames_dir, seconds, trials, edge.pid, raw_trial, window)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


def _measure(
    url: str,
    site: str,
    db: Path,
    frames_dir: Path,
    seconds: float,
    trials: int,
    edge_pid: int,
    raw_trial: Callable[[float], float] | None,
    window: int,
) -> dict[str, Any]:
    """Closed-loop trials (each after a paired raw trial), then half-load latency."""
    counter = SqlCounter(db, site)
    counter.start()
    pairs: list[tuple[float, float]] = []
    published = 0
    try:
        for i in range(trials + 1):  # the first round warms up
            raw = raw_trial(seconds) if (raw_trial is not None and i) else 0.0
            out = _publisher(url, site, frames_dir, "closed", seconds, window=window)
            published += out["published"]
            t_done = counter.reached(published)
            if i:
                pairs.append((raw, out["published"] / (t_done - out["t0"])))
        fps = float(np.median([m for _, m in pairs]))
        half = _publisher(url, site, frames_dir, "open", seconds, rate=fps / 2)
        published += half["published"]
        counter.reached(published)
        stored = counter.count()
        rss, peak = _rss_mb(edge_pid)
    finally:
        counter.stop_ev.set()
    lat = np.asarray(half["latencies_ms"], dtype=np.float64)
    return {
        "pairs": pairs,
        "frames_per_s": fps,
        "half_load_fps": half["rate"],
        "p95_latency_ms": float(np.percentile(lat, 95)),
        "p50_latency_ms": float(np.percentile(lat, 50)),
        "worker_rss_mb": rss,
        "worker_peak_rss_mb": peak,
        "stored": stored,
        "published": published,
    }


# ---- the publisher process ------------------------------------------------------------------


def publish_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["publish"])
    p.add_argument("--url", required=True)
    p.add_argument("--site", required=True)
    p.add_argument("--frames", type=Path, required=True)
    p.add_argument("--mode", choices=["closed", "open"], required=True)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--window", type=int, default=16)
    a = p.parse_args(argv)
    from broker.codecs import decode_output
    from broker.mqtt import MqttTransport
    from broker.topics import StreamRef, frame_topic, verdict_topic

    images = [f.read_bytes() for f in sorted(a.frames.glob("*.jpg"))]
    cams = [StreamRef.camera(a.site, "L1", "st1", c) for c in CAMERAS]
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    lock = threading.Condition()
    t = MqttTransport(a.url, f"bench-pub-{uuid.uuid4().hex[:8]}", clean_start=True)

    def on_verdict(m: Any) -> None:
        now = time.perf_counter()
        v = decode_output(m.topic, m.payload)
        with lock:
            got.setdefault(v.key, now)  # type: ignore[attr-defined]
            lock.notify_all()
        m.ack()

    for c in cams:
        t.subscribe(verdict_topic(c), on_verdict)
    t.start()
    epoch = int(time.time())  # a fresh publisher epoch: seqs restart without colliding
    t0_wall, t0 = time.time(), time.perf_counter()
    seq = 0
    while time.perf_counter() - t0 < a.seconds:
        if a.mode == "closed":
            with lock:
                lock.wait_for(lambda: len(sent) - len(got) < a.window, timeout=30)
        else:
            due = t0 + seq / a.rate
            time.sleep(max(0.0, due - time.perf_counter()))
        cam = cams[seq % len(cams)]
        key = f"{cam.key}#{epoch}:{seq}"
        with lock:
            sent[key] = time.perf_counter()
        t.publish(
            frame_topic(cam),
            images[seq % len(images)],
            properties={"seq": str(seq), "epoch": str(epoch)},
        )
        seq += 1
    with lock:
        lock.wait_for(lambda: len(got) >= len(sent), timeout=120)
    t.stop()
    lat = [(got[k] - s) * 1000 for k, s in sent.items() if k in got]
    print(
        json.dumps(
            {
                "published": len(sent),
                "answered": len(got),
                "t0": t0_wall,
                "rate": len(sent) / a.seconds,
                "latencies_ms": lat,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(publish_main(sys.argv[1:]))
