"""Evidence thumbnails stay small in pixels and bytes, whatever the input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge.evidence import thumbnail, thumbnail_from_bytes

pytestmark = pytest.mark.unit


def noisy(w: int, h: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_thumbnail_bounded(mode: str) -> None:
    data = thumbnail(noisy(1024, 600, mode), max_px=160, max_bytes=12_000)
    assert len(data) <= 12_000
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and max(im.size) <= 160


def test_tiny_byte_budget_shrinks_the_picture() -> None:
    data = thumbnail(noisy(640, 640), max_px=160, max_bytes=1_500)
    assert len(data) <= 1_500


def test_from_encoded_bytes() -> None:
    buf = io.BytesIO()
    noisy(800, 800).save(buf, format="PNG")
    data = thumbnail_from_bytes(buf.getvalue(), max_px=96, max_bytes=8_000)
    with Image.open(io.BytesIO(data)) as im:
        assert max(im.size) <= 96
