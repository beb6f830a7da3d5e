"""The paho-mqtt 2.x adapter behind the Transport interface: v5 or 3.1.1, QoS 1, manual acks."""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from broker.config import CommonSettings, MqttUrl, redact_url
from broker.mqtt_delivery import Delivery, Stats
from broker.mqtt_support import (
    STOPPED,
    ConnectError,
    MidBook,
    MqttError,
    PublishError,
    Receipts,
    SubscribeError,
    Waiter,
    check_filter,
    component_id,
    diagnose,
)
from broker.transport import Handler, Inbound

__all__ = [
    "ConnectError",
    "MqttError",
    "MqttTransport",
    "PublishError",
    "SubscribeError",
    "Waiter",
    "connect",
]

log = logging.getLogger(__name__)

_V5, _V311 = paho.MQTTv5, paho.MQTTv311
_PROTO_NAME = {_V5: "MQTT v5", _V311: "MQTT 3.1.1"}
_V5_PROBE_S = 2.0  # silence after an MQTT v5 CONNECT that means "broker speaks 3.1.1 only"
_STAT_KEYS = (
    "received",
    "acked",
    "published",
    "publish_acked",
    "publish_refused",
    "handler_errors",
    "inbound_dropped_unacked",
    "reconnects",
    "unrouted",
    "unrouted_held",
    "stale_acks",
    "dead_letters",
    "subscribed",
    "subscribe_refused",
)


def _noop() -> None:
    return None


F = TypeVar("F", bound=Callable[..., None])


def _guarded(fn: F) -> F:
    """A paho callback that logs its own failure instead of breaking paho's network loop."""

    @functools.wraps(fn)
    def run(self: MqttTransport, *args: Any) -> None:
        try:
            fn(self, *args)
        except Exception:
            log.exception("%s: %s failed", self.client_id, fn.__name__)

    return cast(F, run)


class _Ack:
    """The ``Inbound.ack`` of one QoS 1 delivery: sends PUBACK once, from any thread."""

    __slots__ = ("_done", "_gen", "_mid", "_owner")

    def __init__(self, owner: MqttTransport, mid: int, gen: int) -> None:
        self._owner, self._mid, self._gen, self._done = owner, mid, gen, False

    def __call__(self) -> None:
        with self._owner._ack_lock:
            if self._done:
                return
            self._done = True
        self._owner._send_ack(self._mid, self._gen)


