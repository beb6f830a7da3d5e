"""A loopback TCP fault proxy: put it between a component and the broker or Postgres, then
break, blackhole, delay or throttle the link from the test — network faults without root.

    proxy = FaultProxy("127.0.0.1", 5432).start()   # listens on 127.0.0.1:proxy.port
    proxy.cut()                 # every open connection reset (RST both ways), new ones pass
    proxy.refuse()              # link down: new connections are reset at once; heal() ends it
    proxy.blackhole("up")       # bytes client->server held (not delivered, not lost): a partition
    proxy.delay(0.2, "down")    # server->client bytes delivered 200 ms late
    proxy.throttle(20_000)      # at most 20 kB/s each way
    proxy.heal()                # everything back to pass-through; held bytes flow on
    proxy.stop()

Directions: "up" is client -> upstream, "down" upstream -> client, "both" both. A blackhole
is a partition, not a loss: TCP would retransmit after it heals, so held bytes are delivered
then, in order; an endpoint that gives up meanwhile (keepalive) closes its socket, and the
other side sees that close only when the direction towards it heals. A closed or reset end
is passed on (FIN as FIN, RST as RST) after whatever was queued before it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

Direction = Literal["up", "down", "both"]
_CHUNK = 65536
_QUEUE_BYTES = 1 << 20  # per direction and connection: a full queue stops reading (backpressure)
_TICK = 0.05  # how often blocked threads look at the link's state
_EOF, _RST = b"<EOF>", b"<RST>"  # queue markers, compared by identity only


@dataclass
class Shape:
    """What happens to one direction's bytes."""

    held: bool = False
    delay_s: float = 0.0
    rate_bps: float | None = None


