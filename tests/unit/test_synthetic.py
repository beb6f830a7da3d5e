"""The synthetic production line: deterministic, varied, with small and often faint defects."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model.synthetic import (
    DEFECT_FAMILIES,
    PART_TYPES,
    iter_samples,
    render_frame,
    render_part,
)

pytestmark = pytest.mark.unit


def test_same_seed_same_pixels() -> None:
    a, ia = render_part(42, "bracket", "scratch", 96)
    b, ib = render_part(42, "bracket", "scratch", 96)
    assert a.tobytes() == b.tobytes()
    assert ia.pop("mask").tobytes() == ib.pop("mask").tobytes()
    assert ia == ib


def test_different_seeds_differ_and_sizes_are_respected() -> None:
    a, _ = render_part(1, "washer", None, 80)
    b, _ = render_part(2, "washer", None, 80)
    assert a.size == (80, 80) and a.mode == "RGB"
    assert a.tobytes() != b.tobytes()


@pytest.mark.parametrize("part", PART_TYPES)
def test_every_part_and_family_renders(part: str) -> None:
    for fam in (None, *DEFECT_FAMILIES):
        img, info = render_part((3, hash(fam) % 1000), part, fam, 64)
        assert img.size == (64, 64)
        assert info["part_type"] == part and info["defect"] == fam
        if fam is not None:
            assert 0.0 < info["area"] < 0.05, (part, fam, info["area"])


def test_defect_changes_only_a_small_region() -> None:
    # Same seed: the defect draw comes after the part is drawn, so compare region sizes.
    _, info = render_part(5, "pcb", "stain", 128)
    assert info["center"] is not None and info["area"] < 0.02


def test_defects_are_small_and_on_the_faint_tier_many_are_faint() -> None:
    samples = [s for s in iter_samples(11, 240, size=64, defect_fraction=1.0, tier="faint")]
    areas = np.array([s.info["area"] for s in samples])
    contrast = np.array([s.info["contrast"] for s in samples])
    assert len(samples) == 240
    assert np.mean(areas < 0.02) > 0.5  # most cover under 2 % of the image
    assert np.mean(contrast <= 2.0) >= 1 / 3  # within ±2 std of the part's own texture
    assert set(s.label for s in samples) == set(DEFECT_FAMILIES)


def test_iterator_is_seekable_and_balanced() -> None:
    full = list(iter_samples(9, 12, size=48))
    tail = list(iter_samples(9, 4, size=48, start=8))
    assert [s.image.tobytes() for s in full[8:]] == [s.image.tobytes() for s in tail]
    many = list(iter_samples(9, 200, size=32, defect_fraction=0.3))
    good = sum(s.label == "good" for s in many)
    assert 110 < good < 170
    assert {s.part_type for s in many} == set(PART_TYPES)


def test_no_defect_fraction_gives_only_good_parts() -> None:
    assert {s.label for s in iter_samples(3, 30, size=32, defect_fraction=0.0)} == {"good"}


def test_render_frame_and_bad_arguments() -> None:
    assert render_frame(1, 2, "washer", None, 48).size == (48, 48)
    with pytest.raises(ValueError, match="part type"):
        render_part(1, "gear", None)
    with pytest.raises(ValueError, match="defect"):
        render_part(1, "washer", "rust")
    with pytest.raises(ValueError, match="size"):
        render_part(1, "washer", None, 4)
