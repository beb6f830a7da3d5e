"""The dispatcher's SQL side, through services.store only: leader lease and assignment records."""

from __future__ import annotations

import logging
from typing import Any

from broker.messages import Assignment, DispatchDecision
from broker.topics import StreamRef, TopicError
from services.dispatcher.settings import DispatchSettings
from services.store import repo
from services.store.engine import make_engine, require_head, writer
from services.store.leadership import Leadership
from services.store.resume import last_accounted_seqs

log = logging.getLogger(__name__)


class SqlAssignments:
    """Records every decision and per-worker assignment; recovers the latest ones at start."""

    def __init__(self, db_url: str) -> None:
        self.engine: Any = make_engine(db_url)

    def check(self) -> None:
        """Raise SchemaBehind when `linewatch db upgrade` has not been run."""
        require_head(self.engine)

    def max_epoch(self) -> int:
        with self.engine.connect() as conn:
            return repo.max_epoch(conn)

    def latest_assignments(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        with self.engine.connect() as conn:
            return repo.latest_assignments(conn)

    def last_seqs(self, streams: list[str]) -> dict[str, int]:
        """Per stream: the last seq already stored or recorded as a gap (absent: none)."""
        full = {}
        for st in streams:
            try:
                full[StreamRef.parse_key(st).key] = st
            except TopicError:
                continue
        with self.engine.connect() as conn:
            found = last_accounted_seqs(conn, sorted(full))
        return {full[k]: seq for k, seq in found.items()}

    def record(
        self, assignments: list[Assignment], decision: DispatchDecision, reason: str
    ) -> None:
        """One transaction: the changed assignments and the decision (both idempotent)."""
        with writer(self.engine).begin() as conn:
            for a in assignments:
                repo.record_assignment(
                    conn,
                    a.worker,
                    a.epoch,
                    a.streams,
                    reason,
                    decision.cost_after,
                    a.ts,
                    rates=a.rates,
                    dispatcher=a.dispatcher,
                )
            repo.record_decision(conn, decision)

    def close(self) -> None:
        self.engine.dispose()


def open_sql(settings: DispatchSettings) -> tuple[Leadership, SqlAssignments]:
    """Leader lease (advisory lock on Postgres, lease row on SQLite) and the record store."""
    store = SqlAssignments(settings.db_url)
    store.check()
    lock = Leadership(
        settings.db_url, settings.lease_name, settings.dispatcher_id, settings.lease_ttl_s
    )
    return lock, store
