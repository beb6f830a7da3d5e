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
    """A bank prepared once for image novelty scores (the worker keeps one per camera), exact,
    with most of the distance work pruned.

    The bank becomes the augmented matrix ``[-2·Bᵀ; ‖b‖²]``, so one matrix product gives
    ``‖b‖² − 2 q·b`` for every pair and a ``min`` finishes it (no argmin, no gathering: only
    ``patch_scores``, the family descriptor's path, needs those). The image score is the
    largest distance of any patch to its nearest bank entry. Most patches cannot be the
    largest, and this proves it cheaply, since the distance to ANY bank entry bounds a
    patch's nearest distance from above:

    1. The first ``probe`` bank entries (a greedy coreset's first picks, spread over the
       bank) are cell centres; each cell keeps the ``cell`` entries nearest its centre.
       A patch's bound is its smallest distance to the centres and to the members of its
       nearest centre's cell (usually its true nearest entry, so the bound is tight).
    2. The ``top`` highest-bounded patches of each image are scored against the whole bank;
       the largest of those exact distances is a floor under the image's score.
    3. Only patches whose bound exceeds that floor can still raise it: they are scored
       against the whole bank too (a handful per image); all others are skipped.

    The result equals the full computation up to float32 round-off (the same formula
    ``‖b‖² − 2 q·b + ‖q‖²`` on the same rows). Images with non-finite features, and banks
    too small for pruning to pay, take the full computation (NaN/inf score as before).
    """

    def __init__(self, bank: np.ndarray, probe: int = 128, cell: int = 256, top: int = 8) -> None:
        b = check_bank(bank)
        if probe < 1 or cell < 1 or top < 1:
            raise ValueError("probe, cell and top must be >= 1")
        self.dim = int(b.shape[1])
        self.size = int(b.shape[0])
        self.top = top
        sq = np.einsum("ij,ij->i", b, b)
        self._aug = np.ascontiguousarray(np.vstack([-2.0 * b.T, sq[None, :]]), dtype=np.float32)
        self._probe: np.ndarray | None = None
        self._cells: list[np.ndarray] = []
        if probe * 4 <= self.size:  # else the full computation is as cheap
            self._probe = np.ascontiguousarray(self._aug[:, :probe])
            ba = np.hstack([b, np.ones((self.size, 1), np.float32)])
            to_centre = ba @ self._probe  # ‖c‖² − 2 b·c: same order as the distance
            nearest = np.argmin(to_centre, axis=1)
            for c in range(probe):
                members = np.flatnonzero(nearest == c)
                members = members[np.argsort(to_centre[members, c], kind="stable")][:cell]
                self._cells.append(np.ascontiguousarray(self._aug[:, members]))

    def _d2(self, qa: np.ndarray, aug: np.ndarray, qsq: np.ndarray) -> np.ndarray:
        """Squared nearest distance of each augmented query row over the columns of ``aug``."""
        return np.min(qa @ aug, axis=1) + qsq

    def scores(self, patch_features: np.ndarray) -> np.ndarray:
        """Image novelty [N] of patch features [N, h, w, D]: the largest patch distance."""
        pf = _as_patches(patch_features)
        if pf.shape[-1] != self.dim:
            raise BankError(f"bank dimension {self.dim} does not match features ({pf.shape[-1]})")
        n, per = pf.shape[0], pf.shape[1] * pf.shape[2]
        if per == 0:
            raise BankError(f"patch features hold no patches: shape {pf.shape}")
        q = pf.reshape(n * per, self.dim)
        qa = np.empty((n * per, self.dim + 1), np.float32)
        qa[:, :-1] = q
        qa[:, -1] = 1.0
        qsq = np.einsum("ij,ij->i", q, q)
        best = np.full(n, -np.inf, np.float32)  # largest exact squared distance per image
        finite = np.isfinite(q.reshape(n, per, self.dim)).all(axis=(1, 2))
        for i in np.flatnonzero(~finite) if self._probe is not None else range(n):
            rows = slice(i * per, (i + 1) * per)  # the full computation
            best[i] = np.max(self._d2(qa[rows], self._aug, qsq[rows]))
        if self._probe is not None and finite.any():
            images = np.flatnonzero(finite)
            rows = (images[:, None] * per + np.arange(per)[None, :]).reshape(-1)
            self._pruned(qa, qsq, rows, per, best)
        return np.sqrt(np.maximum(best, 0.0))

    def _bounds(self, qa: np.ndarray, qsq: np.ndarray) -> np.ndarray:
        """Upper bounds of the squared nearest distances: centres, then the nearest cell."""
        assert self._probe is not None
        g = qa @ self._probe
        centre = np.argmin(g, axis=1)
        bound = g[np.arange(len(g)), centre]
        order = np.argsort(centre, kind="stable")
        cuts = np.flatnonzero(np.diff(centre[order])) + 1
        for group in np.split(order, cuts):
            members = self._cells[int(centre[group[0]])]
            if members.shape[1]:
                bound[group] = np.minimum(bound[group], np.min(qa[group] @ members, axis=1))
        return bound + qsq

    def _pruned(
        self, qa: np.ndarray, qsq: np.ndarray, rows: np.ndarray, per: int, best: np.ndarray
    ) -> None:
        img = rows // per
        bound = self._bounds(qa[rows], qsq[rows])
        cand = np.arange(len(rows))
        while cand.size:  # rounds: each image's ``top`` highest-bounded candidates, exactly
            order = np.lexsort((-bound[cand], img[cand]))  # by image, highest bound first
            img_sorted = img[cand[order]]
            rank = np.arange(len(order)) - np.searchsorted(img_sorted, img_sorted, "left")
            top = np.zeros(len(cand), bool)
            top[order[rank < self.top]] = True
            now = cand[top]
            np.maximum.at(best, img[now], self._d2(qa[rows[now]], self._aug, qsq[rows[now]]))
            cand = cand[~top]
            cand = cand[bound[cand] > best[img[cand]]]


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
