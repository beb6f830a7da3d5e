"""The one history checker of every fault test: publisher log + SQL -> lost, duplicated, ...

A fault test records what its publisher sent (a ``PublisherLog``: per stream, frame key ->
seq, in publish order), lets the fault happen, then reads the store's ``frames`` and
``gaps`` rows for those streams and calls ``check``. The verdict per stream (Jepsen's queue
checker, adapted to a history that may record gaps):

- ``stored``: published frames with a verdict row; ``duplicated``: rows beyond the first
  for one key; ``unexpected``: rows of the stream whose key nobody published;
- ``gapped``: published frames without a row but covered by a gap row (its seq range, or
  its key for unsequenced frames), counted per gap ``reason``;
- ``lost``: published frames neither stored nor gapped, split by where they sit in publish
  order: ``lost_prefix`` (before the first accounted frame), ``lost_postfix`` (after the
  last one: often "not arrived yet", so tests wait on ``complete``), ``lost_middle``;
- ``stored_and_gapped``: seqs with a verdict row AND inside a gap (an account kept twice),
  except ``late_after_gap``: stored seqs inside a ``missing`` or ``undelivered`` gap (a
  frame inspected after its reorder timeout or the store's hole sweep). The store narrows
  such a gap when the verdict lands (docs/contract.md 8.1), so a history shows it only for
  a gap recorded over an hour before its verdict; a test allows it by naming
  ``"late_after_gap"`` among the allowed gaps.

``ok(allowed_gaps)`` is the pass rule of the fault tests: nothing lost, duplicated,
unexpected or accounted twice, and every gap reason among those the docs allow for the
fault (docs/operations.md, "Faults").
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LATE_OK = ("missing", "undelivered")  # gap reasons a late verdict may still follow
GapRow = tuple[str, int | None, int | None, str]  # gap_key, from_seq, to_seq, reason
Rows = Callable[[str], tuple[list[str], list[GapRow]]]  # stream -> (frame keys, gap rows)


class PublisherLog:
    """What a publisher sent, per stream in publish order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, dict[str, int | None]] = {}

    def record(self, stream: str, seq: int | None, key: str | None = None) -> str:
        """Note one published frame; its key defaults to the store's ``{stream}#0:{seq}``."""
        if key is None:
            if seq is None:
                raise ValueError("an unsequenced frame needs its key")
            key = f"{stream}#0:{seq}"
        with self._lock:
            self._streams.setdefault(stream, {})[key] = seq
        return key

    def streams(self) -> list[str]:
        with self._lock:
            return list(self._streams)

    def published(self, stream: str) -> dict[str, int | None]:
        with self._lock:
            return dict(self._streams.get(stream, {}))

    def count(self, stream: str | None = None) -> int:
        with self._lock:
            if stream is not None:
                return len(self._streams.get(stream, {}))
            return sum(len(v) for v in self._streams.values())


@dataclass(frozen=True)
class History:
    """One stream's account (see the module docstring)."""

    stream: str
    published: int
    stored: int
    gapped: int
    lost: int
    duplicated: int
    unexpected: int
    stored_and_gapped: int
    late_after_gap: int
    lost_prefix: int
    lost_middle: int
    lost_postfix: int
    gaps: dict[str, int] = field(default_factory=dict)  # reason -> frames gapped

    @property
    def complete(self) -> bool:
        """Every published frame is stored or gapped."""
        return self.lost == 0

    def problems(self, allowed_gaps: Collection[str] = ()) -> list[str]:
        out = [
            f"{name}={getattr(self, name)}"
            for name in ("lost", "duplicated", "unexpected", "stored_and_gapped")
            if getattr(self, name)
        ]
        if self.late_after_gap and "late_after_gap" not in allowed_gaps:
            out.append(f"late_after_gap={self.late_after_gap}")
        out += [f"gap reason {r!r} not allowed" for r in sorted(set(self.gaps) - set(allowed_gaps))]
        return out

    def ok(self, allowed_gaps: Collection[str] = ()) -> bool:
        return not self.problems(allowed_gaps)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _covered(gaps: Iterable[GapRow]) -> tuple[dict[int, str], dict[str, str]]:
    by_seq: dict[int, str] = {}
    by_key: dict[str, str] = {}
    for key, lo, hi, reason in gaps:
        by_key[key.split("!")[0]] = reason
        if lo is not None and hi is not None:
            for q in range(lo, hi + 1):
                by_seq[q] = reason
    return by_seq, by_key


