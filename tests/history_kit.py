"""Stored history for the retrain-from-history tests, written through the real store path:
the codec and the store writer (loopback bus) for sampled good frames and the workers'
feedback answers, the feed's repository function for the operators' marks."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from helpers import wait_for
from PIL import Image
from sqlalchemy import Engine

from broker import topics
from broker.codecs import encode
from broker.loopback import LoopbackHub, LoopbackTransport
from broker.teach_messages import FeedbackResult, HistoryFrame
from broker.topics import StreamRef
from services.store.teach_queries import add_feedback
from services.store.writer import StoreWriter


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Stored:
    """One frame to store: ``good`` (a worker's sample) or a mark (``not_a_defect``,
    ``confirmed`` with a family, ``unsure``) with the frame's image."""

    key: str
    ts: datetime
    pixels: np.ndarray
    label: str = "sample"
    family: str | None = None
    kept: bool = True  # a mark: the worker still had the frame (else it answers without it)


def store_history(engine: Engine, cam: StreamRef, frames: Sequence[Stored]) -> None:
    """Write ``frames`` as the running system would, and wait until the store acked all."""
    hub = LoopbackHub()
    sub, pub = LoopbackTransport(hub, "store"), LoopbackTransport(hub, "edge")
    writer = StoreWriter(engine, sub)
    sub.start()
    pub.start()
    writer.start()
    try:
        for f in frames:
            if f.label == "sample":
                msg: HistoryFrame | FeedbackResult = HistoryFrame(
                    key=f.key, stream=cam.key, image=png(f.pixels), worker="W1", ts=f.ts
                )
                pub.publish(topics.history_frame_topic(cam), encode(msg))
                continue
            with engine.begin() as conn:
                fid = add_feedback(
                    conn,
                    {
                        "request_id": f"req-{f.key}-{f.ts.isoformat()}-{f.label}",
                        "stream": cam.key,
                        "frame_key": f.key,
                        "label": f.label,
                        "family": f.family,
                        "note": "",
                        "actor": "op1",
                        "created_at": f.ts,
                    },
                )
            msg = FeedbackResult(
                key=f"fb:{fid}:feedback",
                stream=cam.key,
                feedback_id=fid,
                action="feedback",
                status="applied" if f.label != "unsure" else "kept",
                image=png(f.pixels) if f.kept else None,
                worker="W1",
                ts=f.ts,
            )
            pub.publish(topics.feedback_result_topic(cam), encode(msg))
        wait_for(
            lambda: sub.stats()["acked"] >= len(frames), 30, what=f"{len(frames)} frames stored"
        )
    finally:
        writer.stop()
        sub.stop()
        pub.stop()
