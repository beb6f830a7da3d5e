"""Publish a defective frame -> its alert step in the SSE stream: p95 <= 500 ms over 50 frames."""

from __future__ import annotations

import json
import os
import re
import threading
import time

import httpx
import pytest
from feed_e2e import FeedStack, defect_frames, flag_everything
from helpers import wait_for

pytestmark = pytest.mark.e2e

N = 50
GAP_S = 0.1  # one defective frame every 100 ms: a steady line, not a burst
P95_BAR_MS = 500.0
SEQ = re.compile(r"#\d+:(\d+)!")


class StreamReader(threading.Thread):
    """Reads /api/stream and notes when each source event (frame) arrived."""

    def __init__(self, url: str, token: str, camera_key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.camera_key = url, token, camera_key
        self.arrived: dict[int, float] = {}
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=60)) as c,
            c.stream("GET", f"{self.url}/api/stream", params={"token": self.token}) as r,
        ):
            for line in r.iter_lines():
                now = time.monotonic()
                if line.startswith("retry:"):
                    self.ready.set()
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    src = data.get("source_event") or ""
                    m = SEQ.search(src)
                    if m and src.startswith(self.camera_key):
                        self.arrived.setdefault(int(m.group(1)), now)
                if self.stop.is_set():
                    return


def test_publish_to_sse_p95_under_500ms(feed_stack: FeedStack) -> None:
    cam = feed_stack.camera("c2")
    frames = defect_frames(feed_stack.model_dir, N + 1)
    flag_everything(feed_stack, cam)
    load_before = os.getloadavg()[0]
    reader = StreamReader(feed_stack.url, feed_stack.token, cam.key)
    reader.start()
    assert reader.ready.wait(15), "SSE stream did not open"
    # one warm-up frame (first alert of the camera, first evidence), not measured
    assert feed_stack.watcher.publish_frame(cam, frames[0], 1000).wait(10)
    wait_for(lambda: 1000 in reader.arrived, 30, what="warm-up alert")
    sent: dict[int, float] = {}
    for seq in range(1, N + 1):
        t0 = time.monotonic()
        sent[seq] = t0
        feed_stack.watcher.publish_frame(cam, frames[seq], 1000 + seq)
        time.sleep(max(0.0, GAP_S - (time.monotonic() - t0)))  # pacing the publisher
    wait_for(
        lambda: all(1000 + s in reader.arrived for s in sent),
        60,
        what=f"{N} alert steps in the SSE stream",
    )
    reader.stop.set()
    lat = sorted((reader.arrived[1000 + s] - t) * 1000.0 for s, t in sent.items())
    p50, p95 = lat[len(lat) // 2], lat[int(0.95 * (len(lat) - 1) + 0.5)]
    ok = p95 <= P95_BAR_MS
    cores = len(os.sched_getaffinity(0))
    busy = max(load_before, os.getloadavg()[0]) > cores  # other work competing for the CPU
    verdict = "pass" if ok else ("inconclusive" if busy else "fail")
    report = {
        "frames": N,
        "model": feed_stack.model_dir.name,
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(lat[-1], 1),
        "bar_p95_ms": P95_BAR_MS,
        "load_before": round(load_before, 2),
        "cores": cores,
        "verdict": verdict,
    }
    print("feed latency:", json.dumps(report))
    if verdict == "inconclusive":
        pytest.skip(f"host busy (load {load_before:.1f} on {cores} cores): {report}")
    assert ok, report
