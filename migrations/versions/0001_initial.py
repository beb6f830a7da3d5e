"""Initial schema: every history table, its idempotency keys and indexes, and views v1.

Hand-reviewed: DateTime(timezone=True) (timestamptz on Postgres, UTC text on SQLite),
BIGINT keys (INTEGER on SQLite so they alias the rowid), naming convention from
services.store.schema. Downgrade drops the views, then every table.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 19:25:20.664312
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.store import views

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# creation order (foreign keys point backwards); downgrade drops in reverse
TABLES = [
    "alert_source_events",
    "alerts",
    "assignment_streams",
    "assignments",
    "dead_letters",
    "defect_families",
    "dispatch_decisions",
    "evidence",
    "family_events",
    "frame_families",
    "frames",
    "gaps",
    "leases",
    "sensor_anomalies",
    "sensor_readings",
    "threshold_changes",
    "worker_status_events",
    "workers",
    "alert_events",
]


def upgrade() -> None:
    op.create_table(
        "alert_source_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=600), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("station", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=400), nullable=True),
        sa.Column("frame_key", sa.String(length=600), nullable=True),
        sa.Column("family", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("evidence_key", sa.String(length=600), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_source_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_alert_source_events_event_id")),
    )
    op.create_index(
        op.f("ix_alert_source_events_line_ts"),
        "alert_source_events",
        ["site", "line", "station", "ts"],
        unique=False,
    )
    op.create_index(op.f("ix_alert_source_events_ts"), "alert_source_events", ["ts"], unique=False)

    op.create_table(
        "alerts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("dedup_key", sa.String(length=600), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("station", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=400), nullable=True),
        sa.Column("family", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("evidence_key", sa.String(length=600), nullable=True),
        sa.Column("assignee", sa.String(length=128), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.String(length=600), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_dedup_key"), "alerts", ["dedup_key"], unique=False)
    op.create_index(
        op.f("ix_alerts_line_time"),
        "alerts",
        ["site", "line", "station", "first_seen"],
        unique=False,
    )
    op.create_index(
        op.f("ix_alerts_status_last_seen"), "alerts", ["status", "last_seen"], unique=False
    )

    op.create_table(
        "assignment_streams",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("stream_key", sa.String(length=600), nullable=False),
        sa.Column("stream", sa.String(length=400), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_streams")),
        sa.UniqueConstraint("stream_key", name=op.f("uq_assignment_streams_stream_key")),
    )
    op.create_index(
        op.f("ix_assignment_streams_stream_epoch"),
        "assignment_streams",
        ["stream", "epoch"],
        unique=False,
    )

    op.create_table(
        "assignments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("assignment_key", sa.String(length=600), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("streams", sa.JSON(), nullable=False),
        sa.Column("rates", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=128), nullable=False),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("dispatcher", sa.String(length=128), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
        sa.UniqueConstraint("assignment_key", name=op.f("uq_assignments_assignment_key")),
    )
    op.create_index(
        op.f("ix_assignments_worker_epoch"), "assignments", ["worker", "epoch"], unique=False
    )

    op.create_table(
        "dead_letters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("dl_key", sa.String(length=600), nullable=False),
        sa.Column("component", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=512), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("payload_size", sa.BigInteger(), nullable=False),
        sa.Column("payload_head", sa.LargeBinary(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("dl_key", name=op.f("uq_dead_letters_dl_key")),
    )
    op.create_index(
        op.f("ix_dead_letters_reason_ts"), "dead_letters", ["reason", "ts"], unique=False
    )
    op.create_index(op.f("ix_dead_letters_ts"), "dead_letters", ["ts"], unique=False)

    op.create_table(
        "defect_families",
        sa.Column("family", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merged_into", sa.String(length=64), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rate_per_hour", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("family", name=op.f("pk_defect_families")),
    )
    op.create_table(
        "dispatch_decisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("decision_id", sa.String(length=600), nullable=False),
        sa.Column("dispatcher", sa.String(length=128), nullable=False),
        sa.Column("trigger", sa.String(length=128), nullable=False),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("cost_before", sa.Float(), nullable=False),
        sa.Column("cost_after", sa.Float(), nullable=False),
        sa.Column("solve_ms", sa.Float(), nullable=False),
        sa.Column("optimal", sa.Boolean(), nullable=False),
        sa.Column("unplaced", sa.JSON(), nullable=False),
        sa.Column("epochs", sa.JSON(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_decisions")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_dispatch_decisions_decision_id")),
    )
    op.create_index(op.f("ix_dispatch_decisions_ts"), "dispatch_decisions", ["ts"], unique=False)

    op.create_table(
        "evidence",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("evidence_key", sa.String(length=600), nullable=False),
        sa.Column("frame_key", sa.String(length=600), nullable=True),
        sa.Column("alert_event_id", sa.String(length=600), nullable=True),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
        sa.UniqueConstraint("evidence_key", name=op.f("uq_evidence_evidence_key")),
    )
    op.create_index(op.f("ix_evidence_created_at"), "evidence", ["created_at"], unique=False)
    op.create_index(op.f("ix_evidence_frame_key"), "evidence", ["frame_key"], unique=False)

    op.create_table(
        "family_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_key", sa.String(length=600), nullable=False),
        sa.Column("family", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("merged_into", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_events")),
        sa.UniqueConstraint("event_key", name=op.f("uq_family_events_event_key")),
    )
    op.create_index(
        op.f("ix_family_events_family_ts"), "family_events", ["family", "ts"], unique=False
    )

    op.create_table(
        "frame_families",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("frame_key", sa.String(length=600), nullable=False),
        sa.Column("stream", sa.String(length=400), nullable=False),
        sa.Column("family", sa.String(length=64), nullable=False),
        sa.Column("distance", sa.Float(), nullable=False),
        sa.Column("is_new", sa.Boolean(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frame_families")),
        sa.UniqueConstraint("frame_key", name=op.f("uq_frame_families_frame_key")),
    )
    op.create_index(op.f("ix_frame_families_family"), "frame_families", ["family"], unique=False)

    op.create_table(
        "frames",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("frame_key", sa.String(length=600), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("station", sa.String(length=64), nullable=False),
        sa.Column("camera", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=400), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("defect_score", sa.Float(), nullable=False),
        sa.Column("novelty_score", sa.Float(), nullable=False),
        sa.Column("predicted_class", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("part", sa.String(length=64), nullable=True),
        sa.Column("family", sa.String(length=64), nullable=True),
        sa.Column("evidence_key", sa.String(length=600), nullable=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frames")),
        sa.UniqueConstraint("frame_key", name=op.f("uq_frames_frame_key")),
    )
    op.create_index(op.f("ix_frames_decided_at"), "frames", ["decided_at"], unique=False)
    op.create_index(op.f("ix_frames_family_time"), "frames", ["family", "decided_at"], unique=False)
    op.create_index(
        op.f("ix_frames_line_time"),
        "frames",
        ["site", "line", "station", "decided_at"],
        unique=False,
    )
    op.create_index(op.f("ix_frames_stream_time"), "frames", ["stream", "decided_at"], unique=False)
    op.create_index(op.f("ix_frames_worker_time"), "frames", ["worker", "decided_at"], unique=False)

    op.create_table(
        "gaps",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("gap_key", sa.String(length=600), nullable=False),
        sa.Column("stream", sa.String(length=400), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("station", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("from_seq", sa.BigInteger(), nullable=True),
        sa.Column("to_seq", sa.BigInteger(), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gaps")),
        sa.UniqueConstraint("gap_key", name=op.f("uq_gaps_gap_key")),
    )
    op.create_index(op.f("ix_gaps_stream_ts"), "gaps", ["stream", "ts"], unique=False)
    op.create_index(op.f("ix_gaps_ts"), "gaps", ["ts"], unique=False)

    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "sensor_anomalies",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("anomaly_key", sa.String(length=600), nullable=False),
        sa.Column("stream", sa.String(length=400), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("station", sa.String(length=64), nullable=False),
        sa.Column("sensor", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sensor_anomalies")),
        sa.UniqueConstraint("anomaly_key", name=op.f("uq_sensor_anomalies_anomaly_key")),
    )
    op.create_index(
        op.f("ix_sensor_anomalies_stream_ts"), "sensor_anomalies", ["stream", "ts"], unique=False
    )
    op.create_index(op.f("ix_sensor_anomalies_ts"), "sensor_anomalies", ["ts"], unique=False)

    op.create_table(
        "sensor_readings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("reading_key", sa.String(length=600), nullable=False),
        sa.Column("stream", sa.String(length=400), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sensor_readings")),
        sa.UniqueConstraint("reading_key", name=op.f("uq_sensor_readings_reading_key")),
    )
    op.create_index(
        op.f("ix_sensor_readings_stream_ts"), "sensor_readings", ["stream", "ts"], unique=False
    )

    op.create_table(
        "threshold_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("change_key", sa.String(length=600), nullable=False),
        sa.Column("stream", sa.String(length=400), nullable=False),
        sa.Column("defect_threshold", sa.Float(), nullable=False),
        sa.Column("novelty_threshold", sa.Float(), nullable=False),
        sa.Column("previous_defect_threshold", sa.Float(), nullable=True),
        sa.Column("previous_novelty_threshold", sa.Float(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_threshold_changes")),
        sa.UniqueConstraint("change_key", name=op.f("uq_threshold_changes_change_key")),
    )
    op.create_index(
        op.f("ix_threshold_changes_stream_ts"), "threshold_changes", ["stream", "ts"], unique=False
    )

    op.create_table(
        "worker_status_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_key", sa.String(length=600), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_status_events")),
        sa.UniqueConstraint("event_key", name=op.f("uq_worker_status_events_event_key")),
    )
    op.create_index(
        op.f("ix_worker_status_events_worker_ts"),
        "worker_status_events",
        ["worker", "ts"],
        unique=False,
    )

    op.create_table(
        "workers",
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("capacity_fps", sa.Float(), nullable=False),
        sa.Column("load", sa.Float(), nullable=False),
        sa.Column("queue_depth", sa.Integer(), nullable=False),
        sa.Column("p95_ms", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("cost_per_hour", sa.Float(), nullable=False),
        sa.Column("streams", sa.JSON(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker", name=op.f("pk_workers")),
    )
    op.create_table(
        "alert_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("alert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_key", sa.String(length=600), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assignee", sa.String(length=128), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_events_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
        sa.UniqueConstraint("event_key", name=op.f("uq_alert_events_event_key")),
    )
    op.create_index(
        op.f("ix_alert_events_alert_at"), "alert_events", ["alert_id", "at"], unique=False
    )

    for statement in views.create_statements(1, op.get_context().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in views.drop_statements(1):
        op.execute(statement)
    for table in reversed(TABLES):
        op.drop_table(table)
