"""Short-lived read tickets: what a browser puts in a URL instead of its token."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

PREFIX = "lwk_"


class TicketBook:
    """Ticket -> the token it stands for, for ``ttl_s``. A ticket only ever authorises reads
    (the SSE stream, evidence images): EventSource and ``<img>`` cannot send headers, and a
    token in a URL ends up in logs, history and Referer headers. The token behind a ticket is
    looked up again at every use, so revoking the token voids its tickets too. In memory and
    bounded (the oldest tickets go first); a feed restart voids every ticket."""

    def __init__(
        self,
        ttl_s: float = 300.0,
        max_tickets: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s, self.max_tickets, self._clock = ttl_s, max_tickets, clock
        self._lock = threading.Lock()
        self._book: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def issue(self, token: str) -> str:
        ticket = PREFIX + secrets.token_urlsafe(24)
        with self._lock:
            self._book[ticket] = (token, self._clock() + self.ttl_s)
            while len(self._book) > self.max_tickets:
                self._book.popitem(last=False)
        return ticket

    def token(self, ticket: str) -> str | None:
        """The token behind a live ticket, else None (unknown or expired)."""
        with self._lock:
            found = self._book.get(ticket)
            if found is None:
                return None
            if found[1] < self._clock():
                del self._book[ticket]
                return None
            return found[0]
