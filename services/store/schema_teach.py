"""Tables of operators' teaching: feedback on frames, the workers' answers (with the frame at
model-input size), every change of a camera's taught state, and sampled good frames.

Registered on the one ``schema.metadata``; whatever needs every table imports this module
(migrations/env.py, services/store/repo.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.schema import Table

from services.store.schema import ID, KEY, PK, STREAM, TS, Base


class FeedbackRow(Base):
    """One operator's mark on a frame (or on an alert, through its frame)."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(200), unique=True)
    stream: Mapped[str] = mapped_column(STREAM)
    frame_key: Mapped[str] = mapped_column(KEY, index=True)
    frame_id: Mapped[int | None] = mapped_column(BigInteger)
    alert_id: Mapped[int | None] = mapped_column(BigInteger)
    label: Mapped[str] = mapped_column(String(16))  # not_a_defect | confirmed | unsure
    family: Mapped[str | None] = mapped_column(ID)  # confirmed: existing or new family
    note: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(TS)
    approved_by: Mapped[str | None] = mapped_column(String(128))  # second operator (held)
    approved_at: Mapped[datetime | None] = mapped_column(TS)

    __table_args__ = (Index("ix_feedback_stream_created", "stream", "created_at"),)


class FeedbackResultRow(Base):
    """A worker's answer to one feedback (or approval); ``image``: PNG at model-input size,
    dropped oldest-first beyond the retention byte budget (``image_bytes`` keeps its size)."""

    __tablename__ = "feedback_results"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    result_key: Mapped[str] = mapped_column(KEY, unique=True)
    feedback_id: Mapped[int] = mapped_column(BigInteger, index=True)
    stream: Mapped[str] = mapped_column(STREAM)
    action: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    image: Mapped[bytes | None] = mapped_column(LargeBinary)
    image_bytes: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int | None] = mapped_column(BigInteger)
    recall_before: Mapped[float | None] = mapped_column(Float)
    recall_after: Mapped[float | None] = mapped_column(Float)
    worker: Mapped[str] = mapped_column(ID)
    ts: Mapped[datetime] = mapped_column(TS, index=True)


class TeachChangeRow(Base):
    """One change of a camera's taught state: the state after it and the state before it."""

    __tablename__ = "teach_changes"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    change_key: Mapped[str] = mapped_column(KEY, unique=True)
    stream: Mapped[str] = mapped_column(STREAM)
    version: Mapped[int] = mapped_column(BigInteger)
    previous_version: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))  # teach | confirm | rollback
    feedback_id: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(128))
    map_h: Mapped[int] = mapped_column(Integer)
    map_w: Mapped[int] = mapped_column(Integer)
    novelty_threshold: Mapped[float | None] = mapped_column(Float)
    previous_novelty_threshold: Mapped[float | None] = mapped_column(Float)
    allowance: Mapped[bytes] = mapped_column(LargeBinary)
    previous_allowance: Mapped[bytes] = mapped_column(LargeBinary)
    confirmed: Mapped[bytes] = mapped_column(LargeBinary)
    previous_confirmed: Mapped[bytes] = mapped_column(LargeBinary)
    confirmed_keys: Mapped[Any] = mapped_column(JSON)
    previous_confirmed_keys: Mapped[Any] = mapped_column(JSON)
    recall_before: Mapped[float | None] = mapped_column(Float)
    recall_after: Mapped[float | None] = mapped_column(Float)
    worker: Mapped[str] = mapped_column(ID)
    ts: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (Index("ix_teach_changes_stream_version", "stream", "version"),)


class HistoryFrameRow(Base):
    """A sampled good frame at model-input size (PNG) for retraining from history; the
    oldest rows are deleted beyond the retention byte budget."""

    __tablename__ = "history_frames"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    frame_key: Mapped[str] = mapped_column(KEY, unique=True)
    stream: Mapped[str] = mapped_column(STREAM)
    image: Mapped[bytes] = mapped_column(LargeBinary)
    image_bytes: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(128), default="")
    worker: Mapped[str] = mapped_column(ID)
    ts: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (Index("ix_history_frames_stream_ts", "stream", "ts"),)


T_FEEDBACK: Table = FeedbackRow.__table__  # type: ignore[assignment]
T_FEEDBACK_RESULTS: Table = FeedbackResultRow.__table__  # type: ignore[assignment]
T_TEACH_CHANGES: Table = TeachChangeRow.__table__  # type: ignore[assignment]
T_HISTORY_FRAMES: Table = HistoryFrameRow.__table__  # type: ignore[assignment]
