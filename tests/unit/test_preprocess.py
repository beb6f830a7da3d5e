"""Shared preprocessing: decode with limits, RGB, resize, normalise exactly like training."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge.preprocess import (
    CAFFE_MEAN_BGR,
    InputSpec,
    PreprocessError,
    decode_image,
    normalise,
    preprocess_bytes,
    preprocess_images,
)

pytestmark = pytest.mark.unit


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_caffe_mode_is_bgr_minus_imagenet_means() -> None:
    px = np.zeros((1, 2, 2, 3), np.float32)
    px[..., 0], px[..., 1], px[..., 2] = 10.0, 20.0, 30.0  # R, G, B
    out = normalise(px, InputSpec(2, "caffe"))
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        out[0, 0, 0],
        [30 - CAFFE_MEAN_BGR[0], 20 - CAFFE_MEAN_BGR[1], 10 - CAFFE_MEAN_BGR[2]],
        rtol=1e-6,
    )


def test_meanstd_and_unit_modes() -> None:
    px = np.full((1, 1, 1, 3), 255.0, np.float32)
    spec = InputSpec(1, "meanstd", mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    np.testing.assert_allclose(normalise(px, spec)[0, 0, 0], [2.0, 1.0, 0.5])
    np.testing.assert_allclose(normalise(px, InputSpec(1, "unit"))[0, 0, 0], [1.0, 1.0, 1.0])


def test_bytes_and_images_give_the_same_batch() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), "RGB")
    spec = InputSpec(32)
    a = preprocess_images([img], spec)
    b = preprocess_bytes([_png(img)], spec)
    assert a.shape == (1, 32, 32, 3) and a.flags.c_contiguous
    np.testing.assert_array_equal(a, b)


def test_grey_and_rgba_become_rgb() -> None:
    grey = Image.new("L", (8, 8), 100)
    rgba = Image.new("RGBA", (8, 8), (200, 100, 50, 0))  # fully transparent → black
    out = preprocess_images([grey, rgba], InputSpec(8, "unit"))
    np.testing.assert_allclose(out[0], 100 / 255, rtol=1e-6)
    np.testing.assert_allclose(out[1], 0.0)


def test_corrupt_truncated_and_huge_images_are_rejected() -> None:
    with pytest.raises(PreprocessError) as e:
        decode_image(b"")
    assert e.value.reason == "bad_image"
    with pytest.raises(PreprocessError) as e:
        decode_image(b"\x89PNG\r\n\x1a\nnot really")
    assert e.value.reason == "bad_image"
    data = _png(Image.new("RGB", (64, 64), (1, 2, 3)))
    with pytest.raises(PreprocessError) as e:
        decode_image(data[: len(data) // 2])
    assert e.value.reason == "bad_image"
    with pytest.raises(PreprocessError) as e:
        decode_image(data, max_pixels=1000)
    assert e.value.reason == "image_too_large"


def test_empty_batch_and_bad_spec() -> None:
    assert preprocess_images([], InputSpec(16)).shape == (0, 16, 16, 3)
    with pytest.raises(ValueError):
        InputSpec(16, "bogus")
    with pytest.raises(PreprocessError):
        normalise(np.zeros((2, 2, 3)), InputSpec(2))


def test_jpeg_cut_short_and_patched_with_eoi_is_refused_not_decoded_grey() -> None:
    """Pillow alone decodes such a file to grey without a word; the worker refuses it."""
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    data = buf.getvalue()
    assert decode_image(data).size == (320, 240)
    cut = data[: len(data) // 2] + b"\xff\xd9"
    with Image.open(io.BytesIO(cut)) as lenient:
        lenient.load()  # no error from Pillow
    with pytest.raises(PreprocessError) as info:
        decode_image(cut)
    assert info.value.reason == "image_truncated"
