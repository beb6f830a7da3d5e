"""Verdicts from the defect head and the novelty score against per-camera thresholds (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from broker.messages import Severity, VerdictKind
from edge.model.novelty import BankError, check_bank

GOOD = "good"
UNKNOWN = "unknown"  # predicted class of an anomaly: no known defect type explains it


@dataclass(frozen=True)
class Thresholds:
    """Operating point of one camera: defect probability and novelty score thresholds."""

    defect: float
    novelty: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.defect) and math.isfinite(self.novelty)):
            raise ValueError("thresholds must be finite")
        if not 0.0 < self.defect < 1.0:
            raise ValueError(f"defect threshold {self.defect} must be in (0, 1)")
        if self.novelty <= 0.0:
            raise ValueError(f"novelty threshold {self.novelty} must be positive")


@dataclass(frozen=True)
class Decision:
    verdict: VerdictKind
    defect_score: float
    novelty_score: float
    predicted_class: str
    severity: Severity | None  # None for "ok"


def predicted_class(
    class_scores: np.ndarray, class_names: Sequence[str], verdict: VerdictKind
) -> str:
    """``good`` for ok, the best non-good class for a defect, ``unknown`` for an anomaly."""
    if verdict == "ok":
        return GOOD
    if verdict == "anomaly":
        return UNKNOWN
    scores = np.asarray(class_scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(class_names) or not len(scores):
        return UNKNOWN
    order = np.argsort(-scores, kind="stable")
    for i in order:
        if class_names[int(i)] != GOOD:
            return class_names[int(i)]
    return UNKNOWN


def severity(
    verdict: VerdictKind, defect_score: float, novelty_score: float, th: Thresholds
) -> Severity | None:
    """Defects by head probability, anomalies by how far past the novelty threshold."""
    if verdict == "defect":
        if defect_score >= 0.99:
            return "critical"
        if defect_score >= 0.9:
            return "major"
        return "minor"
    if verdict == "anomaly":
        ratio = novelty_score / th.novelty
        if ratio >= 2.0:
            return "major"
        if ratio >= 1.25:
            return "minor"
        return "warning"
    return None


def decide(
    defect_score: float,
    novelty_score: float,
    class_scores: np.ndarray,
    class_names: Sequence[str],
    th: Thresholds,
) -> Decision:
    """One frame: ``defect`` when the head says so, else ``anomaly`` when novel, else ``ok``.

    Non-finite scores never pass as ``ok``: a NaN defect score counts as a defect and a NaN
    novelty as an anomaly (the model or bank is broken; an operator must look).
    """
    d = float(defect_score)
    n = float(novelty_score)
    verdict: VerdictKind
    if not math.isfinite(d) or d >= th.defect:
        verdict = "defect"
    elif not math.isfinite(n) or n >= th.novelty:
        verdict = "anomaly"
    else:
        verdict = "ok"
    d = d if math.isfinite(d) else 1.0
    n = n if math.isfinite(n) else th.novelty * 1e6
    return Decision(
        verdict,
        d,
        n,
        predicted_class(class_scores, class_names, verdict),
        severity(verdict, d, n, th),
    )


def decide_batch(
    defect_scores: np.ndarray,
    novelty_scores: np.ndarray,
    class_scores: np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[Thresholds],
) -> list[Decision]:
    """:func:`decide` for each row of a batch; ``thresholds`` is one per row (its camera)."""
    d = np.asarray(defect_scores).reshape(-1)
    n = np.asarray(novelty_scores).reshape(-1)
    if not len(d) == len(n) == len(thresholds) == len(class_scores):
        raise ValueError("batch outputs and thresholds differ in length")
    return [
        decide(float(d[i]), float(n[i]), class_scores[i], class_names, thresholds[i])
        for i in range(len(d))
    ]


class MaxNovelty:
    """Image novelty scores against one bank, exact, with most of the distance work pruned.

    The image score is the largest distance of any patch to its nearest bank entry
    (:meth:`edge.model.novelty.NoveltyIndex.scores` computes every patch against the whole
    bank). Most patches cannot be the largest, and this proves it cheaply, since the
    distance to ANY bank entry bounds a patch's nearest distance from above:

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
        self.bank = bank  # the array this was built from (callers compare identity)
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
        pf = np.asarray(patch_features, dtype=np.float32)
        if pf.ndim != 4:
            raise BankError(f"patch features must be [N, h, w, c], got shape {pf.shape}")
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
