"""Part shapes of the synthetic line (washer, bracket, circuit board) drawn in part coordinates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Arr = np.ndarray
_HOLE = (0.23, 0.24, 0.25)  # a hole or notch shows the station's backdrop


@dataclass(frozen=True)
class PartGeometry:
    """A rendered part before lighting/noise: colour, coverage mask, texture amplitude."""

    rgb: Arr
    mask: Arr
    texture_std: float
    missing_area: float = 0.0  # pixels of the feature left out ("missing" defect)
    missing_contrast: float = 0.0
    missing_center: tuple[float, float] | None = None
    missing_mask: Arr | None = None  # where the left-out feature should have been
    missing_expected: tuple[float, float, float] | None = None  # its colour on a good part


@dataclass(frozen=True)
class PartShape:
    draw: Callable[..., PartGeometry]
    free_rotation: bool


def coverage(sdf: Arr, size: int) -> Arr:
    """Anti-aliased inside-coverage of a signed distance field (negative inside)."""
    px = 2.0 / size
    return np.clip(0.5 - sdf / px, 0.0, 1.0).astype(np.float32)


def box(u: Arr, v: Arr, cx: float, cy: float, hw: float, hh: float) -> Arr:
    return np.maximum(np.abs(u - cx) - hw, np.abs(v - cy) - hh)


def circle(u: Arr, v: Arr, cx: float, cy: float, r: float) -> Arr:
    return np.hypot(u - cx, v - cy) - r


def sample_field(field: Arr, u: Arr, v: Arr) -> Arr:
    """Bilinear lookup of a square field spanning part coordinates [-1.25, 1.25]²."""
    g = field.shape[0] - 1
    fu = np.clip((u + 1.25) / 2.5 * g, 0, g - 1e-3)
    fv = np.clip((v + 1.25) / 2.5 * g, 0, g - 1e-3)
    iu, iv = fu.astype(np.int32), fv.astype(np.int32)
    du, dv = fu - iu, fv - iv
    top = field[iv, iu] * (1 - du) + field[iv, iu + 1] * du
    bot = field[iv + 1, iu] * (1 - du) + field[iv + 1, iu + 1] * du
    return (top * (1 - dv) + bot * dv).astype(np.float32)


def _texture(rng: np.random.Generator, u: Arr, v: Arr, cells: tuple[int, int]) -> Arr:
    """Unit-std texture attached to the part (moves with its pose); anisotropic cells."""
    coarse = rng.standard_normal((cells[1] + 1, cells[0] + 1)).astype(np.float32)
    # Resample the anisotropic grid onto a square one so sample_field can read it.
    n = 129
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / (n - 1)
    fy, fx = yy * cells[1], xx * cells[0]
    iy, ix = (
        np.minimum(fy.astype(np.int32), cells[1] - 1),
        np.minimum(fx.astype(np.int32), cells[0] - 1),
    )
    dy, dx = fy - iy, fx - ix
    sq = (
        coarse[iy, ix] * (1 - dx) * (1 - dy)
        + coarse[iy, ix + 1] * dx * (1 - dy)
        + coarse[iy + 1, ix] * (1 - dx) * dy
        + coarse[iy + 1, ix + 1] * dx * dy
    )
    t = sample_field(sq, u, v)
    return (t - t.mean()) / (t.std() + 1e-6)


def _finish(rng: np.random.Generator, base: Arr, tex: Arr, amp: float, shade: Arr) -> Arr:
    fine = rng.standard_normal(tex.shape).astype(np.float32) * 0.35
    lum = amp * (tex + fine) / np.sqrt(1.0 + 0.35**2)
    return (base[None, None, :] * shade[..., None] + lum[..., None]).astype(np.float32)


def draw_washer(
    rng: np.random.Generator, u: Arr, v: Arr, size: int, *, missing: bool
) -> PartGeometry:
    r = np.hypot(u, v)
    outer, inner = rng.uniform(0.76, 0.80), rng.uniform(0.30, 0.34)
    ring = np.maximum(r - outer, inner - r)
    notch = box(u, v, outer - 0.02, 0.0, 0.08, 0.05)
    sdf = ring if missing else np.maximum(ring, -notch)
    mask = coverage(sdf, size)
    amp = float(rng.uniform(0.025, 0.05))
    turning = np.sin(r * rng.uniform(90, 130) + 2.0 * _texture(rng, u, v, (6, 6)))
    tex = 0.6 * turning + 0.8 * _texture(rng, u, v, (20, 20))
    light = rng.uniform(0, 2 * np.pi)
    shade = 1.0 + 0.07 * np.cos(np.arctan2(v, u) - light) + 0.05 * (r - 0.55)
    rgb = _finish(rng, np.array([0.62, 0.63, 0.66], np.float32), tex, amp, shade)
    if not missing:
        return PartGeometry(rgb, mask, amp)
    cut = coverage(np.maximum(notch, ring), size)
    return _missing(rgb, mask, cut, amp, 0.62 - 0.24, _HOLE)


def draw_bracket(
    rng: np.random.Generator, u: Arr, v: Arr, size: int, *, missing: bool
) -> PartGeometry:
    arm = np.minimum(box(u, v, 0.0, 0.5, 0.75, 0.25), box(u, v, -0.5, 0.0, 0.25, 0.75))
    holes = [(0.45, 0.5), (-0.5, 0.5), (-0.5, -0.45)]
    skip = int(rng.integers(len(holes))) if missing else -1
    r = 0.085
    sdf = arm
    for k, (cx, cy) in enumerate(holes):
        if k != skip:
            sdf = np.maximum(sdf, -circle(u, v, cx, cy, r))
    mask = coverage(sdf, size)
    amp = float(rng.uniform(0.025, 0.05))
    tex = 0.7 * _texture(rng, u, v, (3, 60)) + 0.7 * _texture(rng, u, v, (18, 18))
    shade = 1.0 + 0.05 * rng.uniform(-1, 1) * u + 0.04 * rng.uniform(-1, 1) * v
    rgb = _finish(rng, np.array([0.70, 0.70, 0.72], np.float32), tex, amp, shade)
    if skip < 0:
        return PartGeometry(rgb, mask, amp)
    hole = coverage(circle(u, v, *holes[skip], r), size)
    return _missing(rgb, mask, hole, amp, 0.70 - 0.24, _HOLE)


_COMPONENTS = [  # (cx, cy, half-w, half-h, rgb)
    (-0.30, -0.35, 0.11, 0.08, (0.08, 0.08, 0.09)),
    (0.35, 0.30, 0.09, 0.09, (0.10, 0.10, 0.11)),
    (0.42, -0.40, 0.05, 0.025, (0.72, 0.62, 0.42)),
    (0.42, -0.22, 0.05, 0.025, (0.72, 0.62, 0.42)),
    (-0.40, 0.35, 0.025, 0.05, (0.72, 0.62, 0.42)),
    (-0.18, 0.50, 0.05, 0.025, (0.30, 0.22, 0.12)),
]


def draw_pcb(rng: np.random.Generator, u: Arr, v: Arr, size: int, *, missing: bool) -> PartGeometry:
    board = box(u, v, 0.0, 0.0, 0.75, 0.75)
    for cx in (-0.65, 0.65):
        for cy in (-0.65, 0.65):
            board = np.maximum(board, -circle(u, v, cx, cy, 0.045))
    mask = coverage(board, size)
    amp = float(rng.uniform(0.02, 0.04))
    tex = 0.6 * _texture(rng, u, v, (40, 40)) + 0.5 * np.sin(u * 160) * np.sin(v * 160)
    shade = 1.0 + 0.04 * rng.uniform(-1, 1) * (u + v)
    rgb = _finish(rng, np.array([0.12, 0.42, 0.22], np.float32), tex, amp, shade)
    trace = np.minimum(box(u, v, 0.0, -0.05, 0.6, 0.012), box(u, v, 0.1, 0.1, 0.012, 0.5))
    trace = np.minimum(trace, box(u, v, -0.1, 0.62, 0.45, 0.012))
    rgb = _paint(rgb, coverage(trace, size), (0.30, 0.58, 0.30))
    skip = int(rng.integers(1, len(_COMPONENTS))) if missing else -1
    for k, (cx, cy, hw, hh, col) in enumerate(_COMPONENTS):
        jx, jy = rng.uniform(-0.01, 0.01, size=2)
        wide = hw >= hh
        pads = box(u, v, cx + jx, cy + jy, hw + (0.02 if wide else 0.0), hh + (0 if wide else 0.02))
        rgb = _paint(rgb, coverage(pads, size), (0.75, 0.75, 0.70))
        if k == skip:
            body = coverage(box(u, v, cx + jx, cy + jy, hw, hh), size)
            lum = float(np.mean(col)) - 0.25
            return _missing(rgb, mask, body * mask, amp, lum, col)
        rgb = _paint(rgb, coverage(box(u, v, cx + jx, cy + jy, hw, hh), size), col)
    return PartGeometry(rgb, mask, amp)


def _paint(rgb: Arr, cov: Arr, col: tuple[float, float, float]) -> Arr:
    c = np.asarray(col, np.float32)[None, None, :]
    return rgb * (1 - cov[..., None]) + c * cov[..., None]


def _missing(
    rgb: Arr,
    mask: Arr,
    feature: Arr,
    amp: float,
    delta: float,
    expected: tuple[float, float, float],
) -> PartGeometry:
    area = float(feature.sum())
    ys, xs = np.nonzero(feature > 0.5)
    centre = (float(xs.mean()), float(ys.mean())) if len(xs) else None
    return PartGeometry(rgb, mask, amp, area, abs(delta) / amp, centre, feature > 0.5, expected)


PART_SHAPES: dict[str, PartShape] = {
    "washer": PartShape(draw_washer, free_rotation=True),
    "bracket": PartShape(draw_bracket, free_rotation=False),
    "pcb": PartShape(draw_pcb, free_rotation=False),
}
