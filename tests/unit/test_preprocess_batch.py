"""preprocess_images writes the batch in place, bit-equal to the reference float32 formula."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edge.preprocess import InputSpec, normalise, preprocess_images, resize, to_rgb

pytestmark = pytest.mark.unit


def reference(images: list[Image.Image], spec: InputSpec) -> np.ndarray:
    """The formula training was written against: float32 stack, then ``normalise``."""
    arr = np.stack([np.asarray(resize(to_rgb(im), spec.size), dtype=np.float32) for im in images])
    return np.ascontiguousarray(normalise(arr, spec))


def mixed_images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8))
    grey = Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8), mode="RGBA")
    exact = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return [rgb, grey, rgba, exact, rgb.convert("P")]


@pytest.mark.parametrize("mode", ["caffe", "meanstd", "unit"])
def test_bit_equal_to_the_reference(mode: str) -> None:
    spec = InputSpec(32, mode, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    images = mixed_images()
    got = preprocess_images(images, spec)
    want = reference(images, spec)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == (len(images), 32, 32, 3)
    np.testing.assert_array_equal(got, want)


def test_caffe_is_bgr_minus_means() -> None:
    img = Image.new("RGB", (4, 4), (10, 20, 30))
    got = preprocess_images([img], InputSpec(4, "caffe"))
    np.testing.assert_allclose(got[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def test_empty_batch() -> None:
    out = preprocess_images([], InputSpec(8))
    assert out.shape == (0, 8, 8, 3) and out.dtype == np.float32
