"""History a model can be retrained from: sampled good frames and the frames operators marked
(``confirmed`` -> their family, ``not_a_defect`` -> good), each with its time and PNG."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select

from broker.topics import StreamRef, TopicError
from services.store import schema as s
from services.store import schema_teach as st

GOOD = "good"


class HistoryError(ValueError):
    """A history selection that cannot be read (bad camera or line id)."""


@dataclass(frozen=True)
class HistoryItem:
    """One stored frame with its label (``good`` or a family) and when it was seen."""

    key: str
    stream: str
    label: str
    ts: datetime
    png: bytes
    source: str  # "sample" (a worker's good-frame sample) or "feedback"


def stream_filter(camera: str | None, line: str | None) -> tuple[str, bool]:
    """(value, is_prefix): one camera's canonical stream key, or ``site/line/`` for a line."""
    if (camera is None) == (line is None):
        raise HistoryError("name exactly one of --camera STREAM or --line SITE/LINE")
    if camera is not None:
        try:
            return StreamRef.parse_key(camera).key, False
        except TopicError as exc:
            raise HistoryError(
                f"--camera {camera[:120]!r} is not a camera stream key "
                f"(site/line/station/camera/name): {exc}"
            ) from None
    parts = (line or "").split("/")
    try:
        if len(parts) != 2:
            raise TopicError("bad_id", "expected SITE/LINE")
        StreamRef.camera(parts[0], parts[1], "x", "x")
    except TopicError as exc:
        raise HistoryError(f"--line {line!r} is not SITE/LINE: {exc}") from None
    return f"{parts[0]}/{parts[1]}/", True


def _match(col: Any, value: str, prefix: bool) -> ColumnElement[bool]:
    return col.startswith(value, autoescape=True) if prefix else col == value


def history_items(
    engine: Engine,
    camera: str | None = None,
    line: str | None = None,
    since: datetime | None = None,
) -> list[HistoryItem]:
    """Every usable stored frame of the camera or line, oldest first, one per frame key.

    A frame an operator marked is labelled by the latest mark (its image: the one the
    worker kept, else the frame's sample); that label wins over the sample's ``good``.
    ``unsure`` marks are left out."""
    value, prefix = stream_filter(camera, line)
    by_key: dict[str, HistoryItem] = {}
    for item in _samples(engine, value, prefix, since):
        by_key[item.key] = item
    for item in _marked(engine, value, prefix, since):
        by_key[item.key] = item
    return sorted(by_key.values(), key=lambda i: (i.ts, i.key))


def _samples(
    engine: Engine, value: str, prefix: bool, since: datetime | None
) -> Iterator[HistoryItem]:
    h = st.T_HISTORY_FRAMES
    q = select(h.c.frame_key, h.c.stream, h.c.ts, h.c.image).where(
        _match(h.c.stream, value, prefix)
    )
    if since is not None:
        q = q.where(h.c.ts >= since)
    with engine.connect() as conn:
        rows: Any = conn.execute(q.order_by(h.c.id)).all()
    for key, stream, ts, image in rows:
        yield HistoryItem(key, stream, GOOD, ts, bytes(image), "sample")


def _marked(
    engine: Engine, value: str, prefix: bool, since: datetime | None
) -> Iterator[HistoryItem]:
    """Marked frames with an image: the one the worker kept with its answer, else the frame's
    good-frame sample (an operator may confirm a defect the model missed among those)."""
    f, r, fr, h = st.T_FEEDBACK, st.T_FEEDBACK_RESULTS, s.T_FRAMES, st.T_HISTORY_FRAMES
    seen = func.coalesce(fr.c.decided_at, h.c.ts, f.c.created_at)
    image = func.coalesce(r.c.image, h.c.image)
    q = (
        select(f.c.frame_key, f.c.stream, f.c.label, f.c.family, seen.label("seen"), image)
        .outerjoin(r, and_(r.c.feedback_id == f.c.id, r.c.image.is_not(None)))
        .outerjoin(h, h.c.frame_key == f.c.frame_key)
        .outerjoin(fr, fr.c.frame_key == f.c.frame_key)
        .where(
            _match(f.c.stream, value, prefix),
            or_(r.c.image.is_not(None), h.c.image.is_not(None)),
            f.c.label.in_(("confirmed", "not_a_defect")),
        )
        .order_by(f.c.id, r.c.id)
    )
    if since is not None:
        q = q.where(seen >= since)
    with engine.connect() as conn:
        rows: Any = conn.execute(q).all()
    for key, stream, label, family, ts, png in rows:  # later marks replace earlier ones
        if label == "confirmed" and not family:
            continue  # a confirmed mark without a family cannot teach a class
        name = GOOD if label == "not_a_defect" else str(family)
        yield HistoryItem(key, stream, name, ts, bytes(png), "feedback")
