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
from PIL import Image
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
    d = np.abs(x - backdrop(x))
    d = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2])  # max over channels, faster
    return np.asarray(ndimage.binary_opening(d > _FG_LEVEL), bool)


def _signature(img: Arr) -> tuple[Arr, float, Arr]:
    """(centroid, area, rotation signal): silhouette plus a little relative brightness."""
    mask = silhouette(img)
    if mask.sum() < 16:
        raise RegistrationError("no part in the frame (nothing differs from the backdrop)")
    ys, xs = np.nonzero(mask)
    x = np.asarray(img, np.float32)
    lum = (x[..., 0] + x[..., 1] + x[..., 2]) / 3.0
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


def _affine(pose: Pose, centre: tuple[float, float]) -> tuple[float, ...]:
    """(a, b, ox, d, e, oy): reference pixel (x, y) samples the frame at
    (a·x + b·y + ox, d·x + e·y + oy), pixel centres at integer coordinates."""
    c, s, k = np.cos(pose.angle), np.sin(pose.angle), pose.scale
    ox = pose.cx - k * (c * centre[0] - s * centre[1])
    oy = pose.cy - k * (s * centre[0] + c * centre[1])
    return k * c, -k * s, ox, k * s, k * c, oy


def warp(img: Arr, pose: Pose, centre: tuple[float, float]) -> Arr:
    """Resample ``img`` so that its part lands at ``centre`` in the reference orientation.

    Bilinear, with the frame's edge pixels repeated beyond it (what
    ``ndimage.map_coordinates(order=1, mode="nearest")`` computes, to float rounding), done
    by Pillow's affine transform of each channel on a frame padded just far enough: about
    3× faster than sampling a coordinate grid.
    """
    x = np.asarray(img, np.float32)
    h, w = x.shape[:2]
    a, b, ox, d, e, oy = _affine(pose, centre)
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    sx = a * corners[:, 0] + b * corners[:, 1] + ox
    sy = d * corners[:, 0] + e * corners[:, 1] + oy
    over = max(0.0, -sx.min(), -sy.min(), sx.max() - (w - 1), sy.max() - (h - 1))
    pad = int(np.ceil(over)) + 2
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    # Pillow samples output pixel centres (x + 0.5) in continuous coordinates and its
    # bilinear filter takes input pixel centres at (i + 0.5): shift the offsets to match.
    data = (
        a,
        b,
        ox + pad + 0.5 - 0.5 * (a + b),
        d,
        e,
        oy + pad + 0.5 - 0.5 * (d + e),
    )
    return np.stack([_bilinear(padded[..., k], data, (w, h)) for k in range(3)], axis=-1)


def _bilinear(
    channel: Arr, coeffs: tuple[float, float, float, float, float, float], size: tuple[int, int]
) -> Arr:
    """Pillow's bilinear affine resampling of one float channel (0 beyond its edge)."""
    img = Image.fromarray(np.ascontiguousarray(channel, np.float32), mode="F")
    return np.asarray(
        img.transform(size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR), np.float32
    )


def inside(pose: Pose, centre: tuple[float, float], size: int, margin: float = 3.0) -> Arr:
    """Which reference-pose pixels come from inside the frame (not from beyond its edge).

    A part near the frame's edge is cut off there; what ``warp`` fills in beyond the edge is
    not the part, so no statistic may be taken from it.
    """
    a, b, ox, d, e, oy = _affine(pose, centre)
    r = np.arange(size, dtype=np.float32)
    sx = a * r[None, :] + (b * r + ox)[:, None]
    sy = d * r[None, :] + (e * r + oy)[:, None]
    lo, hi = margin, size - 1 - margin
    return np.asarray((sx >= lo) & (sx <= hi) & (sy >= lo) & (sy <= hi), bool)


def unwarp(field: Arr, pose: Pose, centre: tuple[float, float]) -> Arr:
    """A map in the reference pose carried back onto the frame's own pixels (2-D, bilinear,
    0 where the frame pixel comes from beyond the map): the inverse of :func:`warp`."""
    h, w = field.shape
    c, s, k = np.cos(pose.angle), np.sin(pose.angle), pose.scale
    # frame pixel (x, y) -> reference (a·x + b·y + ox, d·x + e·y + oy)
    a, b, d, e = c / k, s / k, -s / k, c / k
    ox = centre[0] - (a * pose.cx + b * pose.cy)
    oy = centre[1] - (d * pose.cx + e * pose.cy)
    coeffs = (a, b, ox + 0.5 - 0.5 * (a + b), d, e, oy + 0.5 - 0.5 * (d + e))
    return _bilinear(np.asarray(field, np.float32), coeffs, (w, h))
