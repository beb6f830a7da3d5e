"""The fast paths of the strict decoders accept and reject exactly what the reference (the
straightforward implementation they replaced, kept here) does: same value, or the same
reason and detail, on generated and mutated inputs, and on every float16 bit pattern."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from broker import codecs, embeddings, strictjson, topics
from broker.codecs import Rejected
from broker.messages import Features
from broker.strictjson import JsonError
from broker.topics import StreamRef

pytestmark = pytest.mark.unit

EXAMPLES = int(os.environ.get("LINEWATCH_PROPERTY_EXAMPLES", "300"))
FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CAM = StreamRef.camera("s1", "l1", "st1", "cam1")
TOPIC = topics.features_topic(CAM)


# ---- the reference: strictjson.loads and decode_output as they were before the fast paths ----


def reference_loads(data: bytes, *, max_depth: int = strictjson.DEFAULT_MAX_DEPTH) -> Any:
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonError("bad_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        depth = strictjson.nesting_depth(raw)
        if depth > max_depth:
            raise JsonError("json_too_deep", f"nesting depth {depth} exceeds {max_depth}")
    try:
        value = json.loads(
            text,
            object_pairs_hook=strictjson._pairs,
            parse_constant=strictjson._reject_constant,
            parse_int=strictjson._parse_int,
            parse_float=strictjson._parse_float,
        )
    except JsonError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonError("bad_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise JsonError("bad_json", str(exc)[:200]) from None
    if b"\\u" in raw:
        strictjson._check_strings(value)
    return value


def reference_decode_features(topic: str, payload: bytes) -> Features:
    if len(payload) > codecs.DEFAULT_LIMITS.max_output_bytes:
        raise Rejected("payload_too_large", "")
    try:
        parsed = topics.parse(topic)
    except topics.TopicError as exc:
        raise Rejected(exc.reason, exc.detail) from None
    try:
        obj = reference_loads(payload)
    except JsonError as exc:
        raise Rejected(exc.reason, exc.detail) from None
    if not isinstance(obj, dict):
        raise Rejected("bad_schema", "Features must be a JSON object")
    try:
        msg = Features.model_validate_json(payload)
    except ValidationError as exc:
        raise Rejected("bad_schema", f"Features: {codecs._first_error(exc)}") from None
    codecs._check_topic(parsed, msg)
    return msg


def reference_embedding(b: bytes, dim: int) -> np.ndarray:
    if dim <= 0 or len(b) != 2 * dim:
        raise Rejected("wrong_dimension", f"{len(b)} bytes for a {dim}-d float16 embedding")
    arr = np.frombuffer(b, dtype="<f2").astype(np.float32)
    if not np.isfinite(arr).all():
        raise Rejected("bad_value", "embedding holds NaN or inf")
    return arr


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    """("ok", value) or ("rejected", (reason, detail)): comparable across implementations."""
    try:
        value = fn(*args)
    except (JsonError, Rejected) as exc:
        return "rejected", (exc.reason, exc.detail)
    if isinstance(value, np.ndarray):
        return "ok", (value.dtype.str, value.tobytes())
    return "ok", value


# ---- strictjson.loads ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=24,
)
# fragments that exercise each strict rule when spliced into a document
FRAGMENTS = [
    b"NaN",
    b"-Infinity",
    b"\\u0000",
    b"\\ud800",
    b"\\u00e9",
    b'"a":1,"a":2',
    b"[" * 40,
    b"{" * 3,
    b"]",
    b"}",
    b"1" * 25,
    b"1." + b"0" * 45,
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3\xa9",
    b"\x00",
    b"\\",
    b'"',
    b" ",
    b"{",
    b"[",
]


def _mutate(doc: bytes, data: st.DataObject) -> bytes:
    buf = bytearray(doc)
    for _ in range(data.draw(st.integers(0, 3))):
        pos = data.draw(st.integers(0, len(buf)))
        op = data.draw(st.sampled_from(["insert", "delete", "flip"]))
        if op == "insert":
            buf[pos:pos] = data.draw(st.sampled_from(FRAGMENTS))
        elif op == "delete" and buf:
            del buf[pos : pos + data.draw(st.integers(1, 4))]
        elif buf:
            buf[min(pos, len(buf) - 1)] ^= data.draw(st.integers(1, 255))
    return bytes(buf)


@FAST
@given(json_values, st.data(), st.integers(0, 40))
@example({"a": [1, {"b": None}]}, None, 0)
def test_strict_loads_matches_reference(value: Any, data: Any, max_depth: int) -> None:
    doc = json.dumps(value, ensure_ascii=data is not None and data.draw(st.booleans())).encode()
    if data is not None:
        doc = _mutate(doc, data)
    assert outcome(lambda d: strictjson.loads(d, max_depth=max_depth), doc) == outcome(
        lambda d: reference_loads(d, max_depth=max_depth), doc
    )


@FAST
@given(st.binary(max_size=300))
def test_strict_loads_matches_reference_on_any_bytes(doc: bytes) -> None:
    assert outcome(strictjson.loads, doc) == outcome(reference_loads, doc)


@pytest.mark.parametrize(
    "doc",
    [
        b"{}",
        b"[]",
        b"{" * 33 + b"}" * 33,
        b"[" * 32 + b"]" * 32,
        b'{"a":"[[[[{{{{"}',
        b"\xef\xbb\xbf{}",
        '\ufeff{"a":1}'.encode(),
        b'{"a":"\\u0000"}',
        b'{"a":"\\ud800"}',
        b'{"a":"\\\\u0000"}',
        b'{"a":1} x',
        b"  {}  ",
        b"",
    ],
)
def test_strict_loads_edge_cases(doc: bytes) -> None:
    for depth in (0, 1, 32):
        fast = outcome(lambda d, m=depth: strictjson.loads(d, max_depth=m), doc)
        assert fast == outcome(lambda d, m=depth: reference_loads(d, max_depth=m), doc)


# ---- features messages: decode_output and the embedding ---------------------------------------


def _features(dim: int = 64, seed: int = 0) -> bytes:
    vec = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return codecs.encode(
        Features(
            stream=CAM.key,
            key=f"{CAM.key}#0:{seed}",
            worker="w1",
            ts=datetime(2026, 1, 5, tzinfo=UTC),
            dim=dim,
            embedding=embeddings.embedding_to_bytes(vec),
            verdict="anomaly",
            predicted_class="scratch",
        )
    )


FEATURE_FRAGMENTS = [
    *FRAGMENTS,
    b'"dim":2048,',
    b'"embedding":"AAAA",',
    b'"x":NaN,',
    b'"stream":"s1/l1/st1/camera/cam2",',
    b'"stream":"s1/l1/st1/cam1",',
    b"AAA=",
    b'"verdict":"ok",',
]


@FAST
@given(st.integers(1, 80), st.integers(0, 10**6), st.data())
def test_decode_features_matches_reference(dim: int, seed: int, data: st.DataObject) -> None:
    buf = bytearray(_features(dim, seed))
    for _ in range(data.draw(st.integers(0, 3))):
        pos = data.draw(st.integers(0, len(buf)))
        op = data.draw(st.sampled_from(["insert", "delete", "flip"]))
        if op == "insert":
            buf[pos:pos] = data.draw(st.sampled_from(FEATURE_FRAGMENTS))
        elif op == "delete" and buf:
            del buf[pos : pos + data.draw(st.integers(1, 6))]
        elif buf:
            buf[min(pos, len(buf) - 1)] ^= data.draw(st.integers(1, 255))
    payload = bytes(buf)
    got = outcome(codecs.decode_output, TOPIC, payload)
    assert got == outcome(reference_decode_features, TOPIC, payload)
    if got[0] == "ok":
        feat = got[1]
        fast = outcome(embeddings.embedding_view, feat.embedding, feat.dim)
        ref = outcome(reference_embedding, feat.embedding, feat.dim)
        assert fast[0] == ref[0]
        if fast[0] == "ok":
            view = embeddings.embedding_view(feat.embedding, feat.dim)
            assert np.array_equal(
                view.astype(np.float32), reference_embedding(feat.embedding, feat.dim)
            )
        else:
            assert fast == ref


def test_embedding_view_on_every_float16() -> None:
    """All 65,536 bit patterns: rejected exactly when the float32 reference finds NaN or inf."""
    every = np.arange(65536, dtype=np.uint16).astype("<u2")
    finite = np.isfinite(every.view("<f2").astype(np.float32))
    for bits in every:
        pair = np.array([0, bits], dtype="<u2").tobytes()
        got, ref = (
            outcome(embeddings.embedding_view, pair, 2),
            outcome(reference_embedding, pair, 2),
        )
        assert got[0] == ref[0] == ("ok" if finite[bits] else "rejected"), hex(int(bits))
        if got[0] == "rejected":
            assert got == ref
    good = every[finite].tobytes()
    dim = len(good) // 2
    assert np.array_equal(
        embeddings.embedding_from_bytes(good, dim), reference_embedding(good, dim), equal_nan=False
    )
    view = embeddings.embedding_view(good, dim)
    assert view.dtype == np.dtype("<f2") and not view.flags.writeable


@pytest.mark.parametrize(
    ("raw", "dim"), [(b"\x00\x3c" * 4, 3), (b"\x00\x3c" * 4, 5), (b"", 0), (b"\x00", 1)]
)
def test_embedding_view_wrong_sizes(raw: bytes, dim: int) -> None:
    assert outcome(embeddings.embedding_view, raw, dim) == outcome(reference_embedding, raw, dim)


def test_base64_embedding_round_trip() -> None:
    payload = _features(2048, 3)
    feat = codecs.decode_output(TOPIC, payload)
    assert isinstance(feat, Features)
    body = json.loads(payload)
    assert base64.urlsafe_b64decode(body["embedding"]) == feat.embedding  # pydantic: URL-safe


def test_topic_cache_never_caches_a_bad_topic() -> None:
    bad = "lw/v1/s1/l1/st1/camera/cam1/nonsense"
    for _ in range(2):
        with pytest.raises(Rejected) as info:
            codecs.decode_output(bad, _features())
        assert info.value.reason == "bad_topic"
    assert isinstance(codecs.decode_output(TOPIC, _features()), Features)
