"""History frames on Postgres: stored once through the store path, read back with operators'
marks as a retrain's history, split and exported, and trimmed to their byte budget."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from history_kit import Stored, store_history
from sqlalchemy import func, select
from store_support import T0, cam

from services.store import schema_teach as st
from services.store.engine import make_engine, upgrade
from services.store.history_export import export_history
from services.store.history_queries import history_items
from services.store.retention import Retention
from services.store.settings import StoreSettings

pytestmark = pytest.mark.integration
CAM = cam()


def _px(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 255, (16, 16, 3), dtype=np.uint8)


def test_history_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        frames = [Stored(f"g{i}", T0 + timedelta(minutes=i), _px(i)) for i in range(22)]
        frames += [
            Stored(f"d{i}", T0 + timedelta(minutes=i), _px(50 + i), "confirmed", "dent")
            for i in range(5)
        ]
        frames += [Stored("g3", T0 + timedelta(hours=1), _px(3), "confirmed", "dent")]
        frames += [Stored("g4", T0 + timedelta(hours=1), _px(4), "confirmed", "dent", kept=False)]
        store_history(engine, CAM, frames)
        store_history(engine, CAM, frames[:5])  # redelivered: stored once
        items = history_items(engine, line="s1/L1", since=T0 + timedelta(minutes=1))
        labels = {i.key: i.label for i in items}
        assert (
            len(labels) == 21 + 4 and "g0" not in labels and labels["g3"] == labels["g4"] == "dent"
        )
        assert bytes(items[0].png[:8]) == b"\x89PNG\r\n\x1a\n"
        m = export_history(engine, tmp_path / "tree", camera=CAM.key, fraction=0.25)
        assert {k: v["count"] for k, v in m["heldout"].items()} == {"good": 5, "dent": 2}
        h = st.T_HISTORY_FRAMES
        with engine.connect() as conn:
            total = int(conn.execute(select(func.sum(h.c.image_bytes))).scalar_one())
        rep = Retention(engine, StoreSettings(retention_history_image_budget_bytes=total // 2))
        trimmed = rep.run().history_frames
        assert trimmed["before"] == total and trimmed["freed"] >= total - total // 2
        with engine.connect() as conn:
            left = conn.execute(select(func.count()).select_from(h)).scalar_one()
        assert left == 22 - trimmed["images"] < 22
    finally:
        engine.dispose()
