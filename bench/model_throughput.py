"""Model throughput: onnxruntime fp32 / int8 (batch 1 and best batch) vs Keras predict per image.

Usage: .venv/bin/python bench/model_throughput.py [--model var/models/demo] [--seconds 2]
Prints one JSON object (bench/_common.py). The int8 file is the build's when it was kept,
otherwise quantized here (calibrated on nominal synthetic frames) so the ratio is measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import bar, emit, host_info, make_report, spread
from edge.model import card as cardmod
from edge.model.dataset import synthetic
from edge.model.quantize import quantize, throughput


def _int8(model_dir: Path, card: cardmod.ModelCard, tmp: Path) -> Path:
    kept = model_dir / cardmod.INT8_NAME
    if kept.is_file():
        return kept
    spec = card.input_spec()
    nominal = synthetic(1, 32, spec.size, (), defect_fraction=0.0, desc="calibration")
    return quantize(
        model_dir / cardmod.FP32_NAME,
        tmp / "int8.onnx",
        np.concatenate(list(nominal.batches(spec, 32))),
    )


def _sweep(path: Path, size: int, batches: list[int], seconds: float) -> dict[int, float]:
    return {b: throughput(path, b, seconds, size) for b in batches}


def _keras_per_image(model_dir: Path, card: cardmod.ModelCard, n: int) -> float:
    """The TensorFlow-per-frame way: ``model.predict`` on one image at a time."""
    from edge.model.architecture import ModelConfig, build_model

    cfg = ModelConfig(
        input_size=card.input.size, class_names=card.class_names, patch_dim=card.patch_dim
    )
    model = build_model(cfg, model_dir / "model.weights.h5")
    spec = card.input_spec()
    frames = np.concatenate(list(synthetic(2, n, spec.size, ("scratch",)).batches(spec, n)))
    model.predict(frames[:1], verbose=0)
    t0 = time.perf_counter()
    for i in range(n):
        model.predict(frames[i : i + 1], verbose=0)
    return n / (time.perf_counter() - t0)


def run(model_dir: Path, seconds: float, batches: list[int], keras_n: int) -> dict[str, Any]:
    host = host_info()
    card = cardmod.load_card(model_dir)
    size = card.input.size
    with tempfile.TemporaryDirectory() as tmp:
        int8 = _int8(model_dir, card, Path(tmp))
        fp32 = _sweep(model_dir / cardmod.FP32_NAME, size, batches, seconds)
        q8 = _sweep(int8, size, batches, seconds)
        best = max(fp32, key=lambda b: fp32[b])
        trials = [
            throughput(model_dir / cardmod.FP32_NAME, best, seconds, size) for _ in range(2)
        ] + [fp32[best]]
    keras = _keras_per_image(model_dir, card, keras_n)
    served = q8 if card.serve == cardmod.INT8_NAME else fp32
    best8 = max(q8, key=lambda b: q8[b])
    int8_ratio = round(q8[best8] / fp32[best], 3)
    ort_ratio = round(max(served.values()) / keras, 2)
    results: dict[str, Any] = {
        "input_size": size,
        "serve": card.serve,
        "fp32_images_per_s": {str(b): round(v, 1) for b, v in fp32.items()},
        "int8_images_per_s": {str(b): round(v, 1) for b, v in q8.items()},
        "fp32_batch1": round(fp32[1], 1),
        "fp32_best": round(fp32[best], 1),
        "fp32_best_batch": best,
        "int8_batch1": round(q8[1], 1),
        "int8_best": round(q8[best8], 1),
        "int8_best_batch": best8,
        "keras_predict_per_image": round(keras, 2),
        "int8_vs_fp32": int8_ratio,
        "ort_vs_keras_per_image": ort_ratio,
        "fp32_trials_best_batch": [round(t, 1) for t in trials],
    }
    bars = [bar("ort_vs_keras_per_image", ort_ratio, ">=", 10.0)]
    if "avx512_vnni" in host["flags"] or "avx_vnni" in host["flags"]:
        bars.append(bar("int8_vs_fp32", int8_ratio, ">=", 1.8))
    else:
        results["int8_vs_fp32_bar"] = "not applied: no VNNI on this host"
    return make_report(results, bars, spread=spread(trials), host=host)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=Path("var/models/demo"))
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--keras-images", type=int, default=20, dest="keras_images")
    a = ap.parse_args(argv)
    batches = sorted({1, *(int(b) for b in a.batches.split(",") if b.strip())})
    emit(run(a.model, a.seconds, batches, a.keras_images))
    return 0


if __name__ == "__main__":
    sys.exit(main())
