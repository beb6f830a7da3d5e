"""Shared inputs of the codec tests (tests/unit/test_codecs*.py): streams, times, images."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from PIL import Image

from broker import topics
from broker.topics import StreamRef

CAM = StreamRef.camera("plant1", "line-2", "st_3", "cam1")
TEMP = StreamRef.sensor("plant1", "line-2", "st_3", "temp1")
T0 = datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)
FRAME_T, SENSOR_T = topics.frame_topic(CAM), topics.sensor_topic(TEMP)


def jpeg(w: int = 320, h: int = 240) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (120, 30, 60)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png(w: int = 40, h: int = 30) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, "PNG")
    return buf.getvalue()


JPEG, PNG = jpeg(), png()
