"""The served model as the edge pipeline runs it: one onnxruntime session per process with
the card's checks kept, the camera bank builder, and the start-up capacity probes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge.model.families import FamilyProjection
from edge.model.novelty import build_bank
from edge.model.runtime import ModelLoadError, OnnxModel, release_freed_memory, session_options
from edge.model.variation_set import VariationSet
from edge.pipeline import Runner
from edge.preprocess import InputSpec
from edge.scoring import Thresholds

log = logging.getLogger(__name__)


def bank_builder(max_size: int = 4096) -> Callable[[np.ndarray], np.ndarray]:
    """Builds a camera's own bank from the stacked patch features of its good frames."""
    return lambda frames: build_bank(frames, max_size=max_size)


class ModelRunner:
    """The pipeline's view of an ``edge.model.runtime.OnnxModel`` (one session per process).

    The session is rebuilt once with intra-op thread spinning off: between inferences the
    worker's own threads decode, score and publish, and spinning onnxruntime threads would
    take their CPU (measured on 2 cores: about 1.3-1.7 x the frames/s of the spinning
    default, raw onnxruntime included). The model's checks (card, hash, outputs) are kept.
    """

    def __init__(self, model: OnnxModel, intra_threads: int | None = None) -> None:
        self.model = model
        so = session_options(intra_threads)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model.session = ort.InferenceSession(
            str(model.path), so, providers=["CPUExecutionProvider"]
        )
        release_freed_memory()  # the first session's memory, back to the OS
        card = model.card
        self.spec: InputSpec = model.input_spec
        self.class_names: tuple[str, ...] = tuple(card.class_names)
        rec = card.files.get(model.path.name)
        digest = f"@{rec.sha256[:12]}" if rec is not None else ""
        self.version = f"{card.name}/{model.path.name}{digest}"[:120]
        self.thresholds = Thresholds(card.thresholds.defect, card.thresholds.novelty)
        self.variations = self._variations()
        self.families = (
            FamilyProjection.load(model.path.parent / card.families) if card.families else None
        )

    def _variations(self) -> VariationSet | None:
        card = self.model.card
        if not card.variation:
            return None
        try:
            return VariationSet.load(self.model.path.parent, card.variation)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"variation models of {self.model.path.parent}: {exc}") from None

    def run(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        out = self.model.run(batch)
        if not self.model.card.defect_head:  # the card says the head does not separate
            out["defect_score"] = np.zeros_like(out["defect_score"])
        return out

    def default_bank(self, required: bool) -> np.ndarray | None:
        """The card's nominal bank; None when absent and not ``required``."""
        try:
            return self.model.load_bank()
        except ModelLoadError:
            if required:
                raise
            log.warning("no default nominal bank for %s: cameras build their own", self.model.path)
            return None


def load_runner(model_dir: Path, intra_threads: int | None = None) -> ModelRunner:
    """Load the card's ``serve`` file from ``model_dir``; ModelLoadError names the file."""
    return ModelRunner(OnnxModel(model_dir, intra_threads=intra_threads), intra_threads)


def single_latency_s(runner: Runner, repeats: int = 3) -> float:
    """Median wall time of a one-image inference (after a warm-up run)."""
    size = runner.spec.size
    x = np.zeros((1, size, size, 3), np.float32)
    runner.run(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner.run(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def batch_fps(runner: Runner, batch: int) -> float:
    """Images/s of one full batch (a start-up capacity estimate before real traffic)."""
    size = runner.spec.size
    x = np.zeros((batch, size, size, 3), np.float32)
    t0 = time.perf_counter()
    runner.run(x)
    return batch / max(time.perf_counter() - t0, 1e-6)
