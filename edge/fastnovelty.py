"""Serving-path image novelty: the same score as ``novelty_scores``, computed with one GEMM.

``edge.model.novelty.novelty_scores`` (the reference, used by training and evaluation)
finds each patch's nearest bank entry and its index. The worker only needs the image score
(max over patches of the nearest distance), so the bank is prepared once as an augmented
matrix ``[-2·Bᵀ; ‖b‖²]``: one matrix product per block gives ``‖b‖² − 2 q·b`` for every
pair, and a single ``min`` pass finishes it — no argmin, no index gathering, no second
temporary. tests/unit/test_edge_fastnovelty.py checks it against the reference.
"""

from __future__ import annotations

import numpy as np

from edge.model.novelty import check_bank

BLOCK = 2048  # query patches per product (bounds the temporary matrix)


class NoveltyIndex:
    """A nominal bank prepared for fast image novelty scores."""

    def __init__(self, bank: np.ndarray) -> None:
        b = check_bank(bank)
        self.dim = int(b.shape[1])
        self.size = int(b.shape[0])
        sq = np.einsum("ij,ij->i", b, b)
        self._aug = np.ascontiguousarray(np.vstack([-2.0 * b.T, sq[None, :]]), dtype=np.float32)

    def scores(self, patch_features: np.ndarray) -> np.ndarray:
        """Image novelty [N] of patch features [N, h, w, c] (as ``novelty_scores``)."""
        pf = np.asarray(patch_features, dtype=np.float32)
        if pf.ndim != 4 or pf.shape[-1] != self.dim:
            raise ValueError(f"patch features must be [N, h, w, {self.dim}], got {pf.shape}")
        n = pf.shape[0]
        q = pf.reshape(-1, self.dim)
        qa = np.empty((len(q), self.dim + 1), np.float32)
        qa[:, :-1] = q
        qa[:, -1] = 1.0
        best = np.empty(len(q), np.float32)
        for s in range(0, len(q), BLOCK):
            np.min(qa[s : s + BLOCK] @ self._aug, axis=1, out=best[s : s + BLOCK])
        best += np.einsum("ij,ij->i", q, q)
        dist = np.sqrt(np.maximum(best, 0.0))
        return dist.reshape(n, -1).max(axis=1)
