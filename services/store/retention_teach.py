"""Retention of kept frames: feedback images and sampled good frames beyond their byte
budgets are dropped oldest first.

For feedback, the record, the worker's answer and every taught-state change stay (they are
the audit trail); only the PNG of the frame goes, and its ``image_bytes`` stays to say so.
A sampled good frame (``history_frames``) is nothing but its image: its row is deleted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Engine, Table, delete, func, select, update

from services.store import schema_teach as st

_CHUNK = 500


def _victims(
    engine: Engine, t: Table, kept: ColumnElement[bool], budget: int
) -> tuple[int, int, list[int]]:
    """(bytes kept now, bytes to free, ids to drop oldest first) to fit ``budget``."""
    size = func.coalesce(func.sum(t.c.image_bytes), 0)
    with engine.connect() as conn:
        total = int(conn.execute(select(size).where(kept)).scalar_one())
        victims: list[int] = []
        excess = total - budget
        freed = 0
        if excess > 0:
            rows: Any = conn.execute(
                select(t.c.id, t.c.image_bytes).where(kept).order_by(t.c.ts, t.c.id)
            )
            for ident, nbytes in rows:
                if freed >= excess:
                    break
                victims.append(int(ident))
                freed += int(nbytes)
    return total, freed, victims


def trim_feedback_images(engine: Engine, budget: int, *, dry_run: bool) -> dict[str, int]:
    """Drop the oldest kept feedback images until the rest fit ``budget`` bytes."""
    r = st.T_FEEDBACK_RESULTS
    total, freed, victims = _victims(engine, r, r.c.image.is_not(None), budget)
    if victims and not dry_run:
        for i in range(0, len(victims), _CHUNK):
            with engine.begin() as conn:
                chunk = victims[i : i + _CHUNK]
                conn.execute(update(r).where(r.c.id.in_(chunk)).values(image=None))
    return {"before": total, "freed": freed, "images": len(victims)}


def trim_history_frames(engine: Engine, budget: int, *, dry_run: bool) -> dict[str, int]:
    """Delete the oldest sampled good frames until the rest fit ``budget`` bytes."""
    h = st.T_HISTORY_FRAMES
    total, freed, victims = _victims(engine, h, h.c.id.is_not(None), budget)
    if victims and not dry_run:
        for i in range(0, len(victims), _CHUNK):
            with engine.begin() as conn:
                conn.execute(delete(h).where(h.c.id.in_(victims[i : i + _CHUNK])))
    return {"before": total, "freed": freed, "images": len(victims)}
