"""The frame path: decode → preprocess → infer (one onnxruntime session) → score → messages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
from PIL import Image

from broker.codecs import Rejected
from broker.embeddings import embedding_to_bytes
from broker.messages import Alert, Features, FrameIn, Verdict, utcnow
from broker.teach_messages import HistoryFrame
from edge.acks import InputAck
from edge.anomaly import RowScore, overlay, score_rows
from edge.banks import BankBook
from edge.evidence import thumbnail
from edge.history import HistorySampler
from edge.model.novelty import family_descriptor
from edge.preprocess import (
    InputSpec,
    PreprocessError,
    decode_image,
    preprocess_images,
    resize,
    to_rgb,
)
from edge.scoring import Decision, decide
from edge.teachbook import TeachBook
from edge.teachscore import TeachMaps
from edge.thresholds import ThresholdBook
from edge.variations import VariationBook

log = logging.getLogger(__name__)

REQUIRED_OUTPUTS = ("defect_score", "class_scores", "patch_features")


class Runner(Protocol):
    """What the pipeline needs of a loaded model (see edge/model/runtime.py)."""

    @property
    def spec(self) -> InputSpec: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def version(self) -> str: ...

    def run(self, batch: np.ndarray) -> Mapping[str, np.ndarray]: ...


@dataclass
class FrameJob:
    """One accepted frame on its way through the worker."""

    frame: FrameIn
    topic: str
    payload: bytes
    receipt: str
    pending: InputAck
    received_at: datetime
    received_mono: float
    # epoch admitted under, carried by its outputs: a worker that missed a revocation and got
    # the stream back cannot pass old frames off as the new ownership's (the store's fence)
    epoch: int | None = None


@dataclass
class FrameOutcome:
    """What one frame produced: messages to publish, or the reason it was rejected."""

    job: FrameJob
    verdict: Verdict | None = None
    alert: Alert | None = None
    features: Features | None = None
    error: Rejected | None = None
    history: HistoryFrame | None = None  # a sampled good frame kept for retraining


@dataclass
class Inferred:
    """A batch between the two stages: model outputs for the rows ``ok_idx`` of ``outcomes``."""

    outcomes: list[FrameOutcome]
    ok_idx: list[int]
    images: list[Image.Image]
    outputs: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class PipelineConfig:
    worker: str
    max_pixels: int = 40_000_000
    thumbnail_px: int = 384
    thumbnail_bytes: int = 48_000
    history_sample_every: int = 0  # keep one in N ok frames per camera for retraining; 0: off


class Pipeline:
    """Turns batches of frames into verdicts, alerts and features (no I/O besides the model).

    One instance per process. ``process`` = ``finish(infer(jobs))``; the worker runs the two
    stages on two threads (``infer`` on the inference thread, ``finish`` on the scoring
    thread, one batch behind) so scoring a batch overlaps the model's run on the next.
    """

    def __init__(
        self,
        runner: Runner,
        banks: BankBook,
        thresholds: ThresholdBook,
        config: PipelineConfig,
        clock: Callable[[], float] = time.monotonic,
        variations: VariationBook | None = None,
        teach: TeachBook | None = None,
    ) -> None:
        self.runner = runner
        self.teach = teach
        self.banks = banks
        self.variations = variations
        self.thresholds = thresholds
        self.config = config
        self._clock = clock
        every = config.history_sample_every
        self.history = HistorySampler(every, config.worker) if every > 0 else None

    def process(self, jobs: Sequence[FrameJob], epoch: int) -> list[FrameOutcome]:
        """Decode, infer and score ``jobs``; undecodable frames come back with ``error``."""
        return self.finish(self.infer(jobs), epoch)

    def infer(self, jobs: Sequence[FrameJob]) -> Inferred:
        """First stage: decode and preprocess the frames, run the model on them."""
        outcomes = [FrameOutcome(job) for job in jobs]
        images: list[Image.Image] = []
        ok_idx: list[int] = []
        for i, job in enumerate(jobs):
            try:
                images.append(decode_image(job.frame.image, self.config.max_pixels))
                ok_idx.append(i)
            except PreprocessError as exc:
                outcomes[i].error = Rejected(exc.reason, exc.detail)
        if not ok_idx:
            return Inferred(outcomes, [], [], {})
        outputs = self.runner.run(preprocess_images(images, self.runner.spec))
        missing = [k for k in REQUIRED_OUTPUTS if k not in outputs]
        if missing:
            raise RuntimeError(f"model outputs lack {missing}")
        return Inferred(outcomes, ok_idx, images, outputs)

    def finish(self, inferred: Inferred, epoch: int) -> list[FrameOutcome]:
        """Second stage: novelty, verdicts and messages of an inferred batch."""
        outcomes, ok_idx = inferred.outcomes, inferred.ok_idx
        if not ok_idx:
            return outcomes
        outputs = inferred.outputs
        cameras = [outcomes[i].job.frame.stream.key for i in ok_idx]
        rows: list[RowScore | None] = [None] * len(ok_idx)
        if self.variations is not None:
            rows = list(
                score_rows(
                    self.variations,
                    cameras,
                    inferred.images,
                    self.runner.spec.size,
                    getattr(self.runner, "families", None),
                )
            )
            novelty = np.array([r.scored.score for r in rows if r is not None], np.float32)
        else:
            novelty = self._novelty(outputs, cameras)
        maps = TeachMaps(self.teach, cameras, rows, outputs["patch_features"], self.banks)
        novelty = maps.adjust(novelty)  # operators' teaching (edge/teach.py)
        for row, i in enumerate(ok_idx):
            admitted = outcomes[i].job.epoch
            self._finish(
                outcomes[i],
                row,
                outputs,
                float(novelty[row]),
                inferred.images[row],
                epoch if admitted is None else admitted,
                rows[row],
            )
        maps.observe([outcomes[i].verdict for i in ok_idx], novelty, inferred.images, self.runner)
        return outcomes

    def _novelty(self, outputs: Mapping[str, np.ndarray], cameras: list[str]) -> np.ndarray:
        """Novelty per row, each against its camera's bank (0 where a camera has no bank)."""
        pf = outputs["patch_features"]
        scores = np.zeros(len(cameras), np.float32)
        for cam in dict.fromkeys(cameras):
            rows = [r for r, c in enumerate(cameras) if c == cam]
            index = self.banks.index(cam)
            if index is not None:
                scores[rows] = index.scores(pf[rows])
        return scores

    def _finish(
        self,
        out: FrameOutcome,
        row: int,
        outputs: Mapping[str, np.ndarray],
        novelty: float,
        image: Image.Image,
        epoch: int,
        vrow: RowScore | None = None,
    ) -> None:
        job = out.job
        cam = job.frame.stream.key
        th = self.thresholds.get(cam)
        th = th if self.teach is None else self.teach.thresholds(cam, th)  # taught θn
        d = decide(
            float(np.asarray(outputs["defect_score"]).reshape(-1)[row]),
            novelty,
            outputs["class_scores"][row],
            self.runner.class_names,
            th,
        )
        if d.verdict == "ok" and self.banks.wants(cam):
            self.banks.offer(cam, outputs["patch_features"][row])
        if d.verdict == "ok" and vrow is not None and self.variations is not None:
            self.variations.offer(cam, vrow.pixels)
        now = utcnow()
        latency = (self._clock() - job.received_mono) * 1000.0
        f = job.frame
        out.verdict = Verdict(
            stream=cam,
            key=f.key,
            seq=f.seq,
            epoch=epoch,
            worker=self.config.worker,
            captured_at=f.captured_at,
            received_at=job.received_at,
            decided_at=now,
            verdict=d.verdict,
            defect_score=d.defect_score,
            novelty_score=d.novelty_score,
            predicted_class=d.predicted_class,
            model_version=self.runner.version,
            latency_ms=max(latency, 0.0),
            part=f.part,
        )
        if d.verdict == "ok" and self.history is not None and self.history.due(cam):
            px = vrow.pixels if vrow is not None else resize(to_rgb(image), self.runner.spec.size)
            out.history = self.history.sample(cam, f.key, np.asarray(px), self.runner.version, now)
        if d.verdict != "ok":
            evidence = overlay(image, vrow) if vrow is not None else image
            out.alert = self._alert(job, d, evidence, epoch, now)
            out.features = self._features(job, d, outputs, row, epoch, now, vrow)

    def _alert(
        self, job: FrameJob, d: Decision, image: Image.Image, epoch: int, now: datetime
    ) -> Alert:
        s = job.frame.stream
        what = d.predicted_class if d.verdict == "defect" else "unknown anomaly"
        try:
            thumb: bytes | None = thumbnail(
                image, self.config.thumbnail_px, self.config.thumbnail_bytes
            )
        except (ValueError, OSError) as exc:
            log.warning("no thumbnail for %s: %s", job.frame.key, exc)
            thumb = None
        assert d.severity is not None
        return Alert(
            event_id=f"{job.frame.key}!{d.verdict}",
            kind=d.verdict,  # type: ignore[arg-type]
            severity=d.severity,
            site=s.site,
            line=s.line,
            station=s.station,
            stream=s.key,
            frame_key=job.frame.key,
            message=(
                f"{d.verdict} on {s.name}: {what} (defect {d.defect_score:.3f}, "
                f"novelty {d.novelty_score:.3g})"
            ),
            thumbnail=thumb,
            worker=self.config.worker,
            epoch=epoch,
            ts=now,
        )

    def _features(
        self,
        job: FrameJob,
        d: Decision,
        outputs: Mapping[str, np.ndarray],
        row: int,
        epoch: int,
        now: datetime,
        vrow: RowScore | None = None,
    ) -> Features:
        bank = self.banks.get(job.frame.stream.key)
        if vrow is not None:  # what the anomaly looks like (edge/model/variation.py)
            vec = vrow.descriptor()
        elif bank is not None:
            vec = family_descriptor(
                {"patch_features": outputs["patch_features"][row : row + 1]}, bank
            )[0]
        else:  # no nominal bank: the pooled embedding, unit length
            emb = np.asarray(outputs.get("embedding", outputs["class_scores"]))[row]
            vec = emb / max(float(np.linalg.norm(emb)), 1e-12)
        vec = np.nan_to_num(np.asarray(vec, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return Features(
            stream=job.frame.stream.key,
            key=job.frame.key,
            epoch=epoch,
            worker=self.config.worker,
            ts=now,
            dim=int(vec.size),
            embedding=embedding_to_bytes(vec),
            verdict=d.verdict,
            predicted_class=d.predicted_class,
        )
