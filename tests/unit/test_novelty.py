"""Nominal banks, novelty scores and family descriptors (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model.novelty import (
    BankError,
    build_bank,
    family_descriptor,
    greedy_coreset,
    nearest_distance,
    novelty_scores,
    patch_scores,
)

pytestmark = pytest.mark.unit


def _nominal(rng: np.random.Generator, n: int = 20) -> np.ndarray:
    return rng.normal(0, 1, (n, 4, 4, 8)).astype(np.float32)


def test_nearest_distance_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    q, b = rng.normal(size=(5000, 6)), rng.normal(size=(300, 6))
    d, i = nearest_distance(q, b)
    full = np.linalg.norm(q[:, None] - b[None], axis=2)
    np.testing.assert_allclose(d, full.min(1), rtol=1e-4, atol=1e-4)
    assert (i == full.argmin(1)).mean() > 0.999


def test_an_implanted_outlier_patch_scores_highest() -> None:
    rng = np.random.default_rng(1)
    bank = build_bank(_nominal(rng, 50), max_size=400, rng=rng)
    test = _nominal(rng, 6)
    test[2, 1, 3] += 12.0
    scores = novelty_scores(test, bank)
    assert scores.shape == (6,) and scores.argmax() == 2
    maps = patch_scores(test, bank)
    assert np.unravel_index(maps[2].argmax(), maps[2].shape) == (1, 3)


def test_bank_keeps_everything_when_small_and_respects_max_size() -> None:
    rng = np.random.default_rng(2)
    pf = _nominal(rng, 3)
    assert build_bank(pf, 1000).shape == (48, 8)
    big = build_bank(_nominal(rng, 100), 64, rng)
    assert big.shape == (64, 8)


def test_coreset_covers_rare_clusters_better_than_random() -> None:
    rng = np.random.default_rng(3)
    common = rng.normal(0, 0.1, (2000, 4))
    rare = rng.normal(5, 0.1, (10, 4))
    pts = np.vstack([common, rare]).astype(np.float32)
    idx = greedy_coreset(pts, 20, rng, proj_dim=4)
    assert (idx >= 2000).any()  # the rare normal mode is in the bank


def test_descriptor_is_unit_and_separates_kinds_of_outliers() -> None:
    rng = np.random.default_rng(4)
    bank = build_bank(_nominal(rng, 40), 500, rng)
    batch = _nominal(rng, 8)
    direction_a, direction_b = np.zeros(8, np.float32), np.zeros(8, np.float32)
    direction_a[0], direction_b[5] = 10.0, 10.0
    for k in range(8):
        batch[k, k % 4, (k * 3) % 4] += direction_a if k < 4 else direction_b
    desc = family_descriptor({"patch_features": batch}, bank)
    assert desc.shape == (8, 8)
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, rtol=1e-5)
    sim = desc @ desc.T
    assert sim[:4, :4].mean() > 0.8 and sim[:4, 4:].mean() < 0.3


def test_bad_inputs_raise_bank_error() -> None:
    rng = np.random.default_rng(5)
    with pytest.raises(BankError, match="dimension"):
        novelty_scores(_nominal(rng, 2), np.zeros((10, 3), np.float32))
    with pytest.raises(BankError, match="non-empty"):
        novelty_scores(_nominal(rng, 2), np.zeros((0, 8), np.float32))
    with pytest.raises(BankError, match=r"\[N, h, w, c\]"):
        novelty_scores(np.zeros((2, 8)), np.zeros((4, 8)))
    bad = _nominal(rng, 2)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(BankError, match="non-finite"):
        build_bank(bad, 10)
    with pytest.raises(BankError, match="non-finite"):
        novelty_scores(_nominal(rng, 1), np.full((3, 8), np.inf, np.float32))
