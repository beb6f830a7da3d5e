"""Per-camera variation model: a good part's expected look at every pixel, and where a frame
departs from it (pure numpy; fitted on a camera's own good frames, no labels).

Each frame is registered to the camera's reference pose (:mod:`edge.model.register`),
divided by the per-pixel mean of the good parts, relieved of its lighting (a plane fitted
per channel) and split into brightness and two colour-difference channels, each divided by
its per-pixel spread over the good parts (z-scores). Two anomaly maps follow: ``blob``
(local energy of all three z channels: stains, dents, colour changes, absent features) and
``line`` (oriented line responses of the brightness z: scratches, cracks). Each map is
standardised per pixel by its own good-part statistics and their maximum is the anomaly map
(reference pose, model-input pixels); its maximum over the part is the image score.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from edge.model.register import Pose, RegistrationError, Template, inside, unwarp

Arr = np.ndarray
MAPS = ("blob", "line")
_LINE_LEN, _ORIENTS, _SURROUND = 9, 8, 3.0
_STD_FLOOR = np.array([0.01, 0.005, 0.005], np.float32)


def _fit_count(n: int) -> int:
    """Frames that fit the pixel statistics; the rest (≥ 4) calibrate the image scores."""
    return max(4, n - max(4, int(0.4 * n)))


def _line_kernels(size: int) -> Arr:
    """FFTs of oriented line means minus a Gaussian surround, one per orientation."""
    out = []
    c = _LINE_LEN // 2 + 1
    for a in np.arange(_ORIENTS) * np.pi / _ORIENTS:
        k = np.zeros((size, size), np.float32)
        for t in np.linspace(-(_LINE_LEN - 1) / 2, (_LINE_LEN - 1) / 2, 4 * _LINE_LEN):
            k[round(float(c + t * np.sin(a))) - c, round(float(c + t * np.cos(a))) - c] = 1.0
        k /= k.sum()
        delta = np.zeros((size, size), np.float32)
        delta[0, 0] = 1.0
        k -= ndimage.gaussian_filter(delta, _SURROUND, mode="wrap")
        out.append(np.fft.rfft2(k))
    return np.stack(out).astype(np.complex64)


@dataclass
class Scored:
    """One frame's result: image score, anomaly map (reference pose), pose, z residual."""

    score: float
    amap: Arr
    pose: Pose | None
    z: Arr | None
    peaks: Arr  # each map's standardised image score (MAPS order)


class VariationModel:
    """Fitted statistics of one camera's good parts (see the module docstring)."""

    def __init__(self, arrays: dict[str, Arr]) -> None:
        self.a = arrays
        t = arrays["template"]
        self.template = Template(float(t[0]), float(t[1]), float(t[2]), arrays["template_polar"])
        size = int(arrays["mean"].shape[0])
        self.size = size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
        self._plane = np.stack([np.ones_like(xs), xs, ys], -1)
        self._kernels = _line_kernels(size)
        # The lighting plane's least-squares fit over the fit mask, solved once: coef = P·b.
        self._solve = np.linalg.pinv(self._plane[arrays["fit_mask"]].astype(np.float64))
        self._inv_mean = 1.0 / np.maximum(arrays["mean"], 8.0).astype(np.float32)

    # ---- fitting -----------------------------------------------------------------------
    @classmethod
    def fit(cls, goods: Arr, reference: int = 0) -> VariationModel:
        """Fit on good frames [N, S, S, 3] (uint8 or float, model-input size)."""
        imgs = np.asarray(goods, np.float32)
        if len(imgs) < 8:
            raise ValueError(f"a variation model needs at least 8 good frames, got {len(imgs)}")
        tmpl = Template.of(imgs[reference])
        aligned = np.stack([tmpl.warp(x) for x in imgs])
        tmpl = Template.of(aligned.mean(0))  # the mean part is a steadier reference
        poses = [tmpl.pose(x) for x in imgs]
        aligned = np.stack([tmpl.warp(x, p) for x, p in zip(imgs, poses, strict=True)])
        k = _fit_count(len(aligned))
        held = list(zip(aligned[k:], poses[k:], strict=True))  # calibrate image scores
        aligned = aligned[:k]
        mean = aligned.mean(0)
        d = np.abs(mean - np.median(np.concatenate([mean[:4], mean[-4:]]).reshape(-1, 3), 0))
        part = d.max(-1) > 25.0
        arrays = {
            "template": np.array([tmpl.cx, tmpl.cy, tmpl.area], np.float64),
            "template_polar": tmpl.polar,
            "mean": mean,
            "fit_mask": ndimage.binary_erosion(part, iterations=2),
            "score_mask": ndimage.binary_dilation(part, iterations=3),
            "std": np.ones(mean.shape, np.float32),
        }
        model = cls(arrays)
        res = np.stack([model._residual(a) for a in aligned])
        model.a["std"] = np.sqrt((res**2).mean(0)) + _STD_FLOOR
        maps = np.stack([model._maps(r / model.a["std"]) for r in res])  # [N, 2, S, S]
        model.a["map_mean"] = maps.mean(0)
        model.a["map_std"] = maps.std(0) + 0.01 * maps.std() + 1e-6
        peaks = np.stack([model._valid_maps(model._z(a), p).reshape(2, -1).max(1) for a, p in held])
        model.a["peak_mean"] = peaks.mean(0)
        model.a["peak_std"] = peaks.std(0) + 1e-3
        return model

    # ---- scoring -----------------------------------------------------------------------
    def _residual(self, aligned: Arr) -> Arr:
        """Relative deviation from the mean part, lighting plane removed; (L, R−G, B−G)."""
        ratio = aligned * self._inv_mean
        coef = (self._solve @ ratio[self.a["fit_mask"]]).astype(np.float32)  # plane per channel
        rel = ratio / np.maximum(self._plane @ coef, 1e-3) - 1.0
        lum = (rel[..., 0] + rel[..., 1] + rel[..., 2]) / 3.0
        return np.stack([lum, rel[..., 0] - rel[..., 1], rel[..., 2] - rel[..., 1]], -1)

    def _maps(self, z: Arr) -> Arr:
        blob = ndimage.gaussian_filter(z[..., 0] ** 2 + z[..., 1] ** 2 + z[..., 2] ** 2, 1.0)
        f = sfft.rfft2(np.asarray(z[..., 0], np.float32))
        lines = sfft.irfft2(f[None] * self._kernels, s=z.shape[:2], axes=(-2, -1))
        return np.stack([blob, np.abs(lines).max(0)]).astype(np.float32)

    def score_one(self, img: Arr, keep: bool = False) -> Scored:
        """Score one frame (model-input size); a frame with no part scores +inf."""
        try:
            pose = self.template.pose(np.asarray(img, np.float32))
        except RegistrationError:
            empty = np.zeros((self.size, self.size), np.float32)
            return Scored(float("inf"), empty, None, None, np.full(len(MAPS), np.inf))
        z = self._z(self.template.warp(img, pose))
        per = (self._valid_maps(z, pose) - self.a["peak_mean"][:, None, None]) / self.a["peak_std"][
            :, None, None
        ]
        amap = per.max(0).astype(np.float32)
        return Scored(float(amap.max()), amap, pose, z if keep else None, per.reshape(2, -1).max(1))

    def _z(self, aligned: Arr) -> Arr:
        return self._residual(aligned) / self.a["std"]

    def _valid_maps(self, z: Arr, pose: Pose) -> Arr:
        """Standardised maps, floored where the reference pose falls beyond the frame's edge."""
        norm = self._norm_maps(z)
        valid = inside(pose, (self.template.cx, self.template.cy), self.size)
        return np.where(valid[None], norm, np.float32(-1e3))

    def _norm_maps(self, z: Arr) -> Arr:
        """Each map standardised per pixel by the good parts, zero off the part."""
        norm = (self._maps(z) - self.a["map_mean"]) / self.a["map_std"]
        return np.where(self.a["score_mask"][None], norm, -1e3).astype(np.float32)

    def scores(self, imgs: Arr) -> Arr:
        return np.array([self.score_one(x).score for x in imgs], np.float64)

    def frame_map(self, scored: Scored) -> Arr:
        """The anomaly map carried back onto the frame's own pixels (for the evidence)."""
        if scored.pose is None:
            return scored.amap
        t = self.template
        return unwarp(scored.amap, scored.pose, (t.cx, t.cy))

    # ---- files -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, **self.a)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> VariationModel:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls({k: z[k] for k in z.files})

    def save(self, path: Path) -> None:
        path.write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Path) -> VariationModel:
        return cls.from_bytes(path.read_bytes())


