"""Acceptance of issue 16, item 4 (opt-in, `make soak`): a line's own history retrains the
model. Real Mosquitto and Postgres, the quick 224 px model, the feed's HTTP API.

An edge worker judges the simulator's washer frames and samples one in 4 good ones for the
store; an operator confirms the flagged defects of two families (``crack``, which the quick
model never learnt, and ``scratch``) through the feed. `linewatch model train --from-history`
then trains a candidate on the older part of that history and measures it and the served
model on the newest part; `linewatch model promote` decides (and is forced when it
refuses), and the worker switches to the installed candidate without a restart. The figures
are printed as JSON lines (run with ``-s``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from helpers import wait_for
from sqlalchemy import select
from test_teach_drift import quick_model

from broker.mqtt import MqttTransport
from broker.topics import StreamRef, frame_topic, teach_topic
from edge.model import card as cardmod
from edge.model.promote import worse_families
from edge.model.synthetic import render_part
from edge.settings import EdgeSettings
from edge.startup import build_worker
from services.feed import auth
from services.feed.app import create_app
from services.feed.settings import FeedSettings
from services.sim.wire import encode_jpeg
from services.store import schema as s
from services.store.engine import make_engine, upgrade
from services.store.writer import StoreWriter

pytestmark = [pytest.mark.soak, pytest.mark.timeout(3600)]
ROOT = Path(__file__).resolve().parents[2]
PART, FAMILIES, ROUNDS = "washer", ("crack", "scratch"), 8


class Line:
    def __init__(self, cam: StreamRef, pub: MqttTransport, engine: Any, op: httpx.Client):
        self.cam, self.pub, self.engine, self.op, self.seq = cam, pub, engine, op, 0

    def publish(self, n: int, seed: int, defect: str | None = None) -> list[str]:
        keys = []
        for i in range(n):
            img, _ = render_part((12, seed, i), PART, defect, size=448)
            self.seq += 1
            data = encode_jpeg(np.asarray(img.convert("RGB"), np.uint8), 1.0)
            props = {"seq": str(self.seq)}
            assert self.pub.publish(frame_topic(self.cam), data, properties=props).wait(10)
            keys.append(f"{self.cam.key}#0:{self.seq}")
        return keys

    def verdicts(self, keys: list[str]) -> list[dict[str, Any]]:
        f = s.T_FRAMES

        def stored() -> list[Any] | None:
            q = select(f.c.id, f.c.frame_key, f.c.verdict, f.c.model_version)
            with self.engine.connect() as conn:
                rows = list(conn.execute(q.where(f.c.frame_key.in_(keys))).mappings())
            return rows if len(rows) == len(keys) else None

        rows = wait_for(stored, 300, interval=0.2, what=f"{len(keys)} verdicts")
        by_key = {r["frame_key"]: dict(r) for r in rows}
        return [by_key[k] for k in keys]

    def confirm(self, frame_id: int, family: str) -> str:
        body = {"frame_id": frame_id, "label": "confirmed", "family": family}
        r = self.op.post("/api/feedback", json=body)
        assert r.status_code == 202, r.text
        fid = r.json()["id"]

        def answered() -> Any:
            got = self.op.get(f"/api/feedback/{fid}").json()
            return got if got["status"] != "requested" else None

        return str(wait_for(answered, 60, what=f"answer to mark {fid}")["status"])


@pytest.fixture()
def line(
    postgres_url: str, mosquitto_url: str, site_id: str, tmp_path: Path
) -> Iterator[tuple[Line, Path]]:
    from _feedkit import serving

    served = tmp_path / "served"
    shutil.copytree(quick_model(), served)
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    cam = StreamRef.camera(site_id, "line1", "st1", "cam1")
    tr = [
        MqttTransport(mosquitto_url, f"retrain-{n}-{site_id}", clean_start=True)
        for n in ("store", "edge", "feed", "cam")
    ]
    writer = StoreWriter(engine, tr[0], flush_ms=50, site=site_id)
    writer.start()
    tr[0].start()
    settings = EdgeSettings(
        worker_id=f"R{site_id}",
        model_dir=served,
        data_dir=tmp_path,
        history_sample_every=4,
        model_watch_s=1,
    )
    worker = build_worker(settings, tr[1])
    worker.start((cam.key,))
    tr[2].start()
    tr[3].start()
    app = create_app(
        FeedSettings(db_url=postgres_url, feed_read_auth=True),
        engine=engine,
        transport=tr[2],
        escalate=False,
    )
    try:
        with serving(app) as port:
            token = auth.create(engine, "operator", f"olga-{site_id}")
            headers = {"Authorization": f"Bearer {token}"}
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, headers=headers, timeout=30) as op:
                yield Line(cam, tr[3], engine, op), served
    finally:
        assert tr[3].publish(teach_topic(cam), b"", retain=True).wait(10)
        worker.stop()
        writer.stop()
        for t in tr:
            t.stop()
        engine.dispose()


def _linewatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3000,
    )


def test_history_retrains_and_promotes(
    line: tuple[Line, Path], postgres_url: str, tmp_path: Path
) -> None:
    rig, served = line
    rig.verdicts(rig.publish(4, seed=1))  # the camera binds its part type's model
    answers: list[str] = []
    caught = {f: 0 for f in FAMILIES}
    for r in range(ROUNDS):  # the line runs; the operator confirms what gets flagged
        rig.verdicts(rig.publish(30, seed=100 + r))
        for fam in FAMILIES:
            for row in rig.verdicts(rig.publish(3, seed=200 + r, defect=fam)):
                if row["verdict"] != "ok":
                    caught[fam] += 1
                    answers.append(rig.confirm(row["id"], fam))
    out = tmp_path / "models" / "cand"
    res = _linewatch(
        "model", "train", "--from-history", "--camera", rig.cam.key, "--db-url", postgres_url,
        "--served", str(served), "--out", str(out), "--profile", "quick", "--name", "retrained",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((out.parent / ".cand.history" / "manifest.json").read_text())
    trained = {k for r in manifest["train"].values() for k in r["files"].values()}
    held = {k for r in manifest["heldout"].values() for k in r["files"].values()}
    assert held and not held & trained
    card = cardmod.load_card(out)
    hist = card.metrics["history"]
    worse = worse_families(hist)
    promoted = _linewatch("model", "promote", str(out), "--to", str(served))
    report = {
        "published_defects": {f: 3 * ROUNDS for f in FAMILIES},
        "flagged_and_confirmed": caught,
        "mark_answers": sorted(set(answers)),
        "trained_on": {k: v["count"] for k, v in manifest["train"].items()},
        "held_out": {k: v["count"] for k, v in manifest["heldout"].items()},
        "candidate": hist["candidate"],
        "served": hist["served"],
        "worse": [str(w) for w in worse],
        "promote_rc": promoted.returncode,
        "promote_says": (promoted.stderr or promoted.stdout)[-400:],
    }
    print("RETRAIN_HISTORY " + json.dumps(report, default=str))
    assert (promoted.returncode == 0) == (not worse), report
    # refused or not, roll it out (forced when refused): the worker switches without a restart
    rolled = promoted
    if promoted.returncode != 0:
        rolled = _linewatch("model", "promote", str(out), "--to", str(served), "--force")
    assert rolled.returncode == 0, rolled.stderr[-2000:]

    def on_new_model() -> str | None:
        version = str(rig.verdicts(rig.publish(1, seed=998))[0]["model_version"])
        return version if version.startswith("retrained/") else None

    switched = wait_for(on_new_model, 120, interval=1.0, what="a verdict of the new model")
    print("RETRAIN_ROLLOUT " + json.dumps({"forced": rolled is not promoted, "model": switched}))
