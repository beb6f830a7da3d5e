"""Per-camera variation models in the edge worker: which model scores a camera's frames.

A camera sees one product. Each camera is scored by the build's variation model of its part
type, found from its first frames (the model that explains them best); with
``build_frames > 0`` the camera then fits its own model from that many frames judged good
and switches to it (its own lighting, fixture and product). Thread-safe.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from edge.model.variation import Scored, VariationModel
from edge.model.variation_set import VariationSet

log = logging.getLogger(__name__)


class VariationBook:
    """The variation model of each camera (see the module docstring)."""

    def __init__(
        self, defaults: VariationSet, build_frames: int = 0, match_frames: int = 4
    ) -> None:
        self.defaults = defaults
        self.build_frames = build_frames
        self.match_frames = max(1, match_frames)
        self._bound: dict[str, VariationModel] = {}
        self._own: set[str] = set()
        self._seen: dict[str, list[np.ndarray]] = {}
        self._good: dict[str, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def model_for(self, camera: str, image: np.ndarray) -> VariationModel:
        """The camera's model; while unbound, the default that fits this frame best."""
        with self._lock:
            bound = self._bound.get(camera)
        if bound is not None:
            return bound
        if len(self.defaults.models) == 1:
            only = next(iter(self.defaults.models.values()))
            with self._lock:
                self._bound[camera] = only
            return only
        with self._lock:
            seen = self._seen.setdefault(camera, [])
            seen.append(image)
            ready = len(seen) >= self.match_frames
            frames = np.stack(seen) if ready else image[None]
        key = self.defaults.match(frames)
        if ready:
            with self._lock:
                self._bound.setdefault(camera, self.defaults.models[key])
                self._seen.pop(camera, None)
            log.info("camera %s: scored with the %r variation model", camera, key)
        return self.defaults.models[key]

    def score(self, camera: str, image: np.ndarray) -> tuple[Scored, VariationModel]:
        model = self.model_for(camera, image)
        return model.score_one(image, keep=True), model

    def own(self, camera: str) -> bool:
        with self._lock:
            return camera in self._own

    def offer(self, camera: str, image: np.ndarray) -> bool:
        """A frame judged good; True when it completed the camera's own model."""
        if not self.build_frames:
            return False
        with self._lock:
            if camera in self._own:
                return False
            got = self._good.setdefault(camera, [])
            got.append(image)
            if len(got) < self.build_frames:
                return False
            frames = np.stack(self._good.pop(camera))
        model = VariationModel.fit(frames)
        with self._lock:
            self._bound[camera] = model
            self._own.add(camera)
        log.info("camera %s: own variation model fitted on %d good frames", camera, len(frames))
        return True

    def forget(self, camera: str) -> None:
        with self._lock:
            self._bound.pop(camera, None)
            self._seen.pop(camera, None)
            self._good.pop(camera, None)
            self._own.discard(camera)
