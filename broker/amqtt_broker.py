"""amqtt made at-least-once: the broker and protocol handler behind `linewatch broker`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.errors import AMQTTError
from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import OUTGOING, Session

log = logging.getLogger(__name__)

# Disconnected persistent sessions (clean_session=False) and their queued QoS 1 messages are
# kept this long, then dropped; one day matches the paho adapter's session expiry default.
SESSION_EXPIRY_S = 86_400


class DemoAuthPlugin(BaseAuthPlugin):
    """Accept every client (demo profile), but as a *named* session, not an anonymous one.

    amqtt's own ``AnonymousAuthPlugin`` marks sessions anonymous, and amqtt then neither keeps
    their subscriptions nor queues QoS 1 messages for them while they are disconnected.
    LineWatch relies on persistent sessions (stable client id, ``clean_session=False``), so
    the demo broker accepts everyone without marking them anonymous.
    """

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session: Session) -> bool | None:
        session.is_anonymous = False
        return True


class _Background:
    """Keeps references to fire-and-forget tasks until they finish."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background delivery ended: %r", task.exception())


_BACKGROUND = _Background()


class AtLeastOnceHandler(BrokerProtocolHandler):
    """A broker-side protocol handler that keeps a QoS 1 message until the client acks it.

    amqtt 0.12 waits 5 s for a PUBACK and then forgets the message; LineWatch consumers ack
    only once the effect is durable (a DB commit may take longer), and a consumer that
    crashes must get the message again when it reconnects. Here the message stays in the
    session's in-flight set until its PUBACK arrives, however long that takes, and is resent
    (DUP) on the next connection of the session if the connection ends first. Resending at
    connect time runs in the background so the client's SUBSCRIBEs are not held up.
    """

    async def _handle_qos1_message_flow(self, app_message: Any) -> None:
        if app_message.direction != OUTGOING or app_message.qos != QOS_1:
            await super()._handle_qos1_message_flow(app_message)
            return
        session = self.session
        if session is None:
            raise AMQTTError("Session is not initialized.")
        mid = app_message.packet_id
        session.inflight_out[mid] = app_message
        packet = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._puback_waiters[mid] = waiter  # before sending: the PUBACK may come at once
        try:
            await self._send_packet(packet)
            app_message.publish_packet = packet
            app_message.puback_packet = await waiter
        finally:
            self._puback_waiters.pop(mid, None)
        session.inflight_out.pop(mid, None)  # acknowledged: only now forgotten

    async def _retry_deliveries(self) -> None:
        _BACKGROUND.spawn(super()._retry_deliveries())


class LineWatchBroker(Broker):
    """amqtt's broker with at-least-once delivery to persistent sessions.

    - every client connection gets an :class:`AtLeastOnceHandler`;
    - messages queued for a disconnected session are replayed WITHOUT the retain flag (amqtt
      sets it, but MQTT reserves it for messages sent because of a new subscription, and
      consumers would take them for retained state);
    - replaying queued and retained messages does not wait for the client's acks, so the
      client's next SUBSCRIBE is answered at once even while it holds those acks.
    """

    async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> Any:
        handler, session = await super()._initialize_client_session(*args, **kwargs)
        if type(handler) is BrokerProtocolHandler:
            handler.__class__ = AtLeastOnceHandler
        return handler, session

    async def _publish_session_retained_messages(self, session: Session) -> None:
        handler = self._get_handler(session)
        if handler is None:
            return
        while not session.retained_messages.empty():
            queued = await session.retained_messages.get()
            _BACKGROUND.spawn(
                handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)
            )

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        handler = self._get_handler(session)
        if handler is None:
            return
        topic_filter, qos = subscription
        for topic, retained in list(self._retained_messages.items()):
            if self._matches(topic, topic_filter):
                _BACKGROUND.spawn(
                    handler.mqtt_publish(
                        retained.topic, retained.data, min(qos, retained.qos or qos), retain=True
                    )
                )
