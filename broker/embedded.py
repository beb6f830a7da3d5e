"""`linewatch broker`: the embedded MQTT 3.1.1 broker (amqtt) for the zero-setup demo profile."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker

from broker.amqtt_broker import SESSION_EXPIRY_S, DemoAuthPlugin, LineWatchBroker
from broker.config import EMBEDDED_PORT, ProfileSettings, load_settings

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
CONNECT_WAIT_S = 10.0  # a client must send its CONNECT within this time
MQTT_V5 = 5
_CONNACK_BAD_VERSION = bytes([0x20, 0x02, 0x00, 0x01])  # 3.1.1 CONNACK, rc 1


def broker_config() -> dict[str, Any]:
    """amqtt configuration: connections arrive through our front door (an "external"
    listener), demo auth, session expiry, no $SYS chatter."""
    return {
        "listeners": {"default": {"type": "external"}},
        "session_expiry_interval": SESSION_EXPIRY_S,
        "plugins": {f"{DemoAuthPlugin.__module__}.{DemoAuthPlugin.__name__}": {}},
    }


class _Replay(ReaderAdapter):
    """A stream reader that first replays the bytes the front door already read."""

    def __init__(self, head: bytes, reader: asyncio.StreamReader) -> None:
        self._head, self._reader = head, reader

    async def read(self, n: int = -1) -> bytes:
        if n == -1:
            data, self._head = self._head + await self._reader.read(-1), b""
            return data
        take, self._head = self._head[:n], self._head[n:]
        if len(take) < n:
            take += await self._reader.readexactly(n - len(take))
        return take

    def feed_eof(self) -> None:
        self._reader.feed_eof()


async def _read_connect_head(reader: asyncio.StreamReader) -> tuple[bytes, int | None]:
    """Read a CONNECT up to its protocol level byte; (bytes read, level or None)."""
    head = await reader.readexactly(1)
    for _ in range(4):  # remaining length, a 1..4 byte varint
        head += await reader.readexactly(1)
        if not head[-1] & 0x80:
            break
    if head[0] >> 4 != 1:  # not CONNECT: amqtt rejects it
        return head, None
    name_len = await reader.readexactly(2)
    head += name_len
    if int.from_bytes(name_len, "big") > 6:
        return head, None
    head += await reader.readexactly(int.from_bytes(name_len, "big") + 1)
    return head, head[-1]


class FrontDoor:
    """Accepts TCP connections and answers MQTT v5 CONNECTs with a 3.1.1 "unacceptable
    protocol version" CONNACK at once (amqtt would misread them and hang until the client's
    keepalive), so v5 clients fall back to 3.1.1 immediately. Everything else goes to amqtt."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head, level = await asyncio.wait_for(_read_connect_head(reader), CONNECT_WAIT_S)
        except (TimeoutError, asyncio.IncompleteReadError, OSError):
            writer.close()
            return
        if level == MQTT_V5:
            writer.write(_CONNACK_BAD_VERSION)
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()
            return
        await self._broker.external_connected(
            _Replay(head, reader), StreamWriterAdapter(writer), "default"
        )


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="linewatch broker",
        description="Run the embedded MQTT 3.1.1 broker (amqtt): the zero-setup demo default. "
        "Anonymous clients are accepted; use Mosquitto with broker/secure/ for "
        "anything else.",
    )
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}; 0.0.0.0 exposes it)",
    )
    p.add_argument(
        "--port", type=int, default=EMBEDDED_PORT, help=f"TCP port (default {EMBEDDED_PORT})"
    )
    args = p.parse_args(argv)
    if not 0 < args.port < 65536:
        p.error(f"--port {args.port} is out of range 1..65535")
    return args


def _port_free(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound, else the reason (checked for a clear message)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


async def serve(host: str, port: int, stop: asyncio.Event) -> None:
    """Run the broker until ``stop`` is set, then shut it down cleanly."""
    broker = LineWatchBroker(broker_config())
    await broker.start()
    server = await asyncio.start_server(FrontDoor(broker), host, port, reuse_address=True)
    log.info("embedded MQTT broker listening on %s:%s", host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "the embedded broker accepts anonymous clients and is reachable on %s; "
            "use Mosquitto with broker/secure/ beyond a demo",
            host,
        )
    try:
        await stop.wait()
    finally:
        log.info("embedded MQTT broker stopping")
        server.close()
        await broker.shutdown()
        await server.wait_closed()


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if load_settings(ProfileSettings).profile == "secure":
        print(
            "linewatch broker: the embedded broker has no authentication and is refused in the "
            "secure profile (LINEWATCH_PROFILE=secure); run Mosquitto with broker/secure/",
            file=sys.stderr,
        )
        return 2
    busy = _port_free(args.host, args.port)
    if busy is not None:
        print(
            f"linewatch broker: cannot listen on {args.host}:{args.port}: {busy}", file=sys.stderr
        )
        return 1
    # amqtt logs every connection at INFO; keep ours, quieten theirs.
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.host, args.port, stop)

    try:
        asyncio.run(run())
    except OSError as exc:  # lost a race for the port, or the address vanished
        print(f"linewatch broker: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
