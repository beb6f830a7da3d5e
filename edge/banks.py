"""Per-camera nominal banks: the model's default bank, or one built from a camera's good frames."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from edge.model.novelty import NoveltyIndex

log = logging.getLogger(__name__)


class BankBook:
    """The bank each camera is scored against (thread-safe).

    With ``build_frames == 0`` every camera uses ``default``. Otherwise the first
    ``build_frames`` frames of a camera that were judged good are collected (their patch
    features), ``build`` turns them into that camera's own bank, and the camera switches to
    it; until then the default bank (which may be None: novelty is then not scored) is used.
    """

    def __init__(
        self,
        default: np.ndarray | None,
        build_frames: int = 0,
        build: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if build_frames and build is None:
            raise ValueError("building per-camera banks needs a build function")
        self.default = default
        self.build_frames = build_frames
        self._build = build
        self._default_index = NoveltyIndex(default) if default is not None else None
        self._banks: dict[str, np.ndarray] = {}
        self._indexes: dict[str, NoveltyIndex] = {}
        self._collect: dict[str, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, camera: str) -> np.ndarray | None:
        with self._lock:
            return self._banks.get(camera, self.default)

    def index(self, camera: str) -> NoveltyIndex | None:
        """The camera's bank prepared for novelty scoring (None: no bank yet)."""
        with self._lock:
            return self._indexes.get(camera, self._default_index)

    def own(self, camera: str) -> bool:
        """True once the camera has its own bank."""
        with self._lock:
            return camera in self._banks

    def wants(self, camera: str) -> bool:
        """True while good frames of ``camera`` are still being collected."""
        if not self.build_frames:
            return False
        with self._lock:
            return camera not in self._banks

    def offer(self, camera: str, features: np.ndarray) -> bool:
        """Add one good frame's features; True when this completed the camera's own bank."""
        if not self.wants(camera):
            return False
        with self._lock:
            got = self._collect.setdefault(camera, [])
            got.append(np.array(features, dtype=np.float32, copy=True))
            if len(got) < self.build_frames:
                return False
            frames = np.stack(self._collect.pop(camera))
        assert self._build is not None
        bank = np.ascontiguousarray(self._build(frames), dtype=np.float32)
        index = NoveltyIndex(bank)
        with self._lock:
            self._banks[camera] = bank
            self._indexes[camera] = index
        log.info(
            "camera %s: own nominal bank built from %d good frames (%d entries)",
            camera,
            len(frames),
            len(bank),
        )
        return True

    def collected(self, camera: str) -> int:
        with self._lock:
            return len(self._collect.get(camera, ()))

    def forget(self, camera: str) -> None:
        with self._lock:
            self._banks.pop(camera, None)
            self._indexes.pop(camera, None)
            self._collect.pop(camera, None)
