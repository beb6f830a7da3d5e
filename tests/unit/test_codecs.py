"""Codecs: round trips of every output message, every input form, limits, dead letters."""

from __future__ import annotations

import base64
import io
import json
import re
import shlex
import timeit
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from broker import codecs, embeddings, topics
from broker.codecs import Limits, Rejected, decode_input, decode_output, encode
from broker.messages import (
    Alert,
    Assignment,
    DeadLetter,
    DispatchDecision,
    FamilyControl,
    FamilyUpdate,
    Features,
    FrameFamily,
    FrameIn,
    Gap,
    Msg,
    ReadingsBatch,
    SensorAnomaly,
    SensorIn,
    StoredReading,
    ThresholdChange,
    ThresholdControl,
    Verdict,
    WorkerStatus,
    frame_key,
)
from broker.teach_messages import (
    FeedbackControl,
    FeedbackResult,
    HistoryFrame,
    TeachState,
    TeachTarget,
)
from broker.topics import StreamRef

pytestmark = pytest.mark.unit

CAM = StreamRef.camera("plant1", "line-2", "st_3", "cam1")
TEMP = StreamRef.sensor("plant1", "line-2", "st_3", "temp1")
T0 = datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)
FRAME_T, SENSOR_T = topics.frame_topic(CAM), topics.sensor_topic(TEMP)


def _jpeg(w: int = 320, h: int = 240) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (120, 30, 60)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png(w: int = 40, h: int = 30) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, "PNG")
    return buf.getvalue()


JPEG, PNG = _jpeg(), _png()


def output_samples() -> list[tuple[str, Msg]]:
    """One instance of every JSON output message, on its topic."""
    emb = embeddings.embedding_to_bytes(np.linspace(-1, 1, 16, dtype=np.float32))
    return [
        (
            topics.verdict_topic(CAM),
            Verdict(
                stream=CAM.key,
                key="k1",
                seq=5,
                epoch=2,
                worker="w1",
                captured_at=T0,
                received_at=T0,
                decided_at=T0 + timedelta(milliseconds=7),
                verdict="defect",
                defect_score=0.93,
                novelty_score=1.5e-3,
                predicted_class="scratch",
                model_version="resnet50-int8@abc",
                latency_ms=6.25,
                part="PN-1.2",
            ),
        ),
        (
            topics.features_topic(CAM),
            Features(
                stream=CAM.key,
                key="k1",
                epoch=1,
                worker="w1",
                ts=T0,
                dim=16,
                embedding=emb,
                verdict="anomaly",
                predicted_class="good",
            ),
        ),
        (
            topics.frame_family_topic(CAM),
            FrameFamily(
                stream=CAM.key, key="k1", family="fam-7", distance=0.25, is_new=True, ts=T0
            ),
        ),
        (
            topics.family_topic("fam-7"),
            FamilyUpdate(
                family="fam-7",
                name="scratch near edge",
                event="grew",
                size=12,
                first_seen=T0,
                last_seen=T0,
                rate_per_hour=3.5,
                actor="op1",
                ts=T0,
            ),
        ),
        (
            topics.alert_topic("plant1", "line-2", "st_3"),
            Alert(
                event_id="e1",
                kind="defect",
                severity="major",
                site="plant1",
                line="line-2",
                station="st_3",
                stream=CAM.key,
                frame_key="k1",
                message="defect: scratch 0.93",
                thumbnail=JPEG[:500] + b"\x00\xff",
                worker="w1",
                epoch=3,
                ts=T0,
            ),
        ),
        (
            topics.sensor_anomaly_topic(TEMP),
            SensorAnomaly(
                stream=TEMP.key,
                key="t#0:9",
                seq=9,
                ts=T0,
                value=99.5,
                kind="zscore",
                score=6.1,
                detail="z=6.1",
                worker="w1",
                epoch=1,
            ),
        ),
        (
            topics.readings_topic(TEMP),
            ReadingsBatch(
                stream=TEMP.key,
                worker="w1",
                epoch=1,
                readings=(
                    StoredReading(key="a", seq=1, ts=T0, value=1.5, unit="C"),
                    StoredReading(key="b", ts=T0, value=-2.0),
                ),
            ),
        ),
        (
            topics.gap_topic(CAM),
            Gap(
                key="g1",
                stream=CAM.key,
                reason="missing",
                from_seq=3,
                to_seq=4,
                count=2,
                worker="w1",
                ts=T0,
            ),
        ),
        (topics.gap_topic(TEMP), Gap(key="g2", stream=TEMP.key, reason="shed", worker="w1", ts=T0)),
        (
            topics.worker_status_topic("w1"),
            WorkerStatus(
                worker="w1",
                role="edge",
                state="online",
                counter=4,
                ts=T0,
                host="h",
                pid=12,
                capacity_fps=120.5,
                labels={"zone": "a"},
                streams=(CAM.key,),
                epoch=2,
            ),
        ),
        (
            topics.assignment_topic("w1"),
            Assignment(
                worker="w1",
                epoch=9,
                streams=(CAM.key,),
                rates={CAM.key: 0.5},
                dispatcher="d1",
                ts=T0,
            ),
        ),
        (
            topics.threshold_control_topic(CAM),
            ThresholdControl(
                stream=CAM.key,
                defect_threshold=0.8,
                actor="op1",
                reason="too many alarms",
                request_id="r1",
            ),
        ),
        (
            topics.threshold_change_topic(CAM),
            ThresholdChange(
                key="c1",
                stream=CAM.key,
                defect_threshold=0.8,
                novelty_threshold=2.0,
                previous_defect_threshold=0.7,
                actor="op1",
                worker="w1",
                ts=T0,
            ),
        ),
        (
            topics.dead_letter_topic("edge-1"),
            DeadLetter(
                key="d1",
                component="edge-1",
                topic="lw/v1/x",
                reason="bad_json",
                detail="x",
                payload_size=3,
                payload_head=b"\x00{\xff",
                ts=T0,
            ),
        ),
        (
            topics.dispatch_decision_topic(),
            DispatchDecision(
                decision_id="x1",
                dispatcher="d1",
                trigger="worker_dead",
                before={CAM.key: "w1"},
                after={CAM.key: "w2"},
                cost_before=2.0,
                cost_after=1.5,
                solve_ms=3.0,
                optimal=True,
                epochs={"w2": 4},
                ts=T0,
            ),
        ),
        (
            topics.family_control_topic(),
            FamilyControl(request_id="r2", op="merge", family="F2", into="F1", actor="op1", ts=T0),
        ),
        *teach_samples(),
        history_sample(),
    ]


