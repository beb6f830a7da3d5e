"""`linewatch model montage`: a grid of rendered parts (part type × family) with defect masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edge.model.synthetic import DEFAULT_SIZE, DEFECT_FAMILIES, GOOD, PART_TYPES, render_part

_PAD = 4
_LABEL = 18


def _outline(mask: np.ndarray) -> np.ndarray:
    """The 1-px border of a boolean mask."""
    inner = mask.copy()
    inner[1:-1, 1:-1] = (
        mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    )
    return mask & ~inner


def cell(part: str, family: str | None, seed: int, size: int, tier: str) -> tuple[Image.Image, str]:
    """The part as the camera sees it above the same part with its defect outlined in red."""
    img, info = render_part(
        (seed, PART_TYPES.index(part), hash(family) % 1000), part, family, size, tier
    )
    marked = np.asarray(img).copy()
    edge = _outline(np.asarray(info["mask"], bool))
    for _ in range(max(1, size // 224)):  # thicker outline on large frames
        edge = edge | np.roll(edge, 1, 0) | np.roll(edge, 1, 1)
    marked[edge] = (255, 40, 40)
    both = Image.new("RGB", (size, 2 * size + _PAD), (255, 255, 255))
    both.paste(img, (0, 0))
    both.paste(Image.fromarray(marked), (0, size + _PAD))
    label = f"{part} / {family or GOOD}" + (f"  CNR {info['cnr']:.1f}" if family else "")
    return both, label


def montage(out: Path, tier: str = "standard", seed: int = 0, size: int = DEFAULT_SIZE) -> Path:
    """Write a PNG grid: one row per part type, one column per family (good first)."""
    cols = [None, *DEFECT_FAMILIES]
    w, h = size + _PAD, 2 * size + _PAD + _LABEL
    sheet = Image.new("RGB", (w * len(cols) + _PAD, h * len(PART_TYPES) + _PAD + _LABEL), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((_PAD, 2), f"synthetic line, tier {tier}, {size} px, seed {seed}", fill="black")
    for r, part in enumerate(PART_TYPES):
        for c, fam in enumerate(cols):
            im, label = cell(part, fam, seed, size, tier)
            x, y = _PAD + c * w, _LABEL + _PAD + r * h
            draw.text((x, y), label, fill="black")
            sheet.paste(im, (x, y + _LABEL))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
