"""Decode bombs for the attack tests: a progressive JPEG with a repeated scan, a PNG zlib bomb."""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


@functools.cache
def progressive_jpeg(side: int = 6000, repeats: int = 500) -> bytes:
    """A flat grey progressive JPEG whose last scan is repeated ``repeats`` times: small on the
    wire (~170 KB for 6000 px and 500 repeats), one full-image decode pass per repeat."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "JPEG", progressive=True, quality=75)
    data = buf.getvalue()
    last = data.rindex(b"\xff\xda")
    scan = data[last:-2]  # SOS header + entropy data, up to EOI
    return data[:-2] + scan * repeats + b"\xff\xd9"


@functools.cache
def png_bomb(side: int = 6320) -> bytes:
    """A side x side RGBA PNG of zeros: ~170 KB on the wire, side^2 x 4 bytes decoded."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 4 * side)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    )


@functools.cache
def noise_jpeg(side: int) -> bytes:
    """A legal progressive RGB JPEG of noise: megabytes of scan data, a real decode's work."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", progressive=True, quality=95)
    return buf.getvalue()
