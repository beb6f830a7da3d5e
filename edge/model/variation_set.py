"""The variation models of one build: one per part type (one camera sees one product).

Files sit beside the .onnx as ``variation_<part>.npz`` and the card lists them
(``card.variation``). A camera is scored by the model of its own part type: in evaluation
that is the frame's known part type; in the edge worker it is the camera's own model once
built from its good frames, and until then the build's model that fits the camera's first
frames best (:meth:`VariationSet.match`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.model.variation import VariationModel, descriptor

ALL = "all"  # the key of the one model of a build whose frames have no part types


def file_name(key: str) -> str:
    return f"variation_{re.sub(r'[^A-Za-z0-9_-]', '_', key)}.npz"


class VariationSet:
    """Variation models by part type."""

    def __init__(self, models: dict[str, VariationModel]) -> None:
        if not models:
            raise ValueError("a variation set needs at least one model")
        self.models = models

    @classmethod
    def fit(
        cls, images: np.ndarray, labels: Sequence[str], parts: Sequence[str], max_frames: int
    ) -> VariationSet:
        """One model per part type from that part type's good frames (at most ``max_frames``)."""
        lab, pt = np.asarray(labels), np.asarray(parts)
        keys = sorted(set(pt.tolist()))
        models = {}
        for key in tqdm(keys, desc="variation models", leave=False):
            idx = np.flatnonzero((lab == "good") & (pt == key))[:max_frames]
            models[ALL if key == "?" else key] = VariationModel.fit(images[idx])
        return cls(models)

    def key_for(self, part: str) -> str:
        if part in self.models:
            return part
        if len(self.models) == 1:
            return next(iter(self.models))
        raise KeyError(f"no variation model for part type {part!r}")

    def score(
        self, images: np.ndarray, parts: Sequence[str], want_descriptors: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores [N], descriptors [N, D] or [N, 0]) of each frame by its part's model."""
        scores = np.empty(len(images), np.float64)
        descs = []
        for i in tqdm(range(len(images)), desc="variation scores", leave=False):
            s = self.models[self.key_for(parts[i])].score_one(images[i], keep=want_descriptors)
            scores[i] = s.score
            if want_descriptors:
                descs.append(descriptor(s))
        return scores, np.array(descs, np.float32).reshape(len(images), -1)

    def match(self, images: np.ndarray) -> str:
        """The part type whose model explains these frames best (lowest median score)."""
        med = {k: float(np.median(m.scores(images))) for k, m in self.models.items()}
        return min(med, key=lambda k: med[k])

    def save(self, out: Path) -> dict[str, str]:
        names = {}
        for key, m in self.models.items():
            names[key] = file_name(key)
            m.save(out / names[key])
        return names

    @classmethod
    def load(cls, folder: Path, names: dict[str, str]) -> VariationSet:
        return cls({k: VariationModel.load(folder / v) for k, v in names.items()})
