"""Image header sniffing (JPEG/PNG) and the decode budget, without decoding the body."""

# ``sniff`` (used by the codecs) never imports Pillow. It enforces the decode budget
# (``DecodeBudget``: pixels, decoded bytes, JPEG scan count and pixel-passes, PNG chunks) before
# any decoder runs, so a decompression bomb is dead-lettered at the adapter. ``check_jpeg_scan``
# is the one Pillow-based check here, for the place that decodes the image anyway (the edge
# worker): a JPEG cut short and closed with EOI again passes ``sniff`` and decodes to grey
# without any Pillow error; it also bounds the decoder's CPU time per frame.

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

Encoding = Literal["jpeg", "png"]
DEFAULT_MAX_PIXELS = 16_777_216  # 4096 x 4096: eight decoded RGB frames stay under 400 MB
DEFAULT_MAX_SIDE = 16384
MAX_TRAILING_ZEROS = 16  # some cameras pad a JPEG after EOI; more than this is suspicious
MAX_JPEG_SEGMENTS = 1024  # header segments before the first scan
MAX_PNG_CHUNKS = 16384

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
# SOF0 baseline, SOF1 extended sequential, SOF2 progressive (Huffman): what decoders handle.
_JPEG_SUPPORTED_SOF = frozenset({0xC0, 0xC1, 0xC2})
_JPEG_OTHER_SOF = frozenset({0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_FILL_RE = re.compile(rb"\xff*")  # marker fill bytes
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# Known formats LineWatch does not take: named as unsupported rather than "unknown".
_OTHER_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP", "JPEG 2000"),
)
# PNG colour type -> allowed bit depths.
_PNG_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}


class ImageError(ValueError):
    """An image payload that cannot be accepted; ``reason`` is the dead-letter code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodeBudget:
    """What one frame may cost the decoder, judged from its headers before any decode.

    ``max_decoded_bytes``: width x height x bytes per pixel as the decoder will hold it.
    ``max_scans``: scans in a JPEG (a progressive one is decoded once per scan; libjpeg
    writes 6-10, mozjpeg up to ~15). ``max_scan_pixels``: pixels x scans, the work of a
    progressive decode. ``max_png_ancillary``: non-IDAT chunks. ``max_cpu_s``: the decoder's
    CPU time per frame (``decode_jpeg``/``check_jpeg_scan``), a backstop behind the others.
    """

    max_decoded_bytes: int = 3 * DEFAULT_MAX_PIXELS  # 48 MiB: 4096 x 4096 RGB
    max_scans: int = 32
    max_scan_pixels: int = 12 * DEFAULT_MAX_PIXELS
    max_png_ancillary: int = 256
    max_cpu_s: float = 2.0


DEFAULT_BUDGET = DecodeBudget()


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: format and size (the body is not decoded)."""

    encoding: Encoding
    width: int
    height: int


def detect(data: bytes) -> Encoding | None:
    """``"jpeg"`` or ``"png"`` from the magic bytes, else None."""
    if data.startswith(JPEG_SOI):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    return None


def sniff(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    budget: DecodeBudget = DEFAULT_BUDGET,
) -> ImageInfo:
    """Check the header, framing and decode budget of a JPEG/PNG and return its size; raise
    ImageError (``image_too_large`` for size, ``decode_budget`` for the work it would take).

    Size limits are checked before truncation, so a bomb header alone reads ``image_too_large``.
    """
    kind = detect(data)
    if kind == "jpeg":
        width, height, comps, scan_at, one_scan = _jpeg_header(data)
        _check_size(width, height, max_pixels, max_side)
        _check_bytes(width * height * comps, width, height, budget)
        _check_jpeg_end(data)
        if not one_scan:  # see _check_jpeg_scans_budget
            _check_jpeg_scans_budget(data, scan_at, width * height, budget)
    elif kind == "png":
        width, height, row_bytes = _png_size(data)
        _check_size(width, height, max_pixels, max_side)
        _check_bytes(row_bytes * height, width, height, budget)
        _check_png_chunks(data, budget)
    else:
        raise _unknown(data)
    return ImageInfo(kind, width, height)


def _check_bytes(decoded: int, width: int, height: int, budget: DecodeBudget) -> None:
    if decoded > budget.max_decoded_bytes:
        raise ImageError(
            "image_too_large",
            f"image {width}x{height} decodes to {decoded} bytes, over the budget of "
            f"{budget.max_decoded_bytes}",
        )


def _unknown(data: bytes) -> ImageError:
    if data[8:12] == b"WEBP" and data.startswith(b"RIFF"):
        return ImageError("unsupported_encoding", "WebP images are not accepted (JPEG or PNG)")
    if data[4:8] == b"ftyp":
        return ImageError("unsupported_encoding", "HEIF/AVIF images are not accepted (JPEG or PNG)")
    for magic, name in _OTHER_MAGIC:
        if data.startswith(magic):
            return ImageError(
                "unsupported_encoding", f"{name} images are not accepted (JPEG or PNG)"
            )
    return ImageError("bad_image", f"not a JPEG or PNG (starts with {data[:8].hex() or 'nothing'})")


