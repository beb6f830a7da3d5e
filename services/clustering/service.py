"""Clustering service shell: features in; frame families, family updates and alerts out."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from broker import codecs, embeddings
from broker.messages import (
    Alert,
    FamilyControl,
    FamilyUpdate,
    Features,
    FrameFamily,
    Msg,
    Severity,
)
from broker.topics import (
    ALL_FEATURES,
    FAMILY_CONTROL,
    StreamRef,
    TopicError,
    alert_topic,
    dead_letter_topic,
    family_topic,
    frame_family_topic,
)
from broker.transport import Inbound, Published, Transport
from services.clustering import state
from services.clustering.alerts import AlertEvent, AlertTracker
from services.clustering.core import Change, ClusterCore, CurationError, VectorRejected
from services.clustering.settings import ClusterSettings

log = logging.getLogger(__name__)
COMPONENT = "cluster"
SEVERITY: dict[str, Severity] = {"new_family": "major", "family_growth": "minor"}


# Stream keys repeat (one per camera): parsed ones are remembered (StreamRef is immutable; a
# key that fails to parse raises and is never cached).
_stream_ref = functools.lru_cache(maxsize=4096)(StreamRef.parse_key)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class OutputsNotAcknowledged(RuntimeError):
    """The broker did not acknowledge every output in time; the input stays unacknowledged."""


class ClusterService:
    """Assigns each anomalous frame's embedding to a family; see docs/clustering.md."""

    def __init__(
        self,
        transport: Transport,
        settings: ClusterSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.transport, self.settings, self.clock = transport, settings, clock
        self.core, self.tracker = (
            ClusterCore(settings.core_config()),
            AlertTracker(settings.alert_config()),
        )
        self.counters: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._last_update: dict[str, float] = {}
        self._pending_grew: set[str] = set()
        self._unsaved = 0
        self._saved_at = clock()

    # ---- lifecycle ------------------------------------------------------------------------

    def load(self) -> bool:
        """Restore the saved state when there is one (call before ``start``)."""
        path = self.settings.state_path
        if not path.exists():
            return False
        self.core, extra = state.load(path, self.settings.core_config())
        self.tracker.load_state(extra.get("alerts", {}))
        log.info(
            "clustering state restored from %s: %d families, %d vectors seen",
            path,
            len(self.core.active()),
            self.core.seen,
        )
        return True

    def start(self) -> None:
        self.transport.subscribe(ALL_FEATURES, self.on_features)
        self.transport.subscribe(FAMILY_CONTROL, self.on_control)

    def save(self) -> None:
        with self._lock:
            state.save(self.core, self.settings.state_path, {"alerts": self.tracker.to_state()})
            self._unsaved, self._saved_at = 0, self.clock()

    # ---- the handler ----------------------------------------------------------------------

    def on_features(self, msg: Inbound) -> None:
        """Decode, assign, publish every output, wait for the broker, persist, then ack."""
        try:
            feat, stream, vec = self._decode(msg)
        except codecs.Rejected as err:
            self._dead_letter(msg, err)
            return
        if feat.verdict == "ok":
            self.counters["skipped_ok"] += 1  # only anomalous frames are clustered
            msg.ack()
            return
        try:
            with self._lock:
                outputs, must_save = self._assign(feat, stream, vec)
                self._publish_all(outputs)
                self._persist(must_save)
        except codecs.Rejected as err:
            self._dead_letter(msg, err)
            return
        except Exception as exc:  # broker gone or disk full: leave unacked for redelivery
            self.counters["unacked_errors"] += 1
            log.error("features %s not acknowledged: %s", feat.key[:200], exc)
            return
        msg.ack()

    def _decode(self, msg: Inbound) -> tuple[Features, StreamRef, Any]:
        decoded = codecs.decode_output(msg.topic, msg.payload)
        if not isinstance(decoded, Features):
            raise codecs.Rejected("bad_schema", f"{type(decoded).__name__} on a features topic")
        expected = self.core.dim
        if expected is not None and decoded.dim != expected:
            raise codecs.Rejected(
                "wrong_dimension", f"dim {decoded.dim}, this service clusters {expected}-d"
            )
        if decoded.dim > 65536:
            raise codecs.Rejected("wrong_dimension", f"dim {decoded.dim} exceeds 65536")
        vec = embeddings.embedding_view(decoded.embedding, decoded.dim)  # float16, as it travels
        try:
            stream = _stream_ref(decoded.stream)
        except TopicError as exc:
            raise codecs.Rejected(exc.reason, exc.detail) from None
        return decoded, stream, vec

    def _assign(
        self, feat: Features, stream: StreamRef, vec: Any
    ) -> tuple[list[tuple[str, Msg]], bool]:
        ts = feat.ts.timestamp()
        try:
            got = self.core.assign(vec, ts, key=feat.key)
        except VectorRejected as exc:
            raise codecs.Rejected(exc.reason, exc.detail) from None
        frame = FrameFamily(
            stream=feat.stream,
            key=feat.key,
            family=got.family,
            distance=got.distance,
            is_new=got.is_new,
            ts=_dt(self.clock()),
        )
        outputs: list[tuple[str, Msg]] = [(frame_family_topic(stream), frame)]
        if got.duplicate:
            self.counters["duplicates"] += 1
            return outputs, False
        self.counters["assigned"] += 1
        self._unsaved += 1
        outputs += self._updates(got.changes)
        for ev in self.tracker.observe(got.family, ts):
            outputs.append(self._alert(ev, stream, feat))
        if got.family not in {c.family for c in got.changes}:
            self._pending_grew.add(got.family)
        outputs += self._due_grew()
        return outputs, bool(got.changes)

    def _dead_letter(self, msg: Inbound, err: codecs.Rejected) -> None:
        self.counters[f"dead_letter_{err.reason}"] += 1
        log.warning("features on %s rejected: %s", msg.topic[:200], err)
        dl = codecs.dead_letter(COMPONENT, msg.topic, msg.payload, err, receipt=msg.receipt)
        try:
            self._publish_all([(dead_letter_topic(COMPONENT), dl)])
        except Exception as exc:
            self.counters["unacked_errors"] += 1
            log.error("dead letter for %s not acknowledged: %s", msg.topic[:200], exc)
            return
        msg.ack()

    # ---- outputs --------------------------------------------------------------------------

    def update_message(self, change: Change) -> FamilyUpdate:
        """The FamilyUpdate recording ``change`` (the family as it is now)."""
        fam = self.core.families[change.family]
        now = self.clock()
        self._last_update[fam.id] = now
        self._pending_grew.discard(fam.id)
        rate = self.tracker.rate_per_hour(fam.id, max(fam.last_seen, change.ts))
        return FamilyUpdate(
            family=fam.id,
            name=fam.name,
            event=change.event,
            size=fam.size,
            status=fam.status,
            merged_into=fam.merged_into,
            first_seen=_dt(fam.first_seen),
            last_seen=_dt(fam.last_seen),
            rate_per_hour=rate,
            actor=change.actor,
            ts=_dt(now),
        )

    def _updates(self, changes: tuple[Change, ...] | list[Change]) -> list[tuple[str, Msg]]:
        out: list[tuple[str, Msg]] = []
        for c in changes:
            fam = self.core.families[c.family]
            if fam.merged_into:
                self.tracker.merge(fam.id, fam.merged_into)
            out.append((family_topic(c.family), self.update_message(c)))
        return out

    def _due_grew(self) -> list[tuple[str, Msg]]:
        """``grew`` updates, at most one per family per update interval (wall clock)."""
        now, every = self.clock(), self.settings.cluster_update_interval_s
        due = [
            f for f in sorted(self._pending_grew) if now - self._last_update.get(f, -1e18) >= every
        ]
        out: list[tuple[str, Msg]] = []
        for f in due:
            fam = self.core.families[f]
            if fam.status == "active":
                out.append((family_topic(f), self.update_message(Change(f, "grew", fam.last_seen))))
            self._pending_grew.discard(f)
        return out

    def _alert(self, ev: AlertEvent, stream: StreamRef, feat: Features) -> tuple[str, Msg]:
        self.counters[f"alert_{ev.kind}"] += 1
        name = self.core.families[ev.family].name
        where = f"line {stream.line}, station {stream.station}"
        alert = Alert(
            event_id=f"{COMPONENT}:{ev.kind}:{ev.family}:{int(ev.ts * 1000)}",
            kind=ev.kind,
            severity=SEVERITY[ev.kind],
            site=stream.site,
            line=stream.line,
            station=stream.station,
            stream=feat.stream,
            frame_key=feat.key,
            family=ev.family,
            message=f"{ev.message} (latest on {where}; family name {name!r})",
            worker=self.settings.cluster_id,
            epoch=feat.epoch,
            ts=_dt(ev.ts),
        )
        return alert_topic(stream.site, stream.line, stream.station), alert

    def _publish_all(self, outputs: list[tuple[str, Msg]]) -> None:
        """Publish, then wait for every broker acknowledgement (raise if one is missing)."""
        handles: list[Published] = [self.transport.publish(t, codecs.encode(m)) for t, m in outputs]
        deadline = time.monotonic() + self.settings.cluster_publish_timeout_s
        for h in handles:
            if not h.wait(max(deadline - time.monotonic(), 0.0)):
                self.counters["publish_timeouts"] += 1
                raise OutputsNotAcknowledged(
                    f"{len(outputs)} outputs not acknowledged within "
                    f"{self.settings.cluster_publish_timeout_s:.1f} s"
                )
        self.counters["published"] += len(handles)

    def _persist(self, must: bool) -> None:
        if must or self._unsaved >= self.settings.cluster_save_every:
            self.save()

    # ---- curation and housekeeping ----------------------------------------------------------

    def curate(self, op: str, actor: str, **args: Any) -> list[FamilyUpdate]:
        """Apply an operator's rename / merge / split; publish and persist every change."""
        with self._lock:
            now = self.clock()
            changes = self.core.curate(op, actor, now, **args)
            outputs = self._updates(changes)
            self.save()
            self._publish_all(outputs)
        self.counters[f"curate_{op}"] += 1
        return [m for _, m in outputs if isinstance(m, FamilyUpdate)]

    def on_control(self, msg: Inbound) -> None:
        """An operator's curation request from the feed (``FamilyControl``): apply, then ack.

        A request the core refuses (unknown or merged family, too few members) is logged,
        counted and acknowledged; the feed already recorded the operator's intent in SQL."""
        try:
            req = codecs.decode_output(msg.topic, msg.payload)
        except codecs.Rejected as err:
            self._dead_letter(msg, err)
            return
        assert isinstance(req, FamilyControl)  # the topic's route decides the model
        by_op: dict[str, dict[str, Any]] = {
            "rename": {"family": req.family, "name": req.name or ""},
            "merge": {"sources": [req.family], "into": req.into},
            "split": {"family": req.family, "parts": req.parts},
        }
        args = by_op[req.op]
        try:
            self.curate(req.op, req.actor, **args)
        except CurationError as exc:
            self.counters["curate_refused"] += 1
            log.warning("curation %s refused: %s", req.request_id, exc)
        except Exception:
            self.counters["unacked_errors"] += 1
            log.exception("curation %s not applied; left unacknowledged", req.request_id)
            return
        msg.ack()

    def tick(self) -> None:
        """Flush due ``grew`` updates and unsaved state (call every second or so)."""
        with self._lock:
            outputs = self._due_grew()
            if outputs:
                self._publish_all(outputs)
            idle = self.clock() - self._saved_at >= self.settings.cluster_save_interval_s
            if self._unsaved and idle:
                self.save()

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self.counters)
            out |= {
                "families": len(self.core.active()),
                "seen": self.core.seen,
                "refits": self.core.refits,
            }
        return out
