"""Retrain from history: train a candidate on a history tree's ``train/`` split, then measure
it and the served model on the same ``heldout/`` split and write both figures in its card."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.model import card as cardmod
from edge.model.build import config_for, run_build
from edge.model.dataset import Dataset, DatasetError
from edge.model.runtime import OnnxModel
from edge.model.tools import score_dataset
from edge.model.variation_set import VariationSet
from edge.preprocess import PreprocessError, decode_image, resize

MANIFEST = "manifest.json"  # services/store/history_export.py writes it
FIGURES = ("image_auroc", "good_fpr", "recall", "family_auroc", "per_family_recall")
MATCH_FRAMES = 16  # good frames of a camera that choose its part type's variation model


def load_split(tree: Path, split: str, size: int, manifest: dict[str, Any]) -> Dataset:
    """One split of the tree at ``size``, each frame's ``part`` being its camera stream."""
    imgs, labels, parts = [], [], []
    recs = manifest[split]
    for label in sorted(recs, key=lambda x: (x != "good", x)):
        for name in sorted(recs[label]["files"]):
            path = tree / split / label / name
            try:
                img = decode_image(path.read_bytes())
            except (OSError, PreprocessError) as exc:
                raise DatasetError(f"history image {path}: {exc}") from None
            imgs.append(np.asarray(resize(img, size), np.uint8))
            labels.append(label)
            parts.append(recs[label]["streams"][name])
    if not imgs:
        raise DatasetError(f"history tree {tree} has no {split} frames")
    return Dataset(np.stack(imgs), labels, parts)


def _by_part_type(model: OnnxModel, test: Dataset, reference: Dataset) -> Dataset:
    """For a model with one variation model per part type: each camera scored by the one
    its good frames fit best (older frames first), as the edge worker chooses it."""
    card = model.card
    if len(card.variation) <= 1:
        return test
    vs = VariationSet.load(model.path.parent, card.variation)
    chosen = {}
    for stream in sorted(set(test.parts)):
        own = [i for i, (p, lab) in enumerate(zip(reference.parts, reference.labels, strict=True))
               if p == stream and lab == "good"]  # fmt: skip
        ref = reference if own else test
        if not own:
            own = [i for i, p in enumerate(test.parts) if p == stream]
        chosen[stream] = vs.match(ref.images[own[:MATCH_FRAMES]])
    return Dataset(test.images, test.labels, [chosen[p] for p in test.parts])


def history_figures(model_dir: Path, tree: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The model's figures (its own thresholds) on the held-out history frames."""
    model = OnnxModel(model_dir)
    size = model.card.input.size
    test = load_split(tree, "heldout", size, manifest)
    test = _by_part_type(model, test, load_split(tree, "train", size, manifest))
    res = score_dataset(model, test, None)
    out = {k: res.get(k) for k in FIGURES}
    out["n_frames"] = res["n_test"]
    out["n_good"] = res["n_good"]
    return out


def _served_info(served: Path) -> dict[str, Any]:
    card_path = served / cardmod.CARD_NAME
    card = cardmod.load_card(card_path)
    return {
        "path": str(served),
        "name": card.name,
        "card_sha256": cardmod.sha256_file(card_path),
        "size": card.input.size,
    }


def retrain(
    tree: Path,
    served: Path,
    out: Path,
    *,
    profile: str = "quick",
    epochs: int | None = None,
    name: str | None = None,
    size: int | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """Build the candidate into ``out`` from ``tree/train`` (at ``size``, default the served
    model's input size) and write the held-out comparison into its card; returns the card."""
    manifest = json.loads((tree / MANIFEST).read_text(encoding="utf-8"))
    info = _served_info(served)
    if not (tree / "heldout").is_dir():
        raise DatasetError(f"history tree {tree} has no heldout/ split")
    cfg = config_for(
        profile,
        name=name or f"history-{out.name}",
        size=size or info["size"],
        epochs=epochs,
        weights=weights,
        data=str(tree / "train"),
    )
    cfg = replace(cfg, held_out=None, quantize=False)
    run_build(cfg, out, force=True)
    comparison = {
        "candidate": history_figures(out, tree, manifest),
        "served": history_figures(served, tree, manifest),
        "served_model": info,
        "rule": "edge/model/promote.py worse_families (docs/model.md, Retraining from history)",
    }
    trained_on = {
        k: manifest[k]
        for k in ("selection", "held_out_fraction", "families", "left_out_families", "streams")
    }
    for split in ("train", "heldout"):
        trained_on[split] = {
            label: {"count": rec["count"], "first": rec["first"], "last": rec["last"]}
            for label, rec in manifest[split].items()
        }
    card = cardmod.load_card(out)
    card = card.model_copy(
        update={
            "metrics": {**card.metrics, "history": comparison},
            "recipe": {**card.recipe, "history": trained_on},
        }
    )
    cardmod.save_card(card, out / cardmod.CARD_NAME)
    return card.model_dump(mode="json")
