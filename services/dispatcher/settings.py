"""Typed settings of the dispatcher process (LINEWATCH_* env vars or the TOML file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from broker.config import CommonSettings
from broker.topics import ALL_FRAMES, ALL_SENSORS, ROOT, StreamRef, TopicError
from services.dispatcher.overload import Policy


class StreamSpec(BaseModel):
    """One camera stream to place: its key, expected frames/s, required worker labels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    fps: float = Field(gt=0, allow_inf_nan=False)
    requires: dict[str, str] = Field(default_factory=dict)
    priority: int = 0

    @field_validator("id")
    @classmethod
    def _stream_key(cls, v: str) -> str:
        try:
            return StreamRef.parse_key(v).key
        except TopicError as exc:
            raise ValueError(str(exc)) from None


# The secure profile's worker role: broker/secure/acl grants lw/v1/_sys/status/edge-{n} to the
# identity edge-{n} alone, so only a worker-role identity can announce a worker id with it.
SECURE_WORKER_PREFIX = "edge-"


class DispatchSettings(CommonSettings):
    """What `linewatch dispatch run` reads. ``streams`` is a JSON list in
    LINEWATCH_STREAMS, or ``[[streams]]`` tables in the TOML file. Only edge workers whose id
    starts with ``worker_prefix`` are managed (several fleets may share one broker); in the
    secure profile an empty prefix means ``edge-``, the worker role's identities."""

    dispatcher_id: str = Field(default="dispatch-1", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    streams: list[StreamSpec] = Field(default_factory=list)
    worker_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_-]{0,64}$")
    lease_name: str = Field(default="dispatcher", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    target_utilisation: float = Field(default=0.8, gt=0, le=1)
    migration_penalty: float = Field(default=0.05, ge=0, allow_inf_nan=False)
    cooldown_s: float = Field(default=30.0, ge=0)
    policy: Policy = Policy.REDUCE_LOWEST_PRIORITY
    min_rate: float = Field(default=0.25, gt=0, le=1)
    budget_ms: float = Field(default=200.0, gt=0)
    default_capacity_fps: float = Field(default=10.0, ge=0)
    p95_bound_ms: float = Field(default=500.0, gt=0)
    overload_samples: int = Field(default=3, ge=1)
    overload_min_queue: int = Field(default=8, ge=1)
    overload_derate: float = Field(default=0.75, gt=0, le=1)
    rebalance_s: float = Field(default=300.0, ge=0)
    debounce_s: float = Field(default=0.2, ge=0)
    startup_grace_s: float = Field(default=1.0, ge=0)
    lease_ttl_s: float = Field(default=3.0, gt=0)
    observe_rates: bool = True
    # Streams nobody configured are placed when they start publishing (discovery.py).
    discover_streams: bool = True
    discover_topics: list[str] = Field(default_factory=lambda: [ALL_FRAMES, ALL_SENSORS])
    discover_fps: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    discover_hold_frames: int = Field(default=32, ge=0)
    discover_hold_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    # Caps on discovery (over them: a dead letter per refused stream and an alert per site).
    discover_max_streams: int = Field(default=1000, ge=0)
    discover_max_per_site: int = Field(default=500, ge=0)
    discover_max_per_window: int = Field(default=100, ge=0)
    discover_window_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    rate_window_s: float = Field(default=10.0, gt=0)
    rate_tolerance: float = Field(default=0.25, gt=0)

    @model_validator(mode="after")
    def _secure_worker_role(self) -> DispatchSettings:
        if self.profile == "secure" and not self.worker_prefix:
            self.worker_prefix = SECURE_WORKER_PREFIX
        return self

    @field_validator("discover_topics")
    @classmethod
    def _input_filters(cls, v: list[str]) -> list[str]:
        for f in v:
            if not f.startswith(f"{ROOT}/") or not (f.endswith("/frame") or "/sensor/" in f):
                raise ValueError(
                    f"{f!r} is not a frame or sensor topic filter under {ROOT}/ "
                    f"(e.g. {ALL_FRAMES} or {ALL_SENSORS})"
                )
        return v

    @field_validator("streams")
    @classmethod
    def _unique(cls, v: list[StreamSpec]) -> list[StreamSpec]:
        seen: set[str] = set()
        for s in v:
            if s.id in seen:
                raise ValueError(f"stream {s.id} listed twice")
            seen.add(s.id)
        return v
