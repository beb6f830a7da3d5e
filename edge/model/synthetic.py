"""The synthetic production line: deterministic renders of parts with natural variation and defects.

Pure numpy + Pillow (no TensorFlow), shared by the model build, the simulator and the tests.
A part is drawn in its own coordinates (u, v in [-1, 1]) and mapped to the image through a
random pose; lighting, texture, blur and sensor noise vary per render. Frames are drawn at
the camera's resolution (``DEFAULT_SIZE`` = 448 px); the model sees them resized by
``edge.preprocess``. Defects are small (most under 2 % of the image) and come in two tiers
of visibility, measured on the final image as a contrast-to-noise ratio (``info["cnr"]``,
see :mod:`edge.model.cnr`): ``standard`` (CNR drawn log-uniformly over 2–8, what an
inspector spots at once) and ``faint`` (amplitude drawn relative to the part's texture,
``info["contrast"]``, as the line was first built: mostly CNR < 2).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from edge.model import cnr as cnrmod
from edge.model import synthetic_defects as sd
from edge.model.synthetic_parts import PART_SHAPES, PartGeometry

PART_TYPES: tuple[str, ...] = ("washer", "bracket", "pcb")
DEFECT_FAMILIES: tuple[str, ...] = sd.FAMILIES
GOOD = "good"
DEFAULT_SIZE = 448  # the camera's resolution; the model input is smaller (edge.preprocess)
TIERS: tuple[str, ...] = ("standard", "faint")
STANDARD_CNR = (2.0, 8.0)  # log-uniform
_BG = np.array([0.23, 0.24, 0.25], dtype=np.float32)


@dataclass(frozen=True)
class Sample:
    """One labelled render: ``label`` is ``good`` or a defect family."""

    image: Image.Image
    label: str
    part_type: str
    seed: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)


def _rng(rng_or_seed: np.random.Generator | int | Sequence[int]) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def _pose_grid(
    rng: np.random.Generator, size: int, free_rotation: bool
) -> tuple[np.ndarray, np.ndarray, float]:
    """Part coordinates (u, v) of every pixel under a random rotation, shift and scale."""
    angle = rng.uniform(-np.pi, np.pi) if free_rotation else rng.uniform(-0.3, 0.3)
    scale = rng.uniform(0.92, 1.08)
    shift = rng.uniform(-0.07, 0.07, size=2)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    x = (xs + 0.5) / size * 2.0 - 1.0 - shift[0]
    y = (ys + 0.5) / size * 2.0 - 1.0 - shift[1]
    c, s = np.cos(angle), np.sin(angle)
    u = (c * x + s * y) / scale
    v = (-s * x + c * y) / scale
    return u.astype(np.float32), v.astype(np.float32), float(scale)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (``cells`` control points per side)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32)
    return (arr - arr.mean()) / (arr.std() + 1e-6)


def _lighting(rng: np.random.Generator, size: int) -> np.ndarray:
    """Per-pixel gain: global brightness, a linear gradient and a colour temperature tint."""
    gain = rng.uniform(0.85, 1.15)
    theta = rng.uniform(0, 2 * np.pi)
    amp = rng.uniform(0.0, 0.15)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    grad = 1.0 + amp * (np.cos(theta) * xs + np.sin(theta) * ys) * 2.0
    tint = 1.0 + rng.uniform(-0.03, 0.03, size=3).astype(np.float32)
    return (gain * grad)[..., None] * tint[None, None, :]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """The station's matte backdrop: nearly uniform, with faint low-frequency mottling."""
    belt = 0.012 * smooth_noise(rng, size, 8) + 0.006 * rng.standard_normal((size, size))
    return _BG[None, None, :] + belt[..., None].astype(np.float32)


