"""Sampled good frames kept for retraining a model from the line's own history.

Hand-reviewed. One new table (``history_frames``); downgrade drops exactly it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)
_KEY = sa.String(length=600)
_STREAM = sa.String(length=400)


def upgrade() -> None:
    op.create_table(
        "history_frames",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("frame_key", _KEY, nullable=False),
        sa.Column("stream", _STREAM, nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("image_bytes", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("ts", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history_frames")),
        sa.UniqueConstraint("frame_key", name=op.f("uq_history_frames_frame_key")),
    )
    op.create_index("ix_history_frames_stream_ts", "history_frames", ["stream", "ts"])


def downgrade() -> None:
    op.drop_index("ix_history_frames_stream_ts", table_name="history_frames")
    op.drop_table("history_frames")
