"""The pruned novelty scorer (edge.model.novelty.NoveltyIndex) equals the full computation."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model.novelty import BankError, NoveltyIndex, build_bank, patch_scores

pytestmark = pytest.mark.unit


def full(pf: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """The full computation: every patch against the whole bank (the argmin path)."""
    return patch_scores(pf, bank).reshape(len(pf), -1).max(axis=1)


def patches(rng: np.random.Generator, n: int, h: int, w: int, d: int = 16) -> np.ndarray:
    """Patch features around a few nominal modes, like a backbone's on a production line."""
    modes = np.random.default_rng(7).normal(0, 3, (12, d)).astype(np.float32)
    pick = rng.integers(0, len(modes), n * h * w)
    x = modes[pick] + rng.normal(0, 0.6, (n * h * w, d)).astype(np.float32)
    return x.reshape(n, h, w, d).astype(np.float32)


@pytest.fixture(scope="module")
def bank() -> np.ndarray:
    rng = np.random.default_rng(1)
    return build_bank(patches(rng, 40, 8, 8), max_size=1024, rng=np.random.default_rng(2))


class Counting(NoveltyIndex):
    """Counts the patch rows scored against the whole bank."""

    exact_rows = 0

    def _d2(self, qa: np.ndarray, aug: np.ndarray, qsq: np.ndarray) -> np.ndarray:
        if aug.shape[1] == self.size:
            self.exact_rows += len(qa)
        return super()._d2(qa, aug, qsq)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_equals_the_full_computation(bank: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pf = patches(rng, 8, 8, 8)
    pf[2, 3, 4] += 9.0  # a defect: one far patch
    pf[5, :2, :2] -= 4.0  # a larger, milder one
    want = full(pf, bank)
    got = NoveltyIndex(bank, probe=32, cell=64).scores(pf)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got.dtype == np.float32 and got.shape == (8,)


def test_most_patches_are_pruned(bank: np.ndarray) -> None:
    pf = patches(np.random.default_rng(9), 8, 8, 8)
    scorer = Counting(bank, probe=32, cell=64)
    np.testing.assert_allclose(scorer.scores(pf), full(pf, bank), rtol=1e-5, atol=1e-5)
    assert scorer.exact_rows < 0.3 * pf.shape[0] * 64  # the full computation scores all


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_non_finite_features_score_as_before(bank: np.ndarray) -> None:
    pf = patches(np.random.default_rng(11), 4, 8, 8)
    pf[1, 0, 0, 0] = np.nan
    pf[3, 2, 2, 1] = np.inf
    want = full(pf, bank)
    got = NoveltyIndex(bank, probe=32, cell=64).scores(pf)
    assert np.isnan(got[1]) and np.isnan(want[1])
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-5)


def test_small_bank_takes_the_full_computation() -> None:
    rng = np.random.default_rng(12)
    small = patches(rng, 1, 4, 4).reshape(16, -1)
    pf = patches(rng, 3, 4, 4)
    scorer = Counting(small, probe=8)
    got = scorer.scores(pf)
    np.testing.assert_allclose(got, full(pf, small), rtol=1e-5, atol=1e-5)
    assert scorer.exact_rows == 3 * 16


def test_bad_shapes_are_named(bank: np.ndarray) -> None:
    scorer = NoveltyIndex(bank, probe=32)
    assert scorer.scores(np.zeros((0, 8, 8, 16), np.float32)).shape == (0,)
    with pytest.raises(BankError, match="dimension"):
        scorer.scores(np.zeros((1, 8, 8, 5), np.float32))
    with pytest.raises(BankError, match=r"\[N, h, w, c\]"):
        scorer.scores(np.zeros((8, 8, 16), np.float32))
    with pytest.raises(BankError, match="no patches"):
        scorer.scores(np.zeros((1, 0, 8, 16), np.float32))
    with pytest.raises(BankError):
        NoveltyIndex(np.zeros((0, 16), np.float32))
