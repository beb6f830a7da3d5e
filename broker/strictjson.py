"""Strict JSON for the wire: bounded depth, no NaN, no duplicate keys, no huge numbers."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

DEFAULT_MAX_DEPTH = 32
MAX_INT_DIGITS = 20  # a signed 64-bit integer has 19 digits; one more for leeway
MAX_FLOAT_CHARS = 40  # a double needs 17 significant digits plus sign, point and exponent

# A JSON string literal (unrolled loop: linear, no catastrophic backtracking).
_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET_RE = re.compile(rb"[^\[\]{}]+")
_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


class JsonError(ValueError):
    """A payload that is not strict JSON; ``reason`` is the dead-letter code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def nesting_depth(data: bytes) -> int:
    """Deepest ``[``/``{`` nesting outside string literals, by a linear scan (no recursion)."""
    if data.count(b"[") + data.count(b"{") <= 1:
        return 1 if (b"[" in data or b"{" in data) else 0
    brackets = _NOT_BRACKET_RE.sub(b"", _STRING_RE.sub(b"", data))
    if not brackets:
        return 0
    steps = _BRACKET_STEP[np.frombuffer(brackets, dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max())


def _at_most_one_opener(data: bytes) -> bool:
    """No ``[`` and at most one ``{`` (byte searches only, no counting: a flat object such as a
    features message with its base64 embedding is settled in well under a microsecond)."""
    return b"[" not in data and data.find(b"{", data.find(b"{") + 1) < 0


def _check_depth(data: bytes, max_depth: int) -> None:
    # Fast paths: fewer openers than the limit cannot nest deeper than it.
    if max_depth >= 1 and _at_most_one_opener(data):
        return
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return
    depth = nesting_depth(data)
    if depth > max_depth:
        raise JsonError("json_too_deep", f"nesting depth {depth} exceeds {max_depth}")


def _reject_constant(token: str) -> Any:
    raise JsonError("json_nan", f"{token} is not a JSON number")


def _parse_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INT_DIGITS:
        raise JsonError(
            "json_number_too_large", f"integer with {digits} digits (at most {MAX_INT_DIGITS})"
        )
    return int(text)


def _parse_float(text: str) -> float:
    """Overflow (``1e999``) becomes ±inf here; schema checks downstream reject non-finite values."""
    if len(text) > MAX_FLOAT_CHARS:
        raise JsonError(
            "json_number_too_large", f"number of {len(text)} characters (at most {MAX_FLOAT_CHARS})"
        )
    return float(text)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonError("json_duplicate_key", f"duplicate key {key[:60]!r}")
            seen.add(key)
    return obj


def _check_strings(value: Any) -> None:
    """Reject lone surrogates and NUL that ``\\u`` escapes can smuggle into strings."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise JsonError("bad_json", "string holds a NUL character (\\u0000)")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise JsonError("bad_utf8", "string holds a lone surrogate escape") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# One decoder for every call (``json.loads`` with hooks builds a new one each time).
_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs,
    parse_constant=_reject_constant,
    parse_int=_parse_int,
    parse_float=_parse_float,
)


def loads(data: bytes | bytearray | memoryview | str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse strict JSON; raise :class:`JsonError` with a dead-letter reason otherwise.

    Order: UTF-8 (``bad_utf8``), depth by a linear pre-scan (``json_too_deep``), then the parse
    itself (``json_nan``, ``json_duplicate_key``, ``json_number_too_large``, ``bad_json``).
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonError("bad_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    _check_depth(raw, max_depth)
    try:
        if text.startswith("\ufeff"):  # what json.loads refuses before it decodes
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except JsonError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonError("bad_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise JsonError("bad_json", str(exc)[:200]) from None
    if b"\\" in raw and b"\\u" in raw:  # one-byte search first: most payloads have no escape
        _check_strings(value)
    return value


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; raises ValueError on NaN/inf (never written to the wire)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )
