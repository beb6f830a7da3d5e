"""Typed settings of the clustering service (``LINEWATCH_CLUSTER_*`` plus the common ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from broker.config import CommonSettings
from services.clustering.alerts import AlertConfig
from services.clustering.core import CoreConfig
from services.clustering.reduce import METHODS


class ClusterSettings(CommonSettings):
    """Settings of ``linewatch cluster``; docs/clustering.md lists what each one does."""

    cluster_id: str = Field(default="cluster-1", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    cluster_dim: int | None = Field(default=None, ge=1, le=65536)  # None: the first vector's
    cluster_components: int = Field(default=32, ge=1, le=512)
    cluster_method: str = "ward"
    cluster_threshold_factor: float = Field(default=2.0, gt=0, le=20)
    cluster_window: int = Field(default=1000, ge=16, le=20000)
    cluster_refit_every: int = Field(default=2000, ge=8, le=1_000_000)
    cluster_min_members: int = Field(default=3, ge=2, le=1000)
    cluster_state_file: Path | None = None  # default: {data_dir}/cluster/{cluster_id}.npz
    cluster_save_every: int = Field(default=500, ge=1, le=100000)  # vectors between saves
    cluster_save_interval_s: float = Field(default=30.0, ge=0, le=86400)  # idle flush (tick)
    cluster_publish_timeout_s: float = Field(default=10.0, gt=0, le=600)
    cluster_update_interval_s: float = Field(default=10.0, ge=0, le=3600)
    cluster_heartbeat_s: float = Field(default=5.0, gt=0, le=600)
    alert_new_family_members: int = Field(default=5, ge=1, le=100000)
    alert_new_family_window_s: float = Field(default=3600.0, gt=0)
    alert_growth_factor: float = Field(default=3.0, gt=1)
    alert_growth_window_s: float = Field(default=600.0, gt=0)
    alert_growth_baseline_s: float = Field(default=3600.0, gt=0)
    alert_growth_min_members: int = Field(default=5, ge=1)
    alert_growth_cooldown_s: float = Field(default=600.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> ClusterSettings:
        if self.cluster_method not in METHODS:
            raise ValueError(f"cluster_method must be one of {METHODS}")
        if self.cluster_refit_every < 8 or self.cluster_window < 8:
            raise ValueError("cluster_window and cluster_refit_every must be at least 8")
        return self

    @property
    def state_path(self) -> Path:
        return self.cluster_state_file or self.data_dir / "cluster" / f"{self.cluster_id}.npz"

    def core_config(self) -> CoreConfig:
        return CoreConfig(
            dim=self.cluster_dim,
            n_components=self.cluster_components,
            method=self.cluster_method,
            threshold_factor=self.cluster_threshold_factor,
            window=self.cluster_window,
            refit_every=max(self.cluster_refit_every, 8),
            min_members=self.cluster_min_members,
        )

    def alert_config(self) -> AlertConfig:
        return AlertConfig(
            new_family_members=self.alert_new_family_members,
            new_family_window_s=self.alert_new_family_window_s,
            growth_factor=self.alert_growth_factor,
            growth_window_s=self.alert_growth_window_s,
            growth_baseline_s=self.alert_growth_baseline_s,
            growth_min_members=self.alert_growth_min_members,
            growth_cooldown_s=self.alert_growth_cooldown_s,
        )
