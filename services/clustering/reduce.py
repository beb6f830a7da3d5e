"""Numeric helpers of the clustering core: reduction, threshold, batch clusterers, matching."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.linalg import eigh
from scipy.optimize import linear_sum_assignment
from scipy.special import ndtr
from sklearn.cluster import Birch, KMeans

METHODS = ("ward", "kmeans", "birch")
KEEP_BONUS = 1.05  # the current partition wins unless another scores 5 % higher
SPLIT_CRITICAL = 4.0  # A*² a cluster's halves need before a refit splits it (G-means uses 1.87)


@dataclass(frozen=True)
class Reducer:
    """``z = ((x - mean) / scale) @ components.T``: centring or standardising, then PCA."""

    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,), ones when not standardising
    components: np.ndarray  # (k, D)
    unit_scale: bool = field(init=False)  # scale is all ones: dividing by it is skipped
    _weights: np.ndarray = field(init=False, repr=False)  # (D, k) view: (components / scale).T

    def __post_init__(self) -> None:
        unit = bool(np.all(self.scale == 1.0))
        weights = self.components if unit else (self.components / self.scale).astype(np.float32)
        object.__setattr__(self, "unit_scale", unit)
        object.__setattr__(self, "_weights", weights.T)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Reduce one vector (D,) or a batch (n, D) to float32 (k,) / (n, k).

        ``((x - mean) / scale) @ components.T`` with the division folded into the weights
        (exact when the scale is all ones, the default)."""
        out: np.ndarray = (x - self.mean) @ self._weights
        return out.astype(np.float32, copy=False)


def fit_reducer(
    x: np.ndarray, n_components: int, *, standardize: bool, seed: int = 0, max_rows: int = 256
) -> Reducer:
    """Fit centring (or standardisation) on rows ``x`` and a PCA of at most ``n_components``
    on at most ``max_rows`` of them, evenly spaced (the PCA is what a refit spends most on)."""
    x = np.asarray(x, dtype=np.float32)
    n, d = x.shape
    mean = x.mean(axis=0)
    scale = np.ones(d, dtype=np.float32)
    if standardize:
        std = x.std(axis=0)
        floor = max(float(np.median(std)) * 1e-3, 1e-6)
        scale = np.maximum(std, floor).astype(np.float32)
    rows = np.linspace(0, n - 1, min(n, max_rows)).astype(int) if n > max_rows else slice(None)
    xc = (x[rows] - mean) / scale
    m = xc.shape[0]
    k = max(1, min(n_components, m - 1, d))
    if m < d:  # PCA through the m × m Gram matrix: cheap for 2048-d vectors
        vals, vecs = eigh(xc @ xc.T, subset_by_index=[m - k, m - 1])
        vals, vecs = vals[::-1], vecs[:, ::-1]
        comps = (vecs.T @ xc) / np.sqrt(np.maximum(vals, 1e-12))[:, None]
    else:
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        comps = vt[:k]
    return Reducer(mean.astype(np.float32), scale, np.ascontiguousarray(comps, dtype=np.float32))


def sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows of ``a`` (n, k) and ``b`` (m, k)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def member_distances(z: np.ndarray, labels: np.ndarray, min_members: int) -> np.ndarray:
    """Member-to-own-centroid distances in the clusters of at least ``min_members``."""
    dists = []
    for lab in np.unique(labels):
        members = z[labels == lab]
        if len(members) >= min_members:
            dists.append(np.sqrt(((members - members.mean(0)) ** 2).sum(1)))
    return np.concatenate(dists) if dists else np.zeros(0)


def threshold_of(dists: np.ndarray, factor: float, quantile: float = 0.95) -> float:
    """median + ``factor`` × (``quantile`` − median) of ``dists``; 0.0 when there are none."""
    if len(dists) == 0:
        return 0.0
    mid, high = np.quantile(dists, [0.5, quantile])
    return float(mid + factor * (high - mid))


def spread_threshold(
    z: np.ndarray, labels: np.ndarray, factor: float, min_members: int, quantile: float = 0.95
) -> float:
    """The new-family distance: median + ``factor`` × (``quantile`` − median) of the
    member-to-own-centroid distances in clusters of at least ``min_members``; 0.0 when none.

    In many dimensions these distances concentrate (the quantile is close to the median), so
    the threshold stays tight; in few dimensions they spread and it widens with them."""
    return threshold_of(member_distances(z, labels, min_members), factor, quantile)


def calinski_harabasz(x: np.ndarray, labels: np.ndarray) -> float:
    """Calinski-Harabasz index, the arithmetic of ``sklearn.metrics.calinski_harabasz_score``
    (float64, cluster by cluster) without its per-call input checks, which cost more than the
    sums at a refit's dozen calls; ``x`` should already be float64."""
    x = np.asarray(x, dtype=np.float64)
    uniq, labels = np.unique(labels, return_inverse=True)
    n, k = x.shape[0], len(uniq)
    if not 1 < k < n:
        raise ValueError(
            f"Number of labels is {k}. Valid values are 2 to n_samples - 1 (inclusive)"
        )
    extra, intra = 0.0, 0.0
    mean = x.mean(axis=0)
    for j in range(k):
        members = x[labels == j]
        mean_j = members.mean(axis=0)
        extra += members.shape[0] * np.sum((mean_j - mean) ** 2)
        intra += np.sum((members - mean_j) ** 2)
    return float(1.0 if intra == 0.0 else extra * (n - k) / (intra * (k - 1.0)))


