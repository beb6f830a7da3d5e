"""Helpers of the paho adapter: errors, ack waiters, broker receipts, filters, diagnosis."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from broker.codecs import encode
from broker.config import MqttUrl
from broker.messages import Msg


class MqttError(RuntimeError):
    """Base of every error the MQTT adapter raises."""


class ConnectError(MqttError):
    """The broker could not be reached or refused the connection (message names the URL)."""


class PublishError(MqttError):
    """A publish could not even be queued (not started, outgoing queue full, not connected)."""


class SubscribeError(MqttError):
    """The broker refused a subscription (e.g. the ACL denies it)."""


# ---- PUBACK / SUBACK waiters ---------------------------------------------------------------

STOPPED = "transport stopped"  # the error of waiters still open when the transport stops


class Waiter:
    """Handle of one publish or subscribe; the ``Published`` of the Transport interface.

    ``wait`` returns True once the broker acknowledged it without an error. An MQTT v5 broker
    may acknowledge with a failure reason code (e.g. "Not authorized"): then ``done`` is True,
    ``wait`` returns False and ``error`` says why.
    """

    __slots__ = ("_event", "_then", "error", "mid")

    def __init__(self, mid: int) -> None:
        self.mid = mid
        self.error: str | None = None
        self._event = threading.Event()
        self._then: list[Callable[[Waiter], None]] = []

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout) and self.error is None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def then(self, fn: Callable[[Waiter], None]) -> None:
        """Call ``fn(self)`` once resolved (at once when already resolved)."""
        run_now = False
        with _THEN_LOCK:
            if self._event.is_set():
                run_now = True
            else:
                self._then.append(fn)
        if run_now:
            fn(self)

    def resolve(self, error: str | None) -> None:
        with _THEN_LOCK:
            if self._event.is_set():
                return
            self.error = error
            self._event.set()
            callbacks, self._then = self._then, []
        for fn in callbacks:
            fn(self)


_THEN_LOCK = threading.Lock()


class MidBook:
    """Maps paho message ids to waiters. The acknowledgement may arrive (on paho's network
    thread) before the publishing thread registered the mid, so early results are parked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, Waiter] = {}
        self._early: dict[int, str | None] = {}

    def expect(self, mid: int) -> Waiter:
        waiter = Waiter(mid)
        with self._lock:
            if mid not in self._early:
                self._waiting[mid] = waiter
                return waiter
            error = self._early.pop(mid)
        waiter.resolve(error)
        return waiter

    def resolve(self, mid: int, error: str | None) -> None:
        with self._lock:
            waiter = self._waiting.pop(mid, None)
            if waiter is None:
                self._early[mid] = error
                return
        waiter.resolve(error)

    def fail_all(self, error: str = STOPPED) -> int:
        """Resolve every outstanding waiter with ``error`` (the transport stopped)."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            self._early.clear()
        for waiter in waiting.values():
            waiter.resolve(error)
        return len(waiting)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)


# ---- broker receipts -----------------------------------------------------------------------


class Receipts:
    """Receipt keys for delivered messages: stable across redelivery, distinct otherwise.

    MQTT has no broker-wide message id; a redelivery (DUP=1) reuses the packet id (``mid``) of
    the first attempt, so the base receipt is ``client:mid:digest(topic, payload)``. Packet ids
    are recycled (1..65535), so the same payload on a recycled mid would collide. Within one
    process a *fresh* delivery (DUP=0) whose base was already issued gets a suffix unique to
    this process; a redelivery reuses the receipt its first attempt got in this process, or
    the base receipt after a restart. Publishers that send ``seq`` do not depend on this.
    """

    _PER_MID = 4  # digests remembered per packet id

    def __init__(self, client_id: str) -> None:
        self._client_id = client_id
        self._boot = f"{int(time.time() * 1000):x}{os.getpid():x}"
        self._lock = threading.Lock()
        self._seen: dict[int, dict[str, int]] = {}  # mid -> digest -> fresh deliveries
        self._live: dict[int, tuple[str, str]] = {}  # mid -> (digest, receipt) not yet acked

    def issue(self, mid: int, topic: str, payload: bytes, dup: bool) -> str:
        digest = hashlib.sha1(topic.encode() + b"\0" + payload, usedforsecurity=False)
        d = digest.hexdigest()[:12]
        base = f"{self._client_id}:{mid}:{d}"
        with self._lock:
            live = self._live.get(mid)
            if dup and live is not None and live[0] == d:
                return live[1]
            seen = self._seen.setdefault(mid, {})
            count = seen.get(d, 0)
            receipt = base if dup or count == 0 else f"{base}~{self._boot}.{count}"
            seen[d] = count + 1
            while len(seen) > self._PER_MID:
                del seen[next(iter(seen))]
            self._live[mid] = (d, receipt)
            return receipt

    def settled(self, mid: int) -> None:
        """The message with ``mid`` was acknowledged; its redelivery can no longer happen."""
        with self._lock:
            self._live.pop(mid, None)


# ---- topic filters, ids, payloads ----------------------------------------------------------


def check_filter(pattern: str) -> str:
    """Return ``pattern`` if it is a valid MQTT topic filter, else raise ValueError."""
    if not pattern or len(pattern.encode()) > 65535 or "\0" in pattern:
        raise ValueError(f"bad topic filter {pattern[:80]!r}: empty, too long or holds NUL")
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or (
            "+" in level and level != "+"
        ):
            raise ValueError(f"bad topic filter {pattern[:80]!r}: misplaced wildcard")
    return pattern


_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")


def component_id(client_id: str) -> str:
    """A contract id (``[A-Za-z0-9_-]{1,64}``) made from a client id, for dead letters."""
    return _NOT_ID.sub("_", client_id)[:64] or "client"


def encode_msg(msg: Msg) -> bytes:
    """Compact JSON of an output message (the contract's one encoder)."""
    return encode(msg)


def diagnose(url: MqttUrl, ca_file: Path | None) -> str:
    """Why no MQTT connection opened: one direct TCP (and TLS) attempt, for the error text."""
    try:
        with socket.create_connection((url.host, url.port), timeout=3) as sock:
            if url.tls:
                ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
                with ctx.wrap_socket(sock, server_hostname=url.host):
                    pass
    except ssl.SSLError as exc:
        return f"TLS failed: {exc.reason or exc}"
    except OSError as exc:
        return f"broker unreachable: {exc.strerror or exc}"
    return "broker unreachable"
