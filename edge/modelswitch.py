"""Hot model switch: a new, hash-checked card in the model directory replaces the served model
between batches, without a restart and without losing or repeating a frame."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from edge.banks import BankBook
from edge.model.card import CARD_NAME, CardError, ModelCard, load_card, sha256_file
from edge.pipeline import (
    FrameJob,
    FrameOutcome,
    Inferred,
    Pipeline,
    PipelineConfig,
    Runner,
)
from edge.runner import bank_builder, load_runner, single_latency_s
from edge.scoring import Thresholds
from edge.settings import EdgeSettings
from edge.teachbook import TeachBook
from edge.thresholds import ThresholdBook
from edge.variations import VariationBook

log = logging.getLogger(__name__)
M = TypeVar("M")  # a loaded model, ready to serve


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve: its runner (warmed up), card thresholds and default bank."""

    runner: Runner
    thresholds: Thresholds
    bank: np.ndarray | None


def load_model(settings: EdgeSettings, model_dir: Path | None = None) -> LoadedModel:
    """Load the model of ``model_dir`` (default: the settings'); one warm-up run."""
    runner = load_runner(model_dir or settings.model_dir, settings.intra_threads)
    bank = runner.default_bank(required=settings.bank_frames == 0)
    single_latency_s(runner, repeats=1)
    return LoadedModel(runner, runner.thresholds, bank)


def make_pipeline(
    settings: EdgeSettings,
    runner: Runner,
    thresholds: Thresholds,
    bank: np.ndarray | None,
    config: PipelineConfig,
) -> Pipeline:
    """A model's pipeline with its per-camera state, as a start and a switch both build it.

    Thresholds: the card's defaults, with operators' per-camera changes restored from the
    worker's thresholds file. Banks start from the model's default bank, variation models
    from the card's (edge/variations.py); per-camera state of another model does not fit.
    """
    s = settings
    book = ThresholdBook(thresholds, s.worker_id, s.state_dir / f"{s.worker_id}.thresholds.json")
    banks = BankBook(bank, s.bank_frames, bank_builder() if s.bank_frames else None)
    defaults = getattr(runner, "variations", None)
    variations = VariationBook(defaults, s.variation_frames) if defaults is not None else None
    teach = TeachBook(kept_frames=s.teach_frames)
    return Pipeline(runner, banks, book, config, variations=variations, teach=teach)


class SwitchingPipeline:
    """The worker's pipeline, replaceable at runtime.

    The worker runs ``infer`` and ``finish`` on two threads, one batch apart, so a switch can
    fall between the two stages of a batch: each batch is therefore finished by the pipeline
    that inferred it (its model's class names, version, banks and thresholds), and the
    batcher's queue is never touched. Frames inferred before the switch name the old model,
    every later one the new model; none is dropped or run twice.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self._current = pipeline
        self._lock = threading.Lock()
        self._inferred_by: dict[int, Pipeline] = {}  # id(Inferred) -> its pipeline, until finish

    @property
    def current(self) -> Pipeline:
        return self._current

    @property
    def runner(self) -> Runner:
        return self._current.runner

    @runner.setter
    def runner(self, runner: Runner) -> None:
        self._current.runner = runner

    def infer(self, jobs: Sequence[FrameJob]) -> Inferred:
        pipeline = self._current
        inferred = pipeline.infer(jobs)
        with self._lock:
            self._inferred_by[id(inferred)] = pipeline
        return inferred

    def finish(self, inferred: Inferred, epoch: int) -> list[FrameOutcome]:
        with self._lock:
            pipeline = self._inferred_by.pop(id(inferred), self._current)
        return pipeline.finish(inferred, epoch)

    def process(self, jobs: Sequence[FrameJob], epoch: int) -> list[FrameOutcome]:
        return self.finish(self.infer(jobs), epoch)

    def forget(self, camera: str) -> None:
        """Drop a camera's per-camera state (it left this worker)."""
        current = self._current
        current.banks.forget(camera)
        if current.variations is not None:
            current.variations.forget(camera)
        if current.teach is not None:
            current.teach.forget(camera)

    def swap(self, pipeline: Pipeline) -> Pipeline:
        """Serve ``pipeline`` from the next batch on; returns the one it replaces."""
        old, self._current = self._current, pipeline
        return old


