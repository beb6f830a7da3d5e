"""Strict JSON: each rejection reason, the linear depth pre-scan, and the compact encoder."""

from __future__ import annotations

import json
import sys
import time

import pytest

from broker import strictjson
from broker.strictjson import JsonError, dumps, loads, nesting_depth

pytestmark = pytest.mark.unit


def _reason(data: bytes | str, **kw: int) -> str:
    with pytest.raises(JsonError) as info:
        loads(data, **kw)
    assert info.value.detail
    return info.value.reason


def test_accepts_ordinary_json() -> None:
    data = b'{"a": [1, 2.5, -3e2, true, false, null, "x\\u00e9\\ud83d\\ude00"], "b": {}}'
    assert loads(data) == json.loads(data)
    assert loads('"caf\u00e9"') == "caf\u00e9"
    assert loads(b"  12  ") == 12


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"{",
        b'{"a":1',
        b"[1,]",
        b"{'a':1}",
        b"01",
        b'{"a" 1}',
        b"[1] [2]",
        b"\xef\xbb\xbf{}",
        b'"a\nb"',
        b"tru",
        b"{]",
    ],
)
def test_malformed_is_bad_json(data: bytes) -> None:
    assert _reason(data) == "bad_json"


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_tokens(token: str) -> None:
    assert _reason(f'{{"v": {token}}}'.encode()) == "json_nan"
    assert _reason(f"[1, {token}]".encode()) == "json_nan"


def test_duplicate_keys_anywhere() -> None:
    assert _reason(b'{"a": 1, "a": 1}') == "json_duplicate_key"
    assert _reason(b'{"x": [{"b": 1, "c": 2, "b": 3}]}') == "json_duplicate_key"
    assert loads(b'{"a": {"a": 1}}') == {"a": {"a": 1}}  # same key at other levels is fine


@pytest.mark.parametrize(
    "data", [b"\xff", b'{"a": "\xc3"}', b'"\xed\xa0\x80"', b'"\xc0\xaf"', b'"\xf8\x88\x80\x80\x80"']
)
def test_invalid_utf8(data: bytes) -> None:
    assert _reason(data) == "bad_utf8"


def test_lone_surrogate_escapes_rejected_pairs_accepted() -> None:
    assert _reason(b'{"a": "\\ud800"}') == "bad_utf8"
    assert _reason(b'["x", {"k\\udc00": 1}]') == "bad_utf8"
    assert loads(b'"\\ud83d\\ude00"') == "\U0001f600"


def test_nul_escape_rejected() -> None:
    assert _reason(b'{"a": "x\\u0000"}') == "bad_json"
    assert _reason(b'{"\\u0000": 1}') == "bad_json"


def test_depth_limit_boundary() -> None:
    assert loads(b"[" * 32 + b"]" * 32) is not None
    assert _reason(b"[" * 33 + b"]" * 33) == "json_too_deep"
    assert loads(b"[" * 5 + b"]" * 5, max_depth=5) is not None
    assert _reason(b"[" * 6 + b"]" * 6, max_depth=5) == "json_too_deep"


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"s": "[[[[{{{{" * 100, "t": 'q\\"[[[' * 50}).encode()
    assert nesting_depth(text) == 1
    assert loads(text)["s"].startswith("[[[[")


def test_many_shallow_containers_pass() -> None:
    data = json.dumps({"r": [{"v": i} for i in range(5000)]}).encode()
    assert nesting_depth(data) == 3
    assert len(loads(data)["r"]) == 5000


def test_100k_deep_is_rejected_without_recursion() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # a recursive parser would blow up long before 100k
    try:
        for data in (
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
            b"[" * 100_000,
        ):  # unterminated too
            start = time.perf_counter()
            assert _reason(data) == "json_too_deep"
            assert time.perf_counter() - start < 0.5
    finally:
        sys.setrecursionlimit(limit)


def test_number_limits() -> None:
    assert loads(b"[12345678901234567890]") == [12345678901234567890]  # 20 digits
    assert loads(b"-12345678901234567890") == -12345678901234567890
    assert _reason(b"123456789012345678901") == "json_number_too_large"
    assert _reason(b'{"v": ' + b"9" * 5000 + b"}") == "json_number_too_large"
    assert _reason(b"0." + b"1" * 5000) == "json_number_too_large"
    assert _reason(b"1e" + b"1" * 5000) == "json_number_too_large"
    assert loads(b"1.2345678901234567e-300") == pytest.approx(1.2345678901234567e-300)


def test_float_overflow_becomes_inf_for_schema_checks() -> None:
    assert loads(b"[1e999]") == [float("inf")]


def test_huge_number_is_fast() -> None:
    data = b"[" + b"7" * 200_000 + b"]"
    start = time.perf_counter()
    assert _reason(data) == "json_number_too_large"
    assert time.perf_counter() - start < 0.5


def test_str_input_and_memoryview() -> None:
    assert loads('{"a": 1}') == {"a": 1}
    assert loads(memoryview(b"[1]")) == [1]
    assert _reason("\ud800") == "bad_utf8"


def test_dumps_is_compact_and_strict() -> None:
    assert dumps({"a": [1, 2.5], "b": "é"}) == '{"a":[1,2.5],"b":"é"}'.encode()
    with pytest.raises(ValueError):
        dumps({"a": float("nan")})
    with pytest.raises(ValueError):
        dumps([float("inf")])
    obj = {"k": [1, {"z": None}], "u": "\U0001f600"}
    assert loads(dumps(obj)) == obj


def test_error_is_a_value_error_with_reason() -> None:
    err = JsonError("bad_json", "x")
    assert isinstance(err, ValueError) and str(err) == "bad_json: x"
    assert strictjson.DEFAULT_MAX_DEPTH == 32
