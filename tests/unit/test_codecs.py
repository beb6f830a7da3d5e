"""Codecs: round trips of every output message, limits, dead letters, the contract doc
(camera and sensor inputs: test_codecs_inputs.py)."""

from __future__ import annotations

import base64
import io
import json
import re
import shlex
import timeit
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from codec_kit import CAM, FRAME_T, JPEG, SENSOR_T, TEMP
from codec_samples import SAMPLES, teach_samples
from PIL import Image

from broker import codecs, topics
from broker.codecs import Limits, Rejected, decode_input, decode_output, encode
from broker.messages import (
    Alert,
    DeadLetter,
    Msg,
)
from broker.teach_messages import (
    FeedbackResult,
    TeachState,
)

pytestmark = pytest.mark.unit


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