def card_path(model_dir: Path) -> Path:
    """The card of a model directory (or of the .onnx file ``model_dir`` names)."""
    return model_dir / CARD_NAME if model_dir.suffix != ".onnx" else model_dir.parent / CARD_NAME


def card_digest(model_dir: Path) -> str | None:
    """sha256 of the card file's bytes; None while there is none."""
    try:
        return hashlib.sha256(card_path(model_dir).read_bytes()).hexdigest()
    except OSError:
        return None


def check_files(
    model_dir: Path, card: ModelCard, digests: dict[tuple[str, int, int], str] | None = None
) -> list[str]:
    """What does not match the card's ``files`` record; empty when all do.

    Sizes first (a copy still under way is seen without reading anything), then sha256s.
    ``digests`` caches them by (path, size, mtime), so a file is read once per version even
    when the watcher looks again every few seconds.
    """
    base = card_path(model_dir).parent
    problems = [] if card.serve in card.files else [f"the card records no hash of {card.serve}"]
    stats: dict[str, os.stat_result] = {}
    for name, info in card.files.items():
        try:
            stats[name] = st = (base / name).stat()
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror or exc}")
            continue
        if st.st_size != info.bytes:
            problems.append(f"{name}: {st.st_size} bytes, the card says {info.bytes}")
    if problems:
        return problems
    cache = {} if digests is None else digests
    for name, info in card.files.items():
        key = (str(base / name), stats[name].st_size, stats[name].st_mtime_ns)
        try:
            digest = cache.get(key) or sha256_file(base / name)
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror or exc}")
            continue
        cache[key] = digest
        if digest != info.sha256:
            problems.append(f"{name}: sha256 differs from the card's")
    return problems


class ModelWatcher(Generic[M]):
    """Polls the model directory's card; when it changes and every file it lists matches its
    sha256, ``load`` builds the new runner (off the inference path) and ``apply`` switches.

    A card whose files do not match yet (still being copied) is retried at the next poll;
    a card that fails to load is skipped until the card changes again. The served model
    stays in place in both cases.
    """

    def __init__(
        self,
        model_dir: Path,
        interval_s: float,
        load: Callable[[Path], M],
        apply: Callable[[M], None],
        digest: str | None,
    ) -> None:
        self.model_dir, self.interval_s = model_dir, interval_s
        self._load, self._apply = load, apply
        self.digest = digest  # of the card now served
        self._refused: str | None = None  # digest of a card that failed to load
        self._told: tuple[str, tuple[str, ...]] | None = None  # last mismatch logged
        self._digests: dict[tuple[str, int, int], str] = {}  # file sha256s already computed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.switches = 0

    def poll(self) -> bool:
        """One look; True when the model was switched."""
        digest = card_digest(self.model_dir)
        if digest is None or digest in (self.digest, self._refused):
            return False
        try:
            card = load_card(card_path(self.model_dir))
        except (CardError, OSError, ValueError) as exc:
            return self._refuse(digest, f"card unreadable: {exc}")
        problems = check_files(self.model_dir, card, self._digests)
        if problems:
            if self._told != (digest, tuple(problems)):
                self._told = (digest, tuple(problems))
                log.info("new model card in %s, files not ready: %s", self.model_dir, problems)
            return False
        try:
            model = self._load(self.model_dir)
        except Exception as exc:  # ModelLoadError, onnxruntime's own, a bank that won't load
            return self._refuse(digest, f"{type(exc).__name__}: {exc}")
        if card_digest(self.model_dir) != digest:
            return False  # replaced while loading: the next poll takes the newer one
        self._apply(model)
        self.digest = digest
        self.switches += 1
        return True

    def _refuse(self, digest: str, why: str) -> bool:
        self._refused = digest
        log.error(
            "new model in %s not switched to (%s); still serving the old one", self.model_dir, why
        )
        return False

    def start(self) -> None:
        if self.interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="edge-model-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # the watcher must never take the worker down
                log.exception("model watch step failed")
