"""The frame pipeline on a tiny ONNX model: scoring, per-camera banks, bad frames in a batch."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import edge_tinymodel as tiny
import numpy as np
import pytest

from broker.codecs import decode_input
from broker.embeddings import embedding_from_bytes
from broker.messages import FrameIn
from broker.topics import StreamRef, frame_topic
from edge.acks import AckTracker
from edge.banks import BankBook
from edge.model.runtime import ModelLoadError
from edge.pipeline import FrameJob, Pipeline, PipelineConfig
from edge.runner import ModelRunner, bank_builder, load_runner, single_latency_s
from edge.scoring import Thresholds
from edge.thresholds import ThresholdBook

pytestmark = pytest.mark.unit

C1 = StreamRef.camera("s", "l", "st", "c1")
C2 = StreamRef.camera("s", "l", "st", "c2")


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> ModelRunner:
    return load_runner(tiny.build(tmp_path_factory.mktemp("tiny") / "m"))


def job(stream: StreamRef, data: bytes, seq: int) -> FrameJob:
    frame = decode_input(frame_topic(stream), data, {"seq": str(seq)}, f"r{seq}")
    assert isinstance(frame, FrameIn)
    return FrameJob(
        frame=frame,
        topic=frame_topic(stream),
        payload=data,
        receipt=f"r{seq}",
        pending=AckTracker().open(lambda: None),
        received_at=datetime.now(UTC),
        received_mono=0.0,
    )


def broken_body(png: bytes) -> bytes:
    """A PNG whose header and chunk framing pass the codec but whose image data is broken."""
    at = png.index(b"IDAT") + 4
    return png[:at] + bytes(b ^ 0x5A for b in png[at : at + 40]) + png[at + 40 :]


def pipeline(runner: ModelRunner, banks: BankBook) -> Pipeline:
    th = ThresholdBook(runner.thresholds, "W1")
    return Pipeline(runner, banks, th, PipelineConfig("W1"), clock=lambda: 0.005)


def test_card_defaults_and_version(runner: ModelRunner) -> None:
    assert runner.thresholds == Thresholds(tiny.DEFECT_T, tiny.NOVELTY_T)
    assert runner.class_names == tiny.CLASSES
    assert runner.version.startswith("tiny-test/model.onnx@")
    assert 0 < single_latency_s(runner) < 1.0


def test_batch_with_a_corrupt_frame(runner: ModelRunner) -> None:
    p = pipeline(runner, BankBook(runner.default_bank(True)))
    good = tiny.frame("good", fmt="JPEG")
    corrupt = broken_body(tiny.frame("good"))
    jobs = [job(C1, good, 1), job(C1, tiny.frame("defect"), 2), job(C2, corrupt, 3)]
    out = p.process(jobs, epoch=3)
    assert out[0].verdict is not None and out[0].verdict.verdict == "ok"
    assert out[0].verdict.latency_ms == pytest.approx(5.0)
    assert out[1].verdict is not None and out[1].verdict.verdict == "defect"
    assert out[1].alert is not None and out[1].alert.severity == "critical"
    assert out[1].features is not None and out[1].features.epoch == 3
    assert out[2].error is not None and out[2].verdict is None
    assert out[2].error.reason == "bad_image"


def test_all_frames_corrupt_skips_inference(runner: ModelRunner) -> None:
    p = pipeline(runner, BankBook(None))
    [out] = p.process([job(C1, broken_body(tiny.frame("good")), 1)], 0)
    assert out.error is not None and out.verdict is None


def test_camera_builds_its_own_bank_from_good_frames(runner: ModelRunner) -> None:
    banks = BankBook(None, build_frames=3, build=bank_builder(64))
    p = pipeline(runner, banks)
    first = p.process([job(C1, tiny.frame("good", seed=i), i) for i in range(2)], 0)
    assert all(o.verdict and o.verdict.novelty_score == 0.0 for o in first)  # no bank yet
    assert banks.collected(C1.key) == 2 and not banks.own(C1.key)
    p.process([job(C1, tiny.frame("good", seed=9), 9)], 0)
    assert banks.own(C1.key) and not banks.own(C2.key)
    [anom] = p.process([job(C1, tiny.frame("anomaly", seed=5), 10)], 0)
    assert anom.verdict is not None and anom.verdict.verdict == "anomaly"
    [other] = p.process([job(C2, tiny.frame("anomaly", seed=5), 1)], 0)
    assert other.verdict is not None and other.verdict.verdict == "ok"  # c2 has no bank yet


def test_features_without_a_bank_use_the_embedding(runner: ModelRunner) -> None:
    p = pipeline(runner, BankBook(None))
    [out] = p.process([job(C1, tiny.frame("defect"), 1)], 0)
    assert out.features is not None and out.features.dim == 8
    vec = embedding_from_bytes(out.features.embedding, 8)
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 0.01


def test_missing_model_or_bank_named(tmp_path: Path, runner: ModelRunner) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_runner(tmp_path / "nothing")
    d = tiny.build(tmp_path / "nobank", bank=False)
    r = load_runner(d)
    assert r.default_bank(required=False) is None
    with pytest.raises(ModelLoadError, match="nominal_bank"):
        r.default_bank(required=True)


def test_bank_book_is_thread_safe(runner: ModelRunner) -> None:
    built: list[int] = []

    def build(frames: np.ndarray) -> np.ndarray:
        built.append(len(frames))
        return frames[0, 0]

    banks = BankBook(None, build_frames=50, build=build)
    feats = np.ones((4, 4, 3), np.float32)

    def offer() -> None:
        for _ in range(20):
            banks.offer(C1.key, feats)

    threads = [threading.Thread(target=offer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert built == [50] and banks.own(C1.key)


def test_bank_book_needs_a_builder() -> None:
    with pytest.raises(ValueError):
        BankBook(None, build_frames=3)
