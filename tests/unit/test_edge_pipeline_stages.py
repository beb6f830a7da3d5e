"""The worker's two frame stages (inference thread, scoring thread) over the loopback bus."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import edge_tinymodel as tiny
import pytest
from helpers import wait_for

from broker.codecs import decode_output
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.topics import ALL_VERDICTS, StreamRef, frame_topic
from broker.transport import Inbound
from edge.settings import EdgeSettings
from edge.startup import build_worker
from edge.worker import EdgeWorker

pytestmark = pytest.mark.unit

C1 = StreamRef.camera("s", "l", "st", "c1")
C2 = StreamRef.camera("s", "l", "st", "c2")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("tiny") / "model")


class Verdicts:
    def __init__(self, hub: LoopbackHub) -> None:
        self.tr = LoopbackTransport(hub, "observer")
        self.got: list[Any] = []
        self._lock = threading.Lock()
        self.tr.subscribe(ALL_VERDICTS, self._on)
        self.tr.start()

    def _on(self, m: Inbound) -> None:
        with self._lock:
            self.got.append(decode_output(m.topic, m.payload))

    def all(self) -> list[Any]:
        with self._lock:
            return list(self.got)

    def send(self, stream: StreamRef, seq: int, kind: str = "good") -> None:
        self.tr.publish(
            frame_topic(stream), tiny.frame(kind, seed=seq), properties={"seq": str(seq)}
        )


@pytest.fixture()
def setup(tmp_path: Path, model_dir: Path) -> Iterator[tuple[EdgeWorker, Verdicts]]:
    hub = LoopbackHub()
    obs = Verdicts(hub)
    settings = EdgeSettings(
        worker_id="W1", model_dir=model_dir, data_dir=tmp_path, max_batch=4, max_wait_ms=5
    )
    w = build_worker(settings, LoopbackTransport(hub, "edge-W1"))
    w.start((C1.key, C2.key))
    yield w, obs
    w.stop()
    obs.tr.stop()


def test_verdicts_keep_frame_order_across_batches(setup: tuple[EdgeWorker, Verdicts]) -> None:
    w, obs = setup
    for seq in range(1, 41):
        obs.send(C1 if seq % 2 else C2, seq, "defect" if seq % 7 == 0 else "good")
    wait_for(lambda: len(obs.all()) >= 40, 30, what="40 verdicts")
    got = obs.all()
    for cam in (C1, C2):
        seqs = [v.seq for v in got if v.stream == cam.key]
        assert seqs == sorted(seqs) and len(seqs) == 20
    assert {v.verdict for v in got if v.seq % 7 == 0} != {"ok"}  # defects were scored
    assert w.metrics.value("linewatch_edge_batch_size_count") >= 10  # batches of <= 4


def test_stop_finishes_every_accepted_frame(setup: tuple[EdgeWorker, Verdicts]) -> None:
    w, obs = setup
    for seq in range(1, 25):
        obs.send(C1, seq)
    wait_for(
        lambda: w.metrics.value("linewatch_edge_frames_total", outcome="received") >= 24,
        30,
        what="24 frames accepted",
    )
    w.stop()  # both stages drain: the queued batch, the one in the model, the one scored
    assert w.metrics.value("linewatch_edge_frames_total", outcome="inspected") == 24
    wait_for(lambda: len(obs.all()) >= 24, 10, what="24 verdicts")
    assert sorted(v.seq for v in obs.all()) == list(range(1, 25))