def render_part(
    rng_or_seed: np.random.Generator | int | Sequence[int],
    part_type: str,
    defect: str | None = None,
    size: int = DEFAULT_SIZE,
    tier: str = "standard",
) -> tuple[Image.Image, dict[str, Any]]:
    """Render one part (RGB ``size``×``size``) with an optional defect; deterministic by seed.

    Returns the image and ``info``: part type, defect, tier, defect area fraction of the
    image, ``cnr`` (measured on the final image), ``contrast`` (amplitude / texture std),
    the defect centre in pixels and ``mask`` (bool ``size``×``size``, where the defect is:
    the pixel-level label a segmentation loss uses).
    """
    _check(part_type, defect, size, tier)
    rng = _rng(rng_or_seed)
    shape = PART_SHAPES[part_type]
    u, v, scale = _pose_grid(rng, size, free_rotation=shape.free_rotation)
    geo: PartGeometry = shape.draw(rng, u, v, size, missing=defect == "missing")
    base = _background(rng, size) * (1.0 - geo.mask[..., None]) + geo.rgb * geo.mask[..., None]
    info: dict[str, Any] = {
        "part_type": part_type,
        "defect": defect,
        "tier": tier,
        "area": 0.0,
        "contrast": 0.0,
        "cnr": 0.0,
        "center": None,
        "mask": np.zeros((size, size), dtype=bool),
        "texture_std": geo.texture_std,
        "scale": scale,
    }
    field = sd.draw(rng, defect, geo.mask, geo.texture_std, size) if defect in sd._DRAW else None
    target = float(np.exp(rng.uniform(*np.log(STANDARD_CNR))))
    light = _lighting(rng, size)
    blur = float(rng.uniform(0.0, 0.8)) * size / 128.0
    noise = rng.normal(0.0, rng.uniform(1.0, 4.0), (size, size, 3)).astype(np.float32)
    frame = _blur(base * light, blur) * 255.0 + noise
    if field is not None:
        frame = _add_defect(frame, field, light, blur, geo.mask > 0.99, target, tier, info)
    img = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    if geo.missing_mask is not None:
        info.update(area=geo.missing_area / (size * size), contrast=geo.missing_contrast)
        info.update(center=geo.missing_center, mask=geo.missing_mask)
        expected = np.asarray(geo.missing_expected, np.float32) * 255.0
        around = cnrmod.ring(geo.missing_mask, geo.mask > 0.99, size)
        exp_px = expected[None, :] * light[geo.missing_mask]
        info["cnr"] = cnrmod.cnr(img, geo.missing_mask, around, exp_px.mean(axis=0))
    return Image.fromarray(img, mode="RGB"), info


def _check(part_type: str, defect: str | None, size: int, tier: str) -> None:
    if part_type not in PART_SHAPES:
        raise ValueError(f"unknown part type {part_type!r}; choose from {PART_TYPES}")
    if defect is not None and defect not in DEFECT_FAMILIES:
        raise ValueError(f"unknown defect {defect!r}; choose from {DEFECT_FAMILIES}")
    if not 16 <= size <= 2048:
        raise ValueError(f"size {size} outside 16..2048")
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose from {TIERS}")


def _blur(arr: np.ndarray, sigma: float) -> np.ndarray:
    """The camera's optical blur (Gaussian, per channel); none below 0.15 px."""
    if sigma <= 0.15:
        return arr
    return ndimage.gaussian_filter(arr, sigma=(sigma, sigma, 0), mode="nearest")


def _add_defect(
    frame: np.ndarray,
    field: sd.DefectField,
    light: np.ndarray,
    blur: float,
    surface: np.ndarray,
    target: float,
    tier: str,
    info: dict[str, Any],
) -> np.ndarray:
    """Add the defect at the tier's amplitude and record its measured CNR."""
    size = frame.shape[0]
    y0, y1, x0, x1 = field.window
    unit = np.zeros_like(frame)
    unit[y0:y1, x0:x1] = field.delta * light[y0:y1, x0:x1]
    unit = _blur(unit, blur) * 255.0
    around = cnrmod.ring(field.region, surface, size)
    if tier == "faint":
        k = field.faint_k
    else:
        k = cnrmod.amplitude_for(frame, unit, field.region, around, target)
    out = frame + k * unit
    final = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    info.update(
        mask=field.region,
        area=float(field.region.sum()) / (size * size),
        contrast=float(k),
        center=field.center,
        cnr=cnrmod.cnr(final, field.region, around),
    )
    return out


def sample_label(rng: np.random.Generator, families: Sequence[str], defect_fraction: float) -> str:
    if not families or rng.random() >= defect_fraction:
        return GOOD
    return str(families[int(rng.integers(len(families)))])


def iter_samples(
    seed: int,
    n: int,
    *,
    size: int = DEFAULT_SIZE,
    part_types: Sequence[str] = PART_TYPES,
    families: Sequence[str] = DEFECT_FAMILIES,
    defect_fraction: float = 0.5,
    start: int = 0,
    tier: str = "standard",
) -> Iterator[Sample]:
    """``n`` labelled samples; sample ``i`` depends only on ``(seed, i)`` (seekable)."""
    for i in range(start, start + n):
        sub = (int(seed), int(i))
        rng = np.random.default_rng(sub)
        part = str(part_types[int(rng.integers(len(part_types)))])
        label = sample_label(rng, families, defect_fraction)
        img, info = render_part(rng, part, None if label == GOOD else label, size, tier)
        yield Sample(img, label, part, sub, info)


def render_frame(
    seed: int,
    index: int,
    part_type: str,
    defect: str | None,
    size: int = DEFAULT_SIZE,
    tier: str = "standard",
) -> Image.Image:
    """One frame for a simulated camera (seed, frame index) — a thin convenience for the sim."""
    img, _ = render_part((int(seed), int(index)), part_type, defect, size, tier)
    return img
