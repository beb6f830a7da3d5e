"""The fuzz target: every decoder of broker/codecs.py and the image path of the edge worker.

One input = one selector byte (which topic, and whether MQTT v5 user properties come along)
+ the payload. Allowed outcomes: a decoded message, or ``Rejected`` / ``PreprocessError``
with a reason (what becomes a dead letter). Anything else raised is a crash. ``seed_inputs``
turns tests/corpus/bad (its manifest names each file's topic) into inputs of this shape.
"""

from __future__ import annotations

import json
from pathlib import Path

from broker import codecs
from broker import topics as t
from broker.messages import FrameIn
from broker.topics import StreamRef
from edge.preprocess import PreprocessError, decode_image

CAM = StreamRef.camera("fz", "L1", "st1", "cam1")
SENSOR = StreamRef.sensor("fz", "L1", "st1", "temp1")
TOPICS: tuple[tuple[str, str], ...] = (
    ("input", t.frame_topic(CAM)),
    ("input", t.sensor_topic(SENSOR)),
    ("output", t.verdict_topic(CAM)),
    ("output", t.features_topic(CAM)),
    ("output", t.frame_family_topic(CAM)),
    ("output", t.threshold_change_topic(CAM)),
    ("output", t.gap_topic(CAM)),
    ("output", t.readings_topic(SENSOR)),
    ("output", t.sensor_anomaly_topic(SENSOR)),
    ("output", t.alert_topic("fz", "L1", "st1")),
    ("output", t.worker_status_topic("W1")),
    ("output", t.assignment_topic("W1")),
    ("output", t.family_topic("F1")),
    ("output", t.dead_letter_topic("edge")),
    ("output", t.dispatch_decision_topic()),
    ("output", t.threshold_control_topic(CAM)),
    ("output", t.family_control_topic()),
    ("output", t.feedback_control_topic(CAM)),
    ("output", t.feedback_result_topic(CAM)),
    ("output", t.teach_topic(CAM)),
    ("output", t.history_frame_topic(CAM)),
)
_PROPS: tuple[dict[str, str], ...] = ({}, {"seq": "7", "ts": "2026-01-01T00:00:00Z", "part": "p1"})


def _props(selector: int, payload: bytes) -> dict[str, str]:
    """User properties: none, a valid set, or three taken from the payload's tail."""
    mode = (selector >> 4) % 3
    if mode < 2:
        return dict(_PROPS[mode])
    tail = payload[-24:].decode("utf-8", "replace")
    return {"seq": tail[:8], "ts": tail[8:16], "part": tail[16:]}


def run_one(data: bytes) -> None:
    """Decode one fuzz input; raise only on a crash (anything but a clean rejection)."""
    if not data:
        return
    selector, payload = data[0], data[1:]
    decoder, topic = TOPICS[selector % len(TOPICS)]
    try:
        if decoder == "output":
            codecs.decode_output(topic, payload)
            return
        msg = codecs.decode_input(topic, payload, _props(selector, payload), receipt="fz")
        if isinstance(msg, FrameIn):
            decode_image(msg.image)
    except (codecs.Rejected, PreprocessError) as exc:
        assert exc.reason, "a rejection without a reason"


def seed_inputs(corpus: Path) -> dict[str, bytes]:
    """tests/corpus/bad as fuzz inputs: file name -> selector byte + payload."""
    manifest = json.loads((corpus / "manifest.json").read_text())["files"]
    out: dict[str, bytes] = {}
    for name, meta in manifest.items():
        route = meta["topic"].rsplit("/", 1)[-1]
        pick = next(
            (i for i, (_, topic) in enumerate(TOPICS) if topic.rsplit("/", 1)[-1] == route),
            None,
        )
        if pick is None and "/sensor/" in meta["topic"]:
            pick = 1
        if pick is None:
            continue
        out[name] = bytes([pick]) + (corpus / name).read_bytes()
    return out
