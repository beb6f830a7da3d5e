"""One shared tail of ``alert_events`` for every SSE stream, with caps and revocation checks."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter, deque
from typing import Any

from sqlalchemy import Engine

from services.store import queries

log = logging.getLogger(__name__)
BATCH = 200


class StreamHub:
    """Caps open streams (``max_total``, ``max_per_key`` per token or client address); one
    poller thread reads new lifecycle events from SQL every ``poll_s`` into a ring that all
    streams read from memory (N streams cost one query per poll, not N), and re-checks the
    tokens of open streams every ``check_s`` so a revoked token's streams end within it.
    Streams sleep until the poller has new rows (``wait``), not on a timer of their own.
    The thread runs only while a stream is open."""

    def __init__(
        self,
        engine: Engine,
        *,
        poll_s: float,
        max_total: int,
        max_per_key: int,
        check_s: float = 0.5,
        ring: int = 4096,
    ) -> None:
        self.engine, self.poll_s, self.check_s = engine, poll_s, check_s
        self.max_total, self.max_per_key = max_total, max_per_key
        self._lock = threading.Lock()
        self._slots: Counter[str] = Counter()
        self._tokens: Counter[str] = Counter()
        self._revoked: set[str] = set()
        self._ring: deque[dict[str, Any]] = deque(maxlen=ring)
        self._floor: int | None = None  # every event after it, up to _last, is in the ring
        self._last = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    # ---- slots ---------------------------------------------------------------------------

    def acquire(self, key: str, token: str | None) -> str | None:
        """Take a slot; None when granted, else why not (the cap that is full)."""
        with self._lock:
            if sum(self._slots.values()) >= self.max_total:
                return f"the feed serves at most {self.max_total} streams"
            if self._slots[key] >= self.max_per_key:
                return f"at most {self.max_per_key} streams per token"
            self._slots[key] += 1
            if token is not None:
                self._tokens[token] += 1
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="feed-sse", daemon=True)
                self._thread.start()
        return None

    def release(self, key: str, token: str | None) -> None:
        with self._lock:
            self._slots[key] -= 1
            if self._slots[key] <= 0:
                del self._slots[key]
            if token is not None:
                self._tokens[token] -= 1
                if self._tokens[token] <= 0:
                    del self._tokens[token]
                    self._revoked.discard(token)

    def open(self) -> int:
        with self._lock:
            return sum(self._slots.values())

    def revoked(self, token: str) -> bool:
        with self._lock:
            return token in self._revoked

    # ---- the shared tail -----------------------------------------------------------------

    def after(self, last: int) -> list[dict[str, Any]] | None:
        """Events after ``last`` from memory; None when the ring does not reach back that far
        (the caller reads SQL until it catches up)."""
        with self._lock:
            if self._floor is None or last < self._floor:
                return None
            out: list[dict[str, Any]] = []
            for row in reversed(self._ring):
                if row["event_id"] <= last:
                    break
                out.append(row)
            out.reverse()
            return out

    async def wait(self, last: int, timeout: float) -> None:
        """Return once events after ``last`` are in the ring, or after ``timeout``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._floor is not None and self._last > last:
                return
            if self._floor is None:  # the poller's first read is not in yet
                timeout = min(timeout, self.poll_s)
            entry = (loop, fut)
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)

    def _wake(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, set()
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(5)

    def _run(self) -> None:
        checked = 0.0
        while not self._stop.wait(self.poll_s):
            with self._lock:
                if not self._slots:
                    self._thread = None
                    return
            try:
                self._poll()
                checked += self.poll_s
                if checked >= self.check_s:
                    checked = 0.0
                    self._check_tokens()
            except Exception:
                log.exception("SSE tail poll failed; retrying")
        with self._lock:
            self._thread = None

    def _poll(self) -> None:
        with self.engine.connect() as conn:
            if self._floor is None:
                last = queries.last_event_id(conn)
                with self._lock:
                    self._floor = self._last = last
            while True:
                rows = queries.events_after(conn, self._last, BATCH)
                with self._lock:
                    for row in rows:
                        if len(self._ring) == self._ring.maxlen:
                            self._floor = self._ring[0]["event_id"]
                        self._ring.append(row)
                        self._last = row["event_id"]
                if rows:
                    self._wake()
                if len(rows) < BATCH:
                    return

    def _check_tokens(self) -> None:
        with self._lock:
            tokens = list(self._tokens)
        if not tokens:
            return
        with self.engine.connect() as conn:
            gone = set(tokens) - queries.live_tokens(conn, tokens)
        with self._lock:
            self._revoked |= gone & set(self._tokens)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
