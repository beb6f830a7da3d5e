"""Retention of feedback frames: images beyond a byte budget are dropped oldest first.

The feedback record, the worker's answer and every taught-state change stay (they are the
audit trail); only the PNG of the frame goes, and its ``image_bytes`` stays to say so.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select, update

from services.store import schema_teach as st


def trim_feedback_images(engine: Engine, budget: int, *, dry_run: bool) -> dict[str, int]:
    """Drop the oldest kept feedback images until the rest fit ``budget`` bytes."""
    r = st.T_FEEDBACK_RESULTS
    kept = r.c.image.is_not(None)
    with engine.connect() as conn:
        total = int(
            conn.execute(
                select(func.coalesce(func.sum(r.c.image_bytes), 0)).where(kept)
            ).scalar_one()
        )
        victims: list[int] = []
        excess = total - budget
        if excess > 0:
            rows: Any = conn.execute(
                select(r.c.id, r.c.image_bytes).where(kept).order_by(r.c.ts, r.c.id)
            )
            for ident, size in rows:
                if excess <= 0:
                    break
                victims.append(int(ident))
                excess -= int(size)
    freed = 0
    if victims:
        with engine.connect() as conn:
            freed = int(
                conn.execute(
                    select(func.coalesce(func.sum(r.c.image_bytes), 0)).where(r.c.id.in_(victims))
                ).scalar_one()
            )
    if victims and not dry_run:
        for i in range(0, len(victims), 500):
            with engine.begin() as conn:
                conn.execute(update(r).where(r.c.id.in_(victims[i : i + 500])).values(image=None))
    return {"before": total, "freed": freed, "images": len(victims)}