def history_sample() -> tuple[str, Msg]:
    """A worker's sampled good frame, kept for retraining (contract, "History frames")."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, format="PNG")
    msg = HistoryFrame(
        key=f"{CAM.key}:1:7", stream=CAM.key, image=buf.getvalue(), worker="w1", ts=T0
    )
    return topics.history_frame_topic(CAM), msg


def teach_samples() -> list[tuple[str, Msg]]:
    """Feedback to a worker, its answer, and a camera's taught state (contract 9.1)."""
    allowance = np.linspace(0, 2, 4, dtype="<f4").tobytes()
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, format="PNG")
    target = TeachTarget(version=1, map_shape=(2, 2), allowance=allowance)
    return [
        (
            topics.feedback_control_topic(CAM),
            FeedbackControl(
                request_id="r3",
                stream=CAM.key,
                action="rollback",
                actor="op1",
                target=target,
                undo_version=2,
                ts=T0,
            ),
        ),
        (
            topics.feedback_result_topic(CAM),
            FeedbackResult(
                key="fb:1:feedback",
                stream=CAM.key,
                feedback_id=1,
                action="feedback",
                status="applied",
                image=buf.getvalue(),
                version=2,
                worker="w1",
                ts=T0,
            ),
        ),
        (
            topics.teach_topic(CAM),
            TeachState(
                key=f"{CAM.key}#teach:1:r3",
                stream=CAM.key,
                version=1,
                previous_version=0,
                action="teach",
                feedback_id=1,
                actor="op1",
                model_version="m1",
                map_shape=(2, 2),
                novelty_threshold=1.5,
                allowance=allowance,
                confirmed=np.ones(4, "<f2").tobytes(),
                confirmed_keys=("k1",),
                worker="w1",
                ts=T0,
            ),
        ),
    ]


SAMPLES = output_samples()


def test_every_output_model_has_a_sample() -> None:
    assert {type(m) for _, m in SAMPLES} == set(codecs.OUTPUT_MODELS.values())


