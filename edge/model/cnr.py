"""Contrast-to-noise ratio of a defect on a rendered frame, and the amplitude that reaches one.

CNR = |mean inside − mean of a ring around it| / std of that ring, per colour channel, the
largest channel counting (a colour shift is as visible as a brightness step). The ring
starts ``gap`` pixels outside the defect region, is ``width`` pixels wide and only covers
the part's surface (the backdrop and the part's own edges are not "around the defect").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Arr = np.ndarray


def ring(region: Arr, surface: Arr, size: int) -> Arr:
    """Boolean ring around ``region`` on ``surface``; widths scale with the image (224 px = 1)."""
    s = size / 224.0
    gap, width = max(1.0, 2.0 * s), max(3.0, 6.0 * s)
    d = ndimage.distance_transform_edt(~region)
    out = (d > gap) & (d <= gap + width) & surface & ~region
    if out.sum() < 8:  # a region hugging the part edge: take the surface nearby instead
        out = (d > 0) & (d <= gap + 3 * width) & surface & ~region
    return np.asarray(out, bool)


def cnr(image: Arr, region: Arr, around: Arr, expected: Arr | None = None) -> float:
    """CNR of ``region`` against ``around`` on an [H, W, 3] image (any scale).

    ``expected``: the per-channel mean the region would have on a good part (for an absent
    feature, whose pixels look like the surface around them): the contrast is then the
    change from what should be there, over the same ring's noise.
    """
    img = np.asarray(image, np.float64)
    if not region.any() or not around.any():
        return 0.0
    inside = img[region].mean(axis=0)
    ref = img[around].mean(axis=0) if expected is None else np.asarray(expected, np.float64)
    std = img[around].std(axis=0) + 1e-6
    return float(np.max(np.abs(inside - ref) / std))


def amplitude_for(
    base: Arr, delta: Arr, region: Arr, around: Arr, target: float, k_max: float = 60.0
) -> float:
    """Smallest k ≥ 0 such that ``base + k·delta`` has CNR ``target`` (closed form per k).

    ``base`` is the frame without the defect (noise included) and ``delta`` the defect's
    unit-amplitude contribution, both [H, W, 3] floats. Means and the ring's variance are
    linear / quadratic in k, so the CNR curve is evaluated on a fine grid at once. When no k
    up to ``k_max`` reaches the target, the k of the highest CNR is returned.
    """
    a_in, d_in = base[region].mean(0), delta[region].mean(0)
    br, dr = base[around], delta[around]
    a_r, d_r = br.mean(0), dr.mean(0)
    va, vd = br.var(0), dr.var(0)
    cov = ((br - a_r) * (dr - d_r)).mean(0)
    k = np.geomspace(1e-3, k_max, 4000)[:, None]
    num = np.abs((a_in - a_r)[None] + k * (d_in - d_r)[None])
    den = np.sqrt(np.maximum(va[None] + 2 * k * cov[None] + k**2 * vd[None], 1e-12))
    curve = (num / den).max(axis=1)
    hit = np.flatnonzero(curve >= target)
    return float(k[hit[0], 0] if len(hit) else k[int(np.argmax(curve)), 0])
