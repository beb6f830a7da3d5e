"""How the simulator's cameras and sensors put their data on the wire (docs/contract.md §5)."""

from __future__ import annotations

import base64
import inspect
import io
import json
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image

from services.sim.timeline import Camera, Frame, Reading, Sensor

Renderer = Callable[..., tuple[Image.Image, dict[str, Any]]]
JPEG_QUALITY = 90


def rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def part_id(cam: Camera, seq: int) -> str:
    """The serial number a frame shows, e.g. ``washer-line1-st1-cam1-000042``."""
    return f"{cam.part_type}-{cam.where.replace('/', '-')}-{seq:06d}"


def takes_tier(render: Renderer) -> bool:
    """True when the renderer has a ``tier`` keyword (the shared renderer gains one)."""
    try:
        return "tier" in inspect.signature(render).parameters
    except (TypeError, ValueError):
        return False


class FrameSource:
    """JPEG frames of every camera, rendered once per (camera, label, slot) and cached.

    Rendering a 448 px part costs around 100 ms of numpy, far more than a camera's frame
    period, so each camera shows a pool of renders (``LineSpec.pool`` per label) and only a
    lighting gain other than 1 costs a fresh JPEG encode (a few ms). Thread-safe.
    """

    def __init__(
        self, render: Renderer, seed: int, size: int, tier: str | None, cache_max: int = 4096
    ) -> None:
        self._render, self._seed, self._size = render, seed, size
        self._kw: dict[str, Any] = {"size": size}
        if tier is not None and takes_tier(render):
            self._kw["tier"] = tier
        self.tier_applied = "tier" in self._kw
        self._pixels: dict[tuple[int, str, int], np.ndarray] = {}
        self._jpegs: dict[tuple[int, str, int], bytes] = {}
        self._cache_max = cache_max
        self._lock = threading.Lock()
        self.renders = 0

    def render_seed(self, cam: Camera, frame: Frame) -> tuple[int, int, int, int]:
        """The seed of a frame's render (``render_part(seed, part, defect, size=…)``)."""
        return (self._seed, 7, cam.index, hash_label(frame.label) * 1_000_003 + frame.slot)

    def jpeg(self, cam: Camera, frame: Frame) -> bytes:
        key = (cam.index, frame.label, frame.slot)
        with self._lock:
            cached = self._jpegs.get(key) if frame.gain == 1.0 else None
            pixels = self._pixels.get(key)
        if cached is not None:
            return cached
        if pixels is None:
            img, _ = self._render(
                self.render_seed(cam, frame), cam.part_type, frame.defect, **self._kw
            )
            pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
            self.renders += 1
        data = encode_jpeg(pixels, frame.gain)
        with self._lock:
            if len(self._pixels) < self._cache_max:
                self._pixels[key] = pixels
                if frame.gain == 1.0:
                    self._jpegs[key] = data
        return data


def hash_label(label: str) -> int:
    """A stable small number per label (Python's ``hash`` of a str changes per process)."""
    return sum((i + 1) * ord(ch) for i, ch in enumerate(label)) % 9973


def encode_jpeg(pixels: np.ndarray, gain: float = 1.0) -> bytes:
    """JPEG of an RGB array, its brightness multiplied by ``gain`` (lighting drift)."""
    if gain != 1.0:
        pixels = np.clip(pixels.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def frame_message(
    image: bytes, seq: int, ts: float, part: str, *, envelope: bool, epoch: int = 0
) -> tuple[bytes, dict[str, str] | None]:
    """Payload and MQTT v5 user properties of one frame: raw JPEG + properties, or envelope.
    A publisher ``epoch`` other than 0 goes with it (the contract's default is 0)."""
    if not envelope:
        props = {"seq": str(seq), "ts": str(round(ts * 1000)), "part": part}
        return image, props | ({"epoch": str(epoch)} if epoch else {})
    doc: dict[str, Any] = {
        "seq": seq,
        "ts": rfc3339(ts),
        "part": part,
        "encoding": "jpeg",
        "image": base64.b64encode(image).decode("ascii"),
    }
    if epoch:
        doc["epoch"] = epoch
    return json.dumps(doc, separators=(",", ":")).encode(), None


def sensor_message(
    sensor: Sensor, readings: Sequence[tuple[Reading, float]], *, v5: bool, epoch: int = 0
) -> tuple[bytes, dict[str, str] | None]:
    """One sensor publish in the sensor's form: a bare number (seq/ts as v5 properties), a
    JSON reading, or a ``readings`` batch. ``readings`` pairs each reading with its epoch ts.
    A publisher ``epoch`` other than 0 goes with it (a bare number on 3.1.1 cannot carry it)."""
    pub = {"epoch": epoch} if epoch else {}
    if sensor.form == "bare":
        ((r, ts),) = readings
        props = {"seq": str(r.seq), "ts": str(round(ts * 1000))} if v5 else None
        if props is not None and epoch:
            props["epoch"] = str(epoch)
        return repr(r.value).encode(), props
    items = [
        {"seq": r.seq, "ts": rfc3339(ts), "value": r.value, "unit": sensor.unit}
        for r, ts in readings
    ]
    doc: dict[str, Any] = items[0] | pub if sensor.form == "json" else {**pub, "readings": items}
    return json.dumps(doc, separators=(",", ":")).encode(), None
