"""Synthetic-line anomalies for `linewatch cluster eval --dataset synthetic` (CLI path only).

This is the one clustering module that imports ``edge`` (DESIGN.md §2 allows it for the CLI):
it renders defective parts with the synthetic line, runs them through the demo model and
computes the exact family descriptor the edge worker publishes in its features message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.model.families import FamilyProjection
from edge.model.novelty import family_descriptor
from edge.model.runtime import ModelLoadError, OnnxModel
from edge.model.synthetic import DEFECT_FAMILIES, iter_samples
from edge.model.variation_set import VariationSet
from edge.preprocess import preprocess_images, resize
from services.clustering.eval import Dataset

BATCH = 32


def dataset(model_dir: Path, n: int = 500, seed: int = 7, late_from: float = 1 / 3) -> Dataset:
    """``n`` defective parts in stream order, their descriptors and true defect families.

    The model's held-out family (never seen in training; the first family when the card
    names none) only starts after ``late_from`` of the stream: the mid-stream new family.
    """
    try:
        model = OnnxModel(model_dir)
    except ModelLoadError as exc:
        raise RuntimeError(str(exc)) from None
    bank = model.load_bank()
    late = model.card.held_out_family or DEFECT_FAMILIES[0]
    known = tuple(f for f in DEFECT_FAMILIES if f != late)
    start = int(n * late_from)
    images, labels, parts = [], [], []
    for i in range(n):
        fams = known if i < start else DEFECT_FAMILIES
        sample = next(iter_samples(seed, 1, families=fams, defect_fraction=1.0, start=i))
        images.append(sample.image)
        labels.append(sample.label)
        parts.append(sample.part_type)
    vecs = []
    card = model.card
    if card.variation:  # what the edge worker publishes: the camera's variation descriptor
        vs = VariationSet.load(model.path.parent, card.variation)
        proj = FamilyProjection.load(model.path.parent / card.families) if card.families else None
        size = model.input_spec.size
        px = np.stack([np.asarray(resize(im, size), np.uint8) for im in images])
        _, desc = vs.score(px, parts, want_descriptors=True)
        vecs.append(proj(desc) if proj is not None else desc)
    else:
        for s in range(0, n, BATCH):
            outputs = model.run(preprocess_images(images[s : s + BATCH], model.input_spec))
            vecs.append(family_descriptor(outputs, bank))
    x = np.concatenate(vecs).astype(np.float16).astype(np.float32)  # as it travels
    note = f"model {model.path}; {late!r} (held out) from #{start}"
    return Dataset("synthetic", x, np.array(labels), note)
