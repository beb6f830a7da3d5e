"""Operators' teaching: feedback on frames, the workers' answers, taught-state changes.

Hand-reviewed. Three new tables (``feedback``, ``feedback_results``, ``teach_changes``);
downgrade drops exactly them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 16:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)
_KEY = sa.String(length=600)
_STREAM = sa.String(length=400)


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("stream", _STREAM, nullable=False),
        sa.Column("frame_key", _KEY, nullable=False),
        sa.Column("frame_id", sa.BigInteger(), nullable=True),
        sa.Column("alert_id", sa.BigInteger(), nullable=True),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("family", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("approved_by", sa.String(length=128), nullable=True),
        sa.Column("approved_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("request_id", name=op.f("uq_feedback_request_id")),
    )
    op.create_index(op.f("ix_feedback_frame_key"), "feedback", ["frame_key"], unique=False)
    op.create_index("ix_feedback_stream_created", "feedback", ["stream", "created_at"])

    op.create_table(
        "feedback_results",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("result_key", _KEY, nullable=False),
        sa.Column("feedback_id", sa.BigInteger(), nullable=False),
        sa.Column("stream", _STREAM, nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=True),
        sa.Column("image_bytes", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=True),
        sa.Column("recall_before", sa.Float(), nullable=True),
        sa.Column("recall_after", sa.Float(), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("ts", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_results")),
        sa.UniqueConstraint("result_key", name=op.f("uq_feedback_results_result_key")),
    )
    op.create_index(
        op.f("ix_feedback_results_feedback_id"), "feedback_results", ["feedback_id"], unique=False
    )
    op.create_index(op.f("ix_feedback_results_ts"), "feedback_results", ["ts"], unique=False)

    op.create_table(
        "teach_changes",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("change_key", _KEY, nullable=False),
        sa.Column("stream", _STREAM, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("previous_version", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("feedback_id", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("map_h", sa.Integer(), nullable=False),
        sa.Column("map_w", sa.Integer(), nullable=False),
        sa.Column("novelty_threshold", sa.Float(), nullable=True),
        sa.Column("previous_novelty_threshold", sa.Float(), nullable=True),
        sa.Column("allowance", sa.LargeBinary(), nullable=False),
        sa.Column("previous_allowance", sa.LargeBinary(), nullable=False),
        sa.Column("confirmed", sa.LargeBinary(), nullable=False),
        sa.Column("previous_confirmed", sa.LargeBinary(), nullable=False),
        sa.Column("confirmed_keys", sa.JSON(), nullable=False),
        sa.Column("previous_confirmed_keys", sa.JSON(), nullable=False),
        sa.Column("recall_before", sa.Float(), nullable=True),
        sa.Column("recall_after", sa.Float(), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("ts", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teach_changes")),
        sa.UniqueConstraint("change_key", name=op.f("uq_teach_changes_change_key")),
    )
    op.create_index("ix_teach_changes_stream_version", "teach_changes", ["stream", "version"])


def downgrade() -> None:
    op.drop_index("ix_teach_changes_stream_version", table_name="teach_changes")
    op.drop_table("teach_changes")
    op.drop_index(op.f("ix_feedback_results_ts"), table_name="feedback_results")
    op.drop_index(op.f("ix_feedback_results_feedback_id"), table_name="feedback_results")
    op.drop_table("feedback_results")
    op.drop_index("ix_feedback_stream_created", table_name="feedback")
    op.drop_index(op.f("ix_feedback_frame_key"), table_name="feedback")
    op.drop_table("feedback")