def _check_size(width: int, height: int, max_pixels: int, max_side: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError("bad_image", f"image size {width}x{height} is empty")
    if width > max_side or height > max_side or width * height > max_pixels:
        raise ImageError(
            "image_too_large",
            f"image size {width}x{height} exceeds {max_pixels} pixels or {max_side} per side",
        )


# ---- PNG -----------------------------------------------------------------------------------


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png_size(data: bytes) -> tuple[int, int, int]:
    """Width, height and the bytes of one decoded row (as the decoder holds it)."""
    if len(data) < 33:
        raise ImageError("image_truncated", "PNG ends inside its IHDR header")
    length, ctype = struct.unpack_from(">I4s", data, 8)
    if ctype != b"IHDR" or length != 13:
        raise ImageError("bad_image", "PNG does not start with a 13-byte IHDR chunk")
    width, height, depth, colour, comp, filt, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    (crc,) = struct.unpack_from(">I", data, 29)
    if zlib.crc32(data[12:29]) != crc:
        raise ImageError("bad_image", "PNG IHDR checksum mismatch")
    if depth not in _PNG_DEPTHS.get(colour, ()) or comp or filt or interlace > 1:
        raise ImageError(
            "bad_image",
            f"PNG IHDR invalid (colour {colour}, depth {depth}, "
            f"compression {comp}, filter {filt}, interlace {interlace})",
        )
    channels = 3 if colour == 3 else _PNG_CHANNELS[colour]  # a palette expands to RGB(A)
    return width, height, width * channels * max(1, depth // 8)


def _check_png_chunks(data: bytes, budget: DecodeBudget = DEFAULT_BUDGET) -> None:
    """Walk the chunk list (bounded): lengths must fit, IDAT present, a complete IEND last,
    at most ``budget.max_png_ancillary`` chunks other than IDAT."""
    pos, end, seen_idat, ancillary = 8, len(data), False, 0
    for _ in range(MAX_PNG_CHUNKS):
        if pos + 12 > end:
            raise ImageError("image_truncated", f"PNG ends at byte {end} without an IEND chunk")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if not ctype.isalpha():
            raise ImageError("bad_image", f"PNG chunk type {ctype!r} at byte {pos} is invalid")
        nxt = pos + 12 + length
        if nxt > end:
            raise ImageError("image_truncated", f"PNG chunk {ctype.decode()} runs past the end")
        if ctype == b"IEND":
            if data[pos:nxt] != PNG_IEND:
                raise ImageError("bad_image", "PNG IEND chunk is malformed")
            if nxt != end:
                raise ImageError("bad_image", f"PNG has {end - nxt} bytes after IEND")
            if not seen_idat:
                raise ImageError("bad_image", "PNG has no IDAT chunk")
            return
        if ctype == b"IDAT":
            seen_idat = True
        else:
            ancillary += 1
            if ancillary > budget.max_png_ancillary:
                raise ImageError(
                    "decode_budget",
                    f"PNG has more than {budget.max_png_ancillary} chunks besides IDAT",
                )
        pos = nxt
    raise ImageError("bad_image", f"PNG has more than {MAX_PNG_CHUNKS} chunks")


# ---- JPEG ----------------------------------------------------------------------------------


def _jpeg_header(data: bytes) -> tuple[int, int, int, int, bool]:
    """Walk marker segments from SOI up to the first scan; return the SOFn size and component
    count, where the first scan's entropy-coded data starts, and whether the image is ONE
    sequential scan holding every component (the usual camera JPEG)."""
    pos, end, size, sequential = 2, len(data), None, False
    for _ in range(MAX_JPEG_SEGMENTS):
        if pos >= end:
            raise ImageError("image_truncated", f"JPEG ends at byte {end} before its first scan")
        if data[pos] != 0xFF:
            raise ImageError("bad_image", f"JPEG marker expected at byte {pos}")
        pos = _FILL_RE.match(data, pos).end()  # type: ignore[union-attr]  # always matches
        if pos >= end:
            raise ImageError("image_truncated", "JPEG ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD8, 0xD9):
            raise ImageError("bad_image", f"JPEG marker {marker:#04x} misplaced at byte {pos - 1}")
        seg_len = _segment_length(data, pos, marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            if size is None:
                raise ImageError("bad_image", "JPEG scan before any frame header (SOFn)")
            one_scan = sequential and seg_len > 2 and data[pos + 2] == size[2]
            return size[0], size[1], size[2], pos + seg_len, one_scan
        if marker in _JPEG_SUPPORTED_SOF or marker in _JPEG_OTHER_SOF:
            size = _jpeg_sof(data, pos, seg_len, marker)
            sequential = marker != 0xC2
        pos += seg_len
    raise ImageError("bad_image", f"JPEG has more than {MAX_JPEG_SEGMENTS} header segments")


def _segment_length(data: bytes, pos: int, marker: int) -> int:
    if pos + 2 > len(data):
        raise ImageError("image_truncated", "JPEG ends inside a segment length")
    seg_len = int.from_bytes(data[pos : pos + 2], "big")
    if seg_len < 2:
        raise ImageError("bad_image", f"JPEG segment length {seg_len} at byte {pos}")
    if pos + seg_len > len(data):
        raise ImageError("image_truncated", f"JPEG segment {marker:#04x} runs past the end")
    return seg_len


# A marker inside or after entropy-coded data: FF then anything but a stuffed 00 or a restart
# marker RSTn (FF fill bytes are skipped in one step). A C-level search: linear in the file.
_ENTROPY_MARKER_RE = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def _check_jpeg_scans_budget(data: bytes, pos: int, pixels: int, budget: DecodeBudget) -> None:
    """Count the scans after the first one (to EOI); over ``max_scans``, or more pixel-passes
    than ``max_scan_pixels``, is ``decode_budget``: a progressive JPEG costs a pass per scan,
    and a few bytes of scan (one EOB run) can cover the whole image. Called for progressive
    and multi-scan JPEGs only: when the first scan is sequential and holds every component,
    libjpeg refuses any further scan (JERR_EOI_EXPECTED) instead of decoding it, so a
    baseline camera frame is never walked past its header."""
    limit = min(budget.max_scans, max(1, budget.max_scan_pixels // max(1, pixels)))
    # Fast path (memchr speed): every SOS marker holds the bytes FF DA, and entropy-coded
    # data never does (an FF there is stuffed as FF 00), so this count is never below the
    # true number of scans; only a COM/APP segment after the first scan can inflate it.
    if data.count(b"\xff\xda", pos) + 1 <= limit:
        return
    scans, segments = 1, 0
    while (m := _ENTROPY_MARKER_RE.search(data, pos)) is not None:
        pos = _FILL_RE.match(data, m.start()).end()  # type: ignore[union-attr]  # always matches
        if pos >= len(data):
            return  # fill bytes to the end: _check_jpeg_end has judged the EOI already
        marker, pos = data[pos], pos + 1
        if marker in (0x00, *range(0xD0, 0xD8)):  # a stuffed 00 or RSTn after fill bytes
            continue
        if marker == 0xD9:
            return
        if marker == 0x01:  # TEM: no length
            continue
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ImageError("decode_budget", f"JPEG has more than {MAX_JPEG_SEGMENTS} segments")
        if marker == 0xDA:
            scans += 1
            if scans > limit:
                raise ImageError(
                    "decode_budget",
                    f"JPEG has more than {limit} scans for {pixels} pixels (budget: "
                    f"{budget.max_scans} scans, {budget.max_scan_pixels} pixel-passes)",
                )
        pos += _segment_length(data, pos, marker)


def _jpeg_sof(data: bytes, pos: int, seg_len: int, marker: int) -> tuple[int, int, int]:
    if marker not in _JPEG_SUPPORTED_SOF:
        raise ImageError(
            "unsupported_encoding",
            f"JPEG process SOF{marker - 0xC0} (lossless/arithmetic/hierarchical)",
        )
    if seg_len < 8:
        raise ImageError("bad_image", "JPEG frame header too short")
    precision, height, width, comps = struct.unpack_from(">BHHB", data, pos + 2)
    if seg_len != 8 + 3 * comps:
        raise ImageError("bad_image", f"JPEG frame header length {seg_len} for {comps} components")
    if precision != 8 or comps not in (1, 3, 4):
        raise ImageError(
            "unsupported_encoding", f"JPEG with {precision}-bit samples and {comps} components"
        )
    return width, height, comps


def _check_jpeg_end(data: bytes) -> None:
    """A complete JPEG ends with EOI, allowing a few padding zero bytes after it."""
    tail = data[-(MAX_TRAILING_ZEROS + len(JPEG_EOI)) :].rstrip(b"\x00")
    if not tail.endswith(JPEG_EOI):
        raise ImageError("image_truncated", "JPEG does not end with the EOI marker (FFD9)")


# ---- decoding (Pillow): broker/jpegdecode.py ------------------------------------------------


def check_jpeg_scan(data: bytes, budget: DecodeBudget = DEFAULT_BUDGET) -> None:
    """See ``broker.jpegdecode.check_jpeg_scan`` (imported here lazily: no Pillow for the
    codecs)."""
    from broker import jpegdecode

    jpegdecode.check_jpeg_scan(data, budget)


def decode_jpeg(data: bytes, budget: DecodeBudget = DEFAULT_BUDGET) -> Image.Image:
    """See ``broker.jpegdecode.decode_jpeg``."""
    from broker import jpegdecode

    return jpegdecode.decode_jpeg(data, budget)
