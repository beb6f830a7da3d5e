"""The batching history writer: decode, fence, write one transaction per batch, then ack."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from broker import topics
from broker.codecs import Rejected, dead_letter, decode_output
from broker.transport import Inbound, Transport, topic_matches
from services.store import repo
from services.store.batchwrite import Prepared, is_transient, write_prepared
from services.store.deadletters import dead_letter_row, store_dead_letter
from services.store.fence import EpochFence
from services.store.rows import Planned, plan
from services.store.rows_teach import plan_teach

log = logging.getLogger(__name__)

# Every output topic the store keeps. Features (embeddings) are not stored: the clustering
# service consumes them and the store keeps its per-frame decision (frame family) instead.
# Threshold control requests are not stored either; the applied ThresholdChange is.
TOPICS = (
    topics.ALL_VERDICTS,
    topics.ALL_FRAME_FAMILIES,
    topics.ALL_THRESHOLD_CHANGES,
    topics.ALL_FEEDBACK_RESULTS,
    topics.ALL_TEACH,
    topics.ALL_HISTORY_FRAMES,
    topics.ALL_GAPS,
    topics.ALL_READINGS,
    topics.ALL_SENSOR_ANOMALIES,
    topics.ALL_ALERTS,
    topics.ALL_STATUS,
    topics.ALL_ASSIGNMENTS,
    topics.ALL_FAMILIES,
    topics.ALL_DEAD_LETTERS,
    topics.DISPATCH_DECISIONS,
)

_RETAINED = (topics.ALL_STATUS, topics.ALL_ASSIGNMENTS, topics.ALL_FAMILIES, topics.ALL_TEACH)


def topics_for(site: str | None = None) -> tuple[str, ...]:
    """The subscriptions: every site, or one site's data topics plus the system topics."""
    if site is None:
        return TOPICS
    prefix = f"{topics.ROOT}/+/"
    return tuple(
        t.replace(prefix, f"{topics.ROOT}/{topics.check_id(site)}/", 1)
        if t.startswith(prefix)
        else t
        for t in TOPICS
    )


@dataclass
class Item:
    """One delivered message on its way to SQL."""

    inbound: Inbound
    planned: Planned

    @property
    def rows(self) -> int:
        return max(1, self.planned.row_count)


