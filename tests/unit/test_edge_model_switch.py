"""Hot model switch: a new, hash-checked card is served from the next batch on; no frame is
lost or doubled, and every verdict names the model that judged it."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import edge_tinymodel as tiny
import pytest
from helpers import wait_for

from broker.codecs import decode_output
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.messages import Verdict
from broker.topics import Route, StreamRef, frame_topic, parse
from broker.transport import Inbound
from edge.model.card import CARD_NAME, FileInfo, load_card, save_card
from edge.modelswitch import ModelWatcher, SwitchingPipeline, card_digest, check_files
from edge.pipeline import Pipeline
from edge.settings import EdgeSettings
from edge.startup import build_worker

pytestmark = pytest.mark.unit

C1 = StreamRef.camera("s1", "L1", "st1", "c1")


def _next_model(model_dir: Path, stage: Path, name: str) -> None:
    """Land a new model in ``model_dir`` the way a deploy should: files first, card last."""
    tiny.build(stage)
    card = load_card(stage / CARD_NAME).model_copy(update={"name": name})
    for f in ("model.onnx", "nominal_bank.npy"):
        shutil.copy(stage / f, model_dir / f".{f}.tmp")
        os.replace(model_dir / f".{f}.tmp", model_dir / f)
    save_card(card, stage / "next.card.json")
    os.replace(stage / "next.card.json", model_dir / CARD_NAME)


@pytest.fixture()
def verdicts() -> Iterator[tuple[LoopbackHub, list[Verdict]]]:
    hub = LoopbackHub()
    got: list[Verdict] = []
    lock = threading.Lock()

    def on(m: Inbound) -> None:
        if parse(m.topic).route is Route.VERDICT:
            v = decode_output(m.topic, m.payload)
            assert isinstance(v, Verdict)
            with lock:
                got.append(v)

    obs = LoopbackTransport(hub, "observer")
    obs.subscribe("lw/v1/+/+/+/camera/+/verdict", on)
    obs.start()
    yield hub, got
    obs.stop()


def test_a_worker_under_load_switches_without_losing_or_doubling_a_frame(
    tmp_path: Path, verdicts: tuple[LoopbackHub, list[Verdict]]
) -> None:
    hub, got = verdicts
    model_dir = tiny.build(tmp_path / "model")
    settings = EdgeSettings(
        worker_id="W1", model_dir=model_dir, data_dir=tmp_path, max_wait_ms=5, max_batch=4,
        heartbeat_s=0.1, model_watch_s=0.05, camera_queue=1000, total_queue=1000,
    )  # fmt: skip
    tr = LoopbackTransport(hub, "edge-W1")
    worker = build_worker(settings, tr)
    worker.start((C1.key,))
    pub = LoopbackTransport(hub, "camera")
    pub.start()
    n, switched_at = 240, 80
    images = [tiny.frame("defect" if i % 7 == 0 else "good", seed=i) for i in range(8)]
    try:
        old = worker.model_version
        for seq in range(n):
            pub.publish(frame_topic(C1), images[seq % 8], properties={"seq": str(seq)})
            if seq == switched_at:
                _next_model(model_dir, tmp_path / "stage", "tiny-next")
            if seq % 20 == 19:  # keep a backlog, but let the worker breathe
                wait_for(lambda s=seq: len(got) >= s - 40, 10, what="verdicts keep up")
        wait_for(lambda: len(got) >= n, 30, what=f"{n} verdicts")
        wait_for(lambda: tr.stats()["acked"] >= n, 10, what="every frame acked")
    finally:
        pub.stop()
        worker.stop()
    assert sorted(v.seq or 0 for v in got) == list(range(n))  # none lost, none doubled
    versions = [v.model_version for v in sorted(got, key=lambda v: v.seq or 0)]
    new = worker.model_version
    assert new != old and new.startswith("tiny-next/") and set(versions) == {old, new}
    first_new = versions.index(new)
    assert versions[first_new:] == [new] * (n - first_new)  # one switch, in frame order
    assert first_new > switched_at // 2
    assert worker.model_watch is not None and worker.model_watch.switches == 1


def test_a_card_whose_files_do_not_match_waits_and_a_bad_model_is_refused(
    tmp_path: Path,
) -> None:
    model_dir = tiny.build(tmp_path / "model")
    applied: list[str] = []
    fail = {"load": False}

    def load(d: Path) -> str:
        if fail["load"]:
            raise RuntimeError("onnxruntime says no")
        return load_card(d / CARD_NAME).name

    watch = ModelWatcher(model_dir, 0, load, applied.append, card_digest(model_dir))
    assert not watch.poll() and applied == []  # nothing new
    card = load_card(model_dir / CARD_NAME)
    bogus = {"model.onnx": FileInfo(sha256="0" * 64, bytes=card.files["model.onnx"].bytes)}
    half = card.model_copy(update={"name": "half-copied", "files": bogus})
    save_card(half, model_dir / CARD_NAME)
    assert check_files(model_dir, load_card(model_dir / CARD_NAME))
    assert not watch.poll() and not watch.poll() and applied == []  # waits for the files
    save_card(card.model_copy(update={"name": "whole"}), model_dir / CARD_NAME)
    assert watch.poll() and applied == ["whole"]
    fail["load"] = True
    save_card(card.model_copy(update={"name": "broken"}), model_dir / CARD_NAME)
    assert not watch.poll() and not watch.poll() and applied == ["whole"]  # refused once
    fail["load"] = False
    assert not watch.poll()  # the same refused card is not retried
    save_card(card.model_copy(update={"name": "fixed"}), model_dir / CARD_NAME)
    assert watch.poll() and applied == ["whole", "fixed"]
    (model_dir / CARD_NAME).write_text("{not json")
    assert not watch.poll() and applied == ["whole", "fixed"]


class _Stage:
    """A stand-in pipeline: remembers what it inferred and finished."""

    def __init__(self, name: str) -> None:
        self.name, self.runner, self.finished = name, name, 0

    def infer(self, jobs: Any) -> Any:
        return type("Inferred", (), {"by": self.name})()

    def finish(self, inferred: Any, epoch: int) -> Any:
        self.finished += 1
        return [(inferred.by, self.name)]


def test_each_batch_is_finished_by_the_pipeline_that_inferred_it() -> None:
    a, b = _Stage("a"), _Stage("b")
    sw = SwitchingPipeline(cast(Pipeline, a))
    first = sw.infer([])
    assert sw.swap(cast(Pipeline, b)) is cast(Pipeline, a)
    assert cast(Any, sw.runner) == "b"
    second = sw.infer([])
    assert sw.finish(first, 0) == [("a", "a")] and sw.finish(second, 0) == [("b", "b")]
    assert (a.finished, b.finished) == (1, 1)
