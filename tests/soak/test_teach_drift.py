"""Acceptance of issue 16 (opt-in, `make soak`): under the simulator's lighting drift the
drifted camera's false alarms rise; at most 20 operator marks bring them back to <= 2 %
within 200 frames. Real Mosquitto and Postgres, the quick 224 px model, the feed's HTTP API.

Recall on the camera's standard-tier defects is measured on the same parts (one seed)
before the drift, under the drift untaught, and under the drift once taught; the issue's bar
is asserted: taught recall >= 0.95 x the recall before the drift. (Three different draws of
60 parts, as an earlier version used, differ by about 0.036 each in recall from the draw
alone: docs/model.md, "Teaching", evidence.)

Frames are the simulator's own: its renderer (edge/model/synthetic.py) and its lighting
drift (services/sim/wire.py ``encode_jpeg`` with the built-in ``lighting-drift`` scenario's
gain 0.6), on the part type of the drifted camera ``line1/st1/cam1`` (washer). The figures
are printed as one JSON line (run with ``-s``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from edge_stack import linewatch
from helpers import wait_for
from sqlalchemy import select

from broker.mqtt import MqttTransport
from broker.topics import StreamRef, frame_topic, teach_topic
from edge.model.synthetic import render_part
from edge.settings import EdgeSettings
from edge.startup import build_worker
from services.feed import auth
from services.feed.app import create_app
from services.feed.settings import FeedSettings
from services.sim.scenario import BUILTIN
from services.sim.wire import encode_jpeg
from services.store import schema as s
from services.store.engine import make_engine, upgrade
from services.store.writer import StoreWriter

pytestmark = [pytest.mark.soak, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
PART = "washer"  # line1/st1/cam1 of the simulator's default line
FAMILIES = ("scratch", "dent", "missing", "stain", "discoloration")  # crack: held out
MAX_MARKS, WINDOW, PER_FAMILY = 20, 100, 12


def quick_model() -> Path:
    """The quick 224 px model (built once into var/models/quick; cached by its inputs)."""
    override = os.environ.get("LINEWATCH_TEST_TEACH_MODEL")
    if override:
        return Path(override)
    out = ROOT / "var" / "models" / "quick"
    linewatch("model", "build", "--profile", "quick", "--out", str(out), timeout=3600)
    return out


def drift_gain() -> float:
    (effect,) = BUILTIN["lighting-drift"]
    assert effect.gain is not None
    return float(effect.gain)


@dataclass
class Rig:
    cam: StreamRef
    pub: MqttTransport
    engine: Any
    op: httpx.Client
    seq: int = 0
    marks: list[int] = field(default_factory=list)

    def publish(self, n: int, seed: int, defect: str | None = None, gain: float = 1.0) -> list[str]:
        keys = []
        for i in range(n):
            img, _ = render_part((11, seed, i), PART, defect, size=448)
            data = encode_jpeg(np.asarray(img.convert("RGB"), np.uint8), gain)
            self.seq += 1
            assert self.pub.publish(
                frame_topic(self.cam), data, properties={"seq": str(self.seq)}
            ).wait(10)
            keys.append(f"{self.cam.key}#0:{self.seq}")
        return keys

    def verdicts(self, keys: list[str]) -> list[dict[str, Any]]:
        f = s.T_FRAMES

        def stored() -> list[Any] | None:
            with self.engine.connect() as conn:
                q = select(f.c.id, f.c.frame_key, f.c.verdict, f.c.novelty_score)
                rows = list(conn.execute(q.where(f.c.frame_key.in_(keys))).mappings())
            return rows if len(rows) == len(keys) else None

        rows = wait_for(stored, 300, interval=0.2, what=f"{len(keys)} verdicts")
        by_key = {r["frame_key"]: dict(r) for r in rows}
        return [by_key[k] for k in keys]

    def mark(self, frame_id: int) -> dict[str, Any]:
        r = self.op.post("/api/feedback", json={"frame_id": frame_id, "label": "not_a_defect"})
        assert r.status_code == 202, r.text
        fid = r.json()["id"]
        self.marks.append(fid)

        def answered() -> Any:
            body = self.op.get(f"/api/feedback/{fid}").json()
            return body if body["status"] != "requested" else None

        return dict(wait_for(answered, 60, what=f"answer to mark {fid}"))


def flagged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["verdict"] != "ok"]


@pytest.fixture()
def rig(postgres_url: str, mosquitto_url: str, site_id: str, tmp_path: Path) -> Iterator[Rig]:
    from _feedkit import serving

    model = quick_model()
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    cam = StreamRef.camera(site_id, "line1", "st1", "cam1")
    transports = [
        MqttTransport(mosquitto_url, f"drift-{n}-{site_id}", clean_start=True)
        for n in ("store", "edge", "feed", "cam")
    ]
    writer = StoreWriter(engine, transports[0], flush_ms=50, site=site_id)
    writer.start()
    transports[0].start()
    settings = EdgeSettings(  # queues that hold a whole burst: no frame is shed on a busy host
        worker_id=f"D{site_id}", model_dir=model, data_dir=tmp_path,
        camera_queue=512, total_queue=512,
    )  # fmt: skip
    worker = build_worker(settings, transports[1])
    worker.start((cam.key,))
    transports[2].start()
    transports[3].start()
    app = create_app(
        FeedSettings(db_url=postgres_url, feed_read_auth=True),
        engine=engine,
        transport=transports[2],
        escalate=False,
    )
    try:
        with serving(app) as port:
            token = auth.create(engine, "operator", f"olga-{site_id}")
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
            ) as op:
                yield Rig(cam, transports[3], engine, op)
    finally:
        assert transports[3].publish(teach_topic(cam), b"", retain=True).wait(10)
        worker.stop()
        writer.stop()
        for t in transports:
            t.stop()
        engine.dispose()


def test_marks_bring_drifted_false_alarms_back_and_keep_recall(rig: Rig) -> None:
    gain = drift_gain()
    rig.verdicts(rig.publish(4, seed=1))  # the camera binds its part type's model
    good = rig.verdicts(rig.publish(100, seed=2))
    defects = rig.verdicts([k for f in FAMILIES for k in rig.publish(PER_FAMILY, seed=3, defect=f)])
    # the same parts (seed 3) drifted: before and after are compared on one population
    fpr_before = len(flagged(good)) / len(good)
    recall_before = len(flagged(defects)) / len(defects)

    drifted = rig.verdicts(rig.publish(60, seed=4, gain=gain))  # nobody marks these
    fpr_drift = len(flagged(drifted)) / len(drifted)
    untaught = rig.verdicts(
        [k for f in FAMILIES for k in rig.publish(PER_FAMILY, seed=3, defect=f, gain=gain)]
    )
    recall_untaught = len(flagged(untaught)) / len(untaught)

    window: list[dict[str, Any]] = []
    answers: list[str] = []
    for batch in range(0, 2 * WINDOW, 10):
        rows = rig.verdicts(rig.publish(10, seed=5 + batch, gain=gain))
        window += rows
        if batch < WINDOW:  # the operator marks what the drift flags, at most 20 times
            for r in flagged(rows):
                if len(rig.marks) < MAX_MARKS:
                    answers.append(rig.mark(r["id"])["status"])
    fpr_after = len(flagged(window[WINDOW:])) / WINDOW
    late = rig.verdicts(
        [k for f in FAMILIES for k in rig.publish(PER_FAMILY, seed=3, defect=f, gain=gain)]
    )
    recall_after = len(flagged(late)) / len(late)
    teach = rig.op.get(f"/api/cameras/{rig.cam.key}/teach").json()["items"]
    report = {
        "camera": rig.cam.key,
        "part": PART,
        "gain": gain,
        "fpr_before": fpr_before,
        "fpr_drift_untaught": fpr_drift,
        "marks": len(rig.marks),
        "mark_answers": answers,
        "fpr_after_frames_101_200": fpr_after,
        "recall_standard_before": recall_before,
        "recall_standard_drift_untaught": recall_untaught,
        "recall_standard_after": recall_after,
        "recall_ratio": recall_after / recall_before if recall_before else None,
        "novelty_threshold_after": teach[0]["novelty_threshold"] if teach else None,
        "teach_versions": len(teach),
    }
    print("TEACH_DRIFT " + json.dumps(report))
    assert fpr_drift > fpr_before, report
    assert len(rig.marks) <= MAX_MARKS and set(answers) <= {"applied"}, report
    assert fpr_after <= 0.02, report
    assert recall_after >= 0.95 * recall_before, report
