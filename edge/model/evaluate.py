"""Held-out quality of a model: AUROCs, false positives, per-family recall, family ARI, parity."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, roc_auc_score
from tqdm import tqdm

from edge.model.dataset import Dataset
from edge.model.novelty import family_descriptor, novelty_scores
from edge.preprocess import InputSpec

Outputs = dict[str, np.ndarray]
GOOD = "good"


def infer(
    run: Callable[[np.ndarray], Outputs],
    ds: Dataset,
    spec: InputSpec,
    batch: int = 32,
    desc: str = "infer",
) -> Outputs:
    """Run ``run`` over the dataset in batches; outputs concatenated by name."""
    parts: dict[str, list[np.ndarray]] = {}
    total = (len(ds) + batch - 1) // batch
    for x in tqdm(ds.batches(spec, batch), total=total, desc=desc, unit="batch", leave=False):
        for k, v in run(x).items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in parts.items()}


def threshold_at(scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold that flags at most ``fpr`` of these (good) scores."""
    s = np.sort(np.asarray(scores, np.float64))
    k = int(np.floor(len(s) * (1.0 - fpr)))
    return float(s[min(k, len(s) - 1)] + 1e-6)


def choose_thresholds(
    defect_good: np.ndarray, novelty_good: np.ndarray, target_fpr: float = 0.01
) -> tuple[float, float]:
    """Operating point from held-out good parts: each signal gets half the FPR budget."""
    d = threshold_at(defect_good, target_fpr / 2)
    n = threshold_at(novelty_good, target_fpr / 2)
    return float(np.clip(d, 1e-4, 1 - 1e-4)), max(n, 1e-6)


def _auroc(y: np.ndarray, s: np.ndarray) -> float | None:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


def family_ari(descriptors: np.ndarray, families: Sequence[str], seed: int = 0) -> float | None:
    """ARI between K-Means (K = number of true families) and the true families."""
    names = sorted(set(families))
    if len(names) < 2 or len(descriptors) < len(names):
        return None
    km = KMeans(n_clusters=len(names), n_init=10, random_state=seed)
    pred = km.fit_predict(np.asarray(descriptors, np.float64))
    return float(adjusted_rand_score([names.index(f) for f in families], pred))


def quality(
    out: Outputs,
    labels: Sequence[str],
    bank: np.ndarray,
    thresholds: tuple[float, float],
    held_out: str | None,
) -> dict[str, Any]:
    """Every figure of ``linewatch model eval`` from model outputs on a labelled test set."""
    lab = np.asarray(labels)
    bad = lab != GOOD
    d = np.asarray(out["defect_score"], np.float64).reshape(-1)
    n = novelty_scores(out["patch_features"], bank).astype(np.float64)
    th_d, th_n = thresholds
    combined = np.maximum(d / th_d, n / th_n)
    flagged = combined >= 1.0
    res: dict[str, Any] = {
        "image_auroc": _auroc(bad, combined),
        "head_auroc": _auroc(bad, d),
        "novelty_image_auroc": _auroc(bad, n),
        "good_fpr": float(flagged[~bad].mean()) if (~bad).any() else None,
        "thresholds": {"defect": th_d, "novelty": th_n},
        "n_test": len(lab),
        "n_good": int((~bad).sum()),
    }
    res["per_family_recall"] = {
        str(f): float(flagged[lab == f].mean()) for f in sorted(set(lab[bad].tolist()))
    }
    if held_out and (lab == held_out).any():
        keep = (lab == held_out) | ~bad
        res["novelty_auroc"] = _auroc(lab[keep] == held_out, n[keep])
        res["held_out_family"] = held_out
    else:
        res["novelty_auroc"] = _auroc(bad, n)
    if bad.sum() >= 2:
        sub = {k: v[bad] for k, v in out.items()}
        desc = family_descriptor(sub, bank)
        res["family_ari"] = family_ari(desc, lab[bad].tolist())
        known = lab[bad] != held_out if held_out else np.ones(int(bad.sum()), bool)
        res["family_ari_known"] = family_ari(desc[known], lab[bad][known].tolist())
    else:
        res["family_ari"] = None
    return res


def class_accuracy(out: Outputs, labels: Sequence[str], class_names: Sequence[str]) -> float | None:
    """Accuracy of the class head on the parts whose label is a known class."""
    idx = [i for i, x in enumerate(labels) if x in class_names]
    if not idx:
        return None
    pred = np.asarray(out["class_scores"])[idx].argmax(axis=1)
    true = np.array([list(class_names).index(labels[i]) for i in idx])
    return float((pred == true).mean())


def parity(
    a: Outputs, b: Outputs, names: Sequence[str] = ("embedding", "defect_score", "patch_features")
) -> dict[str, Any]:
    """Max abs difference and mean cosine similarity per output (e.g. fp32 vs int8)."""
    res: dict[str, Any] = {}
    for k in names:
        x = np.asarray(a[k], np.float64).reshape(len(a[k]), -1)
        y = np.asarray(b[k], np.float64).reshape(len(b[k]), -1)
        cos = np.sum(x * y, 1) / np.maximum(
            np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-12
        )
        res[k] = {"max_abs_diff": float(np.abs(x - y).max()), "cosine": float(cos.mean())}
    return res
