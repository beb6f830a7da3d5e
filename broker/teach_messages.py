"""Messages of operators' teaching (docs/contract.md, "Feedback and teaching"): feedback to a
worker, its answer, and a camera's versioned taught state with the state before it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from broker.messages import Id, Msg, Score, StreamKey

Label = Literal["not_a_defect", "confirmed", "unsure"]
FeedbackStatus = Literal["applied", "held", "kept", "rejected"]
TeachAction = Literal["teach", "confirm", "rollback"]
MAX_MAP_SIDE = 64  # a novelty map is pooled to at most 64 x 64 cells
MAX_CONFIRMED = 64  # confirmed defects a camera's state keeps for the recall guard
MAX_IMAGE_BYTES = 1024 * 1024  # a frame at model-input size, PNG


def _check_arrays(shape: tuple[int, int], allowance: bytes, confirmed: bytes, what: str) -> None:
    """``allowance``: h*w float32 LE, finite, >= 0 (or empty); ``confirmed``: K*h*w float16 LE,
    finite (or empty). Raises ValueError naming what is wrong."""
    h, w = shape
    if not (1 <= h <= MAX_MAP_SIDE and 1 <= w <= MAX_MAP_SIDE):
        raise ValueError(f"map_shape {shape} outside 1..{MAX_MAP_SIDE}")
    if allowance:
        if len(allowance) != 4 * h * w:
            raise ValueError(f"{what}allowance holds {len(allowance)} bytes, not {4 * h * w}")
        a = np.frombuffer(allowance, "<f4")
        if not np.isfinite(a).all() or (a < 0).any():
            raise ValueError(f"{what}allowance must be finite and >= 0")
    if confirmed:
        cell = 2 * h * w
        if len(confirmed) % cell or len(confirmed) // cell > MAX_CONFIRMED:
            raise ValueError(f"{what}confirmed holds {len(confirmed)} bytes, not K*{cell}")
        if not np.isfinite(np.frombuffer(confirmed, "<f2")).all():
            raise ValueError(f"{what}confirmed maps must be finite")


class TeachTarget(Msg):
    """A taught state to restore exactly (a rollback carries the state before the change)."""

    version: int = Field(ge=0)  # the version whose state this is
    map_shape: tuple[int, int] = (1, 1)
    novelty_threshold: Score | None = Field(default=None, gt=0)
    allowance: bytes = b""
    confirmed: bytes = b""
    confirmed_keys: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _arrays(self) -> TeachTarget:
        _check_arrays(self.map_shape, self.allowance, self.confirmed, "")
        cell = 2 * self.map_shape[0] * self.map_shape[1]
        if self.confirmed and len(self.confirmed) // cell != len(self.confirmed_keys):
            raise ValueError("one confirmed key per confirmed map")
        return self


class FeedbackControl(Msg):
    """Feed -> worker: one operator feedback, a second operator's approval, or a rollback."""

    request_id: str = Field(min_length=1, max_length=200)
    stream: StreamKey
    action: Literal["feedback", "approve", "rollback"]
    feedback_id: int | None = Field(default=None, ge=1)
    frame_key: str | None = Field(default=None, max_length=600)
    label: Label | None = None
    actor: str = Field(min_length=1, max_length=128)
    target: TeachTarget | None = None  # rollback: the state to restore
    undo_version: int | None = Field(default=None, ge=1)  # rollback: the change undone
    ts: datetime

    @model_validator(mode="after")
    def _complete(self) -> FeedbackControl:
        if self.action in ("feedback", "approve"):
            if self.feedback_id is None or self.frame_key is None or self.label is None:
                raise ValueError(f"{self.action} needs feedback_id, frame_key and label")
        elif self.target is None or self.undo_version is None:
            raise ValueError("rollback needs target and undo_version")
        return self


class FeedbackResult(Msg):
    """Worker -> store: what became of one feedback; the frame at model-input size (PNG)."""

    key: str
    stream: StreamKey
    feedback_id: int = Field(ge=1)
    action: Literal["feedback", "approve"]
    status: FeedbackStatus
    reason: str = Field(default="", max_length=1000)
    image: bytes | None = Field(default=None, max_length=MAX_IMAGE_BYTES)
    version: int | None = Field(default=None, ge=0)  # the taught state it produced
    recall_before: Score | None = None
    recall_after: Score | None = None
    worker: Id
    ts: datetime


class TeachState(Msg):
    """A camera's taught state after one change, with the state before it (retained)."""

    key: str
    stream: StreamKey
    version: int = Field(ge=1)
    previous_version: int = Field(ge=0)
    action: TeachAction
    feedback_id: int | None = Field(default=None, ge=1)
    actor: str = Field(max_length=128)
    model_version: str = Field(max_length=128)
    map_shape: tuple[int, int]
    novelty_threshold: Score | None = None
    previous_novelty_threshold: Score | None = None
    allowance: bytes = b""
    previous_allowance: bytes = b""
    confirmed: bytes = b""
    previous_confirmed: bytes = b""
    confirmed_keys: tuple[str, ...] = ()
    previous_confirmed_keys: tuple[str, ...] = ()
    recall_before: Score | None = None
    recall_after: Score | None = None
    worker: Id
    ts: datetime

    @model_validator(mode="after")
    def _arrays(self) -> TeachState:
        _check_arrays(self.map_shape, self.allowance, self.confirmed, "")
        _check_arrays(self.map_shape, self.previous_allowance, self.previous_confirmed, "previous_")
        return self

    def target(self, previous: bool = False) -> TeachTarget:
        """The state after this change (or, with ``previous``, the one before it)."""
        if previous:
            return TeachTarget(
                version=self.previous_version,
                map_shape=self.map_shape,
                novelty_threshold=self.previous_novelty_threshold,
                allowance=self.previous_allowance,
                confirmed=self.previous_confirmed,
                confirmed_keys=self.previous_confirmed_keys,
            )
        return TeachTarget(
            version=self.version,
            map_shape=self.map_shape,
            novelty_threshold=self.novelty_threshold,
            allowance=self.allowance,
            confirmed=self.confirmed,
            confirmed_keys=self.confirmed_keys,
        )


class HistoryFrame(Msg):
    """Worker -> store: one sampled frame the worker judged good, at model-input size (PNG),
    kept so a model can be retrained from the line's own history (``key``: the frame key)."""

    key: str = Field(min_length=1, max_length=600)
    stream: StreamKey
    image: bytes = Field(min_length=1, max_length=MAX_IMAGE_BYTES)
    model_version: str = Field(default="", max_length=128)
    worker: Id
    ts: datetime