def cluster_window(
    z: np.ndarray,
    method: str,
    *,
    seed: int = 0,
    max_k: int = 12,
    min_members: int = 3,
    current: np.ndarray | None = None,
) -> np.ndarray:
    """Labels (0..k-1) of the rows of ``z`` by the batch clusterer ``method``.

    k in 2..max_k is chosen by the Calinski-Harabasz index (silhouette picks k = 2 on Iris;
    Calinski-Harabasz picks 3); k = 1 when no pair of the chosen clusters is bimodal. The
    ``current`` labelling competes too, with a ``KEEP_BONUS`` (hysteresis: a refit changes
    the family structure only for a clearly better partition).
    """
    n = len(z)
    ks = list(range(2, min(max_k, n // max(min_members, 1)) + 1))
    if not ks or float(np.ptp(z, axis=0).max()) <= 0.0:
        return np.zeros(n, dtype=np.int64)
    if method == "ward":
        tree = linkage(z, method="ward")
        candidates = (fcluster(tree, k, criterion="maxclust") - 1 for k in ks)
    elif method == "kmeans":
        candidates = (KMeans(k, n_init=3, random_state=seed).fit_predict(z) for k in ks)
    elif method == "birch":
        candidates = (Birch(threshold=_birch_radius(z), n_clusters=k).fit_predict(z) for k in ks)
    else:
        raise ValueError(f"unknown clustering method {method!r}; choose one of {METHODS}")
    best, best_score = np.zeros(n, dtype=np.int64), -np.inf
    z64 = z.astype(np.float64)
    if current is not None and 2 <= len(np.unique(current)) < n:
        best = np.unique(current, return_inverse=True)[1].astype(np.int64)
        best_score = KEEP_BONUS * calinski_harabasz(z64, best)
    for labels in candidates:
        if len(np.unique(labels)) < 2:
            continue
        score = calinski_harabasz(z64, labels)
        if score > best_score:
            best, best_score = np.asarray(labels, dtype=np.int64), float(score)
    best = refine(z, best, max_k, min_members, seed)
    return best if separated(z, best) else np.zeros(n, dtype=np.int64)


def refine(
    z: np.ndarray, labels: np.ndarray, max_k: int, min_members: int, seed: int = 0
) -> np.ndarray:
    """G-means refinement: split any cluster whose own 2-means halves are bimodal, so a small
    new family the index-based choice lumped into a big one is still found."""
    labels = labels.copy()
    queue = list(np.unique(labels))
    while queue and len(np.unique(labels)) < max_k:
        lab = queue.pop()
        idx = np.flatnonzero(labels == lab)
        if len(idx) < 2 * min_members + 2:
            continue
        halves = KMeans(2, n_init=1, random_state=seed).fit_predict(z[idx])
        if min(np.bincount(halves, minlength=2)) < min_members or not separated(
            z[idx], halves, SPLIT_CRITICAL
        ):
            continue
        new = int(labels.max()) + 1
        labels[idx[halves == 1]] = new
        queue += [lab, new]
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def anderson_darling(y: np.ndarray) -> float:
    """Anderson-Darling A² of standardised samples ``y`` against the standard normal."""
    y = np.sort(np.asarray(y, dtype=np.float64))
    n = len(y)
    cdf = np.clip(ndtr(y), 1e-300, 1.0 - 1e-16)
    i = np.arange(1, n + 1)
    return float(-n - np.mean((2 * i - 1) * (np.log(cdf) + np.log1p(-cdf[::-1]))))


def separated(z: np.ndarray, labels: np.ndarray, critical: float = 1.8692) -> bool:
    """True when at least one pair of clusters is bimodal along the axis joining their centres
    (corrected Anderson-Darling A*² above the alpha = 0.0001 value of G-means, Hamerly & Elkan
    2003). A single family split in two by the clusterer stays unimodal on that axis."""
    uniq = np.unique(labels)
    centres = [z[labels == u].mean(0) for u in uniq]
    for i in range(len(uniq)):
        for j in range(i + 1, len(uniq)):
            axis = centres[i] - centres[j]
            pair = z[(labels == uniq[i]) | (labels == uniq[j])]
            proj = pair @ axis
            n, spread = len(pair), float(proj.std())
            if n < 8 or spread <= 0.0:
                continue
            if (
                anderson_darling((proj - proj.mean()) / spread) * (1 + 4 / n - 25 / n**2)
                >= critical
            ):
                return True
    return False


def _birch_radius(z: np.ndarray) -> float:
    """Birch sub-cluster radius: a quarter of the median distance to the centroid."""
    return float(0.25 * np.median(np.sqrt(((z - z.mean(0)) ** 2).sum(1)))) or 1e-6


def match(old: np.ndarray, new: np.ndarray, gate: float) -> list[tuple[int, int]]:
    """Hungarian matching of old centres to new centres; pairs farther than ``gate`` dropped."""
    if len(old) == 0 or len(new) == 0:
        return []
    cost = np.sqrt(sq_dists(old, new))
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= gate]
