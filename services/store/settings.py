"""Typed settings of the history store (``LINEWATCH_STORE_*`` / ``LINEWATCH_RETENTION_*``)."""

from __future__ import annotations

from pydantic import Field

from broker.config import CommonSettings


class StoreSettings(CommonSettings):
    """What `linewatch store` reads, on top of the common settings."""

    store_name: str = Field(default="main", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    store_site: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    store_batch_rows: int = Field(default=500, ge=1, le=500)
    store_flush_ms: float = Field(default=200.0, gt=0, le=200.0)
    store_max_pending: int = Field(default=20_000, ge=100, le=1_000_000)
    store_backoff_max_s: float = Field(default=5.0, gt=0, le=60)
    sqlite_synchronous: str = Field(default="FULL", pattern=r"^(?i:OFF|NORMAL|FULL|EXTRA)$")
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0, le=600_000)
    evidence_max_bytes: int = Field(default=512 * 1024, ge=1024)
    # the hole sweep (services/store/sweep.py): seqs no verdict or gap covers become
    # `undelivered` gaps once a frame decided `grace` seconds ago follows them; 0: off
    store_sweep_interval_s: float = Field(default=30.0, ge=0)
    store_sweep_grace_s: float = Field(default=60.0, ge=1.0)

    retention_frames_days: float = Field(default=90, gt=0)
    retention_readings_days: float = Field(default=30, gt=0)
    retention_anomalies_days: float = Field(default=180, gt=0)
    retention_gaps_days: float = Field(default=180, gt=0)
    retention_dead_letters_days: float = Field(default=30, gt=0)
    retention_alert_events_days: float = Field(default=365, gt=0)
    retention_resolved_alerts_days: float = Field(default=365, gt=0)
    retention_status_events_days: float = Field(default=30, gt=0)
    retention_decisions_days: float = Field(default=180, gt=0)
    retention_evidence_days: float = Field(default=90, gt=0)
    retention_evidence_budget_bytes: int = Field(default=1024**3, ge=0)
    # frames operators gave feedback on (PNG at model-input size), oldest dropped beyond this
    retention_feedback_image_budget_bytes: int = Field(default=256 * 1024**2, ge=0)
    # sampled good frames kept for retraining (PNG at model-input size), oldest deleted beyond
    retention_history_image_budget_bytes: int = Field(default=512 * 1024**2, ge=0)
    retention_batch_rows: int = Field(default=5000, ge=10, le=100_000)
    retention_max_batch_s: float = Field(default=0.5, gt=0, le=1.0)
    retention_interval_s: float = Field(default=3600, ge=0)  # 0: only `store retention`
