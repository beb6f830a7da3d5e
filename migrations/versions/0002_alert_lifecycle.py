"""Alert lifecycle: suppression windows, feed API tokens, ingest outcome of each alert event.

Hand-reviewed. Adds ``alert_source_events.outcome`` / ``alert_id`` (batch mode, so SQLite
can drop them again on downgrade), and the ``suppressions`` and ``api_tokens`` tables.
Downgrade drops exactly what upgrade created.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 19:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("alert_source_events") as batch:
        batch.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("alert_id", sa.BigInteger(), nullable=True))

    op.create_table(
        "suppressions",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=64), nullable=True),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("station", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=True),
        sa.Column("starts_at", _TS, nullable=False),
        sa.Column("ends_at", _TS, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("cancelled_by", sa.String(length=128), nullable=True),
        sa.Column("cancelled_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
    )
    op.create_index(
        op.f("ix_suppressions_line_ends"), "suppressions", ["line", "ends_at"], unique=False
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_index(op.f("ix_suppressions_line_ends"), table_name="suppressions")
    op.drop_table("suppressions")
    with op.batch_alter_table("alert_source_events") as batch:
        batch.drop_column("alert_id")
        batch.drop_column("outcome")