DESCRIPTOR_NAMES = (
    "blob_peak",
    "line_peak",
    "log_area",
    "elongation",
    "z_brightness",
    "z_red_green",
    "z_blue_green",
    "chroma_vs_brightness",
    "bright_fraction",
    "z_spread",
    "z_brighter",
    "z_darker",
    "fill",
    "log_spots",
    "peak_brightness",
    "peak_chroma",
    "halo",
)


def _slog(x: Arr | float) -> Arr:
    return np.sign(x) * np.log1p(np.abs(x))


def descriptor(scored: Scored) -> Arr:
    """What the anomaly looks like, for grouping into defect families (``DESCRIPTOR_NAMES``).

    The region is the connected part of the anomaly map above half its peak around the
    peak; it is described by which map found it, its size, elongation and fill of its box,
    its brightness and colour change (z, signed and split into brighter / darker), the
    values at the peak, how many separate spots the frame has and how far the anomaly's
    halo reaches. Needs ``score_one(..., keep=True)``; zeros when nothing was seen.
    """
    out = np.zeros(len(DESCRIPTOR_NAMES), np.float32)
    if scored.z is None or not np.isfinite(scored.score):
        return out
    amap, z = scored.amap, scored.z
    peak = float(amap.max())
    labels, _ = ndimage.label(amap >= max(0.5 * peak, peak - 3.0))
    at = np.unravel_index(int(np.argmax(amap)), amap.shape)
    region = labels == labels[at]
    ys, xs = np.nonzero(region)
    elong = 0.0
    if len(xs) >= 3:
        ev = np.sort(np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(np.float64))))
        elong = 0.5 * np.log((ev[1] + 0.25) / (ev[0] + 0.25))
    zr = z[region]
    lum, chroma = zr[:, 0], np.hypot(zr[:, 1], zr[:, 2])
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    wide, _ = ndimage.label(amap >= 0.25 * peak)
    out[:] = [
        _slog(scored.peaks[0]),
        _slog(scored.peaks[1]),
        np.log1p(region.sum()),
        elong,
        *(_slog(zr.mean(0))),
        np.log1p(chroma.mean()) - np.log1p(np.abs(lum).mean()),
        (lum > 0).mean(),
        np.log1p(lum.std()),
        _slog(np.clip(lum, 0, None).mean()),
        _slog(np.clip(lum, None, 0).mean()),
        region.sum() / box,
        np.log1p(ndimage.label(amap >= 2.0)[1]),
        _slog(z[at][0]),
        np.log1p(np.hypot(z[at][1], z[at][2])),
        np.log1p((wide == wide[at]).sum()) - np.log1p(region.sum()),
    ]
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
