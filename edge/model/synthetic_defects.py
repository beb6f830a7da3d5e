"""Defect families of the synthetic line: small, often faint changes on the part surface."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

Arr = np.ndarray
FAMILIES: tuple[str, ...] = ("scratch", "dent", "crack", "missing", "stain", "discoloration")
# Contrast (amplitude / texture std) range per family; "missing" is geometric (see parts).
_CONTRAST = {
    "scratch": (0.8, 3.5),
    "dent": (0.8, 3.5),
    "crack": (1.2, 4.0),
    "stain": (0.8, 3.0),
    "discoloration": (1.0, 3.0),
}


def _seg_dist(x: Arr, y: Arr, p: Arr, q: Arr) -> Arr:
    d = q - p
    t = np.clip(((x - p[0]) * d[0] + (y - p[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(x - (p[0] + t * d[0]), y - (p[1] + t * d[1]))


def _polyline(
    rng: np.random.Generator, start: Arr, n: int, step: tuple[float, float], turn: float
) -> list[Arr]:
    pts, heading = [start], rng.uniform(0, 2 * np.pi)
    for _ in range(n):
        heading += rng.uniform(-turn, turn)
        length = rng.uniform(*step)
        pts.append(pts[-1] + length * np.array([np.cos(heading), np.sin(heading)]))
    return pts


def _line_field(x: Arr, y: Arr, pts: list[Arr], width: float) -> Arr:
    d = np.full(x.shape, np.inf, dtype=np.float32)
    for p, q in pairwise(pts):
        d = np.minimum(d, _seg_dist(x, y, p, q))
    return np.exp(-((d / width) ** 2)).astype(np.float32)


def _scratch(rng: np.random.Generator, x: Arr, y: Arr, s: float) -> tuple[Arr, Arr]:
    length = rng.uniform(8, 26) * s
    pts = _polyline(rng, np.zeros(2), 3, (length / 3, length / 3), 0.15)
    pts = [p - (pts[-1] / 2) for p in pts]
    sign = 1.0 if rng.random() < 0.7 else -1.0
    return sign * _line_field(x, y, pts, rng.uniform(0.6, 1.2) * s), np.ones(3, np.float32)


def _dent(rng: np.random.Generator, x: Arr, y: Arr, s: float) -> tuple[Arr, Arr]:
    r = rng.uniform(2.0, 4.5) * s
    aspect, theta = rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
    c, sn = np.cos(theta), np.sin(theta)
    a, b = (c * x + sn * y) / r, (-sn * x + c * y) / (r * aspect)
    g = np.exp(-(a**2 + b**2))
    light = rng.uniform(0, 2 * np.pi)
    rel = np.cos(light) * a + np.sin(light) * b
    field = g * (-0.6 + 1.6 * rel)
    return (field / (np.abs(field).max() + 1e-6)).astype(np.float32), np.ones(3, np.float32)


def _crack(rng: np.random.Generator, x: Arr, y: Arr, s: float) -> tuple[Arr, Arr]:
    n = int(rng.integers(5, 10))
    pts = _polyline(rng, np.zeros(2), n, (2.0 * s, 5.0 * s), 0.7)
    width = rng.uniform(0.5, 0.9) * s
    field = _line_field(x, y, pts, width)
    if rng.random() < 0.4:
        branch = _polyline(rng, pts[n // 2], 3, (1.5 * s, 4.0 * s), 0.7)
        field = np.maximum(field, _line_field(x, y, branch, width * 0.8))
    return -field, np.ones(3, np.float32)


def _stain(rng: np.random.Generator, x: Arr, y: Arr, s: float) -> tuple[Arr, Arr]:
    field = np.zeros(x.shape, np.float32)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(-4 * s, 4 * s, size=2)
        sig = rng.uniform(2.0, 5.0) * s
        field += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sig**2))
    tint = np.array([0.6, 0.8, 1.1], np.float32)
    return -(field / field.max()), tint


def _discoloration(rng: np.random.Generator, x: Arr, y: Arr, s: float) -> tuple[Arr, Arr]:
    r = rng.uniform(6.0, 11.0) * s
    rr = np.hypot(x, y * rng.uniform(0.7, 1.0)) / r
    field = np.clip(1.5 - 1.5 * rr, 0.0, 1.0) ** 1.5
    hue = [np.array([0.6, 0.1, -0.9]), np.array([-0.5, -0.1, 0.8]), np.array([0.5, 0.4, -0.3])]
    return field.astype(np.float32), hue[int(rng.integers(3))].astype(np.float32)


_DRAW = {
    "scratch": _scratch,
    "dent": _dent,
    "crack": _crack,
    "stain": _stain,
    "discoloration": _discoloration,
}


def _location(rng: np.random.Generator, mask: Arr, margin: int) -> tuple[int, int]:
    inner = mask > 0.99
    inner[:margin], inner[-margin:], inner[:, :margin], inner[:, -margin:] = (False,) * 4
    ys, xs = np.nonzero(inner)
    if not len(xs):
        ys, xs = np.nonzero(mask > 0.5)
    k = int(rng.integers(len(xs)))
    return int(ys[k]), int(xs[k])


@dataclass(frozen=True)
class DefectField:
    """One defect before lighting and noise: a unit-amplitude colour change in a window.

    ``delta`` [h, w, 3] is added to the part's colour (0..1 units) in ``window`` (y0, y1,
    x0, x1) times an amplitude; ``faint_k`` is the faint tier's amplitude in units of the
    part's texture std (drawn from the family's contrast range, as the line was first
    built); ``region`` (full-size bool) is where the defect is.
    """

    window: tuple[int, int, int, int]
    delta: Arr
    region: Arr
    faint_k: float
    center: tuple[float, float]


def draw(
    rng: np.random.Generator, family: str, mask: Arr, tex_std: float, size: int
) -> DefectField:
    """Draw one defect of ``family`` on the part (inside ``mask``), amplitude still free."""
    s = size / 128.0
    cy, cx = _location(rng, mask, max(2, int(6 * s)))
    h = int(np.ceil(36 * s))
    y0, y1, x0, x1 = max(0, cy - h), min(size, cy + h), max(0, cx - h), min(size, cx + h)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    field, tint = _DRAW[family](rng, xs - cx, ys - cy, s)
    k = float(rng.uniform(*_CONTRAST[family]))
    local = field * mask[y0:y1, x0:x1]
    region = np.zeros((size, size), dtype=bool)
    region[y0:y1, x0:x1] = np.abs(local) >= 0.25
    delta = (tex_std * local)[..., None] * tint[None, None, :]
    return DefectField(
        (y0, y1, x0, x1), delta.astype(np.float32), region, k, (float(cx), float(cy))
    )