@pytest.mark.parametrize(("topic", "msg"), SAMPLES, ids=[type(m).__name__ for _, m in SAMPLES])
def test_output_round_trip(topic: str, msg: Msg) -> None:
    data = encode(msg)
    assert isinstance(data, bytes) and b" " not in data.split(b'"')[0]
    json.loads(data)  # plain JSON
    back = decode_output(topic, data)
    assert back == msg and type(back) is type(msg)
    assert encode(back) == data


def test_bytes_fields_are_base64() -> None:
    """Written URL-safe (RFC 4648 §5, padded); read in either alphabet, padded or not."""
    topic, alert = SAMPLES[4]
    assert isinstance(alert, Alert) and alert.thumbnail
    obj = json.loads(encode(alert))
    assert base64.urlsafe_b64decode(obj["thumbnail"]) == alert.thumbnail
    assert len(obj["thumbnail"]) % 4 == 0
    for text in (
        base64.b64encode(alert.thumbnail).decode(),
        base64.urlsafe_b64encode(alert.thumbnail).decode().rstrip("="),
    ):
        obj["thumbnail"] = text
        assert decode_output(topic, json.dumps(obj).encode()) == alert


def test_output_unknown_fields_ignored() -> None:
    topic, msg = SAMPLES[0]
    obj = json.loads(encode(msg))
    obj["future_field"] = {"x": [1]}
    assert decode_output(topic, json.dumps(obj).encode()) == msg


@pytest.mark.parametrize(
    ("mutate", "want"),
    [
        (lambda o: o.pop("worker"), "bad_schema"),
        (lambda o: o.update(verdict="maybe"), "bad_schema"),
        (lambda o: o.update(seq="x"), "bad_schema"),
        (lambda o: o.update(latency_ms="fast"), "bad_schema"),
        (lambda o: o.update(worker="w/1"), "bad_schema"),
        (lambda o: o.update(stream="plant1/line-2/st_3/camera/other"), "topic_mismatch"),
        (lambda o: o.update(stream="garbage"), "topic_mismatch"),
    ],
)
def test_output_schema_errors(mutate: object, want: str) -> None:
    topic, msg = SAMPLES[0]
    obj = json.loads(encode(msg))
    mutate(obj)  # type: ignore[operator]
    with pytest.raises(Rejected) as info:
        decode_output(topic, json.dumps(obj).encode())
    assert info.value.reason == want and info.value.detail


def test_output_overflow_number_is_bad_schema() -> None:
    topic, msg = SAMPLES[0]
    data = encode(msg).replace(b'"defect_score":0.93', b'"defect_score":1e999')
    with pytest.raises(Rejected) as info:
        decode_output(topic, data)
    assert info.value.reason == "bad_schema" and "defect_score" in info.value.detail


def test_short_stream_form_matches_topic() -> None:
    topic, msg = SAMPLES[0]
    obj = json.loads(encode(msg))
    obj["stream"] = "plant1/line-2/st_3/cam1"
    assert decode_output(topic, json.dumps(obj).encode()).stream == obj["stream"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        (topics.worker_status_topic("w2"), SAMPLES[9][1]),
        (topics.assignment_topic("w2"), SAMPLES[10][1]),
        (topics.family_topic("fam-8"), SAMPLES[3][1]),
        (topics.dead_letter_topic("other"), SAMPLES[13][1]),
        (topics.alert_topic("plant1", "line-2", "st_9"), SAMPLES[4][1]),
        (topics.gap_topic(TEMP), SAMPLES[7][1]),
    ],
)
def test_output_ids_must_match_topic(topic: str, body: Msg) -> None:
    with pytest.raises(Rejected) as info:
        decode_output(topic, encode(body))
    assert info.value.reason == "topic_mismatch"


def test_output_wrong_topics() -> None:
    with pytest.raises(Rejected) as info:
        decode_output(FRAME_T, encode(SAMPLES[0][1]))
    assert info.value.reason == "bad_topic"
    with pytest.raises(Rejected) as info:
        decode_output("lw/v1/x/y/z/camera/c+/verdict", b"{}")
    assert info.value.reason == "bad_id"
    with pytest.raises(Rejected) as info:
        decode_output(SAMPLES[0][0], b"[]")
    assert info.value.reason == "bad_schema"


