"""The int8 decision rule and the host check behind its quantization settings."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model.quantize import cpu_flags, has_vnni

pipeline = pytest.importorskip("edge.model.pipeline", reason="needs the model extra")

pytestmark = pytest.mark.unit


def test_vnni_is_read_from_the_cpu_flags() -> None:
    assert has_vnni({"avx2", "avx512f", "avx512_vnni"})
    assert has_vnni({"avx2", "avx_vnni"})
    assert not has_vnni({"avx2", "fma", "avx512f"})
    assert not has_vnni(set())
    assert isinstance(cpu_flags(), set)


@pytest.mark.parametrize(
    ("args", "kept", "why"),
    [
        ((2.0, 0.0, 0.0, 0.99), True, "decides like fp32"),
        ((0.9, 0.0, 0.0, 0.99), False, "not faster"),
        ((2.0, 0.02, 0.0, 0.99), False, "image AUROC drops by 0.020"),
        ((2.0, 0.0, 0.011, 0.99), False, "novelty AUROC drops by 0.011"),
        ((2.0, 0.0, 0.0, 0.90), False, "Spearman 0.900"),
    ],
)
def test_int8_is_kept_only_when_faster_and_deciding_like_fp32(
    args: tuple[float, float, float, float], kept: bool, why: str
) -> None:
    got, reason = pipeline.keep_int8(*args)
    assert got is kept
    assert why in reason


def test_agreement_ranks_novelty_scores_against_the_bank() -> None:
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(64, 8)).astype(np.float32)
    pf = rng.normal(size=(20, 4, 4, 8)).astype(np.float32) * rng.uniform(0.5, 3, (20, 1, 1, 1))
    q = {"image_auroc": 0.9, "novelty_auroc": 0.8}
    same = pipeline.int8_agreement(q, q, pf, pf.copy(), bank)
    assert same == {"auroc_drop": 0.0, "novelty_auroc_drop": 0.0, "novelty_rank_spearman": 1.0}
    shuffled = pipeline.int8_agreement(q, q, pf, pf[::-1].copy(), bank)
    assert shuffled["novelty_rank_spearman"] < 0.95
    worse = pipeline.int8_agreement(q, {"image_auroc": 0.85, "novelty_auroc": 0.8}, pf, pf, bank)
    assert worse["auroc_drop"] == pytest.approx(0.05)
