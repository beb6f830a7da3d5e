"""Retrain from history: train a candidate on a history tree's ``train/`` split, then measure
it and the served model on the same ``heldout/`` split and write both figures in its card."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge.model import card as cardmod
from edge.model.build import config_for, run_build
from edge.model.dataset import DatasetError, load_folder
from edge.model.runtime import OnnxModel
from edge.model.tools import score_dataset

MANIFEST = "manifest.json"  # services/store/history_export.py writes it
FIGURES = ("image_auroc", "good_fpr", "recall", "family_auroc", "per_family_recall")


def history_figures(model_dir: Path, heldout: Path) -> dict[str, Any]:
    """The model's figures (its own thresholds) on the held-out history frames."""
    model = OnnxModel(model_dir)
    test = load_folder(heldout, model.card.input.size)
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
        data=str(tree / "train"),
    )
    cfg = replace(cfg, held_out=None, quantize=False)
    run_build(cfg, out, force=True)
    comparison = {
        "candidate": history_figures(out, tree / "heldout"),
        "served": history_figures(served, tree / "heldout"),
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