def _dirs(direction: Direction) -> tuple[str, ...]:
    if direction not in ("up", "down", "both"):
        raise ValueError(f"direction must be up, down or both, not {direction!r}")
    return ("up", "down") if direction == "both" else (direction,)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Conn:
    """One proxied connection: a reader and a writer thread per direction."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.socks = {"client": client, "server": server}
        self.dead = threading.Event()
        self.queues: dict[str, deque[tuple[float, bytes]]] = {"up": deque(), "down": deque()}
        self.queued = {"up": 0, "down": 0}
        self.ended = {"up": False, "down": False}
        self.delivered = {"up": 0, "down": 0}
        self.lock = threading.Condition()
        self.threads = [
            threading.Thread(target=self._read, args=("up", client), daemon=True),
            threading.Thread(target=self._read, args=("down", server), daemon=True),
            threading.Thread(target=self._write, args=("up", server), daemon=True),
            threading.Thread(target=self._write, args=("down", client), daemon=True),
        ]
        for s in (client, server):
            s.settimeout(_TICK)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _read(self, d: str, src: socket.socket) -> None:
        while not self.dead.is_set():
            with self.lock:
                if self.queued[d] >= _QUEUE_BYTES:
                    self.lock.wait(_TICK)
                    continue
            try:
                data = src.recv(_CHUNK)
            except TimeoutError:
                continue
            except OSError:
                data = _RST
            end = not data or data is _RST
            with self.lock:
                self.queues[d].append((time.monotonic(), data or _EOF))
                self.queued[d] += 0 if end else len(data)
                self.lock.notify_all()
            if end:
                return

    def _next(self, d: str) -> tuple[float, bytes] | None:
        with self.lock:
            if not self.queues[d]:
                self.lock.wait(_TICK)
                return None
            return self.queues[d][0]

    def _write(self, d: str, dst: socket.socket) -> None:
        while not self.dead.is_set():
            item = self._next(d)
            if item is None or not self.proxy._may_send(d, item[0]):
                continue
            data = item[1]
            if data is _RST:
                self.close(reset=True)
                return
            if data is _EOF:
                self._half_close(d, dst)
                return
            sent = 0
            while sent < len(data) and not self.dead.is_set():
                n = self.proxy._allowance(d, len(data) - sent)
                try:
                    sent += dst.send(data[sent : sent + n])
                except TimeoutError:
                    continue
                except OSError:
                    self.close(reset=True)
                    return
            self.proxy._count(self, d, sent)
            with self.lock:
                self.queues[d].popleft()
                self.queued[d] -= len(data)
                self.lock.notify_all()

    def _half_close(self, d: str, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with self.lock:
            self.ended[d] = True
            both = all(self.ended.values())
        if both:
            self.close(reset=False)

    def close(self, reset: bool) -> None:
        """End the connection: RST both ends (``reset``) or a plain close."""
        with self.lock:
            if self.dead.is_set():
                return
            self.dead.set()
        me = threading.current_thread()
        for t in self.threads:
            if t is not me and t.is_alive():
                t.join(2 * _TICK + 1)
        for s in self.socks.values():
            if reset:
                _reset(s)
            else:
                s.close()
        self.proxy._forget(self)


class FaultProxy:
    """Listens on loopback and forwards each connection to ``upstream``; faults on demand."""

    def __init__(self, upstream_host: str, upstream_port: int, listen_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.port = 0
        self.shape = {"up": Shape(), "down": Shape()}
        self.refusing = False
        self.stats = {"accepted": 0, "refused": 0, "cut": 0, "bytes_up": 0, "bytes_down": 0}
        self._conns: set[_Conn] = set()
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._budget = {"up": (time.monotonic(), 0.0), "down": (time.monotonic(), 0.0)}
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle
    def start(self) -> FaultProxy:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.listen_host, 0))
        sock.listen(64)
        sock.settimeout(_TICK)
        self._sock, self.port = sock, int(sock.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        self.cut()

    def url(self, scheme: str, rest: str = "") -> str:
        """``scheme://host:port`` of the proxy (``rest`` appended, e.g. ``/dbname``)."""
        return f"{scheme}://{self.listen_host}:{self.port}{rest}"

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.refusing:
                self.stats["refused"] += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)  # upstream down: the client sees its connection reset
                continue
            conn = _Conn(self, client, server)
            with self._lock:
                self._conns.add(conn)
                self.stats["accepted"] += 1
                self._lock.notify_all()
            conn.start()

    def _forget(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.discard(conn)
            self._lock.notify_all()

    # -- faults
    def cut(self) -> int:
        """Reset every open connection (both ends get an RST); returns how many."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.close(reset=True)
        self.stats["cut"] += len(conns)
        return len(conns)

    def refuse(self, on: bool = True) -> None:
        """While on, new connections are reset at once (with ``cut``: the link is down)."""
        self.refusing = on

    def down(self) -> int:
        """The link breaks: open connections reset, new ones refused until ``heal``."""
        self.refuse(True)
        return self.cut()

    def blackhole(self, direction: Direction = "both") -> None:
        self._set(direction, held=True)

    def delay(self, seconds: float, direction: Direction = "both") -> None:
        self._set(direction, delay_s=max(0.0, seconds))

    def throttle(self, bytes_per_s: float | None, direction: Direction = "both") -> None:
        if bytes_per_s is not None and bytes_per_s <= 0:
            raise ValueError("a throttle needs a positive rate (or None for none)")
        self._set(direction, rate_bps=bytes_per_s)

    def heal(self) -> None:
        """Pass-through both ways, new connections accepted; held bytes flow on."""
        with self._lock:
            self.shape = {"up": Shape(), "down": Shape()}
            self.refusing = False
            self._lock.notify_all()

    def _set(self, direction: Direction, **changes: object) -> None:
        with self._lock:
            for d in _dirs(direction):
                for k, v in changes.items():
                    setattr(self.shape[d], k, v)
            self._lock.notify_all()

    # -- observation
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def wait_connections(self, n: int, timeout: float) -> bool:
        """Wait until at least ``n`` connections are open."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._conns) >= n, timeout)

    def wait_established(self, timeout: float) -> bool:
        """Wait until a connection has carried bytes both ways (e.g. MQTT CONNECT and
        CONNACK): breaking a link before that tests the client's back-off, not the fault."""

        def established() -> bool:
            return any(c.delivered["up"] and c.delivered["down"] for c in self._conns)

        with self._lock:
            return self._lock.wait_for(established, timeout)

    # -- used by the connections' threads
    def _may_send(self, d: str, received_at: float) -> bool:
        with self._lock:
            sh = self.shape[d]
            if sh.held:
                self._lock.wait(_TICK)
                return False
            due = received_at + sh.delay_s - time.monotonic()
            if due > 0:
                self._lock.wait(min(due, _TICK))
                return False
            return True

    def _allowance(self, d: str, want: int) -> int:
        """How many bytes may go now (token bucket per direction; waits for one token)."""
        while True:
            with self._lock:
                rate = self.shape[d].rate_bps
                if rate is None:
                    return min(want, _CHUNK)
                at, tokens = self._budget[d]
                now = time.monotonic()
                tokens = min(rate / 10, tokens + (now - at) * rate)  # at most 100 ms burst
                n = min(want, int(tokens))
                if n >= 1:
                    self._budget[d] = (now, tokens - n)
                    return n
                self._budget[d] = (now, tokens)
                wait = (1 - tokens) / rate
            time.sleep(min(wait, _TICK))  # the throttle itself: bytes wait for their tokens

    def _count(self, conn: _Conn, d: str, n: int) -> None:
        with self._lock:
            self.stats[f"bytes_{d}"] += n
            conn.delivered[d] += n
            self._lock.notify_all()
