"""Dispatcher service shell: world model from the bus, triggers, fenced assignments, leadership."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from broker.codecs import Rejected, decode_output, encode
from broker.liveness import Liveness
from broker.messages import Assignment, DispatchDecision, WorkerStatus, utcnow
from broker.topics import (
    ALL_ASSIGNMENTS,
    ALL_STATUS,
    ALL_VERDICTS,
    TopicError,
    alert_topic,
    dispatch_decision_topic,
    parse,
)
from broker.transport import Inbound, Transport
from services.dispatcher import decide as dec
from services.dispatcher import grants, takeover
from services.dispatcher.discovery import Caps, Discovery, HeldInput
from services.dispatcher.model import StreamInfo, WorkerInfo
from services.dispatcher.ports import (
    AssignmentStore,
    Held,
    LeaderLock,
    capacity_moved,
    held_rates,
    owners,
)
from services.dispatcher.refusals import publish_held
from services.dispatcher.settings import DispatchSettings, StreamSpec
from services.dispatcher.triggers import (
    CoolDown,
    Effect,
    OverloadDetector,
    RateTracker,
    expired,
    rate_changed,
    status_effect,
)
from services.dispatcher.triggers import Liveness as Seen

log = logging.getLogger(__name__)
TICK_S = 0.05


class Dispatcher:
    """Tracks workers from WorkerStatus, decides on triggers, publishes while it leads."""

    def __init__(
        self,
        settings: DispatchSettings,
        transport: Transport,
        *,
        liveness: Liveness | None = None,
        lock: LeaderLock | None = None,
        store: AssignmentStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s, self.t, self.id = settings, transport, settings.dispatcher_id
        self._liveness, self._lock_db, self._store, self._clock = liveness, lock, store, clock
        self._lock = threading.RLock()
        self._seen: dict[str, Seen] = {}
        self._status: dict[str, WorkerStatus] = {}
        self._held: dict[str, Held] = {}
        self._epoch = 0
        self._pending: dict[str, None] = {}  # trigger reasons, in order (O(1) add)
        self._pending_since: float | None = None
        self._leader = False
        self._started_at = 0.0
        self._fps: dict[str, float] = {}
        self._cool = CoolDown(settings.cooldown_s)
        self._over = OverloadDetector(
            settings.p95_bound_ms, settings.overload_samples, settings.overload_min_queue
        )
        self._rates = RateTracker(settings.rate_window_s)
        self._configured = frozenset(s.id for s in settings.streams)
        self._disc = Discovery(
            settings.discover_fps,
            settings.discover_hold_frames,
            settings.discover_hold_bytes,
            Caps(
                settings.discover_max_per_site,
                settings.discover_max_streams,
                settings.discover_max_per_window,
                settings.discover_window_s,
            ),
        )
        self._alerted: tuple[object, ...] = ((), ())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.decisions: deque[DispatchDecision] = deque(maxlen=200)
        self._marks = {"heartbeat": 0.0, "lease": -1e9, "rates": 0.0, "decided": 0.0}

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if not self.t.connected:
            self.t.start()
        self._started_at = self._clock()
        self._marks["decided"] = self._started_at
        self.t.subscribe(ALL_ASSIGNMENTS, self._on_assignment)
        self.t.subscribe(ALL_STATUS, self._on_status)
        if self.s.observe_rates:
            self.t.subscribe(ALL_VERDICTS, self._on_verdict, qos=0)
        if self.s.discover_streams:
            for pattern in self.s.discover_topics:
                self.t.subscribe(pattern, self._on_input, qos=0)
        if self._liveness is not None:
            self._liveness.birth()
        self._thread = threading.Thread(target=self._run, name=f"dispatch-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._leader and self._lock_db is not None:
            self._lock_db.release()
        self._leader = False
        if self._liveness is not None:
            self._liveness.death()
        self.t.stop()

    @property
    def leader(self) -> bool:
        return self._leader

    @property
    def epoch(self) -> int:
        return self._epoch

    def assignment(self) -> dict[str, str]:
        """stream -> worker as currently assigned (highest epoch wins)."""
        with self._lock:
            return owners(self._held)

    def trigger(self, reason: str) -> None:
        """Ask for a decision (e.g. an operator's rebalance)."""
        with self._lock:
            self._add(reason)

    # ---- inbound -----------------------------------------------------------------------

    def _decode(self, msg: Inbound) -> object | None:
        try:
            return decode_output(msg.topic, msg.payload)
        except (Rejected, TopicError) as exc:
            log.warning("dispatcher: ignoring bad message on %s: %s", msg.topic[:120], exc)
            return None

    def _on_assignment(self, msg: Inbound) -> None:
        a = self._decode(msg)
        if isinstance(a, Assignment) and a.worker.startswith(self.s.worker_prefix):
            with self._lock:
                held = self._held.get(a.worker)
                if held is None or a.epoch >= held.epoch:
                    self._held[a.worker] = Held(a.epoch, tuple(a.streams), dict(a.rates))
                self._epoch = max(self._epoch, a.epoch)
                if self.s.discover_streams:  # a restarted dispatcher keeps placed streams
                    self._disc.adopt(a.streams, self._configured)
        msg.ack()

    def _on_status(self, msg: Inbound) -> None:
        st = self._decode(msg)
        if (
            isinstance(st, WorkerStatus)
            and st.role == "edge"
            and st.worker.startswith(self.s.worker_prefix)
        ):
            with self._lock:
                self._apply_status(st, self._clock())
        msg.ack()

    def _apply_status(self, st: WorkerStatus, now: float) -> None:
        known = self._seen.get(st.worker)
        effect = status_effect(known, st.state, st.counter)
        if effect is Effect.STALE:
            log.info(
                "dispatcher: stale %s of %s (counter %d) ignored", st.state, st.worker, st.counter
            )
            return
        old = self._status.get(st.worker)
        self._status[st.worker] = st
        self._disc.status(st.worker, st.streams, effect is not Effect.DEATH)
        if effect is Effect.DEATH:
            self._seen[st.worker] = Seen(st.counter, False, now)
            self._over.forget(st.worker)
            self._add(f"death:{st.worker}")
            return
        self._seen[st.worker] = Seen(st.counter, True, now)
        if effect is Effect.BIRTH:
            self._add(f"join:{st.worker}")
            return
        changed = self._over.observe(st.worker, st.queue_depth, st.p95_ms)
        if changed is not None:
            self._add(f"{'overload' if changed else 'recovered'}:{st.worker}")
        elif old is not None and capacity_moved(old.capacity_fps, st.capacity_fps):
            self._add(f"capacity:{st.worker}")

    def _on_verdict(self, msg: Inbound) -> None:
        try:
            stream = parse(msg.topic).stream
        except TopicError:
            stream = None
        if stream is not None:
            with self._lock:
                self._rates.observe(stream.key, self._clock())
        msg.ack()

    def _on_input(self, msg: Inbound) -> None:
        """A copy (QoS 0) of every frame and sensor input: discover streams, hold unserved."""
        stream = Discovery.stream_of(msg.topic)
        if stream is not None:
            key = stream.key
            with self._lock:
                learned = self._disc.learn(
                    key, self._configured, self._clock(), msg.topic, msg.payload[:64]
                )
                if learned == "new":
                    log.info("dispatcher: discovered stream %s", key)
                    self._add(f"discover:{key}")
                elif learned != "known":  # over a discovery cap: reported by the tick
                    msg.ack()
                    return
                if self._leader and not self._disc.served(key):
                    self._disc.hold(key, HeldInput(msg.topic, msg.payload, dict(msg.properties)))
        msg.ack()

    def _specs(self) -> list[StreamSpec]:
        """Configured streams, then discovered ones (configuration wins for a shared id)."""
        configured = self._configured
        return [
            *self.s.streams,
            *(s for k, s in self._disc.discovered.items() if k not in configured),
        ]

    def _deliver_held(self) -> None:
        """Republish held inputs of streams their owner now serves; gap what was pushed out."""
        with self._lock:
            ready = self._disc.release()
            lost = self._disc.take_overflow() if self._leader else self._disc.drop_all()
            refused, counts = self._disc.take_refusals(self._clock())
            epoch = self._epoch
        publish_held(self.t, self.id, epoch, ready, lost, refused, counts)

    # ---- the decision loop -------------------------------------------------------------

    def _add(self, reason: str) -> None:
        self._pending[reason] = None
        if self._pending_since is None:
            self._pending_since = self._clock()

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self._tick(self._clock())
            except Exception:
                log.exception("dispatcher tick failed; continuing")

    def _tick(self, now: float) -> None:
        if self._liveness is not None and now - self._marks["heartbeat"] >= self.s.keepalive_s:
            self._marks["heartbeat"] = now
            self._liveness.heartbeat(epoch=self._epoch)
        self._lead(now)
        with self._lock:
            for w in expired(self._seen, now, self.s.keepalive_s):
                self._seen[w].alive = False
                self._disc.status(w, (), alive=False)
                self._add(f"expired:{w}")
            self._check_rates(now)
            if self.s.rebalance_s and now - self._marks["decided"] >= self.s.rebalance_s:
                self._add("rebalance")
            ready = (
                self._leader
                and self._pending
                and self._pending_since is not None
                and now - self._pending_since >= self.s.debounce_s
                and now - self._started_at >= self.s.startup_grace_s
            )
        if ready:
            self._decide(now)
        if self.s.discover_streams:
            self._deliver_held()

    def _lead(self, now: float) -> None:
        if self._lock_db is None:
            if not self._leader:
                self._leader = True
                with self._lock:
                    self._add("startup")
            return
        if now - self._marks["lease"] < self.s.lease_ttl_s / 3:
            return
        self._marks["lease"] = now
        if self._leader:
            if not self._lock_db.renew():
                log.warning("dispatcher %s lost the leadership", self.id)
                self._leader = False
        elif self._lock_db.try_acquire():
            log.info("dispatcher %s now leads", self.id)
            self._recover()
            self._leader = True
            with self._lock:
                self._add("takeover")

    def _recover(self) -> None:
        """Merge SQL's latest assignments and max epoch into what the bus told us."""
        if self._store is None:
            return
        epoch, latest = self._store.max_epoch(), self._store.latest_assignments()
        with self._lock:
            self._epoch = max(self._epoch, epoch)
            takeover.merge_recorded(self._held, latest)
            takeover.trust_announced(self._held, self._status)
            if self.s.discover_streams:  # only this fleet's workers' streams
                self._disc.adopt(
                    (
                        st
                        for w, (_, streams) in latest.items()
                        if w.startswith(self.s.worker_prefix)
                        for st in streams
                    ),
                    self._configured,
                )

    def _check_rates(self, now: float) -> None:
        if not self.s.observe_rates or now - self._marks["rates"] < self.s.rate_window_s / 2:
            return
        self._marks["rates"] = now
        rates = held_rates(self._held)
        current = owners(self._held)  # once: per stream it made this loop quadratic
        for spec in self._specs():
            planned = self._fps.get(spec.id, spec.fps)
            seen = self._rates.fps(spec.id, now)
            if spec.id in current and rate_changed(
                planned, seen, rates.get(spec.id, 1.0), self.s.rate_tolerance
            ):
                assert seen is not None
                self._fps[spec.id] = seen / rates.get(spec.id, 1.0)
                self._add(f"rate:{spec.id}")

    def _view(self, now: float) -> dec.View:
        workers = []
        for w, st in sorted(self._status.items()):
            cap = st.capacity_fps or self.s.default_capacity_fps
            if self._over.overloaded(w):
                cap *= self.s.overload_derate
            workers.append(
                WorkerInfo(
                    w,
                    cap,
                    st.cost_per_hour,
                    dict(st.labels),
                    alive=self._seen[w].alive,
                    counter=st.counter,
                )
            )
        streams = tuple(
            StreamInfo(s.id, self._fps.get(s.id, s.fps), dict(s.requires), s.priority)
            for s in self._specs()
        )
        rates = held_rates(self._held)
        return dec.View(tuple(workers), streams, owners(self._held), rates, self._cool.pinned(now))

    def _decide(self, now: float) -> None:
        with self._lock:
            trigger = ",".join(list(self._pending)[:20])[:200]
            self._pending, self._pending_since = {}, None
            view = self._view(now)
        params = dec.Params(
            self.s.target_utilisation,
            self.s.migration_penalty,
            self.s.policy,
            self.s.min_rate,
            self.s.budget_ms,
        )
        out = dec.decide(view, trigger, params)
        with self._lock:
            epoch = self._epoch + 1 if out.changed else self._epoch
            self._epoch = epoch
        stamp = utcnow()
        assigns = dec.assignments(out, epoch, self.id, stamp)
        with self._lock:
            gains = grants.gained(assigns, self._held)
        assigns = grants.with_resume(assigns, gains, self._store)
        decision = dec.decision(out, epoch, self.id, stamp)
        if self._store is not None:  # durable before anyone acts on the new epoch
            try:
                self._store.record(assigns, decision, trigger)
            except Exception:
                log.exception("dispatcher: recording decision %s failed", decision.decision_id)
        grants.publish(self.t, assigns, gains)
        with self._lock:
            for a in assigns:
                self._held[a.worker] = Held(epoch, tuple(a.streams), dict(a.rates))
            self._cool.record(out.moved, now)
            self._marks["decided"] = now
        self.t.publish(dispatch_decision_topic(), encode(decision))
        self.decisions.append(decision)
        self._maybe_alert(out, decision.decision_id)
        log.info(
            "decision %s (%s): epoch %d, %d moved, cost %.3f -> %.3f, %.1f ms%s",
            decision.decision_id[:8],
            trigger,
            epoch,
            len(out.moved),
            out.cost_before,
            out.plan.cost,
            out.plan.solve_ms,
            f", unplaced {len(out.plan.unplaced)}" if out.plan.unplaced else "",
        )

    def _maybe_alert(self, out: dec.Outcome, decision_id: str) -> None:
        state = (tuple(sorted(out.plan.rates.items())), tuple(sorted(out.plan.unplaced)))
        if state == self._alerted:
            return
        self._alerted = state
        for alert in dec.alerts(out, self.s.policy, decision_id, utcnow()):
            self.t.publish(alert_topic(alert.site, alert.line, alert.station), encode(alert))
