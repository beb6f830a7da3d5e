"""Short-lived read tickets: what a browser puts in a URL instead of its token."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
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
        per_token: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s, self.max_tickets, self.per_token = ttl_s, max_tickets, per_token
        self._clock = clock
        self._lock = threading.Lock()
        self._book: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._by_token: dict[str, deque[str]] = {}  # a token's newest tickets

    def issue(self, token: str) -> str:
        """A new ticket for ``token``; a token keeps at most ``per_token`` live tickets (its
        oldest go first), so one client cannot push everybody else's tickets out."""
        ticket = PREFIX + secrets.token_urlsafe(24)
        with self._lock:
            self._book[ticket] = (token, self._clock() + self.ttl_s)
            mine = self._by_token.setdefault(token, deque())
            mine.append(ticket)
            while len(mine) > self.per_token:
                self._book.pop(mine.popleft(), None)
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
