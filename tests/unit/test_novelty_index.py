"""The prepared-bank novelty (NoveltyIndex) equals the argmin reference path (patch_scores)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model.novelty import BankError, NoveltyIndex, novelty_scores, patch_scores

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "shape,bank_size", [((3, 4, 4, 16), 50), ((2, 8, 8, 32), 3000), ((1, 2, 2, 8), 1)]
)
def test_equals_reference(shape: tuple[int, ...], bank_size: int) -> None:
    rng = np.random.default_rng(bank_size)
    centres = rng.normal(0, 1, (8, shape[-1])).astype(np.float32)
    bank = centres[rng.integers(0, 8, bank_size)] + rng.normal(0, 0.2, (bank_size, shape[-1]))
    pf = centres[rng.integers(0, 8, int(np.prod(shape[:-1])))].reshape(shape)
    pf = (pf + rng.normal(0, 0.2, shape)).astype(np.float32)
    pf[0, 0, 0] += 5.0  # one anomalous patch
    want = patch_scores(pf, bank).reshape(shape[0], -1).max(axis=1)
    got = NoveltyIndex(bank).scores(pf)
    np.testing.assert_allclose(novelty_scores(pf, bank), got, rtol=0, atol=0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_query_exactly_on_the_bank_scores_zero() -> None:
    bank = np.eye(4, dtype=np.float32)
    pf = np.eye(4, dtype=np.float32).reshape(1, 2, 2, 4)
    assert NoveltyIndex(bank).scores(pf)[0] == pytest.approx(0.0, abs=1e-3)


def test_shape_errors() -> None:
    idx = NoveltyIndex(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError):
        idx.scores(np.ones((1, 2, 2, 5), np.float32))
    with pytest.raises(BankError):
        NoveltyIndex(np.ones((0, 4), np.float32))
    with pytest.raises(BankError):
        NoveltyIndex(np.full((2, 4), np.nan, np.float32))