def test_output_size_limit() -> None:
    topic, msg = SAMPLES[0]
    data = encode(msg)
    with pytest.raises(Rejected) as info:
        decode_output(topic, data, limits=Limits(max_output_bytes=len(data) - 1))
    assert info.value.reason == "payload_too_large"


# ---- frames -----------------------------------------------------------------------------------


def test_raw_jpeg_without_properties() -> None:
    f = decode_input(FRAME_T, JPEG, receipt="r-1")
    assert isinstance(f, FrameIn)
    assert (f.encoding, f.width, f.height, f.seq, f.pub_epoch) == ("jpeg", 320, 240, None, 0)
    assert f.key == frame_key(CAM, None, 0, "r-1") and f.image == JPEG
    assert f.stream == CAM and f.captured_at is None and f.part is None


def test_raw_png_with_properties() -> None:
    props = {
        "seq": "42",
        "ts": "2026-03-01T09:00:00.5+01:00",
        "part": "PN-77.a:1",
        "epoch": "3",
        "other": "ignored",
    }
    f = decode_input(FRAME_T, bytearray(PNG), props, "r")
    assert (f.encoding, f.width, f.height) == ("png", 40, 30)  # type: ignore[union-attr]
    assert f.key == f"{CAM.key}#3:42" and f.seq == 42 and f.pub_epoch == 3  # type: ignore[union-attr]
    assert f.captured_at == datetime(2026, 3, 1, 8, 0, 0, 500000, tzinfo=UTC)  # type: ignore[union-attr]
    assert f.part == "PN-77.a:1"  # type: ignore[union-attr]


def test_epoch_ms_property() -> None:
    f = decode_input(FRAME_T, JPEG, {"ts": "1772352000000"})
    assert f.captured_at == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # type: ignore[union-attr]


def test_no_receipt_means_unique_keys() -> None:
    a, b = decode_input(FRAME_T, JPEG), decode_input(FRAME_T, JPEG)
    assert a.key != b.key and "#r:" in a.key


@pytest.mark.parametrize(
    "props",
    [
        {"seq": "-1"},
        {"seq": "1.0"},
        {"seq": "x"},
        {"seq": ""},
        {"seq": "99999999999999999999"},
        {"epoch": "+1"},
        {"ts": "yesterday"},
        {"ts": "2026-03-01T09:00:00"},
        {"part": "a b"},
        {"part": "p" * 65},
        {"seq": " 1"},
    ],
)
def test_bad_frame_properties(props: dict[str, str]) -> None:
    with pytest.raises(Rejected) as info:
        decode_input(FRAME_T, JPEG, props)
    assert info.value.reason == "bad_schema"


@pytest.mark.parametrize("ts", ["1999-12-31T23:59:59Z", "2999-01-01T00:00:00Z", "1700000000"])
def test_frame_timestamp_out_of_range(ts: str) -> None:
    with pytest.raises(Rejected) as info:
        decode_input(FRAME_T, JPEG, {"ts": ts})
    assert info.value.reason == "bad_value"


def _env(**kw: object) -> bytes:
    body: dict[str, object] = {
        "seq": 7,
        "encoding": "jpeg",
        "image": base64.b64encode(JPEG).decode(),
    }
    body.update(kw)
    return json.dumps(body).encode()


