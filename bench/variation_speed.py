"""Per-frame CPU cost of the variation model (what the edge worker adds to onnxruntime).

Usage: .venv/bin/python bench/variation_speed.py [--frames 40] [--fit 40]
Fits one variation model per part type on rendered good frames (448 px resized to 224, as
the edge worker sees them), then times, one frame at a time on one thread: the whole
``score_one(keep=True)`` + ``descriptor`` (what the worker runs per frame), and its pieces
(pose, warp, maps). Side by side in the same run, the warp it replaced (a coordinate grid
sampled with ``ndimage.map_coordinates``, three channels) so the ratio holds on any host.
Prints one JSON object (bench/_common.py); no bar (the pipeline bars live in
bench/pipeline.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit, host_info, make_report
from edge.model.dataset import synthetic
from edge.model.register import Pose, warp
from edge.model.synthetic import DEFECT_FAMILIES, PART_TYPES
from edge.model.variation import VariationModel, descriptor
from edge.model.variation_set import VariationSet


def _grid_warp(img: np.ndarray, pose: Pose, centre: tuple[float, float]) -> np.ndarray:
    """The warp before this bench existed: a sampled coordinate grid per channel."""
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    c, s = np.cos(pose.angle), np.sin(pose.angle)
    sx = pose.cx + pose.scale * (c * dx - s * dy)
    sy = pose.cy + pose.scale * (s * dx + c * dy)
    return np.stack(
        [ndimage.map_coordinates(img[..., k], [sy, sx], order=1, mode="nearest") for k in range(3)],
        -1,
    )


def _ms(fn: Callable[[int], Any], n: int) -> float:
    """Mean milliseconds of ``fn(i)`` over frames ``0 … n−1`` (after one warm-up call)."""
    fn(0)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n * 1000.0


def _part_times(m: VariationModel, images: np.ndarray) -> dict[str, float]:
    frames = images.astype(np.float32)
    t = m.template
    centre = (t.cx, t.cy)
    poses = [t.pose(f) for f in frames]
    aligned = [warp(f, p, centre) for f, p in zip(frames, poses, strict=True)]
    n = len(frames)
    return {
        "frames": n,
        "score_and_descriptor_ms": _ms(lambda i: descriptor(m.score_one(frames[i], keep=True)), n),
        "pose_ms": _ms(lambda i: t.pose(frames[i]), n),
        "warp_ms": _ms(lambda i: warp(frames[i], poses[i], centre), n),
        "grid_warp_ms": _ms(lambda i: _grid_warp(frames[i], poses[i], centre), n),
        "z_and_maps_ms": _ms(lambda i: m._maps(m._z(aligned[i])), n),
    }


def run(n_frames: int, n_fit: int) -> dict[str, Any]:
    host = host_info()
    goods = synthetic(5, n_fit * len(PART_TYPES), 224, (), 0.0, desc="fit", render_size=448)
    vs = VariationSet.fit(goods.images, goods.labels, goods.parts, n_fit)
    test = synthetic(6, n_frames, 224, DEFECT_FAMILIES, 0.3, render_size=448, desc="test")
    per_part = {
        part: _part_times(vs.models[part], test.images[np.asarray(test.parts) == part])
        for part in sorted(set(test.parts))
    }
    keys = next(iter(per_part.values())).keys() - {"frames"}
    mean = {k: round(float(np.mean([p[k] for p in per_part.values()])), 2) for k in keys}
    results = {
        "input_size": 224,
        "per_part": {p: {k: round(v, 2) for k, v in r.items()} for p, r in per_part.items()},
        "mean": mean,
        "grid_warp_vs_warp": round(mean["grid_warp_ms"] / max(mean["warp_ms"], 1e-9), 2),
        "threads": 1,
    }
    return make_report(results, [], host=host)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--fit", type=int, default=40, help="good frames per part type")
    a = ap.parse_args(argv)
    emit(run(a.frames, a.fit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
