"""Gap rows in SQL: a seq is stored as a verdict or recorded inside a gap, never both.

Either order of arrival ends the same way, and a verdict always wins:

- a gap arriving after verdicts of seqs it covers is inserted minus those seqs
  (``insert_gaps``);
- a verdict arriving after a gap that covers its seq narrows that gap row
  (``narrow_under_frames``): a frame the first owner shed or gave up on can still be
  inspected, e.g. redelivered by the broker to the stream's next owner, or late after its
  reorder timeout.

A narrowed gap becomes one row per remaining piece, keyed ``{gap key}@{from}-{to}``; a gap
whose every seq is stored leaves no row. Gap keys start with the ``{stream}#{pub_epoch}:``
of the frames they cover (edge keys, docs/contract.md 8.1), so a gap only ever narrows
under frames of its own publisher epoch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, delete, or_, select

from services.store import schema as s
from services.store.repo import CHUNK, Row, insert_ignore

SEQUENCED_REASONS = ("missing", "failover", "shed", "undelivered")  # narrowed either way
KEY_CHECK_MAX = 20_000  # a gap up to this many seqs is checked by frame key (unique index)
LOOKBACK = timedelta(hours=1)  # a verdict narrows gaps recorded up to this long before it
_KEY_LEN = 600


def gap_frame_prefix(row: Mapping[str, Any]) -> str | None:
    """``{stream}#{pe}:`` of the frames a sequenced gap row covers, from its key.

    Edge gap keys start with it: ``{stream}#{pe}:{seq}!{reason}`` (one frame),
    ``{stream}#{pe}:gap:{from}-{to}`` (missing), ``{stream}#{pe}:failover:{from}-{to}``."""
    key, stream = str(row["gap_key"]), str(row["stream"])
    if row.get("from_seq") is None or row.get("to_seq") is None:
        return None
    m = re.match(re.escape(stream) + r"#(\d+):", key)
    return f"{stream}#{m.group(1)}:" if m else None


def gap_pieces(lo: int, hi: int, stored: Iterable[int]) -> list[tuple[int, int]]:
    """The sub-ranges of ``lo..hi`` (inclusive) without a stored seq (pure)."""
    out, start = [], lo
    for seq in sorted({x for x in stored if lo <= x <= hi}):
        if seq > start:
            out.append((start, seq - 1))
        start = seq + 1
    if start <= hi:
        out.append((start, hi))
    return out


def stored_seqs(conn: Connection, stream: str, prefix: str, lo: int, hi: int) -> set[int]:
    """Seqs ``lo..hi`` of one publisher epoch (``prefix``) that have a stored frame."""
    f = s.T_FRAMES
    out: set[int] = set()
    if hi - lo + 1 <= KEY_CHECK_MAX:
        for start in range(lo, hi + 1, CHUNK):
            keys = [f"{prefix}{q}" for q in range(start, min(hi, start + CHUNK - 1) + 1)]
            for (key,) in conn.execute(select(f.c.frame_key).where(f.c.frame_key.in_(keys))):
                out.add(int(str(key)[len(prefix) :]))
        return out
    q = select(f.c.frame_key, f.c.seq).where(f.c.stream == stream, f.c.seq.between(lo, hi))
    rows: list[Any] = list(conn.execute(q))
    out.update(int(seq) for key, seq in rows if str(key).startswith(prefix) and seq is not None)
    return out


def _pieces(row: Mapping[str, Any], stored: set[int]) -> list[Row]:
    lo, hi = int(row["from_seq"]), int(row["to_seq"])
    return [
        {
            **row,
            "gap_key": f"{row['gap_key']}@{a}-{b}"[:_KEY_LEN],
            "from_seq": a,
            "to_seq": b,
            "count": b - a + 1,
        }
        for a, b in gap_pieces(lo, hi, stored)
    ]


def narrow_gap(conn: Connection, row: Row) -> list[Row]:
    """A gap row minus the seqs already stored as frames (in this transaction too).

    Unchanged when nothing overlaps; otherwise one row per remaining piece (nothing when
    every seq is stored). A gap whose own key, or a piece of it, is already recorded (a
    redelivery) adds nothing."""
    prefix = gap_frame_prefix(row)
    if prefix is None or row["reason"] not in SEQUENCED_REASONS:
        return [row]
    lo, hi = int(row["from_seq"]), int(row["to_seq"])
    if hi < lo:
        return [row]
    stored = stored_seqs(conn, str(row["stream"]), prefix, lo, hi)
    if not stored:
        return [row]
    g, key = s.T_GAPS, str(row["gap_key"])
    seen = or_(g.c.gap_key == key, g.c.gap_key.startswith(f"{key}@", autoescape=True))
    if conn.execute(select(g.c.id).where(seen).limit(1)).first() is not None:
        return []  # a redelivery: the row, or what is left of it, is there
    return _pieces(row, stored)


def insert_gaps(conn: Connection, rows: Sequence[Row]) -> None:
    """Gap rows, each narrowed to the seqs not stored as frames, then inserted idempotently."""
    out: list[Row] = []
    for row in rows:
        out.extend(narrow_gap(conn, row))
    insert_ignore(conn, s.T_GAPS, out)


def narrow_under_frames(conn: Connection, frames: Sequence[Row]) -> int:
    """After verdict rows were inserted: gap rows recorded earlier (up to ``LOOKBACK``
    before the verdict) that cover one of their seqs are replaced by their pieces around
    every stored seq. Returns how many gap rows were narrowed. One indexed query per
    stream of the batch (``ix_gaps_stream_ts``); gaps are rare, so it finds nothing almost
    always."""
    by_stream: dict[str, list[Row]] = {}
    for r in frames:
        if r.get("seq") is not None:
            by_stream.setdefault(str(r["stream"]), []).append(r)
    g, narrowed = s.T_GAPS, 0
    for stream, rows in by_stream.items():
        seqs = [int(r["seq"]) for r in rows]
        since = min(r["decided_at"] for r in rows) - LOOKBACK
        q = select(g).where(
            g.c.stream == stream,
            g.c.ts >= since,
            g.c.reason.in_(SEQUENCED_REASONS),
            g.c.from_seq <= max(seqs),
            g.c.to_seq >= min(seqs),
        )
        for found in conn.execute(q).mappings():
            gap = dict(found)
            prefix = gap_frame_prefix(gap)
            mine = {
                int(r["seq"])
                for r in rows
                if prefix is not None
                and str(r["frame_key"]) == f"{prefix}{r['seq']}"
                and gap["from_seq"] <= r["seq"] <= gap["to_seq"]
            }
            if not mine:
                continue
            assert prefix is not None
            lo, hi = int(gap["from_seq"]), int(gap["to_seq"])
            stored = stored_seqs(conn, stream, prefix, lo, hi)
            pieces = _pieces({k: v for k, v in gap.items() if k != "id"}, stored)
            conn.execute(delete(g).where(g.c.id == gap["id"]))
            insert_ignore(conn, g, pieces)
            narrowed += 1
    return narrowed
