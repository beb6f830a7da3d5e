"""The eval, export and quantize commands on an already built model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.model import card as cardmod
from edge.model import evaluate as ev
from edge.model.dataset import Dataset, load_tree, synthetic
from edge.model.families import FamilyProjection
from edge.model.runtime import OnnxModel
from edge.model.synthetic import DEFECT_FAMILIES
from edge.model.variation_set import VariationSet

KERAS_WEIGHTS = "model.weights.h5"


def _test_set(
    card: cardmod.ModelCard, data: Path | None, n_test: int, tier: str = "standard"
) -> Dataset:
    size = card.input.size
    cfg = card.recipe.get("config", {})
    if data is not None:
        return load_tree(data, size, 0.2, int(cfg.get("seed", 1)))[1]
    seed = int(cfg.get("test_seed", 1_000_003)) + (1 if tier == "faint" else 0)
    return synthetic(
        seed,
        n_test,
        size,
        DEFECT_FAMILIES,
        desc=f"render test ({tier})",
        render_size=int(cfg.get("render_size", size)),
        tier=tier,
    )


def score_dataset(model: OnnxModel, test: Dataset, held: str | None) -> dict[str, Any]:
    """Every eval figure of ``model`` on a labelled set, with its card's thresholds."""
    card = model.card
    out = ev.infer(model.run, test, model.input_spec, desc=f"eval {model.path.name}")
    if not card.defect_head:
        out["defect_score"] = np.zeros_like(out["defect_score"])
    th = (card.thresholds.defect, card.thresholds.novelty)
    if not card.variation:
        res = ev.quality(out, test.labels, model.load_bank(), th, held)
    else:
        vs = VariationSet.load(model.path.parent, card.variation)
        nov, desc = vs.score(test.images, test.parts, want_descriptors=True)
        desc = desc[np.array(test.labels) != "good"]
        parts = test.parts if set(test.parts) != {"?"} else None
        if card.families:
            desc = FamilyProjection.load(model.path.parent / card.families)(desc)
        res = ev.quality_scores(out["defect_score"], nov, test.labels, parts, th, held, desc)
    res["class_accuracy"] = ev.class_accuracy(out, test.labels, card.class_names)
    return res


def evaluate_model(model_dir: Path, data: Path | None, n_test: int) -> dict[str, Any]:
    """Quality of the served model on held-out data, with the card's thresholds and models.

    On the synthetic line both tiers are measured: ``standard`` (the top-level figures, the
    bars) and ``faint`` (reported under ``faint``).
    """
    model = OnnxModel(model_dir)
    card = model.card
    held = card.held_out_family if data is None else None
    test = _test_set(card, data, n_test)
    res = score_dataset(model, test, held)
    if data is None and card.variation:
        res["faint"] = score_dataset(model, _test_set(card, None, n_test, "faint"), held)
    res["model"] = str(model.path)
    other = model.path.parent / (
        cardmod.FP32_NAME if model.path.name == cardmod.INT8_NAME else cardmod.INT8_NAME
    )
    if other.is_file():
        alt = OnnxModel(other)
        k = min(64, len(test))
        x = np.concatenate(list(test.subset(range(k)).batches(model.input_spec, 64)))
        res["fp32_int8_parity"] = ev.parity(model.run(x), alt.run(x))
    return res


def summary(res: dict[str, Any]) -> str:
    macro = res.get("macro") or {}
    head = [f"macro {k:16s} {macro.get(k)}" for k in ("image_auroc", "min_family_auroc")]
    keys = (
        "image_auroc",
        "novelty_auroc",
        "family_ari",
        "good_fpr",
        "head_auroc",
        "novelty_image_auroc",
        "class_accuracy",
    )
    lines = head + [f"{k:22s} {res.get(k)}" for k in keys]
    lines += [f"recall {f:15s} {r:.3f}" for f, r in res.get("per_family_recall", {}).items()]
    return "\n".join(lines)


def export_model(model_dir: Path, weights: Path | None, out: Path) -> str:
    """Rebuild the Keras network the card describes, load weights, export to ONNX."""
    from edge.model.architecture import ModelConfig, build_model
    from edge.model.export import export_keras

    card = cardmod.load_card(model_dir)
    mcfg = ModelConfig(
        input_size=card.input.size, class_names=card.class_names, patch_dim=card.patch_dim
    )
    model = build_model(mcfg, weights or model_dir / KERAS_WEIGHTS)
    export_keras(model, out)
    return f"wrote {out}"


def _decision_quality(
    card: cardmod.ModelCard,
    model_dir: Path,
    out: dict[str, np.ndarray],
    test: Dataset,
    bank: np.ndarray,
) -> dict[str, Any]:
    """Held-out figures as the worker decides: its novelty score, the head only when on."""
    th = (card.thresholds.defect, card.thresholds.novelty)
    if not card.variation:
        return ev.quality(out, test.labels, bank, th, card.held_out_family)
    nov, _ = VariationSet.load(model_dir, card.variation).score(test.images, test.parts)
    d = out["defect_score"] if card.defect_head else np.zeros_like(out["defect_score"])
    return ev.quality_scores(d, nov, test.labels, None, th, card.held_out_family)


def quantize_model(model_dir: Path, n_test: int) -> dict[str, Any]:
    """int8 copy of <model_dir>/model.onnx; kept (and served) only if faster and accurate."""
    from edge.model.pipeline import decide_int8, int8_agreement
    from edge.model.quantize import quantize, throughput

    card = cardmod.load_card(model_dir)
    fp32, int8 = model_dir / cardmod.FP32_NAME, model_dir / cardmod.INT8_NAME
    spec = card.input_spec()
    seed = int(card.recipe.get("config", {}).get("seed", 1))
    render = int(card.recipe.get("config", {}).get("render_size", spec.size))
    nominal = synthetic(
        seed, 64, spec.size, (), defect_fraction=0.0, desc="calibration", render_size=render
    )
    quantize(fp32, int8, np.concatenate(list(nominal.batches(spec, 64))))
    ips = {p.name: throughput(p, 8, 2.0, spec.size) for p in (fp32, int8)}
    test = _test_set(card, None, n_test)
    bank = OnnxModel(fp32, verify=False).load_bank()
    outs = {p.name: ev.infer(OnnxModel(p, verify=False).run, test, spec) for p in (fp32, int8)}
    q = {name: _decision_quality(card, model_dir, out, test, bank) for name, out in outs.items()}
    agree = int8_agreement(
        q[fp32.name],
        q[int8.name],
        outs[fp32.name]["patch_features"],
        outs[int8.name]["patch_features"],
        bank,
    )
    speedup = ips[int8.name] / ips[fp32.name]
    par = ev.parity(outs[fp32.name], outs[int8.name])
    kept, reason = decide_int8(speedup, agree)
    info = {
        "kept": kept,
        "reason": reason,
        "parity": par,
        "fp32_images_per_s": ips[fp32.name],
        "int8_images_per_s": ips[int8.name],
        "speedup": speedup,
        **agree,
        "image_auroc_fp32": q[fp32.name]["image_auroc"],
        "image_auroc_int8": q[int8.name]["image_auroc"],
    }
    if not kept:
        int8.unlink()
    files = {
        p.name: cardmod.file_info(p)
        for p in sorted(model_dir.iterdir())
        if p.is_file() and p.name != cardmod.CARD_NAME
    }
    new = card.model_copy(
        update={"serve": int8.name if kept else fp32.name, "quantization": info, "files": files}
    )
    cardmod.save_card(new, model_dir / cardmod.CARD_NAME)
    return info