def test_json_envelope() -> None:
    f = decode_input(
        FRAME_T,
        b"  \n" + _env(ts=1772352000000, part="P1", epoch=4, extra=[1]),
        {"seq": "999"},
        "r",
    )
    assert isinstance(f, FrameIn)
    assert f.key == f"{CAM.key}#4:7" and f.seq == 7 and f.part == "P1"
    assert f.captured_at == datetime(2026, 3, 1, 8, 0, tzinfo=UTC) and f.image == JPEG
    png_env = _env(encoding="png", image=base64.b64encode(PNG).decode(), ts="2026-03-01T08:00:00Z")
    assert decode_input(FRAME_T, png_env).width == 40  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "want"),
    [
        (_env(seq=None), "bad_schema"),
        (json.dumps({"seq": 1}).encode(), "bad_schema"),
        (_env(seq=True), "bad_schema"),
        (_env(seq=1.5), "bad_schema"),
        (_env(seq=-3), "bad_schema"),
        (_env(seq="7"), "bad_schema"),
        (_env(epoch="x"), "bad_schema"),
        (_env(encoding="png"), "bad_image"),
        (_env(encoding="gif"), "unsupported_encoding"),
        (_env(encoding=3), "bad_schema"),
        (_env(image=123), "bad_schema"),
        (_env(image="not base64!"), "bad_schema"),
        (_env(image="QUJD\nREVG"), "bad_schema"),
        (_env(image="QUJ"), "bad_schema"),
        (_env(image=""), "bad_image"),
        (_env(image=base64.b64encode(JPEG[:-50]).decode()), "image_truncated"),
        (_env(ts="2026-13-01T00:00:00Z"), "bad_schema"),
        (_env(ts=True), "bad_schema"),
        (_env(ts=946684799999), "bad_value"),
        (_env(part=5), "bad_schema"),
        (b'{"seq": 1', "bad_json"),
        (b'{"seq": NaN}', "json_nan"),
        (b'{"seq": 1, "seq": 2}', "json_duplicate_key"),
    ],
)
def test_bad_envelopes(env: bytes, want: str) -> None:
    with pytest.raises(Rejected) as info:
        decode_input(FRAME_T, env)
    assert info.value.reason == want, info.value.detail


def test_frame_size_checked_first() -> None:
    limits = Limits(max_frame_bytes=len(JPEG) - 1)
    with pytest.raises(Rejected) as info:
        decode_input(FRAME_T, JPEG, limits=limits)
    assert info.value.reason == "payload_too_large"
    with pytest.raises(Rejected) as info:  # before the topic is even parsed
        decode_input("not/a/topic", b"x" * (9 * 1024 * 1024))
    assert info.value.reason == "payload_too_large"
    assert decode_input(FRAME_T, JPEG, limits=Limits(max_frame_bytes=len(JPEG))).width == 320  # type: ignore[union-attr]


def test_image_limits_apply() -> None:
    with pytest.raises(Rejected) as info:
        decode_input(FRAME_T, JPEG, limits=Limits(max_pixels=320 * 240 - 1))
    assert info.value.reason == "image_too_large"
    with pytest.raises(Rejected) as info:
        decode_input(FRAME_T, JPEG, limits=Limits(max_side=300))
    assert info.value.reason == "image_too_large"


# ---- sensors ----------------------------------------------------------------------------------


def _sensor(payload: bytes, props: dict[str, str] | None = None) -> SensorIn:
    out = decode_input(SENSOR_T, payload, props or {}, receipt="rcpt")
    assert isinstance(out, SensorIn) and out.stream == TEMP
    return out


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"23.5", 23.5),
        (b"  -4\r\n", -4.0),
        (b"1e3", 1e3),
        (b"+0.5", 0.5),
        (b".5", 0.5),
        (b"7.", 7.0),
        (b"0", 0.0),
        (b"1E-3", 1e-3),
    ],
)
def test_bare_numbers(text: bytes, value: float) -> None:
    s = _sensor(text)
    assert s.key == frame_key(TEMP, None, 0, "rcpt") and s.pub_epoch == 0
    assert len(s.readings) == 1 and s.readings[0].value == value and s.readings[0].seq is None
    assert codecs.reading_key(s, 0, s.readings[0]) == f"{TEMP.key}#r:rcpt/0"


def test_bare_number_with_properties() -> None:
    s = _sensor(b"21.0", {"seq": "12", "epoch": "2", "ts": "2026-03-01T08:00:00Z", "unit": "C"})
    r = s.readings[0]
    assert (r.seq, r.unit, r.ts, s.pub_epoch) == (12, "C", datetime(2026, 3, 1, 8, tzinfo=UTC), 2)
    assert codecs.reading_key(s, 0, r) == f"{TEMP.key}#2:12"


def test_json_object() -> None:
    s = _sensor(b'{"seq": 3, "ts": 1772352000000, "value": 19, "unit": "degC", "x": 1}')
    r = s.readings[0]
    assert (r.value, r.seq, r.unit) == (19.0, 3, "degC") and isinstance(r.value, float)
    assert r.ts == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert codecs.reading_key(s, 0, r) == f"{TEMP.key}#0:3"


