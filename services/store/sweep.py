"""The store's hole sweep: seqs that never reached SQL although later seqs of the same
publisher epoch did, and that no worker recorded as a gap, become ``undelivered`` gap rows.

Why: a message the broker acknowledged and held for the store can vanish with the broker
(Mosquitto SIGKILLed between autosaves keeps nothing it held in memory). No worker knows:
each one delivered its verdict. Only the store can see the hole, once a later frame of the
camera is stored. The sweep runs every ``sweep_interval_s`` over the frames decided between
its last pass and ``sweep_grace_s`` ago (the grace lets late verdicts, the workers'
``missing`` and ``failover`` gaps and the store's own queue land first). A hole it records
and whose verdict still arrives later is stored as well (``late_after_gap``, as with
``missing``). The last frames of a camera that sends nothing afterwards cannot be seen."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, select

from broker.messages import utcnow
from services.store import gaps, repo
from services.store import schema as s

log = logging.getLogger(__name__)

REASON = "undelivered"
FIRST_LOOKBACK = timedelta(hours=2)  # a store's first pass looks this far back
MAX_ROWS = 200_000  # frames one pass reads at most (the rest waits for the next pass)


@dataclass
class SweepReport:
    frames: int = 0
    holes: int = 0
    seqs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "holes": self.holes, "seqs": self.seqs}


def holes_in(seqs: list[int], after: int | None) -> list[tuple[int, int]]:
    """Missing runs among sorted unique ``seqs``, starting after ``after`` when known (pure)."""
    out: list[tuple[int, int]] = []
    prev = after
    for q in seqs:
        if prev is not None and q > prev + 1:
            out.append((prev + 1, q - 1))
        if prev is None or q > prev:
            prev = q
    return out


class HoleSweep:
    """One store's sweep state: per publisher epoch (``{stream}#{pe}:``), the highest seq
    already examined, so a hole across two passes is still seen."""

    def __init__(self, engine: Engine, worker: str, *, grace_s: float, site: str | None = None):
        self.engine, self.worker, self.site = engine, worker, site
        self.grace = timedelta(seconds=grace_s)
        self._upto: datetime | None = None
        self._last: dict[str, int] = {}

    def run(self, now: datetime | None = None) -> SweepReport:
        now = now or utcnow()
        hi = now - self.grace
        lo = self._upto or (hi - FIRST_LOOKBACK)
        if hi <= lo:
            return SweepReport()
        rep = SweepReport()
        f = s.T_FRAMES
        q = (
            select(
                f.c.frame_key,
                f.c.seq,
                f.c.stream,
                f.c.site,
                f.c.line,
                f.c.station,
                f.c.camera,
                f.c.epoch,
                f.c.decided_at,
            )
            .where(f.c.decided_at > lo, f.c.decided_at <= hi, f.c.seq.is_not(None))
            .order_by(f.c.decided_at)
            .limit(MAX_ROWS)
        )
        if self.site:
            q = q.where(f.c.site == self.site)
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        rep.frames = len(rows)
        if len(rows) == MAX_ROWS:
            hi = rows[-1]["decided_at"]  # the rest next pass
        by_prefix: dict[str, list[Any]] = {}
        for r in rows:
            key, tail = str(r["frame_key"]), f":{r['seq']}"
            if not key.endswith(tail) or "#" not in key:
                continue  # not an edge frame key (``{stream}#{pe}:{seq}``)
            by_prefix.setdefault(key[: len(key) - len(tail) + 1], []).append(r)
        found: list[repo.Row] = []
        with self.engine.connect() as conn:
            for prefix, group in by_prefix.items():
                seqs = sorted({int(r["seq"]) for r in group})
                for a, b in holes_in(seqs, self._last.get(prefix)):
                    found.extend(self._uncovered(conn, prefix, a, b, group[-1], now))
                self._last[prefix] = max(seqs[-1], self._last.get(prefix, seqs[-1]))
        if found:
            with self.engine.begin() as conn:
                repo.insert_ignore(conn, s.T_GAPS, found)
            for row in found:
                log.warning(
                    "undelivered: %s seqs %d-%d never reached the store (recorded as a gap)",
                    row["stream"],
                    row["from_seq"],
                    row["to_seq"],
                )
        rep.holes = len(found)
        rep.seqs = sum(int(r["count"]) for r in found)
        self._upto = hi
        return rep

    def _uncovered(
        self, conn: Any, prefix: str, a: int, b: int, ref: Any, now: datetime
    ) -> list[repo.Row]:
        """Gap rows for the seqs of ``a..b`` neither stored (anywhere in the table) nor
        inside a gap row of the same publisher epoch."""
        covered = gaps.stored_seqs(conn, str(ref["stream"]), prefix, a, b)
        g = s.T_GAPS
        spans = conn.execute(
            select(g.c.from_seq, g.c.to_seq).where(
                g.c.stream == ref["stream"],
                g.c.gap_key.startswith(prefix, autoescape=True),
                and_(g.c.from_seq <= b, g.c.to_seq >= a),
            )
        )
        for lo, hi in spans:
            covered.update(range(max(a, int(lo)), min(b, int(hi)) + 1))
        out = []
        for x, y in gaps.gap_pieces(a, b, covered):
            out.append(
                {
                    "gap_key": f"{prefix}{REASON}:{x}-{y}",
                    "stream": ref["stream"],
                    "site": ref["site"],
                    "line": ref["line"],
                    "station": ref["station"],
                    "kind": "camera",
                    "name": ref["camera"],
                    "reason": REASON,
                    "from_seq": x,
                    "to_seq": y,
                    "count": y - x + 1,
                    "worker": self.worker,
                    "epoch": int(ref["epoch"] or 0),
                    "ts": now,
                }
            )
        return out


def sweep_loop(sweep: HoleSweep, stop: threading.Event, interval_s: float) -> None:
    """A pass every ``interval_s`` on its own thread; a failed pass is retried next time."""
    while not stop.wait(interval_s):
        try:
            rep = sweep.run()
            if rep.holes:
                log.info("hole sweep: %s", rep.as_dict())
        except Exception:
            log.exception("hole sweep failed; the writer keeps running")
