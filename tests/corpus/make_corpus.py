"""Writes the bad-input corpus tests/corpus/bad/ and its manifest; run: python make_corpus.py.

Small cases are files; the few large ones (over-limit payloads) are rebuilt at test time by
:func:`build_generated`, so the repository stays small.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import sys
import zlib
from pathlib import Path

BAD = Path(__file__).resolve().parent / "bad"
FRAME = "lw/v1/corpus/line1/st1/camera/cam1/frame"
SENSOR = "lw/v1/corpus/line1/st1/sensor/temp1"
VERDICT = "lw/v1/corpus/line1/st1/camera/cam1/verdict"
MiB = 1024 * 1024


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png_header(width: int, height: int) -> bytes:
    """PNG signature + IHDR (8-bit RGB) with a correct checksum, and nothing else."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)


def small_png(width: int = 8, height: int = 6) -> bytes:
    """A complete, valid PNG written by hand (no Pillow needed)."""
    raw = b"".join(b"\x00" + bytes(3 * width) for _ in range(height))
    return (
        png_header(width, height)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def small_jpeg() -> bytes:
    """A complete baseline JPEG, 64x48 (Pillow is used only to write this fixture)."""
    from PIL import Image

    img = Image.new("RGB", (64, 48))
    img.putdata([(x * 4, y * 5, (x + y) % 256) for y in range(48) for x in range(64)])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _verdict(**override: object) -> bytes:
    body: dict[str, object] = {
        "stream": "corpus/line1/st1/camera/cam1",
        "key": "corpus/line1/st1/camera/cam1#0:1",
        "seq": 1,
        "epoch": 0,
        "worker": "w1",
        "received_at": "2026-01-01T00:00:00Z",
        "decided_at": "2026-01-01T00:00:00.010Z",
        "verdict": "ok",
        "defect_score": 0.1,
        "novelty_score": 0.2,
        "predicted_class": "good",
        "model_version": "m1",
        "latency_ms": 3.5,
    }
    body.update(override)
    return json.dumps(body).encode()


def _envelope(image: bytes, encoding: str = "jpeg", **extra: object) -> bytes:
    env = {
        "seq": 7,
        "ts": "2026-01-01T00:00:00Z",
        "encoding": encoding,
        "image": base64.b64encode(image).decode(),
    }
    env.update(extra)
    return json.dumps(env).encode()


def cases() -> list[tuple[str, str, str, str, bytes]]:
    """(file, topic, decoder, expected reason, payload) of every stored case."""
    jpg, png = small_jpeg(), small_png()
    bomb = png_header(50_000, 50_000)
    deep = b"[" * 100_000 + b"]" * 100_000
    digits = b"9" * 5000
    s, f, v = SENSOR, FRAME, VERDICT
    return [
        ("valid.jpg", f, "input", "ok", jpg),
        ("valid.png", f, "input", "ok", png),
        ("valid_sensor.txt", s, "input", "ok", b"23.5"),
        ("truncated_sensor.json", s, "input", "bad_json", b'{"readings":[{"value":1.5},{"value":'),
        ("truncated_envelope.json", f, "input", "bad_json", _envelope(jpg)[:300]),
        ("truncated_verdict.json", v, "output", "bad_json", _verdict()[:-20]),
        ("nan_sensor.json", s, "input", "json_nan", b'{"value": NaN}'),
        ("neg_infinity_sensor.json", s, "input", "json_nan", b'{"value": -Infinity}'),
        (
            "infinity_verdict.json",
            v,
            "output",
            "json_nan",
            _verdict().replace(b'"defect_score": 0.1', b'"defect_score": Infinity'),
        ),
        ("nan_text.txt", s, "input", "bad_value", b"nan"),
        ("overflow_text.txt", s, "input", "bad_value", b"1e999"),
        ("overflow_sensor.json", s, "input", "bad_value", b'{"value": 1e999}'),
        ("deep_100k.json", s, "input", "json_too_deep", deep),
        (
            "deep_33_envelope.json",
            f,
            "input",
            "json_too_deep",
            b'{"seq":1,"x":' + b"[" * 33 + b"]" * 33 + b"}",
        ),
        (
            "digits_5000_int.json",
            s,
            "input",
            "json_number_too_large",
            b'{"value": ' + digits + b"}",
        ),
        (
            "digits_5000_float.json",
            s,
            "input",
            "json_number_too_large",
            b'{"value": 0.' + digits + b"}",
        ),
        ("digits_5000_text.txt", s, "input", "json_number_too_large", digits),
        (
            "digits_5000_seq_envelope.json",
            f,
            "input",
            "json_number_too_large",
            _envelope(jpg).replace(b'"seq": 7', b'"seq": ' + digits),
        ),
        (
            "duplicate_key_sensor.json",
            s,
            "input",
            "json_duplicate_key",
            b'{"value": 1.0, "value": 2.0}',
        ),
        (
            "duplicate_key_verdict.json",
            v,
            "output",
            "json_duplicate_key",
            _verdict()[:-1] + b', "verdict": "defect"}',
        ),
        ("invalid_utf8_sensor.json", s, "input", "bad_utf8", b'{"value": 1, "unit": "\xff\xfe"}'),
        ("invalid_utf8_text.txt", s, "input", "bad_utf8", b"23.5\xc3"),
        (
            "overlong_utf8_verdict.json",
            v,
            "output",
            "bad_utf8",
            _verdict(predicted_class="x").replace(b'"x"', b'"\xc0\xaf"'),
        ),
        ("lone_surrogate_sensor.json", s, "input", "bad_utf8", b'{"value": 1, "unit": "\\ud800"}'),
        ("nul_escape_verdict.json", v, "output", "bad_json", _verdict(predicted_class="a\x00b")),
        ("truncated.jpg", f, "input", "image_truncated", jpg[: len(jpg) // 2]),
        ("truncated_header.jpg", f, "input", "image_truncated", jpg[:120]),
        ("no_eoi.jpg", f, "input", "image_truncated", jpg[:-2]),
        (
            "truncated_envelope_image.json",
            f,
            "input",
            "image_truncated",
            _envelope(jpg[: len(jpg) - 100]),
        ),
        ("truncated.png", f, "input", "image_truncated", png[:-12]),
        ("png_50000x50000.png", f, "input", "image_too_large", bomb),
        ("png_50000x50000_envelope.json", f, "input", "image_too_large", _envelope(bomb, "png")),
        ("not_an_image.bin", f, "input", "bad_image", b"hello, this is not an image"),
        ("gif.gif", f, "input", "unsupported_encoding", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
        ("envelope_bad_base64.json", f, "input", "bad_schema", _envelope(jpg)[:-3] + b'!!"}'),
        ("envelope_wrong_encoding.json", f, "input", "bad_image", _envelope(jpg, "png")),
        ("envelope_gif.json", f, "input", "unsupported_encoding", _envelope(jpg, "gif")),
        ("bool_sensor.json", s, "input", "bad_schema", b'{"value": true}'),
        ("missing_value_sensor.json", s, "input", "bad_schema", b'{"unit": "C"}'),
        (
            "ts_1999_sensor.json",
            s,
            "input",
            "bad_value",
            b'{"value": 1, "ts": "1999-12-31T23:59:59Z"}',
        ),
        ("ts_seconds_sensor.json", s, "input", "bad_value", b'{"value": 1, "ts": 1767225600}'),
        (
            "ts_naive_sensor.json",
            s,
            "input",
            "bad_schema",
            b'{"value": 1, "ts": "2026-01-01T00:00:00"}',
        ),
        (
            "verdict_missing_field.json",
            v,
            "output",
            "bad_schema",
            _verdict()[:-1].replace(b', "latency_ms": 3.5', b"") + b"}",
        ),
        (
            "verdict_wrong_stream.json",
            v,
            "output",
            "topic_mismatch",
            _verdict(stream="corpus/line1/st1/camera/cam2"),
        ),
    ]


# Topic ids with ``+ # / ..`` or NUL, with payloads that are valid on a good topic.
BAD_TOPICS = [
    ("lw/v1/corpus/li+ne/st1/sensor/temp1", "valid_sensor.txt", "bad_id"),
    ("lw/v1/corpus/line1/st1/sensor/temp#", "valid_sensor.txt", "bad_id"),
    ("lw/v1/corpus/line1/st1/sensor/..", "valid_sensor.txt", "bad_id"),
    ("lw/v1/corpus/line1/st1/camera/../frame", "valid.jpg", "bad_id"),
    ("lw/v1/corpus/line1/st1/camera/cam/1/frame", "valid.jpg", "bad_topic"),
    ("lw/v1/corpus/line1/st1/sensor/a/b/c", "valid_sensor.txt", "bad_topic"),
    ("lw/v1/corpus/line1/st\x001/sensor/temp1", "valid_sensor.txt", "bad_topic"),
    ("lw/v1/corpus/line1/st1/camera/" + "c" * 65 + "/frame", "valid.jpg", "bad_id"),
    ("lw/v1/_sys/line1/st1/sensor/temp1", "valid_sensor.txt", "bad_topic"),
    ("lw/v1/corpus/line1/st1/camera/cam1/verdict", "valid.jpg", "bad_topic"),
]

# Built at test time by build_generated(name): too big to keep in the repository.
GENERATED = [
    ("frame_over_limit", FRAME, "input", "payload_too_large"),
    ("sensor_over_limit", SENSOR, "input", "payload_too_large"),
    ("verdict_over_limit", VERDICT, "output", "payload_too_large"),
    ("deep_100k_objects_verdict", VERDICT, "output", "json_too_deep"),
    ("readings_10001", SENSOR, "input", "bad_schema"),
]


def build_generated(name: str) -> bytes:
    """The payload of one GENERATED case."""
    if name == "frame_over_limit":
        return b"\xff\xd8\xff\xe0" + bytes(8 * MiB - 4 + 1)
    if name == "sensor_over_limit":
        return b'{"readings":[' + b'{"value":1},' * 22_000 + b'{"value":1}]}'
    if name == "verdict_over_limit":
        return _verdict(model_version="m" * (8 * MiB))
    if name == "deep_100k_objects_verdict":
        return b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    if name == "readings_10001":
        return b'{"readings":[' + b",".join([b'{"value":1}'] * 10_001) + b"]}"
    raise KeyError(name)


def main() -> int:
    BAD.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, object] = {"version": 1, "files": {}, "bad_topics": [], "generated": []}
    files: dict[str, dict[str, str]] = {}
    for name, topic, decoder, reason, payload in cases():
        (BAD / name).write_bytes(payload)
        files[name] = {"topic": topic, "decoder": decoder, "reason": reason}
    manifest["files"] = files
    manifest["bad_topics"] = [{"topic": t, "file": f, "reason": r} for t, f, r in BAD_TOPICS]
    manifest["generated"] = [
        {"name": n, "topic": t, "decoder": d, "reason": r} for n, t, d, r in GENERATED
    ]
    (BAD / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(files)} files and manifest.json to {BAD}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