def test_readings_batch() -> None:
    body = {
        "epoch": 5,
        "readings": [{"seq": i, "value": i / 2} for i in range(100)]
        + [{"value": 1.0}, {"value": 2, "ts": "2026-03-01T08:00:00+00:00"}],
    }
    s = _sensor(json.dumps(body).encode())
    assert len(s.readings) == 102 and s.pub_epoch == 5
    keys = [codecs.reading_key(s, i, r) for i, r in enumerate(s.readings)]
    assert len(set(keys)) == 102
    assert keys[7] == f"{TEMP.key}#5:7" and keys[101] == f"{TEMP.key}#r:rcpt/101"


def test_readings_limit() -> None:
    items = ",".join(['{"value":1}'] * 11)
    with pytest.raises(Rejected) as info:
        decode_input(SENSOR_T, f'{{"readings":[{items}]}}'.encode(), limits=Limits(max_readings=10))
    assert info.value.reason == "bad_schema"
    ok = ",".join(['{"value":1}'] * 10)
    assert len(_sensor(f'{{"readings":[{ok}]}}'.encode()).readings) == 10


@pytest.mark.parametrize(
    ("payload", "want"),
    [
        (b"nan", "bad_value"),
        (b"NaN", "bad_value"),
        (b"-inf", "bad_value"),
        (b"Infinity", "bad_value"),
        (b"1e999", "bad_value"),
        (b"-1e400", "bad_value"),
        (b'{"value": 1e999}', "bad_value"),
        (b'{"value": NaN}', "json_nan"),
        (b'{"value": -Infinity}', "json_nan"),
        (b"true", "bad_schema"),
        (b"false", "bad_schema"),
        (b"null", "bad_schema"),
        (b'"23.5"', "bad_schema"),
        (b'{"value": true}', "bad_schema"),
        (b'{"value": "1"}', "bad_schema"),
        (b'{"value": null}', "bad_schema"),
        (b"{}", "bad_schema"),
        (b'{"unit": "C"}', "bad_schema"),
        (b"[1, 2]", "bad_schema"),
        (b'{"readings": []}', "bad_schema"),
        (b'{"readings": {}}', "bad_schema"),
        (b'{"readings": [1]}', "bad_schema"),
        (b'{"readings": [{"value": 1}], "value": 1}', "bad_schema"),
        (b'{"readings": [{"value": 1, "seq": 1}, {"value": 2, "seq": 1}]}', "bad_schema"),
        (b'{"readings": [{"value": 1}, {"value": "x"}]}', "bad_schema"),
        (b'{"value": 1, "seq": -1}', "bad_schema"),
        (b'{"value": 1, "unit": ""}', "bad_schema"),
        (b'{"value": 1, "unit": "a\\tb"}', "bad_schema"),
        (b'{"value": 1, "epoch": 1.5}', "bad_schema"),
        (b'{"value": 1, "ts": "2026-03-01"}', "bad_schema"),
        (b'{"value": 1, "ts": "2999-03-01T00:00:00Z"}', "bad_value"),
        (b'{"value": 1, "ts": -5}', "bad_value"),
        (b'{"value": 1', "bad_json"),
        (b"abc", "bad_schema"),
        (b"", "bad_schema"),
        (b"1_000", "bad_schema"),
        (b"23,5", "bad_schema"),
        (b"0x10", "bad_schema"),
        (b"\xff", "bad_utf8"),
        (b"9" * 41, "json_number_too_large"),
        (b'{"value": ' + b"1" * 21 + b"}", "json_number_too_large"),
    ],
)
def test_bad_sensor_payloads(payload: bytes, want: str) -> None:
    with pytest.raises(Rejected) as info:
        decode_input(SENSOR_T, payload)
    assert info.value.reason == want, info.value.detail


def test_sensor_size_limit_is_json_limit() -> None:
    payload = b" " * (256 * 1024) + b"1"
    with pytest.raises(Rejected) as info:
        decode_input(SENSOR_T, payload)
    assert info.value.reason == "payload_too_large"
    assert _sensor(b" " * (256 * 1024 - 1) + b"1").readings[0].value == 1.0


def test_bad_sensor_properties() -> None:
    for props in ({"seq": "x"}, {"ts": "2026-03-01T08:00:00"}, {"unit": "\x00"}):
        with pytest.raises(Rejected) as info:
            decode_input(SENSOR_T, b"1", props)
        assert info.value.reason == "bad_schema"


def test_input_decoder_refuses_output_topics() -> None:
    with pytest.raises(Rejected) as info:
        decode_input(topics.verdict_topic(CAM), JPEG)
    assert info.value.reason == "bad_topic"