class MqttTransport:
    """Transport over MQTT with paho-mqtt 2.x.

    Delivery: QoS 1, ``manual_ack``; a message is acknowledged (PUBACK) only when the handler
    calls ``msg.ack()``. Messages go from paho's network thread through a bounded queue
    (``queue_size``) to ONE delivery thread that runs the handlers. To keep that queue from
    overflowing, MQTT v5 sessions announce ``Receive Maximum = min(queue_size, 65535)``, so the
    broker never has more unacknowledged messages in flight to us than the queue holds; MQTT
    3.1.1 brokers bound it with their own in-flight limit. If the queue is still full after a
    short wait, the message is NOT acknowledged (the broker redelivers it after the next
    reconnect) and ``inbound_dropped_unacked`` counts it. An ack whose connection has gone is
    not sent (``stale_acks``): the broker redelivers that message on the new connection.

    A QoS 1 message that arrives before a handler for its topic is registered (a resumed
    persistent session redelivers at once after CONNACK, i.e. inside ``start()``) is held
    unacknowledged and handed to the handler once ``subscribe()`` registers a matching one, so
    handlers may be registered before or after ``start()``. At most ``unrouted_max`` messages
    (default ``queue_size``) are held; one still unwanted after ``unrouted_hold_s`` (an old
    subscription the session keeps) is acknowledged and counted as ``unrouted``. After a
    reconnect to a kept session, held messages are dropped unacked: the broker redelivers them.

    Retained messages are acknowledged by the transport after the handler returns (their
    ``Inbound.ack`` is a no-op; the broker still holds them); QoS 0 needs no ack. A handler
    that raises is counted, a ``DeadLetter`` (reason ``handler_error``) is published, and the
    message is acknowledged once the dead letter is.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        keepalive: int = 5,
        clean_start: bool = False,
        ca_file: Path | None = None,
        queue_size: int = 10_000,
        session_expiry_s: int = 86_400,
        connect_timeout_s: float = 10.0,
        max_inflight_out: int = 1000,
        max_queued_out: int = 100_000,
        unrouted_hold_s: float = 30.0,
        unrouted_max: int | None = None,
    ) -> None:
        if not client_id or len(client_id.encode()) > 65535:
            raise ValueError("client_id must be a non-empty string")
        self.client_id = client_id
        self._url, self._safe_url = MqttUrl.parse(url), redact_url(url)
        self._keepalive, self._clean = keepalive, clean_start
        self._ca_file, self._expiry = ca_file, session_expiry_s
        self._connect_timeout = connect_timeout_s
        self._max_inflight_out, self._max_queued_out = max_inflight_out, max_queued_out
        self._queue_size = queue_size
        self._will: tuple[str, bytes, bool] | None = None
        self._client: paho.Client | None = None
        self._protocol: MQTTProtocolVersion | None = None  # learned at the first connect
        self._ack_lock = threading.Lock()
        self._stats = Stats(_STAT_KEYS)
        self._book = MidBook()
        self._receipts = Receipts(client_id)
        self._delivery = Delivery(
            client_id,
            component_id(client_id),
            queue_size,
            self._stats,
            self.publish,
            hold_s=unrouted_hold_s,
            hold_max=unrouted_max,
        )
        self._gen = 0  # connection generation; acks of an older generation are stale
        self._connected = False
        self._first = threading.Event()
        self._first_outcome: str | None = None
        self._socket_opened_at: float | None = None
        self._gone = threading.Event()
        self._resubscribed: Waiter | None = None
        self._warned_v3_props = False

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def protocol(self) -> str | None:
        """``"MQTT v5"`` or ``"MQTT 3.1.1"`` once connected, else None."""
        return _PROTO_NAME.get(self._protocol) if self._protocol is not None else None

    @property
    def connected(self) -> bool:
        return self._connected

    def set_will(self, topic: str, payload: bytes, retain: bool = True) -> None:
        if self._client is not None:
            raise MqttError("set_will must be called before start()")
        self._will = (topic, bytes(payload), retain)

    def start(self) -> None:
        """Connect (v5, else 3.1.1) and wait for the first CONNACK; raise ConnectError if none."""
        if self._client is not None:
            raise MqttError(f"transport {self.client_id!r} already started")
        self._delivery.start()
        protocols = [_V5, _V311] if self._protocol is None else [self._protocol]
        for proto in protocols:
            outcome = self._connect_once(proto)
            if outcome is None:
                log.info(
                    "connected to %s as %r (%s)", self._safe_url, self.client_id, _PROTO_NAME[proto]
                )
                self._await_first_suback()
                return
            if proto == _V5 and outcome.startswith("v5-refused"):
                log.info(
                    "broker %s does not speak MQTT v5 (%s); using MQTT 3.1.1",
                    self._safe_url,
                    outcome,
                )
                continue
            self._shutdown(graceful=False)
            raise ConnectError(
                f"cannot connect to {self._safe_url} as {self.client_id!r}: {outcome}"
            )

    def _await_first_suback(self) -> None:
        """Subscriptions registered before start() are active when start() returns."""
        waiter = self._resubscribed
        if waiter is None or waiter.wait(self._connect_timeout):
            return
        if waiter.done:
            self._shutdown(graceful=True)
            raise SubscribeError(
                f"broker {self._safe_url} refused subscriptions of "
                f"{self.client_id!r}: {waiter.error}"
            )
        log.warning(
            "%s: no SUBACK within %g s; subscriptions are re-sent on reconnect",
            self.client_id,
            self._connect_timeout,
        )

    def stop(self) -> None:
        """Graceful stop: DISCONNECT (the broker sends no will), stop the loop and delivery."""
        self._shutdown(graceful=True)

    def _connect_once(self, proto: MQTTProtocolVersion) -> str | None:
        """One connection attempt; None on success, else why it failed."""
        self._first.clear()
        self._first_outcome = None
        self._socket_opened_at = None
        client = self._build_client(proto)
        self._client = client
        self._protocol = proto
        props = None
        if proto == _V5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if self._clean else self._expiry
            props.ReceiveMaximum = max(1, min(self._queue_size, 65535))
        client.connect_async(
            self._url.host,
            self._url.port,
            self._keepalive,
            clean_start=self._clean if proto == _V5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
        )
        client.loop_start()
        outcome = self._await_connack(proto)
        if outcome is not None:
            client.disconnect()  # ends paho's retry loop at once
            client.loop_stop()
            self._client = None
        return outcome

    def _await_connack(self, proto: MQTTProtocolVersion) -> str | None:
        """Wait for the first CONNACK. A 3.1.1-only broker may neither answer nor close when it
        misreads a v5 CONNECT (amqtt waits for bytes that never come), so with v5 an open socket
        without an answer for ``_V5_PROBE_S`` counts as "v5 not spoken"."""
        deadline = time.monotonic() + self._connect_timeout
        while not self._first.wait(0.05):
            now = time.monotonic()
            opened = self._socket_opened_at
            if proto == _V5 and opened is not None and now - opened > _V5_PROBE_S:
                return f"v5-refused: no answer to an MQTT v5 CONNECT within {_V5_PROBE_S:g} s"
            if now > deadline:
                why = "broker silent" if opened else diagnose(self._url, self._ca_file)
                return f"no CONNACK within {self._connect_timeout:g} s ({why})"
        return self._first_outcome

    def _build_client(self, proto: MQTTProtocolVersion) -> paho.Client:
        kw: dict[str, Any] = {} if proto == _V5 else {"clean_session": self._clean}
        c = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=proto,
            manual_ack=True,
            **kw,
        )
        if self._url.username is not None:
            c.username_pw_set(self._url.username, self._url.password)
        if self._url.tls:
            c.tls_set(ca_certs=str(self._ca_file) if self._ca_file else None)
        if self._will is not None:
            topic, payload, retain = self._will
            c.will_set(topic, payload, qos=1, retain=retain)
        c.suppress_exceptions = True  # a bug in a callback must not kill the network loop
        c.max_inflight_messages_set(self._max_inflight_out)
        c.max_queued_messages_set(self._max_queued_out)
        c.reconnect_delay_set(1, 8)
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_connect_fail, c.on_socket_open = self._on_connect_fail, self._on_socket_open
        c.on_message, c.on_publish = self._on_message, self._on_publish
        c.on_subscribe = self._on_subscribe
        return c

    def _shutdown(self, *, graceful: bool) -> None:
        if self._client is None and not self._delivery.running:
            return  # never started, or already stopped
        client, self._client = self._client, None
        if client is not None:
            was_connected = self._connected
            self._gone.clear()
            client.disconnect()  # DISCONNECT when connected (no will), else stops retrying
            if graceful and was_connected and not self._gone.wait(2.0):
                log.warning("%s: no clean disconnect within 2 s", self.client_id)
            client.loop_stop()
        self._connected = False
        pending = self._book.fail_all()
        dropped = self._delivery.stop()
        if pending or dropped:
            log.info(
                "%s stopped: %d publishes unconfirmed, %d deliveries left unacked "
                "(the broker redelivers them)",
                self.client_id,
                pending,
                dropped,
            )

    # ---- paho callbacks (network thread) --------------------------------------------------

    @_guarded
    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._socket_opened_at is None:
            self._socket_opened_at = time.monotonic()
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError) as exc:
            log.debug("TCP_NODELAY not set: %s", exc)

    @_guarded
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure:
            self._connected = False
            proto_refused = rc.getName() == "Unsupported protocol version"
            self._first_outcome = f"{'v5-refused: ' if proto_refused else ''}{rc.getName()}"
            if self._first.is_set():
                log.error(
                    "%s: broker %s refused reconnect: %s",
                    self.client_id,
                    self._safe_url,
                    rc.getName(),
                )
            self._first.set()
            return
        self._gen += 1
        if self._first.is_set():
            self._stats.add("reconnects")
            if flags.session_present:
                n = self._delivery.forget_held()
                if n:
                    log.info(
                        "%s: %d held messages dropped unacked; the kept session redelivers them",
                        self.client_id,
                        n,
                    )
        self._honour_receive_maximum(client, props)
        subs = self._delivery.patterns()
        self._connected = True
        if not self._clean and not flags.session_present:
            log.info(
                "%s: broker %s had no session for us; starting a new one",
                self.client_id,
                self._safe_url,
            )
        self._resubscribed = self._send_subscribe(client, subs) if subs else None
        self._first_outcome = None
        self._first.set()

    def _honour_receive_maximum(self, client: paho.Client, props: Any) -> None:
        """paho ignores the broker's v5 Receive Maximum (exceeding it is a protocol error) and
        refuses to change its in-flight limit once connected, so set its field directly."""
        limit = getattr(props, "ReceiveMaximum", None) if props is not None else None
        if not isinstance(limit, int) or not 0 < limit < self._max_inflight_out:
            return
        if client.max_inflight_messages != limit:
            client._max_inflight_messages = limit
            log.info(
                "%s: broker allows %d publishes in flight (asked for %d)",
                self.client_id,
                limit,
                self._max_inflight_out,
            )

    @_guarded
    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        was = self._connected
        self._connected = False
        self._gone.set()
        if not self._first.is_set():
            # the socket opened but the broker dropped it before any CONNACK
            self._first_outcome = f"v5-refused: connection closed at CONNECT ({rc.getName()})"
            if self._protocol != _V5:
                self._first_outcome = f"connection closed at CONNECT ({rc.getName()})"
            self._first.set()
        elif was and self._client is client:
            log.warning(
                "%s: lost connection to %s (%s); reconnecting",
                self.client_id,
                self._safe_url,
                rc.getName(),
            )

    @_guarded
    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        log.debug("%s: connect to %s failed; retrying", self.client_id, self._safe_url)

    @_guarded
    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any
    ) -> None:
        error = rc.getName() if rc.is_failure else None
        self._stats.add("publish_refused" if error else "publish_acked")
        if error:
            log.warning("%s: broker refused publish mid=%s: %s", self.client_id, mid, error)
        self._book.resolve(mid, error)

    @_guarded
    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any
    ) -> None:
        bad = [c.getName() for c in codes if c.is_failure]
        self._stats.add("subscribe_refused" if bad else "subscribed")
        self._book.resolve(mid, ", ".join(bad) if bad else None)

    @_guarded
    def _on_message(self, client: paho.Client, userdata: Any, m: paho.MQTTMessage) -> None:
        topic, payload = m.topic, bytes(m.payload)
        user_props: dict[str, str] = {}
        if m.properties is not None and hasattr(m.properties, "UserProperty"):
            user_props = {str(k): str(v) for k, v in m.properties.UserProperty}
        acker: _Ack | None = None
        ack = _noop
        if m.qos > 0:
            acker = _Ack(self, m.mid, self._gen)
            if not m.retain:
                ack = acker
        receipt = self._receipts.issue(m.mid, topic, payload, bool(m.dup)) if m.qos else ""
        inbound = Inbound(
            topic=topic,
            payload=payload,
            qos=m.qos,
            retain=bool(m.retain),
            dup=bool(m.dup),
            properties=user_props,
            receipt=receipt,
            ack=ack,
        )
        self._stats.add("received")
        self._delivery.offer(inbound, acker)

    # ---- acks -----------------------------------------------------------------------------

    def _send_ack(self, mid: int, gen: int) -> None:
        client = self._client
        if client is None or gen != self._gen or not self._connected:
            self._stats.add("stale_acks")
            return
        client.ack(mid, 1)
        self._receipts.settled(mid)
        self._stats.add("acked")

    # ---- subscribe / publish --------------------------------------------------------------

    def subscribe(self, pattern: str, handler: Handler, qos: int = 1) -> None:
        """Register ``handler``; when connected, wait (bounded) for the broker's SUBACK."""
        check_filter(pattern)
        self._delivery.register(pattern, handler, qos)
        client = self._client
        if client is None or not self._connected:
            return  # sent by _on_connect
        waiter = self._send_subscribe(client, [(pattern, qos)])
        if waiter is not None and waiter.wait(self._connect_timeout):
            return
        if waiter is not None and waiter.done:
            self._delivery.remove(pattern)
            raise SubscribeError(
                f"broker {self._safe_url} refused subscription "
                f"{pattern!r} for {self.client_id!r}: {waiter.error}"
            )
        log.warning("%s: no SUBACK for %r yet; it is re-sent on reconnect", self.client_id, pattern)

    def _send_subscribe(self, client: paho.Client, subs: list[tuple[str, int]]) -> Waiter | None:
        if self._protocol == _V5:
            rc, mid = client.subscribe([(p, SubscribeOptions(qos=q)) for p, q in subs])
        else:
            rc, mid = client.subscribe(subs)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            log.warning(
                "%s: SUBSCRIBE %s not sent (%s); re-sent on reconnect",
                self.client_id,
                [p for p, _ in subs],
                paho.error_string(rc),
            )
            return None
        waiter = self._book.expect(mid)
        names = [p for p, _ in subs]

        def report(w: Waiter) -> None:
            if w.error and w.error != STOPPED:
                log.error("%s: subscription %s refused: %s", self.client_id, names, w.error)

        waiter.then(report)
        return waiter

    def unsubscribe(self, pattern: str) -> None:
        self._delivery.remove(pattern)
        client = self._client
        if client is not None and self._connected:
            client.unsubscribe(pattern)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Mapping[str, str] | None = None,
    ) -> Waiter:
        """Queue a publish; the returned handle's ``wait`` is True once PUBACK arrived.

        While disconnected, QoS 1 publishes wait in paho's outgoing queue (bounded by
        ``max_queued_out``) and go out on reconnect. Raises PublishError when the message
        cannot be queued at all.
        """
        client = self._client
        if client is None:
            raise PublishError(
                f"{self.client_id}: transport not started; cannot publish to {topic!r}"
            )
        info = client.publish(
            topic, payload, qos=qos, retain=retain, properties=self._publish_props(properties)
        )
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise PublishError(
                f"{self.client_id}: outgoing queue full "
                f"({self._max_queued_out}); publish to {topic!r} not queued"
            )
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0:
            raise PublishError(
                f"{self.client_id}: not connected to {self._safe_url}; "
                f"QoS 0 publish to {topic!r} dropped"
            )
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise PublishError(
                f"{self.client_id}: publish to {topic!r} failed: {paho.error_string(info.rc)}"
            )
        self._stats.add("published")
        return self._book.expect(info.mid)

    def _publish_props(self, properties: Mapping[str, str] | None) -> Properties | None:
        if not properties:
            return None
        if self._protocol != _V5:
            if not self._warned_v3_props:
                self._warned_v3_props = True
                log.warning(
                    "%s: MQTT 3.1.1 has no user properties; they are not sent", self.client_id
                )
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [(str(k), str(v)) for k, v in properties.items()]
        return props

    def stats(self) -> dict[str, int]:
        out = self._stats.snapshot()
        out["inbound_queue"] = self._delivery.depth
        out["inbound_held"] = self._delivery.held
        out["publish_pending"] = len(self._book)
        client = self._client
        out["publish_inflight_limit"] = (
            client.max_inflight_messages if client is not None else self._max_inflight_out
        )
        return out


def connect(settings: CommonSettings, client_id: str, **options: Any) -> MqttTransport:
    """An MqttTransport built from the process settings (not started)."""
    return MqttTransport(
        settings.mqtt_url,
        client_id,
        keepalive=settings.keepalive_s,
        ca_file=settings.mqtt_ca_file,
        **options,
    )
