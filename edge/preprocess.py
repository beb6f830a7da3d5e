"""Image preprocessing shared by training, evaluation and the edge worker (pure functions).

Production preprocessing must equal training preprocessing: both go through
:func:`preprocess_images` with the ``InputSpec`` read from the model card.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from broker import images

DEFAULT_MAX_PIXELS = 40_000_000
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # Keras ResNet50 "caffe" mode
MODES = ("caffe", "meanstd", "unit")


class PreprocessError(ValueError):
    """An image that cannot be turned into model input; ``reason`` is a dead-letter code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class InputSpec:
    """What the model expects: square size, and how pixels are normalised.

    ``caffe``: RGB→BGR, subtract the ImageNet BGR means, no scaling (Keras ResNet50).
    ``meanstd``: (x/255 − mean) / std per RGB channel. ``unit``: x/255.
    """

    size: int
    mode: str = "caffe"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"normalisation mode {self.mode!r} not in {MODES}")
        if not 1 <= self.size <= 4096:
            raise ValueError(f"input size {self.size} outside 1..4096")
        if any(s <= 0 for s in self.std):
            raise ValueError("std must be positive")


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode JPEG/PNG bytes into an RGB image; PreprocessError on bombs or corrupt data."""
    if not data:
        raise PreprocessError("bad_image", "empty image payload")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            w, h = opened.size
            if w * h > max_pixels:
                raise PreprocessError("image_too_large", f"{w}x{h} exceeds {max_pixels} pixels")
            img: Image.Image = opened
            if opened.format == "JPEG":  # also refuses a scan cut short and patched with EOI
                img = images.decode_jpeg(data)
            else:
                opened.load()
    except PreprocessError:
        raise
    except images.ImageError as exc:
        raise PreprocessError(exc.reason, exc.detail) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PreprocessError("image_too_large", str(exc)) from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise PreprocessError("bad_image", f"{type(exc).__name__}: {exc}") from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB image; alpha is composited on black, palette/grey/CMYK converted."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (0, 0, 0))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) or 1.0
        img = Image.fromarray((arr * (255.0 / max(top, 255.0))).astype(np.uint8), mode="L")
    return img.convert("RGB")


def resize(img: Image.Image, size: int) -> Image.Image:
    if img.size == (size, size):
        return img
    return img.resize((size, size), Image.Resampling.BILINEAR)


def normalise(batch: np.ndarray, spec: InputSpec) -> np.ndarray:
    """RGB pixel values 0..255 (float32 NHWC) → model input per ``spec`` (new array)."""
    x = np.asarray(batch, dtype=np.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise PreprocessError("bad_image", f"expected [N, H, W, 3], got {x.shape}")
    if spec.mode == "caffe":
        return x[..., ::-1] - np.asarray(CAFFE_MEAN_BGR, np.float32)
    if spec.mode == "meanstd":
        return (x / 255.0 - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return x / 255.0


def preprocess_images(images: Sequence[Image.Image], spec: InputSpec) -> np.ndarray:
    """Images → float32 NHWC batch ready for the model's ``image`` input.

    Equal to ``normalise(stack(images as float32), spec)`` bit for bit (the same float32
    operations), but in one output array: each uint8 image is cast into its slot (channels
    already in tensor order), then normalised in place: no per-image float copies, no
    stacked intermediate.
    """
    n, size = len(images), spec.size
    out = np.empty((n, size, size, 3), np.float32)
    for i, im in enumerate(images):
        px = np.asarray(resize(to_rgb(im), size))
        out[i] = px[..., ::-1] if spec.mode == "caffe" else px
    if spec.mode == "caffe":
        out -= np.asarray(CAFFE_MEAN_BGR, np.float32)
    elif spec.mode == "meanstd":
        out /= np.float32(255.0)
        out -= np.asarray(spec.mean, np.float32)
        out /= np.asarray(spec.std, np.float32)
    else:
        out /= np.float32(255.0)
    return out


def preprocess_bytes(
    payloads: Sequence[bytes], spec: InputSpec, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Encoded images → batch; the first undecodable one raises PreprocessError."""
    return preprocess_images([decode_image(p, max_pixels) for p in payloads], spec)
