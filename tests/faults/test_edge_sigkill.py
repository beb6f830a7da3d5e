"""Edge worker faults: SIGKILL mid-stream loses nothing; garbage never disturbs good cameras."""

from __future__ import annotations

import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_site import Site, camera_frames
from edge_stack import ensure_fast_model, query
from helpers import wait_for
from history import PublisherLog, sqlite_rows, wait_accounted

from broker.codecs import decode_output
from broker.topics import frame_topic, verdict_topic

pytestmark = pytest.mark.fault
EDGE_KILL_GAPS = {"missing", "shed", "failover"}


@pytest.fixture(scope="module")
def fast_model() -> Path:
    return ensure_fast_model()


@pytest.fixture()
def site_env(mosquitto_url: str, fast_model: Path, tmp_path: Path) -> Iterator[Site]:
    env = Site(mosquitto_url, fast_model, tmp_path, ["c1", "c2"])
    try:
        yield env.start()
    except BaseException:
        print(env.logs())
        raise
    finally:
        env.stop()


def test_sigkill_mid_stream_every_frame_stored_once_or_gapped(site_env: Site) -> None:
    e = site_env
    images = camera_frames(e.model)
    cam = e.cams[0]
    period = 1.0 / max(2.0, min(25.0, 0.8 * e.capacity()))  # near the worker's capacity
    total, kill_at, restart_at = 150, 50, 80
    log = PublisherLog()
    pubs = []
    first = e.watcher.last(e.worker)
    for seq in range(total):
        if seq == kill_at:
            e.edges[-1].kill()  # SIGKILL: no goodbye, unacked frames stay with the broker
        if seq == restart_at:  # same id: resumes the broker session, redelivery follows
            e.start_edge(wait=False)
        pubs.append(e.watcher.publish_frame(cam, images[seq % len(images)], seq))
        log.record(cam.key, seq)
        time.sleep(period)  # a camera's frame rate (pacing the publisher, not waiting on state)
    assert all(p.wait(30) for p in pubs)
    e.watcher.wait_online(e.worker, counter_above=first.counter)
    # docs/operations.md, "Faults": a killed worker may leave missing/shed/failover gaps
    (h,) = wait_accounted(log, sqlite_rows(e.db), 240, allowed_gaps=EDGE_KILL_GAPS)
    print(json.dumps(h.as_dict()))
    assert h.stored + h.gapped == total and h.stored > 0, h
    assert "offline" in e.watcher.states(e.worker)  # the Last Will of the killed worker
    assert e.watcher.last(e.worker).counter > first.counter


def _bomb_png(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def garbage(good_jpeg: bytes) -> list[tuple[bytes, str]]:
    body = good_jpeg[:300] + bytes(len(good_jpeg) - 302) + good_jpeg[-2:]
    env = {"seq": 1, "part": "bad id!", "encoding": "jpeg", "image": "AAAA"}
    return [
        (b"\x00\x01garbage", "bad_image"),
        (good_jpeg[: len(good_jpeg) // 2], "image_truncated"),
        (_bomb_png(60_000, 60_000), "image_too_large"),
        (json.dumps(env).encode(), "bad_schema"),
        (body, "bad_image"),
        (b'{"seq": NaN, "encoding": "png", "image": ""}', "json_nan"),
    ]


def test_garbage_dead_lettered_without_hurting_other_cameras(site_env: Site) -> None:
    e = site_env
    images = camera_frames(e.model, 12)
    good_cam, bad_cam = e.cams
    lat: dict[str, float] = {}
    sent: dict[str, float] = {}
    lock = threading.Lock()

    def on_verdict(m: Any) -> None:
        v = decode_output(m.topic, m.payload)
        with lock:
            lat.setdefault(v.key, time.perf_counter())  # type: ignore[attr-defined]
        m.ack()

    e.watcher.t.subscribe(verdict_topic(good_cam), on_verdict)
    junk = garbage(images[0])
    period = 1.0 / max(1.0, min(15.0, 0.3 * e.capacity()))  # well below capacity
    seq = 0
    phases: dict[str, list[str]] = {"baseline": [], "garbage": []}
    for block in range(6):  # interleaved blocks, so machine-load drift hits both alike
        phase = "garbage" if block % 2 else "baseline"
        for i in range(25):
            key = f"{good_cam.key}#0:{seq}"
            with lock:
                sent[key] = time.perf_counter()
            e.watcher.publish_frame(good_cam, images[seq % len(images)], seq)
            phases[phase].append(key)
            seq += 1
            if phase == "garbage":
                for payload, _ in junk[i % 2 :: 2]:
                    e.watcher.t.publish(frame_topic(bad_cam), payload)
            time.sleep(period)  # the good camera's frame rate
    wait_for(lambda: len(lat) == seq, 120, 0.2, what="every good frame answered")

    def p95(keys: list[str]) -> float:
        return float(np.percentile([(lat[k] - sent[k]) * 1000 for k in keys], 95))

    base, noisy = p95(phases["baseline"]), p95(phases["garbage"])
    print(json.dumps({"baseline_p95_ms": base, "garbage_p95_ms": noisy}))
    assert noisy <= 2 * base, (base, noisy)
    want = {reason for _, reason in junk}

    def dead_letters() -> list[tuple[Any, ...]]:
        rows = query(
            e.db, "SELECT reason, detail FROM dead_letters WHERE topic = ?", frame_topic(bad_cam)
        )
        return rows if {x[0] for x in rows} >= want else []

    rows = wait_for(dead_letters, 60, 0.5, what="dead letters stored")
    assert {x[0] for x in rows} == want
    assert all(detail for _, detail in rows)
    assert e.edges[-1].alive()
