"""Payload codecs: raw bytes <-> typed messages (docs/contract.md), rejections, dead letters."""

from __future__ import annotations

import binascii
import functools
import hashlib
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from broker import images, strictjson
from broker import messages as m
from broker import teach_messages as tm
from broker.messages import Alert, DeadLetter, FrameIn, Msg, Reading, SensorIn, frame_key, utcnow
from broker.topics import Parsed, Route, StreamRef, TopicError, parse

MiB = 1024 * 1024
MAX_DETAIL = 300
HEAD_BYTES = 64
MAX_SEQ = 2**63 - 1  # fits SQL BIGINT
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
_EARLIEST_MS = int(EARLIEST.timestamp() * 1000)
PART_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
UNIT_RE = re.compile(r"[^\x00-\x1f\x7f]{1,32}")
_EMPTY: Mapping[str, str] = MappingProxyType({})
Buffer = bytes | bytearray | memoryview

OUTPUT_MODELS: dict[Route, type[Msg]] = {
    Route.VERDICT: m.Verdict,
    Route.FEATURES: m.Features,
    Route.FRAME_FAMILY: m.FrameFamily,
    Route.THRESHOLD_CHANGE: m.ThresholdChange,
    Route.GAP: m.Gap,
    Route.READINGS: m.ReadingsBatch,
    Route.SENSOR_ANOMALY: m.SensorAnomaly,
    Route.ALERT: Alert,
    Route.STATUS: m.WorkerStatus,
    Route.ASSIGNMENT: m.Assignment,
    Route.FAMILY: m.FamilyUpdate,
    Route.THRESHOLD_CONTROL: m.ThresholdControl,
    Route.DEAD_LETTER: DeadLetter,
    Route.DISPATCH_DECISION: m.DispatchDecision,
    Route.FAMILY_CONTROL: m.FamilyControl,
    Route.FEEDBACK_CONTROL: tm.FeedbackControl,
    Route.FEEDBACK_RESULT: tm.FeedbackResult,
    Route.TEACH: tm.TeachState,
    Route.HISTORY_FRAME: tm.HistoryFrame,
}


class Rejected(Exception):
    """A payload that breaks the contract; ``reason`` is a machine code (docs/contract.md)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason or "rejected"
        self.detail = str(detail)[:MAX_DETAIL]
        super().__init__(self.reason, self.detail)  # args round-trip through pickle

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True)
class Limits:
    """Size and shape limits applied while decoding."""

    max_frame_bytes: int = 8 * MiB  # a frame payload, raw image or JSON envelope
    max_json_bytes: int = 256 * 1024  # a sensor payload
    max_readings: int = 10_000  # readings in one sensor batch
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    max_side: int = images.DEFAULT_MAX_SIDE
    max_depth: int = strictjson.DEFAULT_MAX_DEPTH
    max_output_bytes: int = 8 * MiB  # a JSON output message (verdicts, batches, alerts, ...)


DEFAULT_LIMITS = Limits()


# ---- shared field checks --------------------------------------------------------------------


def _too_large(size: int, limit: int, what: str) -> Rejected:
    return Rejected("payload_too_large", f"{what} payload of {size} bytes exceeds {limit}")


def _json(payload: bytes, limits: Limits) -> Any:
    try:
        return strictjson.loads(payload, max_depth=limits.max_depth)
    except strictjson.JsonError as exc:
        raise Rejected(exc.reason, exc.detail) from None


# Topics repeat (one per stream): parsed ones are remembered (Parsed is immutable; a topic that
# fails to parse raises and is never cached).
_parse_topic = functools.lru_cache(maxsize=4096)(parse)


def _stream(topic: str) -> Parsed:
    try:
        return _parse_topic(topic)
    except TopicError as exc:
        raise Rejected(exc.reason, exc.detail) from None


def _int_field(value: Any, name: str) -> int:
    """A non-negative integer (never a bool, never a float) that fits BIGINT."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected("bad_schema", f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_SEQ:
        raise Rejected("bad_schema", f"{name} {value} is outside 0..2^63-1")
    return value


