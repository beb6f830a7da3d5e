"""Stream discovery: a camera or sensor that starts publishing is placed without configuration.

The dispatcher watches every input topic at QoS 0 (a copy, no session queue). A stream it has
never heard of becomes a *discovered* stream (expected ``discover_fps`` until its verdicts show
the real rate) and triggers a decision. Until a live worker reports the stream in its status
(``WorkerStatus.streams``, sent right after it subscribed), nobody inspects what the stream
publishes, so the leading dispatcher **holds** those messages (bounded per stream and in
bytes) and republishes them, with their MQTT v5 properties, once the owner serves the stream.
What the bounds push out is recorded as an ``unassigned`` gap (counted, unsequenced), so the
first frame of a new camera is inspected and nothing is dropped silently.

Pure bookkeeping (no transport, thread-safety is the caller's lock): the service feeds it
topics, statuses and time, and publishes what it returns.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from broker.topics import Route, StreamRef, TopicError, parse
from services.dispatcher.settings import StreamSpec


@dataclass(frozen=True)
class HeldInput:
    topic: str
    payload: bytes
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Discovery:
    """Discovered streams, who serves which stream, and inputs held for unserved streams."""

    fps: float = 1.0
    hold_frames: int = 32
    hold_bytes: int = 64 * 1024 * 1024
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

    def learn(self, key: str, known: Iterable[str]) -> bool:
        """Record ``key`` as discovered unless it is known; True when it is new."""
        if key in self.discovered or key in known:
            return False
        self.discovered[key] = StreamSpec(id=key, fps=self.fps)
        return True

    def adopt(self, keys: Iterable[str], known: Iterable[str]) -> None:
        """Streams found in recovered assignments (a restarted dispatcher) stay placed."""
        known_set = set(known)
        for key in keys:
            if key not in known_set and key not in self.discovered:
                self.discovered[key] = StreamSpec(id=key, fps=self.fps)

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
