"""The family descriptor the edge worker publishes: anomaly descriptors projected so that
the line's known defect families fall apart (a linear discriminant fitted at build time).

:func:`edge.model.variation.descriptor` says what an anomaly looks like in 17 numbers;
their scales and usefulness differ. The build fits, on its training frames' known defect
families (the held-out family is never among them), a standardisation and a linear
discriminant projection, and saves both (``families.npz``). Clustering then works in the
projected space; an unseen family lands wherever its own look puts it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FILE_NAME = "families.npz"


class FamilyProjection:
    """``(x − mean) / std`` then ``(· − centre) @ scalings`` (numpy only at serving time)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, centre: np.ndarray, scalings: np.ndarray):
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.centre, self.scalings = centre.astype(np.float32), scalings.astype(np.float32)

    @classmethod
    def fit(cls, descriptors: np.ndarray, families: Sequence[str]) -> FamilyProjection:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        x = np.asarray(descriptors, np.float64)
        mean, std = x.mean(0), x.std(0) + 1e-6
        if len(set(families)) < 2:  # nothing to discriminate: standardisation only
            return cls(mean, std, np.zeros(x.shape[1]), np.eye(x.shape[1]))
        lda = LinearDiscriminantAnalysis(solver="svd").fit((x - mean) / std, list(families))
        return cls(mean, std, lda.xbar_, lda.scalings_[:, : len(lda.classes_) - 1])

    @property
    def dim(self) -> int:
        return int(self.scalings.shape[1])

    def __call__(self, descriptors: np.ndarray) -> np.ndarray:
        x = (np.asarray(descriptors, np.float32) - self.mean) / self.std
        return (x - self.centre) @ self.scalings

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, mean=self.mean, std=self.std, centre=self.centre, scalings=self.scalings)
        return buf.getvalue()

    def save(self, path: Path) -> None:
        path.write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Path) -> FamilyProjection:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["mean"], z["std"], z["centre"], z["scalings"])