def test_reserved_site() -> None:
    with pytest.raises(Rejected) as info:
        decode_input("lw/v1/_sys/l/s/sensor/t", b"1")
    assert info.value.reason == "bad_topic"


# ---- rejections, dead letters, embeddings -----------------------------------------------------


def test_future_limit_uses_receive_time() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    ok = decode_input(SENSOR_T, b'{"value":1,"ts":"2026-03-01T23:59:00Z"}', now=now)
    assert ok.readings[0].ts == datetime(2026, 3, 1, 23, 59, tzinfo=UTC)  # type: ignore[union-attr]
    for ts in (b'"2026-03-02T00:01:00Z"', str(int(now.timestamp() * 1000) + 86_401_000).encode()):
        with pytest.raises(Rejected) as info:
            decode_input(SENSOR_T, b'{"value":1,"ts":' + ts + b"}", now=now)
        assert info.value.reason == "bad_value"


def test_unicode_digits_are_not_numbers() -> None:
    arabic = "\u0661\u0662"  # Arabic-Indic 1 and 2: float() would accept them
    for payload in (arabic, f'{{"value":1,"ts":"{arabic}26-03-01T00:00:00Z"}}'):
        with pytest.raises(Rejected) as info:
            decode_input(SENSOR_T, payload.encode())
        assert info.value.reason == "bad_schema"
    with pytest.raises(Rejected) as info:
        decode_input(FRAME_T, JPEG, {"seq": "\u00b2"})  # superscript two: isdigit() is True
    assert info.value.reason == "bad_schema"


def test_rejected_pickles() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(Rejected("bad_json", "x")))
    assert (err.reason, err.detail, str(err)) == ("bad_json", "x", "bad_json: x")


def test_rejected_detail_truncated() -> None:
    err = Rejected("bad_json", "x" * 1000)
    assert len(err.detail) == 300 and str(err).startswith("bad_json: ")
    assert Rejected("", "d").reason == "rejected"


def test_dead_letter() -> None:
    payload = bytes(range(256))
    err = Rejected("bad_image", "not a JPEG")
    letter = codecs.dead_letter("edge-1", FRAME_T, payload, err)
    assert (letter.component, letter.topic, letter.reason, letter.detail) == (
        "edge-1",
        FRAME_T,
        "bad_image",
        "not a JPEG",
    )
    assert letter.payload_size == 256 and letter.payload_head == payload[:64]
    assert decode_output(topics.dead_letter_topic("edge-1"), encode(letter)) == letter
    again = codecs.dead_letter("edge-1", FRAME_T, payload, err)
    assert again.key != letter.key  # no receipt: every rejection counted
    r1 = codecs.dead_letter("edge-1", FRAME_T, payload, err, receipt="m-7")
    r2 = codecs.dead_letter("edge-1", FRAME_T, payload, err, receipt="m-7")
    assert r1.key == r2.key  # redelivery of the same message is stored once


def test_dead_letter_sanitises() -> None:
    letter = codecs.dead_letter(
        "bad comp/\x00", "lw/v1/a\x00b\ud800", b"", Rejected("bad_topic", "d\x00")
    )
    assert letter.component == "bad_comp__"
    assert "\x00" not in letter.topic + letter.detail
    letter.topic.encode("utf-8")
    assert decode_output(topics.dead_letter_topic("bad_comp__"), encode(letter)) == letter


def test_speed() -> None:
    """Gross-regression guard: measured ~50 µs / ~5 µs / ~50 µs; bounds leave 5x+ headroom
    because unit tests share a loaded 2-core host (the real numbers live in bench/)."""
    jpg = b""
    quality = 95
    noise = Image.effect_noise((256, 256), 40).convert("RGB")
    while len(jpg) < 50_000 and quality <= 100:
        buf = io.BytesIO()
        noise.save(buf, "JPEG", quality=quality)
        jpg, quality = buf.getvalue(), quality + 1
    assert len(jpg) >= 40_000
    n = 300
    t_in = (
        min(
            timeit.repeat(lambda: decode_input(FRAME_T, jpg, {"seq": "1"}, "r"), number=n, repeat=3)
        )
        / n
    )
    topic, verdict = SAMPLES[0]
    data = encode(verdict)
    t_enc = min(timeit.repeat(lambda: encode(verdict), number=n, repeat=3)) / n
    t_dec = min(timeit.repeat(lambda: decode_output(topic, data), number=n, repeat=3)) / n
    assert t_in < 2e-3 and t_enc < 500e-6 and t_dec < 500e-6, (t_in, t_enc, t_dec)


