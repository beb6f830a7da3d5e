"""Small JPEG evidence thumbnails for alerts (bounded in pixels and in bytes)."""

from __future__ import annotations

import io

from PIL import Image

QUALITIES = (80, 65, 50, 35, 20)


def thumbnail(image: Image.Image, max_px: int = 160, max_bytes: int = 12_000) -> bytes:
    """A JPEG of ``image`` fitting ``max_px`` on its longer side and at most ``max_bytes``.

    Quality steps down until the JPEG fits; if even the lowest quality does not, the picture
    is halved and tried again. Always returns a JPEG of at most ``max_bytes``.
    """
    if max_px < 8 or max_bytes < 500:
        raise ValueError("thumbnail too small to be useful")
    im = image.convert("RGB") if image.mode != "RGB" else image.copy()
    side = max_px
    while True:
        im.thumbnail((side, side), Image.Resampling.BILINEAR)
        for q in QUALITIES:
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=q)
            if buf.tell() <= max_bytes:
                return buf.getvalue()
        if side <= 8:
            raise ValueError(f"cannot fit a thumbnail in {max_bytes} bytes")
        side //= 2


def thumbnail_from_bytes(data: bytes, max_px: int = 160, max_bytes: int = 12_000) -> bytes:
    """:func:`thumbnail` of an encoded image (already checked by the codec)."""
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (max_px * 2, max_px * 2))  # JPEG: decode at a reduced scale, cheaply
        return thumbnail(im.convert("RGB"), max_px, max_bytes)
