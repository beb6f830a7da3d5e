"""Retention of feedback frames: beyond their byte budget the oldest images go, the records
(feedback, the worker's answers, taught changes) stay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from store_support import T0, migrated_sqlite

from broker.teach_messages import FeedbackResult
from services.store import schema_teach as st
from services.store.batchwrite import Prepared, write_prepared
from services.store.engine import make_engine
from services.store.retention import Retention
from services.store.rows_teach import plan_teach
from services.store.settings import StoreSettings

pytestmark = pytest.mark.unit


def test_oldest_feedback_images_go_beyond_the_budget(tmp_path: Path) -> None:
    engine = make_engine(migrated_sqlite(tmp_path))
    prep = Prepared()
    for i in range(5):  # 1000-byte "images", oldest first (the codec checks real PNGs)
        msg = FeedbackResult(
            key=f"fb:{i + 1}:feedback",
            stream="s1/L1/st1/camera/c1",
            feedback_id=i + 1,
            action="feedback",
            status="applied",
            image=bytes([i]) * 1000,
            worker="W1",
            ts=T0 + timedelta(minutes=i),
        )
        planned = plan_teach(msg)
        assert planned is not None
        prep.rows.setdefault("feedback_results", []).extend(planned.rows["feedback_results"])
    with engine.begin() as conn:
        write_prepared(conn, prep)
    cfg = StoreSettings(retention_feedback_image_budget_bytes=2500)
    dry = Retention(engine, cfg).run(dry_run=True)
    assert dry.feedback_images == {"before": 5000, "freed": 3000, "images": 3}
    rep = Retention(engine, cfg).run()
    assert rep.as_dict()["feedback_images"] == {"before": 5000, "freed": 3000, "images": 3}
    r = st.T_FEEDBACK_RESULTS
    with engine.connect() as conn:
        rows = conn.execute(select(r.c.feedback_id, r.c.image, r.c.image_bytes)).all()
    assert len(rows) == 5  # the records stay
    kept = {fid for fid, image, _ in rows if image is not None}
    assert kept == {4, 5} and all(size == 1000 for _, _, size in rows)
    assert Retention(engine, cfg).run().feedback_images["images"] == 0
