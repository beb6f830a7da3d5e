"""Stream discovery: a camera or sensor that starts publishing is placed without configuration."""

# The dispatcher watches every input topic at QoS 0 (a copy, no session queue). A stream it has
# never heard of becomes a *discovered* stream (expected ``discover_fps`` until its verdicts show
# the real rate) and triggers a decision. Until a live worker reports the stream in its status
# (``WorkerStatus.streams``, sent right after it subscribed), nobody inspects what the stream
# publishes, so the leading dispatcher **holds** those messages (bounded per stream and in
# bytes) and republishes them, with their MQTT v5 properties, once the owner serves the stream.
# What the bounds push out is recorded as an ``unassigned`` gap (counted, unsequenced), so the
# first frame of a new camera is inspected and nothing is dropped silently.
#
# Discovery is bounded (``Caps``): at most ``per_site`` streams per site and ``total`` in all,
# and at most ``per_window`` new ones per site in ``window_s``. A stream over a cap is refused:
# not placed, not held, remembered (bounded) so its later inputs cost nothing, and reported
# (a dead letter per refused stream, at most ``max_reports`` per window, the rest counted;
# an alert per site with refusals, at most one per site per window). O(1) work per input.
#
# Pure bookkeeping (no transport, thread-safety is the caller's lock): the service feeds it
# topics, statuses and time, and publishes what it returns.

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from broker.topics import Route, StreamRef, TopicError, parse
from services.dispatcher.settings import StreamSpec


@dataclass(frozen=True)
class HeldInput:
    topic: str
    payload: bytes
    properties: Mapping[str, str] = field(default_factory=dict)


Learned = Literal["known", "new", "refused", "refused_again"]


@dataclass(frozen=True)
class Caps:
    """Bounds on discovery; see the module docstring."""

    per_site: int = 500
    total: int = 1000
    per_window: int = 100
    window_s: float = 60.0
    max_reports: int = 256  # dead letters of refused streams per window (then only counted)
    remember: int = 65536  # refused stream ids remembered (LRU)


@dataclass(frozen=True)
class Refusal:
    """A stream discovery refused: the input that revealed it, and why."""

    key: str
    topic: str
    payload: bytes
    detail: str


