"""Handing out a decision's assignments: what each grant adds, where its new owner resumes,
and the publish order (revocations before grants, each acknowledged)."""

from __future__ import annotations

import logging

from broker.codecs import encode
from broker.messages import Assignment
from broker.topics import assignment_topic
from broker.transport import Published, Transport
from services.dispatcher.ports import AssignmentStore, Held

log = logging.getLogger(__name__)
_NONE = Held(0, (), {})
PUBLISH_WAIT_S = 5.0


def gained(assigns: list[Assignment], held: dict[str, Held]) -> dict[str, list[str]]:
    """Per worker, the streams its new assignment adds to what it holds."""
    return {
        a.worker: sorted(set(a.streams) - set(held.get(a.worker, _NONE).streams)) for a in assigns
    }


def with_resume(
    assigns: list[Assignment], gains: dict[str, list[str]], store: AssignmentStore | None
) -> list[Assignment]:
    """Grants carry, per stream they add, the last seq already accounted for in SQL
    (``Assignment.resume``): the new owner records what it never receives after that
    as a ``failover`` gap. Without SQL (or on an SQL error) grants go without it."""
    wanted = sorted({st for streams in gains.values() for st in streams})
    if store is None or not wanted:
        return assigns
    try:
        last = store.last_seqs(wanted)
    except Exception:
        log.exception("dispatcher: last accounted seqs unavailable; grants without resume")
        return assigns
    out = []
    for a in assigns:
        resume = {st: last[st] for st in gains[a.worker] if st in last}
        out.append(a.model_copy(update={"resume": resume}) if resume else a)
    return out


def publish(t: Transport, assigns: list[Assignment], gains: dict[str, list[str]]) -> None:
    """Revocations first (workers only losing streams), then grants; each acknowledged."""
    revoking = [a for a in assigns if not gains[a.worker]]
    granting = [a for a in assigns if gains[a.worker]]
    for group in (revoking, granting):
        pubs: list[Published] = [
            t.publish(assignment_topic(a.worker), encode(a), retain=True) for a in group
        ]
        for a, p in zip(group, pubs, strict=True):
            if not p.wait(PUBLISH_WAIT_S):
                log.warning("assignment for %s (epoch %d) not acknowledged", a.worker, a.epoch)
