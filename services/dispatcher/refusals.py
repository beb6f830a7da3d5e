"""What discovery reports: refused streams (a dead letter each, an alert per site), and
inputs of unserved streams pushed out of the hold (an ``unassigned`` gap per stream); and
``publish_held``, which sends those and the held inputs released to their new owner."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from broker.codecs import Rejected, dead_letter, encode
from broker.messages import Alert, Gap, utcnow
from broker.topics import StreamRef, TopicError, alert_topic, dead_letter_topic, gap_topic
from broker.transport import Transport
from services.dispatcher.discovery import HeldInput, Refusal

log = logging.getLogger(__name__)
COMPONENT = "dispatch"
REASON = "discovery_limit"


def refusal_messages(
    refusals: list[Refusal], counts: dict[str, tuple[int, str]], dispatcher: str, now: datetime
) -> list[tuple[str, bytes]]:
    """(topic, payload) to publish: dead letters, then one ``overload`` alert per site in
    ``counts`` (on the station of one of its refused streams) naming how many were refused."""
    out = [
        (
            dead_letter_topic(COMPONENT),
            encode(dead_letter(COMPONENT, r.topic, r.payload, Rejected(REASON, r.detail))),
        )
        for r in refusals
    ]
    for site, (n, key) in sorted(counts.items()):
        try:
            ref = StreamRef.parse_key(key)
        except TopicError:
            continue
        alert = Alert(
            event_id=f"dispatch:{dispatcher}:discovery_limit:{site}:{now.isoformat()}",
            kind="overload",
            severity="major",
            site=ref.site,
            line=ref.line,
            station=ref.station,
            message=(
                f"stream discovery capped in site {site}: {n} new stream id(s) refused "
                "(not placed; see the dispatcher's dead letters, reason discovery_limit)"
            ),
            worker=dispatcher,
            ts=now,
        )
        out.append((alert_topic(ref.site, ref.line, ref.station), encode(alert)))
    return out


def unassigned_gaps(
    lost: dict[str, int], dispatcher: str, epoch: int, now: datetime
) -> list[tuple[str, bytes]]:
    """(topic, payload) of a gap per stream whose held inputs were pushed out unserved."""
    out = []
    for key, count in lost.items():
        gap = Gap(
            key=f"{key}#unassigned:{uuid.uuid4().hex}",
            stream=key,
            reason="unassigned",
            count=count,
            worker=dispatcher,
            epoch=epoch,
            ts=now,
        )
        out.append((gap_topic(StreamRef.parse_key(key)), encode(gap)))
    return out


def publish_held(
    t: Transport,
    dispatcher: str,
    epoch: int,
    ready: list[HeldInput],
    lost: dict[str, int],
    refused: list[Refusal],
    counts: dict[str, tuple[int, str]],
) -> None:
    """Publish what one tick released from discovery's hold: refusals (dead letters and
    alerts), held inputs whose stream is now served (republished as they came), and
    ``unassigned`` gaps for inputs pushed out of the hold."""
    if refused or counts:
        log.warning(
            "dispatcher: discovery caps refused %d stream(s)", sum(n for n, _ in counts.values())
        )
        for topic, payload in refusal_messages(refused, counts, dispatcher, utcnow()):
            t.publish(topic, payload)
    for item in ready:
        t.publish(item.topic, item.payload, properties=item.properties or None)
    for (topic, payload), (key, count) in zip(
        unassigned_gaps(lost, dispatcher, epoch, utcnow()), lost.items(), strict=True
    ):
        t.publish(topic, payload)
        log.warning("dispatcher: %d input(s) of unserved stream %s recorded as a gap", count, key)
