"""Good-frame sampling for retraining from history: one in N frames a worker judged ok, per
camera, kept at model-input size as a PNG and published to the store (``HistoryFrame``)."""

from __future__ import annotations

import io
import threading
from datetime import datetime

import numpy as np
from PIL import Image

from broker.teach_messages import HistoryFrame


class HistorySampler:
    """Counts each camera's ok frames and samples every ``every``-th (the first one first)."""

    def __init__(self, every: int, worker: str) -> None:
        if every < 1:
            raise ValueError(f"history sampling needs every >= 1, not {every}")
        self.every, self.worker = every, worker
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def due(self, camera: str) -> bool:
        """Count one ok frame of ``camera``; True when this one is to be kept."""
        with self._lock:
            n = self._seen.get(camera, 0)
            self._seen[camera] = n + 1
        return n % self.every == 0

    def sample(
        self, camera: str, key: str, pixels: np.ndarray, model_version: str, ts: datetime
    ) -> HistoryFrame:
        """The message keeping ``pixels`` (uint8 RGB at model-input size) as a PNG."""
        buf = io.BytesIO()
        Image.fromarray(np.asarray(pixels, np.uint8)).save(buf, format="PNG")
        return HistoryFrame(
            key=key,
            stream=camera,
            image=buf.getvalue(),
            model_version=model_version[:128],
            worker=self.worker,
            ts=ts,
        )