def check(
    stream: str,
    published: Mapping[str, int | None],
    stored_keys: Iterable[str],
    gaps: Iterable[GapRow],
) -> History:
    """The account of one stream: ``published`` frame key -> seq in publish order,
    ``stored_keys`` the frame keys of its verdict rows, ``gaps`` its gap rows."""
    stored: dict[str, int] = {}
    for k in stored_keys:
        stored[k] = stored.get(k, 0) + 1
    by_seq, by_key = _covered(gaps)
    state: list[str] = []  # per published frame: "s"tored, "g"apped or "l"ost
    reasons: dict[str, int] = {}
    for k, seq in published.items():
        if k in stored:
            state.append("s")
            continue
        reason = by_key.get(k) or (by_seq.get(seq) if seq is not None else None)
        if reason is None:
            state.append("l")
        else:
            state.append("g")
            reasons[reason] = reasons.get(reason, 0) + 1
    seen = [i for i, x in enumerate(state) if x != "l"]
    first, last = (seen[0], seen[-1]) if seen else (len(state), len(state))
    lost_at = [i for i, x in enumerate(state) if x == "l"]
    twice = [by_seq[q] for k, q in published.items() if k in stored and q in by_seq]
    return History(
        stream=stream,
        published=len(published),
        stored=state.count("s"),
        gapped=state.count("g"),
        lost=len(lost_at),
        duplicated=sum(n - 1 for n in stored.values() if n > 1),
        unexpected=sum(1 for k in stored if k not in published),
        stored_and_gapped=sum(1 for r in twice if r not in LATE_OK),
        late_after_gap=sum(1 for r in twice if r in LATE_OK),
        lost_prefix=sum(1 for i in lost_at if i < first),
        lost_middle=sum(1 for i in lost_at if first < i < last),
        lost_postfix=sum(1 for i in lost_at if i > last),
        gaps=reasons,
    )


_FRAMES = "SELECT frame_key FROM frames WHERE stream = {p}"
_GAPS = "SELECT gap_key, from_seq, to_seq, reason FROM gaps WHERE stream = {p}"


def sqlite_rows(db: Path) -> Rows:
    """Reads a SQLite history read-only with the stdlib driver."""

    def rows(stream: str) -> tuple[list[str], list[GapRow]]:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            keys = [r[0] for r in con.execute(_FRAMES.format(p="?"), (stream,))]
            gaps = [tuple(r) for r in con.execute(_GAPS.format(p="?"), (stream,))]
        finally:
            con.close()
        return keys, gaps

    return rows


def engine_rows(engine: Any) -> Rows:
    """Reads a history through a SQLAlchemy engine (Postgres or SQLite)."""
    from sqlalchemy import text

    def rows(stream: str) -> tuple[list[str], list[GapRow]]:
        with engine.connect() as conn:
            keys = [r[0] for r in conn.execute(text(_FRAMES.format(p=":s")), {"s": stream})]
            gaps = [tuple(r) for r in conn.execute(text(_GAPS.format(p=":s")), {"s": stream})]
        return keys, gaps

    return rows


def check_log(log: PublisherLog, rows: Rows) -> list[History]:
    """Every stream of ``log`` checked against the SQL rows."""
    out = []
    for stream in log.streams():
        keys, gaps = rows(stream)
        out.append(check(stream, log.published(stream), keys, gaps))
    return out


def wait_accounted(
    log: PublisherLog,
    rows: Rows,
    timeout: float,
    allowed_gaps: Collection[str] = (),
    interval: float = 0.5,
) -> list[History]:
    """Wait until every published frame is stored or gapped, then assert the pass rule.

    Fails with the last account when frames stay lost past ``timeout``, or when anything is
    duplicated, unexpected, accounted twice or gapped for a reason not allowed."""
    from helpers import wait_for

    last: list[History] = []

    def complete() -> bool:
        last[:] = check_log(log, rows)
        return all(h.complete for h in last)

    try:
        wait_for(complete, timeout, interval, what="every published frame stored or gapped")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {report(last)}") from None
    assert_ok(last, allowed_gaps)
    return last


def assert_ok(histories: Sequence[History], allowed_gaps: Collection[str] = ()) -> None:
    bad = {h.stream: h.problems(allowed_gaps) for h in histories if not h.ok(allowed_gaps)}
    assert not bad, f"history check failed: {bad}\n{report(histories)}"


def report(histories: Sequence[History]) -> str:
    """One JSON line per stream (printed by the tests, so a run's numbers are kept)."""
    return "\n".join(json.dumps(h.as_dict(), sort_keys=True) for h in histories)
