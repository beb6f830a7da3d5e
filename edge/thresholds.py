"""Per-camera thresholds, changed at runtime by ThresholdControl; every change is announced."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from broker.messages import ThresholdChange, ThresholdControl, utcnow
from broker.topics import StreamRef
from edge.scoring import Thresholds

log = logging.getLogger(__name__)


class ThresholdError(ValueError):
    """A control request that cannot be applied (reason is a dead-letter code)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ThresholdBook:
    """The thresholds each camera runs with; the model card's defaults until changed.

    The worker publishes every applied change as a ``ThresholdChange`` on the camera's
    ``threshold_change_topic`` (the store keeps the history) and, when given a ``path``,
    keeps the current per-camera values in that JSON file so a restart keeps them.
    """

    def __init__(self, default: Thresholds, worker: str, path: Path | None = None) -> None:
        self.default = default
        self.worker = worker
        self.path = path
        self._by_camera: dict[str, Thresholds] = {}
        self._lock = threading.Lock()
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            loaded = {
                str(k): Thresholds(float(v["defect"]), float(v["novelty"])) for k, v in raw.items()
            }
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("thresholds file %s unreadable (%s); using the model card's", path, exc)
            return
        self._by_camera.update(loaded)
        log.info("thresholds of %d cameras restored from %s", len(loaded), path)

    def _save(self) -> None:
        """Write the current values atomically (called with the lock held)."""
        if self.path is None:
            return
        data = {
            k: {"defect": v.defect, "novelty": v.novelty}
            for k, v in sorted(self._by_camera.items())
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            log.error("thresholds not saved to %s: %s", self.path, exc)

    def get(self, camera: str) -> Thresholds:
        with self._lock:
            return self._by_camera.get(camera, self.default)

    def apply(self, stream: StreamRef, ctl: ThresholdControl) -> ThresholdChange:
        """Apply an operator's request; return the change to publish (or raise ThresholdError)."""
        if ctl.stream != stream.key and StreamRef.parse_key(ctl.stream) != stream:
            raise ThresholdError(
                "topic_mismatch", f"control for {ctl.stream[:120]!r} on {stream.key}'s topic"
            )
        if ctl.defect_threshold is None and ctl.novelty_threshold is None:
            raise ThresholdError("bad_schema", "give defect_threshold and/or novelty_threshold")
        with self._lock:
            before = self._by_camera.get(stream.key, self.default)
            defect = before.defect if ctl.defect_threshold is None else ctl.defect_threshold
            novelty = before.novelty if ctl.novelty_threshold is None else ctl.novelty_threshold
            try:
                after = Thresholds(defect=defect, novelty=novelty)
            except ValueError as exc:
                raise ThresholdError("bad_value", str(exc)) from None
            self._by_camera[stream.key] = after
            self._save()
        return ThresholdChange(
            key=f"{stream.key}#thr:{ctl.request_id[:100]}",
            stream=stream.key,
            defect_threshold=after.defect,
            novelty_threshold=after.novelty,
            previous_defect_threshold=before.defect,
            previous_novelty_threshold=before.novelty,
            actor=ctl.actor,
            reason=ctl.reason,
            worker=self.worker,
            ts=utcnow(),
        )
