"""Where a stream's new owner resumes: the end of the seqs accounted for without a hole."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from services.store import schema as s


def accounted_top(intervals: Iterable[tuple[int, int]]) -> int | None:
    """The end of the run of seqs, from the lowest one given, that ``intervals`` (inclusive
    ``(from, to)``; a stored frame is ``(seq, seq)``) cover without a hole."""
    top: int | None = None
    for lo, hi in sorted(intervals):
        if top is not None and lo > top + 1:
            break  # a hole: nothing after it counts
        top = hi if top is None else max(top, hi)
    return top


def last_accounted_seqs(
    conn: Connection, streams: Iterable[str], window: int = 64
) -> dict[str, int]:
    """Per stream: the last seq before the first hole among its latest ``window`` stored
    frames (by decision time) and latest ``window`` gaps (by time) — what a new owner
    resumes after, so its ``failover`` gap also covers a hole an owner died or was cut off
    while still awaiting (docs/contract.md 8.1). Streams with no sequenced history are
    absent."""
    f, g = s.T_FRAMES, s.T_GAPS
    out: dict[str, int] = {}
    for st in streams:
        fq = (
            select(f.c.seq)
            .where(f.c.stream == st, f.c.seq.is_not(None))
            .order_by(f.c.decided_at.desc())
            .limit(window)
        )
        gq = (
            select(g.c.from_seq, g.c.to_seq)
            .where(g.c.stream == st, g.c.from_seq.is_not(None), g.c.to_seq.is_not(None))
            .order_by(g.c.ts.desc())
            .limit(window)
        )
        spans = [(int(r[0]), int(r[0])) for r in conn.execute(fq)]
        spans += [(int(r[0]), int(r[1])) for r in conn.execute(gq)]
        top = accounted_top(spans)
        if top is not None:
            out[st] = top
    return out