class StoreWriter:
    """Subscribes to every stored topic; one flusher thread owns the batches and the fence."""

    def __init__(
        self,
        engine: Engine,
        transport: Transport,
        *,
        batch_rows: int = 500,
        flush_ms: float = 200.0,
        max_pending: int = 20_000,
        evidence_max_bytes: int = 512 * 1024,
        backoff_max_s: float = 5.0,
        site: str | None = None,
    ) -> None:
        self.engine = engine
        self.transport = transport
        self.batch_rows = batch_rows
        self.flush_s = flush_ms / 1000.0
        self.evidence_max_bytes = evidence_max_bytes
        self.backoff_max_s = backoff_max_s
        self.fence = EpochFence()
        self.topics = topics_for(site)
        self._queue: queue.Queue[Item] = queue.Queue(max_pending)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._carry: Item | None = None
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Load the epoch fence from SQL, start the flusher, subscribe.

        Call it BEFORE ``transport.start()``: a resumed persistent session redelivers at
        once, and every subscription must have its handler by then.
        """
        self._load_fence()
        self._thread = threading.Thread(target=self._run, name="store-flusher", daemon=True)
        self._thread.start()
        for pattern in self.topics:
            self.transport.subscribe(pattern, self.on_message, qos=1)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, flush what is queued (bounded by ``timeout``).

        Subscriptions stay in the broker session (no UNSUBSCRIBE), so what is published
        while the writer is down waits for it; deliveries arriving now are left unacked.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _load_fence(self) -> None:
        delay = 0.2
        while True:
            try:
                with self.engine.connect() as conn:
                    history = repo.assignment_history(conn)
                break
            except DBAPIError as exc:
                if not is_transient(exc) or self._stop.is_set():
                    raise
                log.warning(
                    "database unavailable while loading assignments (%s); retrying",
                    type(exc).__name__,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_max_s)
        for worker, epoch, streams in history:
            self.fence.apply(worker, epoch, streams)
        log.info("epoch fence loaded from %d assignments", len(history))

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._stats)
        out["pending"] = self._queue.qsize()
        return out

    def _count(self, **incs: int) -> None:
        with self._lock:
            self._stats.update(incs)

    # ---- delivery thread: decode and queue ----------------------------------------------

    def on_message(self, msg: Inbound) -> None:
        """Decode (or dead-letter) one delivery and queue it for the next batch."""
        if self._stop.is_set():
            return  # stopping: not acked, so the broker delivers it again next session
        self._count(received=1)
        if not msg.payload and any(topic_matches(p, msg.topic) for p in _RETAINED):
            self._count(retained_cleared=1)  # an empty publish clears a retained message
            msg.ack()
            return
        try:
            decoded = decode_output(msg.topic, msg.payload)
            self._count(**{f"msg_{type(decoded).__name__}": 1})
            planned = plan(decoded, evidence_max_bytes=self.evidence_max_bytes)
            if planned is None:
                planned = plan_teach(decoded)
        except Rejected as err:
            self._count(rejected=1)
            log.info("undecodable payload on %s: %s", msg.topic[:200], err)
            planned = Planned()
            planned.add(
                "dead_letters",
                dead_letter_row(
                    dead_letter("store", msg.topic, msg.payload, err, receipt=msg.receipt)
                ),
            )
        if planned is None:
            msg.ack()  # a topic the store does not keep (not subscribed normally)
            return
        self._queue.put(Item(msg, planned))  # bounded: blocks delivery when SQL is behind

    # ---- flusher thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch:
                self._commit_safely(batch)
            elif self._stop.is_set():
                return

    def _collect(self) -> list[Item]:
        """Items until ``batch_rows`` rows or ``flush_s`` after the first one."""
        first = self._carry
        self._carry = None
        if first is None:
            try:
                first = self._queue.get(timeout=0.05)
            except queue.Empty:
                return []
        batch, rows = [first], first.rows
        deadline = time.monotonic() + self.flush_s
        while rows < self.batch_rows:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if rows + item.rows > self.batch_rows:
                self._carry = item
                break
            batch.append(item)
            rows += item.rows
        return batch

    def prepare(self, batch: list[Item]) -> Prepared:
        """Apply assignments to the fence and reject stale results, in delivery order."""
        prep = Prepared()
        for item in batch:
            p = item.planned
            if p.assignment is not None:
                self.fence.apply(*p.assignment)
            rows = p.rows
            if not self.fence.accepts(p.stream, p.epoch):
                prep.stale += 1
                detail = (
                    f"epoch {p.epoch} < fence {self.fence.fence(p.stream or '')} of "
                    f"stream {p.stream}; result of a worker the stream moved away from"
                )
                rows = {
                    "dead_letters": [
                        store_dead_letter(
                            p.key or item.inbound.receipt,
                            item.inbound.topic,
                            "stale_epoch",
                            detail,
                            item.inbound.payload,
                        )
                    ]
                }
            elif p.alert is not None:
                prep.alerts.append(p.alert)
            for table, table_rows in rows.items():
                prep.rows.setdefault(table, []).extend(table_rows)
        return prep

    def _commit_safely(self, batch: list[Item]) -> None:
        """The flusher never dies: an unexpected error keeps the batch (unacked) and retries."""
        while True:
            try:
                self._commit(batch)
                return
            except Exception:
                self._count(flusher_errors=1)
                log.exception("unexpected error writing a batch of %d; retrying", len(batch))
                if self._stop.wait(1.0):
                    return

    def _commit(self, batch: list[Item]) -> None:
        prep = self.prepare(batch)
        if self._write_with_retry(prep, batch):
            for item in batch:
                item.inbound.ack()
            self._count(
                acked=len(batch),
                batches=1,
                stale_epoch=prep.stale,
                rows=sum(len(r) for r in prep.rows.values()),
            )

    def _write_with_retry(self, prep: Prepared, batch: list[Item], *, isolate: bool = True) -> bool:
        """True once committed; False if stopped during an outage (nothing acked)."""
        delay = 0.1
        while True:
            try:
                with self.engine.begin() as conn:
                    write_prepared(conn, prep)
                return True
            except Exception as exc:
                if not is_transient(exc):
                    return self._not_transient(exc, batch, isolate)
                self._count(db_errors=1)
                log.warning(
                    "database write failed (%s: %s); batch of %d kept unacked, retry in %.1fs",
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200],
                    len(batch),
                    delay,
                )
            if self._stop.wait(delay):
                log.warning(
                    "stopping during a database outage; %d messages left unacked", len(batch)
                )
                return False
            delay = min(delay * 2, self.backoff_max_s)
            self.engine.dispose()  # reconnect with fresh connections

    def _not_transient(self, exc: Exception, batch: list[Item], isolate: bool) -> bool:
        self._count(batch_errors=1)
        if isolate:
            log.error(
                "batch of %d failed (%s); writing its messages one by one",
                len(batch),
                type(exc).__name__,
            )
            return self._write_isolated(batch)
        # even the dead letter cannot be stored: ack, so one poison message never blocks all
        self._count(unstorable=len(batch))
        log.critical(
            "dead letter of %d message(s) cannot be stored (%s: %s); acked",
            len(batch),
            type(exc).__name__,
            str(exc)[:200],
        )
        return True

    def _write_isolated(self, batch: list[Item]) -> bool:
        """Each message alone; one that still fails is dead-lettered (``store_error``)."""
        for item in batch:
            try:
                with self.engine.begin() as conn:
                    write_prepared(conn, self.prepare([item]))
                continue
            except Exception as exc:
                if is_transient(exc):
                    return self._write_with_retry(self.prepare(batch), batch)
                detail = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            self._count(store_errors=1)
            log.error("message on %s cannot be stored: %s", item.inbound.topic[:200], detail)
            dl = Prepared(
                rows={
                    "dead_letters": [
                        store_dead_letter(
                            item.planned.key or item.inbound.receipt,
                            item.inbound.topic,
                            "store_error",
                            detail,
                            item.inbound.payload,
                        )
                    ]
                }
            )
            if not self._write_with_retry(dl, [item], isolate=False):
                return False
        return True


def run_until(
    writer: StoreWriter,
    stop: threading.Event,
    on_tick: Callable[[], Any] | None = None,
    tick_s: float = 5.0,
) -> None:
    """Block until ``stop`` is set, calling ``on_tick`` every ``tick_s`` seconds."""
    while not stop.wait(tick_s):
        if on_tick is not None:
            on_tick()
