"""The edge worker's taught state of each camera, and the recent frames feedback can refer to.

Thread-safe. Per camera it keeps: the taught state (edge/teach.py), the novelty scores of its
last ``good_frames`` frames judged ok, and the novelty map and model-input pixels of its last
``kept_frames`` flagged frames (a feedback names a frame by its key; a frame no longer kept
is answered ``frame_not_kept``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from broker.teach_messages import TeachTarget
from edge.scoring import Thresholds
from edge.teach import Guard, Taught, TeachError, absorb, confirm, derive_threshold

GRID = 28  # variation anomaly maps are pooled to 28 x 28 cells (8 px at 224)


@dataclass
class _Camera:
    state: Taught = field(default_factory=Taught)
    good: deque[float] = field(default_factory=lambda: deque(maxlen=200))
    kept: OrderedDict[str, tuple[np.ndarray, np.ndarray | None]] = field(
        default_factory=OrderedDict
    )
    taught: OrderedDict[str, np.ndarray] = field(default_factory=OrderedDict)


@dataclass(frozen=True)
class Change:
    """One applied (or held) change: the states before and after, recall on confirmed."""

    before: Taught
    after: Taught
    recall_before: float | None = None
    recall_after: float | None = None
    held: bool = False


class TeachBook:
    """See the module docstring."""

    def __init__(self, guard: Guard | None = None, kept_frames: int = 64, good_frames: int = 200):
        self.guard = guard or Guard()
        self.kept_frames = kept_frames
        self.good_frames = good_frames
        self._cams: dict[str, _Camera] = {}
        self._lock = threading.Lock()

    def _cam(self, camera: str) -> _Camera:
        c = self._cams.get(camera)
        if c is None:
            c = self._cams[camera] = _Camera(good=deque(maxlen=self.good_frames))
        return c

    def state(self, camera: str) -> Taught:
        with self._lock:
            c = self._cams.get(camera)
            return c.state if c is not None else Taught()

    def thresholds(self, camera: str, configured: Thresholds) -> Thresholds:
        """The camera's thresholds with its taught novelty threshold, when it has one."""
        novelty = self.state(camera).novelty
        return configured if novelty is None else Thresholds(configured.defect, novelty)

    def active(self, camera: str) -> bool:
        """True when the camera's scores need its novelty map (something was taught)."""
        return self.state(camera).allowance is not None

    # ---- frames seen (scoring thread) -----------------------------------------------------
    def observe(
        self,
        camera: str,
        key: str,
        verdict: str,
        score: float,
        nmap: np.ndarray | None,
        pixels: np.ndarray | None,
    ) -> None:
        """Remember an ok frame's score, or a flagged frame's map and pixels."""
        with self._lock:
            c = self._cam(camera)
            if verdict == "ok":
                c.good.append(float(score))
            elif nmap is not None:
                c.kept[key] = (np.asarray(nmap, np.float32), pixels)
                while len(c.kept) > self.kept_frames:
                    c.kept.popitem(last=False)

    def frame(self, camera: str, key: str) -> tuple[np.ndarray, np.ndarray | None]:
        with self._lock:
            got = self._cams.get(camera, _Camera()).kept.get(key)
        if got is None:
            raise TeachError(
                "frame_not_kept",
                f"frame {key[:200]} is not among the last {self.kept_frames} flagged frames "
                "of this camera on this worker",
            )
        return got

    # ---- changes (delivery thread) --------------------------------------------------------
    def teach(self, camera: str, key: str, configured: float, force: bool = False) -> Change:
        """``not_a_defect`` on a kept frame; held (not applied) when the recall guard trips."""
        nmap, _ = self.frame(camera, key)
        with self._lock:
            c = self._cam(camera)
            before = c.state
            if key in before.confirmed_keys:
                raise TeachError("confirmed_frame", "this frame was confirmed as a defect")
            after = absorb(before, nmap, configured, self.guard)
            maps = [*c.taught.values(), nmap]
            novelty = derive_threshold(after, list(c.good), maps, configured, self.guard)
            after = Taught(
                after.version, novelty, after.allowance, after.confirmed, after.confirmed_keys
            )
            r0, r1 = before.recall(configured), after.recall(configured)
            held = (
                not force
                and r0 is not None
                and r1 is not None
                and r0 - r1 > self.guard.max_recall_drop
            )
            if not held:
                c.state = after
                c.taught[key] = nmap
                while len(c.taught) > self.kept_frames:
                    c.taught.popitem(last=False)
        return Change(before, after, r0, r1, held)

    def confirm(self, camera: str, key: str) -> Change:
        """``confirmed`` on a kept frame: its map joins the confirmed defects."""
        nmap, _ = self.frame(camera, key)
        with self._lock:
            c = self._cam(camera)
            before = c.state
            c.state = confirm(before, key, nmap)
            c.taught.pop(key, None)
            return Change(before, c.state)

    def restore(self, camera: str, target: TeachTarget) -> Change:
        """Roll back: the camera's state becomes ``target`` exactly, as a new version."""
        restored = Taught.of(target)
        with self._lock:
            c = self._cam(camera)
            before = c.state
            c.state = Taught(
                before.version + 1,
                restored.novelty,
                restored.allowance,
                restored.confirmed,
                restored.confirmed_keys,
            )
            c.taught.clear()  # frames taught after the target are no longer taught
            return Change(before, c.state)

    def adopt(self, camera: str, target: TeachTarget) -> bool:
        """Take a retained state published earlier (by this or another worker) when newer."""
        with self._lock:
            c = self._cam(camera)
            if target.version <= c.state.version:
                return False
            c.state = Taught.of(target)
            return True

    def forget(self, camera: str) -> None:
        with self._lock:
            self._cams.pop(camera, None)
