"""Variation scoring of an inferred batch in the worker, and the evidence picture it draws.

The novelty of a frame is its camera's variation score (edge/model/variation.py) when the
model card ships variation models; the anomaly map behind it is overlaid on the alert's
thumbnail, so an operator sees where the part departs from its good parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from edge.model.families import FamilyProjection
from edge.model.variation import Scored, VariationModel, descriptor
from edge.preprocess import resize, to_rgb
from edge.variations import VariationBook

OVERLAY_FROM = 1.0  # map values (standardised) below this are not drawn


@dataclass
class RowScore:
    """One frame's variation result and the model that scored it."""

    scored: Scored
    model: VariationModel
    pixels: np.ndarray  # the frame at model-input size, uint8 RGB
    families: FamilyProjection | None = None

    def descriptor(self) -> np.ndarray:
        """The family descriptor (projected when the card ships a projection)."""
        d = descriptor(self.scored)
        return self.families(d[None])[0] if self.families is not None else d


def score_rows(
    book: VariationBook,
    cameras: list[str],
    images: list[Image.Image],
    size: int,
    families: FamilyProjection | None = None,
) -> list[RowScore]:
    """Each frame scored by its camera's variation model."""
    out = []
    for cam, im in zip(cameras, images, strict=True):
        px = np.asarray(resize(to_rgb(im), size), dtype=np.uint8)
        scored, model = book.score(cam, px)
        out.append(RowScore(scored, model, px, families))
    return out


def overlay(image: Image.Image, row: RowScore) -> Image.Image:
    """The frame with the anomaly map drawn over it in red (stronger = more opaque)."""
    fmap = row.model.frame_map(row.scored)
    peak = max(float(fmap.max()), OVERLAY_FROM + 1e-3)
    alpha = np.clip((fmap - OVERLAY_FROM) / (peak - OVERLAY_FROM), 0.0, 1.0) * 0.6
    a = Image.fromarray((alpha * 255).astype(np.uint8), mode="L").resize(
        image.size, Image.Resampling.BILINEAR
    )
    red = Image.new("RGB", image.size, (255, 32, 32))
    return Image.composite(red, to_rgb(image), a)
