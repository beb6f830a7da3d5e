"""Decoding a JPEG with Pillow under the decode budget: truncation check and CPU-time bound."""

# The one Pillow-based part of the image checks, for the place that decodes the image anyway
# (the edge worker); ``broker.images`` (which the codecs use) never imports Pillow and reaches
# this module only through its ``check_jpeg_scan`` / ``decode_jpeg`` wrappers.

from __future__ import annotations

import io
import time
from typing import Any

from PIL import Image

from broker.images import (
    DEFAULT_BUDGET,
    JPEG_EOI,
    DecodeBudget,
    ImageError,
    _check_bytes,
    _check_jpeg_end,
    _check_jpeg_scans_budget,
    _jpeg_header,
    detect,
)

# check_jpeg_scan. A JPEG cut short and then closed with EOI (FFD9) again frames like a
# complete one; libjpeg (inside Pillow) decodes it without an error, filling the missing blocks
# with flat grey. Only the entropy-coded data tells: it must hold every block of the image.
# Pillow reports nothing about it, so the scan is decoded here:
# - one interleaved sequential scan (baseline camera JPEGs): EOI is replaced by a few non-marker
#   bytes and the scan decoded at 1/8 scale (Huffman decoding, DC-only IDCT). A complete scan
#   ends before those bytes (libjpeg then skips them looking for the next marker and finishes);
#   a cut one runs out of data before its last block and the decoder asks for more. Only a cut
#   inside the last MCU (a few dozen bytes at most) can go unseen.
# - progressive or multi-scan JPEGs (libjpeg reads them whole up to EOI before output): the
#   image is decoded twice at full size, as sent and with those bytes inserted before EOI. In a
#   complete file the bytes lie after the last scan and change nothing; in a cut one they are
#   decoded into the missing blocks and change the picture.
_DECODE_CHUNK = 65536  # bytes fed to the decoder between two CPU-time checks
_SCAN_FILLER = bytes((37 * i + 11) % 255 for i in range(8))  # no 0xFF: never a marker
_PIL_DONE = -1  # Pillow decoder status: image complete


def check_jpeg_scan(data: bytes, budget: DecodeBudget = DEFAULT_BUDGET) -> None:
    """Raise ImageError (``image_truncated``) when the entropy-coded data of a JPEG does not
    hold every block of the image, even though the file ends with EOI; ``bad_image`` when the
    header walk or the decoder refuses it. Decodes the scan with Pillow at 1/8 scale (about a
    third of a full decode for a baseline JPEG, two full decodes for a progressive one). Call
    it where the image is decoded anyway, not in the codecs, which stay Pillow-free; where the
    pixels are needed, ``decode_jpeg`` checks for the price of the decode alone. The decode
    budget applies as in ``sniff``, and the decoder stops with ``decode_budget`` once it has
    used ``budget.max_cpu_s`` of CPU time."""
    _check_jpeg_scans(data, _scan_layout(data, budget), budget, draft=True)


def decode_jpeg(data: bytes, budget: DecodeBudget = DEFAULT_BUDGET) -> Image.Image:
    """Decode a JPEG with Pillow and return the image (mode and size as ``Image.open`` gives
    them, pixels loaded), raising ImageError like ``check_jpeg_scan``. A baseline JPEG is
    decoded once, as fast as ``Image.open(...).load()``; a progressive one twice."""
    image = _check_jpeg_scans(data, _scan_layout(data, budget), budget, draft=False)
    assert image is not None
    return image


def _scan_layout(data: bytes, budget: DecodeBudget) -> bool:
    """True for one interleaved sequential scan; ImageError for what ``sniff`` rejects (the
    side and pixel limits excepted: they are the codec's, set per deployment)."""
    if detect(data) != "jpeg":
        raise ImageError("bad_image", "not a JPEG")
    width, height, comps, scan_at, one_scan = _jpeg_header(data)
    _check_bytes(width * height * comps, width, height, budget)
    _check_jpeg_end(data)
    if not one_scan:
        _check_jpeg_scans_budget(data, scan_at, width * height, budget)
    return one_scan


def _check_jpeg_scans(
    data: bytes, one_scan: bool, budget: DecodeBudget, *, draft: bool
) -> Image.Image | None:
    deadline = time.thread_time() + budget.max_cpu_s
    # A cut may leave half of a stuffed FF00 pair; FF fill bytes may precede a marker anyway.
    body = data[: data.rindex(JPEG_EOI)].rstrip(b"\xff")
    try:
        if one_scan:
            status, image = _pil_decode(body + _SCAN_FILLER, deadline, draft=draft)
            complete = status == _PIL_DONE
        else:
            status, image = _pil_decode(data, deadline, draft=False)
            complete = False
            if status == _PIL_DONE and image is not None:
                status, filled = _pil_decode(body + _SCAN_FILLER + JPEG_EOI, deadline, draft=False)
                complete = (
                    status == _PIL_DONE
                    and filled is not None
                    and image.tobytes() == filled.tobytes()
                )
    except ImageError:
        raise
    except Exception as exc:  # Pillow's own parser refused what the header walk accepted
        raise ImageError("bad_image", f"JPEG not decodable: {exc}") from None
    if complete:
        return image
    if status in (0, _PIL_DONE):  # the decoder wanted more data, or the filler changed pixels
        raise ImageError(
            "image_truncated",
            "JPEG scan data ends before the last block (cut short, EOI re-appended)",
        )
    raise ImageError("bad_image", f"JPEG scan data is corrupt (decoder status {status})")


def _pil_decode(data: bytes, deadline: float, *, draft: bool) -> tuple[int, Image.Image | None]:
    """Run Pillow's JPEG decoder over ``data`` (at 1/8 scale with ``draft``); return a status
    (-1 done, 0 wants more data than there is, < -1 decoder error) and, when done, the image.
    The decoder is driven directly so that ``ImageFile.LOAD_TRUNCATED_IMAGES`` (a
    process-wide switch) cannot hide a short file, and fed ``_DECODE_CHUNK`` bytes at a time
    so that this thread's CPU time can be checked against ``deadline`` between feeds."""
    with Image.open(io.BytesIO(data), formats=("JPEG",)) as im:
        if draft:
            im.draft(None, (1, 1))
        (name, extents, offset, args), *rest = im.tile
        if rest:
            raise ImageError("bad_image", "JPEG has more than one tile")
        decoder = Image._getdecoder(im.mode, name, args, im.decoderconfig)
        pixels = Image.new(im.mode, im.size)
        pixels.info = dict(im.info)
        try:
            decoder.setimage(pixels.im, extents)
            status = _feed(decoder, data, offset, deadline)
        finally:
            decoder.cleanup()
    return status, pixels if status == _PIL_DONE else None


def _feed(decoder: Any, data: bytes, pos: int, deadline: float) -> int:
    """Feed ``data[pos:]`` to ``decoder`` in chunks; the decoder status as ``_pil_decode``."""
    pending, end = b"", len(data)
    while True:
        if pos < end:
            pending += data[pos : pos + _DECODE_CHUNK]
            pos += _DECODE_CHUNK
        n, err = decoder.decode(pending)
        if time.thread_time() > deadline:
            raise ImageError("decode_budget", "JPEG decode ran over its CPU-time budget")
        if n < 0:
            return _PIL_DONE if err == 0 else min(err, -2)
        if n == 0 and pos >= end:
            return 0
        pending = pending[n:]
