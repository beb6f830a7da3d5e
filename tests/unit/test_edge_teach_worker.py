"""Operators' feedback in the edge worker over the loopback bus, with the tiny ONNX model:
not_a_defect teaches the camera (retained, versioned state), rollback restores it exactly,
and a mark that would hide a confirmed defect is held for a second operator."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import edge_tinymodel as tiny
import numpy as np
import pytest
from helpers import wait_for
from PIL import Image

from broker.codecs import decode_output
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.messages import Msg, Verdict
from broker.teach_messages import FeedbackControl, FeedbackResult, TeachState
from broker.topics import (
    Route,
    StreamRef,
    feedback_control_topic,
    frame_topic,
    parse,
    teach_topic,
)
from broker.transport import Inbound
from edge.settings import EdgeSettings
from edge.startup import build_worker
from edge.worker import EdgeWorker

pytestmark = pytest.mark.unit

CAM = StreamRef.camera("s1", "L1", "st1", "c1")


def spot(seed: int, corner: str = "tl") -> bytes:
    """A grey frame with a blue square in one corner (an anomaly the head does not know)."""
    rng = np.random.default_rng(seed)
    img = np.clip(128 + rng.normal(0, 3, (64, 64, 3)), 0, 255)
    ys, xs = {"tl": (0, 0), "br": (48, 48)}[corner]
    img[ys : ys + 16, xs : xs + 16] = (0, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class Observer:
    """Publishes frames and feedback; records verdicts, results and taught states."""

    def __init__(self, hub: LoopbackHub) -> None:
        self.tr = LoopbackTransport(hub, "observer")
        self.got: list[tuple[Route, Msg]] = []
        self._lock = threading.Lock()
        self.seq = 0
        self.tr.subscribe("lw/v1/+/+/+/camera/+/#", self._on)
        self.tr.start()

    def _on(self, m: Inbound) -> None:
        route = parse(m.topic).route
        if route in (Route.VERDICT, Route.FEEDBACK_RESULT, Route.TEACH):
            with self._lock:
                self.got.append((route, decode_output(m.topic, m.payload)))

    def of(self, route: Route) -> list[Any]:
        with self._lock:
            return [msg for r, msg in self.got if r is route]

    def verdict(self, image: bytes) -> Verdict:
        """Publish one frame and wait for its verdict."""
        self.seq += 1
        self.tr.publish(frame_topic(CAM), image, properties={"seq": str(self.seq)})
        key = f"{CAM.key}#0:{self.seq}"
        found = wait_for(lambda: [v for v in self.of(Route.VERDICT) if v.key == key], 10, what=key)
        return found[0]

    def feedback(self, n: int, **kw: Any) -> FeedbackResult:
        ctl = FeedbackControl(
            request_id=f"r{n}-{kw.get('action', 'feedback')}",
            stream=CAM.key,
            action=kw.pop("action", "feedback"),
            feedback_id=n,
            actor=kw.pop("actor", "alice"),
            ts=datetime.now(UTC),
            **kw,
        )
        self.tr.publish(feedback_control_topic(CAM), ctl.model_dump_json().encode())
        got = wait_for(
            lambda: [
                r
                for r in self.of(Route.FEEDBACK_RESULT)
                if r.feedback_id == n and r.action == ctl.action
            ],
            10,
            what=f"result of feedback {n}",
        )
        return got[0]

    def states(self) -> list[TeachState]:
        return self.of(Route.TEACH)


@pytest.fixture()
def rig(tmp_path: Path) -> Iterator[tuple[EdgeWorker, Observer, LoopbackHub]]:
    hub = LoopbackHub()
    obs = Observer(hub)
    model = tiny.build(tmp_path / "model")
    settings = EdgeSettings(
        worker_id="W1", model_dir=model, data_dir=tmp_path, heartbeat_s=0.2, max_wait_ms=5
    )
    w = build_worker(settings, LoopbackTransport(hub, "edge-W1"))
    w.start((CAM.key,))
    yield w, obs, hub
    w.stop()
    obs.tr.stop()


def test_not_a_defect_teaches_and_rollback_restores_exactly(
    rig: tuple[EdgeWorker, Observer, LoopbackHub],
) -> None:
    w, obs, hub = rig
    assert obs.verdict(tiny.frame("good", 1)).verdict == "ok"
    flagged = obs.verdict(spot(2))
    assert flagged.verdict == "anomaly"
    before = w.pipeline.current.teach.state(CAM.key)  # type: ignore[union-attr]

    res = obs.feedback(1, frame_key=flagged.key, label="not_a_defect")
    assert res.status == "applied" and res.version == 1
    with Image.open(io.BytesIO(res.image or b"")) as im:  # kept at model-input size
        assert im.format == "PNG" and im.size == (tiny.SIZE, tiny.SIZE)
    state = wait_for(obs.states, 5, what="taught state")[0]
    assert state.version == 1 and state.previous_version == 0 and state.action == "teach"
    assert state.previous_allowance == b"" and len(state.allowance) == 4 * 4 * 4
    retained = hub.retained_for(teach_topic(CAM))
    assert len(retained) == 1 and decode_output(teach_topic(CAM), retained[0].payload) == state

    again = obs.verdict(spot(3))  # the same harmless mark on the next part
    assert again.verdict == "ok" and again.novelty_score < flagged.novelty_score
    other = obs.verdict(spot(4, "br"))  # a departure somewhere else still alerts
    assert other.verdict == "anomaly"

    undo = FeedbackControl(
        request_id="undo-1",
        stream=CAM.key,
        action="rollback",
        actor="bob",
        target=state.target(previous=True),
        undo_version=state.version,
        ts=datetime.now(UTC),
    )
    obs.tr.publish(feedback_control_topic(CAM), undo.model_dump_json().encode())
    back = wait_for(lambda: obs.states()[1:], 5, what="rollback state")[0]
    assert back.action == "rollback" and back.version == 2 and back.previous_version == 1
    after = w.pipeline.current.teach.state(CAM.key)  # type: ignore[union-attr]
    assert after.allowance_bytes() == before.allowance_bytes() == back.allowance == b""
    assert after.novelty == before.novelty and after.confirmed_keys == before.confirmed_keys
    assert obs.verdict(spot(3)).verdict == "anomaly"  # flagged again, as before teaching


def test_mark_hiding_a_confirmed_defect_is_held_until_a_second_operator(
    rig: tuple[EdgeWorker, Observer, LoopbackHub],
) -> None:
    w, obs, _ = rig
    real = obs.verdict(spot(5))
    assert obs.feedback(1, frame_key=real.key, label="confirmed").status == "applied"
    refused = obs.feedback(2, frame_key=real.key, label="not_a_defect")
    assert refused.status == "rejected" and refused.reason.startswith("confirmed_frame")

    lookalike = obs.verdict(spot(6))
    held = obs.feedback(3, frame_key=lookalike.key, label="not_a_defect")
    assert held.status == "held" and held.version is None
    assert held.recall_before == 1.0 and held.recall_after == 0.0
    book = w.pipeline.current.teach
    assert book is not None and book.state(CAM.key).allowance is None  # nothing applied
    assert obs.verdict(spot(7)).verdict == "anomaly"

    elsewhere = obs.verdict(spot(8, "br"))  # does not touch the confirmed defect's place
    assert obs.feedback(4, frame_key=elsewhere.key, label="not_a_defect").status == "applied"

    approved = obs.feedback(
        3, frame_key=lookalike.key, label="not_a_defect", action="approve", actor="carol"
    )
    assert approved.status == "applied" and approved.action == "approve"
    assert obs.verdict(spot(9)).verdict == "ok"


def test_unknown_frame_and_unsure_are_answered(
    rig: tuple[EdgeWorker, Observer, LoopbackHub],
) -> None:
    _, obs, _ = rig
    gone = obs.feedback(1, frame_key=f"{CAM.key}#0:999", label="not_a_defect")
    assert gone.status == "rejected" and gone.reason.startswith("frame_not_kept")
    flagged = obs.verdict(spot(10))
    unsure = obs.feedback(2, frame_key=flagged.key, label="unsure")
    assert unsure.status == "kept" and unsure.image and unsure.version is None
    assert obs.states() == []


def test_a_worker_taking_the_camera_over_adopts_its_retained_state(
    rig: tuple[EdgeWorker, Observer, LoopbackHub], tmp_path: Path
) -> None:
    w, obs, hub = rig
    flagged = obs.verdict(spot(11))
    assert obs.feedback(1, frame_key=flagged.key, label="not_a_defect").status == "applied"
    taught = wait_for(obs.states, 5, what="taught state")[0]
    w.stop()  # the camera moves to another worker
    settings = EdgeSettings(
        worker_id="W2", model_dir=tmp_path / "model", data_dir=tmp_path / "w2", max_wait_ms=5
    )
    w2 = build_worker(settings, LoopbackTransport(hub, "edge-W2"))
    w2.start((CAM.key,))
    try:
        book = w2.pipeline.current.teach
        assert book is not None
        wait_for(lambda: book.state(CAM.key).version == taught.version, 5, what="adopted")
        assert book.state(CAM.key).allowance_bytes() == taught.allowance
        assert obs.verdict(spot(12)).verdict == "ok"  # taught there too
    finally:
        w2.stop()