def _int_text(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise Rejected("bad_schema", f"user property {name}={text[:40]!r} is not an integer >= 0")
    return _int_field(int(text), name)


def _timestamp(value: Any, now: datetime) -> datetime:
    """RFC3339 with an offset, or integer epoch milliseconds; 2000-01-01 .. now + 1 day."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        value = int(value)  # epoch ms given as text (user properties)
    if isinstance(value, int) and not isinstance(value, bool):
        if not _EARLIEST_MS <= value <= (now + FUTURE_SLACK).timestamp() * 1000:
            raise Rejected(
                "bad_value",
                f"epoch milliseconds {value} is before 2000 or more "
                "than a day in the future (seconds instead of milliseconds?)",
            )
        return datetime.fromtimestamp(value / 1000, UTC)
    if not isinstance(value, str):
        raise Rejected("bad_schema", "ts must be an RFC3339 string or integer epoch milliseconds")
    when = _rfc3339(value)
    if when < EARLIEST or when > now + FUTURE_SLACK:
        raise Rejected(
            "bad_value",
            f"timestamp {when.isoformat()} is before 2000 or more than a day in the future",
        )
    return when


_RFC3339_RE = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)", re.ASCII
)


def _rfc3339(text: str) -> datetime:
    if not _RFC3339_RE.fullmatch(text):
        raise Rejected(
            "bad_schema",
            f"ts {text[:40]!r} is not RFC3339 with a timezone "
            "(e.g. 2026-01-31T08:00:00.123Z) nor epoch milliseconds",
        )
    try:
        return datetime.fromisoformat(text.upper()).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise Rejected("bad_schema", f"ts {text[:40]!r}: {exc}") from None


def _part(value: Any) -> str:
    if not isinstance(value, str) or not PART_RE.fullmatch(value):
        raise Rejected("bad_schema", f"part {str(value)[:40]!r} must match [A-Za-z0-9_.:-]{{1,64}}")
    return value


def _finite(value: float, name: str = "value") -> float:
    if not math.isfinite(value):
        raise Rejected("bad_value", f"{name} {value} is not finite")
    return value


# ---- inputs -------------------------------------------------------------------------------


def decode_input(
    topic: str,
    payload: Buffer,
    properties: Mapping[str, str] = _EMPTY,
    receipt: str = "",
    *,
    limits: Limits = DEFAULT_LIMITS,
    now: datetime | None = None,
) -> FrameIn | SensorIn:
    """Decode a camera frame or sensor publish; raise :class:`Rejected` on any contract breach.

    With no broker ``receipt`` a random one is used, so unsequenced inputs never collide.
    """
    payload = bytes(payload)
    if len(payload) > max(limits.max_frame_bytes, limits.max_json_bytes):
        raise _too_large(len(payload), max(limits.max_frame_bytes, limits.max_json_bytes), "input")
    parsed = _stream(topic)
    receipt = receipt or uuid.uuid4().hex
    props = properties or _EMPTY
    when = now or utcnow()
    if parsed.route is Route.FRAME and parsed.stream is not None:
        if len(payload) > limits.max_frame_bytes:
            raise _too_large(len(payload), limits.max_frame_bytes, "frame")
        return _decode_frame(parsed.stream, payload, props, receipt, limits, when)
    if parsed.route is Route.SENSOR and parsed.stream is not None:
        if len(payload) > limits.max_json_bytes:
            raise _too_large(len(payload), limits.max_json_bytes, "sensor")
        return _decode_sensor(parsed.stream, payload, props, receipt, limits, when)
    raise Rejected("bad_topic", f"{topic[:120]!r} is not an input (frame or sensor) topic")


def _decode_frame(
    stream: StreamRef,
    payload: bytes,
    props: Mapping[str, str],
    receipt: str,
    limits: Limits,
    now: datetime,
) -> FrameIn:
    if _ENVELOPE_RE.match(payload):
        image, meta = _envelope(payload, limits, now)
        declared = meta.pop("encoding")
    else:
        image, meta, declared = payload, _frame_properties(props, now), None
    try:
        info = images.sniff(image, max_pixels=limits.max_pixels, max_side=limits.max_side)
    except images.ImageError as exc:
        raise Rejected(exc.reason, exc.detail) from None
    if declared is not None and declared != info.encoding:
        raise Rejected("bad_image", f"envelope says {declared} but the bytes are {info.encoding}")
    seq, epoch = meta.get("seq"), meta.get("epoch", 0)
    return FrameIn(
        stream=stream,
        key=frame_key(stream, seq, epoch, receipt),
        image=image,
        encoding=info.encoding,
        width=info.width,
        height=info.height,
        seq=seq,
        pub_epoch=epoch,
        captured_at=meta.get("ts"),
        part=meta.get("part"),
    )


def _frame_properties(props: Mapping[str, str], now: datetime) -> dict[str, Any]:
    """MQTT v5 user properties ``seq``, ``ts``, ``part``, ``epoch`` of a raw frame."""
    meta: dict[str, Any] = {}
    for name in ("seq", "epoch"):
        if name in props:
            meta[name] = _int_text(str(props[name]), name)
    if "ts" in props:
        meta["ts"] = _timestamp(str(props["ts"]), now)
    if "part" in props:
        meta["part"] = _part(props["part"])
    return meta


def _envelope(payload: bytes, limits: Limits, now: datetime) -> tuple[bytes, dict[str, Any]]:
    """The JSON frame envelope: ``seq``, ``ts``?, ``part``?, ``epoch``?, ``encoding``, ``image``."""
    obj = _json(payload, limits)
    if not isinstance(obj, dict):
        raise Rejected("bad_schema", "frame envelope must be a JSON object")
    missing = [k for k in ("seq", "encoding", "image") if k not in obj]
    if missing:
        raise Rejected("bad_schema", f"frame envelope lacks {', '.join(missing)}")
    meta: dict[str, Any] = {"seq": _int_field(obj["seq"], "seq")}
    if obj.get("epoch") is not None:
        meta["epoch"] = _int_field(obj["epoch"], "epoch")
    if obj.get("ts") is not None:
        meta["ts"] = _timestamp(obj["ts"], now)
    if obj.get("part") is not None:
        meta["part"] = _part(obj["part"])
    encoding = obj["encoding"]
    if not isinstance(encoding, str):
        raise Rejected("bad_schema", "encoding must be a string")
    if encoding not in ("jpeg", "png"):
        raise Rejected("unsupported_encoding", f"encoding {encoding[:20]!r} (jpeg or png)")
    meta["encoding"] = encoding
    if not isinstance(obj["image"], str):
        raise Rejected("bad_schema", "image must be a base64 string")
    try:
        image = binascii.a2b_base64(obj["image"], strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise Rejected("bad_schema", f"image is not strict base64: {exc}") from None
    return image, meta


_ENVELOPE_RE = re.compile(rb"[ \t\r\n]*\{")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NONFINITE_RE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_JSON_START = ("{", "[", '"', "t", "f", "n")


def _decode_sensor(
    stream: StreamRef,
    payload: bytes,
    props: Mapping[str, str],
    receipt: str,
    limits: Limits,
    now: datetime,
) -> SensorIn:
    try:
        text = payload.decode("utf-8").strip(" \t\r\n")
    except UnicodeDecodeError as exc:
        raise Rejected("bad_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    key = frame_key(stream, None, 0, receipt)
    if text[:1] in _JSON_START and not _NONFINITE_RE.fullmatch(text):
        obj = _json(payload, limits)
        if not isinstance(obj, dict):
            raise Rejected("bad_schema", f"sensor JSON must be an object, got {type(obj).__name__}")
        epoch = _int_field(obj["epoch"], "epoch") if obj.get("epoch") is not None else 0
        readings = _readings(obj, limits, now)
        return SensorIn(stream=stream, key=key, readings=readings, pub_epoch=epoch)
    value = _bare_number(text)
    meta = _frame_properties({k: v for k, v in props.items() if k != "part"}, now)
    unit = None if props.get("unit") is None else str(props["unit"])
    if unit is not None and not UNIT_RE.fullmatch(unit):
        raise Rejected("bad_schema", "unit must be 1..32 printable characters")
    reading = Reading(value=value, seq=meta.get("seq"), ts=meta.get("ts"), unit=unit)
    return SensorIn(stream=stream, key=key, readings=(reading,), pub_epoch=meta.get("epoch", 0))


def _bare_number(text: str) -> float:
    if _NONFINITE_RE.fullmatch(text):
        raise Rejected("bad_value", f"{text!r} is not a finite number")
    if len(text) > strictjson.MAX_FLOAT_CHARS:
        raise Rejected(
            "json_number_too_large",
            f"number of {len(text)} characters (at most {strictjson.MAX_FLOAT_CHARS})",
        )
    if not _NUMBER_RE.fullmatch(text):
        raise Rejected(
            "bad_schema", f"sensor payload {text[:40]!r} is neither a number nor a JSON object"
        )
    return _finite(float(text))


def _readings(obj: dict[str, Any], limits: Limits, now: datetime) -> tuple[Reading, ...]:
    if "readings" not in obj:
        return (_reading(obj, now),)
    if "value" in obj:
        raise Rejected("bad_schema", "give either value or readings, not both")
    items = obj["readings"]
    if not isinstance(items, list) or not 1 <= len(items) <= limits.max_readings:
        raise Rejected("bad_schema", f"readings must be a list of 1..{limits.max_readings} objects")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise Rejected("bad_schema", f"readings[{i}] must be an object")
        try:
            out.append(_reading(item, now))
        except Rejected as exc:
            raise Rejected(exc.reason, f"readings[{i}]: {exc.detail}") from None
    seqs = [r.seq for r in out if r.seq is not None]
    if len(set(seqs)) != len(seqs):
        raise Rejected("bad_schema", "readings repeat a seq within one batch")
    return tuple(out)


def _reading(obj: dict[str, Any], now: datetime) -> Reading:
    if "value" not in obj:
        raise Rejected("bad_schema", "value is required")
    value = obj["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected("bad_schema", f"value must be a number, got {type(value).__name__}")
    seq = _int_field(obj["seq"], "seq") if obj.get("seq") is not None else None
    ts = _timestamp(obj["ts"], now) if obj.get("ts") is not None else None
    unit = obj.get("unit")
    if unit is not None and not (isinstance(unit, str) and UNIT_RE.fullmatch(unit)):
        raise Rejected("bad_schema", "unit must be a string of 1..32 printable characters")
    return Reading(value=_finite(float(value)), seq=seq, ts=ts, unit=unit)


def reading_key(sensor_in: SensorIn, index: int, reading: Reading) -> str:
    """Key of one reading: ``{stream}#{epoch}:{seq}``, else ``{sensor_in.key}/{index}``."""
    if reading.seq is not None:
        return frame_key(sensor_in.stream, reading.seq, sensor_in.pub_epoch, "")
    return f"{sensor_in.key}/{index}"


# ---- outputs ------------------------------------------------------------------------------


def encode(msg: Msg) -> bytes:
    """Compact JSON of an output message (bytes fields in base64)."""
    return msg.__pydantic_serializer__.to_json(msg)


def decode_output(topic: str, payload: Buffer, *, limits: Limits = DEFAULT_LIMITS) -> Msg:
    """Decode a JSON output message, its model chosen by the topic's route."""
    payload = bytes(payload)
    if len(payload) > limits.max_output_bytes:
        raise _too_large(len(payload), limits.max_output_bytes, "output")
    parsed = _stream(topic)
    model = OUTPUT_MODELS.get(parsed.route)
    if model is None:
        raise Rejected("bad_topic", f"{topic[:120]!r} is an input topic; use decode_input")
    if not isinstance(_json(payload, limits), dict):
        raise Rejected("bad_schema", f"{model.__name__} must be a JSON object")
    try:
        msg = model.model_validate_json(payload)
    except ValidationError as exc:
        raise Rejected("bad_schema", f"{model.__name__}: {_first_error(exc)}") from None
    _check_topic(parsed, msg)
    if isinstance(msg, tm.FeedbackResult | tm.HistoryFrame) and msg.image is not None:
        _check_frame_png(msg.image)
    return msg


def _check_frame_png(data: bytes) -> None:
    """A kept frame (feedback, history) is a well-formed PNG at model-input size (<= 1024 px)."""
    try:
        info = images.sniff(data, max_pixels=1024 * 1024, max_side=1024)
    except images.ImageError as exc:
        raise Rejected(exc.reason, exc.detail) from None
    if info.encoding != "png":
        raise Rejected("bad_image", f"a kept frame must be PNG, not {info.encoding}")


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(root)"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _check_topic(parsed: Parsed, msg: Msg) -> None:
    """The ids in the payload must be those of the topic it came on."""
    stream = getattr(msg, "stream", None)
    if parsed.stream is not None and isinstance(stream, str) and stream != parsed.stream.key:
        try:
            same = StreamRef.parse_key(stream) == parsed.stream
        except TopicError:
            same = False
        if not same:
            raise Rejected(
                "topic_mismatch",
                f"stream {stream[:120]!r} published on the topic of {parsed.stream.key}",
            )
    if (
        parsed.station is not None
        and isinstance(msg, Alert)
        and (msg.site, msg.line, msg.station) != parsed.station
    ):
        raise Rejected("topic_mismatch", "alert site/line/station differ from its topic")
    ident_field = {
        Route.STATUS: "worker",
        Route.ASSIGNMENT: "worker",
        Route.FAMILY: "family",
        Route.DEAD_LETTER: "component",
    }.get(parsed.route)
    if ident_field is not None and getattr(msg, ident_field) != parsed.ident:
        raise Rejected("topic_mismatch", f"{ident_field} differs from the topic id {parsed.ident}")


# ---- dead letters ----------------------------------------------------------------------------

_ID_BAD = re.compile(r"[^A-Za-z0-9_-]")


def _safe_text(text: str, limit: int) -> str:
    """Printable for logs and SQL: no NUL, no lone surrogates, bounded."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")[:limit]


def dead_letter(
    component: str, topic: str, payload: Buffer, err: Rejected, *, receipt: str = ""
) -> DeadLetter:
    """The dead-letter record of a rejected payload (first 64 bytes kept for forensics).

    The key is derived from the broker receipt when given (a redelivery is stored once),
    else it is random (every rejection is counted).
    """
    payload = bytes(payload)
    comp = _ID_BAD.sub("_", str(component))[:64] or "unknown"
    if receipt:
        digest = hashlib.sha256(
            f"{comp}\x00{topic}\x00{receipt}".encode("utf-8", "backslashreplace")
        ).hexdigest()[:32]
    else:
        digest = uuid.uuid4().hex
    return DeadLetter(
        key=f"dl:{comp}:{digest}",
        component=comp,
        topic=_safe_text(topic, 512),
        reason=_safe_text(err.reason, 64) or "rejected",
        detail=_safe_text(err.detail, MAX_DETAIL),
        payload_size=len(payload),
        payload_head=payload[:HEAD_BYTES],
        ts=utcnow(),
    )
