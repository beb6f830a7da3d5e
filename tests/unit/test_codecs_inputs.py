"""Codecs of the inputs: every camera frame form (raw image + properties, JSON envelope) and
every sensor form (bare number, JSON object, readings batch), with their limits."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from codec_kit import CAM, FRAME_T, JPEG, PNG, SENSOR_T, TEMP

from broker import codecs, topics
from broker.codecs import Limits, Rejected, decode_input
from broker.messages import (
    FrameIn,
    SensorIn,
    frame_key,
)

pytestmark = pytest.mark.unit


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
