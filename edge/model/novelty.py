"""Patch memory banks (PatchCore-style) and novelty scores of frames against them (pure numpy)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

DEFAULT_BANK_SIZE = 4096
_CHUNK = 2048  # query patches per distance block (bounds the temporary matrix)


class BankError(ValueError):
    """A bank or a feature batch that cannot be used (wrong shape, dimension, non-finite)."""


def _as_patches(patch_features: np.ndarray) -> np.ndarray:
    pf = np.asarray(patch_features, dtype=np.float32)
    if pf.ndim != 4:
        raise BankError(f"patch features must be [N, h, w, c], got shape {pf.shape}")
    return pf


def check_bank(bank: np.ndarray, dim: int | None = None) -> np.ndarray:
    """The bank as float32 [B, D]; raises BankError when empty, non-finite or of the wrong D."""
    b = np.asarray(bank, dtype=np.float32)
    if b.ndim != 2 or b.shape[0] == 0:
        raise BankError(f"bank must be a non-empty [B, D] array, got shape {b.shape}")
    if dim is not None and b.shape[1] != dim:
        raise BankError(f"bank dimension {b.shape[1]} does not match features ({dim})")
    if not np.isfinite(b).all():
        raise BankError("bank holds non-finite values")
    return b


def nearest_distance(queries: np.ndarray, bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance of each query row to its nearest bank row, and that row's index."""
    q = np.asarray(queries, dtype=np.float32)
    b = check_bank(bank, q.shape[1])
    b_sq = np.einsum("ij,ij->i", b, b)
    dist = np.empty(len(q), np.float32)
    idx = np.empty(len(q), np.int64)
    for s in range(0, len(q), _CHUNK):
        block = q[s : s + _CHUNK]
        d2 = b_sq[None, :] - 2.0 * (block @ b.T)
        j = np.argmin(d2, axis=1)
        best = d2[np.arange(len(block)), j] + np.einsum("ij,ij->i", block, block)
        dist[s : s + len(block)] = np.sqrt(np.maximum(best, 0.0))
        idx[s : s + len(block)] = j
    return dist, idx


def patch_scores(patch_features: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """Per-location novelty map [N, h, w]: distance of each patch to the nominal bank."""
    pf = _as_patches(patch_features)
    n, h, w, c = pf.shape
    dist, _ = nearest_distance(pf.reshape(-1, c), bank)
    return dist.reshape(n, h, w)


class NoveltyIndex:
    """A bank prepared once for image novelty scores (the worker keeps one per camera).

    The bank becomes the augmented matrix ``[-2·Bᵀ; ‖b‖²]``, so one matrix product per block
    gives ``‖b‖² − 2 q·b`` for every pair and a single ``min`` finishes it: no argmin and no
    index gathering, which only ``patch_scores`` (the family descriptor) needs.
    """

    def __init__(self, bank: np.ndarray) -> None:
        b = check_bank(bank)
        self.dim = int(b.shape[1])
        self.size = int(b.shape[0])
        sq = np.einsum("ij,ij->i", b, b)
        self._aug = np.ascontiguousarray(np.vstack([-2.0 * b.T, sq[None, :]]), dtype=np.float32)

    def scores(self, patch_features: np.ndarray) -> np.ndarray:
        """Image novelty [N] of patch features [N, h, w, c]: the largest patch distance."""
        pf = _as_patches(patch_features)
        if pf.shape[-1] != self.dim:
            raise BankError(f"bank dimension {self.dim} does not match features ({pf.shape[-1]})")
        q = pf.reshape(-1, self.dim)
        qa = np.empty((len(q), self.dim + 1), np.float32)
        qa[:, :-1] = q
        qa[:, -1] = 1.0
        best = np.empty(len(q), np.float32)
        for s in range(0, len(q), _CHUNK):
            np.min(qa[s : s + _CHUNK] @ self._aug, axis=1, out=best[s : s + _CHUNK])
        best += np.einsum("ij,ij->i", q, q)
        dist = np.sqrt(np.maximum(best, 0.0))
        return dist.reshape(pf.shape[0], -1).max(axis=1)


def novelty_scores(patch_features: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """Image novelty [N]: the largest patch distance to the bank (the most anomalous place)."""
    return NoveltyIndex(bank).scores(patch_features)


def greedy_coreset(
    points: np.ndarray, size: int, rng: np.random.Generator, proj_dim: int = 32
) -> np.ndarray:
    """Indices of a greedy k-center coreset (distances in a random projection, for speed)."""
    n = len(points)
    if size >= n:
        return np.arange(n)
    d = points.shape[1]
    proj = rng.standard_normal((d, min(proj_dim, d))).astype(np.float32) / np.sqrt(d)
    z = points @ proj
    chosen = np.empty(size, np.int64)
    chosen[0] = int(rng.integers(n))
    mind = np.sum((z - z[chosen[0]]) ** 2, axis=1)
    for k in range(1, size):
        chosen[k] = int(np.argmax(mind))
        mind = np.minimum(mind, np.sum((z - z[chosen[k]]) ** 2, axis=1))
    return chosen


def build_bank(
    patch_features: np.ndarray,
    max_size: int = DEFAULT_BANK_SIZE,
    rng: np.random.Generator | None = None,
    presample: int = 10,
) -> np.ndarray:
    """A nominal memory bank [B ≤ max_size, D] from patch features of good frames.

    All patches are kept when they fit; otherwise a random pre-sample of ``presample`` ×
    ``max_size`` patches is reduced to ``max_size`` by greedy k-center coreset selection,
    which keeps the rare-but-normal patches that a random subsample would lose.
    """
    if max_size < 1:
        raise BankError(f"bank size must be positive, got {max_size}")
    pf = _as_patches(patch_features)
    flat = pf.reshape(-1, pf.shape[-1])
    if not np.isfinite(flat).all():
        raise BankError("patch features hold non-finite values")
    if len(flat) <= max_size:
        return flat.copy()
    rng = rng if rng is not None else np.random.default_rng(0)
    if len(flat) > presample * max_size:
        flat = flat[rng.choice(len(flat), presample * max_size, replace=False)]
    return flat[greedy_coreset(flat, max_size, rng)].copy()


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def family_descriptor(outputs: Mapping[str, np.ndarray], bank: np.ndarray) -> np.ndarray:
    """Descriptor [N, D] used to cluster anomalous frames into defect families.

    The patch feature at the most anomalous location (largest distance to ``bank``) minus its
    nearest nominal patch — what is there that should not be — L2-normalised.
    """
    pf = _as_patches(outputs["patch_features"])
    n, h, w, c = pf.shape
    flat = pf.reshape(n, h * w, c)
    b = check_bank(bank, c)
    dist, idx = nearest_distance(flat.reshape(-1, c), b)
    at = dist.reshape(n, h * w).argmax(axis=1)
    picked = flat[np.arange(n), at]
    residual = picked - b[idx.reshape(n, h * w)[np.arange(n), at]]
    return _unit(residual)
