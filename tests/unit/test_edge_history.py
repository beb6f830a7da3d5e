"""Good-frame sampling for retraining: one in N ok frames per camera, at model-input size, as
a PNG the codec accepts, published with the frame's outputs and acked with them."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import edge_tinymodel as tiny
import pytest
from helpers import wait_for
from PIL import Image

from broker import topics
from broker.codecs import decode_output
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.teach_messages import HistoryFrame
from broker.topics import StreamRef, frame_topic
from broker.transport import Inbound
from edge.history import HistorySampler
from edge.settings import EdgeSettings
from edge.startup import build_worker

pytestmark = pytest.mark.unit
C1 = StreamRef.camera("s", "l", "st", "c1")
C2 = StreamRef.camera("s", "l", "st", "c2")


def test_sampler_keeps_one_in_n_per_camera() -> None:
    s = HistorySampler(3, "W1")
    kept = [(c, i) for i in range(7) for c in ("a", "b") if s.due(c)]
    assert kept == [("a", 0), ("b", 0), ("a", 3), ("b", 3), ("a", 6), ("b", 6)]
    with pytest.raises(ValueError, match="every >= 1"):
        HistorySampler(0, "W1")


def test_worker_publishes_sampled_good_frames(tmp_path: Path) -> None:
    model = tiny.build(tmp_path / "model")
    hub = LoopbackHub()
    got: list[HistoryFrame] = []
    lock = threading.Lock()

    def on(m: Inbound) -> None:
        msg = decode_output(m.topic, m.payload)  # the store's own codec
        assert isinstance(msg, HistoryFrame)
        with lock:
            got.append(msg)

    obs = LoopbackTransport(hub, "observer")
    obs.subscribe(topics.ALL_HISTORY_FRAMES, on)
    obs.start()
    settings = EdgeSettings(
        worker_id="W1",
        model_dir=model,
        data_dir=tmp_path,
        heartbeat_s=0.1,
        max_wait_ms=5,
        history_sample_every=2,
    )
    tr = LoopbackTransport(hub, "edge-W1")
    w = build_worker(settings, tr)
    w.start((C1.key, C2.key))
    try:
        kinds = ["good", "defect", "good", "good", "anomaly", "good", "good"]
        for i, kind in enumerate(kinds):
            obs.publish(frame_topic(C1), tiny.frame(kind, seed=i), properties={"seq": str(i)})
        obs.publish(frame_topic(C2), tiny.frame("good", seed=9), properties={"seq": "0"})
        wait_for(lambda: tr.stats()["acked"] == 8, 10, what="8 inputs acked")
        wait_for(lambda: len(got) >= 4, 5, what="4 samples")
    finally:
        w.stop()
        tr.stop()
        obs.stop()
    by_stream = sorted((g.stream, g.key) for g in got)
    # c1's ok frames are seqs 0, 2, 3, 5, 6: the 1st, 3rd and 5th are kept; c2's first
    assert by_stream == [(C1.key, f"{C1.key}#0:{i}") for i in (0, 3, 6)] + [
        (C2.key, f"{C2.key}#0:0")
    ]
    for g in got:
        with Image.open(io.BytesIO(g.image)) as im:
            assert im.format == "PNG" and im.size == (tiny.SIZE, tiny.SIZE)
        assert g.worker == "W1" and g.model_version.startswith("tiny-test/")
