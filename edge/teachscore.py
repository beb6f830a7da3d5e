"""Novelty maps of one scored batch, for teaching: taught cameras' scores, flagged frames' maps.

The variation path's map is the anomaly map pooled to ``GRID`` cells; the bank path's is the
per-patch distance to the camera's bank, computed only where needed (a taught camera's
frames, and flagged frames), since the plain bank score does not need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from broker.messages import Verdict
from edge.anomaly import RowScore
from edge.banks import BankBook
from edge.model.novelty import patch_scores
from edge.preprocess import resize, to_rgb
from edge.teach import pool
from edge.teachbook import GRID, TeachBook


class TeachMaps:
    """See the module docstring; one per batch, rows in the batch's order."""

    def __init__(
        self,
        book: TeachBook | None,
        cameras: Sequence[str],
        rows: Sequence[RowScore | None],
        patch_features: np.ndarray,
        banks: BankBook,
    ) -> None:
        self.book, self.cameras, self.rows = book, cameras, rows
        self.pf, self.banks = patch_features, banks
        self._maps: dict[int, np.ndarray | None] = {}

    def get(self, i: int) -> np.ndarray | None:
        """Row ``i``'s novelty map (None when the camera has no bank and no variation model)."""
        if i not in self._maps:
            row = self.rows[i]
            if row is not None:
                m: np.ndarray | None = pool(row.scored.amap, GRID)
            else:
                bank = self.banks.get(self.cameras[i])
                m = None if bank is None else patch_scores(self.pf[i : i + 1], bank)[0]
            self._maps[i] = m
        return self._maps[i]

    def adjust(self, novelty: np.ndarray) -> np.ndarray:
        """The rows' novelty under their cameras' taught states (untaught rows unchanged)."""
        out = np.array(novelty, np.float32, copy=True)
        if self.book is None:  # a pipeline that keeps no taught state
            return out
        for i, cam in enumerate(self.cameras):
            if not self.book.active(cam) or not np.isfinite(out[i]):
                continue
            m = self.get(i)
            if m is not None:
                out[i] = self.book.state(cam).score(m)
        return out

    def observe(
        self,
        verdicts: Sequence[Verdict | None],
        novelty: np.ndarray,
        images: Sequence[Image.Image],
        runner: Any,
    ) -> None:
        """Tell the book about each decided row: ok frames' scores, flagged frames' maps and
        model-input pixels."""
        if self.book is None:
            return
        for i, v in enumerate(verdicts):
            if v is None:
                continue
            cam, score = self.cameras[i], float(novelty[i])
            if v.verdict == "ok":
                self.book.observe(cam, v.key, v.verdict, score, None, None)
                continue
            row = self.rows[i]
            px = (
                row.pixels
                if row is not None
                else np.asarray(resize(to_rgb(images[i]), runner.spec.size), np.uint8)
            )
            self.book.observe(cam, v.key, v.verdict, score, self.get(i), px)