# ---- docs/contract.md stays true to the code ------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = (ROOT / "docs" / "contract.md").read_text()


def test_contract_names_every_output_field() -> None:
    for model in codecs.OUTPUT_MODELS.values():
        start = CONTRACT.index(f"**`{model.__name__}`**")
        end = CONTRACT.find("\n\n", start)
        section = CONTRACT[start:end]
        for field in model.model_fields:
            assert f"`{field}`" in section, f"{model.__name__}.{field} missing in contract.md"


def test_contract_lists_every_reason_code() -> None:
    table = CONTRACT[CONTRACT.index("| reason | meaning |") :]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    raised = {"bad_topic", "bad_id"}  # from broker.topics
    for module in ("codecs", "embeddings", "images", "strictjson"):
        source = (ROOT / "broker" / f"{module}.py").read_text()
        raised |= set(re.findall(r'(?:Rejected|ImageError|JsonError)\(\s*"([a-z_]+)"', source))
    assert raised - documented == set()
    assert len(raised) >= 16


def _sh_examples() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", CONTRACT, re.S)
    return [b.replace("\\\n", " ") for b in blocks]


def test_contract_examples_decode() -> None:
    """Every mosquitto_pub example in the contract is accepted by the codecs."""
    examples = _sh_examples()
    assert len(examples) == 7
    for block in examples:
        words = shlex.split(block)
        topic = words[words.index("-t") + 1]
        props: dict[str, str] = {}
        for i, word in enumerate(words):
            if word == "-D" and words[i + 2] == "user-property":
                props[words[i + 3]] = words[i + 4]
        if "-f" in words:
            payload = JPEG
        elif "-m" in words:
            payload = words[words.index("-m") + 1].encode()
        else:
            fmt = re.search(r"printf '(.*?)'", block)
            assert fmt is not None
            payload = fmt.group(1).replace("%s", base64.b64encode(JPEG).decode()).encode()
        route = topics.parse(topic).route
        if route in (topics.Route.FRAME, topics.Route.SENSOR):
            decode_input(topic, payload, props, "doc")
        else:
            decode_output(topic, payload)
    example = re.search(r'```json\n(\{"key":"dl:.*?)\n```', CONTRACT, re.S)
    assert example is not None
    letter = decode_output("lw/v1/_sys/deadletter/edge-1", example.group(1).encode())
    assert isinstance(letter, DeadLetter) and letter.payload_head == b'{"value": NaN}'


def test_teaching_payloads_are_validated() -> None:
    """Maps of the wrong size, negative or non-finite allowances and non-PNG frames are
    rejected at the codec, with a reason."""
    (_, _), (res_topic, result), (teach_t, state) = teach_samples()
    assert isinstance(state, TeachState) and isinstance(result, FeedbackResult)
    bad = {
        "short": state.model_copy(update={"allowance": b"\x00" * 12}),
        "negative": state.model_copy(update={"allowance": np.full(4, -1, "<f4").tobytes()}),
        "nan": state.model_copy(update={"confirmed": np.full(4, np.nan, "<f2").tobytes()}),
        "huge": state.model_copy(update={"map_shape": (65, 1)}),
    }
    for name, msg in bad.items():
        payload = msg.model_dump_json(round_trip=True).encode()
        with pytest.raises(Rejected) as err:
            decode_output(teach_t, payload)
        assert err.value.reason == "bad_schema", name
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpeg, format="JPEG")
    as_jpeg = result.model_copy(update={"image": jpeg.getvalue()})
    with pytest.raises(Rejected) as err:
        decode_output(res_topic, encode(as_jpeg))
    assert err.value.reason == "bad_image"
    with pytest.raises(Rejected, match="rollback needs"):
        decode_output(
            topics.feedback_control_topic(CAM),
            json.dumps(
                {
                    "request_id": "x",
                    "stream": CAM.key,
                    "action": "rollback",
                    "actor": "a",
                    "ts": "2026-03-01T08:00:00Z",
                }
            ).encode(),
        )
