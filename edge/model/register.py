"""Registration of a part to its camera's reference pose (pure numpy, no training).

A camera sees one product, placed with some shift, scale and rotation. The part is
separated from the station's backdrop (the border colour), its centroid and area give shift
and scale, and its rotation is found by polar unwrapping: the part's silhouette (and
relative brightness) sampled on rings around the centroid turns a rotation into a circular
shift along the angle, which one FFT cross-correlation with the reference finds, for any
angle (round parts included: their notch or holes decide). :func:`warp` then resamples the
frame into the reference pose, so per-pixel statistics of good parts compare like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

Arr = np.ndarray
_RINGS, _ANGLES = 48, 360
_FG_LEVEL = 25.0  # grey levels from the backdrop colour that count as part


class RegistrationError(ValueError):
    """A frame with no part in it (nothing differs from the backdrop)."""


@dataclass(frozen=True)
class Pose:
    """Where the part sits in a frame: centroid (x, y), scale vs the reference, rotation."""

    cx: float
    cy: float
    scale: float
    angle: float


def backdrop(img: Arr) -> Arr:
    """The station's backdrop colour: the median of a 4-pixel border."""
    x = np.asarray(img, np.float32)
    border = np.concatenate(
        [
            x[:4].reshape(-1, 3),
            x[-4:].reshape(-1, 3),
            x[:, :4].reshape(-1, 3),
            x[:, -4:].reshape(-1, 3),
        ]
    )
    return np.median(border, axis=0)


def silhouette(img: Arr) -> Arr:
    """Boolean mask of the part: pixels that differ from the backdrop colour."""
    x = np.asarray(img, np.float32)
    d = np.abs(x - backdrop(x)).max(axis=-1)
    return np.asarray(ndimage.binary_opening(d > _FG_LEVEL), bool)


def _signature(img: Arr) -> tuple[Arr, float, Arr]:
    """(centroid, area, rotation signal): silhouette plus a little relative brightness."""
    mask = silhouette(img)
    if mask.sum() < 16:
        raise RegistrationError("no part in the frame (nothing differs from the backdrop)")
    ys, xs = np.nonzero(mask)
    lum = np.asarray(img, np.float32).mean(axis=-1)
    rel = np.where(mask, lum / max(float(np.median(lum[mask])), 1.0) - 1.0, 0.0)
    return np.array([xs.mean(), ys.mean()]), float(mask.sum()), mask + 0.3 * rel


def _polar(signal: Arr, centre: Arr, scale: float) -> Arr:
    size = signal.shape[0]
    r = (np.arange(_RINGS) + 0.5) / _RINGS * 0.48 * size * scale
    t = np.arange(_ANGLES) * 2 * np.pi / _ANGLES
    yy = centre[1] + r[:, None] * np.sin(t)[None]
    xx = centre[0] + r[:, None] * np.cos(t)[None]
    return ndimage.map_coordinates(signal, [yy, xx], order=1, mode="constant")


@dataclass(frozen=True)
class Template:
    """The reference pose of one camera: centroid, area and polar signature."""

    cx: float
    cy: float
    area: float
    polar: Arr

    @classmethod
    def of(cls, img: Arr) -> Template:
        c, area, sig = _signature(img)
        return cls(float(c[0]), float(c[1]), area, _polar(sig, c, 1.0))

    def pose(self, img: Arr) -> Pose:
        """The frame's pose relative to this template."""
        c, area, sig = _signature(img)
        scale = float(np.sqrt(area / self.area))
        p = _polar(sig, c, scale)
        spec = np.fft.rfft(p, axis=1) * np.conj(np.fft.rfft(self.polar, axis=1))
        corr = np.fft.irfft(spec.sum(axis=0), n=_ANGLES)
        j = int(np.argmax(corr))
        a, b, d = corr[(j - 1) % _ANGLES], corr[j], corr[(j + 1) % _ANGLES]
        den = a - 2 * b + d
        off = 0.5 * (a - d) / den if den != 0 else 0.0
        return Pose(float(c[0]), float(c[1]), scale, (j + off) * 2 * np.pi / _ANGLES)

    def warp(self, img: Arr, pose: Pose | None = None) -> Arr:
        """The frame resampled into the reference pose (float32, same size)."""
        p = pose if pose is not None else self.pose(img)
        return warp(img, p, (self.cx, self.cy))


def warp(img: Arr, pose: Pose, centre: tuple[float, float]) -> Arr:
    """Resample ``img`` so that its part lands at ``centre`` in the reference orientation."""
    x = np.asarray(img, np.float32)
    h, w = x.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    c, s = np.cos(pose.angle), np.sin(pose.angle)
    sx = pose.cx + pose.scale * (c * dx - s * dy)
    sy = pose.cy + pose.scale * (s * dx + c * dy)
    return np.stack(
        [ndimage.map_coordinates(x[..., k], [sy, sx], order=1, mode="nearest") for k in range(3)],
        axis=-1,
    )


def inside(pose: Pose, centre: tuple[float, float], size: int, margin: float = 3.0) -> Arr:
    """Which reference-pose pixels come from inside the frame (not from beyond its edge).

    A part near the frame's edge is cut off there; what ``warp`` fills in beyond the edge is
    not the part, so no statistic may be taken from it.
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    c, s = np.cos(pose.angle), np.sin(pose.angle)
    sx = pose.cx + pose.scale * (c * dx - s * dy)
    sy = pose.cy + pose.scale * (s * dx + c * dy)
    lo, hi = margin, size - 1 - margin
    return np.asarray((sx >= lo) & (sx <= hi) & (sy >= lo) & (sy <= hi), bool)


def unwarp(field: Arr, pose: Pose, centre: tuple[float, float]) -> Arr:
    """A map in the reference pose carried back onto the frame's own pixels (2-D)."""
    h, w = field.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = (xs - pose.cx) / pose.scale, (ys - pose.cy) / pose.scale
    c, s = np.cos(pose.angle), np.sin(pose.angle)
    rx = centre[0] + c * dx + s * dy
    ry = centre[1] - s * dx + c * dy
    return ndimage.map_coordinates(
        np.asarray(field, np.float32), [ry, rx], order=1, mode="constant"
    )
