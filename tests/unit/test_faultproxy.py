"""The loopback fault proxy of the fault tests: pass-through, cut, down, blackhole (one
direction or both), delay and throttle, against a real TCP echo server on loopback."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from faultproxy import FaultProxy
from helpers import wait_for

pytestmark = pytest.mark.unit


class Echo:
    """A loopback TCP server that echoes and records what it received."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.received = bytearray()
        self.echo = True
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.halt.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        with conn:
            while not self.halt.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                self.received += data
                if self.echo:
                    conn.sendall(data)

    def stop(self) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(5)
        self.sock.close()


@pytest.fixture()
def link() -> Iterator[tuple[FaultProxy, Echo]]:
    echo = Echo()
    proxy = FaultProxy("127.0.0.1", echo.port).start()
    try:
        yield proxy, echo
    finally:
        proxy.stop()
        echo.stop()


def connect(proxy: FaultProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s: socket.socket, n: int, timeout: float = 5) -> bytes:
    out = bytearray()
    deadline = time.monotonic() + timeout
    while len(out) < n:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return bytes(out)


def readable_within(s: socket.socket, seconds: float) -> bool:
    """Whether anything (data, close, reset) arrives within ``seconds`` (a bounded wait)."""
    return bool(select.select([s], [], [], seconds)[0])


def test_pass_through_round_trip_and_byte_counts(link: tuple[FaultProxy, Echo]) -> None:
    proxy, _ = link
    with connect(proxy) as s:
        payload = bytes(range(256)) * 400  # 100 kB, more than one chunk
        s.sendall(payload)
        assert recv_exactly(s, len(payload)) == payload
    wait_for(  # counted just after the send returns: the bytes may be read before that
        lambda: proxy.stats["bytes_up"] == proxy.stats["bytes_down"] == len(payload),
        5,
        what=f"{len(payload)} bytes counted each way ({proxy.stats})",
    )
    assert proxy.stats["accepted"] == 1
    wait_for(lambda: proxy.connections() == 0, 5, what="the closed connection forgotten")


def test_cut_resets_both_ends_and_new_connections_pass(link: tuple[FaultProxy, Echo]) -> None:
    proxy, _ = link
    s = connect(proxy)
    assert proxy.wait_connections(1, 5) and not proxy.wait_established(0.1)
    s.sendall(b"ping")
    assert recv_exactly(s, 4) == b"ping"
    assert proxy.wait_established(5)
    assert proxy.cut() == 1
    with pytest.raises(ConnectionResetError):
        s.settimeout(5)
        s.recv(10)
    s.close()
    with connect(proxy) as again:
        again.sendall(b"pong")
        assert recv_exactly(again, 4) == b"pong"
    assert proxy.stats["cut"] == 1


def test_down_refuses_until_healed(link: tuple[FaultProxy, Echo]) -> None:
    proxy, _ = link
    s = connect(proxy)
    assert proxy.wait_connections(1, 5)
    assert proxy.down() == 1
    s.close()
    with pytest.raises(ConnectionError), connect(proxy) as refused:  # reset, maybe at connect
        refused.sendall(b"x")
        recv_exactly(refused, 1)
    assert proxy.stats["refused"] >= 1
    proxy.heal()
    with connect(proxy) as ok:
        ok.sendall(b"back")
        assert recv_exactly(ok, 4) == b"back"


def test_blackhole_holds_bytes_and_heal_delivers_them_in_order(
    link: tuple[FaultProxy, Echo],
) -> None:
    proxy, echo = link
    with connect(proxy) as s:
        s.sendall(b"a")
        assert recv_exactly(s, 1) == b"a"
        proxy.blackhole("both")
        s.sendall(b"bcd")
        assert not readable_within(s, 0.3)  # nothing comes back, no reset either
        assert bytes(echo.received) == b"a"  # and nothing reached the server
        proxy.heal()
        assert recv_exactly(s, 3) == b"bcd"


def test_blackhole_one_direction(link: tuple[FaultProxy, Echo]) -> None:
    proxy, echo = link
    with connect(proxy) as s:
        proxy.blackhole("down")
        s.sendall(b"xyz")
        wait_for(lambda: bytes(echo.received) == b"xyz", 5, what="the server got the bytes")
        assert not readable_within(s, 0.3)  # its answer is held
        proxy.heal()
        assert recv_exactly(s, 3) == b"xyz"
        proxy.blackhole("up")
        s.sendall(b"q")
        assert not readable_within(s, 0.3)
        assert bytes(echo.received) == b"xyz"
        proxy.heal()
        assert recv_exactly(s, 1) == b"q"


def test_delay_each_way(link: tuple[FaultProxy, Echo]) -> None:
    proxy, _ = link
    with connect(proxy) as s:
        proxy.delay(0.15, "up")
        proxy.delay(0.1, "down")
        t0 = time.monotonic()
        s.sendall(b"late")
        assert recv_exactly(s, 4) == b"late"
        rtt = time.monotonic() - t0
        assert 0.25 <= rtt < 2.0, rtt
        proxy.heal()
        t0 = time.monotonic()
        s.sendall(b"fast")
        assert recv_exactly(s, 4) == b"fast"
        assert time.monotonic() - t0 < 0.2


def test_throttle_limits_the_rate(link: tuple[FaultProxy, Echo]) -> None:
    proxy, echo = link
    echo.echo = False
    proxy.throttle(100_000, "up")
    n = 100_000
    with connect(proxy) as s:
        t0 = time.monotonic()
        s.sendall(b"z" * n)
        wait_for(lambda: len(echo.received) == n, 10, 0.01, what="every byte through")
        took = time.monotonic() - t0
    assert 0.8 <= took < 3.0, took  # 1 s at 100 kB/s, less the first 100 ms burst


def test_a_close_is_passed_on(link: tuple[FaultProxy, Echo]) -> None:
    proxy, _echo = link
    with connect(proxy) as s:
        s.sendall(b"hi")
        assert recv_exactly(s, 2) == b"hi"
        s.shutdown(socket.SHUT_WR)  # the client's FIN reaches the server, which closes
        s.settimeout(5)
        assert s.recv(10) == b""
    wait_for(lambda: proxy.connections() == 0, 5, what="the connection closed")


def test_bad_arguments() -> None:
    proxy = FaultProxy("127.0.0.1", 9)
    with pytest.raises(ValueError):
        proxy.blackhole("sideways")
    with pytest.raises(ValueError):
        proxy.throttle(0)
