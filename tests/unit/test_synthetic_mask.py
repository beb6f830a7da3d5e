"""The renderer's defect mask: where the defect is, empty on good parts (segmentation label)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model.synthetic import DEFECT_FAMILIES, PART_TYPES, render_part

pytestmark = pytest.mark.unit


def test_good_parts_have_an_empty_mask() -> None:
    for i, part in enumerate(PART_TYPES):
        _, info = render_part((3, i), part, None, 64)
        assert info["mask"].shape == (64, 64)
        assert not info["mask"].any()


@pytest.mark.parametrize("family", DEFECT_FAMILIES)
def test_defect_mask_matches_the_recorded_area_and_centre(family: str) -> None:
    for i, part in enumerate(PART_TYPES):
        if family == "missing" and part == "washer" and i > 0:
            continue
        _, info = render_part((5, i), part, family, 128)
        mask = info["mask"]
        assert mask.dtype == np.bool_ and mask.any()
        assert mask.sum() / mask.size == pytest.approx(info["area"], rel=0.35, abs=2 / mask.size)
        cx, cy = info["center"]
        ys, xs = np.nonzero(mask)
        assert np.hypot(xs - cx, ys - cy).min() <= 12
