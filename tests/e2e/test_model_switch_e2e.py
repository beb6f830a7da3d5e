"""A real edge worker under load switches to a new model card: SQL holds every frame exactly
once, and each verdict row names the model that judged it (real Mosquitto, store, SQLite)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import edge_tinymodel as tiny
import pytest
from edge_stack import Proc, Watcher, linewatch, query
from helpers import wait_for
from history import PublisherLog, check_log, sqlite_rows

from broker.topics import StreamRef
from edge.model.card import CARD_NAME, load_card, save_card

pytestmark = pytest.mark.e2e

N = 300


def test_switch_under_load_loses_and_doubles_nothing(mosquitto_url: str, tmp_path: Path) -> None:
    site = f"t{uuid.uuid4().hex[:10]}"
    worker = f"E{site}"
    db = tmp_path / "history.db"
    model_dir = tiny.build(tmp_path / "model")
    env = {
        "LINEWATCH_MQTT_URL": mosquitto_url,
        "LINEWATCH_DB_URL": f"sqlite:///{db}",
        "LINEWATCH_DATA_DIR": str(tmp_path),
        "LINEWATCH_STORE_NAME": site,
        "LINEWATCH_STORE_SITE": site,
        "LINEWATCH_CAMERA_QUEUE": "1000",
        "LINEWATCH_TOTAL_QUEUE": "1000",
        "LINEWATCH_MODEL_WATCH_S": "0.2",
    }
    cam = StreamRef.camera(site, "L1", "st1", "c1")
    linewatch("db", "upgrade", env=env)
    store = Proc("store", ["store"], env, tmp_path).start()
    edge = Proc(
        "edge", ["edge", "--id", worker, "--streams", cam.key, "--model-dir", str(model_dir)],
        env, tmp_path,
    ).start()  # fmt: skip
    watcher = Watcher(mosquitto_url, f"w-{site}").start([worker, f"store-{site}"])
    images = [tiny.frame("defect" if i % 5 == 0 else "good", seed=i) for i in range(10)]

    def stored() -> int:
        return (
            len(query(db, "SELECT 1 FROM frames WHERE stream = ?", cam.key)) if db.exists() else 0
        )

    try:
        old = watcher.wait_online(worker).model_version
        watcher.wait_online(f"store-{site}")
        for seq in range(N):
            assert watcher.publish_frame(cam, images[seq % 10], seq).wait(10)
            if seq == N // 3:  # files first, the card last, while frames keep coming
                stage = tiny.build(tmp_path / "stage")
                for f in ("model.onnx", "nominal_bank.npy"):
                    shutil.copy(stage / f, model_dir / f".{f}.new")
                    os.replace(model_dir / f".{f}.new", model_dir / f)
                card = load_card(stage / CARD_NAME).model_copy(update={"name": "tiny-next"})
                save_card(card, model_dir / CARD_NAME)
            if seq % 25 == 24:  # a backlog of up to ~100 frames, never an unbounded one
                wait_for(lambda s=seq: stored() >= s - 100, 30, 0.02, what="the worker")
        wait_for(lambda: stored() >= N, 60, 0.2, what=f"{N} verdict rows")
        new = wait_for(
            lambda: (s := watcher.last(worker)) and s.model_version != old and s.model_version,
            30, 0.1, what="the new version announced",
        )  # fmt: skip
    except BaseException:
        print(edge.tail(), store.tail())
        raise
    finally:
        watcher.stop()
        edge.stop()
        store.stop()
    rows = query(
        db,
        "SELECT frame_key, seq, model_version FROM frames WHERE stream = ? ORDER BY seq",
        cam.key,
    )
    log = PublisherLog()
    for seq in range(N):
        log.record(cam.key, seq)
    (h,) = check_log(log, sqlite_rows(db))
    assert h.ok() and h.stored == N, h  # a switch loses or doubles nothing, and gaps none
    versions = [r[2] for r in rows]
    assert set(versions) == {old, new} and new.startswith("tiny-next/")
    first_new = versions.index(new)
    assert first_new > 0 and versions[first_new:] == [new] * (N - first_new)
