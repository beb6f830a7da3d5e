"""Detection ablation on the synthetic line: which part of the variation model does what.

Usage: .venv/bin/python bench/model_ablation.py [--fit 250] [--test 600] [--tier standard]
Renders good frames per part type (camera resolution, resized to 224 px like the edge
worker), fits one variation model per part type, scores held-out frames once and reports,
side by side, the image AUROC per part type and family of: the ``blob`` map alone, the
``line`` map alone, the larger of the two before the image-level standardisation, and the
served score (both maps' image maxima standardised on held-out good frames). Bars: the
issue's detection bars on the served score (macro image AUROC ≥ 0.92, every family ≥ 0.85).
Prints one JSON object (bench/_common.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import bar, emit, host_info, make_report
from edge.model import evaluate as ev
from edge.model.dataset import synthetic
from edge.model.synthetic import DEFECT_FAMILIES, PART_TYPES
from edge.model.variation_set import VariationSet


def _variants(vs: VariationSet, images: np.ndarray, parts: list[str]) -> dict[str, np.ndarray]:
    blob, line, raw, served = [], [], [], []
    for img, part in zip(images, parts, strict=True):
        m = vs.models[part]
        s = m.score_one(img)
        unstd = s.peaks * m.a["peak_std"] + m.a["peak_mean"]  # before the image-level step
        blob.append(s.peaks[0])
        line.append(s.peaks[1])
        raw.append(unstd.max())
        served.append(s.score)
    return {
        "blob_only": np.array(blob),
        "line_only": np.array(line),
        "max_per_pixel_standardised": np.array(raw),
        "served": np.array(served),
    }


def run(n_fit: int, n_test: int, tier: str) -> dict[str, Any]:
    host = host_info()
    t0 = time.perf_counter()
    goods = synthetic(1, n_fit * len(PART_TYPES), 224, (), 0.0, desc="fit", render_size=448)
    test = synthetic(
        1_000_003, n_test, 224, DEFECT_FAMILIES, desc="test", render_size=448, tier=tier
    )
    vs = VariationSet.fit(goods.images, goods.labels, goods.parts, n_fit)
    variants = _variants(vs, test.images, test.parts)
    results: dict[str, Any] = {"tier": tier, "fit_frames_per_part": n_fit, "n_test": n_test}
    for name, scores in variants.items():
        q = ev.quality_scores(
            np.zeros(len(scores)), scores, test.labels, test.parts, (0.5, 1e9), None
        )
        results[name] = {
            "macro_image_auroc": round(q["macro"]["image_auroc"], 4),
            "macro_family_auroc": {k: round(v, 4) for k, v in q["macro"]["family_auroc"].items()},
            "per_part_image_auroc": {
                p: round(r["image_auroc"], 4) for p, r in q["per_part"].items()
            },
            "min_family_auroc_any_part": round(
                min(v for r in q["per_part"].values() for v in r["family_auroc"].values()), 4
            ),
        }
    results["seconds"] = round(time.perf_counter() - t0, 1)
    served = results["served"]
    bars = [
        bar("macro_image_auroc", served["macro_image_auroc"], ">=", 0.92),
        bar("min_macro_family_auroc", min(served["macro_family_auroc"].values()), ">=", 0.85),
    ]
    return make_report(results, bars, host=host)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fit", type=int, default=250, help="good frames per part type")
    ap.add_argument("--test", type=int, default=600)
    ap.add_argument("--tier", choices=("standard", "faint"), default="standard")
    a = ap.parse_args(argv)
    emit(run(a.fit, a.test, a.tier))
    return 0


if __name__ == "__main__":
    sys.exit(main())