@dataclass
class Discovery:
    """Discovered streams, who serves which stream, and inputs held for unserved streams."""

    fps: float = 1.0
    hold_frames: int = 32
    hold_bytes: int = 64 * 1024 * 1024
    caps: Caps = field(default_factory=Caps)
    per_site: Counter[str] = field(default_factory=Counter)
    recent: dict[str, deque[float]] = field(default_factory=dict)  # site -> discovery times
    refused: OrderedDict[str, None] = field(default_factory=OrderedDict)
    reports: deque[Refusal] = field(default_factory=deque)
    # site -> (refusals since its last alert, one refused stream of it)
    refused_count: dict[str, tuple[int, str]] = field(default_factory=dict)
    reported: tuple[float, int] = (float("-inf"), 0)  # (window start, dead letters in it)
    alerted: dict[str, float] = field(default_factory=dict)  # site -> its last alert
    discovered: dict[str, StreamSpec] = field(default_factory=dict)
    serving: dict[str, str] = field(default_factory=dict)  # stream -> worker that reports it
    held: OrderedDict[str, deque[HeldInput]] = field(default_factory=OrderedDict)
    held_bytes: int = 0
    overflow: dict[str, int] = field(default_factory=dict)  # stream -> inputs pushed out

    @staticmethod
    def stream_of(topic: str) -> StreamRef | None:
        """The input stream of a frame or sensor topic; None for anything else."""
        try:
            p = parse(topic)
        except TopicError:
            return None
        if p.route not in (Route.FRAME, Route.SENSOR):
            return None
        return p.stream

    def learn(
        self, key: str, known: frozenset[str], now: float, topic: str = "", payload: bytes = b""
    ) -> Learned:
        """Record ``key`` as discovered unless it is known or over a cap (see ``Caps``)."""
        if key in self.discovered or key in known:
            return "known"
        if key in self.refused:
            self.refused.move_to_end(key)
            return "refused_again"
        site = key.split("/", 1)[0]
        why = self._over_cap(site, now)
        if why:
            self._refuse(key, site, topic, payload, why, now)
            return "refused"
        self.recent.setdefault(site, deque()).append(now)
        self._add(key, site)
        return "new"

    def _over_cap(self, site: str, now: float) -> str:
        c = self.caps
        times = self.recent.get(site)
        while times and times[0] <= now - c.window_s:
            times.popleft()
        if len(self.discovered) >= c.total:
            return f"{c.total} discovered streams in all"
        if self.per_site[site] >= c.per_site:
            return f"{c.per_site} discovered streams in site {site}"
        if times is not None and len(times) >= c.per_window:
            return f"{c.per_window} new streams in site {site} within {c.window_s:g} s"
        return ""

    def _refuse(
        self, key: str, site: str, topic: str, payload: bytes, why: str, now: float
    ) -> None:
        self.refused[key] = None
        if len(self.refused) > self.caps.remember:
            self.refused.popitem(last=False)
        count, sample = self.refused_count.get(site, (0, key))
        self.refused_count[site] = (count + 1, sample)
        start, n = self.reported
        if now - start >= self.caps.window_s:
            start, n = now, 0
        if n < self.caps.max_reports:
            detail = f"stream {key} not discovered: the cap of {why} is reached"
            self.reports.append(Refusal(key, topic, payload[:64], detail))
            n += 1
        self.reported = (start, n)

    def take_refusals(self, now: float) -> tuple[list[Refusal], dict[str, tuple[int, str]]]:
        """Refusals to dead-letter, and the sites to alert about (at most once per window
        each): the refusals counted since their last alert and one refused stream."""
        out, self.reports = list(self.reports), deque()
        window = self.caps.window_s
        due = [
            site
            for site in self.refused_count
            if now - self.alerted.get(site, float("-inf")) >= window
        ]
        counts = {site: self.refused_count.pop(site) for site in due}
        self.alerted.update(dict.fromkeys(due, now))
        if len(self.alerted) > self.caps.remember:  # many made-up sites: forget old alerts
            self.alerted = {k: t for k, t in self.alerted.items() if now - t < window}
        return out, counts

    def _add(self, key: str, site: str) -> None:
        self.discovered[key] = StreamSpec(id=key, fps=self.fps)
        self.per_site[site] += 1

    def adopt(self, keys: Iterable[str], known: Iterable[str]) -> None:
        """Streams found in recovered assignments (a restarted dispatcher) stay placed
        (counted against the caps, never refused: they were admitted before)."""
        known_set = set(known)
        for key in keys:
            if key not in known_set and key not in self.discovered:
                self._add(key, key.split("/", 1)[0])

    # ---- who serves what (from worker statuses) -----------------------------------------

    def status(self, worker: str, streams: Iterable[str], alive: bool) -> None:
        """A worker's status: the streams it reports serving (none when it is gone)."""
        mine = set(streams) if alive else set()
        for key in [k for k, w in self.serving.items() if w == worker and k not in mine]:
            del self.serving[key]
        for key in mine:
            self.serving[key] = worker

    def served(self, key: str) -> bool:
        return key in self.serving

    # ---- holding inputs nobody inspects yet ---------------------------------------------

    def hold(self, key: str, item: HeldInput) -> None:
        """Keep ``item`` for the future owner; the oldest inputs go (counted) over the bounds."""
        q = self.held.setdefault(key, deque())
        q.append(item)
        self.held_bytes += len(item.payload)
        while len(q) > self.hold_frames:
            self._drop(key, q)
        while self.held_bytes > self.hold_bytes and self.held:
            fullest = max(self.held, key=lambda k: len(self.held[k]))
            self._drop(fullest, self.held[fullest])

    def _drop(self, key: str, q: deque[HeldInput]) -> None:
        gone = q.popleft()
        self.held_bytes -= len(gone.payload)
        self.overflow[key] = self.overflow.get(key, 0) + 1
        if not q:
            del self.held[key]

    def release(self) -> list[HeldInput]:
        """Held inputs of streams that are now served, oldest first (and forgotten here)."""
        out: list[HeldInput] = []
        for key in [k for k in self.held if k in self.serving]:
            q = self.held.pop(key)
            self.held_bytes -= sum(len(i.payload) for i in q)
            out.extend(q)
        return out

    def take_overflow(self) -> dict[str, int]:
        """Counts of inputs pushed out of the hold since the last call, per stream."""
        out, self.overflow = self.overflow, {}
        return out

    def drop_all(self) -> dict[str, int]:
        """Leadership lost: what was held is no longer ours to deliver; returns the counts."""
        for key, q in self.held.items():
            self.overflow[key] = self.overflow.get(key, 0) + len(q)
        self.held.clear()
        self.held_bytes = 0
        return self.take_overflow()
