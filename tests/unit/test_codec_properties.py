"""Property tests: any bytes into any decoder give a typed message or a Rejected, nothing else."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from broker import codecs, topics
from broker.messages import FrameIn, Msg, SensorIn
from broker.topics import StreamRef

pytestmark = pytest.mark.unit

CAM = StreamRef.camera("s1", "l1", "st1", "cam1")
TEMP = StreamRef.sensor("s1", "l1", "st1", "temp1")
FRAME_T, SENSOR_T = topics.frame_topic(CAM), topics.sensor_topic(TEMP)
OUTPUT_TOPICS = [
    topics.verdict_topic(CAM),
    topics.features_topic(CAM),
    topics.frame_family_topic(CAM),
    topics.threshold_change_topic(CAM),
    topics.gap_topic(CAM),
    topics.readings_topic(TEMP),
    topics.sensor_anomaly_topic(TEMP),
    topics.alert_topic("s1", "l1", "st1"),
    topics.worker_status_topic("w1"),
    topics.assignment_topic("w1"),
    topics.family_topic("f1"),
    topics.threshold_control_topic(CAM),
    topics.dead_letter_topic("c1"),
    topics.dispatch_decision_topic(),
]
REASON_RE = re.compile(r"[a-z][a-z0-9_]{1,40}")
# LINEWATCH_PROPERTY_EXAMPLES=5000 for a deeper hunt; the default keeps the unit tier quick.
EXAMPLES = int(os.environ.get("LINEWATCH_PROPERTY_EXAMPLES", "150"))
FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 10, 10)).save(buf, fmt)
    return buf.getvalue()


JPEG, PNG = _image("JPEG"), _image("PNG")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
properties = st.dictionaries(
    st.sampled_from(["seq", "ts", "part", "epoch", "unit", "x"]),
    st.text(max_size=30) | st.integers().map(str),
    max_size=5,
)


def _check_rejection(err: codecs.Rejected, topic: str, payload: bytes) -> None:
    assert REASON_RE.fullmatch(err.reason), err.reason
    assert isinstance(err.detail, str) and len(err.detail) <= 300
    letter = codecs.dead_letter("prop", topic, payload, err)
    assert letter.reason == err.reason
    codecs.encode(letter)


def _input(topic: str, payload: bytes, props: dict[str, str] | None = None) -> None:
    try:
        msg = codecs.decode_input(topic, payload, props or {}, "r")
    except codecs.Rejected as err:
        _check_rejection(err, topic, payload)
        return
    assert isinstance(msg, FrameIn | SensorIn)
    if isinstance(msg, FrameIn):
        assert msg.width > 0 and msg.height > 0 and msg.encoding in ("jpeg", "png")
    else:
        assert msg.readings and all(r.value == r.value for r in msg.readings)


def _output(topic: str, payload: bytes) -> None:
    try:
        msg = codecs.decode_output(topic, payload)
    except codecs.Rejected as err:
        _check_rejection(err, topic, payload)
        return
    assert isinstance(msg, Msg)
    assert codecs.decode_output(topic, codecs.encode(msg)) == msg


@FAST
@given(st.binary(max_size=4096), properties)
def test_any_bytes_on_frame_topic(payload: bytes, props: dict[str, str]) -> None:
    _input(FRAME_T, payload, props)


@FAST
@given(st.binary(max_size=4096), properties)
def test_any_bytes_on_sensor_topic(payload: bytes, props: dict[str, str]) -> None:
    _input(SENSOR_T, payload, props)


@FAST
@given(st.sampled_from(OUTPUT_TOPICS), st.binary(max_size=4096))
def test_any_bytes_on_output_topics(topic: str, payload: bytes) -> None:
    _output(topic, payload)


@FAST
@given(st.text(max_size=120), st.binary(max_size=64))
def test_any_topic(topic: str, payload: bytes) -> None:
    _input(topic, payload)
    _output(topic, payload)


@FAST
@given(st.sampled_from([JPEG, PNG]), st.data())
def test_mutated_images(image: bytes, data: st.DataObject) -> None:
    buf = bytearray(image)
    for _ in range(data.draw(st.integers(0, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif buf:
            buf[pos : pos + 4] = b"\x00\x00\x00\x00"[: len(buf[pos : pos + 4])]
    _input(FRAME_T, bytes(buf), {})


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


@FAST
@given(json_values, st.sampled_from([FRAME_T, SENSOR_T]))
def test_any_json_on_inputs(value: Any, topic: str) -> None:
    _input(topic, _dumps(value))


@FAST
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "value": json_values,
            "seq": json_values,
            "ts": json_values,
            "unit": json_values,
            "epoch": json_values,
            "readings": st.lists(
                st.dictionaries(
                    st.sampled_from(["value", "seq", "ts", "unit"]), json_values, max_size=4
                ),
                max_size=5,
            ),
        },
    )
)
def test_sensor_shaped_json(obj: dict[str, Any]) -> None:
    _input(SENSOR_T, _dumps(obj))


@FAST
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "seq": json_values | st.integers(0, 2**64),
            "ts": json_values | st.integers(),
            "part": json_values,
            "epoch": json_values,
            "encoding": st.sampled_from(["jpeg", "png", "gif"]) | json_values,
            "image": st.sampled_from(
                [base64.b64encode(JPEG).decode(), base64.b64encode(PNG).decode(), "", "@@"]
            )
            | json_values,
        },
    )
)
def test_envelope_shaped_json(obj: dict[str, Any]) -> None:
    _input(FRAME_T, _dumps(obj))


@FAST
@given(
    st.sampled_from(OUTPUT_TOPICS),
    st.dictionaries(
        st.sampled_from(
            [
                "stream",
                "key",
                "worker",
                "ts",
                "verdict",
                "family",
                "epoch",
                "seq",
                "embedding",
                "readings",
                "state",
                "role",
                "counter",
                "kind",
                "site",
                "line",
                "station",
            ]
        ),
        json_values,
        max_size=8,
    ),
)
def test_output_shaped_json(topic: str, obj: dict[str, Any]) -> None:
    _output(topic, _dumps(obj))
