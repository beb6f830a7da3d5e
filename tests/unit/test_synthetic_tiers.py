"""The two tiers of the synthetic line, measured on the final renders (CNR, camera size)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model.synthetic import DEFAULT_SIZE, DEFECT_FAMILIES, PART_TYPES, TIERS, render_part

pytestmark = pytest.mark.unit
SURFACE = [f for f in DEFECT_FAMILIES if f != "missing"]


def _cnrs(tier: str, families: list[str], per: int = 2) -> np.ndarray:
    out = []
    for fam in families:
        for part in PART_TYPES:
            for i in range(per):
                _, info = render_part((41, i, DEFECT_FAMILIES.index(fam)), part, fam, tier=tier)
                assert info["tier"] == tier
                out.append(info["cnr"])
    return np.array(out)


def test_frames_are_drawn_at_camera_resolution() -> None:
    img, info = render_part(3, "pcb", "scratch")
    assert DEFAULT_SIZE >= 448 and img.size == (DEFAULT_SIZE, DEFAULT_SIZE)
    assert info["mask"].shape == (DEFAULT_SIZE, DEFAULT_SIZE)


def test_standard_tier_defects_have_cnr_2_to_8() -> None:
    cnr = _cnrs("standard", SURFACE)
    # The amplitude is solved for a log-uniform target in [2, 8] on the float frame; 8-bit
    # rounding and clipping move the measured value a little, never out of the visible range.
    assert np.mean((cnr >= 1.8) & (cnr <= 8.8)) >= 0.85, np.round(cnr, 2)
    assert 2.5 <= float(np.median(cnr)) <= 5.5
    assert cnr.min() >= 1.0


def test_faint_tier_is_mostly_below_the_standard_range() -> None:
    cnr = _cnrs("faint", SURFACE)
    assert float(np.median(cnr)) < 2.0, np.round(cnr, 2)
    assert np.mean(cnr < 2.0) >= 0.6


def test_standard_is_more_visible_than_faint_for_the_same_part() -> None:
    for fam in SURFACE:
        a = render_part((8, 1), "bracket", fam, tier="standard")[1]["cnr"]
        b = render_part((8, 1), "bracket", fam, tier="faint")[1]["cnr"]
        assert a > b, (fam, a, b)


def test_missing_is_geometric_and_plainly_visible_in_both_tiers() -> None:
    for tier in TIERS:
        cnr = _cnrs(tier, ["missing"], per=1)
        assert cnr.min() >= 2.0, (tier, cnr)


def test_unknown_tier_is_refused() -> None:
    with pytest.raises(ValueError, match="tier"):
        render_part(1, "washer", "dent", 64, tier="loud")
