"""Typed settings of one edge worker process (LINEWATCH_* env vars or the TOML file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import NoDecode

from broker.config import CommonSettings
from broker.topics import Kind, StreamRef, TopicError, check_id


class SensorLimit(BaseModel):
    """Checks of one sensor: alarm limits (anomaly), valid range (dead letter), rate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low: float | None = None  # below: a "limit" SensorAnomaly
    high: float | None = None  # above: a "limit" SensorAnomaly
    valid_min: float | None = None  # below: physically impossible, dead-lettered
    valid_max: float | None = None  # above: physically impossible, dead-lettered
    max_rate: float | None = Field(default=None, gt=0)  # |Δvalue| per second, else "rate"

    @model_validator(mode="after")
    def _ordered(self) -> SensorLimit:
        for lo, hi, what in (
            (self.low, self.high, "low/high"),
            (self.valid_min, self.valid_max, "valid_min/valid_max"),
        ):
            if lo is not None and hi is not None and lo >= hi:
                raise ValueError(f"{what}: {lo} must be below {hi}")
        return self


class EdgeSettings(CommonSettings):
    """Everything an edge worker reads; see docs/operations.md for the variables."""

    worker_id: str = "W1"
    # static assignment (no dispatcher): site/line/station/cam or .../sensor/name
    streams: Annotated[list[str], NoDecode] = Field(default_factory=list)
    model_dir: Path = Path("var/models/demo")
    max_batch: int = Field(default=8, ge=1, le=256)
    max_wait_ms: float | None = Field(default=None, gt=0, le=1000)  # None: 1 single-image latency
    camera_queue: int = Field(default=16, ge=1, le=10_000)  # frames queued per camera
    total_queue: int = Field(default=256, ge=1, le=100_000)  # frames queued over all cameras
    reorder_timeout_s: float = Field(default=2.0, gt=0, le=600)
    heartbeat_s: float = Field(default=1.0, gt=0, le=60)
    intra_threads: int | None = Field(default=None, ge=1, le=256)  # None: cores available
    bank_frames: int = Field(default=0, ge=0, le=100_000)  # >0: per-camera bank of N good frames
    # >0: a camera fits its own variation model from its first N frames judged good
    variation_frames: int = Field(default=0, ge=0, le=10_000)
    # flagged frames per camera kept (novelty map, model-input pixels) for operators' feedback
    teach_frames: int = Field(default=64, ge=1, le=10_000)
    # one in N frames judged ok per camera kept (PNG at model-input size) to retrain from; 0: off
    history_sample_every: int = Field(default=50, ge=0, le=1_000_000)
    sensor_limits: dict[str, SensorLimit] = Field(default_factory=dict)  # key: name|stream|"*"
    sensor_alpha: float = Field(default=0.05, gt=0, lt=1)  # EWMA weight of a new reading
    sensor_z: float = Field(default=6.0, gt=0)  # |z| at or above this is an anomaly
    sensor_warmup: int = Field(default=30, ge=2)  # readings before z-scores count
    sensor_stuck: int = Field(default=50, ge=2)  # identical readings in a row = stuck
    readings_batch: int = Field(default=500, ge=1, le=10_000)
    readings_flush_ms: float = Field(default=200.0, gt=0, le=60_000)
    cost_per_hour: float = Field(default=0.0, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: no Prometheus endpoint
    metrics_host: str = "127.0.0.1"
    # evidence picture with the anomaly map: big enough to see the defect on the page (and
    # enlarge), small enough that the store's evidence budget holds tens of thousands
    thumbnail_px: int = Field(default=384, ge=16, le=1024)
    thumbnail_bytes: int = Field(default=48_000, ge=1_000, le=256_000)
    # seconds between looks at the model directory's card (a new one is switched to); 0: never
    model_watch_s: float = Field(default=5.0, ge=0, le=3600)

    @field_validator("worker_id")
    @classmethod
    def _check_worker(cls, v: str) -> str:
        try:
            return check_id(v, "worker id")
        except TopicError as exc:
            raise ValueError(exc.detail) from None

    @field_validator("streams", mode="before")
    @classmethod
    def _split_streams(cls, v: object) -> object:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("streams")
    @classmethod
    def _check_streams(cls, v: list[str]) -> list[str]:
        return [parse_stream(s).key for s in v]

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "edge"

    def limit_for(self, stream: StreamRef) -> SensorLimit:
        """The limits of a sensor: by full stream key, else by sensor name, else ``"*"``."""
        for key in (stream.key, stream.name, "*"):
            if key in self.sensor_limits:
                return self.sensor_limits[key]
        return SensorLimit()


def parse_stream(text: str) -> StreamRef:
    """``site/line/station/cam`` (a camera) or ``site/line/station/(camera|sensor)/name``."""
    try:
        ref = StreamRef.parse_key(text.strip())
    except TopicError as exc:
        raise ValueError(f"stream {exc.detail}") from None
    if ref.kind not in (Kind.CAMERA, Kind.SENSOR):
        raise ValueError(f"stream {text!r}: unknown kind")
    return ref
